//! OpenTelemetry export (cargo feature `otlp`): every request's span goes to an OTLP/HTTP
//! collector, as a child of the caller's span when its `traceparent` names one, and the answer's
//! `traceparent` names the exported span.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The exporter; [`Exporter::shutdown`] sends what is still buffered.
pub struct Exporter(SdkTracerProvider);

impl Exporter {
    /// Starts exporting to `endpoint` (e.g. `http://127.0.0.1:4318/v1/traces`); the layer goes into
    /// the subscriber.
    pub fn start<S>(endpoint: &str) -> Result<(Exporter, impl Layer<S> + Send + Sync), String>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|error| format!("--otlp-endpoint {endpoint}: {error}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("predictor")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("predictor"));
        Ok((Exporter(provider), layer))
    }

    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("predictor: OTLP export: {error}");
        }
    }
}

/// Makes `span` a child of the span a (valid) `traceparent` value names.
pub fn join(span: &Span, traceparent: &str) {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Without the export layer there is nothing to join: the plain trace id stays in the logs.
    let _ = span.set_parent(parent);
}

/// The `traceparent` of `span` as exported, if it is exported.
pub fn traceparent(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}
