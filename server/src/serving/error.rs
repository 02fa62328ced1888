//! The one error every request path ends in, whatever layer failed: a [`ErrorKind`] that each
//! transport maps to its status once (HTTP in `transport::http::error`, gRPC in
//! `transport::grpc`), and a message for the caller. An internal error's detail is not the
//! caller's to read: the transports log it once, where the request is observed, and answer a fixed
//! sentence.

use std::fmt;

use crate::model::PredictError;
use crate::runtime::RuntimeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request does not fit the model or the protocol: the caller's to fix (400,
    /// INVALID_ARGUMENT).
    InvalidInput,
    /// No such model, version or route (404, NOT_FOUND).
    NotFound,
    /// Shed or refused for now (a limit, a full queue, shutdown); the same request may succeed
    /// later (503 with Retry-After, UNAVAILABLE).
    Unavailable,
    /// Abandoned at its deadline, `--request-timeout-seconds` (503 with Retry-After,
    /// DEADLINE_EXCEEDED).
    DeadlineExceeded,
    /// A body larger than `--max-body-bytes` (413, OUT_OF_RANGE).
    TooLarge,
    /// A body that did not arrive within `--body-read-timeout-seconds` (408, DEADLINE_EXCEEDED).
    TooSlow,
    /// The server's own failure: a model that failed inside ONNX Runtime or broke its bundle's
    /// declarations (500, INTERNAL).
    Internal,
}

#[derive(Debug)]
pub struct ServeError {
    kind: ErrorKind,
    message: String,
}

/// What a caller is told of an internal error.
pub const INTERNAL_MESSAGE: &str = "the model failed to run; the server log has the details";

impl ServeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServeError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ServeError::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ServeError::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ServeError::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        ServeError::new(ErrorKind::Internal, detail)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What the caller reads: the message, or for an internal error a fixed sentence.
    pub fn public_message(&self) -> &str {
        match self.kind {
            ErrorKind::Internal => INTERNAL_MESSAGE,
            _ => &self.message,
        }
    }

    /// The detail of an internal error, for the log; None for any other kind.
    pub fn internal_detail(&self) -> Option<&str> {
        (self.kind == ErrorKind::Internal).then_some(self.message.as_str())
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServeError {}

impl From<PredictError> for ServeError {
    fn from(error: PredictError) -> Self {
        let kind = match &error {
            PredictError::InvalidInput(_) => ErrorKind::InvalidInput,
            PredictError::Overloaded { .. } | PredictError::Unavailable(_) => {
                ErrorKind::Unavailable
            }
            PredictError::Runtime(RuntimeError::RejectedInput(_)) => ErrorKind::InvalidInput,
            PredictError::Runtime(_) => ErrorKind::Internal,
        };
        ServeError::new(kind, error.to_string())
    }
}
