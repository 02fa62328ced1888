//! OpenAI's embeddings API over HTTP: `POST /v1/embeddings` ([`crate::protocol::openai`]). Its
//! errors, the body's own included, are in OpenAI's shape, where its clients read the message.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, ApiJson, AppState};
use crate::protocol::openai::{self, EmbeddingsRequest};

pub(super) async fn embeddings(
    State(registry): State<AppState>,
    request: Result<ApiJson<EmbeddingsRequest>, ApiError>,
) -> Response {
    let answer = match request {
        Ok(ApiJson(request)) => openai::embeddings(&registry, request)
            .await
            .map_err(ApiError::from),
        Err(error) => Err(error),
    };
    match answer {
        Ok(embeddings) => Json(embeddings).into_response(),
        Err(error) => error.into_openai_response(),
    }
}
