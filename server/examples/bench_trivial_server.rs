//! The benchmark's H: the requests per second of a trivial axum handler that reads the same
//! bodies as the server (the seed API's JSON rows, decoded by the same code into tensors, or a
//! v2 binary body's header and raw bytes) and answers a fixed body, without running any model.
//! `bench/run` serves it on the server's core and loads it like the server.
//!
//!     cargo run --release --example bench_trivial_server -- BUNDLE PORT

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use predictor::bundle::Bundle;
use predictor::tensor::{DType, TensorData};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, port] = args.as_slice() else {
        return Err("usage: bench_trivial_server BUNDLE PORT".into());
    };
    let bundle = Arc::new(Bundle::read(&PathBuf::from(bundle)).map_err(|e| e.to_string())?);
    let app = Router::new()
        .route("/predict", post(seed_json))
        .route("/v2/binary", post(v2_binary))
        .with_state(bundle);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse().map_err(|_| "PORT")?))
        .await
        .map_err(|e| e.to_string())?;
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

#[derive(serde::Deserialize)]
struct PredictRequest {
    data: Box<serde_json::value::RawValue>,
}

async fn seed_json(State(bundle): State<Arc<Bundle>>, body: Bytes) -> Result<&'static str, String> {
    let request: PredictRequest = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let inputs = bundle.decode_inputs(&request.data, "data")?;
    std::hint::black_box(inputs);
    Ok(r#"{"prediction":[[0.0]]}"#)
}

async fn v2_binary(headers: HeaderMap, body: Bytes) -> Result<&'static str, String> {
    let length: usize = headers["inference-header-content-length"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or("no header length")?;
    let header: serde_json::Value =
        serde_json::from_slice(&body[..length]).map_err(|e| e.to_string())?;
    std::hint::black_box(header);
    let data = TensorData::from_le_bytes(DType::Float32, &body[length..], usize::MAX)?;
    std::hint::black_box(data);
    Ok(r#"{"outputs":[]}"#)
}
