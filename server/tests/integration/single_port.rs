//! `serve --single-port` against the real binary: one port answers the seed API and v2 REST over
//! HTTP/1.1 and h2c, v2 gRPC and the metrics scrape at once, each observed as on its own port;
//! the bearer tokens, the concurrency and body limits hold on each path of that port, and each
//! protocol is timed and logged as on its own.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use prost::Message;
use serde_json::{json, Value};

use common::{bundle, edited_copy, Server};
use predictor::transport::grpc::proto::{ModelInferRequest, ModelInferResponse};

const TOKEN: &str = "s3cret-token-for-the-tests-0123";
fn infer_json() -> Value {
    common::iris_infer_json()
}

fn frame(message: &impl Message) -> Bytes {
    common::grpc_frame(message).into()
}

fn iris_request() -> ModelInferRequest {
    common::iris_infer_request()
}

/// A REST request over h2c (HTTP/2 without TLS, no gRPC content type): its status and body.
async fn h2c_post(address: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let mut client = common::h2_connect(address).await;
    let request = axum::http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (answer, mut send) = client.send_request(request, false).unwrap();
    send.send_data(serde_json::to_vec(body).unwrap().into(), true)
        .unwrap();
    let answer = answer.await.unwrap();
    let status = answer.status().as_u16();
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(data) = body.data().await {
        bytes.extend_from_slice(&data.unwrap());
    }
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn requests_counted(metrics: &str, protocol: &str, endpoint: &str, status: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("predictor_requests_total{"))
        .filter(|line| {
            line.contains(&format!("protocol=\"{protocol}\""))
                && line.contains(&format!("endpoint=\"{endpoint}\""))
                && line.contains(&format!("status=\"{status}\""))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn one_port_serves_the_seed_api_v2_rest_grpc_and_the_metrics_at_once() {
    let server = Server::start_with(&[&bundle("iris-svc")], &["--single-port"]);
    assert_eq!(
        server.grpc_address, server.address,
        "the log names one port"
    );
    assert_eq!(server.metrics_address, server.address);

    let (status, seed) = server.get("/predict/test/label").await;
    assert_eq!(status, 200);
    assert_eq!(
        seed,
        json!({"prediction": ["setosa", "versicolor", "virginica"]})
    );
    let (status, rest) = server
        .post_json("/v2/models/iris-svc/infer", &infer_json())
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["outputs"][0]["data"], json!([0]));
    let (status, h2c) = h2c_post(server.address, "/v2/models/iris-svc/infer", &infer_json()).await;
    assert_eq!(status, 200, "{h2c}");
    assert_eq!(h2c["outputs"], rest["outputs"]);

    let (status, message) =
        common::grpc_call(server.address, "ModelInfer", frame(&iris_request()), None).await;
    assert_eq!(status, "0");
    let answer = ModelInferResponse::decode(message.as_slice()).unwrap();
    assert_eq!(answer.model_name, "iris-svc");
    let label = answer
        .outputs
        .iter()
        .position(|o| o.name == "label")
        .unwrap();
    assert_eq!(answer.raw_output_contents[label], 0i64.to_le_bytes());

    // Each protocol is observed as on its own port; the scrape itself, as there, is not.
    let metrics = server.metrics().await;
    assert_eq!(
        requests_counted(&metrics, "grpc", "ModelInfer", "OK"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        requests_counted(&metrics, "http", "/v2/models/{model}/infer", "200"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        requests_counted(&metrics, "http", "/predict/test/label", "200"),
        1.0,
        "{metrics}"
    );
    assert!(!metrics.contains("endpoint=\"/metrics\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_the_concurrency_limit_hold_on_the_grpc_path_of_the_one_port() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), format!("{TOKEN}\n")).unwrap();
    let server = Server::start_with(
        &[&bundle("iris-svc")],
        &[
            "--single-port",
            "--auth-token-file",
            tokens.path().to_str().unwrap(),
        ],
    );
    let bearer = format!("Bearer {TOKEN}");
    for wrong in [None, Some("Bearer not-the-token-0123456789")] {
        let (status, _) =
            common::grpc_call(server.address, "ModelInfer", frame(&iris_request()), wrong).await;
        assert_eq!(status, "16", "UNAUTHENTICATED with {wrong:?}");
    }
    let (status, _) = common::grpc_call(
        server.address,
        "ModelInfer",
        frame(&iris_request()),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, "0");
    // The health methods stay open, as on the gRPC port.
    let live = predictor::transport::grpc::proto::ServerLiveRequest {};
    let (status, _) = common::grpc_call(server.address, "ServerLive", frame(&live), None).await;
    assert_eq!(status, "0");
    // REST on the same port needs it too; the scrape, as on the metrics port, does not.
    let (status, _) = server
        .post_json("/v2/models/iris-svc/infer", &infer_json())
        .await;
    assert_eq!(status, 401);
    assert!(server.metrics().await.contains("predictor_requests_total"));

    // Past --max-concurrent-requests a gRPC call is shed at once, REST and gRPC counted together.
    let (_folder, slow) = edited_copy(|text| {
        text.replace(
            "[runtime]\nthreads = 1",
            "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = 3000",
        )
    });
    let server = Server::start_with(
        &[&slow],
        &["--single-port", "--max-concurrent-requests", "1"],
    );
    let held = tokio::spawn({
        let (client, url) = (
            server.client.clone(),
            server.url("/v2/models/iris-svc/infer"),
        );
        async move {
            client
                .post(url)
                .json(&infer_json())
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::task::block_in_place(|| {
        server.wait_for_metric("predictor_requests_in_flight{protocol=\"http\"}", |n| {
            n >= 1.0
        })
    });
    let (status, _) =
        common::grpc_call(server.address, "ModelInfer", frame(&iris_request()), None).await;
    assert_eq!(
        status, "14",
        "UNAVAILABLE while the REST request holds the one place"
    );
    assert_eq!(held.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_latency_metrics_and_access_lines_hold_on_the_one_port() {
    let server = Server::start_with(
        &[&bundle("iris-svc")],
        &["--single-port", "--max-body-bytes", "4096"],
    );
    // Over the body limit on each path of the port: HTTP/1.1, h2c REST, gRPC.
    let mut too_large = infer_json();
    too_large["id"] = json!("x".repeat(8192));
    let (status, body) = server
        .post_json("/v2/models/iris-svc/infer", &too_large)
        .await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = h2c_post(server.address, "/v2/models/iris-svc/infer", &too_large).await;
    assert_eq!(status, 413, "{body}");
    let mut request = iris_request();
    request.id = "x".repeat(8192);
    let (status, _) = common::grpc_call(server.address, "ModelInfer", frame(&request), None).await;
    assert_eq!(
        status, "11",
        "OUT_OF_RANGE past the limit, as on the gRPC port"
    );

    // One answered call of each protocol is timed and logged as on its own port.
    let (status, _) = server
        .post_json("/v2/models/iris-svc/infer", &infer_json())
        .await;
    assert_eq!(status, 200);
    let (status, _) =
        common::grpc_call(server.address, "ModelInfer", frame(&iris_request()), None).await;
    assert_eq!(status, "0");
    for (protocol, endpoint) in [("http", "/v2/models/{model}/infer"), ("grpc", "ModelInfer")] {
        let series = format!(
            "predictor_request_duration_seconds_count{{model=\"iris-svc\",protocol=\"{protocol}\",endpoint=\"{endpoint}\"}}"
        );
        tokio::task::block_in_place(|| server.wait_for_metric(&series, |n| n >= 1.0));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logged = server
            .log_events()
            .into_iter()
            .filter(|event| event["message"] == "request")
            .filter(|event| event["status"] == "200" || event["status"] == "OK")
            .map(|event| {
                (
                    event["span"]["method"].clone(),
                    event["span"]["endpoint"].clone(),
                )
            })
            .collect::<Vec<_>>();
        if logged.contains(&(json!("gRPC"), json!("ModelInfer")))
            && logged.contains(&(json!("POST"), json!("/v2/models/{model}/infer")))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for each protocol: {:?}",
            server.log_events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_single_port_refuses_the_other_ports() {
    for other in ["--grpc-port", "--metrics-port"] {
        let output = common::predictor(&["serve", "--single-port", other, "9000", "models/x"]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("cannot be used with"), "{message}");
    }
}
