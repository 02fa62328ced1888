//! Process-wide logging with `tracing`: human-readable text or one JSON object per line, and with
//! the cargo feature `otlp`, request spans exported to an OpenTelemetry collector.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise (the journal, a container's log, a pipe).
    Auto,
    Text,
    Json,
}

/// What must outlive the program's work: the span exporter, flushed by [`Logging::finish`].
pub struct Logging {
    #[cfg(feature = "otlp")]
    exporter: Option<crate::telemetry::Exporter>,
}

impl Logging {
    /// Sends the spans still buffered (feature `otlp`); call once, before exiting.
    pub fn finish(self) {
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.exporter {
            exporter.shutdown();
        }
    }
}

/// Installs the global subscriber; `filter` uses `RUST_LOG` syntax (e.g. `info,predictor=debug`).
/// With the feature `otlp`, `otlp_endpoint` turns on the export of spans.
pub fn init(
    format: LogFormat,
    filter: &str,
    #[cfg(feature = "otlp")] otlp_endpoint: Option<&str>,
) -> Result<Logging, String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter '{filter}': {e}"))?;
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        chosen => chosen,
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // A JSON line has the event's fields at the top level and its request's (request_id,
    // trace_id, endpoint) under "span" once (not the list of every enclosing span as well: the
    // server nests none, and the list would write the same fields twice per line).
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .boxed(),
        _ => lines.boxed(),
    };
    let layers = vec![lines];
    #[cfg(feature = "otlp")]
    let (layers, exporter) = {
        let mut layers = layers;
        let exporter = match otlp_endpoint {
            Some(endpoint) => {
                let (exporter, layer) = crate::telemetry::Exporter::start(endpoint)?;
                layers.push(layer.boxed());
                Some(exporter)
            }
            None => None,
        };
        (layers, exporter)
    };
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Logging {
        #[cfg(feature = "otlp")]
        exporter,
    })
}
