//! What every call leaves behind, over HTTP and gRPC alike: a span with its request id and trace
//! id around all its log lines; when it is answered (or dropped unanswered), one access log line
//! and its metrics; an internal error's detail, logged once; and the trace context its answer
//! carries. Each transport starts an [`Observation`] where its call arrives and ends it with its
//! own status.

use tracing::field::Empty;
use tracing::Span;

use crate::metrics::{AnswerTimer, RequestRecord, RouteLabels};
use crate::request_context::{answer_traceparent, join_trace, TraceParent};
use crate::serving::Registry;

/// One call, from its arrival to its answer.
pub struct Observation<'r> {
    span: Span,
    trace: Option<TraceParent>,
    record: RequestRecord<'r>,
}

impl<'r> Observation<'r> {
    /// A call arrived: `method` as the access log names it (`POST`, `gRPC`), `labels` its metric
    /// labels, `request_id` when already chosen (else [`Observation::identify`] records it),
    /// `traceparent` the caller's header, and `abandoned` the status a call dropped unanswered is
    /// counted with.
    pub fn start(
        registry: &'r Registry,
        method: &str,
        labels: RouteLabels,
        request_id: Option<&str>,
        traceparent: Option<&str>,
        abandoned: &'static str,
    ) -> Self {
        let span = tracing::info_span!(
            "request",
            request_id = Empty,
            trace_id = Empty,
            method,
            endpoint = labels.endpoint.as_str(),
        );
        if let Some(request_id) = request_id {
            span.record("request_id", request_id);
        }
        let trace = traceparent.and_then(TraceParent::parse);
        if let Some(trace) = &trace {
            join_trace(&span, trace);
        }
        let record = registry
            .metrics()
            .request_started(labels, span.clone(), abandoned);
        Observation {
            span,
            trace,
            record,
        }
    }

    /// The span every log line of the call goes in.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Records the request id, once chosen.
    pub fn identify(&self, request_id: &str) {
        self.span.record("request_id", request_id);
    }

    /// Logs what went wrong inside the server, which the caller's answer does not say.
    pub fn internal_error(&self, detail: &str) {
        tracing::error!(parent: &self.span, %detail, "internal error");
    }

    /// The `traceparent` the answer carries (none when the caller sent none).
    pub fn answer_traceparent(&self) -> Option<String> {
        answer_traceparent(&self.span, self.trace.as_ref())
    }

    /// The call answered with `status`: its access log line and count now, and its duration
    /// when the returned timer drops, as the answer's last byte leaves.
    pub fn answered(self, status: &str) -> AnswerTimer {
        self.record.answered(status)
    }
}
