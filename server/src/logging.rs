//! Process-wide logging with `tracing`: human-readable text or one JSON object per line.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise (the journal, a container's log, a pipe).
    Auto,
    Text,
    Json,
}

/// Installs the global subscriber; `filter` uses `RUST_LOG` syntax (e.g. `info,predictor=debug`).
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter '{filter}': {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        chosen => chosen,
    };
    // A JSON line has the event's fields at the top level and its request's (request_id,
    // trace_id, endpoint) under "span".
    let result = match format {
        // The request's span only ("span"), not the list of every enclosing span ("spans"): the
        // server nests none, and the list would write the same fields twice per line.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
        _ => builder.try_init(),
    };
    result.map_err(|e| e.to_string())
}
