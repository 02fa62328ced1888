//! The HTTP side of the observation ([`crate::transport::observe`]): the route's labels (the
//! model named in the path), the request id (the v2 inference handler may choose the request's
//! own `id`), the `x-request-id` and `traceparent` headers of the answer, and a JSON body for the
//! error answers the layers below the handlers write without one.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use tracing::Instrument;

use super::error::InternalDetail;
use super::ApiError;
use super::AppState;
use crate::metrics::RouteLabels;
use crate::request_context::{choose_request_id, REQUEST_ID, TRACEPARENT};
use crate::transport::observe::Observation;
use crate::transport::routes::{self, Matched};
use crate::transport::timed_answer::timed;

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub async fn observe(State(registry): State<AppState>, request: Request, next: Next) -> Response {
    let found = routes::find(request.uri().path(), request.method());
    let endpoint = found.as_ref().map_or("unmatched", |found| found.endpoint);
    let route = found.as_ref().and_then(|found| found.route);
    let model = match (route, found.as_ref().and_then(Matched::model)) {
        (Some(route), Some(name)) if route.model_scoped => registry.model_label(&name),
        // The seed API at the root serves the only model.
        (Some(route), None) if route.model_scoped => match registry.models() {
            [only] => only.name().to_string(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let caller_id = header(request.headers(), &REQUEST_ID_HEADER).map(str::to_string);
    // The v2 inference handler prefers the request's own `id` and records the id itself.
    let handler_decides = route.is_some_and(|route| route.handler_chooses_request_id());
    let request_id = (!handler_decides).then(|| choose_request_id(None, caller_id.as_deref()));
    // A request dropped unanswered (its connection gone) is counted as 499, as nginx logs it.
    let labels = RouteLabels {
        model,
        protocol: "http",
        endpoint: endpoint.to_string(),
    };
    let observation = Observation::start(
        &registry,
        request.method().as_str(),
        labels,
        request_id.as_deref(),
        header(request.headers(), &TRACEPARENT_HEADER),
        "499",
    );
    let mut response = next
        .run(request)
        .instrument(observation.span().clone())
        .await;

    let request_id = match (response.extensions_mut().remove::<RequestId>(), request_id) {
        (Some(RequestId(chosen)), _) => chosen,
        (None, Some(id)) => id,
        // The handler did not run (an unknown model, a wrong method).
        (None, None) => {
            let id = choose_request_id(None, caller_id.as_deref());
            observation.identify(&id);
            id
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    let traceparent = observation.answer_traceparent();
    if let Some(value) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    // Errors written by layers below the handlers (an unknown Content-Encoding's 415) come
    // without a body: every error answer has its JSON one.
    let failed = response.status().is_client_error() || response.status().is_server_error();
    if failed && !response.headers().contains_key(header::CONTENT_TYPE) {
        response = with_json_body(response);
    }
    if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
        observation.internal_error(detail);
    }
    let timer = observation.answered(response.status().as_str());
    response.map(|body| timed(body, timer))
}

/// The request id's and the trace context's headers, parsed once.
pub(super) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `response` with `{"error": ...}` for a body: what its status means, in the server's words.
fn with_json_body(response: Response) -> Response {
    let status = response.status();
    let message = match status.as_u16() {
        415 => "the request's Content-Encoding is not one this server decodes: send gzip, deflate or identity".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut answer = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        answer.headers_mut().entry(name).or_insert(value.clone());
    }
    answer
}
