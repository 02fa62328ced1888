//! What a request passes before its handler: its credentials (when the server has tokens), then,
//! for an inference request, a place among the requests in flight and a deadline.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::CHALLENGE;
use crate::endpoints::{LIVE_PATH, READY_PATH};

/// Routes open without a token: the probes of load balancers and orchestrators, and the API
/// description.
pub const OPEN_ENDPOINTS: &[&str] = &[
    "/health",
    "/models/{model}/health",
    LIVE_PATH,
    READY_PATH,
    "/v2/models/{model}/ready",
    "/v2/models/{model}/versions/{version}/ready",
    "/openapi.json",
];

pub async fn authenticate(
    State(registry): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = registry.tokens() else {
        return next.run(request).await;
    };
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let open = endpoint.is_some_and(|endpoint| OPEN_ENDPOINTS.contains(&endpoint));
    let authorization = request.headers().get(header::AUTHORIZATION);
    if open || tokens.accepts(authorization.map(HeaderValue::as_bytes)) {
        return next.run(request).await;
    }
    let message = if authorization.is_some() {
        "the Authorization header does not carry a valid bearer token"
    } else {
        "this server needs a bearer token: send `Authorization: Bearer <token>`"
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    response
}

/// Requests that run a model are admitted while fewer than `max_concurrent_requests` are in
/// flight, else refused at once, before their body is read; an admitted one that outlives
/// `request_timeout` is abandoned (a queued run is then skipped).
pub async fn admit(State(registry): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    // Every POST, and the seed's GET /predict/test (it runs the sample).
    if request.method() != Method::POST && !endpoint.contains("/predict") {
        return next.run(request).await;
    }
    let limits = registry.limits();
    let Some(_permit) = registry.admit() else {
        return ApiError::unavailable(limits.shed_message()).into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(limits.timeout_message()).into_response(),
    }
}
