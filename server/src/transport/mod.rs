//! The wire: HTTP ([`http`], axum: the seed API, v2 REST, OpenAPI) and gRPC ([`grpc`], tonic: the
//! v2 service), with the table of calls both serve ([`routes`]) and their one gate ([`gate`]). The
//! listeners that carry them are the server's ([`crate::server`]). Each maps the serving
//! layer's errors to its own statuses, once.

/// Answers smaller than this go uncompressed even to callers that accept gzip or deflate, over
/// HTTP and gRPC: setting up a deflate stream (a few hundred kilobytes of zeroed state) costs more
/// than a small answer's whole request, and saves a handful of bytes.
pub const COMPRESS_ABOVE_BYTES: usize = 4096;

pub mod body;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod observe;
pub mod routes;
pub mod timed_answer;

/// What a listener serves: an axum router, or a tower service with the same request and
/// answer types (the gRPC service behind its gate).
pub trait Service:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> Service for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}
