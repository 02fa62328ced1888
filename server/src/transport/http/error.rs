//! The one error type every HTTP handler returns: a status and `{"error": "..."}`, whatever the
//! layer it came from. Internal details are logged by the observing middleware, not returned.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::model::PredictError;
use crate::serving::error::{ErrorKind, ServeError};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds after which a retry may succeed, for 503 answers.
    retry_after: Option<u32>,
    /// What an internal error's caller is not told, for the log.
    internal_detail: Option<String>,
}

/// An internal error's detail, in the extensions of its answer: the observing middleware logs it
/// in the request's span, once.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            internal_detail: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 503 with `Retry-After`: the server sheds this request; the same one may succeed later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

/// The one place HTTP statuses come from the serving layer's error kinds.
impl From<ServeError> for ApiError {
    fn from(error: ServeError) -> Self {
        let status = match error.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
                return ApiError::unavailable(error.public_message());
            }
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooSlow => StatusCode::REQUEST_TIMEOUT,
        };
        ApiError {
            internal_detail: error.internal_detail().map(str::to_string),
            ..ApiError::new(status, error.public_message())
        }
    }
}

impl From<PredictError> for ApiError {
    fn from(error: PredictError) -> Self {
        ServeError::from(error).into()
    }
}

impl ApiError {
    /// A 500 whose `detail` goes to the log (by the observing middleware), not to the caller.
    pub fn internal(detail: impl Into<String>) -> Self {
        ServeError::internal(detail).into()
    }
}

/// Malformed JSON, a wrong content type or an oversized body: axum's own message, our body shape.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

/// A body that could not be read (too large, or cut off).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

impl ApiError {
    fn rejected(status: StatusCode, text: String) -> Self {
        let text = crate::text::clip_message(&text);
        match status {
            // A body that parses as JSON but not as the request (a missing or unknown field) is as
            // much a bad request as one that does not parse.
            StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::new(StatusCode::BAD_REQUEST, text)
            }
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this server accepts (its --max-body-bytes); send fewer rows per request",
            ),
            status => ApiError::new(status, text),
        }
    }
}

/// OpenAI's error body, which its clients read the message of: `{"error": {"message": ...}}`.
#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// The answer in OpenAI's error shape, for `/v1/embeddings`: the same status, headers and
    /// message, the message where OpenAI's clients look for it.
    pub fn into_openai_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = Json(OpenAiErrorBody {
            error: OpenAiError {
                message: &self.message,
                kind,
                param: None,
                code: None,
            },
        })
        .into_response();
        self.respond(body)
    }

    /// `body` with this error's status, `Retry-After` and internal detail.
    fn respond(self, mut response: Response) -> Response {
        *response.status_mut() = self.status;
        if let Some(detail) = self.internal_detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: &self.message,
        })
        .into_response();
        self.respond(body)
    }
}
