//! The bodies of the fuzz targets (`fuzz/`), and of the test that replays their corpora on stable
//! Rust: each takes the bytes of one hostile input and drives a decoder exactly as the server does
//! for a request, against fixed declarations ([`bundles`]) instead of a running model (no ONNX
//! Runtime), so that an input runs in microseconds. Each panics on what must never happen: a panic
//! of the decoder itself, an error that is not the caller's (not a 4xx, not `INVALID_ARGUMENT`), an
//! error message that grows with the input, or a decoded tensor that does not fit its declaration
//! or does not encode back to itself. Each returns whether some declaration accepted the input.

// The fuzz targets' assertions: a panic is what the fuzzer looks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use axum::body::{Bytes, HttpBody};
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use prost::Message;

use crate::bundle::Bundle;
use crate::model::PredictError;
use crate::protocol::seed::PredictRequest;
use crate::protocol::v2::infer::{validate, ValidRequest};
use crate::protocol::v2::OutputChoice;
use crate::serving::error::ErrorKind;
use crate::serving::Registry;
use crate::tensor::{shape_fits, Flat, Tensor, TensorData};
use crate::transport::grpc::proto::ModelInferRequest;
use crate::transport::grpc::InferenceService;
use crate::transport::http::ApiError;

/// The body of a fuzz target: one input, which it panics on when a decoder misbehaves; true when
/// the input was accepted.
pub type Target = fn(&[u8]) -> bool;

/// The targets by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: [(&str, Target); 5] = [
    ("seed_json", seed_json),
    ("v2_json", v2_json),
    ("v2_binary", v2_binary),
    ("grpc_infer", grpc_infer),
    ("bundle_toml", bundle_toml),
];

/// The interface of `models/iris-svc` (one float32 input, labels), as its `predictor.toml`
/// declares it; a test checks that they agree. A copy, because the library's sources do not
/// include `models/`.
pub const IRIS_SVC: &str = r#"
schema_version = 1
name = "iris-svc"
version = "1.0.0"
model = "model.onnx"
labels = ["setosa", "versicolor", "virginica"]
prediction = "probabilities"

[[inputs]]
name = "input"
dtype = "float32"
shape = [-1, 4]

[[outputs]]
name = "label"
dtype = "int64"
shape = [-1]

[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 3]

[sample]
input = [[5.1, 3.5, 1.4, 0.2]]
output = [[0.9775, 0.014353, 0.008147]]
tolerance = 1e-4
"#;

/// One input and one output of every element type.
pub const EVERY_DTYPE: &str = include_str!("../tests/fixtures/every-dtype/predictor.toml");

/// The longest error answer (REST body, gRPC message) any input may cause: messages quote the
/// caller's names and values clipped ([`crate::text::clip`]), never whole.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The declarations every input is decoded against.
pub fn bundles() -> &'static [Bundle] {
    static BUNDLES: LazyLock<Vec<Bundle>> = LazyLock::new(|| {
        [("iris-svc", IRIS_SVC), ("every-dtype", EVERY_DTYPE)]
            .into_iter()
            .map(|(name, text)| {
                let file = Path::new(name).join(crate::bundle::FILE_NAME);
                Bundle::parse(&file, text).expect("the fuzzing declarations parse")
            })
            .collect()
    });
    &BUNDLES
}

/// What the decoders read limits and shared memory from: no models, the default limits, the
/// shared memory extension off (as by default).
fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> =
        LazyLock::new(|| Registry::new(Vec::new(), Default::default(), Default::default(), None));
    &REGISTRY
}

/// A body of `POST /predict` (and `/predict/label`): the JSON extractor, then the rows decoded
/// against each bundle's inputs.
pub fn seed_json(body: &[u8]) -> bool {
    let request = match axum::Json::<PredictRequest>::from_bytes(body) {
        Ok(axum::Json(request)) => request,
        Err(rejection) => return client_error(rejection.into()),
    };
    let mut accepted = false;
    for bundle in bundles() {
        match bundle.decode_inputs(&request.data, "data") {
            Ok(tensors) => {
                fits(bundle, &tensors);
                tensors.iter().for_each(json_round_trip);
                accepted = true;
            }
            Err(message) => _ = client_error(PredictError::InvalidInput(message).into()),
        }
    }
    accepted
}

/// A body of `POST /v2/models/{name}/infer` without binary data.
pub fn v2_json(body: &[u8]) -> bool {
    v2(None, body)
}

/// A body of `POST /v2/models/{name}/infer` with binary data: the bytes up to the first newline
/// are the value of the Inference-Header-Content-Length header, the rest is the body. Without a
/// newline the header is absent.
pub fn v2_binary(input: &[u8]) -> bool {
    let Some(newline) = input.iter().position(|&byte| byte == b'\n') else {
        return v2(None, input);
    };
    // A value that is not a header value never reaches the server: HTTP refuses it first.
    match HeaderValue::from_bytes(&input[..newline]) {
        Ok(header) => v2(Some(&header), &input[newline + 1..]),
        Err(_) => false,
    }
}

fn v2(header: Option<&HeaderValue>, body: &[u8]) -> bool {
    let mut accepted = false;
    for bundle in bundles() {
        let body = Bytes::copy_from_slice(body);
        match crate::transport::http::decode_infer(registry(), bundle, header, body, |_| {}) {
            Ok(call) => {
                fits(bundle, &call.inputs);
                chosen(bundle, &call.outputs);
                call.inputs.iter().for_each(bytes_round_trip);
                if header.is_none() {
                    call.inputs.iter().for_each(flat_round_trip);
                }
                accepted = true;
            }
            Err(error) => _ = client_error(error),
        }
    }
    accepted
}

/// The message of a gRPC `ModelInfer` call: decoded as tonic decodes it (one that does not decode
/// is answered `INVALID_ARGUMENT` before the service), then against each bundle's inputs.
pub fn grpc_infer(message: &[u8]) -> bool {
    let Ok(request) = ModelInferRequest::decode(message) else {
        return false;
    };
    let mut accepted = false;
    for bundle in bundles() {
        let mut request = request.clone();
        let decoded = InferenceService::decode_request(&mut request)
            .and_then(|request| validate(registry(), bundle, request));
        match decoded {
            Ok(ValidRequest {
                inputs, outputs, ..
            }) => {
                fits(bundle, &inputs);
                chosen(bundle, &outputs);
                inputs.iter().for_each(bytes_round_trip);
                accepted = true;
            }
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error:?}");
                bounded(error.public_message());
            }
        }
    }
    accepted
}

/// A `predictor.toml`: parsed and checked as `predictor check` and `serve` do before they open the
/// model, then its sample decoded as they decode it; accepted when all of that passes.
pub fn bundle_toml(file: &[u8]) -> bool {
    // Bundle::read refuses a file that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(file) else {
        return false;
    };
    let bundle = match Bundle::parse(Path::new(crate::bundle::FILE_NAME), text) {
        Ok(bundle) => bundle,
        Err(error) => {
            assert!(!error.problems.is_empty(), "an error without a problem");
            let _ = error.to_string();
            return false;
        }
    };
    let config = &bundle.config;
    assert!(!config.inputs.is_empty() && !config.outputs.is_empty());
    let prediction = bundle.prediction_spec();
    let input = bundle.decode_inputs(&bundle.sample_input, "sample.input");
    if let Ok(tensors) = &input {
        fits(&bundle, tensors);
    }
    let output = Tensor::from_json(&config.sample.output, prediction.dtype);
    input.is_ok() && output.is_ok()
}

/// An error must be the caller's, with an answer of bounded size. False: not accepted.
fn client_error(error: ApiError) -> bool {
    let response = error.into_response();
    let status = response.status();
    // The body is whole in memory: it is ready at the first poll.
    let mut body = response.into_body();
    let mut context = Context::from_waker(Waker::noop());
    let mut answer = Vec::new();
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut context) {
        if let Ok(data) = frame.expect("an error body").into_data() {
            answer.extend_from_slice(&data);
        }
    }
    let answer = String::from_utf8(answer).expect("a JSON answer");
    assert!(status.is_client_error(), "{status}: {answer}");
    bounded(&answer);
    false
}

fn bounded(message: &str) {
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "an answer of {} bytes: {}...",
        message.len(),
        &message[..message.floor_char_boundary(300)]
    );
}

/// Decoded inputs must be one per declared input, in order, each of its dtype and shape.
fn fits(bundle: &Bundle, tensors: &[Tensor]) {
    let specs = &bundle.public_inputs;
    assert_eq!(tensors.len(), specs.len());
    for (spec, tensor) in specs.iter().zip(tensors) {
        assert_eq!(tensor.dtype(), spec.dtype, "input '{}'", spec.name);
        assert!(
            shape_fits(&spec.shape, tensor.shape()),
            "input '{}'",
            spec.name
        );
        assert_eq!(
            Some(tensor.data().len()),
            tensor
                .shape()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
        );
    }
}

/// The outputs asked for must be declared, each once.
fn chosen(bundle: &Bundle, outputs: &[OutputChoice]) {
    let declared = bundle.config.outputs.len();
    assert!(outputs.iter().all(|choice| choice.index < declared));
    for (at, choice) in outputs.iter().enumerate() {
        assert!(outputs[..at].iter().all(|c| c.index != choice.index));
    }
}

/// A tensor read from JSON encodes as JSON that reads back as the same tensor.
fn json_round_trip(tensor: &Tensor) {
    let text = serde_json::to_string(tensor).expect("a tensor encodes");
    let back = Tensor::from_json_text(&text, tensor.dtype()).expect("an encoded tensor decodes");
    assert_eq!(&back, tensor, "through {text}");
}

/// Data read from JSON encodes as the protocol's flat JSON, which reads back as the same data.
fn flat_round_trip(tensor: &Tensor) {
    let text = serde_json::to_string(&Flat(tensor.data())).expect("data encodes");
    let back = TensorData::from_json_leaves(&text, tensor.dtype(), tensor.data().len())
        .expect("encoded data decodes");
    assert_eq!(&back, tensor.data(), "through {text}");
}

/// A tensor encodes to bytes that decode to the same bytes (compared as bytes: NaN != NaN).
fn bytes_round_trip(tensor: &Tensor) {
    let mut bytes = Vec::new();
    tensor.data().write_le_bytes(&mut bytes);
    let back = TensorData::from_le_bytes(tensor.dtype(), &bytes, tensor.data().len())
        .expect("encoded bytes decode");
    let mut again = Vec::new();
    back.write_le_bytes(&mut again);
    assert_eq!(bytes, again);
}
