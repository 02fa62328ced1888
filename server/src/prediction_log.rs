//! The prediction log: a sampled record of inferences (request id, model, version, inputs,
//! outputs, duration), one JSON object per line, on a stream of its own (standard output, or a
//! file), apart from the server's own log on standard error, for drift monitoring and audits
//! (KServe's inference logger does the same).
//!
//! Sampling is deterministic: with rate r, the n-th inference is written when ⌊n·r⌋ grows, so
//! exactly r of them are, evenly spread, without a random draw per request.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::tensor::{DType, Tensor};

/// What the log keeps of a request's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputsPolicy {
    /// The inputs themselves.
    Include,
    /// Their datatype and shape only.
    Redact,
}

/// Lines waiting for the writer thread; past them a line is dropped (and counted), so that a
/// slow reader of the log never holds up an answer.
const QUEUED_LINES: usize = 1024;

/// The fewest JSON bytes one element takes (`0,`): a tensor whose elements cannot fit in a line
/// is described without encoding it.
const MIN_ELEMENT_BYTES: usize = 2;

pub struct PredictionLog {
    /// Sampling rate in millionths (1 000 000: every inference).
    rate_ppm: u64,
    seen: AtomicU64,
    inputs: InputsPolicy,
    max_record_bytes: usize,
    lines: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
    dropped: AtomicU64,
}

/// A tensor as the log keeps it: whole, or its datatype and shape.
pub enum Kept {
    Whole(Tensor),
    Described { dtype: DType, shape: Vec<usize> },
}

impl Kept {
    fn described(tensor: &Tensor) -> Kept {
        Kept::Described {
            dtype: tensor.dtype(),
            shape: tensor.shape().to_vec(),
        }
    }
}

/// One inference, as the model saw it.
pub struct Inference<'a> {
    pub model: &'a str,
    pub version: &'a str,
    /// Declared name and kept form of each input, in declaration order.
    pub inputs: Vec<(&'a str, &'a Kept)>,
    /// The outputs, or why there are none.
    pub outputs: Result<Vec<(&'a str, &'a Tensor)>, String>,
    pub duration: Duration,
}

#[derive(Serialize)]
struct Line<'a> {
    /// Tells these lines from the server's own log lines wherever they meet (it comes first:
    /// the NixOS module's shippers match on it).
    r#type: &'static str,
    timestamp: String,
    request_id: Option<String>,
    model: &'a str,
    version: &'a str,
    duration_ms: f64,
    inputs: Named<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Set when the tensors would have made the line longer than the limit: they are described.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// A tensor in a line: its datatype and shape, and its data unless described.
#[derive(Serialize)]
struct Record<'a> {
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Tensor>,
}

/// Tensors by name, in declaration order.
struct Named<'a>(Vec<(&'a str, Record<'a>)>);

impl Serialize for Named<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, record) in &self.0 {
            map.serialize_entry(name, record)?;
        }
        map.end()
    }
}

fn record(tensor: &Tensor, whole: bool) -> Record<'_> {
    Record {
        datatype: tensor.dtype().v2_name(),
        shape: tensor.shape(),
        data: whole.then_some(tensor),
    }
}

fn kept_record(kept: &Kept, whole: bool) -> Record<'_> {
    match kept {
        Kept::Whole(tensor) => record(tensor, whole),
        Kept::Described { dtype, shape } => Record {
            datatype: dtype.v2_name(),
            shape,
            data: None,
        },
    }
}

impl PredictionLog {
    /// `rate` from 0 (nothing) to 1 (every inference); `sink` receives whole lines, from a
    /// thread of its own.
    pub fn new(
        rate: f64,
        inputs: InputsPolicy,
        max_record_bytes: usize,
        mut sink: Box<dyn Write + Send>,
    ) -> Self {
        let (lines, queued) = sync_channel::<Vec<u8>>(QUEUED_LINES);
        let writer = std::thread::Builder::new()
            .name("prediction-log".into())
            .spawn(move || {
                for line in queued {
                    if let Err(error) = sink.write_all(&line).and_then(|()| sink.flush()) {
                        tracing::warn!(%error, "cannot write the prediction log");
                    }
                }
            })
            .ok();
        PredictionLog {
            rate_ppm: (rate.clamp(0.0, 1.0) * 1e6).round() as u64,
            seen: AtomicU64::new(0),
            inputs,
            max_record_bytes,
            lines: Some(lines),
            writer,
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether this inference is one to write.
    pub fn sampled(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let before = n.saturating_mul(self.rate_ppm) / 1_000_000;
        let after = (n + 1).saturating_mul(self.rate_ppm) / 1_000_000;
        after > before
    }

    /// Whether `tensors` could fit in one line whole: when not, they are only described, and
    /// nothing of their data is copied or encoded.
    fn may_fit(&self, tensors: &[&Tensor]) -> bool {
        let elements: usize = tensors.iter().map(|tensor| tensor.data().len()).sum();
        elements.saturating_mul(MIN_ELEMENT_BYTES) <= self.max_record_bytes
    }

    /// What to keep of a sampled request's inputs until its answer: a copy only of inputs that
    /// the policy includes and that may fit in a line.
    pub fn keep(&self, inputs: &[Tensor]) -> Vec<Kept> {
        let whole = self.inputs == InputsPolicy::Include
            && self.may_fit(&inputs.iter().collect::<Vec<_>>());
        inputs
            .iter()
            .map(|tensor| {
                // Bytes (an image bundle's encoded images) are no text a log line can show.
                if whole && tensor.dtype() != DType::Bytes {
                    Kept::Whole(tensor.clone())
                } else {
                    Kept::described(tensor)
                }
            })
            .collect()
    }

    /// Queues one line for `inference`, in the request span's context (for its request id).
    /// When the writer is behind by `QUEUED_LINES` lines, the line is dropped and counted.
    pub fn write(&self, inference: &Inference<'_>) {
        let Some(lines) = &self.lines else { return };
        match lines.try_send(self.line(inference)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the prediction log's reader is behind: lines dropped so far"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn line(&self, inference: &Inference<'_>) -> Vec<u8> {
        let outputs_fit = match &inference.outputs {
            Ok(outputs) => self.may_fit(&outputs.iter().map(|(_, t)| *t).collect::<Vec<_>>()),
            Err(_) => true,
        };
        let build = |whole: bool| Line {
            r#type: "prediction",
            timestamp: crate::logging::utc_timestamp(SystemTime::now()),
            request_id: crate::logging::current_request_id(),
            model: inference.model,
            version: inference.version,
            duration_ms: inference.duration.as_secs_f64() * 1e3,
            inputs: Named(
                inference
                    .inputs
                    .iter()
                    .map(|(name, kept)| (*name, kept_record(kept, whole)))
                    .collect(),
            ),
            outputs: inference.outputs.as_ref().ok().map(|outputs| {
                Named(
                    outputs
                        .iter()
                        .map(|(name, tensor)| (*name, record(tensor, whole)))
                        .collect(),
                )
            }),
            error: inference.outputs.as_ref().err().map(String::as_str),
            truncated: !whole,
        };
        let encode = |line: &Line| {
            let mut bytes = serde_json::to_vec(line).unwrap_or_default();
            bytes.push(b'\n');
            bytes
        };
        if outputs_fit {
            let whole = encode(&build(true));
            if whole.len() <= self.max_record_bytes {
                return whole;
            }
        }
        encode(&build(false))
    }
}

impl Drop for PredictionLog {
    /// The lines still queued are written before the server exits.
    fn drop(&mut self) {
        self.lines.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn log(rate: f64) -> PredictionLog {
        PredictionLog::new(
            rate,
            InputsPolicy::Include,
            1 << 16,
            Box::new(std::io::sink()),
        )
    }

    #[test]
    fn sampling_keeps_exactly_the_rate_evenly_spread() {
        let every = log(1.0);
        assert!((0..1000).all(|_| every.sampled()));
        let some = log(0.01);
        let picked: Vec<usize> = (0..1000).filter(|_| some.sampled()).collect();
        assert_eq!(picked.len(), 10);
        let none = log(0.0);
        assert!((0..1000).all(|_| !none.sampled()));
        // A quarter: every fourth, not a run of them.
        let quarter = log(0.25);
        let picked: Vec<usize> = (0..8).filter(|_| quarter.sampled()).collect();
        assert_eq!(picked, vec![3, 7]);
    }

    #[test]
    fn encoded_images_are_described_never_written() {
        let image = Tensor::new(vec![1], TensorData::Bytes(vec![vec![0xFF, 0xD8, 0xFF]])).unwrap();
        let kept = log(1.0).keep(std::slice::from_ref(&image));
        let [Kept::Described { dtype, shape }] = kept.as_slice() else {
            panic!("an image was kept whole")
        };
        assert_eq!((*dtype, shape.as_slice()), (DType::Bytes, &[1][..]));
    }

    #[test]
    fn a_record_over_the_limit_keeps_its_shapes_only_and_redaction_hides_inputs() {
        let input = Tensor::new(vec![1, 2], TensorData::Float32(vec![1.5, 2.5])).unwrap();
        let output = Tensor::new(vec![1], TensorData::String(vec!["yes".into()])).unwrap();
        let kept = Kept::Whole(input.clone());
        let inference = Inference {
            model: "m",
            version: "1",
            inputs: vec![("x", &kept)],
            outputs: Ok(vec![("y", &output)]),
            duration: Duration::from_millis(2),
        };
        let parse = |log: &PredictionLog| -> serde_json::Value {
            serde_json::from_slice(&log.line(&inference)).unwrap()
        };
        // The NixOS module's shippers tell the lines apart by this beginning (modules/logging.nix).
        assert!(log(1.0)
            .line(&inference)
            .starts_with(br#"{"type":"prediction","#));
        let whole = parse(&log(1.0));
        assert_eq!(whole["type"], "prediction");
        assert_eq!(
            whole["inputs"]["x"]["data"],
            serde_json::json!([[1.5, 2.5]])
        );
        assert_eq!(whole["outputs"]["y"]["data"], serde_json::json!(["yes"]));
        assert!(whole.get("truncated").is_none());
        // Redacted, or too large to fit, inputs are described, and their data not even copied.
        let redacting = PredictionLog::new(
            1.0,
            InputsPolicy::Redact,
            1 << 16,
            Box::new(std::io::sink()),
        );
        let kept = redacting.keep(std::slice::from_ref(&input));
        assert!(matches!(kept[..], [Kept::Described { .. }]));
        let huge = Tensor::new(vec![1, 40_000], TensorData::Float32(vec![0.0; 40_000])).unwrap();
        assert!(matches!(
            log(1.0).keep(&[huge])[..],
            [Kept::Described { .. }]
        ));
        let small = PredictionLog::new(1.0, InputsPolicy::Include, 10, Box::new(std::io::sink()));
        let small = parse(&small);
        assert_eq!(small["truncated"], true);
        assert!(small["outputs"]["y"].get("data").is_none());
    }
}
