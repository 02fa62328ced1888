//! A backend for the worker's and the serving layer's unit tests: no ONNX Runtime, one FP32
//! input and one output, and behaviour chosen by the values it is sent.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};

use super::{Backend, GraphSignature, GraphValue, GraphValueKind, RuntimeError};
use crate::tensor::{DType, Tensor, TensorData};

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
    /// Every run waits here for the runs of other backends sharing it.
    meeting: Option<Arc<Barrier>>,
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
            dimension_names: vec![String::new(); 2],
        };
        FakeBackend {
            signature: GraphSignature {
                inputs: vec![value("x")],
                outputs: vec![value("y")],
            },
            stacking: false,
            first_run_gate: None,
            meeting: None,
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

    /// The same backend whose every run waits at `meeting` until as many runs, of the backends
    /// sharing it, wait there too.
    pub fn meets(self, meeting: Arc<Barrier>) -> Self {
        FakeBackend {
            meeting: Some(meeting),
            ..self
        }
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
        if let Some(meeting) = &self.meeting {
            meeting.wait();
        }
        let values = match input.data() {
            TensorData::Float32(values) => values.as_slice(),
            // Token ids, echoed as they are (padded batching's tests).
            TensorData::Int64(_) => &[],
            _ => return Err(RuntimeError::RejectedInput("expected FP32 or INT64".into())),
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
