//! Where the server listens, what its health checks ask and how large a request may be: one
//! definition shared by the command line's defaults, the routes and the generated Kubernetes
//! manifests, so they cannot drift apart.

/// HTTP: the seed REST API and the Open Inference Protocol v2 over REST (`--port`).
pub const HTTP_PORT: u16 = 8080;
/// The Open Inference Protocol v2 over gRPC (`--grpc-port`).
pub const GRPC_PORT: u16 = 8081;
/// Prometheus metrics (`--metrics-port`), at [`METRICS_PATH`].
pub const METRICS_PORT: u16 = 8082;
/// How long requests in flight may finish after SIGTERM (`--drain-timeout-seconds`).
pub const DRAIN_TIMEOUT_SECONDS: u64 = 30;
/// The largest request body or gRPC message, decompressed (`--max-body-bytes`).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// 200 while the process runs (the protocol's server liveness).
pub const LIVE_PATH: &str = "/v2/health/live";
/// 200 once every bundle is loaded and passed its sample; 400 from the moment shutdown begins.
pub const READY_PATH: &str = "/v2/health/ready";
/// The metrics listener's one route.
pub const METRICS_PATH: &str = "/metrics";
