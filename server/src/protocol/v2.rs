//! The Open Inference Protocol v2 (KServe v2) apart from its transport: datatype names, model
//! metadata, and the checks that turn a request's named tensors into a model's inputs and pick the
//! outputs it asked for. The REST routes (`http::v2`) and the gRPC service ([`crate::transport::grpc`]) share
//! it, so both answer the same request with the same result or the same error.

use std::sync::Arc;

use serde::Serialize;

use crate::bundle::{Bundle, TensorSpec};
use crate::defaults;
use crate::model::Model;
use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::tensor::{shape_fits, DType, Tensor, TensorData};
use crate::text::{clip, quoted, ShapeText};

pub const SERVER_NAME: &str = "predictor";
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The extensions served: Triton's binary tensor data (REST; over gRPC raw contents are part of
/// the protocol), classification, system shared memory (when `--allow-shared-memory` turns it
/// on; its calls say so otherwise), model configuration, statistics and model repository (its
/// index; load and unload are refused).
const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "system_shared_memory",
    "model_configuration",
    "statistics",
    "model_repository",
];

/// Triton's extensions this server does not serve: the REST path prefix and gRPC method prefix
/// of each, and what to say to a caller who tries one.
const UNSERVED: &[(&str, &str, &str)] = &[
    (
        "/v2/cudasharedmemory",
        "CudaSharedMemory",
        "Triton's CUDA shared memory extension is not served: this server runs its models on the CPU (system shared memory is, with --allow-shared-memory)",
    ),
    (
        "/v2/trace",
        "Trace",
        "Triton's trace extension is not served: request spans go to OpenTelemetry instead (a server built with the feature otlp, --otlp-endpoint)",
    ),
    (
        "/v2/logging",
        "Log",
        "Triton's logging extension is not served: set the log with --log and --log-format when the server starts",
    ),
];

const GENERATE_UNSERVED: &str = "Triton's generate extension is not served: it is for text generation; send the same inputs as tensors to the model's infer route, /v2/models/<name>/infer";

/// What to tell a caller of a REST path (`/v2/trace/setting`) or gRPC method (`TraceSetting`)
/// of an extension this server does not serve.
pub fn unserved_extension(path_or_method: &str) -> Option<&'static str> {
    // Triton's generate extension sits under each model (`/v2/models/{m}[/versions/{v}]/generate`)
    // and has no gRPC method.
    if let ["", "v2", "models", _, last] | ["", "v2", "models", _, "versions", _, last] =
        path_or_method.split('/').collect::<Vec<_>>().as_slice()
    {
        if matches!(*last, "generate" | "generate_stream") {
            return Some(GENERATE_UNSERVED);
        }
    }
    UNSERVED
        .iter()
        .find(|(path, method, _)| {
            path_or_method.starts_with(path) || path_or_method.starts_with(method)
        })
        .map(|(_, _, message)| *message)
}

/// The extensions this server serves, for `GET /v2` and gRPC `ServerMetadata`.
pub fn extensions(registry: &Registry) -> Vec<&'static str> {
    EXTENSIONS
        .iter()
        .copied()
        .filter(|&extension| {
            extension != "system_shared_memory" || registry.shared_memory().is_enabled()
        })
        .collect()
}
/// What Triton and KServe call a model run by ONNX Runtime.
pub const PLATFORM: &str = "onnxruntime_onnx";

fn invalid(message: String) -> ServeError {
    ServeError::invalid(message)
}

/// The model `name`, in `version` when one is given: a bundle has exactly one version, named as
/// the bundle writes it (`1.0.0`) or as the statistics report it to Triton's tools (`1`).
pub fn find_model(
    registry: &Registry,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Model>, ServeError> {
    let model = registry
        .find(name)
        .ok_or_else(|| ServeError::not_found(registry.unknown_model(name)))?;
    let served = &model.bundle().config.version;
    let numbered = triton_version(served);
    match version {
        Some(asked) if !asked.is_empty() && asked != served && asked != numbered => {
            Err(ServeError::not_found(format!(
                "model '{name}' has no version '{asked}'; this server has version '{served}' (or '{numbered}', as Triton numbers it)"
            )))
        }
        _ => Ok(model.clone()),
    }
}

#[derive(Serialize)]
pub struct TensorMetadata<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    /// -1 for a dimension of any size.
    pub shape: &'a [i64],
}

#[derive(Serialize)]
pub struct ModelMetadata<'a> {
    pub name: &'a str,
    pub versions: [&'a str; 1],
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata<'a>>,
    pub outputs: Vec<TensorMetadata<'a>>,
}

fn describe(specs: &[TensorSpec]) -> Vec<TensorMetadata<'_>> {
    specs
        .iter()
        .map(|spec| TensorMetadata {
            name: &spec.name,
            datatype: spec.dtype.v2_name(),
            shape: &spec.shape,
        })
        .collect()
}

pub fn model_metadata(model: &Model) -> ModelMetadata<'_> {
    let config = &model.bundle().config;
    ModelMetadata {
        name: model.name(),
        versions: [&config.version],
        platform: PLATFORM,
        inputs: describe(&config.inputs),
        outputs: describe(&config.outputs),
    }
}

/// Triton's model configuration of a bundle (the model configuration extension), as Triton
/// would write it for the same ONNX model: with dynamic batching, `max_batch_size` is the
/// bundle's and the dims leave out the batch dimension; without, 0 and the whole shape.
#[derive(Serialize)]
pub struct ModelConfig<'a> {
    pub name: &'a str,
    pub platform: &'static str,
    pub backend: &'static str,
    pub max_batch_size: u32,
    pub input: Vec<ConfigTensor<'a>>,
    pub output: Vec<ConfigTensor<'a>>,
    pub instance_group: [InstanceGroup; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
}

#[derive(Serialize)]
pub struct ConfigTensor<'a> {
    pub name: &'a str,
    /// Triton's name, `TYPE_FP32`.
    pub data_type: String,
    pub dims: Vec<i64>,
    /// As Triton configures a batched tensor of the batch dimension alone: dims `[1]` reshaped
    /// to `[]` (Triton refuses empty dims).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshape: Option<Reshape>,
}

#[derive(Serialize)]
pub struct Reshape {
    pub shape: [i64; 0],
}

#[derive(Serialize)]
pub struct InstanceGroup {
    pub name: &'static str,
    pub kind: &'static str,
    pub count: u32,
}

#[derive(Serialize)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
}

/// What Triton calls the backend of an ONNX model.
pub const BACKEND: &str = "onnxruntime";

/// Triton's name of a datatype in a model configuration: `TYPE_` and the protocol's name, but
/// BYTES, which Triton's configuration calls `TYPE_STRING`.
pub fn config_type_name(datatype: &str) -> String {
    match datatype {
        "BYTES" => "TYPE_STRING".to_string(),
        other => format!("TYPE_{other}"),
    }
}

pub fn model_config<'a>(model: &'a Model) -> ModelConfig<'a> {
    let config = &model.bundle().config;
    let batching = model.batching();
    let tensors = |specs: &'a [TensorSpec]| -> Vec<ConfigTensor<'a>> {
        specs
            .iter()
            .map(|spec| {
                let dims = match batching {
                    Some(_) => spec.shape.get(1..).unwrap_or_default().to_vec(),
                    None => spec.shape.clone(),
                };
                let batch_alone = batching.is_some() && dims.is_empty();
                ConfigTensor {
                    name: &spec.name,
                    data_type: config_type_name(spec.dtype.v2_name()),
                    dims: if batch_alone { vec![1] } else { dims },
                    reshape: batch_alone.then_some(Reshape { shape: [] }),
                }
            })
            .collect()
    };
    ModelConfig {
        name: model.name(),
        platform: PLATFORM,
        backend: BACKEND,
        max_batch_size: batching.map_or(0, |batching| batching.max_rows as u32),
        input: tensors(&config.inputs),
        output: tensors(&config.outputs),
        instance_group: [InstanceGroup {
            name: "cpu",
            kind: "KIND_CPU",
            count: model.instances() as u32,
        }],
        dynamic_batching: batching.map(|batching| DynamicBatching {
            max_queue_delay_microseconds: batching.max_delay.as_micros() as u64,
        }),
    }
}

/// A request's input tensors, matched by name to the inputs the model's bundle declares (the
/// declarations alone, so that decoding needs no running model).
pub struct RequestInputs<'m> {
    bundle: &'m Bundle,
    tensors: Vec<Option<Tensor>>,
    /// BYTES elements of the inputs so far, bounded by [`defaults::MAX_STRING_ELEMENTS`].
    strings: usize,
}

/// Where one request input goes, and what its data must hold.
pub struct InputSlot {
    index: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Elements the shape holds.
    pub count: usize,
}

impl<'m> RequestInputs<'m> {
    pub fn new(bundle: &'m Bundle) -> Self {
        RequestInputs {
            bundle,
            tensors: vec![None; bundle.config.inputs.len()],
            strings: 0,
        }
    }

    fn specs(&self) -> &'m [TensorSpec] {
        &self.bundle.config.inputs
    }

    /// Checks an input's name, datatype and shape against the model's declaration.
    pub fn slot(
        &mut self,
        name: &str,
        datatype: &str,
        shape: &[i64],
    ) -> Result<InputSlot, ServeError> {
        let specs = self.specs();
        let index = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown input '{}'; model '{}' has inputs {}",
                    clip(name),
                    self.bundle.name(),
                    quoted(specs.iter().map(|s| s.name.as_str()))
                ))
            })?;
        if self.tensors[index].is_some() {
            return Err(invalid(format!("input '{name}' is given twice")));
        }
        // The request's shape as messages show it: it may have any number of dimensions.
        let received = || clip(&ShapeText(shape).to_string());
        if let Some(axis) = shape.iter().position(|&dim| dim < 1) {
            return Err(invalid(format!(
                "input '{name}': dimension {axis} of shape {} is {}; a request gives the actual sizes, each at least 1",
                received(),
                shape[axis]
            )));
        }
        let spec = &specs[index];
        let expected = spec.dtype.v2_name();
        if datatype != expected {
            let known = if DType::from_v2_name(datatype).is_some() {
                ""
            } else {
                " (not a datatype of the protocol)"
            };
            return Err(invalid(format!(
                "input '{name}' expects datatype {expected}, received {}{known}",
                clip(datatype)
            )));
        }
        let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let dims = dims
            .filter(|dims| shape_fits(&spec.shape, dims))
            .ok_or_else(|| {
                invalid(format!(
                    "input '{name}' expects shape {} (-1: any size), received {}",
                    ShapeText(&spec.shape),
                    received()
                ))
            })?;
        let count = dims
            .iter()
            .try_fold(1usize, |count, &dim| count.checked_mul(dim))
            .ok_or_else(|| {
                invalid(format!(
                    "input '{name}': shape {} holds more elements than memory can",
                    received()
                ))
            })?;
        if spec.dtype == DType::String {
            self.strings = self.strings.saturating_add(count);
            if self.strings > defaults::MAX_STRING_ELEMENTS {
                return Err(invalid(format!(
                    "input '{name}': the request's BYTES inputs hold {} strings, more than this server takes in one request ({}); send fewer rows per request",
                    self.strings,
                    defaults::MAX_STRING_ELEMENTS
                )));
            }
        }
        Ok(InputSlot {
            index,
            dtype: spec.dtype,
            shape: dims,
            count,
        })
    }

    /// The name of the input a slot is for, for messages about its data.
    pub fn name(&self, slot: &InputSlot) -> &'m str {
        &self.specs()[slot.index].name
    }

    /// Checks that `bytes` of raw data fill the slot's shape, then decodes them (BYTES: each
    /// element its 4-byte length, then its bytes; `fill` checks their count).
    pub fn decode_raw(&self, slot: &InputSlot, bytes: &[u8]) -> Result<TensorData, ServeError> {
        let name = self.name(slot);
        if let Some(size) = slot.dtype.size() {
            let expected = slot.count.checked_mul(size).ok_or_else(|| {
                invalid(format!(
                    "input '{name}': shape {} of {} takes more bytes than memory can hold",
                    ShapeText(&slot.shape),
                    slot.dtype.v2_name()
                ))
            })?;
            if expected != bytes.len() {
                return Err(invalid(format!(
                    "input '{name}' has shape {} of {}, which takes {expected} bytes, but {} bytes were sent",
                    ShapeText(&slot.shape),
                    slot.dtype.v2_name(),
                    bytes.len()
                )));
            }
        }
        TensorData::from_le_bytes(slot.dtype, bytes, slot.count)
            .map_err(|problem| invalid(format!("input '{name}': {problem}")))
    }

    /// Puts the data of one input in its place, once its element count is checked.
    pub fn fill(&mut self, slot: InputSlot, data: TensorData) -> Result<(), ServeError> {
        let name = self.name(&slot);
        if data.len() != slot.count {
            return Err(invalid(format!(
                "input '{name}' has shape {}, which holds {} values, but {} were sent",
                ShapeText(&slot.shape),
                slot.count,
                data.len()
            )));
        }
        let tensor = Tensor::new(slot.shape, data).map_err(|e| invalid(e.to_string()))?;
        self.tensors[slot.index] = Some(tensor);
        Ok(())
    }

    /// The tensors in declaration order, once every declared input is there.
    pub fn finish(self) -> Result<Vec<Tensor>, ServeError> {
        let specs = self.specs();
        let missing: Vec<&str> = specs
            .iter()
            .zip(&self.tensors)
            .filter(|(_, tensor)| tensor.is_none())
            .map(|(spec, _)| spec.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "missing input {}; model '{}' needs {}",
                quoted(missing.into_iter()),
                self.bundle.name(),
                quoted(specs.iter().map(|s| s.name.as_str()))
            )));
        }
        Ok(self.tensors.into_iter().flatten().collect())
    }
}

/// An output a request asked for: its index among the declared outputs, whether it goes back
/// as binary data (REST's binary extension), how many of its best classes to return instead
/// of its values (the classification extension), and the shared memory to write it to (the
/// system shared memory extension).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputChoice {
    pub index: usize,
    pub binary: bool,
    pub classification: Option<usize>,
    pub shared_memory: Option<SharedMemorySpan>,
}

/// An output named in a request, with what it asked of it.
pub struct RequestedOutput<'r> {
    pub name: &'r str,
    /// The binary choice; the request's default when None.
    pub binary: Option<bool>,
    /// The `classification` parameter: return the k best classes (0, as in Triton: the values).
    pub classification: Option<u64>,
    pub shared_memory: Option<SharedMemorySpan>,
}

/// Where a tensor's bytes are in shared memory: the system shared memory extension's
/// `shared_memory_region`, `shared_memory_offset` and `shared_memory_byte_size` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedMemorySpan {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

impl SharedMemorySpan {
    /// The span the three parameters give; None without a region. `owner` names the input or
    /// output for messages.
    pub fn from_parameters(
        owner: &str,
        region: Option<String>,
        offset: Option<u64>,
        byte_size: Option<u64>,
    ) -> Result<Option<Self>, ServeError> {
        match (region, byte_size) {
            (None, None) if offset.is_none() => Ok(None),
            (None, _) => Err(invalid(format!(
                "{owner}: the shared memory parameters need 'shared_memory_region'"
            ))),
            (Some(_), None) => Err(invalid(format!(
                "{owner}: parameter 'shared_memory_byte_size' is needed with 'shared_memory_region'"
            ))),
            (Some(region), Some(byte_size)) => Ok(Some(SharedMemorySpan {
                region,
                offset: offset.unwrap_or(0),
                byte_size,
            })),
        }
    }
}

/// Reads an input's bytes from shared memory. A request's shared memory inputs together may
/// hold at most `--max-body-bytes`, as its body: `budget` is what is left of it.
pub fn read_shared_memory(
    registry: &Registry,
    owner: &str,
    span: &SharedMemorySpan,
    budget: &mut usize,
) -> Result<Vec<u8>, ServeError> {
    let size = usize::try_from(span.byte_size).unwrap_or(usize::MAX);
    *budget = budget.checked_sub(size).ok_or_else(|| {
        ServeError::new(
            crate::serving::error::ErrorKind::TooLarge,
            format!(
                "{owner}: the request's shared memory inputs hold more than this server reads for one request ({} bytes, its --max-body-bytes)",
                registry.limits().max_body_bytes
            ),
        )
    })?;
    registry
        .shared_memory()
        .read(owner, &span.region, span.offset, span.byte_size)
}

/// Checks the shared memory an output asks for, before the model runs.
pub fn check_output_span(
    registry: &Registry,
    owner: &str,
    span: &SharedMemorySpan,
) -> Result<(), ServeError> {
    registry
        .shared_memory()
        .check(owner, &span.region, span.offset, span.byte_size)
}

/// Writes an output's answer to its shared memory, as the binary encoding lays it out.
pub fn write_shared_memory(
    registry: &Registry,
    owner: &str,
    span: &SharedMemorySpan,
    tensor: &Tensor,
) -> Result<(), ServeError> {
    let mut bytes = Vec::new();
    tensor.data().write_le_bytes(&mut bytes);
    registry
        .shared_memory()
        .write(owner, &span.region, span.offset, span.byte_size, &bytes)
}

/// The outputs named in a request, in the order asked; every declared output, in declaration
/// order, when the request names none.
pub fn choose_outputs<'r>(
    bundle: &Bundle,
    requested: impl IntoIterator<Item = RequestedOutput<'r>>,
    binary_default: bool,
) -> Result<Vec<OutputChoice>, ServeError> {
    let specs = &bundle.config.outputs;
    let mut chosen: Vec<OutputChoice> = Vec::new();
    for output in requested {
        let name = output.name;
        let index = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown output '{}'; model '{}' has outputs {}",
                    clip(name),
                    bundle.name(),
                    quoted(specs.iter().map(|s| s.name.as_str()))
                ))
            })?;
        if chosen.iter().any(|choice| choice.index == index) {
            return Err(invalid(format!("output '{name}' is requested twice")));
        }
        let classification = match output.classification {
            None | Some(0) => None,
            Some(k) => {
                let dtype = specs[index].dtype;
                if matches!(dtype, DType::Bool | DType::Float16 | DType::String) {
                    return Err(invalid(format!(
                        "output '{name}': classification needs numeric scores, but the output is {}",
                        dtype.v2_name()
                    )));
                }
                Some(usize::try_from(k).unwrap_or(usize::MAX))
            }
        };
        if output.shared_memory.is_some()
            && (classification.is_some() || output.binary == Some(true))
        {
            return Err(invalid(format!(
                "output '{name}' asks for shared memory and for {}; ask for one",
                if classification.is_some() {
                    "classification"
                } else {
                    "binary data"
                }
            )));
        }
        chosen.push(OutputChoice {
            index,
            binary: output.binary.unwrap_or(binary_default) && output.shared_memory.is_none(),
            classification,
            shared_memory: output.shared_memory,
        });
    }
    if chosen.is_empty() {
        chosen = (0..specs.len())
            .map(|index| OutputChoice {
                index,
                binary: binary_default,
                classification: None,
                shared_memory: None,
            })
            .collect();
    }
    Ok(chosen)
}

/// The tensor an output choice answers with: the output itself, or, with classification, its
/// `k` best classes as BYTES `"score:index:label"` (`"score:index"` without a label), best
/// first, the score printed as Triton's `std::to_string` prints it. As Triton: a model that
/// batches has each row (the first dimension) ranked on its own, giving `[rows, k]`; one that
/// does not has its whole output ranked as one, giving `[k]`. Labels are the bundle's, for its
/// prediction output only (Triton's per-output label file).
pub fn answer_tensor<'t>(
    bundle: &Bundle,
    batched: bool,
    choice: &OutputChoice,
    tensor: &'t Tensor,
) -> Result<std::borrow::Cow<'t, Tensor>, ServeError> {
    let Some(k) = choice.classification else {
        return Ok(std::borrow::Cow::Borrowed(tensor));
    };
    let labels: &[String] = if choice.index == bundle.prediction {
        &bundle.config.labels
    } else {
        &[]
    };
    let data = tensor.data();
    let (rows, classes) = match tensor.shape() {
        [rows, rest @ ..] if batched => (*rows, rest.iter().product()),
        _ => (1, data.len()),
    };
    let count = k.min(classes);
    let mut ranked = Vec::with_capacity(rows.saturating_mul(count));
    for row in 0..rows {
        let score = |class: usize| data.value_f64(row * classes + class);
        let mut order: Vec<usize> = (0..classes).collect();
        // Best first, ties in class order (a stable sort), NaN last.
        order.sort_by(|&a, &b| {
            let (a, b) = (score(a), score(b));
            match (a.is_nan(), b.is_nan()) {
                (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
                (nan_a, nan_b) => nan_a.cmp(&nan_b),
            }
        });
        ranked.extend(order.into_iter().take(count).map(|class| {
            let text = format!("{}:{class}", score_text(data, row * classes + class));
            match labels.get(class) {
                Some(label) => format!("{text}:{label}"),
                None => text,
            }
        }));
    }
    let shape = if batched && !tensor.shape().is_empty() {
        vec![rows, count]
    } else {
        vec![count]
    };
    Tensor::new(shape, TensorData::String(ranked))
        .map(std::borrow::Cow::Owned)
        .map_err(|error| ServeError::internal(format!("classification: {error}")))
}

fn c_float(value: f64) -> String {
    match value {
        v if v.is_nan() => "nan".to_string(),
        v if v.is_infinite() && v > 0.0 => "inf".to_string(),
        v if v.is_infinite() => "-inf".to_string(),
        v => format!("{v:.6}"),
    }
}

/// An element as C's `%f` prints it (six decimals), as Triton's `std::to_string` does.
fn score_text(data: &TensorData, index: usize) -> String {
    match data {
        // NaN and infinity as C prints them.
        TensorData::Float32(values) => c_float(f64::from(values[index])),
        TensorData::Float64(values) => c_float(values[index]),
        // Integers print as themselves (`std::to_string` of an integer).
        other => other.value_text(index),
    }
}

/// Triton's statistics of a model (the statistics extension), in its JSON field names.
#[derive(Serialize)]
pub struct ModelStatisticsReport<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    pub batch_stats: Vec<BatchStatistics>,
}

#[derive(Serialize, Default, Clone, Copy)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

#[derive(Serialize)]
pub struct InferStatistics {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

#[derive(Serialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

fn duration(measured: &crate::metrics::StatisticDuration) -> Duration {
    let (count, ns) = measured.get();
    Duration { count, ns }
}

pub fn model_statistics(model: &Model) -> ModelStatisticsReport<'_> {
    use std::sync::atomic::Ordering::Relaxed;
    let statistics = model.statistics();
    let none = Duration::default();
    let compute_infer = duration(&statistics.compute_infer);
    // Inputs are made ready and outputs checked as part of a run: their counts are the runs',
    // their time is inside compute_infer (perf_analyzer requires the three counts to agree).
    let within_infer = Duration {
        count: compute_infer.count,
        ns: 0,
    };
    ModelStatisticsReport {
        name: model.name(),
        version: triton_version(&model.bundle().config.version),
        last_inference: statistics.last_inference_ms.load(Relaxed),
        inference_count: statistics.inference_count.load(Relaxed),
        execution_count: statistics.execution_count.load(Relaxed),
        inference_stats: InferStatistics {
            success: duration(&statistics.success),
            fail: duration(&statistics.fail),
            queue: duration(&statistics.queue),
            compute_input: within_infer,
            compute_infer,
            compute_output: within_infer,
            cache_hit: none,
            cache_miss: none,
        },
        batch_stats: statistics
            .batches()
            .into_iter()
            .map(|(batch_size, count, ns)| BatchStatistics {
                batch_size,
                compute_input: Duration { count, ns: 0 },
                compute_infer: Duration { count, ns },
                compute_output: Duration { count, ns: 0 },
            })
            .collect(),
    }
}

/// A bundle version as Triton's tools read a version: Triton numbers them, and perf_analyzer
/// matches the statistics' version against the leading number it parses (`stoll`) of the
/// version it asked for, so `1.0.0` is reported as `1`. A version without a leading number is
/// reported whole.
pub fn triton_version(version: &str) -> &str {
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        version
    } else {
        &version[..digits]
    }
}

/// The statistics of the model named (in `version` when given), or of every model when `name`
/// is empty.
pub fn statistics(
    registry: &Registry,
    name: &str,
    version: Option<&str>,
) -> Result<Vec<Arc<Model>>, ServeError> {
    if name.is_empty() {
        return Ok(registry.models().to_vec());
    }
    Ok(vec![find_model(registry, name, version)?])
}

/// One entry of the model repository's index.
#[derive(Serialize)]
pub struct RepositoryEntry<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub state: &'static str,
    pub reason: &'static str,
}

/// The repository's index: the served models, READY (or UNAVAILABLE once one has stopped or
/// shutdown has begun); with `ready_only`, only the ready ones.
pub fn repository_index(registry: &Registry, ready_only: bool) -> Vec<RepositoryEntry<'_>> {
    registry
        .models()
        .iter()
        .map(|model| (model, registry.is_model_ready(model)))
        .filter(|(_, ready)| *ready || !ready_only)
        .map(|(model, ready)| RepositoryEntry {
            name: model.name(),
            version: &model.bundle().config.version,
            state: if ready { "READY" } else { "UNAVAILABLE" },
            reason: "",
        })
        .collect()
}

/// Why a model cannot be loaded or unloaded: a predictor's models are fixed at its start.
pub fn refuse_load(action: &str, name: &str) -> ServeError {
    ServeError::invalid(format!(
        "cannot {action} model '{}': a predictor serves the bundles it was started with, fixed by its image or unit; deploy another to change them",
        clip(name)
    ))
}
