//! The one error type every HTTP handler returns: a status and `{"error": "..."}`, whatever the
//! layer it came from. Internal details are logged, not returned.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::model::PredictError;
use crate::protocol::v2::InferError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds after which a retry may succeed, for 503 answers.
    retry_after: Option<u32>,
}

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

impl From<PredictError> for ApiError {
    fn from(error: PredictError) -> Self {
        let status = match &error {
            PredictError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            PredictError::NoLabels(_) => StatusCode::NOT_FOUND,
            PredictError::Overloaded { .. } | PredictError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PredictError::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(%error, "prediction failed");
            return ApiError::new(
                status,
                "the model failed to run; the server log has the details",
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return ApiError::unavailable(error.to_string());
        }
        ApiError::new(status, error.to_string())
    }
}

impl From<InferError> for ApiError {
    fn from(error: InferError) -> Self {
        match error {
            InferError::NotFound(message) => ApiError::not_found(message),
            InferError::Predict(error) => error.into(),
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
