//! What a request passes before its handler: its credentials (when the server has tokens), then,
//! for an inference request, its body read (transport::body), a place among the requests in
//! flight and a deadline.

use std::future::Future;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::serving::auth::CHALLENGE;
use crate::transport::body;
use crate::transport::routes::{self, Route};

/// One middleware (each layer costs a clone of the routes per request): the credentials, then
/// for a request that runs a model, its place and deadline.
pub async fn gate(State(registry): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| routes::find(path.as_str(), request.method()));
    if let Some(refusal) = unauthenticated(&registry, route, &request) {
        return refusal;
    }
    if !route.is_some_and(|route| route.inference) {
        return next.run(request).await;
    }
    // The body first, so that a slow sender holds no place among the requests in flight.
    let (parts, body) = request.into_parts();
    let limit = registry.limits().max_body_bytes;
    let body = match body::read(&registry, &parts.headers, body, limit).await {
        Ok(body) => body,
        Err(refusal) => return ApiError::from(refusal).into_response(),
    };
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    admitted(&registry, next.run(request)).await
}

/// The 401 for a request without a valid token, when the server has tokens and the route is not
/// open.
fn unauthenticated(
    registry: &AppState,
    route: Option<&Route>,
    request: &Request,
) -> Option<Response> {
    let tokens = registry.tokens()?;
    let authorization = request.headers().get(header::AUTHORIZATION);
    if route.is_some_and(|route| route.open)
        || tokens.accepts(authorization.map(HeaderValue::as_bytes))
    {
        return None;
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
    Some(response)
}

/// A request that runs a model, its body read, is admitted while fewer than
/// `max_concurrent_requests` are in flight, else refused at once; an admitted one that outlives
/// `request_timeout` is abandoned (a queued run is then skipped).
async fn admitted(registry: &AppState, answer: impl Future<Output = Response>) -> Response {
    let limits = registry.limits();
    let Some(_permit) = registry.admit() else {
        return ApiError::unavailable(limits.shed_message()).into_response();
    };
    match tokio::time::timeout(limits.request_timeout, answer).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(limits.timeout_message()).into_response(),
    }
}
