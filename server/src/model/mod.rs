//! A served model: a bundle checked against its ONNX graph and its sample, and the worker thread
//! that owns its ONNX Runtime session, so that inference never runs on the async reactor.

pub mod dimensions;
mod process_memory;
mod stages;
pub mod worker;

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tracing::Span;

use self::dimensions::SharedDimension;
use self::stages::{ImageStage, OutputStage, TextStage};
use self::worker::{Batching, Job, Padding, Queue, Refused};
use crate::bundle::sample::{abridged_json, compare, perturbed, raw_json};
use crate::bundle::{Bundle, BundleError, LabelRule, TensorSpec};
use crate::defaults;
use crate::metrics::{Metrics, ModelInfoLabels, ModelMetrics};
use crate::prediction_log::{Inference, Kept, PredictionLog};
use crate::runtime::{
    class_maps_text, Backend, GraphValue, GraphValueKind, OnnxRuntime, RuntimeError,
};
use crate::tensor::{shape_fits, DType, Tensor, TensorData};
use crate::text::ShapeText;

/// Text up to this many bytes is tokenized on the async reactor, more on a blocking thread.
const TOKENIZE_ON_REACTOR_BYTES: usize = 16 * 1024;

/// How a model is run, set by the deployment (flags), not by the bundle.
#[derive(Clone)]
pub struct LoadOptions {
    /// Intra-op threads of every instance, overriding the bundles' `runtime.threads`.
    pub threads: Option<NonZeroUsize>,
    /// Instances of every model, overriding the bundles' `runtime.instances`.
    pub instances: Option<NonZeroUsize>,
    /// Requests that may wait for a model's worker before new ones are refused with 503.
    pub max_queued_requests: NonZeroUsize,
    /// Rows (first dimension) one request may send; more is refused before running, so that no
    /// one caller holds a model for long.
    pub max_rows_per_request: NonZeroUsize,
    /// Pixels one image sent to an image bundle may have; its header is read first.
    pub max_image_pixels: u64,
    /// Where sampled inferences are recorded, if anywhere.
    pub prediction_log: Option<Arc<PredictionLog>>,
    /// Runs the largest request the bundle's bounds allow at load and measures the memory it
    /// takes (`predictor check`, not `serve`).
    pub measure_largest_request: bool,
}

/// The largest request a bundle's bounds allow, run at load by `predictor check` and by
/// `predictor manifests` (for a bundle without `runtime.memory_mib`).
#[derive(Debug, Clone, PartialEq)]
pub struct LargestRequest {
    /// Each input's name and shape, in declaration order, as messages show them.
    pub inputs: String,
    /// The process' resident memory just before the run: the server with its models loaded.
    pub resident_before_mib: u64,
    /// The process' peak resident memory during the run, the loaded model included.
    pub peak_mib: u64,
    /// The model's instances, each of which may run such a request at once.
    pub instances: usize,
}

impl LargestRequest {
    /// `runtime.memory_mib` that holds every instance running the largest request at once, with
    /// a quarter more to spare, in steps of 64 MiB.
    pub fn suggested_memory_mib(&self) -> u64 {
        let run = self.peak_mib.saturating_sub(self.resident_before_mib);
        let needed = self.resident_before_mib + run * self.instances as u64;
        (needed + needed / 4).div_ceil(64) * 64
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: None,
            instances: None,
            max_queued_requests: defaults::MAX_QUEUED_REQUESTS,
            max_rows_per_request: defaults::MAX_ROWS_PER_REQUEST,
            max_image_pixels: defaults::MAX_IMAGE_PIXELS,
            prediction_log: None,
            measure_largest_request: false,
        }
    }
}

/// Why a prediction was not made. The HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The caller's input does not fit the model; the message says what was expected and received.
    #[error("{0}")]
    InvalidInput(String),
    #[error("model '{model}' has {queued} requests waiting; retry later")]
    Overloaded { model: String, queued: usize },
    #[error("model '{0}' is shutting down")]
    Unavailable(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A bundle whose graph and sample passed, ready to serve.
pub struct Model {
    binding: GraphBinding,
    batching: Option<Batching>,
    jobs: Queue,
    load_time: Duration,
    threads: usize,
    instances: usize,
    max_rows_per_request: usize,
    metrics: ModelMetrics,
    prediction_log: Option<Arc<PredictionLog>>,
    largest_request: Option<LargestRequest>,
}

/// A bundle matched to its graph: where each declared input and output sits in the graph.
struct GraphBinding {
    bundle: Bundle,
    /// For each graph input, the index of its declaration in `bundle.config.inputs`.
    graph_input_order: Vec<usize>,
    /// For each declared output but a made one, its index among the graph outputs (what the
    /// worker asks for).
    output_positions: Vec<usize>,
    /// The graph's symbolic dimensions that inputs share, which every request must agree on.
    shared_dimensions: Vec<SharedDimension>,
    /// A text bundle's tokenizer, which makes the declared inputs from the callers' text.
    text: Option<Arc<TextStage>>,
    /// An image bundle's preprocessing, which makes the graph's image input from the callers'
    /// encoded images.
    image: Option<Arc<ImageStage>>,
    /// `[sample] input` as a request gives it (an image bundle's files read), read once at load:
    /// the checks at load and `/predict/test` run it.
    sample: Vec<Tensor>,
    /// The declared outputs the server makes after the run (pooled, softmax).
    output_stage: OutputStage,
}

impl Model {
    /// Opens `bundle`'s model once per instance, checks the bundle against the graph, runs the
    /// sample and compares it with the expected output, then starts the instances' workers.
    /// `default_threads` is each instance's share of the CPUs, unless the flags or the bundle
    /// say otherwise.
    pub fn load(
        bundle: Bundle,
        runtime: &OnnxRuntime,
        options: &LoadOptions,
        default_threads: usize,
        metrics: &Metrics,
    ) -> Result<Model, BundleError> {
        let started = Instant::now();
        let model_path = bundle.model_path();
        if !model_path.is_file() {
            // A model too large for git is named in the folder's fetch.toml instead.
            let fetched = if bundle.dir().join("fetch.toml").is_file() {
                "; the bundle's fetch.toml says where it comes from (in a checkout of predictor, scripts/fetch-models brings it)"
            } else {
                ""
            };
            return Err(bundle.error(format!(
                "model: file {} does not exist{fetched}",
                model_path.display()
            )));
        }
        // The model may be a symbolic link to a regular file anywhere (a model cache keeps its
        // files so): its sha256, logged and in the metrics' model info, names what is served.
        let threads = options
            .threads
            .map(NonZeroUsize::get)
            .or(bundle.config.runtime.threads)
            .unwrap_or(default_threads);
        let backends = (0..instances_of(&bundle, options))
            .map(|_| runtime.open(&model_path, threads))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| bundle.error(format!("model: {error}")))?;
        let model_sha256 =
            sha256_of(&model_path).map_err(|error| bundle.error(format!("model: {error}")))?;
        Model::start(
            bundle,
            backends,
            model_sha256,
            threads,
            started,
            options,
            metrics,
        )
    }

    /// Checks `bundle` against the first backend's graph and sample (every backend is a session
    /// of the same model), then starts a worker for each backend, an instance. `started` is when
    /// loading began, for the load time.
    pub(crate) fn start<B: Backend>(
        bundle: Bundle,
        mut backends: Vec<B>,
        model_sha256: String,
        threads: usize,
        started: Instant,
        options: &LoadOptions,
        metrics: &Metrics,
    ) -> Result<Model, BundleError> {
        let instances = backends.len();
        let Some(backend) = backends.first_mut() else {
            return Err(bundle.error("runtime.instances: expected at least 1, found 0"));
        };
        let (graph_input_order, output_positions) = match_graph(&bundle, backend.signature())
            .map_err(|problems| BundleError {
                file: bundle.file.clone(),
                problems,
            })?;
        let mut dimension_names = vec![Vec::new(); bundle.config.inputs.len()];
        for (graph_input, &declared) in backend.signature().inputs.iter().zip(&graph_input_order) {
            let spec = &bundle.config.inputs[declared];
            dimension_names[declared] = dimensions::names_of(
                &graph_input.dimension_names,
                spec.dimension_names.as_deref(),
            )
            .map_err(|problem| bundle.error(format!("inputs[{declared}].{problem}")))?;
        }
        let text = TextStage::of(&bundle)?.map(Arc::new);
        let image = ImageStage::of(&bundle, options.max_image_pixels).map(Arc::new);
        let output_stage = OutputStage::of(&bundle);
        let sample = bundle
            .sample_inputs()
            .map_err(|problem| bundle.error(problem))?;
        let binding = GraphBinding {
            bundle,
            graph_input_order,
            output_positions,
            shared_dimensions: dimensions::shared(&dimension_names),
            text,
            image,
            output_stage,
            sample,
        };
        binding.check_sample(backend)?;
        let batching = binding.batching()?;
        if batching.is_some() {
            binding.check_rows_independent(backend)?;
        }
        let largest_request = if options.measure_largest_request {
            Some(binding.measure_largest_request(
                backend,
                options.max_rows_per_request.get(),
                instances,
            )?)
        } else {
            None
        };
        let load_time = started.elapsed();
        let model_metrics = metrics.model_loaded(
            ModelInfoLabels {
                model: binding.bundle.name().to_string(),
                version: binding.bundle.config.version.clone(),
                model_sha256,
            },
            load_time,
            options.max_queued_requests.get(),
        );
        let jobs = worker::spawn(
            binding.bundle.name(),
            backends,
            binding.output_positions.clone(),
            options.max_queued_requests,
            batching.clone(),
            model_metrics.clone(),
        )
        .map_err(|error| {
            binding
                .bundle
                .error(format!("cannot start the worker: {error}"))
        })?;
        Ok(Model {
            binding,
            batching,
            jobs,
            load_time,
            threads,
            instances,
            max_rows_per_request: options.max_rows_per_request.get(),
            metrics: model_metrics,
            prediction_log: options.prediction_log.clone(),
            largest_request,
        })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.binding.bundle
    }

    /// `[sample] input` as a request would give it (`/predict/test`), read at load.
    pub fn sample_inputs(&self) -> Vec<Tensor> {
        self.binding.sample.clone()
    }

    /// `--max-image-pixels`, for an image bundle.
    pub fn max_image_pixels(&self) -> Option<u64> {
        self.binding.image.as_deref().map(ImageStage::max_pixels)
    }

    pub fn name(&self) -> &str {
        self.bundle().name()
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Its dynamic batching, when the bundle asks for it (and its model answers row by row).
    pub fn batching(&self) -> Option<&Batching> {
        self.batching.as_ref()
    }

    /// Whether the model can answer: false once its worker has stopped, whatever stopped it.
    pub fn is_ready(&self) -> bool {
        self.jobs.is_running()
    }

    /// How long the longest of its runs in progress has lasted (zero when none runs).
    pub fn longest_run(&self) -> Duration {
        self.jobs.longest_run()
    }

    /// ONNX Runtime's intra-op threads of each instance.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Its instances: sessions, each with its worker, sharing its queue.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Runs the model on one tensor per declared input, in declaration order, whose dtypes and
    /// shapes the caller has checked against the declarations; returns every declared output in
    /// declaration order.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PredictError> {
        Ok(self.infer_counting_tokens(inputs).await?.0)
    }

    /// [`Model::infer`], with the tokens a text bundle's tokenizer made of the request's text (0
    /// for other bundles): what OpenAI's API reports as `usage`.
    pub async fn infer_counting_tokens(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, usize), PredictError> {
        let started = Instant::now();
        // A sampled inference keeps what the prediction log will show of its inputs.
        let logged = self
            .prediction_log
            .as_ref()
            .filter(|log| log.sampled())
            .map(|log| (log.clone(), log.keep(&inputs)));
        let answer = self.infer_checked(inputs).await;
        let duration = started.elapsed();
        self.metrics.statistics.answered(answer.is_ok(), duration);
        let (answer, tokens) = match answer {
            Ok((outputs, tokens)) => (Ok(outputs), tokens),
            Err(error) => (Err(error), 0),
        };
        if let Some((log, inputs)) = logged {
            self.log_prediction(&log, &inputs, &answer, duration);
        }
        answer.map(|outputs| (outputs, tokens))
    }

    fn log_prediction(
        &self,
        log: &PredictionLog,
        inputs: &[Kept],
        answer: &Result<Vec<Tensor>, PredictError>,
        duration: Duration,
    ) {
        let config = &self.bundle().config;
        fn named<'a, T>(specs: &'a [TensorSpec], tensors: &'a [T]) -> Vec<(&'a str, &'a T)> {
            specs
                .iter()
                .map(|spec| spec.name.as_str())
                .zip(tensors)
                .collect()
        }
        let outputs = match answer {
            Ok(outputs) => Ok(named(&config.outputs, outputs)),
            Err(problem) => Err(problem.to_string()),
        };
        log.write(&Inference {
            model: self.name(),
            version: &config.version,
            inputs: named(&self.bundle().public_inputs, inputs),
            outputs,
            duration,
        });
    }

    async fn infer_checked(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, usize), PredictError> {
        let rows = self
            .bundle()
            .request_rows(&inputs)
            .map_err(PredictError::InvalidInput)?;
        self.bundle()
            .check_bounds(&inputs)
            .map_err(PredictError::InvalidInput)?;
        if rows > self.max_rows_per_request {
            return Err(PredictError::InvalidInput(format!(
                "the request has {rows} rows; this server takes at most {} per request (--max-rows-per-request): split it",
                self.max_rows_per_request
            )));
        }
        let inputs = self
            .binding
            .declared_inputs_off_reactor(inputs)
            .await
            .map_err(PredictError::InvalidInput)?;
        dimensions::check(
            &self.binding.shared_dimensions,
            &self.bundle().config.inputs,
            &inputs,
        )
        .map_err(PredictError::InvalidInput)?;
        let mask = self.binding.mask_of(&inputs);
        let tokens = self.binding.tokens_of(&inputs);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs: self.binding.to_graph_order(inputs),
            reply,
            span: Span::current(),
            enqueued: Instant::now(),
        };
        // Counted before sending, so that the worker's decrement never comes first.
        self.metrics.queue_depth.inc();
        self.jobs.try_send(job).map_err(|refused| {
            self.metrics.queue_depth.dec();
            match refused {
                Refused::Full => PredictError::Overloaded {
                    model: self.name().to_string(),
                    queued: self.jobs.capacity(),
                },
                Refused::Closed => PredictError::Unavailable(self.name().to_string()),
            }
        })?;
        let outputs = answer
            .await
            .map_err(|_| PredictError::Unavailable(self.name().to_string()))?
            .map_err(|error| match error {
                rejected @ RuntimeError::RejectedInput(_) => {
                    // The caller's 400, but worth an operator's look: data that passed every
                    // check of the bundle, which the bundle could declare more precisely.
                    let message = rejected.to_string();
                    tracing::warn!(error = %message, "the model refused the request's data");
                    PredictError::InvalidInput(message)
                }
                other => PredictError::Runtime(other),
            })?;
        let outputs = self.binding.declared_outputs(outputs, mask.as_deref())?;
        self.binding.check_outputs(&outputs)?;
        Ok((outputs, tokens))
    }
}

impl Model {
    /// The largest request the bundle's bounds allow and its peak memory, when measured at load.
    pub fn largest_request(&self) -> Option<&LargestRequest> {
        self.largest_request.as_ref()
    }

    /// Triton's statistics of this model since it was loaded.
    pub fn statistics(&self) -> &crate::metrics::ModelStatistics {
        &self.metrics.statistics
    }
}

impl GraphBinding {
    /// Runs the largest request the bounds allow (each dynamic size at its bound, the rows at
    /// `max_rows` where the bundle declares none, a shared dimension at the least of its places'
    /// bounds; zeros, a scalar at the sample's value) and measures the process' peak memory
    /// during the run. Refuses the bundle when that run fails, or when `runtime.memory_mib` is
    /// below the peak: a pod given that much would be killed by the largest request it takes.
    fn measure_largest_request(
        &self,
        backend: &mut impl Backend,
        max_rows: usize,
        instances: usize,
    ) -> Result<LargestRequest, BundleError> {
        let specs = &self.bundle.config.inputs;
        let mut shapes: Vec<Vec<usize>> = specs
            .iter()
            .map(|spec| {
                (0..spec.shape.len())
                    .map(|axis| match spec.bound(axis) {
                        Some(bound) => bound.size(),
                        None => usize::try_from(spec.shape[axis]).unwrap_or(max_rows),
                    })
                    .collect()
            })
            .collect();
        for dimension in &self.shared_dimensions {
            let least = dimension
                .places
                .iter()
                .filter_map(|&(input, axis)| shapes.get(input)?.get(axis).copied())
                .min();
            for &(input, axis) in &dimension.places {
                if let (Some(size), Some(least)) =
                    (shapes.get_mut(input).and_then(|s| s.get_mut(axis)), least)
                {
                    *size = least;
                }
            }
        }
        // A text bundle's rows are never longer than its tokenizer cuts them.
        if let Some(text) = &self.text {
            for shape in shapes.iter_mut().filter(|shape| shape.len() == 2) {
                shape[1] = shape[1].min(text.max_tokens());
            }
        }
        // A text bundle's largest request is every row at the most tokens: zeros (a padding
        // token's id, which every vocabulary has); other bundles' from their sample.
        let sample: Vec<Tensor> = match &self.text {
            Some(_) => specs
                .iter()
                .map(|spec| Tensor::zeros(spec.dtype, vec![1; spec.shape.len()]))
                .collect(),
            None => self.sample.clone(),
        };
        let inputs: Vec<Tensor> = specs
            .iter()
            .zip(&shapes)
            .zip(sample)
            .map(|((spec, shape), sampled)| match sampled.data() {
                _ if shape.is_empty() => sampled,
                // Strings the sample's first, for a model that reads them (numbers as text): an
                // empty string may be no value it takes.
                TensorData::String(texts) => {
                    let text = texts.first().cloned().unwrap_or_default();
                    let count = shape.iter().product();
                    Tensor::new(shape.clone(), TensorData::String(vec![text; count]))
                        .unwrap_or_else(|_| Tensor::zeros(spec.dtype, shape.clone()))
                }
                _ => Tensor::zeros(spec.dtype, shape.clone()),
            })
            .collect();
        let inputs_text = shapes
            .iter()
            .zip(specs)
            .map(|(shape, spec)| format!("'{}' {}", spec.name, ShapeText(shape)))
            .collect::<Vec<_>>()
            .join(", ");
        let resident_before_mib = process_memory::resident_mib().unwrap_or(0);
        process_memory::reset_peak();
        self.run_declared(backend, inputs).map_err(|error| {
                self.bundle.error(format!(
                    "the largest request the bounds allow ({inputs_text}) failed: {error}; declare the bounds the model takes in the inputs' max_shape"
                ))
            })?;
        let largest = LargestRequest {
            inputs: inputs_text,
            resident_before_mib,
            peak_mib: process_memory::peak_mib().unwrap_or(0),
            instances,
        };
        if let Some(declared) = self.bundle.config.runtime.memory_mib {
            if declared < largest.peak_mib {
                return Err(self.bundle.error(format!(
                    "runtime.memory_mib: {declared} MiB, but the largest request the bounds allow ({}) took {} MiB: declare at least that much, or lower the bounds (max_shape)",
                    largest.inputs, largest.peak_mib
                )));
            }
        }
        Ok(largest)
    }

    /// The bundle's dynamic batching, checked against its declarations: requests are joined along
    /// the first dimension, so every input and output must have a dynamic one.
    fn batching(&self) -> Result<Option<Batching>, BundleError> {
        let runtime = &self.bundle.config.runtime;
        let Some(max_rows) = runtime.max_batch_size.filter(|&rows| rows > 1) else {
            return Ok(None);
        };
        let config = &self.bundle.config;
        let fixed = config
            .inputs
            .iter()
            .map(|spec| ("input", spec))
            .chain(config.outputs.iter().map(|spec| ("output", spec)))
            .find(|(_, spec)| spec.shape.first() != Some(&-1));
        if let Some((kind, spec)) = fixed {
            return Err(self.bundle.error(format!(
                "runtime.max_batch_size: batching joins requests along the first dimension, which must be dynamic (-1) for every input and output; {kind} '{}' has shape {}",
                spec.name,
                ShapeText(&spec.shape)
            )));
        }
        // A text bundle's requests join whatever their lengths: padded to the longest, their
        // token-level outputs (a dynamic second dimension) cut back to their own tokens.
        let padding = self.text.as_ref().map(|text| {
            let pad_values = text.pad_values();
            let graph_outputs = config
                .outputs
                .iter()
                .enumerate()
                .filter(|(index, _)| !self.output_stage.is_made(*index));
            Arc::new(Padding {
                inputs: self
                    .graph_input_order
                    .iter()
                    .map(|&declared| pad_values.get(declared).copied())
                    .collect(),
                token_outputs: graph_outputs
                    .map(|(_, spec)| is_token_level(spec))
                    .collect(),
                max_tokens: runtime.max_batch_tokens,
            })
        });
        Ok(Some(Batching {
            max_rows,
            max_delay: Duration::from_millis(runtime.max_queue_delay_ms.unwrap_or(0)),
            padding,
        }))
    }

    /// The declared inputs, in declaration order, for a request's public ones: the same tensors,
    /// a text bundle's tokens for its text, an image bundle's pixels for its images.
    fn declared_inputs(&self, public: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        match (&self.text, &self.image) {
            (Some(text), _) => text.token_inputs(public),
            (None, Some(image)) => image.pixel_inputs(public),
            (None, None) => Ok(public),
        }
    }

    /// [`GraphBinding::declared_inputs`] for a request: images are decoded, and much text is
    /// tokenized, on a blocking thread, not on the async reactor (an image, or 64 rows of 4,096
    /// characters, are milliseconds of work).
    async fn declared_inputs_off_reactor(
        &self,
        public: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, String> {
        if let Some(image) = self.image.clone() {
            // Held until the images are decoded; the semaphore is never closed.
            let _decoder = IMAGE_DECODERS.acquire().await;
            let span = Span::current();
            return tokio::task::spawn_blocking(move || {
                span.in_scope(|| image.pixel_inputs(public))
            })
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
        }
        let Some(text) = self.text.clone() else {
            return Ok(public);
        };
        let bytes: usize = public
            .iter()
            .map(|tensor| match tensor.data() {
                TensorData::String(texts) => texts.iter().map(String::len).sum(),
                _ => 0,
            })
            .sum();
        if bytes < TOKENIZE_ON_REACTOR_BYTES {
            return text.token_inputs(public);
        }
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| text.token_inputs(public)))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// The tokens a text bundle's tokenizer made: each row's own (its ids before the padding to
    /// the request's longest row), summed; 0 for other bundles.
    fn tokens_of(&self, declared_inputs: &[Tensor]) -> usize {
        match &self.text {
            Some(text) => text.tokens_of(declared_inputs),
            None => 0,
        }
    }

    /// What pooling needs of the declared inputs after the run: their attention mask.
    fn mask_of(&self, declared_inputs: &[Tensor]) -> Option<Vec<i64>> {
        self.output_stage.mask_of(declared_inputs)
    }

    /// Every declared output, from what the graph gave: each made one added in its place.
    fn declared_outputs(
        &self,
        outputs: Vec<Tensor>,
        mask: Option<&[i64]>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        self.output_stage.complete(outputs, mask)
    }

    /// The graph position of the declared output `declared`; none for a made one.
    fn graph_position(&self, declared: usize) -> Option<usize> {
        let index = self.output_stage.graph_index(declared)?;
        self.output_positions.get(index).copied()
    }

    /// Runs a request's public inputs on `backend` as a request is run: preprocessed, in graph
    /// order, the declared outputs made from the graph's.
    fn run_public(
        &self,
        backend: &mut impl Backend,
        public: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, String> {
        let inputs = self.declared_inputs(public)?;
        self.run_declared(backend, inputs)
    }

    /// Runs the declared inputs (in declaration order) on `backend`: in graph order, the
    /// declared outputs made from the graph's.
    fn run_declared(
        &self,
        backend: &mut impl Backend,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, String> {
        let mask = self.mask_of(&inputs);
        let outputs = backend
            .run(self.to_graph_order(inputs), &self.output_positions)
            .map_err(|error| error.to_string())?;
        self.declared_outputs(outputs, mask.as_deref())
            .map_err(|error| error.to_string())
    }

    fn to_graph_order(&self, inputs: Vec<Tensor>) -> Vec<Tensor> {
        let mut slots: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
        self.graph_input_order
            .iter()
            // A permutation (match_graph), so that every slot is taken once.
            .filter_map(|&declared| slots.get_mut(declared)?.take())
            .collect()
    }

    /// Checks each output the model returned against its declaration: what the server promises
    /// its callers (and the protocol's metadata) must hold.
    fn check_outputs(&self, outputs: &[Tensor]) -> Result<(), RuntimeError> {
        let specs = &self.bundle.config.outputs;
        if outputs.len() != specs.len() {
            return Err(RuntimeError::Inference(format!(
                "the model returned {} outputs for {} declared",
                outputs.len(),
                specs.len()
            )));
        }
        for (spec, tensor) in specs.iter().zip(outputs) {
            if tensor.dtype() != spec.dtype || !shape_fits(&spec.shape, tensor.shape()) {
                return Err(RuntimeError::Inference(format!(
                    "output '{}' came back as {} {}, but is declared {} {}",
                    spec.name,
                    tensor.dtype(),
                    ShapeText(tensor.shape()),
                    spec.dtype,
                    ShapeText(&spec.shape)
                )));
            }
        }
        Ok(())
    }

    /// Dynamic batching hands each caller its rows of a joint run, which is right only for a
    /// model that answers each row on its own. Runs the sample alone, then after a perturbed copy
    /// of itself in one run, and refuses batching when the sample's rows come back otherwise.
    fn check_rows_independent(&self, backend: &mut impl Backend) -> Result<(), BundleError> {
        let refuse = |why: String| {
            self.bundle.error(format!(
                "runtime.max_batch_size: bundle '{}' cannot be batched: {why}; the model does not answer row by row, so remove runtime.max_batch_size",
                self.bundle.name()
            ))
        };
        let sample = &self.bundle.config.sample;
        let decode = |input: &RawValue| {
            self.bundle
                .decode_inputs(input, "sample.input")
                .map_err(|problem| self.bundle.error(problem))
        };
        // An image bundle's sample is perturbed in its pixels (its encoded images cannot be), so
        // its runs take the graph's inputs; other bundles' runs take what a request sends.
        let pixels = self.image.is_some();
        let (alone_inputs, other_inputs) = if pixels {
            let alone = self
                .declared_inputs(self.sample.clone())
                .map_err(|problem| self.bundle.error(problem))?;
            let other = alone.iter().map(perturbed_pixels).collect();
            (alone, other)
        } else {
            let perturbed = raw_json(&perturbed(&sample.input)).map_err(refuse)?;
            (self.sample.clone(), decode(&perturbed)?)
        };
        let (other_rows, sample_rows) = (
            self.bundle.request_rows(&other_inputs).map_err(refuse)?,
            self.bundle.request_rows(&alone_inputs).map_err(refuse)?,
        );
        let joined: Vec<Tensor> = other_inputs
            .into_iter()
            .zip(alone_inputs.clone())
            .map(|(other, alone)| {
                Tensor::concat_rows(vec![other, alone])
                    .ok_or_else(|| refuse("the sample's rows cannot be joined".into()))
            })
            .collect::<Result<_, _>>()?;
        let mut run = |inputs| {
            let outputs = match pixels {
                true => self.run_declared(backend, inputs),
                false => self.run_public(backend, inputs),
            };
            outputs.map_err(|error| refuse(format!("a joint run of the sample failed: {error}")))
        };
        let alone = run(alone_inputs)?;
        let joint = run(joined)?;
        let tolerance = sample.tolerance.max(1e-5);
        for ((spec, alone), joint) in self.bundle.config.outputs.iter().zip(alone).zip(joint) {
            let joint_rows = joint.rows();
            let Some(ours) = joint
                .split_rows(&[other_rows, sample_rows])
                .and_then(|mut pieces| pieces.pop())
            else {
                return Err(refuse(format!(
                    "output '{}' has {joint_rows} rows for a joint run of {} rows",
                    spec.name,
                    other_rows + sample_rows
                )));
            };
            // A text bundle's rows are padded to the longest of a joint run: a token-level
            // output is compared on the sample's own tokens.
            let ours = match (&self.text, alone.shape().get(1)) {
                (Some(_), Some(&tokens)) if is_token_level(spec) => {
                    ours.truncate_axis1(tokens).ok_or_else(|| {
                        refuse(format!(
                            "output '{}' has fewer tokens in a joint run than alone",
                            spec.name
                        ))
                    })?
                }
                _ => ours,
            };
            compare(&alone, &ours, tolerance, &spec.name).map_err(|problem| {
                refuse(format!(
                    "joined with other rows in one run, the sample's answer changes ({problem})"
                ))
            })?;
        }
        Ok(())
    }

    /// Labels over class scores named by text keys (a ZipMap of string classes) must be those
    /// keys, in their order: otherwise `/predict/label` would name the wrong classes.
    fn check_class_names(&self, backend: &impl Backend) -> Result<(), BundleError> {
        let Some(position) = self.graph_position(self.bundle.prediction) else {
            return Ok(()); // a made output: the server's, no class keys of the graph
        };
        let keyed_by_text = matches!(
            backend.signature().outputs[position].kind,
            GraphValueKind::ClassScores { key: DType::String }
        );
        let labels = &self.bundle.config.labels;
        match backend.class_keys(position) {
            Some(classes) if keyed_by_text && !labels.is_empty() && labels != classes => {
                Err(self.bundle.error(format!(
                    "labels: the model's classes are {classes:?}, in this order; labels lists {labels:?}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Runs `[sample] input` and compares the prediction with `[sample] output`.
    fn check_sample(&self, backend: &mut impl Backend) -> Result<(), BundleError> {
        let sample = &self.bundle.config.sample;
        let outputs = self
            .run_public(backend, self.sample.clone())
            .map_err(|error| self.bundle.error(format!("sample.input: {error}")))?;
        self.check_outputs(&outputs)
            .map_err(|error| self.bundle.error(format!("sample: {error}")))?;
        let actual = outputs
            .into_iter()
            .nth(self.bundle.prediction)
            .ok_or_else(|| {
                self.bundle
                    .error("sample: the model returned no prediction output")
            })?;
        let spec = self.bundle.prediction_spec();
        let expected = Tensor::from_json(&sample.output, spec.dtype).map_err(|error| {
            self.bundle.error(format!(
                "sample.output: {error} (expected the value of output '{}' for sample.input)",
                spec.name
            ))
        })?;
        compare(&expected, &actual, sample.tolerance, &spec.name).map_err(|problem| {
            self.bundle.error(format!(
                "sample.output: {problem}; the model returned {}",
                abridged_json(&actual)
            ))
        })?;
        self.check_class_names(backend)?;
        if self.bundle.label_rule != LabelRule::None {
            let labels = self.bundle.labels_of(&actual).map_err(|error| {
                self.bundle
                    .error(format!("labels: {error} (for the sample)"))
            })?;
            if let Some(row) = labels.iter().position(Option::is_none) {
                return Err(self.bundle.error(format!(
                    "labels: row {row} of the sample gets a class index past the {} labels declared",
                    self.bundle.config.labels.len()
                )));
            }
        }
        Ok(())
    }
}

/// Requests whose images are decoded at once, in the whole process: one a CPU the process may
/// use (decoding is CPU work: more at once would go no faster), so that what decoding holds is
/// this many images at `--max-image-pixels`, not one per request in flight. The others wait
/// for their turn within their request's timeout.
pub fn image_decoders() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

static IMAGE_DECODERS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(image_decoders()));

/// Pixels halved and raised by 1 (other values as they are): rows unlike the sample's for the
/// rows-independence check of an image bundle.
fn perturbed_pixels(tensor: &Tensor) -> Tensor {
    let data = match tensor.data() {
        TensorData::Float16(values) => TensorData::Float16(
            values
                .iter()
                .map(|value| half::f16::from_f32(value.to_f32() * 0.5 + 1.0))
                .collect(),
        ),
        TensorData::Float32(values) => {
            TensorData::Float32(values.iter().map(|value| value * 0.5 + 1.0).collect())
        }
        TensorData::Float64(values) => {
            TensorData::Float64(values.iter().map(|value| value * 0.5 + 1.0).collect())
        }
        TensorData::Uint8(values) => {
            TensorData::Uint8(values.iter().map(|value| value / 2 + 1).collect())
        }
        _ => return tensor.clone(),
    };
    Tensor::new(tensor.shape().to_vec(), data).unwrap_or_else(|_| tensor.clone())
}

/// Whether a text bundle's output has a token dimension: a dynamic second one, the length of the
/// run's rows, which padding lengthens.
fn is_token_level(spec: &TensorSpec) -> bool {
    spec.shape.get(1) == Some(&-1)
}

/// Checks the declared inputs and outputs against the graph's; returns the graph order of the
/// inputs and the graph position of each declared output, or every mismatch found.
fn match_graph(
    bundle: &Bundle,
    graph: &crate::runtime::GraphSignature,
) -> Result<(Vec<usize>, Vec<usize>), Vec<String>> {
    let config = &bundle.config;
    let mut problems = Vec::new();
    let graph_names = |values: &[GraphValue]| {
        values
            .iter()
            .map(|v| format!("'{}'", v.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A made output is the server's, not the graph's.
    let made: Vec<&str> = config.made_outputs().collect();
    let mut positions = |field: &str, specs: &[TensorSpec], values: &[GraphValue]| {
        specs
            .iter()
            .enumerate()
            .filter(|(_, spec)| field != "outputs" || !made.contains(&spec.name.as_str()))
            .map(|(index, spec)| {
                let position = values.iter().position(|v| v.name == spec.name);
                match position {
                    None => problems.push(format!(
                        "{field}[{index}].name: the model has no {} '{}'; it has {}",
                        &field[..field.len() - 1],
                        spec.name,
                        graph_names(values)
                    )),
                    Some(p) => check_spec(
                        &format!("{field}[{index}]"),
                        spec,
                        &values[p],
                        &mut problems,
                    ),
                }
                position
            })
            .collect::<Vec<_>>()
    };
    let input_positions = positions("inputs", &config.inputs, &graph.inputs);
    let output_positions = positions("outputs", &config.outputs, &graph.outputs);
    let mut graph_input_order = Vec::with_capacity(graph.inputs.len());
    for (graph_index, value) in graph.inputs.iter().enumerate() {
        match input_positions.iter().position(|&p| p == Some(graph_index)) {
            Some(declared) => graph_input_order.push(declared),
            None => problems.push(format!(
                "inputs: the model's input '{}' ({}) is not declared; every input must be",
                value.name,
                describe(&value.kind)
            )),
        }
    }
    if problems.is_empty() {
        Ok((
            graph_input_order,
            output_positions.into_iter().flatten().collect(),
        ))
    } else {
        Err(problems)
    }
}

fn describe(kind: &GraphValueKind) -> String {
    match kind {
        GraphValueKind::Tensor { dtype, shape } => format!("{dtype} {}", ShapeText(shape)),
        GraphValueKind::ClassScores { key } => class_maps_text(*key),
        GraphValueKind::Unsupported(type_name) => type_name.clone(),
    }
}

fn check_spec(field: &str, spec: &TensorSpec, graph: &GraphValue, problems: &mut Vec<String>) {
    let (dtype, shape) = match &graph.kind {
        GraphValueKind::Tensor { dtype, shape } => (*dtype, shape),
        GraphValueKind::ClassScores { key } if field.starts_with("outputs") => {
            // Served as class scores [rows, classes]; the class count shows in the sample.
            if spec.dtype != DType::Float32 || spec.shape.len() != 2 {
                problems.push(format!(
                    "{field}: the model's '{}' is {}, served as class scores: declare dtype = \"float32\" and shape = [-1, <classes>], not {} {}",
                    graph.name,
                    class_maps_text(*key),
                    spec.dtype,
                    ShapeText(&spec.shape)
                ));
            }
            return;
        }
        GraphValueKind::ClassScores { key } => {
            problems.push(format!(
                "{field}: the model's '{}' is {}, which predictor serves as an output only",
                graph.name,
                class_maps_text(*key)
            ));
            return;
        }
        GraphValueKind::Unsupported(type_name) => {
            problems.push(format!(
                "{field}: the model's '{}' is {type_name}, which predictor cannot serve; leave it out of predictor.toml (the model still computes it), or export it as a tensor",
                graph.name
            ));
            return;
        }
    };
    if spec.dtype != dtype {
        problems.push(format!(
            "{field}.dtype: the model's '{}' is {dtype}, predictor.toml says {}",
            graph.name, spec.dtype
        ));
    }
    if spec.shape.len() != shape.len() {
        problems.push(format!(
            "{field}.shape: the model's '{}' has {} dimensions {}, predictor.toml declares {} {}",
            graph.name,
            shape.len(),
            ShapeText(shape),
            spec.shape.len(),
            ShapeText(&spec.shape)
        ));
        return;
    }
    for (axis, (&declared, &actual)) in spec.shape.iter().zip(shape).enumerate() {
        // A fixed size may narrow a dynamic graph dimension; the reverse would accept requests
        // the model rejects.
        if actual >= 0 && declared != actual {
            problems.push(format!(
                "{field}.shape[{axis}]: the model's '{}' has size {actual} there, predictor.toml declares {declared}",
                graph.name
            ));
        }
    }
}

/// The sha256 of a file, in hex, read in chunks (models can be large).
fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut chunk = vec![0; 1 << 20];
    loop {
        match file.read(&mut chunk)? {
            0 => break,
            read => hasher.update(&chunk[..read]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The instances of `bundle`'s model: the flag's, else the bundle's, else 1.
fn instances_of(bundle: &Bundle, options: &LoadOptions) -> usize {
    options
        .instances
        .map(NonZeroUsize::get)
        .or(bundle.config.runtime.instances)
        .unwrap_or(1)
}

/// Each instance's share of `cpus` when `instances` sessions run side by side: at least one
/// thread, so that no instance waits for another's threads (ONNX Runtime's own default, every
/// core for every session, oversubscribes the CPUs as soon as two sessions run at once).
pub fn threads_per_instance(cpus: usize, instances: usize) -> usize {
    (cpus / instances.max(1)).max(1)
}

/// Reads and loads every bundle; stops at nothing, so that all problems are reported at once.
/// The CPUs the process may use (its affinity and cgroup quota, as the standard library reads
/// them; ONNX Runtime's own default ignores both) are divided among the instances of all the
/// models, for each one that sets no threads of its own.
pub fn load_all(
    paths: &[impl AsRef<Path>],
    runtime: &OnnxRuntime,
    options: &LoadOptions,
    metrics: &Metrics,
) -> Result<Vec<Model>, Vec<BundleError>> {
    let mut models = Vec::new();
    let mut errors = Vec::new();
    let mut bundles = Vec::new();
    for path in paths {
        match Bundle::read(path.as_ref()) {
            Ok(bundle) => bundles.push(bundle),
            Err(error) => errors.push(error),
        }
    }
    let instances: usize = bundles
        .iter()
        .map(|bundle| instances_of(bundle, options))
        .sum();
    let cpus = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let default_threads = threads_per_instance(cpus, instances);
    for bundle in bundles {
        match Model::load(bundle, runtime, options, default_threads, metrics) {
            Ok(model) => models.push(model),
            Err(error) => errors.push(error),
        }
    }
    let mut names = std::collections::HashSet::new();
    for model in &models {
        if !names.insert(model.name()) {
            errors.push(model.bundle().error(format!(
                "name: another bundle is also named '{}'; names must be unique",
                model.name()
            )));
        }
    }
    if errors.is_empty() {
        Ok(models)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::threads_per_instance;

    #[test]
    fn the_cpus_are_divided_among_the_instances() {
        assert_eq!(threads_per_instance(8, 1), 8);
        assert_eq!(threads_per_instance(8, 3), 2);
        assert_eq!(threads_per_instance(8, 8), 1);
        // More instances than CPUs: each still has a thread.
        assert_eq!(threads_per_instance(2, 5), 1);
        assert_eq!(threads_per_instance(4, 0), 4);
    }
}
