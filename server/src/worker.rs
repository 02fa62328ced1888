//! The worker thread of a model: it owns the ONNX Runtime session and runs the queued requests in
//! order, one at a time or, with dynamic batching, several joined along their first dimension,
//! each caller getting back exactly its own rows.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::Span;

use crate::metrics::ModelMetrics;
use crate::runtime::{Backend, RuntimeError};
use crate::tensor::Tensor;

/// One request's inputs (in graph order) and where its outputs go.
pub struct Job {
    pub inputs: Vec<Tensor>,
    pub reply: oneshot::Sender<Result<Vec<Tensor>, RuntimeError>>,
    pub span: Span,
    pub enqueued: Instant,
}

impl Job {
    /// The rows of a job that can share a run: every input has the same first dimension. None for
    /// a job that must run alone (its inputs disagree, which ONNX Runtime will judge).
    fn batch_rows(&self) -> Option<usize> {
        let rows = self.inputs.first()?.rows();
        self.inputs
            .iter()
            .all(|input| !input.shape().is_empty() && input.rows() == rows)
            .then_some(rows)
    }

    /// Whether `other` can share a run with this job: every input alike but for its rows.
    fn joins(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .all(|(a, b)| a.dtype() == b.dtype() && a.shape().get(1..) == b.shape().get(1..))
    }
}

/// Dynamic batching: up to `max_rows` rows of queued requests in one run; a request waits at
/// most `max_delay` after its arrival for others to join it.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_rows: usize,
    pub max_delay: Duration,
}

/// Why a job was not queued.
pub enum Refused {
    Full,
    Closed,
}

/// The bounded queue in front of a worker.
pub struct Queue {
    sender: SyncSender<Job>,
    capacity: usize,
}

impl Queue {
    /// Queues `job`, or refuses it at once when the queue is full (no waiting: the caller sheds
    /// load) or the worker has stopped.
    pub fn try_send(&self, job: Job) -> Result<(), Refused> {
        self.sender.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Closed,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Starts the thread that owns `backend`; it returns the graph outputs at `outputs` for each job
/// and ends when the queue is dropped.
pub fn spawn(
    name: &str,
    mut backend: impl Backend,
    outputs: Vec<usize>,
    capacity: NonZeroUsize,
    batching: Option<Batching>,
    metrics: ModelMetrics,
) -> std::io::Result<Queue> {
    let (sender, receiver) = mpsc::sync_channel::<Job>(capacity.get());
    thread::Builder::new()
        .name(format!("model-{name}"))
        .spawn(move || {
            let mut carried = None;
            loop {
                let first = match carried.take() {
                    Some(job) => job,
                    None => match receiver.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    },
                };
                let mut batch = vec![first];
                if let Some(batching) = batching {
                    carried = gather(&receiver, &mut batch, batching);
                }
                // The jobs leave the queue now (a carried one still waits).
                metrics.queue_depth.dec_by(batch.len() as i64);
                // A caller that went away while its job waited needs no run.
                batch.retain(|job| !job.reply.is_closed());
                if !batch.is_empty() {
                    run(&mut backend, &outputs, batch, &metrics);
                }
            }
        })?;
    Ok(Queue {
        sender,
        capacity: capacity.get(),
    })
}

/// Adds queued jobs to `batch` up to the row limit and the first job's deadline; returns a job
/// taken from the queue that could not join (it starts the next batch).
fn gather(receiver: &Receiver<Job>, batch: &mut Vec<Job>, batching: Batching) -> Option<Job> {
    let deadline = batch[0].enqueued + batching.max_delay;
    let mut rows = batch[0].batch_rows()?;
    while rows < batching.max_rows {
        let next = match receiver.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
                }
            }
        };
        match next.batch_rows() {
            Some(next_rows) if rows + next_rows <= batching.max_rows && batch[0].joins(&next) => {
                rows += next_rows;
                batch.push(next);
            }
            _ => return Some(next),
        }
    }
    None
}

/// Runs the jobs of `batch` together and answers each with its own rows. Should the joint run
/// fail, each job runs again alone, so that one caller's bad input fails only its own request.
fn run(backend: &mut impl Backend, outputs: &[usize], batch: Vec<Job>, metrics: &ModelMetrics) {
    let now = Instant::now();
    let mut replies = Vec::with_capacity(batch.len());
    let mut inputs_by_job = Vec::with_capacity(batch.len());
    let mut spans = Vec::with_capacity(batch.len());
    for job in batch {
        metrics
            .queue_duration
            .observe((now - job.enqueued).as_secs_f64());
        replies.push(job.reply);
        inputs_by_job.push(job.inputs);
        spans.push(job.span);
    }
    // What the run logs goes to the first request's span.
    let _entered = spans[0].enter();
    // A panic must not take the model down for every later request.
    let answers = panic::catch_unwind(AssertUnwindSafe(|| {
        answer(backend, outputs, inputs_by_job, metrics)
    }))
    .unwrap_or_else(|_| {
        let panicked = || Err(RuntimeError::Inference("the run panicked".into()));
        replies.iter().map(|_| panicked()).collect()
    });
    for (reply, answer) in replies.into_iter().zip(answers) {
        // The caller may have gone away meanwhile; it no longer needs the answer.
        let _ = reply.send(answer);
    }
}

/// One answer per job, in job order.
fn answer(
    backend: &mut impl Backend,
    outputs: &[usize],
    mut inputs_by_job: Vec<Vec<Tensor>>,
    metrics: &ModelMetrics,
) -> Vec<Result<Vec<Tensor>, RuntimeError>> {
    let mut timed_run = |inputs: Vec<Tensor>, rows: usize| {
        let started = Instant::now();
        let outcome = backend.run(inputs, outputs);
        metrics
            .inference_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_rows.observe(rows as f64);
        outcome
    };
    let rows_of = |inputs: &[Tensor]| inputs.first().map_or(1, Tensor::rows);
    if inputs_by_job.len() == 1 {
        let inputs = inputs_by_job.pop().expect("one job");
        let rows = rows_of(&inputs);
        return vec![timed_run(inputs, rows)];
    }
    let rows: Vec<usize> = inputs_by_job.iter().map(|inputs| rows_of(inputs)).collect();
    // The joint run takes a copy: should it fail, every job still has its own inputs.
    let joined = join_inputs(inputs_by_job.clone());
    match timed_run(joined, rows.iter().sum()).and_then(|outputs| split_outputs(outputs, &rows)) {
        Ok(per_job) => per_job.into_iter().map(Ok).collect(),
        Err(_) => inputs_by_job
            .into_iter()
            .zip(rows)
            .map(|(inputs, rows)| timed_run(inputs, rows))
            .collect(),
    }
}

/// One tensor per input, the jobs' rows joined in job order.
fn join_inputs(inputs_by_job: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    let count = inputs_by_job[0].len();
    let mut by_input: Vec<Vec<Tensor>> = (0..count).map(|_| Vec::new()).collect();
    for inputs in inputs_by_job {
        for (index, tensor) in inputs.into_iter().enumerate() {
            by_input[index].push(tensor);
        }
    }
    by_input
        .into_iter()
        .map(|parts| Tensor::concat_rows(parts).expect("jobs join only when alike"))
        .collect()
}

/// Each output cut into the jobs' rows: `result[job][output]`.
fn split_outputs(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, RuntimeError> {
    let total: usize = rows.iter().sum();
    let mut per_job: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for (index, output) in outputs.into_iter().enumerate() {
        let found = output.rows();
        let pieces = output.split_rows(rows).ok_or_else(|| {
            RuntimeError::Inference(format!(
                "output {index} has {found} rows for a batch of {total}: the model does not answer row by row, so it cannot batch; remove runtime.max_batch_size"
            ))
        })?;
        for (job, piece) in pieces.into_iter().enumerate() {
            per_job[job].push(piece);
        }
    }
    Ok(per_job)
}
