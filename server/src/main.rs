//! The `predictor` command: serve, check or scaffold model bundles.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use predictor::bundle::{BundleError, FILE_NAME};
use predictor::defaults;
use predictor::logging::{self, LogFormat};
use predictor::metrics::Metrics;
use predictor::model::{self, LoadOptions};
use predictor::prediction_log::{InputsPolicy, PredictionLog};
use predictor::runtime::OnnxRuntime;
use predictor::server::listener::ConnectionLimits;
use predictor::server::{self, ListenOptions, Ports};
use predictor::serving::auth::Tokens;
use predictor::serving::shared_memory::SharedMemory;
use predictor::serving::{Limits, Registry};

#[global_allocator]
static ALLOCATOR: predictor::allocator::ServerAllocator = predictor::allocator::ServerAllocator;

#[derive(Parser)]
#[command(
    name = "predictor",
    version,
    about = "Serve ONNX models described by predictor.toml bundles"
)]
struct Cli {
    /// ONNX Runtime's shared library: a path, or a file name for the dynamic loader to find.
    #[arg(
        long,
        env = "PREDICTOR_ONNXRUNTIME",
        default_value = "libonnxruntime.so",
        global = true
    )]
    onnxruntime: PathBuf,
    /// Log format: text for people, json (one object per line) for the journal and log shippers;
    /// auto is text on a terminal, json otherwise.
    #[arg(
        long,
        env = "PREDICTOR_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax, e.g. `info,ort=warn` or `debug`.
    #[arg(
        long,
        env = "PREDICTOR_LOG",
        default_value = "info,ort=warn",
        global = true
    )]
    log: String,
    /// OTLP/HTTP endpoint to export request spans to, e.g. http://127.0.0.1:4318/v1/traces
    /// (none: no export).
    #[cfg(feature = "otlp")]
    #[arg(long, env = "PREDICTOR_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the bundles, check each against its graph and sample, and serve them over HTTP.
    Serve(ServeArgs),
    /// Load the bundles and check each against its graph and sample; exit 1 on any problem.
    Check(CheckArgs),
    /// Write a starting predictor.toml for an ONNX model, read off its graph.
    Init(InitArgs),
    /// Ask a running predictor for /health and, per bundle given, for its sample; exit 1 on a problem.
    Probe(ProbeArgs),
    /// Print Kubernetes (or KServe) manifests that deploy a bundle's image.
    Manifests(predictor::ops::manifests::ManifestsArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Bundle folders (or their predictor.toml files); the environment twin is comma-separated.
    #[arg(required = true, env = "PREDICTOR_BUNDLES", value_delimiter = ',')]
    bundles: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "PREDICTOR_ADDRESS", default_value = "127.0.0.1")]
    address: IpAddr,
    /// HTTP port (the seed REST API and the Open Inference Protocol v2 over REST); 0 picks a free
    /// one (the log says which).
    #[arg(long, env = "PREDICTOR_PORT", default_value_t = defaults::HTTP_PORT)]
    port: u16,
    /// gRPC port (the Open Inference Protocol v2 over gRPC), on the same address; 0 picks a free one.
    #[arg(long, env = "PREDICTOR_GRPC_PORT", default_value_t = defaults::GRPC_PORT)]
    grpc_port: u16,
    /// Metrics port (GET /metrics, Prometheus/OpenMetrics text), on the same address; 0 picks a
    /// free one.
    #[arg(long, env = "PREDICTOR_METRICS_PORT", default_value_t = defaults::METRICS_PORT)]
    metrics_port: u16,
    /// Serve gRPC and GET /metrics on the HTTP port (--port) too, told apart by protocol (gRPC:
    /// HTTP/2 with an application/grpc content type), with every limit and gate as on their own
    /// ports: for platforms that give a container one port (Knative, KServe Serverless).
    #[arg(long, env = "PREDICTOR_SINGLE_PORT", conflicts_with_all = ["grpc_port", "metrics_port"])]
    single_port: bool,
    #[command(flatten)]
    load: LoadArgs,
    /// Seconds that requests in flight may take to finish after SIGTERM or SIGINT; then (or on a
    /// second signal) the server exits 1 without them.
    #[arg(long, env = "PREDICTOR_DRAIN_TIMEOUT_SECONDS", default_value_t = defaults::DRAIN_TIMEOUT_SECONDS)]
    drain_timeout_seconds: u64,
    /// Largest request body (or gRPC message) accepted, in bytes.
    #[arg(long, env = "PREDICTOR_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Inference requests handled at once, over HTTP and gRPC together, once their bodies are
    /// read; one more is refused at once with 503 and Retry-After (gRPC: UNAVAILABLE).
    #[arg(long, env = "PREDICTOR_MAX_CONCURRENT_REQUESTS", default_value_t = defaults::MAX_CONCURRENT_REQUESTS)]
    max_concurrent_requests: NonZeroUsize,
    /// Seconds an inference request may take, waiting for the model included; then it is
    /// abandoned with 503 and Retry-After (gRPC: DEADLINE_EXCEEDED).
    #[arg(long, env = "PREDICTOR_REQUEST_TIMEOUT_SECONDS", default_value_t = defaults::REQUEST_TIMEOUT_SECONDS as f64)]
    request_timeout_seconds: f64,
    /// Seconds an inference request's body may take to arrive; it is read before the request
    /// takes a place among those in flight (--max-concurrent-requests), and a slower one is
    /// answered 408 (gRPC: DEADLINE_EXCEEDED).
    #[arg(long, env = "PREDICTOR_BODY_READ_TIMEOUT_SECONDS", default_value_t = defaults::BODY_READ_TIMEOUT_SECONDS)]
    body_read_timeout_seconds: u64,
    /// Bytes of inference request bodies still arriving, over HTTP and gRPC together: the bound
    /// on their memory. A body past it is refused with 503 and Retry-After.
    #[arg(long, env = "PREDICTOR_MAX_UPLOAD_BYTES", default_value_t = defaults::MAX_UPLOAD_BYTES)]
    max_upload_bytes: usize,
    /// Seconds an HTTP/1 client may take to send a request head, counted from the moment the
    /// connection is ready for one (opened, or the previous answer sent); then it is closed.
    #[arg(long, env = "PREDICTOR_HEADER_READ_TIMEOUT_SECONDS", default_value_t = defaults::HEADER_READ_TIMEOUT_SECONDS)]
    header_read_timeout_seconds: u64,
    /// Seconds a connection (HTTP/1 or HTTP/2, every port) may have no request in progress
    /// before it is closed, whatever else it sends (pings included).
    #[arg(long, env = "PREDICTOR_IDLE_TIMEOUT_SECONDS", default_value_t = defaults::IDLE_TIMEOUT_SECONDS)]
    idle_timeout_seconds: u64,
    /// Seconds an answer may make no progress towards its caller (a peer that stopped reading)
    /// before its connection is closed, freeing what it held; default: the idle timeout.
    #[arg(long, env = "PREDICTOR_SEND_TIMEOUT_SECONDS")]
    send_timeout_seconds: Option<u64>,
    /// Seconds between the pings of an HTTP/2 connection; a peer that does not answer one within
    /// the same time is dropped.
    #[arg(long, env = "PREDICTOR_HTTP2_KEEPALIVE_SECONDS", default_value_t = defaults::HTTP2_KEEPALIVE_SECONDS)]
    http2_keepalive_seconds: u64,
    /// HTTP/2 streams (requests) at once on one connection, on the HTTP and gRPC ports.
    #[arg(long, env = "PREDICTOR_MAX_CONCURRENT_STREAMS", default_value_t = defaults::MAX_CONCURRENT_STREAMS)]
    max_concurrent_streams: u32,
    /// Connections of the whole process, every port together [default: the open-file limit less
    /// a reserve]; past it a connection is served one request with a 2 s timeout, then closed.
    #[arg(long, env = "PREDICTOR_MAX_CONNECTIONS")]
    max_connections: Option<NonZeroUsize>,
    /// Origins (`https://docs.example.com`) whose web pages may call the HTTP API from a browser
    /// (CORS); repeat, or comma-separate in the environment. None by default.
    #[arg(
        long = "cors-allow-origin",
        env = "PREDICTOR_CORS_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    cors_allow_origins: Vec<String>,
    /// Serve Triton's system shared memory extension: callers on this host may register regions
    /// of POSIX shared memory objects (/dev/shm) and name them instead of sending tensor bytes.
    /// Off by default: a caller who may register regions may make the server read and write any
    /// shared memory object the server's user can open.
    #[arg(long, env = "PREDICTOR_ALLOW_SHARED_MEMORY")]
    allow_shared_memory: bool,
    /// The share of inferences recorded in the prediction log (0: none, 1: all): one JSON line
    /// each, with request id, model, version, inputs, outputs and duration.
    #[arg(long, env = "PREDICTOR_PREDICTION_LOG_RATE", default_value_t = 0.0)]
    prediction_log_rate: f64,
    /// Where the prediction log goes: `-`, standard output (the server's own log is on standard
    /// error), or a file, appended to.
    #[arg(long, env = "PREDICTOR_PREDICTION_LOG_FILE", default_value = "-")]
    prediction_log_file: PathBuf,
    /// What the prediction log keeps of the inputs: the tensors, or their datatype and shape.
    #[arg(long, env = "PREDICTOR_PREDICTION_LOG_INPUTS", value_enum, default_value_t = InputsPolicy::Include)]
    prediction_log_inputs: InputsPolicy,
    /// The longest prediction log line; a longer record keeps the datatypes and shapes of its
    /// tensors only, marked `"truncated": true`. Below journald's 48 KiB line limit by default.
    #[arg(long, env = "PREDICTOR_PREDICTION_LOG_MAX_RECORD_BYTES", default_value_t = defaults::PREDICTION_LOG_MAX_RECORD_BYTES)]
    prediction_log_max_record_bytes: usize,
    /// File of bearer tokens, one per line (`#` comments): every request but the health probes
    /// must then send `Authorization: Bearer <token>` (gRPC: `authorization` metadata). Not a
    /// token on the command line or in the environment, where other processes can read it.
    #[arg(long, env = "PREDICTOR_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// Bundle folders (or their predictor.toml files).
    #[arg(required = true, env = "PREDICTOR_BUNDLES", value_delimiter = ',')]
    bundles: Vec<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct LoadArgs {
    /// ONNX Runtime intra-op threads of each model instance, overriding each bundle's
    /// runtime.threads [default: the CPUs the process may use, divided among all instances].
    #[arg(long, env = "PREDICTOR_THREADS")]
    threads: Option<NonZeroUsize>,
    /// Instances of each model (sessions, each with its worker, sharing the model's queue),
    /// overriding each bundle's runtime.instances [default: 1].
    #[arg(long, env = "PREDICTOR_INSTANCES")]
    instances: Option<NonZeroUsize>,
    /// Requests that may wait for a model before new ones get 503 with Retry-After.
    #[arg(long, env = "PREDICTOR_MAX_QUEUED_REQUESTS", default_value_t = defaults::MAX_QUEUED_REQUESTS)]
    max_queued_requests: NonZeroUsize,
    /// Rows (the first dimension) one request may send; more get 400 (gRPC: INVALID_ARGUMENT).
    #[arg(long, env = "PREDICTOR_MAX_ROWS_PER_REQUEST", default_value_t = defaults::MAX_ROWS_PER_REQUEST)]
    max_rows_per_request: NonZeroUsize,
    /// Pixels (width x height) one image sent to an image bundle may have; a larger one is
    /// refused with 400 before it is decoded. Each image being decoded holds 3 bytes a pixel.
    #[arg(long, env = "PREDICTOR_MAX_IMAGE_PIXELS", default_value_t = defaults::MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
}

impl From<&LoadArgs> for LoadOptions {
    fn from(args: &LoadArgs) -> Self {
        LoadOptions {
            threads: args.threads,
            instances: args.instances,
            max_queued_requests: args.max_queued_requests,
            max_rows_per_request: args.max_rows_per_request,
            max_image_pixels: args.max_image_pixels,
            prediction_log: None,
            measure_largest_request: false,
        }
    }
}

#[derive(Args)]
struct InitArgs {
    /// The ONNX model to describe.
    model: PathBuf,
    /// Bundle name [default: the model's folder name].
    #[arg(long, env = "PREDICTOR_INIT_NAME")]
    name: Option<String>,
    /// Where to write; `-` for standard output [default: predictor.toml beside the model].
    #[arg(long, short, env = "PREDICTOR_INIT_OUTPUT")]
    output: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long, env = "PREDICTOR_INIT_FORCE")]
    force: bool,
    /// A Hugging Face tokenizer.json in the model's folder: a text bundle, whose callers send
    /// text and whose token-level output is pooled into one vector per text.
    #[arg(long, env = "PREDICTOR_INIT_TOKENIZER")]
    tokenizer: Option<PathBuf>,
    /// An image bundle: callers send encoded images (JPEG, PNG, WebP), which the server
    /// decodes, resizes and normalizes into the graph's one image input. Writes an [image] table
    /// to fill in from the model card, and a stand-in sample image, sample.png.
    #[arg(long, env = "PREDICTOR_INIT_IMAGE")]
    image: bool,
}

#[derive(Args)]
struct ProbeArgs {
    /// Bundles whose sample to send and compare (none: only /health, as container health checks do).
    bundles: Vec<PathBuf>,
    /// The running predictor.
    #[arg(
        long,
        env = "PREDICTOR_PROBE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Seconds to wait for each connection, request and answer.
    #[arg(long, env = "PREDICTOR_PROBE_TIMEOUT_SECONDS", default_value_t = 5)]
    timeout_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = match logging::init(
        cli.log_format,
        &cli.log,
        #[cfg(feature = "otlp")]
        cli.otlp_endpoint.as_deref(),
    ) {
        Ok(logging) => logging,
        Err(message) => {
            eprintln!("predictor: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Serve(args) => serve(&cli.onnxruntime, args),
        Command::Check(args) => check(&cli.onnxruntime, args),
        Command::Init(args) => init(&cli.onnxruntime, args),
        Command::Probe(args) => predictor::ops::probe::run(
            &args.url,
            std::time::Duration::from_secs(args.timeout_seconds),
            &args.bundles,
        ),
        Command::Manifests(args) => manifests(&cli.onnxruntime, args),
    };
    logging.finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("predictor: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(library: &Path) -> Result<OnnxRuntime, String> {
    let runtime = OnnxRuntime::load(library).map_err(|error| {
        format!("{error}\n(set --onnxruntime or PREDICTOR_ONNXRUNTIME to the path of libonnxruntime.so)")
    })?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    tracing::debug!(build = runtime.build_info(), "ONNX Runtime build");
    Ok(runtime)
}

fn report(errors: Vec<BundleError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(library: &Path, args: &CheckArgs) -> Result<(), String> {
    let runtime = runtime(library)?;
    let options = model::LoadOptions {
        measure_largest_request: true,
        ..(&args.load).into()
    };
    let models =
        model::load_all(&args.bundles, &runtime, &options, &Metrics::new()).map_err(report)?;
    for model in models {
        println!(
            "ok: {} {} ({}): graph and sample match",
            model.name(),
            model.bundle().config.version,
            model.bundle().file.display()
        );
        let routes = "/predict, /predict/test and the Open Inference Protocol's";
        match model.bundle().why_no_labels() {
            None => println!(
                "routes: {}: {routes}, and /predict/label, /predict/test/label",
                model.name()
            ),
            Some(why) => println!(
                "routes: {}: {routes}; not /predict/label or /predict/test/label: {why}",
                model.name()
            ),
        }
        if let Some(largest) = model.largest_request() {
            println!(
                "memory: {}: the largest request the bounds allow ({}) peaked at {} MiB; runtime.memory_mib = {} would hold it",
                model.name(),
                largest.inputs,
                largest.peak_mib,
                largest.suggested_memory_mib()
            );
        }
        let defaulted = model.bundle().default_bounds();
        if !defaulted.is_empty() {
            println!(
                "note: {}: no max_shape bounds {}: the default bound, {}, applies (declare max_shape in predictor.toml for another)",
                model.name(),
                defaulted.join(", "),
                defaults::MAX_DYNAMIC_SIZE
            );
        }
    }
    Ok(())
}

/// `predictor manifests`: a bundle that declares no `runtime.memory_mib` gets the memory its
/// largest request was measured to need, as `check` measures it, so that no request its bounds
/// allow can get its pod killed for memory.
fn manifests(
    library: &Path,
    args: &predictor::ops::manifests::ManifestsArgs,
) -> Result<(), String> {
    let bundle = predictor::bundle::Bundle::read(&args.bundle).map_err(|e| e.to_string())?;
    let measured = match bundle.config.runtime.memory_mib {
        Some(_) => None,
        None => {
            let runtime = runtime(library).map_err(|error| {
                format!("{error}\n(predictor manifests runs the bundle's largest request to size its memory; or declare runtime.memory_mib)")
            })?;
            let options = LoadOptions {
                measure_largest_request: true,
                ..LoadOptions::default()
            };
            let models = model::load_all(&[&args.bundle], &runtime, &options, &Metrics::new())
                .map_err(report)?;
            models
                .first()
                .and_then(model::Model::largest_request)
                .map(model::LargestRequest::suggested_memory_mib)
        }
    };
    predictor::ops::manifests::run(args, measured)
}

fn serve(library: &Path, args: &ServeArgs) -> Result<(), String> {
    predictor::server::check_passed_sockets(args.single_port)?;
    let tokens = args
        .auth_token_file
        .as_deref()
        .map(Tokens::read)
        .transpose()?;
    let request_timeout = Duration::try_from_secs_f64(args.request_timeout_seconds)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .ok_or_else(|| {
            format!(
                "--request-timeout-seconds {}: give a positive number of seconds",
                args.request_timeout_seconds
            )
        })?;
    let limits = Limits {
        max_concurrent_requests: args.max_concurrent_requests,
        request_timeout,
        max_body_bytes: args.max_body_bytes,
        body_read_timeout: seconds(
            args.body_read_timeout_seconds,
            "--body-read-timeout-seconds",
        )?,
        max_upload_bytes: args.max_upload_bytes,
    };
    let runtime = runtime(library)?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_build_info(runtime.version());
    let mut load_options: LoadOptions = (&args.load).into();
    load_options.prediction_log = prediction_log(args)?.map(Arc::new);
    // Under systemd, the start's timeout is extended while the models load and check their samples.
    let loading = predictor::server::notify::Loading::begin(args.bundles.len());
    let models =
        model::load_all(&args.bundles, &runtime, &load_options, &metrics).map_err(report)?;
    drop(loading);
    for model in &models {
        tracing::info!(
            model = model.name(),
            version = %model.bundle().config.version,
            load_ms = model.load_time().as_millis() as u64,
            threads = model.threads(),
            instances = model.instances(),
            "model ready"
        );
    }
    let shared_memory = if args.allow_shared_memory {
        SharedMemory::enabled(PathBuf::from(defaults::SHARED_MEMORY_DIR))
    } else {
        SharedMemory::disabled()
    };
    let registry =
        Arc::new(Registry::new(models, metrics, limits, tokens).with_shared_memory(shared_memory));
    let listeners = ListenOptions {
        address: args.address,
        ports: if args.single_port {
            Ports::Single(args.port)
        } else {
            Ports::Separate {
                http: args.port,
                grpc: args.grpc_port,
                metrics: args.metrics_port,
            }
        },
        drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
        max_body_bytes: args.max_body_bytes,
        cors_origins: args
            .cors_allow_origins
            .iter()
            .map(|origin| {
                origin
                    .parse()
                    .map_err(|_| format!("--cors-allow-origin {origin}: not a header value"))
            })
            .collect::<Result<_, String>>()?,
        connections: ConnectionLimits {
            header_read_timeout: seconds(
                args.header_read_timeout_seconds,
                "--header-read-timeout-seconds",
            )?,
            idle_timeout: seconds(args.idle_timeout_seconds, "--idle-timeout-seconds")?,
            send_timeout: match args.send_timeout_seconds {
                Some(send) => seconds(send, "--send-timeout-seconds")?,
                None => seconds(args.idle_timeout_seconds, "--idle-timeout-seconds")?,
            },
            keepalive_interval: seconds(args.http2_keepalive_seconds, "--http2-keepalive-seconds")?,
            max_concurrent_streams: args.max_concurrent_streams.max(1),
        },
        max_connections: args.max_connections.map(NonZeroUsize::get),
    };
    server::run(registry, &listeners)
}

/// The prediction log the flags ask for; None at rate 0.
fn prediction_log(args: &ServeArgs) -> Result<Option<PredictionLog>, String> {
    let rate = args.prediction_log_rate;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "--prediction-log-rate {rate}: give a share from 0 (none) to 1 (every inference)"
        ));
    }
    if rate == 0.0 {
        return Ok(None);
    }
    let sink: Box<dyn std::io::Write + Send> = if args.prediction_log_file == Path::new("-") {
        Box::new(std::io::stdout())
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.prediction_log_file)
            .map_err(|error| {
                format!(
                    "--prediction-log-file {}: {error}",
                    args.prediction_log_file.display()
                )
            })?;
        Box::new(file)
    };
    Ok(Some(PredictionLog::new(
        rate,
        args.prediction_log_inputs,
        args.prediction_log_max_record_bytes,
        sink,
    )))
}

/// A positive number of seconds, from the flag `flag`.
fn seconds(value: u64, flag: &str) -> Result<Duration, String> {
    if value == 0 {
        return Err(format!("{flag} 0: give a positive number of seconds"));
    }
    Ok(Duration::from_secs(value))
}

/// The name of `path` in `folder`, the bundle, which it must sit in (a bundle names its files
/// relative to its folder).
fn file_in_folder(path: &Path, folder: &Path, what: &str) -> Result<String, String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file", path.display()))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let same = std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()
        == std::fs::canonicalize(folder).ok();
    if !same || !path.is_file() {
        return Err(format!(
            "{}: {what} must be a file in the model's folder ({}), which is the bundle",
            path.display(),
            folder.display()
        ));
    }
    Ok(name.to_string_lossy().into_owned())
}

fn init(library: &Path, args: &InitArgs) -> Result<(), String> {
    let folder = args
        .model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = match &args.name {
        Some(name) => name.clone(),
        None => {
            let folder_name = std::fs::canonicalize(folder)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            predictor::ops::init::bundle_name_from(&folder_name.unwrap_or_default())
        }
    };
    let model_file = args
        .model
        .file_name()
        .ok_or_else(|| format!("{}: not a file", args.model.display()))?
        .to_string_lossy()
        .into_owned();
    let tokenizer_name = match &args.tokenizer {
        Some(path) => Some(file_in_folder(path, folder, "the tokenizer")?),
        None => None,
    };
    let tokenizer = args
        .tokenizer
        .as_deref()
        .zip(tokenizer_name.as_deref())
        .map(|(path, name)| predictor::ops::init::TokenizerFile { path, name });
    let runtime = runtime(library)?;
    let predictor::ops::init::Scaffold {
        text,
        notes,
        sample_image,
    } = predictor::ops::init::scaffold(
        &runtime,
        &args.model,
        &model_file,
        &name,
        tokenizer,
        args.image,
    )
    .map_err(|error| error.to_string())?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| folder.join(FILE_NAME));
    if output == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    if output
        .parent()
        .map(std::fs::canonicalize)
        .and_then(Result::ok)
        != std::fs::canonicalize(folder).ok()
    {
        return Err(format!(
            "{}: predictor.toml must sit in the model's folder ({}), which is the bundle",
            output.display(),
            folder.display()
        ));
    }
    if output.exists() && !args.force {
        return Err(format!(
            "{} exists; pass --force to overwrite it",
            output.display()
        ));
    }
    std::fs::write(&output, text).map_err(|error| format!("{}: {error}", output.display()))?;
    if let Some(image) = sample_image {
        // A stand-in: an image the author already put there is theirs.
        let path = folder.join(predictor::ops::init::SAMPLE_IMAGE);
        if !path.exists() {
            std::fs::write(&path, image).map_err(|error| format!("{}: {error}", path.display()))?;
            println!(
                "wrote {}: replace it with a real image, and name yours in [sample] input",
                path.display()
            );
        }
    }
    println!(
        "wrote {}: fill in [sample] (and labels), then run `predictor check {}`",
        output.display(),
        folder.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag of every subcommand can also be set from a PREDICTOR_* environment variable.
    #[test]
    fn every_flag_has_a_predictor_environment_twin() {
        fn visit(command: &clap::Command, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                let positional = arg.get_long().is_none() && arg.get_short().is_none();
                let twin = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
                if !builtin && !positional && !twin.starts_with("PREDICTOR_") {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
            command
                .get_subcommands()
                .for_each(|sub| visit(sub, missing));
        }
        let mut missing = Vec::new();
        visit(&Cli::command(), &mut missing);
        assert!(
            missing.is_empty(),
            "flags without a PREDICTOR_* twin: {missing:?}"
        );
        Cli::command().debug_assert();
    }
}
