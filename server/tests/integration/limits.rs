//! The limits every request meets (rows per request, concurrent requests, a deadline) and the
//! optional bearer tokens, against the real binary over real sockets.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{bundle, edited_copy, metric_value, Server};

/// iris-svc made slow on purpose: a request waits `delay_ms` for others to share its run.
fn slow_iris(delay_ms: u64) -> (tempfile::TempDir, PathBuf) {
    edited_copy(|text| {
        text.replace(
            "[runtime]\nthreads = 1",
            &format!(
                "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = {delay_ms}"
            ),
        )
    })
}

const ONE_FLOWER: [[f64; 4]; 1] = [[5.1, 3.5, 1.4, 0.2]];

fn v2_rows(rows: usize) -> serde_json::Value {
    json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 4], "data": vec![1.0; rows * 4]}]})
}

/// Posts `body` and checks the answer is a 503 with `Retry-After` whose message names `flag`;
/// returns how long the answer took.
async fn refused_for_a_while(
    server: &Server,
    path: &str,
    body: serde_json::Value,
    flag: &str,
) -> Duration {
    let started = Instant::now();
    let response = server
        .client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(flag), "{message}");
    elapsed
}

#[tokio::test]
async fn more_rows_than_the_limit_are_refused_before_running() {
    let server = Server::start_with(&[&bundle("iris-svc")], &["--max-rows-per-request", "2"]);
    let (status, body) = server
        .post_json("/predict", &json!({"data": vec![ONE_FLOWER[0]; 2]}))
        .await;
    assert_eq!(status, 200, "{body}");
    for (path, request) in [
        ("/predict", json!({"data": vec![ONE_FLOWER[0]; 3]})),
        ("/v2/models/iris-svc/infer", v2_rows(3)),
    ] {
        let (status, body) = server.post_json(path, &request).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("3 rows") && message.contains("--max-rows-per-request"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_the_concurrency_limit_are_shed_at_once() {
    // The admitted requests hold their places for the whole delay (they are too few to fill a batch).
    let (_folder, slow) = slow_iris(3000);
    let server = Arc::new(Server::start_with(
        &[&slow],
        &["--max-concurrent-requests", "2"],
    ));
    let admitted: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .post_json("/predict", &json!({"data": ONE_FLOWER}))
                    .await
            })
        })
        .collect();
    // Both were admitted and wait for their run.
    tokio::task::block_in_place(|| {
        server.wait_for_metric("predictor_queue_depth{model=\"iris-svc\"}", |depth| {
            depth == 2.0
        })
    });
    let elapsed = refused_for_a_while(
        &server,
        "/v2/models/iris-svc/infer",
        v2_rows(1),
        "--max-concurrent-requests",
    )
    .await;
    // At once: while both places were still held, not once one was given back.
    assert!(
        admitted.iter().all(|request| !request.is_finished()),
        "shed after {elapsed:?}, not at once"
    );
    // Probes and metadata are not inference: they still answer.
    let ready = server.client.get(server.url("/v2/health/ready")).send();
    assert_eq!(ready.await.unwrap().status(), 200);
    assert_eq!(server.get("/v2/models/iris-svc").await.0, 200);
    for request in admitted {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "an admitted request was lost: {body}");
    }
    // The places are given back: the next request is admitted.
    let (status, body) = server
        .post_json("/predict", &json!({"data": ONE_FLOWER}))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_request_past_the_timeout_is_abandoned_and_its_run_skipped() {
    // A delay far past the timeout (the most a bundle may ask): the request's job is still queued
    // when the timeout answers.
    let (_folder, slow) = slow_iris(10_000);
    let server = Server::start_with(&[&slow], &["--request-timeout-seconds", "1"]);
    let elapsed = refused_for_a_while(
        &server,
        "/predict",
        json!({"data": ONE_FLOWER}),
        "--request-timeout-seconds",
    )
    .await;
    let depth = "predictor_queue_depth{model=\"iris-svc\"}";
    let count = "predictor_inference_duration_seconds_count{model=\"iris-svc\"}";
    let metrics = server.metrics().await;
    assert!(
        elapsed >= Duration::from_secs(1) && metric_value(&metrics, depth) == Some(1.0),
        "answered after {elapsed:?}, not at the timeout while its job waited:\n{metrics}"
    );
    // A full batch (max_batch_size rows) cannot join the waiting job: it closes that job's batch
    // at once and runs in the next one. Closing the batch, the worker finds the caller gone and
    // runs nothing; the worker is one thread, so once the full batch is answered the abandoned
    // job's turn is over.
    let (status, body) = server
        .post_json("/v2/models/iris-svc/infer", &v2_rows(64))
        .await;
    assert_eq!(status, 200, "{body}");
    let metrics = server.metrics().await;
    let runs =
        metric_value(&metrics, count).unwrap_or_else(|| panic!("no inference count in\n{metrics}"));
    assert_eq!(runs, 1.0, "the abandoned request ran:\n{metrics}");
}

const TOKEN: &str = "s3cret-token-for-the-tests-0123";

fn token_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn with_a_token_file_every_request_but_the_probes_needs_a_token() {
    let tokens = token_file(&format!("# the test's token\n{TOKEN}\n"));
    let server = Server::start_with(
        &[&bundle("iris-svc")],
        &["--auth-token-file", tokens.path().to_str().unwrap()],
    );
    let send = |path: &str, authorization: Option<&str>| {
        let mut request = if path.ends_with("/infer") || path.ends_with("/predict") {
            server
                .client
                .post(server.url(path))
                .json(&if path.ends_with("/infer") {
                    v2_rows(1)
                } else {
                    json!({"data": ONE_FLOWER})
                })
        } else {
            server.client.get(server.url(path))
        };
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send()
    };
    for open in [
        "/health",
        "/models/iris-svc/health",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris-svc/ready",
    ] {
        assert_eq!(send(open, None).await.unwrap().status(), 200, "{open}");
    }
    let bearer = format!("Bearer {TOKEN}");
    for guarded in [
        "/predict",
        "/v2/models/iris-svc/infer",
        "/v2/models/iris-svc",
        "/v2",
        "/models",
    ] {
        for wrong in [None, Some("Bearer not-the-token-0123456789"), Some(TOKEN)] {
            let response = send(guarded, wrong).await.unwrap();
            assert_eq!(response.status(), 401, "{guarded} with {wrong:?}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"predictor\""
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("bearer token"),
                "{body}"
            );
        }
        let response = send(guarded, Some(&bearer)).await.unwrap();
        assert_eq!(response.status(), 200, "{guarded} with the token");
    }
    // Metrics stay on their own listener, without a token.
    assert!(server.metrics().await.contains("predictor_requests_total"));
    let refused = server
        .log_events()
        .into_iter()
        .filter(|event| event["status"] == "401")
        .count();
    assert_eq!(refused, 15, "each refusal has its access log line");
}

#[test]
fn a_missing_or_weak_token_file_stops_the_start() {
    let weak = token_file("short\n");
    for (file, problem) in [
        ("/nonexistent/tokens".to_string(), "No such file"),
        (weak.path().display().to_string(), "at least 16"),
    ] {
        let output = common::predictor(&[
            "serve",
            "--port",
            "0",
            "--auth-token-file",
            &file,
            bundle("iris-svc").to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&file) && stderr.contains(problem),
            "{stderr}"
        );
    }
}
