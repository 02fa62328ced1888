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
    fn rows(&self) -> usize {
        self.inputs.first().map_or(1, Tensor::rows)
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
                        Ok(job) => {
                            metrics.queue_depth.dec();
                            job
                        }
                        Err(_) => break,
                    },
                };
                let mut batch = vec![first];
                if let Some(batching) = batching {
                    carried = gather(&receiver, &mut batch, batching, &metrics);
                }
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
fn gather(
    receiver: &Receiver<Job>,
    batch: &mut Vec<Job>,
    batching: Batching,
    metrics: &ModelMetrics,
) -> Option<Job> {
    let deadline = batch[0].enqueued + batching.max_delay;
    let mut rows = batch[0].rows();
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
        metrics.queue_depth.dec();
        if rows + next.rows() > batching.max_rows || !batch[0].joins(&next) {
            return Some(next);
        }
        rows += next.rows();
        batch.push(next);
    }
    None
}

/// Runs the jobs of `batch` as one run and answers each with its own rows.
fn run(backend: &mut impl Backend, outputs: &[usize], batch: Vec<Job>, metrics: &ModelMetrics) {
    let started = Instant::now();
    let rows: Vec<usize> = batch.iter().map(Job::rows).collect();
    let mut replies = Vec::with_capacity(batch.len());
    let mut inputs_by_job = Vec::with_capacity(batch.len());
    let mut spans = Vec::with_capacity(batch.len());
    for job in batch {
        metrics
            .queue_duration
            .observe((started - job.enqueued).as_secs_f64());
        replies.push(job.reply);
        inputs_by_job.push(job.inputs);
        spans.push(job.span);
    }
    // What the run logs goes to the first request's span.
    let _entered = spans[0].enter();
    let inputs = join_inputs(inputs_by_job);
    // A panic in one run must not take the model down for every later request.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| backend.run(inputs, outputs)))
        .unwrap_or_else(|_| Err(RuntimeError::Inference("the run panicked".into())));
    metrics
        .inference_duration
        .observe(started.elapsed().as_secs_f64());
    metrics
        .batch_rows
        .observe(rows.iter().sum::<usize>() as f64);
    match (outcome, replies.len()) {
        (outcome, 1) => {
            // The caller may have gone away meanwhile; it no longer needs the answer.
            let _ = replies.pop().expect("one reply").send(outcome);
        }
        (Ok(outputs), _) => match split_outputs(outputs, &rows) {
            Ok(per_job) => replies
                .into_iter()
                .zip(per_job)
                .for_each(|(reply, outputs)| drop(reply.send(Ok(outputs)))),
            Err(error) => replies
                .into_iter()
                .for_each(|reply| drop(reply.send(Err(error.clone())))),
        },
        (Err(error), _) => replies
            .into_iter()
            .for_each(|reply| drop(reply.send(Err(error.clone())))),
    }
}

/// One tensor per input, the jobs' rows joined in job order.
fn join_inputs(mut inputs_by_job: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    if inputs_by_job.len() == 1 {
        return inputs_by_job.pop().expect("one job");
    }
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
