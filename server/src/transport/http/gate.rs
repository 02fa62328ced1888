//! The HTTP side of the gate ([`crate::transport::gate`]): the route a request matched, its
//! refusals as HTTP answers, and for an inference its deadline.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::serving::auth::CHALLENGE;
use crate::transport::gate::{held_until_sent, pass, Refusal};
use crate::transport::routes;

/// One middleware (each layer costs a clone of the routes per request): the credentials, then
/// for a request that runs a model, its body, its place and its deadline: an admitted request
/// that outlives `request_timeout` is abandoned (a queued run is then skipped).
pub async fn gate(State(registry): State<AppState>, request: Request, next: Next) -> Response {
    // Found again rather than handed over by the observer: a lookup in the table costs less
    // than an entry in the request's extensions.
    let route = routes::find(request.uri().path(), request.method()).and_then(|found| found.route);
    let (parts, body) = request.into_parts();
    let limit = registry.limits().max_body_bytes;
    let passed = match pass(&registry, route, &parts.headers, body, limit).await {
        Ok(passed) => passed,
        Err(refusal) => return refused(refusal),
    };
    let answer = next.run(Request::from_parts(parts, passed.body));
    let Some(place) = passed.place else {
        return answer.await;
    };
    let limits = registry.limits();
    match tokio::time::timeout(limits.request_timeout, answer).await {
        Ok(response) => held_until_sent(response, place),
        Err(_) => ApiError::unavailable(limits.timeout_message()).into_response(),
    }
}

/// A refusal as HTTP says it: 401 with the bearer challenge, or the error's own status.
fn refused(refusal: Refusal) -> Response {
    let presented = match refusal {
        Refusal::Refused(error) => return ApiError::from(error).into_response(),
        Refusal::Unauthenticated { presented } => presented,
    };
    let message = if presented {
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
