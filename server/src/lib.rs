//! predictor: one server for every ONNX model described by a `predictor.toml` bundle.
//!
//! Layers, each with its own error type: [`tensor`] (data), [`bundle`] (the file format),
//! [`runtime`] (the only user of `ort`), [`model`] (a bundle checked and running), [`http`]
//! (routes and the listener), [`init`] (scaffolding a bundle), [`probe`] (asking a running
//! server, for health checks and smoke tests).

pub mod bundle;
pub mod http;
pub mod init;
pub mod logging;
pub mod model;
pub mod probe;
pub mod runtime;
pub mod tensor;
