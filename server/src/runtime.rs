//! The one module that touches ONNX Runtime (through `ort`): loading the shared library, reading a
//! graph's signature and running it. Everything else sees only [`Backend`] and [`Tensor`].

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};

use crate::tensor::{with_data, DType, Tensor, TensorData};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot load the ONNX Runtime library: {0}")]
    Library(String),
    #[error("cannot load the ONNX model {path}: {message}")]
    Model { path: String, message: String },
    #[error("ONNX Runtime failed to run the model: {0}")]
    Inference(String),
    /// ONNX Runtime refused an input that passed the bundle's checks (say, two inputs whose
    /// row counts differ): the caller's to fix.
    #[error("the model refused the input: {0}")]
    RejectedInput(String),
    #[error(
        "the model produced output '{name}' of type {type_name}, which predictor cannot return"
    )]
    UnsupportedOutput { name: String, type_name: String },
}

/// A graph input or output as the ONNX file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphValue {
    pub name: String,
    pub kind: GraphValueKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GraphValueKind {
    /// A tensor; `shape` has -1 for every dynamic (symbolic or unknown) dimension.
    Tensor { dtype: DType, shape: Vec<i64> },
    /// Anything predictor cannot serve (strings, maps, sequences...), described for error messages.
    Unsupported(String),
}

/// The inputs and outputs of a graph, in the graph's order.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSignature {
    pub inputs: Vec<GraphValue>,
    pub outputs: Vec<GraphValue>,
}

/// A loaded model that runs one request at a time; owned by one worker thread.
pub trait Backend: Send + 'static {
    fn signature(&self) -> &GraphSignature;
    /// Runs the graph on `inputs`, given in the order of `signature().inputs`; returns the graph
    /// outputs at the indices `outputs` (of `signature().outputs`), in that order.
    fn run(&mut self, inputs: Vec<Tensor>, outputs: &[usize]) -> Result<Vec<Tensor>, RuntimeError>;
}

/// The process-wide ONNX Runtime (the library can be loaded, and its environment built, only once).
#[derive(Clone)]
pub struct OnnxRuntime {
    environment: Environment,
    version: String,
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The library's own version string, from its C API entry point (`ort` keeps it to itself).
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

    /// ONNX Runtime's version (`1.22.1`), as the library itself says.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Opens `model` with `threads` intra-op threads.
    pub fn open(&self, model: &Path, threads: usize) -> Result<OrtBackend, RuntimeError> {
        let model_error = |message: String| RuntimeError::Model {
            path: model.display().to_string(),
            message,
        };
        let session = Session::builder(&self.environment)
            .map_err(|e| model_error(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| model_error(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| model_error(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| model_error(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| model_error(e.to_string()))?;
        let describe = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|outlet| GraphValue {
                    name: outlet.name().to_string(),
                    kind: graph_value_kind(outlet.dtype()),
                })
                .collect()
        };
        let signature = GraphSignature {
            inputs: describe(session.inputs()),
            outputs: describe(session.outputs()),
        };
        Ok(OrtBackend { session, signature })
    }
}

pub struct OrtBackend {
    session: Session,
    signature: GraphSignature,
}

impl Backend for OrtBackend {
    fn signature(&self) -> &GraphSignature {
        &self.signature
    }

    fn run(&mut self, inputs: Vec<Tensor>, outputs: &[usize]) -> Result<Vec<Tensor>, RuntimeError> {
        let values = self
            .signature
            .inputs
            .iter()
            .zip(inputs)
            .map(|(input, tensor)| Ok((input.name.as_str(), to_ort(tensor)?)))
            .collect::<Result<Vec<_>, ort::Error>>()
            .map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let values = self.session.run(values).map_err(|e| match e.code() {
            ort::ErrorCode::InvalidArgument => RuntimeError::RejectedInput(e.to_string()),
            _ => RuntimeError::Inference(e.to_string()),
        })?;
        // Only the wanted outputs are converted: the others may be maps or sequences, which
        // predictor does not serve, and copying them would be wasted work.
        outputs
            .iter()
            .map(|&index| {
                let name = &self.signature.outputs[index].name;
                let value = values.get(name).ok_or_else(|| {
                    RuntimeError::Inference(format!("no value for output '{name}'"))
                })?;
                from_ort(name, value)
            })
            .collect()
    }
}

fn dtype_of(element: TensorElementType) -> Option<DType> {
    Some(match element {
        TensorElementType::Bool => DType::Bool,
        TensorElementType::Int8 => DType::Int8,
        TensorElementType::Int16 => DType::Int16,
        TensorElementType::Int32 => DType::Int32,
        TensorElementType::Int64 => DType::Int64,
        TensorElementType::Uint8 => DType::Uint8,
        TensorElementType::Uint16 => DType::Uint16,
        TensorElementType::Uint32 => DType::Uint32,
        TensorElementType::Uint64 => DType::Uint64,
        TensorElementType::Float16 => DType::Float16,
        TensorElementType::Float32 => DType::Float32,
        TensorElementType::Float64 => DType::Float64,
        _ => return None,
    })
}

fn graph_value_kind(value_type: &ValueType) -> GraphValueKind {
    match value_type {
        ValueType::Tensor { ty, shape, .. } => match dtype_of(*ty) {
            Some(dtype) => GraphValueKind::Tensor {
                dtype,
                shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
            },
            None => GraphValueKind::Unsupported(value_type.to_string()),
        },
        other => GraphValueKind::Unsupported(other.to_string()),
    }
}

fn to_ort(tensor: Tensor) -> Result<DynValue, ort::Error> {
    let (shape, data) = tensor.into_parts();
    Ok(with_data!(data, v => ort::value::Tensor::from_array((shape, v))?.into_dyn()))
}

fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    fn extract<T: ort::value::PrimitiveTensorElementType + Clone>(
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
        type_name: value.dtype().to_string(),
    };
    let dtype = value
        .dtype()
        .tensor_type()
        .and_then(dtype_of)
        .ok_or_else(unsupported)?;
    let (shape, data) = match dtype {
        DType::Bool => extract(value).map(|(s, d)| (s, TensorData::Bool(d))),
        DType::Int8 => extract(value).map(|(s, d)| (s, TensorData::Int8(d))),
        DType::Int16 => extract(value).map(|(s, d)| (s, TensorData::Int16(d))),
        DType::Int32 => extract(value).map(|(s, d)| (s, TensorData::Int32(d))),
        DType::Int64 => extract(value).map(|(s, d)| (s, TensorData::Int64(d))),
        DType::Uint8 => extract(value).map(|(s, d)| (s, TensorData::Uint8(d))),
        DType::Uint16 => extract(value).map(|(s, d)| (s, TensorData::Uint16(d))),
        DType::Uint32 => extract(value).map(|(s, d)| (s, TensorData::Uint32(d))),
        DType::Uint64 => extract(value).map(|(s, d)| (s, TensorData::Uint64(d))),
        DType::Float16 => extract(value).map(|(s, d)| (s, TensorData::Float16(d))),
        DType::Float32 => extract(value).map(|(s, d)| (s, TensorData::Float32(d))),
        DType::Float64 => extract(value).map(|(s, d)| (s, TensorData::Float64(d))),
    }?;
    Tensor::new(shape, data).map_err(|e| RuntimeError::Inference(e.to_string()))
}

/// A backend for the worker's and the serving layer's unit tests: no ONNX Runtime, one FP32
/// input and one output, and behaviour chosen by the values it is sent.
#[cfg(test)]
pub mod fake {
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A value that makes a run fail as ONNX Runtime does on an input it refuses.
    pub const FAIL: f32 = -1.0;
    /// A value that makes a run panic.
    pub const PANIC: f32 = -2.0;
    /// A value that makes a run panic in a way the worker cannot catch (the panic's payload
    /// panics again when the worker drops it), so that the worker thread ends.
    pub const STOP: f32 = -3.0;

    struct PanicsWhenDropped;

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("the fake backend's panic payload panics as it is dropped");
        }
    }

    pub struct FakeBackend {
        signature: GraphSignature,
        /// Answer each row twice (twice the rows: not row by row) instead of echoing it.
        stacking: bool,
        /// The first run waits for a message here.
        first_run_gate: Option<Receiver<()>>,
        runs: Arc<Mutex<Vec<usize>>>,
    }

    impl FakeBackend {
        /// Answers its input unchanged.
        pub fn echo() -> Self {
            let value = |name: &str| GraphValue {
                name: name.into(),
                kind: GraphValueKind::Tensor {
                    dtype: DType::Float32,
                    shape: vec![-1, -1],
                },
            };
            FakeBackend {
                signature: GraphSignature {
                    inputs: vec![value("x")],
                    outputs: vec![value("y")],
                },
                stacking: false,
                first_run_gate: None,
                runs: Arc::default(),
            }
        }

        /// Answers its input stacked on itself.
        pub fn stacking() -> Self {
            FakeBackend {
                stacking: true,
                ..FakeBackend::echo()
            }
        }

        /// The same backend whose first run waits until the returned sender sends.
        pub fn first_run_waits(self) -> (Self, Sender<()>) {
            let (release, gate) = channel();
            let backend = FakeBackend {
                first_run_gate: Some(gate),
                ..self
            };
            (backend, release)
        }

        /// The rows of every run so far, in order.
        pub fn runs(&self) -> Arc<Mutex<Vec<usize>>> {
            self.runs.clone()
        }
    }

    impl Backend for FakeBackend {
        fn signature(&self) -> &GraphSignature {
            &self.signature
        }

        fn run(
            &mut self,
            mut inputs: Vec<Tensor>,
            _outputs: &[usize],
        ) -> Result<Vec<Tensor>, RuntimeError> {
            let input = inputs.remove(0);
            self.runs.lock().unwrap().push(input.rows());
            if let Some(gate) = self.first_run_gate.take() {
                let _ = gate.recv();
            }
            let TensorData::Float32(values) = input.data() else {
                return Err(RuntimeError::RejectedInput("expected FP32".into()));
            };
            if values.contains(&STOP) {
                std::panic::panic_any(PanicsWhenDropped);
            }
            if values.contains(&PANIC) {
                panic!("the fake backend was told to panic");
            }
            if values.contains(&FAIL) {
                return Err(RuntimeError::RejectedInput(
                    "the fake backend refuses -1".into(),
                ));
            }
            let output = if self.stacking {
                Tensor::concat_rows(vec![input.clone(), input]).expect("alike")
            } else {
                input
            };
            Ok(vec![output])
        }
    }
}
