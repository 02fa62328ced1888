//! OpenTelemetry export (cargo feature `otlp`): a request's span reaches an OTLP/HTTP collector as
//! the child of the caller's `traceparent`, and the answer's `traceparent` names that span.
//! `scripts/test` runs it with `cargo test --features otlp --test otlp`.
#![cfg(feature = "otlp")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use common::{bundle, Server};

/// A collector on a free port that keeps every span it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).unwrap();
            let mut kept = kept.lock().unwrap();
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    kept.extend(scope.spans);
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1/traces"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_join_the_callers_trace_and_reach_the_collector() {
    let (endpoint, spans) = collector().await;
    let mut server = Server::start_with(&[&bundle("iris-svc")], &["--otlp-endpoint", &endpoint]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = json!({"id": "traced-1", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    let response = server
        .client
        .post(server.url("/v2/models/iris-svc/infer"))
        .header("traceparent", parent)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answered = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();

    // The exporter batches; shutting down flushes what it holds.
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || server.wait_for_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    let spans = spans.lock().unwrap();
    let span = spans
        .iter()
        .find(|span| {
            span.name == "request" && hex(&span.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736"
        })
        .unwrap_or_else(|| panic!("no request span of the trace among {spans:?}"));
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        answered,
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            hex(&span.span_id)
        )
    );
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
    };
    assert!(
        attribute("request_id").unwrap().contains("traced-1"),
        "{span:?}"
    );
    assert!(
        attribute("endpoint")
            .unwrap()
            .contains("/v2/models/{model}/infer"),
        "{span:?}"
    );
}

/// A stop forced by the drain timeout still flushes the spans of the requests answered before it
/// (the watchdog exited the process from a task, which lost what the exporter held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_stop_still_exports_the_spans_of_answered_requests() {
    use std::io::Write;
    let (endpoint, spans) = collector().await;
    let mut server = Server::start_with(
        &[&bundle("iris-svc")],
        &["--otlp-endpoint", &endpoint, "--drain-timeout-seconds", "1"],
    );
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let request = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    let response = server
        .client
        .post(server.url("/v2/models/iris-svc/infer"))
        .header("traceparent", parent)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A request whose body never completes holds the drain until its timeout.
    let mut stalled = std::net::TcpStream::connect(server.address).unwrap();
    stalled
        .write_all(
            b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    // Signalled only once the server reads that body: before, the stop would find nothing to drain.
    tokio::task::block_in_place(|| {
        server.wait_for_metric("predictor_requests_in_flight{protocol=\"http\"}", |n| {
            n >= 1.0
        })
    });
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || server.wait_for_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the drain timeout stops it"
    );
    let spans = spans.lock().unwrap();
    assert!(
        spans
            .iter()
            .any(|span| hex(&span.trace_id) == "0af7651916cd43dd8448eb211c80319c"),
        "the answered request's span was lost: {spans:?}"
    );
    drop(stalled);
}
