//! The wire: HTTP ([`http`], axum: the seed API, v2 REST, OpenAPI) and gRPC ([`grpc`], tonic: the
//! v2 service), each on its port or together on one ([`single_port`]). Each maps the serving
//! layer's errors to its own statuses, once.

/// Answers smaller than this go uncompressed even to callers that accept gzip or deflate, over
/// HTTP and gRPC: setting up a deflate stream (a few hundred kilobytes of zeroed state) costs more
/// than a small answer's whole request, and saves a handful of bytes.
pub const COMPRESS_ABOVE_BYTES: usize = 4096;

pub mod body;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod listener;
mod parse_error_answers;
pub mod routes;
pub mod single_port;
pub mod timed_answer;
