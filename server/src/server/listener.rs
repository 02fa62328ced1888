//! How every listener (HTTP, gRPC, metrics) accepts and keeps connections, so that hostile
//! connections cannot exhaust the process: each accepted socket sends at once (TCP_NODELAY); an
//! HTTP/1 request head must arrive within a bound (the wait for the next request on a kept-alive
//! connection included); a connection with no request in progress for a while is closed, HTTP/2
//! ones too, whatever else it sends (an HTTP/2 peer that only answers pings is idle); HTTP/2 peers
//! are pinged, and streams per connection are capped; and the connections of the whole process are
//! capped below its open-file limit.
//!
//! Past the cap a connection is still served, but as an overflow: one request, a short time to
//! send it, then closed. So a health probe still gets its answer while idle attackers hold every
//! regular place, and the attackers' connections are closed by the timeouts. Overflow places are
//! capped too; past them a connection is closed at once (the open-file limit keeps headroom for
//! the process's own files).
//!
//! The answers hyper writes by itself to bytes that are no HTTP/1 request get a JSON body on the
//! way out (`parse_error_answers`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body::Frame;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::transport::Service;
use tokio_util::task::TaskTracker;

use super::parse_error_answers::WithJsonParseErrors;

/// The connection bounds, the same on every listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// HTTP/1: how long a client may take to send a request head, counted from the moment the
    /// connection is ready for one (its opening, or the end of the previous answer).
    pub header_read_timeout: Duration,
    /// How long a connection may have no request in progress (from its head to the last byte of
    /// its answer) before it is closed (HTTP/1 and HTTP/2), whatever else it sends.
    pub idle_timeout: Duration,
    /// HTTP/2: how often the server pings a peer; one that does not answer within the same time
    /// is dropped.
    pub keepalive_interval: Duration,
    /// HTTP/2: streams (requests) at once on one connection.
    pub max_concurrent_streams: u32,
}

/// The places for connections of the whole process, shared by its listeners.
#[derive(Debug, Clone)]
pub struct ConnectionPlaces {
    regular: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
}

/// How long an overflow connection may take to send its one request, or stay idle.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);

impl ConnectionPlaces {
    pub fn new(regular: usize, overflow: usize) -> Self {
        ConnectionPlaces {
            regular: Arc::new(Semaphore::new(regular)),
            overflow: Arc::new(Semaphore::new(overflow)),
        }
    }

    fn take(&self) -> Option<Place> {
        if let Ok(permit) = self.regular.clone().try_acquire_owned() {
            return Some(Place::Regular(permit));
        }
        self.overflow
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Place::Overflow)
    }
}

enum Place {
    Regular(#[allow(dead_code)] OwnedSemaphorePermit),
    Overflow(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// Which protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 and HTTP/2 without TLS (h2c), told apart by the connection preface.
    Http1AndH2c,
    /// HTTP/2 only: gRPC.
    H2Only,
}

/// Serves `router` on `listener` until `stopping` is cancelled, then stops accepting, lets each
/// connection finish its requests in flight (graceful shutdown) and returns once all are closed.
pub async fn serve<S>(
    service: S,
    listener: TcpListener,
    protocols: Protocols,
    limits: &ConnectionLimits,
    places: ConnectionPlaces,
    stopping: CancellationToken,
) -> std::io::Result<()>
where
    S: Service + Clone,
{
    let regular = builder(protocols, limits, false);
    let overflow = builder(protocols, limits, true);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted: the
                // listener itself is fine. A short pause keeps a full table from spinning.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = places.take() else {
            // Past every place: closed at once, before it costs more than its descriptor.
            drop(stream);
            continue;
        };
        send_without_delay(&stream);
        let (builder, idle_timeout) = match place {
            Place::Regular(_) => (regular.clone(), limits.idle_timeout),
            Place::Overflow(_) => (overflow.clone(), OVERFLOW_TIMEOUT),
        };
        let service = service.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            serve_connection(stream, service, &builder, idle_timeout, stopping).await;
            drop(place);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Accepted connections send at once (TCP_NODELAY): with Nagle's algorithm an answer written in
/// two pieces waits for the client's delayed ACK, about 40 ms on Linux (every gRPC answer of more
/// than about 160 bytes of tensor data did).
fn send_without_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::warn!(%error, "cannot set TCP_NODELAY on an accepted connection");
    }
}

fn builder(
    protocols: Protocols,
    limits: &ConnectionLimits,
    overflow: bool,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if protocols == Protocols::H2Only {
        builder = builder.http2_only();
    }
    let head_timeout = if overflow {
        OVERFLOW_TIMEOUT
    } else {
        limits.header_read_timeout
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .keep_alive(!overflow);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_interval)
        .max_concurrent_streams(if overflow {
            1
        } else {
            limits.max_concurrent_streams
        });
    builder
}

/// One connection, closed gracefully when the server stops or when it has been idle too long.
async fn serve_connection<S: Service + Clone>(
    stream: TcpStream,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    stopping: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WithJsonParseErrors::new(stream));
    let service = TowerToHyperService::new(InFlight {
        inner: service,
        activity: activity.clone(),
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    let mut check = tokio::time::interval(
        idle_timeout
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100)),
    );
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = stopping.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick(), if !closing => {
                if activity.idle_for() >= idle_timeout {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// What a connection is doing: its requests in progress and when the last one ended.
struct Activity {
    started: Instant,
    last_millis: AtomicU64,
    in_progress: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
        }
    }

    /// How long the connection has had no request in progress (since it opened, or since its
    /// last request's answer ended).
    fn idle_for(&self) -> Duration {
        if self.in_progress.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// One request in progress on its connection, from its head until its answer's body has ended
/// (or the request or answer was dropped: a caller gone, a connection closed).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_millis.store(now, Ordering::Relaxed);
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body, keeping its request in progress until it ends.
struct Answering {
    body: Body,
    _request: InProgress,
}

impl http_body::Body for Answering {
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

/// The service, counting the connection's requests in progress.
#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: Service + Clone, B> tower::Service<axum::http::Request<B>> for InFlight<S>
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let in_progress = InProgress::start(self.activity.clone());
        let answer = tower::ServiceExt::oneshot(self.inner.clone(), request.map(Body::new));
        Box::pin(async move {
            let answer = answer.await?;
            Ok(answer.map(|body| {
                Body::new(Answering {
                    body,
                    _request: in_progress,
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(
            !accepted.nodelay().unwrap(),
            "Linux's default, which serve changes"
        );
        send_without_delay(&accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
