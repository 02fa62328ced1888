//! The wire: HTTP ([`http`], axum: the seed API, v2 REST, OpenAPI) and gRPC ([`grpc`], tonic: the
//! v2 service), each on its port or together on one ([`single_port`]). Each maps the serving
//! layer's errors to its own statuses, once.

pub mod body;
pub mod grpc;
pub mod http;
pub mod listener;
mod parse_error_answers;
pub mod single_port;
pub mod timed_answer;
