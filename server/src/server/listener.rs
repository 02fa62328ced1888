//! How every listener (HTTP, gRPC, metrics) accepts and keeps connections, so that hostile
//! connections cannot exhaust the process: each accepted socket sends at once (TCP_NODELAY); an
//! HTTP/1 request head must arrive within a bound (the wait for the next request on a kept-alive
//! connection included); a connection with no request in progress for a while is closed, HTTP/2
//! ones too, whatever else it sends (an HTTP/2 peer that only answers pings is idle); HTTP/2 peers
//! are pinged, and streams per connection are capped; and the connections of the whole process are
//! capped below its open-file limit. A connection whose answers stop reaching its peer is closed
//! after the send timeout.
//!
//! Places go to those who use them: past the cap a new connection takes the place of one that has
//! sent no request (the one the server has waited for longest), or of one idle between requests,
//! which is closed; so a caller that sends its request at once is served while attackers hold
//! every place, however fast they reconnect. Without such a place it is still served, as an
//! overflow: one request, a short time to send it, then closed. Overflow places are capped too;
//! past them a connection is closed at once (the open-file limit keeps headroom for the process's
//! own files).
//!
//! When the server stops, connections close without losing a request: an HTTP/2 one is told at
//! once (GOAWAY: its peer opens its next stream elsewhere, the streams it began are answered); an
//! HTTP/1 one answers its next requests with `Connection: close` and closes once it has had none
//! in progress for `DRAIN_GRACE` (a caller between two requests is not raced, nor one that has
//! just connected and not sent yet). Callers then reconnect: under systemd, to the sockets the
//! next instance takes over.
//!
//! The answers hyper writes by itself to bytes that are no HTTP/1 request get a JSON body on the
//! way out (`parse_error_answers`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body::Frame;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ops::memory_bound;
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
    /// How long an answer may make no progress towards its caller (the socket takes no byte, or
    /// an answer's next piece is not taken) before its connection is closed, freeing what it held.
    pub send_timeout: Duration,
    /// HTTP/2: how often the server pings a peer; one that does not answer within the same time
    /// is dropped.
    pub keepalive_interval: Duration,
    /// HTTP/2: streams (requests) at once on one connection.
    pub max_concurrent_streams: u32,
}

/// The places for connections of the whole process, shared by its listeners, and who holds the
/// regular ones.
#[derive(Clone)]
pub struct ConnectionPlaces {
    regular: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    holders: Arc<Mutex<Holders>>,
    /// New connections waiting for the place of one they ended: each holds a descriptor until
    /// the ended one closes, so they are few (the open-file limit's reserve covers them).
    evictions: Arc<Semaphore>,
    /// One for each accepted connection until it has a place or is closed, taken in the accept
    /// loop before accepting: however fast connections arrive, the tasks still choosing (each
    /// holding a descriptor) are few, and a burst of them once ran the process out.
    choosing: Arc<Semaphore>,
}

/// The connections in regular places: what each is doing, and how to end it.
#[derive(Default)]
struct Holders {
    next: u64,
    by_id: HashMap<u64, (Arc<Activity>, CancellationToken)>,
}

/// How long an overflow connection may take to send its one request, or stay idle.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection that has been served must have been idle before a new connection may
/// take its place: a kept-alive caller's next request is not raced.
const EVICTABLE_BETWEEN_REQUESTS: Duration = Duration::from_secs(1);
/// New connections that may wait for an ended connection's place at once.
const EVICTIONS_AT_ONCE: usize = 16;
/// New connections that may be choosing a place at once (those waiting for an ended connection's
/// place among them): the process holds at most this many descriptors past the places.
pub(super) const CHOOSING_AT_ONCE: usize = 2 * EVICTIONS_AT_ONCE;
/// How long a new connection waits for the place of the connection it ended.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// While the server stops: how long an HTTP/1 connection (or one that has not sent its first
/// request) may have no request in progress before it is closed. A caller that keeps its
/// connection sends its next request well within it, and is answered with `Connection: close`.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

impl ConnectionPlaces {
    pub fn new(regular: usize, overflow: usize) -> Self {
        ConnectionPlaces {
            regular: Arc::new(Semaphore::new(regular)),
            overflow: Arc::new(Semaphore::new(overflow)),
            holders: Arc::default(),
            evictions: Arc::new(Semaphore::new(EVICTIONS_AT_ONCE)),
            choosing: Arc::new(Semaphore::new(CHOOSING_AT_ONCE)),
        }
    }

    /// A place for a new connection: a free regular one; else the regular place of another,
    /// which is ended for it: the one whose peer has kept the server waiting longest for its
    /// first request (a request already in its socket, unread, is no wait of the peer's), else
    /// the one idle longest between requests (for at least [`EVICTABLE_BETWEEN_REQUESTS`]); else
    /// an overflow place; else none. So a caller that sends its request at once is served while
    /// attackers hold every place, however fast they reconnect (each new connection of theirs
    /// ends the oldest of their own), and a connection with a request in progress is never ended.
    async fn take(&self) -> Option<Place> {
        if let Ok(permit) = self.regular.clone().try_acquire_owned() {
            return Some(Place::Regular(permit));
        }
        if let Ok(_turn) = self.evictions.try_acquire() {
            if self.evict_longest_idle() {
                let freed = self.regular.clone().acquire_owned();
                if let Ok(Ok(permit)) = tokio::time::timeout(EVICTION_WAIT, freed).await {
                    return Some(Place::Regular(permit));
                }
            }
        }
        self.overflow
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Place::Overflow)
    }

    /// The turn of the next accepted connection to choose a place ([`ConnectionPlaces::take`]);
    /// none only if the semaphore were closed, which nothing does.
    async fn turn_to_choose(&self) -> Option<OwnedSemaphorePermit> {
        self.choosing.clone().acquire_owned().await.ok()
    }

    /// Ends the regular connection that [`ConnectionPlaces::take`] chooses, if there is one.
    fn evict_longest_idle(&self) -> bool {
        let holders = self
            .holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A connection never served waits for the peer's first request: evictable while the
        // server waits for its bytes, not while they sit unread (under load, a caller's request
        // may wait for the server longer than attackers take to turn over every other place).
        let longest = holders
            .by_id
            .values()
            .filter(|(_, evict)| !evict.is_cancelled())
            .filter_map(|(activity, evict)| {
                if activity.served() {
                    let idle = activity.idle_for();
                    (idle >= EVICTABLE_BETWEEN_REQUESTS).then_some((false, idle, evict))
                } else {
                    let waited = activity.peer_silent_for()?;
                    (activity.idle_for() > Duration::ZERO).then_some((true, waited, evict))
                }
            })
            // The never served first, then the longest waiting or idle.
            .max_by_key(|(never_served, waited, _)| (*never_served, *waited));
        match longest {
            Some((_, _, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }

    /// Registers a connection in a regular place until the returned guard is dropped.
    fn hold(&self, activity: Arc<Activity>, evict: CancellationToken) -> Holding {
        let mut holders = self
            .holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = holders.next;
        holders.next += 1;
        holders.by_id.insert(id, (activity, evict));
        Holding {
            holders: self.holders.clone(),
            id,
        }
    }
}

/// A connection's entry among the holders of regular places, removed when it ends.
struct Holding {
    holders: Arc<Mutex<Holders>>,
    id: u64,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut holders = self
            .holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        holders.by_id.remove(&self.id);
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
        // A turn to choose a place before accepting: past them, new connections wait in the
        // kernel's queue (first come, first accepted), holding none of the process' descriptors.
        let turn = tokio::select! {
            Some(turn) = places.turn_to_choose() => turn,
            () = stopping.cancelled() => break,
        };
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
        send_without_delay(&stream);
        let (regular, overflow) = (regular.clone(), overflow.clone());
        let (places, send_timeout) = (places.clone(), limits.send_timeout);
        let idle_timeout = limits.idle_timeout;
        let service = service.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let Some(place) = places.take().await else {
                // Past every place: closed at once, before it costs more than its descriptor.
                return;
            };
            drop(turn);
            let activity = Arc::new(Activity::new());
            let evict = CancellationToken::new();
            let (builder, idle, _holding) = match place {
                Place::Regular(_) => {
                    let holding = places.hold(activity.clone(), evict.clone());
                    (regular, idle_timeout, Some(holding))
                }
                Place::Overflow(_) => (overflow, OVERFLOW_TIMEOUT, None),
            };
            let timeouts = Timeouts {
                idle,
                send: send_timeout,
            };
            let ending = Ending { stopping, evict };
            serve_connection(stream, service, &builder, activity, timeouts, ending).await;
            // Out of the holders before the place is free: a new connection then cannot choose
            // this one to end.
            drop(_holding);
            drop(place);
        });
    }
    // Not accepting any more: connections that come now wait in the backlog, or are refused once
    // the listener closes (under socket activation, systemd holds the socket for the next
    // instance).
    drop(listener);
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
        // What a stream's answer may have buffered beyond the peer's window: one piece, not
        // hyper's 400 KiB, so that an answer the peer does not take stays with its request, whose
        // place it holds (`transport::gate::held_until_sent`), and the rest of what a stalled
        // connection holds is a piece a stream.
        .max_send_buf_size(PIECE)
        // Named here because the memory bound counts them (hyper's defaults).
        .initial_connection_window_size(memory_bound::HTTP2_CONNECTION_WINDOW)
        .max_header_list_size(memory_bound::HTTP2_HEADER_LIST)
        .max_concurrent_streams(if overflow {
            1
        } else {
            limits.max_concurrent_streams
        });
    builder
}

/// The timeouts one connection is held to.
#[derive(Clone, Copy)]
struct Timeouts {
    idle: Duration,
    send: Duration,
}

/// What ends a connection from outside: the server stopping, a new connection taking its place.
struct Ending {
    stopping: CancellationToken,
    evict: CancellationToken,
}

/// One connection, closed gracefully when the server stops or when it has been idle too long; at
/// once when its answers have made no progress for the send timeout (a peer that stopped
/// reading: nothing would reach it, a graceful close included), or when a new connection takes
/// its place while it has no request in progress.
async fn serve_connection<S: Service + Clone>(
    stream: TcpStream,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    ending: Ending,
) {
    let Ending { stopping, evict } = ending;
    let io = TokioIo::new(WithJsonParseErrors::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    }));
    let service = TowerToHyperService::new(InFlight {
        inner: service,
        activity: activity.clone(),
        stopping: stopping.clone(),
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    let mut draining = false;
    let mut spared = false;
    // When the idle close began: streams that never end (a health Watch) do not hold it open
    // past the send timeout.
    let mut idle_close: Option<Instant> = None;
    let mut check = tokio::time::interval(
        timeouts
            .idle
            .min(timeouts.send)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100)),
    );
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = stopping.cancelled(), if !draining => {
                draining = true;
                if !closing && activity.drained() {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = evict.cancelled(), if !closing && !spared => {
                if activity.idle_for() > Duration::ZERO {
                    if activity.served() || activity.peer_silent_for().is_some() {
                        break;
                    }
                    // Its first request's bytes came since it was chosen: it keeps its place
                    // (the newcomer waits for another, or takes an overflow place).
                    spared = true;
                    continue;
                }
                // A request began since it was chosen: it is answered, then the connection closes.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick() => {
                if activity.stalled_for() >= timeouts.send {
                    tracing::debug!("closing a connection whose answers made no progress");
                    break;
                }
                if idle_close.is_some_and(|since| since.elapsed() >= timeouts.send) {
                    break;
                }
                if draining && !closing && activity.drained() {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                if !closing && activity.idle_for() >= timeouts.idle {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    idle_close = Some(Instant::now());
                }
            }
        }
    }
}

/// What a connection is doing: its requests in progress and when the last one ended, and whether
/// its answers are getting to the peer.
struct Activity {
    started: Instant,
    last_millis: AtomicU64,
    in_progress: AtomicUsize,
    /// Answers that gave a piece which has not been taken since (the library comes back for the
    /// next piece once it has passed the last one on).
    waiting: AtomicUsize,
    /// When an answer's piece was last taken or the socket last took bytes.
    progress_millis: AtomicU64,
    /// When the socket began refusing bytes (its buffer full), plus one; 0 while it takes them.
    blocked_millis: AtomicU64,
    /// When a read last found the socket empty (the server waiting for the peer), plus one; 0
    /// once the peer sent bytes, and before the server first read: a connection whose request
    /// sits unread in its socket is not the peer's delay.
    peer_silent_millis: AtomicU64,
    /// Whether a request has come in on it.
    served: AtomicBool,
    /// Whether its requests came over HTTP/2 (none yet: false).
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            progress_millis: AtomicU64::new(0),
            blocked_millis: AtomicU64::new(0),
            peer_silent_millis: AtomicU64::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        }
    }

    /// Whether, the server stopping, the connection can be told to close now without racing a
    /// request: an HTTP/2 one at once (GOAWAY lets the streams already begun finish), another
    /// once it has had no request in progress for [`DRAIN_GRACE`].
    fn drained(&self) -> bool {
        self.http2.load(Ordering::Relaxed) || self.idle_for() >= DRAIN_GRACE
    }

    fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    fn now_millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn progressed(&self) {
        self.progress_millis
            .store(self.now_millis(), Ordering::Relaxed);
    }

    /// How long the connection's answers have not moved: the socket refusing bytes, or an answer's
    /// piece not taken (an HTTP/2 peer whose window stays closed).
    fn stalled_for(&self) -> Duration {
        let now = self.now_millis();
        let blocked = self.blocked_millis.load(Ordering::Relaxed);
        let since = if blocked > 0 {
            blocked - 1
        } else if self.waiting.load(Ordering::SeqCst) > 0 {
            self.progress_millis.load(Ordering::Relaxed)
        } else {
            return Duration::ZERO;
        };
        Duration::from_millis(now.saturating_sub(since))
    }

    /// How long the server has been waiting for the peer to send: none while the peer's bytes
    /// are coming, or have not been read yet.
    fn peer_silent_for(&self) -> Option<Duration> {
        let since = self.peer_silent_millis.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_millis(self.now_millis().saturating_sub(since - 1)))
    }

    /// How long the connection has had no request in progress (since it opened, or since the
    /// last moment one was): a request counts from its head to its answer's head, and again while
    /// a piece of its answer is out, not taken yet, or the socket refuses bytes. A stream that
    /// waits for its next message or event (a health Watch) is idle meanwhile.
    fn idle_for(&self) -> Duration {
        if self.in_progress.load(Ordering::SeqCst) > 0
            || self.blocked_millis.load(Ordering::Relaxed) != 0
        {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// The socket, noting when it refuses bytes (its send buffer full: the peer is not reading) and
/// when it takes them again.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn note(&self, polled: &Poll<std::io::Result<usize>>) {
        let blocked = &self.activity.blocked_millis;
        match polled {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.activity.now_millis() + 1, Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(written)) if *written > 0 => {
                if blocked.load(Ordering::Relaxed) != 0 {
                    blocked.store(0, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(context, buf);
        let silent = &self.activity.peer_silent_millis;
        match &polled {
            Poll::Pending => {
                if silent.load(Ordering::Relaxed) == 0 {
                    silent.store(self.activity.now_millis() + 1, Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if silent.load(Ordering::Relaxed) != 0 {
                    silent.store(0, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(context, data);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(context, data);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// Something of a request in progress on its connection: the request from its head to its
/// answer's head, or a piece of its answer that has not been taken yet (dropped: no longer).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::SeqCst);
        if !activity.served() {
            activity.served.store(true, Ordering::Relaxed);
        }
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

/// A piece of an answer given to the HTTP library and not taken back yet: in progress, and
/// waiting for the peer.
struct PieceOut(InProgress);

impl PieceOut {
    fn give(activity: &Arc<Activity>) -> Self {
        activity.waiting.fetch_add(1, Ordering::SeqCst);
        activity.progressed();
        PieceOut(InProgress::start(activity.clone()))
    }
}

impl Drop for PieceOut {
    fn drop(&mut self) {
        let activity = &self.0 .0;
        activity.waiting.fetch_sub(1, Ordering::SeqCst);
        activity.progressed();
    }
}

/// The largest piece of an answer given at once: HTTP/2 takes a whole piece once its peer's window
/// has room for one byte of it, so a larger answer is given in pieces, each asked for only once
/// the last has gone on, and a window that stays shut is seen as a stalled piece.
const PIECE: usize = memory_bound::ANSWER_PIECE;

/// An answer's body, in pieces of at most [`PIECE`] bytes, each in progress until it is taken.
struct Answering {
    body: Body,
    activity: Arc<Activity>,
    /// The rest of the inner body's last frame, not given yet.
    rest: Bytes,
    out: Option<PieceOut>,
}

impl http_body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        this.out = None; // the library came back: the piece has gone on
        if this.rest.is_empty() {
            let polled = Pin::new(&mut this.body).poll_frame(context);
            let Poll::Ready(Some(Ok(frame))) = polled else {
                return polled;
            };
            match frame.into_data() {
                Ok(data) => this.rest = data,
                Err(frame) => {
                    this.out = Some(PieceOut::give(&this.activity));
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(PIECE));
        this.out = Some(PieceOut::give(&this.activity));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    /// Not while a piece is out: the library then comes back once it has passed that piece on,
    /// which is how a last piece that never reaches the peer is noticed.
    fn is_end_stream(&self) -> bool {
        self.out.is_none() && self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// The service, counting the connection's requests in progress; once the server stops, its HTTP/1
/// answers say `Connection: close`.
#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    activity: Arc<Activity>,
    stopping: CancellationToken,
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
        let activity = self.activity.clone();
        let stopping = self.stopping.clone();
        let http1 = request.version() < axum::http::Version::HTTP_2;
        if !http1 && !activity.http2.load(Ordering::Relaxed) {
            activity.http2.store(true, Ordering::Relaxed);
        }
        let until_answered = InProgress::start(activity.clone());
        let answer = tower::ServiceExt::oneshot(self.inner.clone(), request.map(Body::new));
        Box::pin(async move {
            let mut answer = answer.await?;
            // The server is stopping: the caller's next request goes to a new connection (hyper
            // closes this one once the answer is written).
            if http1 && stopping.is_cancelled() {
                answer.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            drop(until_answered);
            Ok(answer.map(|body| {
                Body::new(Answering {
                    body,
                    activity,
                    rest: Bytes::new(),
                    out: None,
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
