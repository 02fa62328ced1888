//! gRPC answers are compressed for a caller that accepts gzip (as Triton's clients and
//! perf_analyzer announce) only when they are large: a small answer's deflate stream cost more
//! than the rest of its request (a fifth of the server's CPU in perf_analyzer's iris scenario).

use crate::common;

use common::{bundle, grpc_frame, iris_infer_request, Server, IRIS_ROW};

/// Calls ModelInfer on `server` accepting gzip, with `rows` iris rows; returns the answer's
/// `grpc-encoding` header and whether its message came compressed (the frame's flag byte).
async fn infer(server: &Server, rows: usize) -> (Option<String>, bool) {
    let mut request = iris_infer_request();
    request.inputs[0].shape = vec![rows as i64, 4];
    request.raw_input_contents = vec![IRIS_ROW
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .cycle()
        .take(rows * 16)
        .collect()];
    let mut client = common::h2_connect(server.grpc_address).await;
    let call = axum::http::Request::post("http://x/inference.GRPCInferenceService/ModelInfer")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", "identity,deflate,gzip")
        .body(())
        .unwrap();
    let (answer, mut sending) = client.send_request(call, false).unwrap();
    sending
        .send_data(grpc_frame(&request).into(), true)
        .unwrap();
    let answer = answer.await.unwrap();
    let encoding = answer
        .headers()
        .get("grpc-encoding")
        .map(|value| value.to_str().unwrap().to_string());
    let mut body = answer.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        received.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    (encoding, received[0] == 1)
}

#[tokio::test]
async fn only_large_grpc_answers_are_compressed() {
    let server = Server::start(&[&bundle("iris-svc")]);
    // One row: an answer of about a hundred bytes.
    let (encoding, compressed) = infer(&server, 1).await;
    assert!(!compressed, "a small answer was compressed ({encoding:?})");
    // 2048 rows: 2048 labels and 6144 probabilities, over 40 KB.
    let (encoding, compressed) = infer(&server, 2048).await;
    assert!(compressed, "a large answer went uncompressed");
    assert!(
        matches!(encoding.as_deref(), Some("gzip" | "deflate")),
        "{encoding:?}"
    );
}
