//! Process-wide logging with `tracing`: human-readable text or one JSON object per line, and with
//! the cargo feature `otlp`, request spans exported to an OpenTelemetry collector.

mod json_lines;

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layered, SubscriberExt};
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
    let filter = LogFilter::parse(filter)?;
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        chosen => chosen,
    };
    // A JSON line has the event's fields at the top level and its request's (request_id,
    // trace_id, endpoint) under "span" once (`json_lines`).
    let lines: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Json => JsonLines::new(std::io::stderr).boxed(),
        _ => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let layers = vec![lines, RequestIds.boxed()];
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
        .with(filter)
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Logging {
        #[cfg(feature = "otlp")]
        exporter,
    })
}

/// The subscriber the log's layers see: the registry of spans behind the filter.
type Filtered = Layered<LogFilter, Registry>;

/// The log filter, applied once for every layer (per-layer filters cost a lookup of the span in
/// every layer at every entry to and exit from it, several times a request), and letting the
/// request spans through whatever the level: the prediction log needs each request's id, and
/// a line of a request, at any level, says which request it was.
enum LogFilter {
    /// Targets and levels only (the usual kind: `info`, `info,predictor=debug`), decided by an
    /// event's target and level alone.
    Targets(Box<Targets>),
    /// With span or field directives, which `EnvFilter` tracks as spans are entered and left.
    Env(Box<EnvFilter>),
}

impl LogFilter {
    fn parse(text: &str) -> Result<Self, String> {
        // `Targets` would read a span directive (`[request]=debug`) as a target's name.
        if !text.contains('[') {
            if let Ok(targets) = text.parse::<Targets>() {
                return Ok(LogFilter::Targets(Box::new(targets)));
            }
        }
        EnvFilter::try_new(text)
            .map(|filter| LogFilter::Env(Box::new(filter)))
            .map_err(|e| format!("invalid log filter '{text}': {e}"))
    }

    fn rules<S>(&self) -> &dyn Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self {
            LogFilter::Targets(targets) => targets.as_ref(),
            LogFilter::Env(env) => env.as_ref(),
        }
    }
}

/// A request span (`transport::observe`), let through at any level.
fn is_request_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.name() == "request"
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for LogFilter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_request_span(metadata) {
            return Interest::always();
        }
        self.rules::<S>().register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, context: Context<'_, S>) -> bool {
        is_request_span(metadata) || self.rules().enabled(metadata, context)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // At least the request spans' level, or `tracing` would skip them before asking.
        let rules = self.rules::<S>().max_level_hint()?;
        Some(rules.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        self.rules().on_new_span(attributes, id, context);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        self.rules().on_record(id, values, context);
    }

    fn on_enter(&self, id: &Id, context: Context<'_, S>) {
        self.rules().on_enter(id, context);
    }

    fn on_exit(&self, id: &Id, context: Context<'_, S>) {
        self.rules().on_exit(id, context);
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        self.rules().on_close(id, context);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_spans_pass_any_filter_and_the_rest_is_filtered() {
        for text in ["warn", "warn,[some_span]=debug"] {
            let subscriber = tracing_subscriber::registry()
                .with(LogFilter::parse(text).unwrap())
                .with(RequestIds);
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("request", request_id = "abc");
                assert_eq!(span.in_scope(current_request_id).as_deref(), Some("abc"));
                assert!(tracing::info_span!("other").is_disabled(), "{text}");
                assert!(!tracing::enabled!(tracing::Level::INFO), "{text}");
                assert!(tracing::enabled!(tracing::Level::WARN), "{text}");
            });
        }
        assert!(matches!(
            LogFilter::parse("info,predictor=debug"),
            Ok(LogFilter::Targets(_))
        ));
        assert!(matches!(
            LogFilter::parse("warn,[request]=debug"),
            Ok(LogFilter::Env(_))
        ));
        let refused = LogFilter::parse("info,predictor=loud").err().unwrap();
        assert!(refused.contains("invalid log filter"), "{refused}");
    }
}
