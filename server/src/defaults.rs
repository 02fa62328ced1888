//! Every default of the deployment: where the server listens, what its health checks ask and the
//! limits a request meets. One definition shared by the command line, the routes and the
//! generated Kubernetes manifests, so they cannot drift apart.

use std::num::NonZeroUsize;

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

/// Inference requests handled at once, on every listener together (`--max-concurrent-requests`).
pub const MAX_CONCURRENT_REQUESTS: NonZeroUsize = at_least_one(64);
/// How long an inference request may take, queueing included (`--request-timeout-seconds`).
pub const REQUEST_TIMEOUT_SECONDS: u64 = 30;
/// Requests that may wait for one model's worker (`--max-queued-requests`).
pub const MAX_QUEUED_REQUESTS: NonZeroUsize = at_least_one(64);
/// Rows (the first dimension) one request may send (`--max-rows-per-request`).
pub const MAX_ROWS_PER_REQUEST: NonZeroUsize = at_least_one(4096);
/// Pixels one image sent to an image bundle may have (`--max-image-pixels`): 16.7 million
/// (4096 x 4096), about 48 MiB decoded. An image's header is read first: a larger one is
/// refused before it is decoded.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 24;
/// The largest size of a dynamic dimension other than the rows, where the bundle declares no
/// `max_shape`: a sequence of tokens, an image's height or width. Past it a request is refused.
pub const MAX_DYNAMIC_SIZE: usize = 1024;
/// Seconds an inference request's body may take to arrive (`--body-read-timeout-seconds`).
pub const BODY_READ_TIMEOUT_SECONDS: u64 = 30;
/// Bytes of inference request bodies still arriving, all together (`--max-upload-bytes`).
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;

/// Seconds an HTTP/1 client may take to send a request head, the wait for the next one on a
/// kept-alive connection included (`--header-read-timeout-seconds`).
pub const HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
/// Seconds a connection may have no request in progress (`--idle-timeout-seconds`).
pub const IDLE_TIMEOUT_SECONDS: u64 = 60;
/// Seconds between HTTP/2 pings; a peer silent that long after one is dropped
/// (`--http2-keepalive-seconds`).
pub const HTTP2_KEEPALIVE_SECONDS: u64 = 20;
/// HTTP/2 streams at once on one connection, on the HTTP and gRPC ports
/// (`--max-concurrent-streams`).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Requests in flight per replica beyond which the generated autoscalers add replicas
/// (`predictor manifests --target-in-flight`): an eighth of what one server admits at once.
pub const TARGET_IN_FLIGHT_PER_REPLICA: u32 = 8;

/// `count` as a NonZeroUsize, in a constant (where neither unwrap nor expect is allowed).
const fn at_least_one(count: usize) -> NonZeroUsize {
    match NonZeroUsize::new(count) {
        Some(count) => count,
        None => NonZeroUsize::MIN,
    }
}

/// Where POSIX shared memory objects live (`shm_open`'s folder on Linux), for the system shared
/// memory extension.
pub const SHARED_MEMORY_DIR: &str = "/dev/shm";

/// The longest prediction log line: under journald's default `LineMax` (48 KiB), which would
/// split a longer line in two.
pub const PREDICTION_LOG_MAX_RECORD_BYTES: usize = 16 * 1024;

/// BYTES (string) elements one request may send, every input together. Each costs about 100
/// bytes of memory however short it is (the string, ONNX Runtime's copies of it), so without a
/// bound a body of empty strings would cost 25 times its size; this many hold a batch of texts
/// far beyond what a text model takes at once.
pub const MAX_STRING_ELEMENTS: usize = 65_536;
