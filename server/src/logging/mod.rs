//! Process-wide logging with `tracing`: human-readable text or one JSON object per line, and with
//! the cargo feature `otlp`, request spans exported to an OpenTelemetry collector.

mod json_lines;

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use self::json_lines::JsonLines;

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
    // The filter applies to the log's lines and exported spans, not to `RequestIds`: the
    // prediction log needs each request's id whatever the log level.
    let filter_text = filter;
    let filter = || {
        EnvFilter::try_new(filter_text)
            .map_err(|e| format!("invalid log filter '{filter_text}': {e}"))
    };
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        chosen => chosen,
    };
    // A JSON line has the event's fields at the top level and its request's (request_id,
    // trace_id, endpoint) under "span" once (`json_lines`).
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => JsonLines::new(std::io::stderr)
            .with_filter(filter()?)
            .boxed(),
        _ => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter()?)
            .boxed(),
    };
    let request_ids = RequestIds.with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span() && metadata.name() == "request"
    }));
    let layers = vec![lines, request_ids.boxed()];
    #[cfg(feature = "otlp")]
    let (layers, exporter) = {
        let mut layers = layers;
        let exporter = match otlp_endpoint {
            Some(endpoint) => {
                let (exporter, layer) = crate::telemetry::Exporter::start(endpoint)?;
                layers.push(layer.with_filter(filter()?).boxed());
                Some(exporter)
            }
            None => None,
        };
        (layers, exporter)
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Logging {
        #[cfg(feature = "otlp")]
        exporter,
    })
}

/// `time` in UTC as the log lines write it, RFC 3339 with microseconds.
pub fn utc_timestamp(time: std::time::SystemTime) -> String {
    let mut text = String::with_capacity(27);
    json_lines::push_timestamp(&mut text, time);
    text
}

/// A request span's `request_id`, kept where [`current_request_id`] finds it.
struct RequestIdField(String);

/// Keeps each span's `request_id` field (given when the span opens, or recorded later, as the
/// v2 body's own id is) in the span's extensions.
struct RequestIds;

struct RequestIdVisitor(Option<String>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RequestIds {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        attributes.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, context.span(id)) {
            span.extensions_mut().insert(RequestIdField(request_id));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, context.span(id)) {
            let mut extensions = span.extensions_mut();
            extensions.remove::<RequestIdField>();
            extensions.insert(RequestIdField(request_id));
        }
    }
}

/// The request id of the request span the caller runs in (for the prediction log); None
/// outside a request, or before logging is set up.
pub fn current_request_id() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            // The request span itself, or the nearest enclosing one that has an id.
            span.scope().find_map(|span| {
                span.extensions()
                    .get::<RequestIdField>()
                    .map(|field| field.0.clone())
            })
        })
        .flatten()
}
