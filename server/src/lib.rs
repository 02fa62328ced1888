//! predictor: one server for every ONNX model described by a `predictor.toml` bundle.
//!
//! The layers, bottom to top, each knowing only those below it, in the order of the README's
//! Layout and of the layering test (`server/tests/integration/layering.rs`):
//! - [`allocator`]: mimalloc, and large blocks mapped on their own;
//! - leaf helpers: [`text`] (how messages quote callers), [`defaults`] (every default value),
//!   [`metrics`], `telemetry` (OpenTelemetry, feature `otlp`), [`logging`], [`request_context`];
//! - [`tensor`]: datatypes, tensor data, its JSON and binary codecs;
//! - [`prediction_log`]: the sampled record of inferences;
//! - [`bundle`]: the `predictor.toml` format, its own checks, labels and sample comparison;
//! - [`runtime`]: the [`runtime::Backend`] trait; `runtime::ort` is the only user of `ort`;
//! - [`ops`]: `init`, `probe` and `manifests`, which need no serving;
//! - [`model`]: a bundle loaded against its graph, and its worker (queue, batching);
//! - [`serving`]: the served models, readiness, limits, tokens;
//! - [`protocol`]: the seed API's and the Open Inference Protocol's semantics, no transport;
//! - [`transport`]: HTTP (axum) and gRPC (tonic);
//! - [`server`]: the listeners, signals and drain of `predictor serve`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod allocator;
pub mod bundle;
pub mod defaults;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod postprocess;
pub mod prediction_log;
pub mod preprocess;
pub mod protocol;
pub mod request_context;
pub mod runtime;
pub mod server;
pub mod serving;
#[cfg(feature = "otlp")]
pub mod telemetry;
pub mod tensor;
pub mod text;
pub mod transport;
