//! ONNX Runtime through the `ort` crate: loading the shared library, opening a model, reading
//! its graph's signature and running it. The only module of the server that imports `ort`; the
//! crate's `unsafe` blocks (reading the library's version, handing freed memory back) are here too.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::{
    DynMap, DynValue, IntoTensorElementType, PrimitiveTensorElementType, TensorElementType,
    ValueType,
};

use super::{Backend, GraphSignature, GraphValue, GraphValueKind, RuntimeError};
use crate::tensor::{with_fixed_data, with_fixed_dtype, DType, Tensor, TensorData};

/// The process-wide ONNX Runtime (the library can be loaded, and its environment built, only once).
#[derive(Clone)]
pub struct OnnxRuntime {
    environment: Environment,
    version: String,
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The library's own version string, from its C API entry point (`ort` keeps it to itself).
#[allow(unsafe_code)] // Reading the version: see the SAFETY comment.
fn library_version(library: &Path) -> Option<String> {
    // SAFETY: the library is ONNX Runtime, already loaded by `ort::init_from` (this only takes
    // another reference to it); OrtGetApiBase and GetVersionString take no arguments and return
    // static data, a null-terminated string the caller must not free.
    unsafe {
        let library = libloading::Library::new(library).ok()?;
        let api_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            library.get(b"OrtGetApiBase").ok()?;
        let base = api_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(version)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

impl OnnxRuntime {
    /// Loads `libonnxruntime` from `library` (a path, or a bare file name looked up by the dynamic
    /// loader) on the first call; later calls return the same runtime.
    pub fn load(library: &Path) -> Result<OnnxRuntime, RuntimeError> {
        let version = || library_version(library).unwrap_or_else(|| "unknown".to_string());
        if let Some(environment) = ENVIRONMENT.get() {
            return Ok(OnnxRuntime {
                environment: environment.clone(),
                version: version(),
            });
        }
        let environment = ort::init_from(library)
            .map_err(|error| RuntimeError::Library(error.to_string()))?
            .with_name("predictor")
            .with_telemetry(false)
            .build()
            .map_err(|error| RuntimeError::Library(error.to_string()))?;
        Ok(OnnxRuntime {
            environment: ENVIRONMENT.get_or_init(|| environment).clone(),
            version: version(),
        })
    }

    /// ONNX Runtime's own description of its build (version, commit).
    pub fn build_info(&self) -> &'static str {
        ort::info()
    }

    /// ONNX Runtime's version (`1.24.4`), as the library itself says.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Opens `model` with `threads` intra-op threads.
    pub fn open(&self, model: &Path, threads: usize) -> Result<OrtBackend, RuntimeError> {
        let model_error = |message: String| RuntimeError::Model {
            path: model.display().to_string(),
            message: with_hint(message),
        };
        let session = Session::builder(&self.environment)
            .map_err(|e| model_error(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| model_error(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| model_error(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| model_error(e.to_string()))?
            // No arena: ONNX Runtime's arena keeps the largest run's memory for good (a request of
            // 64 x 256 tokens to a MiniLM left 1.6 GiB held); without it, a run's tensors are
            // freed to glibc, which `run` hands back to the system after a long run.
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .map_err(|e| model_error(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| model_error(e.to_string()))?;
        let describe = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|outlet| GraphValue {
                    name: outlet.name().to_string(),
                    kind: graph_value_kind(outlet.dtype()),
                    dimension_names: match outlet.dtype() {
                        ValueType::Tensor {
                            dimension_symbols, ..
                        } => dimension_symbols.to_vec(),
                        _ => Vec::new(),
                    },
                })
                .collect()
        };
        let signature = GraphSignature {
            inputs: describe(session.inputs()),
            outputs: describe(session.outputs()),
        };
        let class_keys = vec![None; signature.outputs.len()];
        // A failed run is the server's to report, once, with ONNX Runtime's message (as the
        // caller's 400 or as an internal error): ONNX Runtime's own ERROR line for the failing
        // node would be a second report, and an ERROR for what may be a caller's mistake.
        let mut run_options = RunOptions::new().map_err(|e| model_error(e.to_string()))?;
        run_options
            .set_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| model_error(e.to_string()))?;
        Ok(OrtBackend {
            session,
            signature,
            class_keys,
            run_options,
        })
    }
}

/// ONNX Runtime's own message, and what to do when it is a known trap.
fn with_hint(message: String) -> String {
    // string_normalizer.cc builds a C++ locale by name (en_US.UTF-8 unless the model names
    // one): it fails where that locale is not installed, as in predictor's OCI image.
    if message.contains("Failed to construct locale") {
        return format!(
            "{message} (the model's StringNormalizer, which lower-cases text, asks for a locale this system lacks; export it with a locale that always exists, in skl2onnx options={{id(vectorizer): {{\"locale\": \"C\"}}}}: see models/support-tickets-tfidf/make_model.py)"
        );
    }
    message
}

pub struct OrtBackend {
    session: Session,
    signature: GraphSignature,
    /// For each output that is a sequence of class maps, the classes of its last run.
    class_keys: Vec<Option<Vec<String>>>,
    run_options: RunOptions,
}

impl Backend for OrtBackend {
    fn signature(&self) -> &GraphSignature {
        &self.signature
    }

    fn class_keys(&self, output: usize) -> Option<&[String]> {
        self.class_keys.get(output)?.as_deref()
    }

    fn run(&mut self, inputs: Vec<Tensor>, outputs: &[usize]) -> Result<Vec<Tensor>, RuntimeError> {
        let started = Instant::now();
        let answer = self.run_session(inputs, outputs);
        // ONNX Runtime allocates with glibc's malloc (the server's own allocations are
        // mimalloc's), and glibc keeps what its threads' arenas freed: after a long run, which is
        // where large tensors come from, that memory goes back to the system. A short run skips
        // the walk over the arenas.
        if started.elapsed() >= GIVE_BACK_AFTER {
            give_back_freed_memory();
        }
        answer
    }
}

/// How long a run must have taken for the memory it freed to be handed back to the system.
const GIVE_BACK_AFTER: Duration = Duration::from_millis(10);

#[allow(unsafe_code)] // The call has no preconditions: see the SAFETY comment.
fn give_back_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks, and returns free pages
    // to the system; it takes no pointer and may run at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl OrtBackend {
    /// One run of the session, the wanted outputs converted to tensors.
    fn run_session(
        &mut self,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let values = self
            .signature
            .inputs
            .iter()
            .zip(inputs)
            .map(|(input, tensor)| Ok((input.name.as_str(), to_ort(tensor)?)))
            .collect::<Result<Vec<_>, ort::Error>>()
            .map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let values = self
            .session
            .run_with_options(values, &self.run_options)
            .map_err(run_error)?;
        // Only the wanted outputs are converted: the others may be of kinds predictor does not
        // serve, and copying them would be wasted work.
        outputs
            .iter()
            .map(|&index| {
                let output = &self.signature.outputs[index];
                let name = &output.name;
                let value = values.get(name).ok_or_else(|| {
                    RuntimeError::Inference(format!("no value for output '{name}'"))
                })?;
                if let GraphValueKind::ClassScores { .. } = output.kind {
                    let (keys, scores) = class_scores(name, value)?;
                    if let Some(slot) = self.class_keys.get_mut(index) {
                        *slot = Some(keys);
                    }
                    return Ok(scores);
                }
                from_ort(name, value)
            })
            .collect()
    }
}

/// Whose fault a failed run is. The model ran its sample when it was loaded, so a run that fails
/// on inputs that passed every check of the bundle failed on the caller's data (a reshape the data
/// cannot take, lengths a node cannot broadcast), which ONNX Runtime reports as an invalid
/// argument, a runtime exception or a generic failure: the caller's to fix. The server's own
/// faults stay internal: memory that could not be allocated (ONNX Runtime says so only in its
/// message), and the engine's or an execution provider's failures.
fn run_error(error: ort::Error) -> RuntimeError {
    let message = error.to_string();
    let out_of_memory = ["bad_alloc", "Failed to allocate memory", "out of memory"]
        .iter()
        .any(|words| message.contains(words));
    match error.code() {
        ort::ErrorCode::InvalidArgument
        | ort::ErrorCode::RuntimeException
        | ort::ErrorCode::GenericFailure
            if !out_of_memory =>
        {
            RuntimeError::RejectedInput(message)
        }
        _ => RuntimeError::Inference(message),
    }
}

fn dtype_of(element: TensorElementType) -> Option<DType> {
    // Bytes are the server's own (encoded images): ONNX Runtime's strings are `string`.
    DType::ALL.iter().copied().find(|&dtype| {
        with_fixed_dtype!(
            dtype,
            T => <T as IntoTensorElementType>::into_tensor_element_type() == element,
            strings => element == TensorElementType::String,
            bytes => false
        )
    })
}

fn graph_value_kind(value_type: &ValueType) -> GraphValueKind {
    match value_type {
        ValueType::Tensor { ty, shape, .. } => match dtype_of(*ty) {
            Some(dtype) => GraphValueKind::Tensor {
                dtype,
                shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
            },
            None => GraphValueKind::Unsupported(protocol_type_name(value_type)),
        },
        ValueType::Sequence(element) => match element.as_ref() {
            ValueType::Map { key, value } => match (dtype_of(*key), *value) {
                (Some(key @ (DType::Int64 | DType::String)), TensorElementType::Float32) => {
                    GraphValueKind::ClassScores { key }
                }
                _ => GraphValueKind::Unsupported(protocol_type_name(value_type)),
            },
            _ => GraphValueKind::Unsupported(protocol_type_name(value_type)),
        },
        other => GraphValueKind::Unsupported(protocol_type_name(other)),
    }
}

/// A graph value's type in the protocol's words (`FP32`, `BYTES`, `sequence of maps from INT64
/// to FP32`), not `ort`'s Rust notation.
fn protocol_type_name(value_type: &ValueType) -> String {
    let element = |ty: &TensorElementType| {
        dtype_of(*ty).map_or_else(
            || format!("{ty:?}").to_uppercase(),
            |d| d.v2_name().to_string(),
        )
    };
    match value_type {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|&d| {
                    if d < 0 {
                        "-1".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            format!("a {} tensor of shape [{}]", element(ty), dims.join(", "))
        }
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value } => format!(
                "a sequence of maps from {} to {}",
                element(key),
                element(value)
            ),
            ValueType::Tensor { ty, .. } => format!("a sequence of {} tensors", element(ty)),
            other => format!("a sequence of {}", protocol_type_name(other)),
        },
        ValueType::Map { key, value } => {
            format!("a map from {} to {}", element(key), element(value))
        }
        ValueType::Optional(inner) => format!("an optional {}", protocol_type_name(inner)),
    }
}

fn to_ort(tensor: Tensor) -> Result<DynValue, ort::Error> {
    let (shape, data) = tensor.into_parts();
    Ok(with_fixed_data!(
        data,
        v => ort::value::Tensor::from_array((shape, v))?.into_dyn(),
        strings => string_tensor(shape, &strings)?,
        // A bundle's checks keep bytes out of the graph's inputs: its preprocessing reads them.
        _bytes => return Err(ort::Error::new("bytes are no graph input; strings are"))
    ))
}

/// A string tensor. `from_string_array` fills it as C strings (ONNX Runtime's FillStringTensor),
/// which a NUL character would cut short; so elements that hold one are written each with its
/// length instead (GetResizedStringTensorElementBuffer), as ONNX Runtime's strings may hold any
/// bytes.
#[allow(unsafe_code)] // Writing each element: see the SAFETY comment.
fn string_tensor(shape: Vec<usize>, strings: &[String]) -> Result<DynValue, ort::Error> {
    use ort::AsPointer;
    if !strings.iter().any(|text| text.contains('\0')) {
        return Ok(ort::value::Tensor::from_string_array((shape, strings))?.into_dyn());
    }
    let empty = vec![""; strings.len()];
    let mut value = ort::value::Tensor::from_string_array((shape, empty.as_slice()))?;
    for (index, text) in strings.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: the value is a string tensor of `strings.len()` elements that this function
        // owns; ONNX Runtime gives back a buffer of exactly `text.len()` bytes for the element,
        // valid until the value is changed again, and the copy writes that many.
        unsafe {
            let status = (ort::api().GetResizedStringTensorElementBuffer)(
                value.ptr_mut(),
                index,
                text.len(),
                &mut buffer,
            );
            ort::Error::result_from_status(status)?;
            if !text.is_empty() {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), text.len());
            }
        }
    }
    Ok(value.into_dyn())
}

/// A sequence of maps from class to score, one per row (scikit-learn's ZipMap), as the classes
/// in key order (ONNX Runtime keeps a map's keys sorted; sorted again here to rely on nothing)
/// and a float32 tensor `[rows, classes]`. Every row must have the same classes.
fn class_scores(name: &str, value: &DynValue) -> Result<(Vec<String>, Tensor), RuntimeError> {
    let failed = |e: ort::Error| RuntimeError::Inference(format!("output '{name}': {e}"));
    let maps = value
        .try_extract_sequence::<ort::value::DynMapValueType>()
        .map_err(failed)?;
    let rows: Vec<Vec<(String, f32)>> = maps
        .iter()
        .map(|map: &DynMap| -> Result<_, ort::Error> {
            // Each kind in its own order, as scikit-learn's `classes_` (and ONNX Runtime's
            // maps): integers numerically, text by its bytes.
            Ok(match map.dtype() {
                ValueType::Map {
                    key: TensorElementType::String,
                    ..
                } => {
                    let mut pairs = map.try_extract_key_values::<String, f32>()?;
                    pairs.sort_by(|(a, _), (b, _)| a.cmp(b));
                    pairs
                }
                _ => {
                    let mut pairs = map.try_extract_key_values::<i64, f32>()?;
                    pairs.sort_by_key(|&(key, _)| key);
                    pairs
                        .into_iter()
                        .map(|(key, score)| (key.to_string(), score))
                        .collect()
                }
            })
        })
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    let keys: Vec<String> = rows
        .first()
        .map(|row| row.iter().map(|(key, _)| key.clone()).collect())
        .unwrap_or_default();
    if let Some(row) = rows
        .iter()
        .position(|row| row.iter().map(|(key, _)| key).ne(keys.iter()))
    {
        return Err(RuntimeError::Inference(format!(
            "output '{name}': row {row} has other classes than row 0"
        )));
    }
    let shape = vec![rows.len(), keys.len()];
    let scores: Vec<f32> = rows.into_iter().flatten().map(|(_, score)| score).collect();
    let tensor = Tensor::new(shape, TensorData::Float32(scores))
        .map_err(|e| RuntimeError::Inference(e.to_string()))?;
    Ok((keys, tensor))
}

fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    fn extract<T: PrimitiveTensorElementType + Clone>(
        value: &DynValue,
    ) -> Result<(Vec<usize>, Vec<T>), RuntimeError> {
        let (shape, data) = value
            .try_extract_tensor::<T>()
            .map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
        Ok((shape, data.to_vec()))
    }
    let unsupported = || RuntimeError::UnsupportedOutput {
        name: name.to_string(),
        type_name: protocol_type_name(value.dtype()),
    };
    let dtype = value
        .dtype()
        .tensor_type()
        .and_then(dtype_of)
        .ok_or_else(unsupported)?;
    let (shape, data) = with_fixed_dtype!(dtype, T => {
        let (shape, data) = extract::<T>(value)?;
        (shape, TensorData::from(data))
    }, strings => {
        let (shape, strings) = value
            .try_extract_strings()
            .map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
        (shape, TensorData::String(strings))
    }, bytes => return Err(unsupported()));
    Tensor::new(shape, data).map_err(|e| RuntimeError::Inference(e.to_string()))
}
