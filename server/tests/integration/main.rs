//! The integration tests against the real `predictor` binary, as one test binary: each file here
//! was a test binary of its own, and every binary links the server and its dependencies again
//! (in the release profile of the Nix checks, with link-time optimisation, most of their build).
//! `otlp` and `fuzz_corpora` stay apart: each needs a feature of its own.

#[path = "../common/mod.rs"]
mod common;

mod batching;
mod bundles;
mod check_cli;
mod grpc_compression;
mod hostile;
mod layering;
mod limits;
mod manifests;
mod memory_bound;
mod observability;
mod probe_cli;
mod seed_api;
mod service_manager;
mod shutdown;
mod single_port;
mod strings_and_maps;
