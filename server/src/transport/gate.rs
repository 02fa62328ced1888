//! What a call passes before its handler, over HTTP and gRPC alike, in this order: who calls (a
//! valid bearer token when the server has tokens, unless its route is open), then, for an
//! inference, its body, read whole ([`body::read`]) so that a slow sender holds no place, then a
//! place among the requests in flight, held until its answer is sent ([`held_until_sent`]; for a
//! stream of inferences, each message's body as it comes, and each message's place). The policy
//! is the call's route ([`crate::transport::routes`]); each transport turns a [`Refusal`] into its
//! own status.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Response};
use http_body::Frame;
use tokio::sync::OwnedSemaphorePermit;

use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::transport::body;
use crate::transport::routes::Route;

/// Why a call is not let through.
#[derive(Debug)]
pub enum Refusal {
    /// The route needs a token and the call carries no valid one; `presented` says whether it
    /// carried credentials at all.
    Unauthenticated { presented: bool },
    /// Its body was refused (too large, too slow), or the server has no room for it.
    Refused(ServeError),
}

/// A call let through: its body (read whole for an inference, untouched otherwise) and, for an
/// inference, its place among the requests in flight, to hold until it is answered.
pub struct Passed {
    pub body: Body,
    pub place: Option<OwnedSemaphorePermit>,
}

/// The gate of one call to `route` (None: a call the server does not have, which its transport
/// answers). `limit` is the largest body an inference may send (each message of a stream).
pub async fn pass(
    registry: &Arc<Registry>,
    route: Option<&Route>,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Passed, Refusal> {
    if let Some(tokens) = registry.tokens() {
        let authorization = headers.get(header::AUTHORIZATION);
        let open = route.is_some_and(|route| route.open);
        if !open && !tokens.accepts(authorization.map(HeaderValue::as_bytes)) {
            return Err(Refusal::Unauthenticated {
                presented: authorization.is_some(),
            });
        }
    }
    if route.is_some_and(|route| route.inference_stream) {
        let body = body::messages(registry.clone(), body, limit);
        return Ok(Passed { body, place: None });
    }
    if !route.is_some_and(|route| route.inference) {
        return Ok(Passed { body, place: None });
    }
    let body = body::read(registry, headers, body, limit)
        .await
        .map_err(Refusal::Refused)?;
    let place = registry.admit().ok_or_else(|| {
        Refusal::Refused(ServeError::unavailable(registry.limits().shed_message()))
    })?;
    Ok(Passed {
        body: Body::from(body),
        place: Some(place),
    })
}

/// `answer` with `place` held until its body has been sent whole, or dropped (its connection
/// closed, at the latest at the send timeout): an answer waiting for a caller that does not read
/// counts among the requests in flight, so that the answers held in memory are at most
/// `--max-concurrent-requests`, whatever the callers read.
pub fn held_until_sent(answer: Response<Body>, place: OwnedSemaphorePermit) -> Response<Body> {
    answer.map(|body| {
        Body::new(PlaceHeld {
            body,
            _place: place,
        })
    })
}

/// An answer's body and the place of its request.
struct PlaceHeld {
    body: Body,
    _place: OwnedSemaphorePermit,
}

impl http_body::Body for PlaceHeld {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
