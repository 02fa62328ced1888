//! What the model layer knows of a runtime: the [`Backend`] trait, a graph's signature and the
//! runtime's errors. [`ort`] is the one module that touches ONNX Runtime (through the `ort`
//! crate); `fake` is a backend without it for unit tests.

#[cfg(test)]
pub mod fake;
pub mod ort;

pub use self::ort::{OnnxRuntime, OrtBackend};

use crate::tensor::{DType, Tensor};

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
    /// For a tensor, the graph's symbolic name of each dimension (`batch`, `sequence`), "" where
    /// it has none (a fixed size, or an unnamed dynamic one). Inputs that share a name must agree
    /// on its size. Empty for anything but a tensor.
    pub dimension_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GraphValueKind {
    /// A tensor; `shape` has -1 for every dynamic (symbolic or unknown) dimension.
    Tensor { dtype: DType, shape: Vec<i64> },
    /// A sequence of maps from class (INT64 or BYTES) to FP32 score, one map per row, as
    /// scikit-learn's ZipMap writes class probabilities: served as an FP32 tensor
    /// `[rows, classes]`, the classes in key order.
    ClassScores { key: DType },
    /// Anything else (other maps and sequences, optional values), described in the protocol's
    /// words for error messages.
    Unsupported(String),
}

/// How messages name a sequence of class maps, in the protocol's words.
pub fn class_maps_text(key: DType) -> String {
    format!("a sequence of maps from {} to FP32", key.v2_name())
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
    /// For an output of [`GraphValueKind::ClassScores`], the classes (as text, in the order of
    /// the served scores) that its last run returned.
    fn class_keys(&self, output: usize) -> Option<&[String]> {
        let _ = output;
        None
    }
}
