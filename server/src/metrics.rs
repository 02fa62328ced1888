//! Prometheus metrics: one registry per process, exposed in the OpenMetrics text format on a
//! listener of its own (`--metrics-port`), apart from the APIs. Names start with `predictor_` and
//! carry their unit; label values come only from the server's own names (models, routes, status
//! codes), never from what a caller sends, so that no request can grow the number of series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tracing::Span;

/// The OpenMetrics content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The model a request was for; empty for server-wide endpoints.
    pub model: String,
    /// `http` or `grpc`.
    pub protocol: &'static str,
    /// The route (`/v2/models/{model}/infer`) or gRPC method (`ModelInfer`).
    pub endpoint: String,
    /// The HTTP status code, or the gRPC status code's name.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub model: String,
    pub protocol: &'static str,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelInfoLabels {
    pub model: String,
    pub version: String,
    /// sha256 of the model file, as the OCI image's `io.predictor.model.sha256` label.
    pub model_sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub onnxruntime: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds: 0.25 ms to about 8 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// Rows per run: 1 to 4096, doubling.
fn rows_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    in_flight: Family<ProtocolLabels, Gauge>,
    queue_duration: HistogramFamily<ModelLabels>,
    inference_duration: HistogramFamily<ModelLabels>,
    batch_rows: HistogramFamily<ModelLabels>,
    queue_depth: Family<ModelLabels, Gauge>,
    queue_capacity: Family<ModelLabels, Gauge>,
    load_duration: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    model_ready: Family<ModelLabels, Gauge>,
    model_info: Family<ModelInfoLabels, Gauge>,
    build_info: Family<BuildLabels, Gauge>,
}

/// The handles a model's worker records into, made once at load.
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    /// Time from a request's arrival in the queue to the start of its run.
    pub queue_duration: Histogram,
    /// Time ONNX Runtime took for one run.
    pub inference_duration: Histogram,
    /// Rows in one run.
    pub batch_rows: Histogram,
    /// Requests waiting in the queue now.
    pub queue_depth: Gauge,
    /// 1 while the model serves; its worker sets 0 should it stop.
    pub model_ready: Gauge,
    /// The counts and durations of Triton's statistics extension, from the same measurements.
    pub statistics: Arc<ModelStatistics>,
}

/// A count and a cumulative duration, as Triton's `StatisticDuration`.
#[derive(Debug, Default)]
pub struct StatisticDuration {
    count: AtomicU64,
    nanoseconds: AtomicU64,
}

impl StatisticDuration {
    pub fn add(&self, elapsed: std::time::Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanoseconds = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanoseconds.fetch_add(nanoseconds, Ordering::Relaxed);
    }

    /// (count, nanoseconds).
    pub fn get(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.nanoseconds.load(Ordering::Relaxed),
        )
    }
}

/// What Triton's statistics extension reports of a model, since it was loaded.
#[derive(Debug, Default)]
pub struct ModelStatistics {
    /// Requests answered, and the time from their arrival at the model to the answer.
    pub success: StatisticDuration,
    /// Requests that failed in the model (refused input, failed run, full queue).
    pub fail: StatisticDuration,
    /// The time requests waited in the queue.
    pub queue: StatisticDuration,
    /// The time of the runs each request was part of.
    pub compute_infer: StatisticDuration,
    /// Rows run, and runs.
    pub inference_count: AtomicU64,
    pub execution_count: AtomicU64,
    /// Milliseconds since the Unix epoch of the last answered request (0: none yet).
    pub last_inference_ms: AtomicU64,
    /// Runs by their rows (the batch size).
    batches: Mutex<BTreeMap<u64, (u64, u64)>>,
}

impl ModelStatistics {
    /// A run of `rows` rows that took `elapsed`.
    pub fn ran(&self, rows: usize, elapsed: std::time::Duration) {
        self.inference_count
            .fetch_add(rows as u64, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let nanoseconds = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Ok(mut batches) = self.batches.lock() {
            let entry = batches.entry(rows as u64).or_default();
            entry.0 += 1;
            entry.1 += nanoseconds;
        }
    }

    /// A request answered (or failed) `elapsed` after it reached the model.
    pub fn answered(&self, ok: bool, elapsed: std::time::Duration) {
        if ok {
            self.success.add(elapsed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            self.last_inference_ms.store(now, Ordering::Relaxed);
        } else {
            self.fail.add(elapsed);
        }
    }

    /// (batch size, runs, nanoseconds) for every batch size run so far.
    pub fn batches(&self) -> Vec<(u64, u64, u64)> {
        self.batches.lock().map_or_else(
            |_| Vec::new(),
            |batches| {
                batches
                    .iter()
                    .map(|(&size, &(runs, ns))| (size, runs, ns))
                    .collect()
            },
        )
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(duration_histogram),
            in_flight: Family::default(),
            queue_duration: Family::new_with_constructor(duration_histogram),
            inference_duration: Family::new_with_constructor(duration_histogram),
            batch_rows: Family::new_with_constructor(rows_histogram),
            queue_depth: Family::default(),
            queue_capacity: Family::default(),
            load_duration: Family::default(),
            model_ready: Family::default(),
            model_info: Family::default(),
            build_info: Family::default(),
            registry: Registry::default(),
        };
        // Counters get `_total` and units their suffix from the encoder: predictor_requests_total,
        // predictor_request_duration_seconds, ...
        registry.register(
            "predictor_requests",
            "Requests answered, by model, protocol, endpoint and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "predictor_request_duration",
            "Time from a request's arrival until the last byte of its answer was handed to the connection",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "predictor_requests_in_flight",
            "Requests being answered now",
            metrics.in_flight.clone(),
        );
        registry.register_with_unit(
            "predictor_queue_duration",
            "Time a request waited for its model's worker",
            Unit::Seconds,
            metrics.queue_duration.clone(),
        );
        registry.register_with_unit(
            "predictor_inference_duration",
            "Time ONNX Runtime took for one run of a model",
            Unit::Seconds,
            metrics.inference_duration.clone(),
        );
        registry.register(
            "predictor_batch_rows",
            "Rows in one run of a model (the batch size)",
            metrics.batch_rows.clone(),
        );
        registry.register(
            "predictor_queue_depth",
            "Requests waiting for a model's worker now",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "predictor_queue_capacity",
            "Requests that may wait for a model's worker before new ones get 503",
            metrics.queue_capacity.clone(),
        );
        registry.register_with_unit(
            "predictor_model_load_duration",
            "Time to load a model and check its sample",
            Unit::Seconds,
            metrics.load_duration.clone(),
        );
        registry.register(
            "predictor_model_ready",
            "1 when a model is ready for inference, 0 once shutdown begins or its worker has stopped",
            metrics.model_ready.clone(),
        );
        registry.register(
            "predictor_model_info",
            "1 for each served model, with its version and the sha256 of its model file",
            metrics.model_info.clone(),
        );
        registry.register(
            "predictor_build_info",
            "1, with the server's version and ONNX Runtime's",
            metrics.build_info.clone(),
        );
        // Both protocols' requests in flight exist from the start, at 0: an autoscaler's query on
        // them (KEDA's) then reads an idle server as 0, not as a series that is absent.
        for protocol in ["http", "grpc"] {
            metrics
                .in_flight
                .get_or_create(&ProtocolLabels { protocol })
                .set(0);
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Records the server's version and ONNX Runtime's.
    pub fn set_build_info(&self, onnxruntime: &str) {
        self.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                onnxruntime: onnxruntime.to_string(),
            })
            .set(1);
    }

    /// Records a model as loaded and ready, and returns the handles its worker records into.
    pub fn model_loaded(
        &self,
        info: ModelInfoLabels,
        load_time: Duration,
        queue_capacity: usize,
    ) -> ModelMetrics {
        let labels = ModelLabels {
            model: info.model.clone(),
        };
        self.load_duration
            .get_or_create(&labels)
            .set(load_time.as_secs_f64());
        self.queue_capacity
            .get_or_create(&labels)
            .set(queue_capacity as i64);
        self.model_ready.get_or_create(&labels).set(1);
        self.model_info.get_or_create(&info).set(1);
        ModelMetrics {
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            inference_duration: self.inference_duration.get_or_create_owned(&labels),
            batch_rows: self.batch_rows.get_or_create_owned(&labels),
            queue_depth: self.queue_depth.get_or_create_owned(&labels),
            model_ready: self.model_ready.get_or_create_owned(&labels),
            statistics: Arc::default(),
        }
    }

    /// Every model not ready: shutdown has begun.
    pub fn shutting_down(&self, models: impl IntoIterator<Item = String>) {
        for model in models {
            self.model_ready
                .get_or_create(&ModelLabels { model })
                .set(0);
        }
    }

    /// A request arrived on `route`; `span` is its span, and `abandoned` the status it is
    /// counted with should its caller go away before the answer.
    pub fn request_started(
        &self,
        route: RouteLabels,
        span: Span,
        abandoned: &'static str,
    ) -> RequestRecord<'_> {
        let in_flight = self.in_flight.get_or_create_owned(&ProtocolLabels {
            protocol: route.protocol,
        });
        in_flight.inc();
        RequestRecord {
            metrics: self,
            route,
            recorded: false,
            span,
            started: Instant::now(),
            in_flight,
            abandoned,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail; a metric that could not encode would end the text.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

/// One request from its arrival: in flight until answered; then, or when dropped unanswered (its
/// caller went away and the server dropped its work), the access log line in the request's span
/// and the request counted by model, protocol, endpoint and status. Its duration is observed by
/// the [`AnswerTimer`] it then gives, once the answer is written.
pub struct RequestRecord<'m> {
    metrics: &'m Metrics,
    route: RouteLabels,
    recorded: bool,
    span: Span,
    started: Instant,
    in_flight: Gauge,
    abandoned: &'static str,
}

impl RequestRecord<'_> {
    /// The request was answered with `status` (an HTTP code, or a gRPC code's name); its
    /// duration ends when the returned timer is dropped, which the transport does once the
    /// answer's body has given its last byte to the connection: the encoding of a streamed body
    /// and the compression of a large answer count too. Bytes the connection still holds then
    /// (HTTP/2 flow control, the kernel's send buffer) are out of the server's sight.
    pub fn answered(mut self, status: &str) -> AnswerTimer {
        self.record(status)
    }

    fn record(&mut self, status: &str) -> AnswerTimer {
        self.recorded = true;
        self.in_flight.dec();
        let route = &self.route;
        let elapsed = self.started.elapsed();
        tracing::info!(
            parent: &self.span,
            model = %route.model,
            status,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            "request"
        );
        let metrics = self.metrics;
        let timer = AnswerTimer {
            histogram: metrics.request_duration.get_or_create(route).clone(),
            started: self.started,
        };
        metrics
            .requests
            .get_or_create(&RequestLabels {
                model: std::mem::take(&mut self.route.model),
                protocol: self.route.protocol,
                endpoint: std::mem::take(&mut self.route.endpoint),
                status: status.to_string(),
            })
            .inc();
        timer
    }
}

impl Drop for RequestRecord<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            let abandoned = self.abandoned;
            // No answer to write: the duration ends now.
            drop(self.record(abandoned));
        }
    }
}

/// The end of a request's duration: when dropped, its time since the request's arrival goes
/// to `predictor_request_duration_seconds`.
pub struct AnswerTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for AnswerTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
