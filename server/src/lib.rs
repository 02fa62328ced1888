//! predictor: one server for every ONNX model described by a `predictor.toml` bundle.
//!
//! Layers, each with its own error type: [`tensor`] (data), [`bundle`] (the file format),
//! [`runtime`] (the only user of `ort`), [`model`] (a bundle checked and running), [`http`]
//! (REST routes and the listener), [`grpc`] (the Open Inference Protocol's gRPC service),
//! [`init`] (scaffolding a bundle), [`probe`] (asking a running server, for health checks and
//! smoke tests), [`manifests`] (Kubernetes and KServe manifests of a bundle). [`oip`] holds what
//! REST and gRPC share of the Open Inference Protocol v2; [`registry`] the served models,
//! readiness and limits; [`auth`] the optional bearer tokens; [`endpoints`] the ports and health
//! paths that the command line, the routes and the manifests share.

pub mod auth;
pub mod bundle;
pub mod endpoints;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod init;
pub mod logging;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod oip;
pub mod probe;
pub mod registry;
pub mod request_context;
pub mod runtime;
#[cfg(feature = "otlp")]
pub mod telemetry;
pub mod tensor;
pub mod worker;
