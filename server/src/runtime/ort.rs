//! ONNX Runtime through the `ort` crate: loading the shared library, opening a model, reading
//! its graph's signature and running it. The only module of the server that imports `ort`; the
//! crate's one `unsafe` block (reading the library's version) is here too.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{
    DynValue, IntoTensorElementType, PrimitiveTensorElementType, TensorElementType, ValueType,
};

use super::{Backend, GraphSignature, GraphValue, GraphValueKind, RuntimeError};
use crate::tensor::{with_data, with_dtype, DType, Tensor, TensorData};

/// The process-wide ONNX Runtime (the library can be loaded, and its environment built, only once).
#[derive(Clone)]
pub struct OnnxRuntime {
    environment: Environment,
    version: String,
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The library's own version string, from its C API entry point (`ort` keeps it to itself).
#[allow(unsafe_code)] // The crate's one unsafe block: see the SAFETY comment.
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
    DType::ALL.iter().copied().find(|&dtype| {
        with_dtype!(dtype, T => <T as IntoTensorElementType>::into_tensor_element_type()) == element
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
        type_name: value.dtype().to_string(),
    };
    let dtype = value
        .dtype()
        .tensor_type()
        .and_then(dtype_of)
        .ok_or_else(unsupported)?;
    let (shape, data) = with_dtype!(dtype, T => {
        let (shape, data) = extract::<T>(value)?;
        (shape, TensorData::from(data))
    });
    Tensor::new(shape, data).map_err(|e| RuntimeError::Inference(e.to_string()))
}
