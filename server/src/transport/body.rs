//! Reading an inference request's body before the request takes a place among those in flight,
//! the same over HTTP and gRPC: within `--body-read-timeout-seconds` (else 408), within
//! `--max-upload-bytes` of every body being read together (else 503), and refused from its declared
//! length before a byte is read when that is over `--max-body-bytes` (so no `100 Continue` is
//! sent for it). The 413 goes out at once; the rest of a refused body is read on, and dropped, for
//! a bounded time behind it: a client still sending then reads the answer instead of a broken pipe
//! (nginx's lingering close), and one that waits for an answer before sending is not kept waiting.
//!
//! A stream of gRPC messages (ModelStreamInfer) is read by the gRPC library as it goes; each of its
//! messages is held to the same rules as ModelInfer's one ([`messages`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::serving::error::{ErrorKind, ServeError};
use crate::serving::{Registry, UPLOAD_UNIT};

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
    // The declared length (within the limit, checked above) at once: grown by doubling, a body's
    // buffer would hold up to twice its bytes.
    let declared = declared_length(headers).map_or(0, |length| length as usize);
    let mut collected = Vec::with_capacity(declared);
    let mut held = Held::default();
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
        if !held.grow(registry, data.len()) {
            return Err(ServeError::unavailable(limits.uploads_message()));
        }
        collected.extend_from_slice(&data);
    }
}

/// The upload room a body being read holds for the bytes it has sent: counted in whole units of
/// all of them, so that many small frames hold no more than their bytes (each frame rounded up
/// alone would let 10-byte frames of one byte each hold a kilobyte).
#[derive(Default)]
struct Held {
    bytes: usize,
    room: Vec<OwnedSemaphorePermit>,
}

impl Held {
    /// Room for `more` bytes; false when the bodies being read hold the whole budget.
    fn grow(&mut self, registry: &Registry, more: usize) -> bool {
        let total = self.bytes.saturating_add(more);
        let units = total.div_ceil(UPLOAD_UNIT) - self.bytes.div_ceil(UPLOAD_UNIT);
        if units > 0 {
            match registry.hold_upload(units * UPLOAD_UNIT) {
                Some(room) => self.room.push(room),
                None => return false,
            }
        }
        self.bytes = total;
        true
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

/// The body of a stream of gRPC messages, each held to what ModelInfer's single message is held
/// to by [`read`]: the length its frame header declares within `limit`, else TooLarge; its bytes,
/// while they arrive, within the upload budget shared with every body being read, else
/// Unavailable; all of it within `--body-read-timeout-seconds` from when the server first waits
/// for it, else TooSlow. Between messages nothing is held and no clock runs. An error ends the stream (the gRPC library
/// reads it as the call's status).
pub fn messages(registry: Arc<Registry>, body: Body, limit: usize) -> Body {
    Body::new(Messages {
        registry,
        inner: body,
        limit,
        header: [0; 5],
        header_read: 0,
        remaining: 0,
        held: Held::default(),
        deadline: None,
    })
}

struct Messages {
    registry: Arc<Registry>,
    inner: Body,
    limit: usize,
    /// The frame header being read (a compression flag, then the length, big-endian).
    header: [u8; 5],
    header_read: usize,
    /// The bytes still to come of the message being read, after its header.
    remaining: usize,
    /// The upload room the message being read holds.
    held: Held,
    /// When the message being read must have arrived whole, from the first wait for it.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Messages {
    /// Counts `data` into the messages it belongs to.
    fn account(&mut self, mut data: &[u8]) -> Result<(), ServeError> {
        let limits = self.registry.limits();
        while !data.is_empty() {
            let in_header = self.remaining == 0;
            let take = if in_header {
                (self.header.len() - self.header_read).min(data.len())
            } else {
                self.remaining.min(data.len())
            };
            if !self.held.grow(&self.registry, take) {
                return Err(ServeError::unavailable(limits.uploads_message()));
            }
            if in_header {
                self.header[self.header_read..self.header_read + take]
                    .copy_from_slice(&data[..take]);
                self.header_read += take;
                if self.header_read == self.header.len() {
                    self.header_read = 0;
                    let length = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]) as usize;
                    if length.saturating_add(self.header.len()) > self.limit {
                        return Err(ServeError::new(
                            ErrorKind::TooLarge,
                            limits.too_large_message(),
                        ));
                    }
                    self.remaining = length;
                }
            } else {
                self.remaining -= take;
            }
            if self.remaining == 0 && self.header_read == 0 {
                // A whole message: the gRPC library decodes it now, and it is admitted or not.
                self.held = Held::default();
                self.deadline = None;
            }
            data = &data[take..];
        }
        Ok(())
    }
}

impl http_body::Body for Messages {
    type Data = Bytes;
    type Error = ServeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ServeError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Pending => {
                let in_message = this.remaining > 0 || this.header_read > 0;
                if !in_message {
                    return Poll::Pending;
                }
                // The clock starts when the server first waits for the message: not while the
                // message before it runs, with this one's first bytes already in.
                let timeout = this.registry.limits().body_read_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(context).is_pending() {
                    return Poll::Pending;
                }
                let limits = this.registry.limits();
                let error = ServeError::new(ErrorKind::TooSlow, limits.too_slow_message());
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let counted = frame.data_ref().map_or(Ok(()), |data| this.account(data));
                Poll::Ready(Some(counted.map(|()| frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ServeError::invalid(format!(
                "the request body could not be read: {error}"
            ))))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
