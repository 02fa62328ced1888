//! What a request leaves behind: its metrics (scraped from the metrics port), its request id and
//! trace context in the answer, and its access log line with the same ids.

use crate::common;

use serde_json::{json, Value};

use common::{bundle, metric_value as sample, Server};

fn v2_request(id: Option<&str>) -> Value {
    let mut request = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    if let Some(id) = id {
        request["id"] = json!(id);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_and_timed_by_model_endpoint_and_status() {
    let server = Server::start(&[&bundle("iris-svc")]);
    let infer = "/v2/models/iris-svc/infer";
    assert_eq!(server.post_json(infer, &v2_request(None)).await.0, 200);
    let bad = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
    assert_eq!(server.post_json(infer, &bad).await.0, 400);
    let rows = json!({"data": [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5]]});
    assert_eq!(server.post_json("/predict", &rows).await.0, 200);
    let invented = "/v2/models/invented-name/infer";
    assert_eq!(server.post_json(invented, &v2_request(None)).await.0, 404);
    assert_eq!(server.get("/openapi.json").await.0, 200);

    // A request's duration ends once its answer is written, which may be just after the client
    // has read it: wait for the last one.
    let openapi_duration = "predictor_request_duration_seconds_count{model=\"\",protocol=\"http\",endpoint=\"/openapi.json\"}";
    tokio::task::block_in_place(|| server.wait_for_metric(openapi_duration, |count| count >= 1.0));
    let metrics = server.metrics().await;
    let requests = |model: &str, endpoint: &str, status: u16| {
        sample(
            &metrics,
            &format!("predictor_requests_total{{model=\"{model}\",protocol=\"http\",endpoint=\"{endpoint}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(
        requests("iris-svc", "/v2/models/{model}/infer", 200),
        Some(1.0)
    );
    assert_eq!(
        requests("iris-svc", "/v2/models/{model}/infer", 400),
        Some(1.0)
    );
    // The seed API at the root serves the only model, and is labelled with it.
    assert_eq!(requests("iris-svc", "/predict", 200), Some(1.0));
    // The API description is the server's, not the only model's.
    assert_eq!(requests("", "/openapi.json", 200), Some(1.0));
    // A name the server does not have never becomes a label value.
    assert_eq!(requests("", "/v2/models/{model}/infer", 404), Some(1.0));
    assert!(!metrics.contains("invented-name"), "{metrics}");

    // Two runs reached ONNX Runtime (the bad request did not), with 1 and 2 rows.
    let model = "{model=\"iris-svc\"}";
    assert_eq!(
        sample(
            &metrics,
            &format!("predictor_inference_duration_seconds_count{model}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("predictor_queue_duration_seconds_count{model}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, &format!("predictor_batch_rows_sum{model}")),
        Some(3.0)
    );
    assert_eq!(
        sample(&metrics, &format!("predictor_queue_depth{model}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, &format!("predictor_queue_capacity{model}")),
        Some(64.0)
    );
    assert_eq!(
        sample(&metrics, &format!("predictor_model_ready{model}")),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            &format!("predictor_model_load_duration_seconds{model}")
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "predictor_request_duration_seconds_count{model=\"iris-svc\",protocol=\"http\",endpoint=\"/v2/models/{model}/infer\"}"
        ),
        Some(2.0)
    );

    let model_file = std::fs::read(bundle("iris-svc").join("model.onnx")).unwrap();
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&model_file)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let info = format!(
        "predictor_model_info{{model=\"iris-svc\",version=\"1.0.0\",model_sha256=\"{sha256}\"}}"
    );
    assert_eq!(sample(&metrics, &info), Some(1.0), "{metrics}");
    let build = metrics
        .lines()
        .find(|line| line.starts_with("predictor_build_info{"))
        .unwrap();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(!build.contains("onnxruntime=\"unknown\""), "{build}");
    assert!(metrics.ends_with("# EOF\n"));
}

/// The access log line ("request") of the request with `request_id`. The server writes it before
/// answering, but the test reads stderr on another thread: give it a moment.
fn access_line(server: &Server, request_id: &str) -> Value {
    for _ in 0..100 {
        let found = server.log_events().into_iter().find(|event| {
            event["message"] == "request" && event["span"]["request_id"] == request_id
        });
        if let Some(line) = found {
            return line;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no access line for {request_id}: {:?}", server.log_events())
}

#[tokio::test]
async fn request_ids_and_trace_context_come_back_and_reach_the_log() {
    let server = Server::start(&[&bundle("iris-svc")]);
    let post = |path: &str, body: Value, headers: &[(&str, &str)]| {
        let mut request = server.client.post(server.url(path)).json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };

    // The protocol's own id wins over the header.
    let response = post(
        "/v2/models/iris-svc/infer",
        v2_request(Some("v2-id-1")),
        &[("x-request-id", "header-id")],
    )
    .await
    .unwrap();
    assert_eq!(id_of(&response), "v2-id-1");
    let line = access_line(&server, "v2-id-1");
    assert_eq!(line["model"], "iris-svc");
    assert_eq!(line["status"], "200");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["span"]["endpoint"], "/v2/models/{model}/infer");

    // Else the caller's header, on any route, errors included.
    let response = post(
        "/predict",
        json!({"data": [[1, 2, 3]]}),
        &[("x-request-id", "seed-7")],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(id_of(&response), "seed-7");
    assert_eq!(access_line(&server, "seed-7")["status"], "400");

    // Else a generated one; an unusable header (a space in it) is replaced.
    for headers in [&[][..], &[("x-request-id", "has space")][..]] {
        let response = post("/v2/models/iris-svc/infer", v2_request(None), headers)
            .await
            .unwrap();
        let id = id_of(&response);
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(access_line(&server, &id)["status"], "200");
    }

    // A W3C traceparent: the same trace comes back with this server's span, and reaches the log.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = post(
        "/v2/models/iris-svc/infer",
        v2_request(Some("traced")),
        &[("traceparent", parent)],
    )
    .await
    .unwrap();
    let child = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = child.split('-').collect();
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_eq!(parts[3], "01");
    assert_eq!(
        access_line(&server, "traced")["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}
