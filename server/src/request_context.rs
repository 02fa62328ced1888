//! Who a request is, for the logs and the answer: its request id (the Open Inference Protocol's
//! `id`, else the caller's `x-request-id`, else generated) and its W3C trace context
//! (`traceparent`), which is accepted and passed on with this server's own span id. Shared by the
//! HTTP and gRPC layers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The header (and gRPC metadata key) that carries the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C Trace Context header (and gRPC metadata key).
pub const TRACEPARENT: &str = "traceparent";

/// A request's id: its own (the Open Inference Protocol's `id`), else the caller's `x-request-id`,
/// else a new one. Only an id that [`valid_request_id`] accepts is taken, so that every answer can
/// carry it in a header and every log line stays short.
pub fn choose_request_id(own: Option<&str>, caller: Option<&str>) -> String {
    own.and_then(valid_request_id)
        .or_else(|| caller.and_then(valid_request_id))
        .map_or_else(new_request_id, str::to_string)
}

/// A caller's request id, if it is one to log and echo: 1 to 128 visible ASCII characters.
pub fn valid_request_id(value: &str) -> Option<&str> {
    let valid = (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(value)
}

/// A fresh request id: 32 hex digits, unique in this process and, with its random half, across
/// processes; no system call per request (a random id each time costs one).
pub fn new_request_id() -> String {
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let sequence = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(32);
    for half in [process, sequence] {
        for place in (0..16).rev() {
            let digit = (half >> (place * 4)) & 0xf;
            id.push(char::from(b"0123456789abcdef"[digit as usize]));
        }
    }
    id
}

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

impl TraceParent {
    /// Parses a `traceparent` value; None for anything the W3C rules say to ignore (a malformed
    /// value, version ff, an all-zero trace or parent id). Versions above 00 are read as 00, as
    /// the specification asks.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && hex(parent_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0');
        well_formed.then(|| TraceParent {
            trace_id: trace_id.to_string(),
            parent_id: parent_id.to_string(),
            flags: flags.to_string(),
        })
    }

    /// The `traceparent` to pass on: the same trace, with this server's span as the parent.
    pub fn child(&self) -> String {
        let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
        format!("00-{}-{span_id}-{}", self.trace_id, self.flags)
    }
}

/// Joins a request's span to the caller's trace: in the logs through its `trace_id` field, and,
/// when spans are exported (feature `otlp`), as the exported span's parent.
pub fn join_trace(span: &tracing::Span, trace: &TraceParent) {
    span.record("trace_id", trace.trace_id.as_str());
    #[cfg(feature = "otlp")]
    crate::telemetry::join(
        span,
        &format!("00-{}-{}-{}", trace.trace_id, trace.parent_id, trace.flags),
    );
}

/// The `traceparent` an answer carries: the exported span's own, or else (spans not exported) the
/// caller's trace with a fresh span id; none when the caller sent none.
pub fn answer_traceparent(span: &tracing::Span, trace: Option<&TraceParent>) -> Option<String> {
    let trace = trace?;
    #[cfg(feature = "otlp")]
    if let Some(exported) = crate::telemetry::traceparent(span) {
        return Some(exported);
    }
    let _ = span;
    Some(trace.child())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_specification_example_and_passes_the_trace_on() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id, "00f067aa0ba902b7");
        let child = TraceParent::parse(&parent.child()).unwrap();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_eq!(child.flags, "01");
    }

    #[test]
    fn ignores_what_the_specification_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let future = format!("{}-extra", VALID.replacen("00", "01", 1));
        assert!(TraceParent::parse(&future).is_some());
    }

    #[test]
    fn the_request_id_is_the_own_else_the_callers_else_new() {
        assert_eq!(choose_request_id(Some("own"), Some("caller")), "own");
        assert_eq!(choose_request_id(None, Some("caller")), "caller");
        assert_eq!(choose_request_id(Some(""), Some("caller")), "caller");
        assert_eq!(choose_request_id(Some("a\nb"), Some("caller")), "caller");
        assert_eq!(choose_request_id(Some(&"x".repeat(200)), None).len(), 32);
    }

    #[test]
    fn request_ids_are_short_and_printable() {
        assert_eq!(valid_request_id("abc-123"), Some("abc-123"));
        assert_eq!(valid_request_id(""), None);
        assert_eq!(valid_request_id("a b"), None);
        assert_eq!(valid_request_id(&"x".repeat(129)), None);
        let (first, second) = (new_request_id(), new_request_id());
        assert_eq!((first.len(), second.len()), (32, 32));
        assert_ne!(first, second);
        assert_eq!(first[..16], second[..16], "one process, one random half");
    }
}
