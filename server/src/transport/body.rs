//! Reading an inference request's body before the request takes a place among those in flight,
//! the same over HTTP and gRPC: within `--body-read-timeout-seconds` (else 408), within
//! `--max-upload-bytes` of every body being read together (else 503), and refused from its declared
//! length before a byte is read when that is over `--max-body-bytes` (so no `100 Continue` is
//! sent for it). The 413 goes out at once; the rest of a refused body is read on, and dropped, for
//! a bounded time behind it: a client still sending then reads the answer instead of a broken pipe
//! (nginx's lingering close), and one that waits for an answer before sending is not kept waiting.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::serving::error::{ErrorKind, ServeError};
use crate::serving::Registry;

/// How long, and how much more, a refused body is read on before its 413.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_FACTOR: usize = 4;

/// The length a request declares, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The whole body, or why it was refused. `limit` is the largest body accepted (for gRPC, the
/// message limit plus its 5-byte frame header).
pub async fn read(
    registry: &Registry,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ServeError> {
    let limits = registry.limits();
    let too_large = || ServeError::new(ErrorKind::TooLarge, limits.too_large_message());
    let deadline = Instant::now() + limits.body_read_timeout;
    if declared_length(headers).is_some_and(|length| length > limit as u64) {
        // A client that waits for `100 Continue` gets the 413 instead, unread; one that sends
        // at once is read on for a while, so that it reads the 413 rather than a broken pipe.
        if !expects_continue(headers) {
            linger(body, limit, deadline);
        }
        return Err(too_large());
    }
    let mut body = body;
    let mut collected = Vec::new();
    let mut held = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(ServeError::new(
                    ErrorKind::TooSlow,
                    limits.too_slow_message(),
                ))
            }
            Ok(None) => return Ok(Bytes::from(collected)),
            Ok(Some(Err(error))) => {
                return Err(ServeError::invalid(format!(
                    "the request body could not be read: {error}"
                )))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if collected.len() + data.len() > limit {
            linger(body, limit, deadline);
            return Err(too_large());
        }
        // What has arrived counts against the bound of every body being read, until this one
        // is read (the handler's own memory is then bounded by --max-concurrent-requests).
        match registry.hold_upload(data.len()) {
            Some(room) => held.push(room),
            None => return Err(ServeError::unavailable(limits.uploads_message())),
        }
        collected.extend_from_slice(&data);
    }
}

/// Behind the refusal, which goes out meanwhile: reads and drops the rest of a refused body, at
/// most [`LINGER_FACTOR`] times `limit` bytes and until `deadline` or [`LINGER_TIME`] from now,
/// whichever comes first. The connection's place is held meanwhile, as by any request.
fn linger(mut body: Body, limit: usize, deadline: Instant) {
    let until = deadline.min(Instant::now() + LINGER_TIME);
    let budget = limit.saturating_mul(LINGER_FACTOR);
    tokio::spawn(async move {
        let mut dropped = 0usize;
        while dropped < budget {
            match tokio::time::timeout_at(until, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    dropped += frame.data_ref().map_or(0, Bytes::len);
                }
                _ => return,
            }
        }
    });
}
