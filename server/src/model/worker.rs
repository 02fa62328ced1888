//! The worker threads of a model, one per instance: each owns an ONNX Runtime session and runs
//! the model's queued requests in order, one at a time or, with dynamic batching, several joined
//! along their first dimension, each caller getting back exactly its own rows.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
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

    /// Whether `other` can share a run with this job: every input alike but for its rows (and,
    /// for a padded input, its tokens).
    fn joins(&self, other: &Job, padding: Option<&Padding>) -> bool {
        self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .enumerate()
                .all(|(index, (a, b))| {
                    let padded = padding.is_some_and(|padding| padding.pads(index));
                    let alike = if padded {
                        a.shape().len() == 2 && b.shape().len() == 2
                    } else {
                        a.shape().get(1..) == b.shape().get(1..)
                    };
                    a.dtype() == b.dtype() && alike
                })
    }

    /// Its tokens: the second dimension of its first padded input (0 without padding).
    fn tokens(&self, padding: Option<&Padding>) -> usize {
        padded_tokens(&self.inputs, padding)
    }
}

/// The most padding a batch of token inputs may carry, as a share of its rows' own tokens (1/4):
/// on a CPU, a padded token costs a run as much as a real one, and joining sentences of 5 and 60
/// words made runs slower than running them alone (bench/text: 54 rows/s padded against 74
/// alone, at 16 connections). A request that would pad the batch more starts the next one.
const PADDING_WASTE: (usize, usize) = (1, 4);

/// How requests of different lengths join one run (a text bundle's token inputs): each is padded
/// to the longest along the second dimension, and the outputs with a token dimension are cut
/// back to each request's own tokens, so that every caller gets what it would have got alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padding {
    /// For each graph input, the value that pads it (the padding token's id, a zero mask), or
    /// None for an input joined as it is.
    pub inputs: Vec<Option<i64>>,
    /// For each output asked of the graph, whether its second dimension is the tokens'.
    pub token_outputs: Vec<bool>,
    /// The most tokens of one run, rows × the longest row (none: the rows alone bound it).
    pub max_tokens: Option<usize>,
}

impl Padding {
    fn pads(&self, input: usize) -> bool {
        self.inputs.get(input).is_some_and(Option::is_some)
    }
}

/// Dynamic batching: up to `max_rows` rows of queued requests in one run; a request waits at
/// most `max_delay` after its arrival for others to join it.
#[derive(Debug, Clone)]
pub struct Batching {
    pub max_rows: usize,
    pub max_delay: Duration,
    /// How requests of different lengths join (text bundles); none: only alike ones join.
    pub padding: Option<Arc<Padding>>,
}

/// Why a job was not queued.
pub enum Refused {
    Full,
    Closed,
}

/// The bounded queue in front of a worker. A job counts against the bound from the moment it is
/// queued until its run starts, including while the worker holds it to gather a batch: the
/// channel alone would not bound those, and the worker drains it into the batch it gathers.
pub struct Queue {
    sender: Sender<Job>,
    capacity: usize,
    waiting: Arc<AtomicUsize>,
    running: Arc<AtomicBool>,
    runs: Arc<RunClocks>,
}

impl Queue {
    /// Queues `job`, or refuses it at once when the queue is full (no waiting: the caller sheds
    /// load) or the worker has stopped.
    pub fn try_send(&self, job: Job) -> Result<(), Refused> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Full);
        }
        self.sender.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            Refused::Closed
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the worker thread still runs; false once it has ended, whatever ended it.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// How long the longest run in progress has lasted (zero when no instance runs).
    pub fn longest_run(&self) -> Duration {
        self.runs.longest()
    }
}

/// When each instance's run in progress began, so that a run that never ends is seen from outside
/// the worker (the watchdog): milliseconds since `epoch` plus one, 0 while the instance waits.
struct RunClocks {
    epoch: Instant,
    started: Vec<AtomicU64>,
}

impl RunClocks {
    fn new(instances: usize) -> Self {
        RunClocks {
            epoch: Instant::now(),
            started: (0..instances).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Instance `instance`'s run, timed until the guard is dropped (a panic too).
    fn running(&self, instance: usize) -> RunTimed<'_> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.started[instance].store(now + 1, Ordering::SeqCst);
        RunTimed {
            clock: &self.started[instance],
        }
    }

    fn longest(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        let earliest = self
            .started
            .iter()
            .map(|started| started.load(Ordering::SeqCst))
            .filter(|&started| started > 0)
            .min();
        earliest.map_or(Duration::ZERO, |started| {
            Duration::from_millis(now.saturating_sub(started - 1))
        })
    }
}

/// A run in progress, on its instance's clock.
struct RunTimed<'a> {
    clock: &'a AtomicU64,
}

impl Drop for RunTimed<'_> {
    fn drop(&mut self) {
        self.clock.store(0, Ordering::SeqCst);
    }
}

/// Marks the worker stopped when its thread ends, by a panic too.
struct RunningFlag {
    running: Arc<AtomicBool>,
    metrics: ModelMetrics,
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        self.metrics.model_ready.set(0);
        if thread::panicking() {
            tracing::error!(
                thread = thread::current().name().unwrap_or_default(),
                "a model's worker panicked outside a run and stopped: the server is no longer ready"
            );
        }
    }
}

/// Starts one thread for each of `backends` (the model's instances, each its own session); they
/// share one queue, a free instance taking the next job (or gathering the next batch) as
/// Triton's instance groups do. Each returns the graph outputs at `outputs` for its jobs; they
/// end when the queue is dropped.
pub fn spawn<B: Backend + 'static>(
    name: &str,
    backends: Vec<B>,
    outputs: Vec<usize>,
    capacity: NonZeroUsize,
    batching: Option<Batching>,
    metrics: ModelMetrics,
) -> std::io::Result<Queue> {
    let (sender, receiver) = mpsc::channel::<Job>();
    // One instance at a time waits on the queue or gathers a batch from it; the others run.
    let receiver = Arc::new(Mutex::new(receiver));
    let waiting = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let instances = backends.len();
    let runs = Arc::new(RunClocks::new(instances));
    for (instance, backend) in backends.into_iter().enumerate() {
        let thread_name = if instances == 1 {
            format!("model-{name}")
        } else {
            format!("model-{name}-{instance}")
        };
        let work = Instance {
            instance,
            runs: runs.clone(),
            backend,
            outputs: outputs.clone(),
            batching: batching.clone(),
            receiver: receiver.clone(),
            waiting: waiting.clone(),
            metrics: metrics.clone(),
        };
        let running_flag = RunningFlag {
            running: running.clone(),
            metrics: metrics.clone(),
        };
        thread::Builder::new().name(thread_name).spawn(move || {
            let _running = running_flag;
            work.serve();
        })?;
    }
    Ok(Queue {
        sender,
        capacity: capacity.get(),
        waiting,
        running,
        runs,
    })
}

/// One instance of a model: its session and its share of the model's queue.
struct Instance<B> {
    /// Its number among the model's instances, and their run clocks.
    instance: usize,
    runs: Arc<RunClocks>,
    backend: B,
    outputs: Vec<usize>,
    batching: Option<Batching>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    waiting: Arc<AtomicUsize>,
    metrics: ModelMetrics,
}

impl<B: Backend> Instance<B> {
    /// Runs the queue's jobs until the queue is dropped.
    fn serve(mut self) {
        let mut carried = None;
        loop {
            let (mut batch, next_carried) = {
                // A poisoned lock only means another instance panicked while holding it; the
                // queue itself is intact.
                let receiver = self
                    .receiver
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let first = match carried.take() {
                    Some(job) => job,
                    None => match receiver.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    },
                };
                let mut batch = vec![first];
                let next_carried = match &self.batching {
                    Some(batching) => gather(&receiver, &mut batch, batching),
                    None => None,
                };
                (batch, next_carried)
            };
            carried = next_carried;
            // The jobs leave the queue now (a carried one still waits).
            self.waiting.fetch_sub(batch.len(), Ordering::SeqCst);
            self.metrics.queue_depth.dec_by(batch.len() as i64);
            // A caller that went away while its job waited needs no run.
            batch.retain(|job| !job.reply.is_closed());
            if !batch.is_empty() {
                let _timed = self.runs.running(self.instance);
                let padding = self.batching.as_ref().and_then(|b| b.padding.as_deref());
                run(
                    &mut self.backend,
                    &self.outputs,
                    padding,
                    batch,
                    &self.metrics,
                );
            }
        }
    }
}

/// Adds queued jobs to `batch` up to the row limit and the first job's deadline; returns a job
/// taken from the queue that could not join (it starts the next batch).
fn gather(receiver: &Receiver<Job>, batch: &mut Vec<Job>, batching: &Batching) -> Option<Job> {
    let padding = batching.padding.as_deref();
    let deadline = batch[0].enqueued + batching.max_delay;
    let mut rows = batch[0].batch_rows()?;
    let mut longest = batch[0].tokens(padding);
    // The tokens the batch's rows have of their own, padding left out.
    let mut own_tokens = rows * longest;
    let max_tokens = padding.and_then(|padding| padding.max_tokens);
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
        let within_tokens = |next_rows: usize| {
            let tokens = (rows + next_rows) * longest.max(next.tokens(padding));
            let own = own_tokens + next_rows * next.tokens(padding);
            max_tokens.is_none_or(|max| tokens <= max)
                && (padding.is_none()
                    || tokens * PADDING_WASTE.1 <= own * (PADDING_WASTE.0 + PADDING_WASTE.1))
        };
        match next.batch_rows() {
            Some(next_rows)
                if rows + next_rows <= batching.max_rows
                    && within_tokens(next_rows)
                    && batch[0].joins(&next, padding) =>
            {
                rows += next_rows;
                longest = longest.max(next.tokens(padding));
                own_tokens += next_rows * next.tokens(padding);
                batch.push(next);
            }
            _ => return Some(next),
        }
    }
    None
}

/// Runs the jobs of `batch` together and answers each with its own rows. Should the joint run
/// fail, each job runs again alone, so that one caller's bad input fails only its own request.
fn run(
    backend: &mut impl Backend,
    outputs: &[usize],
    padding: Option<&Padding>,
    batch: Vec<Job>,
    metrics: &ModelMetrics,
) {
    let now = Instant::now();
    let mut replies = Vec::with_capacity(batch.len());
    let mut inputs_by_job = Vec::with_capacity(batch.len());
    let mut spans = Vec::with_capacity(batch.len());
    for job in batch {
        metrics
            .queue_duration
            .observe((now - job.enqueued).as_secs_f64());
        metrics.statistics.queue.add(now - job.enqueued);
        replies.push(job.reply);
        inputs_by_job.push(job.inputs);
        spans.push(job.span);
    }
    // What the run logs goes to the first request's span.
    let _entered = spans[0].enter();
    // A panic must not take the model down for every later request.
    let answers = panic::catch_unwind(AssertUnwindSafe(|| {
        answer(backend, outputs, padding, inputs_by_job, metrics)
    }))
    .unwrap_or_else(|_| {
        let panicked = || Err(RuntimeError::Inference("the run panicked".into()));
        replies.iter().map(|_| panicked()).collect()
    });
    let ran = now.elapsed();
    for _ in &replies {
        metrics.statistics.compute_infer.add(ran);
    }
    for (reply, answer) in replies.into_iter().zip(answers) {
        // The caller may have gone away meanwhile; it no longer needs the answer.
        let _ = reply.send(answer);
    }
}

/// One answer per job, in job order. Triton's statistics count the runs that answered, as
/// Triton counts successful inferences only: a failed run, or a joint run whose rows are run again
/// alone, adds nothing to them.
fn answer<B: Backend>(
    backend: &mut B,
    outputs: &[usize],
    padding: Option<&Padding>,
    inputs_by_job: Vec<Vec<Tensor>>,
    metrics: &ModelMetrics,
) -> Vec<Result<Vec<Tensor>, RuntimeError>> {
    let alone = |backend: &mut B, inputs: Vec<Tensor>, rows: usize| {
        let (outcome, elapsed) = timed_run(backend, outputs, inputs, rows, metrics);
        if outcome.is_ok() {
            metrics.statistics.ran(rows, elapsed);
        }
        outcome
    };
    let rows_of = |inputs: &[Tensor]| inputs.first().map_or(1, Tensor::rows);
    if let [_] = inputs_by_job.as_slice() {
        return inputs_by_job
            .into_iter()
            .map(|inputs| {
                let rows = rows_of(&inputs);
                alone(backend, inputs, rows)
            })
            .collect();
    }
    let rows: Vec<usize> = inputs_by_job.iter().map(|inputs| rows_of(inputs)).collect();
    let total = rows.iter().sum();
    // The joint run takes a copy: should it fail, every job still has its own inputs.
    let tokens: Vec<usize> = inputs_by_job
        .iter()
        .map(|inputs| padded_tokens(inputs, padding))
        .collect();
    let joint = join_inputs(inputs_by_job.clone(), padding)
        .ok_or_else(|| RuntimeError::Inference("the jobs' inputs do not join".into()))
        .and_then(|joined| {
            let (outcome, elapsed) = timed_run(backend, outputs, joined, total, metrics);
            outcome
                .and_then(|outputs| split_outputs(outputs, &rows))
                .and_then(|split| own_tokens(split, &tokens, padding))
                .map(|split| (split, elapsed))
        });
    match joint {
        Ok((per_job, elapsed)) => {
            metrics.statistics.ran(total, elapsed);
            per_job.into_iter().map(Ok).collect()
        }
        Err(_) => inputs_by_job
            .into_iter()
            .zip(rows)
            .map(|(inputs, rows)| alone(backend, inputs, rows))
            .collect(),
    }
}

/// One run of `rows` rows, observed in the run duration and batch size histograms.
fn timed_run(
    backend: &mut impl Backend,
    outputs: &[usize],
    inputs: Vec<Tensor>,
    rows: usize,
    metrics: &ModelMetrics,
) -> (Result<Vec<Tensor>, RuntimeError>, Duration) {
    let started = Instant::now();
    let outcome = backend.run(inputs, outputs);
    let elapsed = started.elapsed();
    metrics.inference_duration.observe(elapsed.as_secs_f64());
    metrics.batch_rows.observe(rows as f64);
    (outcome, elapsed)
}

/// A job's tokens: the second dimension of its first padded input (0 without padding).
fn padded_tokens(inputs: &[Tensor], padding: Option<&Padding>) -> usize {
    padding
        .and_then(|padding| padding.inputs.iter().position(Option::is_some))
        .and_then(|index| inputs.get(index)?.shape().get(1).copied())
        .unwrap_or(0)
}

/// One tensor per input, the jobs' rows joined in job order, a padded input's rows first padded
/// to the longest; None should they not join (gather joins only jobs that can).
fn join_inputs(inputs_by_job: Vec<Vec<Tensor>>, padding: Option<&Padding>) -> Option<Vec<Tensor>> {
    let count = inputs_by_job.first()?.len();
    let longest = inputs_by_job
        .iter()
        .map(|inputs| padded_tokens(inputs, padding))
        .max()
        .unwrap_or(0);
    let mut by_input: Vec<Vec<Tensor>> = (0..count).map(|_| Vec::new()).collect();
    for inputs in inputs_by_job {
        for (index, tensor) in inputs.into_iter().enumerate() {
            let pad = padding.and_then(|padding| *padding.inputs.get(index)?);
            let tensor = match pad {
                Some(value) => tensor.pad_axis1(longest, value)?,
                None => tensor,
            };
            by_input[index].push(tensor);
        }
    }
    by_input.into_iter().map(Tensor::concat_rows).collect()
}

/// Each job's token-level outputs cut back to its own tokens (a joint run's are the longest's).
fn own_tokens(
    per_job: Vec<Vec<Tensor>>,
    tokens: &[usize],
    padding: Option<&Padding>,
) -> Result<Vec<Vec<Tensor>>, RuntimeError> {
    let Some(padding) = padding else {
        return Ok(per_job);
    };
    per_job
        .into_iter()
        .zip(tokens)
        .map(|(outputs, &tokens)| {
            outputs
                .into_iter()
                .enumerate()
                .map(|(index, output)| {
                    if !padding.token_outputs.get(index).copied().unwrap_or(false) {
                        return Ok(output);
                    }
                    output.truncate_axis1(tokens).ok_or_else(|| {
                        RuntimeError::Inference(format!(
                            "output {index} has fewer than the request's {tokens} tokens"
                        ))
                    })
                })
                .collect()
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, ModelInfoLabels};
    use crate::runtime::fake::{FakeBackend, FAIL, PANIC};
    use crate::tensor::TensorData;

    /// `rows` rows of one value each (a [rows, 1] FP32 tensor), `first` the first row's value.
    fn rows(first: f32, rows: usize) -> Vec<Tensor> {
        let data = (0..rows).map(|row| first + row as f32).collect();
        vec![Tensor::new(vec![rows, 1], TensorData::Float32(data)).unwrap()]
    }

    fn metrics() -> ModelMetrics {
        Metrics::new().model_loaded(
            ModelInfoLabels {
                model: "fake".into(),
                version: "1".into(),
                model_sha256: String::new(),
            },
            Duration::ZERO,
            1,
        )
    }

    type Answer = oneshot::Receiver<Result<Vec<Tensor>, RuntimeError>>;

    fn job(inputs: Vec<Tensor>) -> (Job, Answer) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            reply,
            span: Span::none(),
            enqueued: Instant::now(),
        };
        (job, answer)
    }

    fn send(queue: &Queue, inputs: Vec<Tensor>) -> Answer {
        let (job, answer) = job(inputs);
        assert!(queue.try_send(job).is_ok(), "the queue refused a job");
        answer
    }

    /// The answer, waited for with a generous deadline.
    fn wait(answer: Answer) -> Result<Vec<Tensor>, RuntimeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), answer).await })
            .expect("no answer within 30 s")
            .expect("the worker dropped the reply")
    }

    fn values(outputs: &[Tensor]) -> Vec<f64> {
        let data = outputs[0].data();
        (0..data.len()).map(|i| data.value_f64(i)).collect()
    }

    const LONG: Duration = Duration::from_secs(60);

    fn start(backend: FakeBackend, capacity: usize, batching: Option<Batching>) -> Queue {
        start_with(backend, capacity, batching, metrics())
    }

    fn start_with(
        backend: FakeBackend,
        capacity: usize,
        batching: Option<Batching>,
        metrics: ModelMetrics,
    ) -> Queue {
        spawn(
            "fake",
            vec![backend],
            vec![0],
            NonZeroUsize::new(capacity).unwrap(),
            batching,
            metrics,
        )
        .unwrap()
    }

    #[test]
    fn jobs_run_alone_without_batching_and_each_gets_its_own_answer() {
        let backend = FakeBackend::echo();
        let runs = backend.runs();
        let queue = start(backend, 8, None);
        let answers: Vec<_> = (0..3)
            .map(|i| send(&queue, rows(i as f32 * 10.0, 2)))
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            let base = i as f64 * 10.0;
            assert_eq!(values(&wait(answer).unwrap()), vec![base, base + 1.0]);
        }
        assert_eq!(*runs.lock().unwrap(), vec![2, 2, 2]);
    }

    #[test]
    fn a_batch_closes_when_its_rows_reach_the_limit() {
        let backend = FakeBackend::echo();
        let runs = backend.runs();
        // The deadline is far: only the row limit can close the batch.
        let queue = start(
            backend,
            8,
            Some(Batching {
                max_rows: 4,
                max_delay: LONG,
                padding: None,
            }),
        );
        let answers: Vec<_> = (0..4).map(|i| send(&queue, rows(i as f32, 1))).collect();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(values(&wait(answer).unwrap()), vec![i as f64]);
        }
        assert_eq!(*runs.lock().unwrap(), vec![4]);
    }

    #[test]
    fn a_batch_closes_at_its_first_jobs_deadline() {
        let backend = FakeBackend::echo();
        let runs = backend.runs();
        let batching = Batching {
            max_rows: 100,
            max_delay: Duration::from_millis(20),
            padding: None,
        };
        let queue = start(backend, 8, Some(batching));
        // Far below the row limit: only the deadline can close it.
        assert_eq!(
            values(&wait(send(&queue, rows(7.0, 3))).unwrap()),
            vec![7.0, 8.0, 9.0]
        );
        assert_eq!(*runs.lock().unwrap(), vec![3]);
    }

    /// Token rows of `tokens` ids each, one per entry, the first id of each its entry.
    fn tokens(rows: &[(i64, usize)]) -> Vec<Tensor> {
        let length = rows.iter().map(|&(_, n)| n).max().unwrap_or(0);
        assert!(rows.iter().all(|&(_, n)| n == length), "one length a job");
        let ids = rows
            .iter()
            .flat_map(|&(first, n)| (0..n as i64).map(move |i| first + i))
            .collect();
        vec![Tensor::new(vec![rows.len(), length], TensorData::Int64(ids)).unwrap()]
    }

    fn padded_batching(max_tokens: Option<usize>) -> Option<Batching> {
        Some(Batching {
            max_rows: 8,
            max_delay: LONG,
            padding: Some(Arc::new(Padding {
                inputs: vec![Some(0)],
                token_outputs: vec![true],
                max_tokens,
            })),
        })
    }

    /// The watchdog's view of a worker: a run in progress is timed from its start until it ends.
    #[test]
    fn a_run_in_progress_is_timed_until_it_ends() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let queue = start(backend, 8, None);
        assert_eq!(queue.longest_run(), Duration::ZERO);
        let held = send(&queue, rows(1.0, 1));
        let deadline = Instant::now() + Duration::from_secs(30);
        while queue.longest_run() < Duration::from_millis(100) {
            assert!(Instant::now() < deadline, "the held run was never timed");
            thread::sleep(Duration::from_millis(5));
        }
        release.send(()).unwrap();
        wait(held).unwrap();
        // The clock stops as the worker leaves the run, just after it answers.
        while queue.longest_run() > Duration::ZERO {
            assert!(Instant::now() < deadline, "the ended run is still timed");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn requests_of_different_lengths_join_padded_and_each_gets_its_own_tokens() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        let queue = start(backend, 8, padded_batching(None));
        let blocker = send(&queue, tokens(&[(100, 3)]));
        let short = send(&queue, tokens(&[(10, 4)]));
        let long = send(&queue, tokens(&[(20, 4), (30, 4)]));
        release.send(()).unwrap();
        drop(queue);
        for (answer, expected) in [(blocker, tokens(&[(100, 3)])), (short, tokens(&[(10, 4)]))] {
            assert_eq!(wait(answer).unwrap(), expected);
        }
        assert_eq!(wait(long).unwrap(), tokens(&[(20, 4), (30, 4)]));
        // The three requests of 3 and 4 tokens ran as one batch of four rows.
        assert_eq!(*runs.lock().unwrap(), vec![4]);
    }

    #[test]
    fn a_request_that_would_pad_a_batch_by_more_than_a_quarter_starts_the_next() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        let queue = start(backend, 8, padded_batching(None));
        // 8 tokens beside 2 would pad 6 of 16: the short request waits for the next run, which
        // another short one joins.
        let answers = [
            send(&queue, tokens(&[(1, 8)])),
            send(&queue, tokens(&[(2, 2)])),
            send(&queue, tokens(&[(3, 2)])),
        ];
        release.send(()).unwrap();
        drop(queue);
        for answer in answers {
            wait(answer).unwrap();
        }
        assert_eq!(*runs.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_batch_stays_within_its_token_budget() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        // Two rows of 5 tokens make 10; a third row would make 15, past the budget of 12.
        let queue = start(backend, 8, padded_batching(Some(12)));
        let answers = [
            send(&queue, tokens(&[(1, 5)])),
            send(&queue, tokens(&[(2, 4)])),
            send(&queue, tokens(&[(3, 4)])),
        ];
        release.send(()).unwrap();
        drop(queue);
        for answer in answers {
            wait(answer).unwrap();
        }
        assert_eq!(*runs.lock().unwrap(), vec![2, 1]);
    }

    #[test]
    fn a_job_that_cannot_join_is_carried_to_the_next_batch() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        let queue = start(
            backend,
            8,
            Some(Batching {
                max_rows: 3,
                max_delay: LONG,
                padding: None,
            }),
        );
        // The first run waits for `release`; the jobs sent meanwhile queue behind it.
        let blocker = send(&queue, rows(0.0, 1));
        let two = send(&queue, rows(1.0, 2));
        // Two more rows would pass the limit of 3: carried.
        let carried = send(&queue, rows(5.0, 2));
        // Another width cannot join either.
        let wide = send(
            &queue,
            vec![Tensor::new(vec![1, 2], TensorData::Float32(vec![8.0, 9.0])).unwrap()],
        );
        release.send(()).unwrap();
        drop(queue); // Closes every open batch: no deadline needs to pass.
        assert_eq!(values(&wait(blocker).unwrap()), vec![0.0]);
        assert_eq!(values(&wait(two).unwrap()), vec![1.0, 2.0]);
        assert_eq!(values(&wait(carried).unwrap()), vec![5.0, 6.0]);
        assert_eq!(values(&wait(wide).unwrap()), vec![8.0, 9.0]);
        // The blocker's row and the next job's two make the limit; then the carried job, alone
        // (the one after it is wider); then the wide one.
        assert_eq!(*runs.lock().unwrap(), vec![3, 2, 1]);
    }

    #[test]
    fn a_job_whose_caller_left_is_skipped() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        let queue = start(backend, 8, None);
        let blocker = send(&queue, rows(0.0, 1));
        drop(send(&queue, rows(1.0, 5)));
        let after = send(&queue, rows(2.0, 2));
        release.send(()).unwrap();
        wait(blocker).unwrap();
        assert_eq!(values(&wait(after).unwrap()), vec![2.0, 3.0]);
        assert_eq!(
            *runs.lock().unwrap(),
            vec![1, 2],
            "the 5 rows of the left caller never ran"
        );
    }

    #[test]
    fn a_panicking_run_fails_only_its_own_request() {
        let queue = start(FakeBackend::echo(), 8, None);
        let panicked = wait(send(&queue, rows(PANIC, 1))).unwrap_err();
        assert!(panicked.to_string().contains("panicked"), "{panicked}");
        assert_eq!(
            values(&wait(send(&queue, rows(3.0, 1))).unwrap()),
            vec![3.0]
        );
        assert!(queue.is_running());
    }

    #[test]
    fn when_a_joint_run_fails_each_job_runs_again_alone() {
        let (backend, release) = FakeBackend::echo().first_run_waits();
        let runs = backend.runs();
        let metrics = metrics();
        let statistics = metrics.statistics.clone();
        let queue = start_with(
            backend,
            8,
            Some(Batching {
                max_rows: 8,
                max_delay: LONG,
                padding: None,
            }),
            metrics,
        );
        let blocker = send(&queue, rows(0.0, 1));
        let good = send(&queue, rows(1.0, 2));
        let bad = send(&queue, rows(FAIL, 1));
        release.send(()).unwrap();
        drop(queue);
        wait(blocker).unwrap();
        assert_eq!(values(&wait(good).unwrap()), vec![1.0, 2.0]);
        assert!(matches!(wait(bad), Err(RuntimeError::RejectedInput(_))));
        // The joint run of 4 rows failed (it held the bad row); then each alone.
        assert_eq!(*runs.lock().unwrap(), vec![4, 1, 2, 1]);
        // Triton's statistics count what was answered: the blocker's run (1 row) and the good
        // job's (2 rows), not the failed joint run nor the bad job's.
        assert_eq!(statistics.inference_count.load(Ordering::Relaxed), 3);
        assert_eq!(statistics.execution_count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn when_a_joint_run_cannot_be_split_each_job_runs_again_alone() {
        let (backend, release) = FakeBackend::stacking().first_run_waits();
        let runs = backend.runs();
        let queue = start(
            backend,
            8,
            Some(Batching {
                max_rows: 8,
                max_delay: LONG,
                padding: None,
            }),
        );
        let blocker = send(&queue, rows(0.0, 1));
        let other = send(&queue, rows(1.0, 1));
        release.send(()).unwrap();
        drop(queue);
        // Alone, each gets the model's whole answer: its rows twice.
        assert_eq!(values(&wait(blocker).unwrap()), vec![0.0, 0.0]);
        assert_eq!(values(&wait(other).unwrap()), vec![1.0, 1.0]);
        assert_eq!(*runs.lock().unwrap(), vec![2, 1, 1]);
    }

    #[test]
    fn jobs_held_to_gather_a_batch_count_against_the_queue_bound() {
        let backend = FakeBackend::echo();
        let runs = backend.runs();
        let queue = start(
            backend,
            2,
            Some(Batching {
                max_rows: 8,
                max_delay: LONG,
                padding: None,
            }),
        );
        let first = send(&queue, rows(1.0, 1));
        let second = send(&queue, rows(2.0, 1));
        // The worker holds both, waiting for more rows: the queue is full all the same.
        let (third, _answer) = job(rows(3.0, 1));
        assert!(matches!(queue.try_send(third), Err(Refused::Full)));
        drop(queue);
        assert_eq!(values(&wait(first).unwrap()), vec![1.0]);
        assert_eq!(values(&wait(second).unwrap()), vec![2.0]);
        assert_eq!(*runs.lock().unwrap(), vec![2]);
    }

    #[test]
    fn the_worker_says_when_it_has_stopped() {
        let queue = start(FakeBackend::echo(), 1, None);
        assert!(queue.is_running());
        assert_stops_with(queue);
    }

    /// The queue's end ends its workers' threads; a second handle watches them.
    fn assert_stops_with(queue: Queue) {
        let running = queue.running.clone();
        drop(queue);
        let deadline = Instant::now() + Duration::from_secs(30);
        while running.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(!running.load(Ordering::SeqCst));
    }

    /// Two instances run two jobs at once: each run waits until the other has started, which
    /// one instance alone would never see (its second job would wait for the first to end).
    #[test]
    fn instances_share_the_queue_and_run_at_once() {
        let meeting = Arc::new(std::sync::Barrier::new(2));
        let backends = vec![
            FakeBackend::echo().meets(meeting.clone()),
            FakeBackend::echo().meets(meeting),
        ];
        let queue = spawn(
            "fake",
            backends,
            vec![0],
            NonZeroUsize::new(8).unwrap(),
            None,
            metrics(),
        )
        .unwrap();
        let first = send(&queue, rows(1.0, 1));
        let second = send(&queue, rows(2.0, 1));
        assert_eq!(values(&wait(first).unwrap()), vec![1.0]);
        assert_eq!(values(&wait(second).unwrap()), vec![2.0]);
    }

    #[test]
    fn the_instances_end_with_the_queue() {
        let queue = spawn(
            "fake",
            vec![
                FakeBackend::echo(),
                FakeBackend::echo(),
                FakeBackend::echo(),
            ],
            vec![0],
            NonZeroUsize::new(8).unwrap(),
            None,
            metrics(),
        )
        .unwrap();
        let answers: Vec<_> = (0..6).map(|i| send(&queue, rows(i as f32, 1))).collect();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(values(&wait(answer).unwrap()), vec![i as f64]);
        }
        assert_stops_with(queue);
    }
}
