//! The models one process serves, whether it is ready for them, and the limits and credentials
//! every listener applies; shared by the HTTP and gRPC listeners.

pub mod auth;
pub mod decoding;
pub mod error;
pub mod shared_memory;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::auth::Tokens;
use self::shared_memory::SharedMemory;
use crate::defaults;
use crate::metrics::Metrics;
use crate::model::Model;

/// How much work the server admits at once, on every listener together.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Inference requests handled at once; one more is refused at once (503, UNAVAILABLE).
    pub max_concurrent_requests: NonZeroUsize,
    /// How long an inference request may take, queueing included, before it is abandoned.
    pub request_timeout: Duration,
    /// The largest request body or gRPC message.
    pub max_body_bytes: usize,
    /// How long an inference request's body may take to arrive; it is read before the request
    /// takes a place among those in flight, so that a slow sender holds no inference slot.
    pub body_read_timeout: Duration,
    /// The bytes of inference request bodies still arriving, all together: the bound on their
    /// memory. A body holds what it has sent, not what it declares, so a slow sender holds
    /// little.
    pub max_upload_bytes: usize,
}

impl Limits {
    /// Why a request was shed, the same on every protocol.
    pub fn shed_message(&self) -> String {
        format!(
            "the server is handling {} requests, its limit (--max-concurrent-requests); retry later",
            self.max_concurrent_requests
        )
    }

    /// Why a body was refused for its size, the same on every protocol.
    pub fn too_large_message(&self) -> String {
        format!(
            "the request body is larger than this server accepts ({} bytes, its --max-body-bytes); send fewer rows per request",
            self.max_body_bytes
        )
    }

    /// Why a body was given up on, the same on every protocol.
    pub fn too_slow_message(&self) -> String {
        format!(
            "the request body did not arrive within {} s (--body-read-timeout-seconds)",
            self.body_read_timeout.as_secs_f64()
        )
    }

    /// Why a body was not read on, the same on every protocol.
    pub fn uploads_message(&self) -> String {
        format!(
            "the server is reading {} bytes of request bodies, its limit (--max-upload-bytes); retry later",
            self.max_upload_bytes
        )
    }

    /// Why a request was abandoned, the same on every protocol.
    pub fn timeout_message(&self) -> String {
        format!(
            "the request did not finish within {} s (--request-timeout-seconds); the server is busy, retry later",
            self.request_timeout.as_secs_f64()
        )
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            request_timeout: Duration::from_secs(defaults::REQUEST_TIMEOUT_SECONDS),
            max_body_bytes: defaults::MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(defaults::BODY_READ_TIMEOUT_SECONDS),
            max_upload_bytes: defaults::MAX_UPLOAD_BYTES,
        }
    }
}

/// The unit in which upload bytes are counted (a semaphore counts at most u32::MAX permits).
pub const UPLOAD_UNIT: usize = 1024;

pub struct Registry {
    models: Vec<Arc<Model>>,
    /// True until shutdown begins; a channel so that those who must act at that moment (the gRPC
    /// health service's watchers) can wait for it.
    serving: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
    limits: Limits,
    admission: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    tokens: Option<Tokens>,
    shared_memory: SharedMemory,
}

impl Registry {
    /// Every model is loaded and has passed its sample by now, so the registry starts ready.
    /// With `tokens`, every request but the health probes must carry one of them.
    pub fn new(
        models: Vec<Model>,
        metrics: Arc<Metrics>,
        limits: Limits,
        tokens: Option<Tokens>,
    ) -> Self {
        Registry {
            models: models.into_iter().map(Arc::new).collect(),
            serving: tokio::sync::watch::Sender::new(true),
            metrics,
            admission: Arc::new(Semaphore::new(limits.max_concurrent_requests.get())),
            uploads: Arc::new(Semaphore::new(
                limits.max_upload_bytes.div_ceil(UPLOAD_UNIT),
            )),
            limits,
            tokens,
            shared_memory: SharedMemory::disabled(),
        }
    }

    /// The same registry with the system shared memory extension as given (off by default).
    pub fn with_shared_memory(self, shared_memory: SharedMemory) -> Self {
        Registry {
            shared_memory,
            ..self
        }
    }

    pub fn shared_memory(&self) -> &SharedMemory {
        &self.shared_memory
    }

    /// A registry with no model, default limits and no tokens, for the listeners' unit tests.
    #[cfg(test)]
    pub fn without_models() -> Arc<Self> {
        Arc::new(Registry::new(
            Vec::new(),
            Default::default(),
            Default::default(),
            None,
        ))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A place for one more inference request, held until it is answered; None when
    /// `max_concurrent_requests` are already in flight (the caller sheds the request).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.admission.clone().try_acquire_owned().ok()
    }

    /// Room for `bytes` more of a body being read, held until the body is read; None when the
    /// bodies being read hold `max_upload_bytes` already.
    pub fn hold_upload(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(bytes.div_ceil(UPLOAD_UNIT)).ok()?;
        self.uploads.clone().try_acquire_many_owned(units).ok()
    }

    /// The bearer tokens requests must carry, if the server was given any.
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The models in the order given on the command line.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.iter().find(|m| m.name() == name)
    }

    /// The message for a model this server does not have, listing those it has.
    pub fn unknown_model(&self, name: &str) -> String {
        format!(
            "unknown model '{}'; this server has {}",
            crate::text::clip(name),
            self.names()
        )
    }

    pub fn names(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("'{}'", m.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// False from the moment shutdown begins (the listeners stop accepting then, and the requests
    /// in flight finish), or once any model has stopped.
    pub fn is_ready(&self) -> bool {
        self.is_serving() && self.models.iter().all(|model| model.is_ready())
    }

    /// Whether `model` can answer: the server is not shutting down and the model's worker runs.
    pub fn is_model_ready(&self, model: &Model) -> bool {
        self.is_serving() && model.is_ready()
    }

    /// Why the server does not answer, if it does not: a model whose worker has stopped, or whose
    /// run has lasted longer than `longest` (a run that ONNX Runtime never ends holds its worker,
    /// and every request queued behind it, for good). The watchdog stops saying the server lives.
    pub fn not_answering(&self, longest: Duration) -> Option<String> {
        self.models.iter().find_map(|model| {
            if !model.is_ready() {
                return Some(format!(
                    "model '{}' has stopped: its worker ended",
                    model.name()
                ));
            }
            let run = model.longest_run();
            (run > longest).then(|| {
                format!(
                    "a run of model '{}' has lasted {:.0} s, longer than the request timeout and \
                     the watchdog period ({:.0} s)",
                    model.name(),
                    run.as_secs_f64(),
                    longest.as_secs_f64()
                )
            })
        })
    }

    /// Inference requests admitted and not answered yet.
    pub fn requests_in_flight(&self) -> usize {
        self.limits.max_concurrent_requests.get() - self.admission.available_permits()
    }

    /// Whether shutdown has not begun.
    pub fn is_serving(&self) -> bool {
        *self.serving.borrow()
    }

    /// Returns once shutdown has begun (at once if it has).
    pub async fn shutdown_begun(&self) {
        // The sender lives as long as self, so the wait ends only by the value.
        let _ = self.serving.subscribe().wait_for(|serving| !serving).await;
    }

    pub fn begin_shutdown(&self) {
        self.serving.send_replace(false);
        self.metrics
            .shutting_down(self.models.iter().map(|m| m.name().to_string()));
    }

    /// The model label of a request for `name`: the name when this server has such a model, else
    /// empty, so that a caller cannot create series by inventing names.
    pub fn model_label(&self, name: &str) -> String {
        self.find(name)
            .map(|m| m.name().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::bundle::Bundle;
    use crate::model::LoadOptions;
    use crate::model::PredictError;
    use crate::runtime::fake::{FakeBackend, STOP};
    use crate::tensor::{Tensor, TensorData};

    /// A bundle the fake backend passes: y = x, one value per row.
    const FAKE_BUNDLE: &str = r#"
        schema_version = 1
        name = "fake"
        version = "1"
        model = "model.onnx"
        [[inputs]]
        name = "x"
        dtype = "float32"
        shape = [-1, 1]
        [[outputs]]
        name = "y"
        dtype = "float32"
        shape = [-1, 1]
        [sample]
        input = [[1]]
        output = [[1]]
        tolerance = 0
    "#;

    fn served_fake() -> Registry {
        let bundle = Bundle::parse(Path::new("fake/predictor.toml"), FAKE_BUNDLE).unwrap();
        let metrics = Metrics::new();
        let options = LoadOptions::default();
        let model = Model::start(
            bundle,
            vec![FakeBackend::echo()],
            String::new(),
            1,
            Instant::now(),
            &options,
            &metrics,
        )
        .unwrap();
        Registry::new(vec![model], Arc::new(metrics), Limits::default(), None)
    }

    /// A worker that stopped is named as not answering (a run that lasts too long is the
    /// worker's test: the fake model's sample runs at start, before a test could hold it).
    #[tokio::test]
    async fn a_stopped_worker_is_not_answering() {
        let registry = served_fake();
        let model = registry.models()[0].clone();
        let allowed = Duration::from_secs(60);
        assert_eq!(registry.not_answering(allowed), None);
        let one = |value| vec![Tensor::new(vec![1, 1], TensorData::Float32(vec![value])).unwrap()];
        assert!(model.infer(one(2.0)).await.is_ok());
        assert_eq!(registry.not_answering(allowed), None);
        assert_eq!(
            registry.requests_in_flight(),
            0,
            "admission is the transport's"
        );
        let _ = model.infer(one(STOP)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let why = loop {
            if let Some(why) = registry.not_answering(allowed) {
                break why;
            }
            assert!(
                Instant::now() < deadline,
                "the stopped worker was never seen"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(why, "model 'fake' has stopped: its worker ended");
    }

    #[tokio::test]
    async fn a_model_whose_worker_stopped_makes_the_server_unready() {
        let registry = served_fake();
        let model = registry.models()[0].clone();
        assert!(registry.is_ready() && registry.is_model_ready(&model));
        let one = |value| vec![Tensor::new(vec![1, 1], TensorData::Float32(vec![value])).unwrap()];
        assert!(model.infer(one(2.0)).await.is_ok());
        let stopped = model.infer(one(STOP)).await;
        assert!(
            matches!(stopped, Err(PredictError::Unavailable(_))),
            "{stopped:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.is_ready() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!registry.is_ready(), "the server still says it is ready");
        assert!(!registry.is_model_ready(&model));
        assert!(registry.is_serving(), "not shutting down: a model stopped");
        assert!(registry
            .metrics()
            .render()
            .contains("predictor_model_ready{model=\"fake\"} 0"));
    }
}
