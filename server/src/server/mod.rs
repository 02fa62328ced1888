//! `predictor serve` once its models are loaded: the three listeners (HTTP, gRPC, metrics), or one
//! for all three, the signals, and a bounded drain. It returns, never exits, so that the caller
//! flushes the logs.

mod activation;
pub mod listener;
pub mod notify;
mod parse_error_answers;
pub mod single_port;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::ops::memory_bound::{self, MemoryBound};
use crate::serving::Registry;
use crate::transport::grpc;
use crate::transport::http::{self, HttpOptions};
use listener::{ConnectionLimits, ConnectionPlaces, Protocols};
use single_port::ByProtocol;

/// Where and how the listeners listen: the deployment's settings.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub address: IpAddr,
    pub ports: Ports,
    /// How long requests in flight may finish after the first SIGTERM or SIGINT.
    pub drain_timeout: Duration,
    /// The largest request body or gRPC message, decompressed.
    pub max_body_bytes: usize,
    /// Origins whose pages may call the HTTP API (CORS).
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// The timeouts and caps of every connection.
    pub connections: ConnectionLimits,
    /// Connections of the whole process (None: from the open-file limit).
    pub max_connections: Option<usize>,
}

/// The ports, each 0 for a free one (the "listening" log line says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// HTTP (seed API, v2 REST), gRPC and metrics, each on its own port: the default.
    Separate { http: u16, grpc: u16, metrics: u16 },
    /// All three on one port, routed by protocol (`--single-port`: Knative gives one port).
    Single(u16),
}

/// Refuses, before any model loads, sockets passed by systemd that the listeners could not take
/// (named otherwise, or too many or few for `single_port`): a unit restarting on failure would
/// otherwise load every model again before each refusal.
pub fn check_passed_sockets(single_port: bool) -> Result<(), String> {
    match activation::passed_to_this_process()? {
        Some(passed) => passed.assign(single_port).map(|_| ()),
        None => Ok(()),
    }
}

/// Descriptors the process keeps for itself (models, logs, ONNX Runtime, the listeners: about
/// 15) and for the new connections still choosing a place ([`listener::CHOOSING_AT_ONCE`]).
const RESERVED_FILES: usize = 64;

/// The regular and overflow places for connections: `max_connections` regular ones (by default
/// the open-file limit less the overflow places and a reserve), and up to 64 overflow places, so
/// that the process never runs out of descriptors; and how many they are together.
fn connection_places(max_connections: Option<usize>) -> (ConnectionPlaces, usize) {
    let files = open_file_limit().unwrap_or(1024);
    let overflow = (files / 8).min(64);
    let regular = max_connections
        .unwrap_or_else(|| files.saturating_sub(overflow + RESERVED_FILES))
        .max(1);
    tracing::info!(
        open_file_limit = files,
        connections = regular,
        overflow_connections = overflow,
        "connection places"
    );
    (ConnectionPlaces::new(regular, overflow), regular + overflow)
}

/// Logs what callers can make the server hold, as a formula of its flags
/// ([`memory_bound`]), beside its models' own runs.
fn log_memory_bound(registry: &Registry, options: &ListenOptions, connections: usize) {
    let limits = registry.limits();
    let bound = MemoryBound::of(&memory_bound::Flags {
        max_upload_bytes: limits.max_upload_bytes as u64,
        max_body_bytes: limits.max_body_bytes as u64,
        max_concurrent_requests: limits.max_concurrent_requests.get() as u64,
        connections: connections as u64,
        max_concurrent_streams: u64::from(options.connections.max_concurrent_streams),
        max_image_pixels: registry
            .models()
            .iter()
            .filter_map(|model| model.max_image_pixels())
            .max(),
        image_decoders: crate::model::image_decoders() as u64,
    });
    tracing::info!(
        memory_bound_mib = memory_bound::mib(bound.total()),
        uploads_mib = memory_bound::mib(bound.uploads),
        requests_mib = memory_bound::mib(bound.requests),
        connections_mib = memory_bound::mib(bound.connections),
        spare_mib = memory_bound::mib(bound.spare),
        "memory bound: what callers can make the server hold beside its models' runs (docs/operations.md)"
    );
}

/// The soft limit on open files, as `/proc/self/limits` says (Linux; the standard library does
/// not read it).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `registry` until a signal, then drains; Ok once every request in flight finished, an
/// error when the drain timeout or a second signal cut it short (or a listener failed).
pub fn run(registry: Arc<Registry>, options: &ListenOptions) -> Result<(), String> {
    let router = http::router(
        registry.clone(),
        &HttpOptions {
            max_body_bytes: options.max_body_bytes,
            cors_origins: options.cors_origins.clone(),
        },
    );
    let reactor = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let served = reactor.block_on(async {
        // Listening for the signals before saying "listening": a supervisor may signal as soon
        // as it reads that line, and an unhandled SIGTERM would kill the process undrained.
        let mut signals = ShutdownSignals::listen()?;
        // Said before "listening", which is the last line of the start.
        let (places, connections) = connection_places(options.max_connections);
        log_memory_bound(&registry, options, connections);
        let listeners = match activation::passed_to_this_process()? {
            Some(passed) => {
                tracing::info!(
                    names = passed.names.join(":"),
                    "taking the listening sockets systemd passed (socket activation)"
                );
                Listeners::passed(&passed, options.ports)?
            }
            None => Listeners::bind(options.address, options.ports).await?,
        };
        listeners.log_listening()?;
        // Every model is loaded and has passed its sample: a notify unit is started now.
        notify::notify(&format!(
            "READY=1\nSTATUS=serving {} models",
            registry.models().len()
        ));
        if let Some(period) = notify::watchdog_period() {
            tokio::spawn(tell_the_watchdog(registry.clone(), period));
        }
        let stopping = CancellationToken::new();
        let drain_timeout = options.drain_timeout;
        // Draining has a bound: a stalled client or a second signal ends it. The listeners are
        // then left unfinished, and `run` returns an error, so that main still flushes the
        // logs and spans before exiting 1.
        let drained_or_forced = {
            let (registry, stopping) = (registry.clone(), stopping.clone());
            async move {
                signals.next().await;
                tracing::info!("shutting down: not ready, no new connections, finishing requests in flight");
                registry.begin_shutdown();
                notify::notify("STOPPING=1\nSTATUS=draining the requests in flight");
                stopping.cancel();
                tokio::select! {
                    _ = signals.next() => {
                        tracing::warn!("second signal: stopping without waiting for requests in flight");
                    }
                    _ = tokio::time::sleep(drain_timeout) => {
                        tracing::warn!(
                            seconds = drain_timeout.as_secs(),
                            "requests still in flight after the drain timeout; stopping"
                        );
                    }
                }
                Err::<(), _>("stopped before the requests in flight finished".to_string())
            }
        };
        let on = |protocols| Serving {
            protocols,
            options,
            places: places.clone(),
            stopping: stopping.clone(),
        };
        let metrics = http::metrics_router(registry.clone());
        let grpc = grpc::service(registry.clone(), options.max_body_bytes);
        let served = async {
            match listeners {
                Listeners::Separate([http_listener, grpc_listener, metrics_listener]) => {
                    tokio::try_join!(
                        on(Protocols::Http1AndH2c).serve("HTTP", router, http_listener),
                        on(Protocols::H2Only).serve("gRPC", grpc, grpc_listener),
                        on(Protocols::Http1AndH2c).serve("metrics", metrics, metrics_listener),
                    )
                    .map(|_| ())
                }
                Listeners::Single(listener) => {
                    let service = ByProtocol {
                        http: router,
                        grpc,
                        metrics,
                    };
                    // HTTP/1.1 and h2c: gRPC is HTTP/2, and REST callers may speak either.
                    on(Protocols::Http1AndH2c)
                        .serve("single-port", service, listener)
                        .await
                }
            }
        };
        tokio::select! {
            served = served => served,
            forced = drained_or_forced => forced,
        }
    });
    // Connections still open are dropped with their tasks, without waiting for them.
    reactor.shutdown_background();
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Says `WATCHDOG=1` twice a watchdog `period`, with a status line, while every model answers: a
/// model whose run has lasted longer than the request timeout and a period more (its callers gave
/// up on it long ago), or whose worker stopped, is not answering, and the service manager then
/// restarts the server. The pings come from the reactor: a reactor that stalls stops them too.
async fn tell_the_watchdog(registry: Arc<Registry>, period: Duration) {
    let allowed = registry.limits().request_timeout + period;
    let mut ticks = tokio::time::interval(period / 2);
    let mut silent = false;
    loop {
        ticks.tick().await;
        match registry.not_answering(allowed) {
            None => {
                silent = false;
                let doing = if registry.is_serving() {
                    format!("serving {} models", registry.models().len())
                } else {
                    "draining".to_string()
                };
                notify::notify(&format!(
                    "WATCHDOG=1\nSTATUS={doing}, {} requests in flight",
                    registry.requests_in_flight()
                ));
            }
            Some(why) if !silent => {
                silent = true;
                tracing::error!(
                    why,
                    "not answering: no longer telling the watchdog the server lives, so that the service manager restarts it"
                );
                notify::notify(&format!("STATUS=not answering: {why}"));
            }
            Some(_) => {}
        }
    }
}

/// The listeners: HTTP, gRPC and metrics, or the one for all; bound by the server, or passed by
/// systemd.
enum Listeners {
    Separate([TcpListener; 3]),
    Single(TcpListener),
}

impl Listeners {
    /// Listens on `ports` of `address`.
    async fn bind(address: IpAddr, ports: Ports) -> Result<Listeners, String> {
        let bind = |port| async move {
            let address = SocketAddr::new(address, port);
            TcpListener::bind(address)
                .await
                .map_err(|error| format!("cannot listen on {address}: {error}"))
        };
        Ok(match ports {
            Ports::Separate {
                http,
                grpc,
                metrics,
            } => Listeners::Separate([bind(http).await?, bind(grpc).await?, bind(metrics).await?]),
            Ports::Single(port) => Listeners::Single(bind(port).await?),
        })
    }

    /// The sockets systemd `passed` (socket activation): the ports and address flags are not
    /// used then, the socket units say where to listen.
    fn passed(passed: &activation::Passed, ports: Ports) -> Result<Listeners, String> {
        let take = |fd| {
            activation::listener(fd).and_then(|listener| {
                TcpListener::from_std(listener).map_err(|error| {
                    format!("cannot serve the socket systemd passed as descriptor {fd}: {error}")
                })
            })
        };
        Ok(match passed.assign(matches!(ports, Ports::Single(_)))? {
            activation::Assignment::Separate {
                http,
                grpc,
                metrics,
            } => Listeners::Separate([take(http)?, take(grpc)?, take(metrics)?]),
            activation::Assignment::Single(fd) => Listeners::Single(take(fd)?),
        })
    }

    /// The last line of the start, naming where each protocol listens (on a single port, the
    /// one address for all three, so that whoever reads the line finds each protocol).
    fn log_listening(&self) -> Result<(), String> {
        let local = |listener: &TcpListener| listener.local_addr().map_err(|e| e.to_string());
        match self {
            Listeners::Separate([http, grpc, metrics]) => tracing::info!(
                address = %local(http)?,
                grpc_address = %local(grpc)?,
                metrics_address = %local(metrics)?,
                "listening"
            ),
            Listeners::Single(listener) => {
                let address = local(listener)?;
                tracing::info!(
                    address = %address,
                    grpc_address = %address,
                    metrics_address = %address,
                    single_port = true,
                    "listening"
                );
            }
        }
        Ok(())
    }
}

/// How a listener is served: its protocols, the shared connection places, and the stop.
struct Serving<'a> {
    protocols: Protocols,
    options: &'a ListenOptions,
    places: ConnectionPlaces,
    stopping: CancellationToken,
}

impl Serving<'_> {
    /// One listener, served until `stopping`; its failure named `name`.
    async fn serve(
        self,
        name: &str,
        service: impl crate::transport::Service + Clone,
        tcp: TcpListener,
    ) -> Result<(), String> {
        listener::serve(
            service,
            tcp,
            self.protocols,
            &self.options.connections,
            self.places,
            self.stopping,
        )
        .await
        .map_err(|error| format!("{name} listener failed: {error}"))
    }
}

/// SIGINT and SIGTERM, handled from the moment `listen` returns.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn listen() -> Result<Self, String> {
        let listen = |kind| {
            signal(kind).map_err(|error| format!("cannot listen for SIGINT and SIGTERM: {error}"))
        };
        Ok(ShutdownSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
