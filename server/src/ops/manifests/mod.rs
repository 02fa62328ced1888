//! `predictor manifests`: what deploys one bundle's image on Kubernetes (a Deployment, a Service
//! and a HorizontalPodAutoscaler) or on KServe (this template's ServingRuntime and the bundle's
//! InferenceService, in KServe's Standard mode or, on one port, its Serverless mode), made from the
//! bundle's own data and the server's own ports and paths ([`crate::defaults`]), so that nothing
//! is written twice by hand. This file holds the options, the checks and what every object
//! shares (names, labels, resources, the pod and its containers); each kind of deployment writes
//! its own objects in its own file (`kubernetes.rs`, `kserve.rs`, `keda.rs`), and `yaml.rs` prints them.

mod keda;
mod kserve;
mod kubernetes;
mod yaml;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use crate::bundle::{Bundle, RuntimeHints};
use crate::defaults::{
    self, DRAIN_TIMEOUT_SECONDS, GRPC_PORT, HTTP_PORT, LIVE_PATH, MAX_BODY_BYTES, METRICS_PATH,
    METRICS_PORT, READY_PATH, TARGET_IN_FLIGHT_PER_REPLICA,
};
use crate::ops::memory_bound::{self, MemoryBound};

/// `predictor manifests BUNDLE --image REF [--kserve [--serverless]]`.
#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// The bundle folder (or its predictor.toml) that the image serves.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub options: Options,
}

/// Everything of a deployment that is not the bundle's.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// The image serving the bundle, as the cluster pulls it, e.g.
    /// registry.example.com/predictor-iris-svc:1.0.0.
    #[arg(long, env = "PREDICTOR_MANIFESTS_IMAGE")]
    pub image: String,
    /// KServe's ServingRuntime and InferenceService instead of a Deployment, a Service and a
    /// HorizontalPodAutoscaler.
    #[arg(long, env = "PREDICTOR_MANIFESTS_KSERVE")]
    pub kserve: bool,
    /// With --kserve: KServe's Serverless mode (Knative), the server on one port (serve
    /// --single-port), scaled on requests in flight, down to zero with --min-replicas 0, and
    /// canaries with --canary-traffic-percent.
    #[arg(long, env = "PREDICTOR_MANIFESTS_SERVERLESS", requires = "kserve")]
    pub serverless: bool,
    /// With --serverless: the percent of the traffic that a changed InferenceService sends to its
    /// new revision, the rest staying on the last one that was ready; without it (or 100) a change
    /// takes all the traffic once ready (promotion), and 0 sends it all back (rollback).
    #[arg(
        long,
        env = "PREDICTOR_MANIFESTS_CANARY_TRAFFIC_PERCENT",
        requires = "serverless"
    )]
    pub canary_traffic_percent: Option<u32>,
    /// Fewest replicas the autoscaler keeps (0, scale to zero, with --serverless only).
    #[arg(long, env = "PREDICTOR_MANIFESTS_MIN_REPLICAS", default_value_t = 1)]
    pub min_replicas: u32,
    /// Most replicas the autoscaler starts.
    #[arg(long, env = "PREDICTOR_MANIFESTS_MAX_REPLICAS", default_value_t = 4)]
    pub max_replicas: u32,
    /// Average CPU use, in percent of the CPU requested, beyond which the autoscaler adds replicas.
    #[arg(
        long,
        env = "PREDICTOR_MANIFESTS_TARGET_CPU_PERCENT",
        default_value_t = 70
    )]
    pub target_cpu_percent: u32,
    /// Requests in flight per replica beyond which the autoscaler adds replicas, with
    /// --serverless (Knative's concurrency target) or --keda-prometheus-url (the KEDA trigger's
    /// threshold).
    #[arg(long, env = "PREDICTOR_MANIFESTS_TARGET_IN_FLIGHT", default_value_t = TARGET_IN_FLIGHT_PER_REPLICA)]
    pub target_in_flight: u32,
    /// Scale on load instead of CPU alone: a KEDA ScaledObject (with --kserve, KServe's KEDA
    /// autoscaler) on the requests in flight that this Prometheus (its URL as KEDA reaches it)
    /// scrapes from the pods, beside the CPU target; it replaces the HorizontalPodAutoscaler,
    /// which would fight it over the replicas.
    #[arg(
        long,
        env = "PREDICTOR_MANIFESTS_KEDA_PROMETHEUS_URL",
        conflicts_with = "serverless"
    )]
    pub keda_prometheus_url: Option<String>,
    /// The server's drain timeout (as `serve --drain-timeout-seconds`, the same environment
    /// variable); the pod's termination grace period is derived from it.
    #[arg(long, env = "PREDICTOR_DRAIN_TIMEOUT_SECONDS", default_value_t = DRAIN_TIMEOUT_SECONDS)]
    pub drain_timeout_seconds: u64,
    /// A Secret (in the namespace of the manifests) whose key `tokens` holds the server's bearer
    /// tokens, one per line (`serve --auth-token-file`); none: no authentication.
    #[arg(long, env = "PREDICTOR_MANIFESTS_AUTH_TOKEN_SECRET")]
    pub auth_token_secret: Option<String>,
    /// The share of inferences the pods record in their prediction log (`serve
    /// --prediction-log-rate`, the same variable), on the container's standard output, apart
    /// from the server's log on standard error: a log agent routes the two by stream.
    #[arg(long, env = "PREDICTOR_PREDICTION_LOG_RATE")]
    pub prediction_log_rate: Option<f64>,
    /// With --prediction-log-rate: the inputs in the prediction log, or their shapes only
    /// (`serve --prediction-log-inputs`).
    #[arg(
        long,
        env = "PREDICTOR_PREDICTION_LOG_INPUTS",
        value_enum,
        requires = "prediction_log_rate"
    )]
    pub prediction_log_inputs: Option<crate::prediction_log::InputsPolicy>,
    /// yaml: a multi-document stream; json: one `List` object (kubectl applies both).
    #[arg(
        long,
        env = "PREDICTOR_MANIFESTS_FORMAT",
        value_enum,
        default_value = "yaml"
    )]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// Memory for a bundle without `runtime.memory_mib`: this much for the server, ONNX Runtime and
/// a few requests in flight (the server alone takes about 30 MiB)...
pub const MEMORY_BASE_MIB: u64 = 128;
/// ...plus this many times the model file (ONNX Runtime holds the weights, its optimised copy of
/// the graph and the arena of intermediate tensors).
pub const MEMORY_MODEL_FACTOR: u64 = 4;
/// Seconds a terminating pod keeps serving before the server gets SIGTERM, so that every node has
/// taken it out of the Service's endpoints by then (the image has no shell: a `sleep` action).
pub const PRE_STOP_SECONDS: u64 = 5;
/// Seconds beyond the drain timeout before the kubelet kills the server, for it to exit by itself.
pub const EXIT_MARGIN_SECONDS: u64 = 5;
/// The container's HTTP, gRPC and metrics ports by name, as probes and Services refer to them.
pub const PORTS: [(&str, u16); 3] = [
    ("http", HTTP_PORT),
    ("grpc", GRPC_PORT),
    ("metrics", METRICS_PORT),
];
/// This template's ServingRuntime, shared by every InferenceService of a predictor bundle.
pub const SERVING_RUNTIME: &str = "predictor";
/// Its twin for KServe's Serverless mode: the server on one port.
pub const SERVERLESS_RUNTIME: &str = "predictor-serverless";
/// The one container port of the Serverless mode, named for Knative: HTTP/2 without TLS end to
/// end, which gRPC needs (REST arrives over it as well).
pub const SERVERLESS_PORT_NAME: &str = "h2c";
/// The model format of the ServingRuntime: a predictor bundle (versioned by its schema version).
pub const MODEL_FORMAT: &str = "predictor-bundle";
/// Where the tokens of `--auth-token-secret` are mounted, and their key in the Secret.
pub const TOKEN_DIR: &str = "/etc/predictor/auth";
pub const TOKEN_KEY: &str = "tokens";
/// The user of the image (lib/image.nix): nobody:nogroup.
const USER: u32 = 65534;
/// Kubernetes names are DNS labels of at most 63 characters; KServe (Standard mode) labels pods
/// `isvc.<name>-predictor`, which must fit a label value of 63 too.
const NAME_MAX: usize = 63;
const KSERVE_NAME_MAX: usize = NAME_MAX - "isvc.".len() - "-predictor".len();
/// Knative names each revision `<name>-predictor-00001`, a label value of 63 at most too.
const SERVERLESS_NAME_MAX: usize = NAME_MAX - "-predictor-00001".len();

/// Reads the bundle and prints its manifests.
/// Prints the manifests of `args.bundle`. `measured_memory_mib`, the memory the bundle's largest
/// request was measured to need (by the caller, which can load the model), stands in for an
/// undeclared `runtime.memory_mib`.
pub fn run(args: &ManifestsArgs, measured_memory_mib: Option<u64>) -> Result<(), String> {
    let mut bundle = Bundle::read(&args.bundle).map_err(|error| error.to_string())?;
    let runtime = &mut bundle.config.runtime;
    runtime.memory_mib = runtime.memory_mib.or(measured_memory_mib);
    let model = bundle.model_path();
    let model_bytes = std::fs::metadata(&model)
        .map_err(|error| format!("{}: {error}", model.display()))?
        .len();
    let documents = generate(&bundle, model_bytes, &args.options)
        .map_err(|error| format!("{}: {error}", bundle.file.display()))?;
    print!("{}", render(&documents, args.options.format));
    Ok(())
}

/// The manifests as text in `format`.
pub fn render(documents: &[Value], format: Format) -> String {
    match format {
        Format::Yaml => yaml::documents(documents),
        Format::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": documents});
            format!("{list:#}\n")
        }
    }
}

/// The manifests of `bundle`, whose model file has `model_bytes`: the Deployment, Service and
/// HorizontalPodAutoscaler, or with `options.kserve` the ServingRuntime and InferenceService.
pub fn generate(
    bundle: &Bundle,
    model_bytes: u64,
    options: &Options,
) -> Result<Vec<Value>, String> {
    check(options)?;
    let plan = Plan::new(bundle, model_bytes, options)?;
    Ok(if options.kserve {
        vec![plan.serving_runtime(), plan.inference_service()]
    } else {
        let autoscaler = match &options.keda_prometheus_url {
            Some(url) => plan.scaled_object(url),
            None => plan.autoscaler(),
        };
        vec![plan.deployment(), plan.service(), autoscaler]
    })
}

fn check(options: &Options) -> Result<(), String> {
    if options.image.trim().is_empty() || options.image.contains(char::is_whitespace) {
        return Err(format!(
            "--image: expected an image reference, found '{}'",
            options.image
        ));
    }
    if (options.min_replicas == 0 && !options.serverless)
        || options.max_replicas == 0
        || options.min_replicas > options.max_replicas
    {
        return Err(format!(
            "--min-replicas {} and --max-replicas {}: expected 1 <= min <= max (min 0, scale to zero, with --serverless)",
            options.min_replicas, options.max_replicas
        ));
    }
    if options
        .canary_traffic_percent
        .is_some_and(|percent| percent > 100)
    {
        return Err(format!(
            "--canary-traffic-percent: expected 0 to 100, found {}",
            options.canary_traffic_percent.unwrap_or_default()
        ));
    }
    if let Some(url) = &options.keda_prometheus_url {
        let scheme = url.starts_with("http://") || url.starts_with("https://");
        if !scheme || url.contains(char::is_whitespace) {
            return Err(format!(
                "--keda-prometheus-url: expected an http:// or https:// URL, found '{url}'"
            ));
        }
    }
    if options
        .prediction_log_rate
        .is_some_and(|rate| !(0.0..=1.0).contains(&rate))
    {
        return Err(format!(
            "--prediction-log-rate {}: give a share from 0 to 1",
            options.prediction_log_rate.unwrap_or_default()
        ));
    }
    if options.target_in_flight == 0 {
        return Err("--target-in-flight: expected at least 1 request".into());
    }
    if i32::try_from(options.max_replicas).is_err() {
        return Err(format!(
            "--max-replicas: {} is too many",
            options.max_replicas
        ));
    }
    if let Some(secret) = &options.auth_token_secret {
        let label = |part: &str| {
            part.len() <= NAME_MAX
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if secret.len() > 253 || !secret.split('.').all(label) {
            return Err(format!(
                "--auth-token-secret: '{secret}' is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"
            ));
        }
    }
    if !(1..=100).contains(&options.target_cpu_percent) {
        return Err(format!(
            "--target-cpu-percent: expected 1 to 100, found {}",
            options.target_cpu_percent
        ));
    }
    Ok(())
}

/// The Kubernetes name of a bundle's resources: `predictor-<bundle name>`, with `.` and `_`
/// (which DNS labels lack) as `-`. Two bundles whose names differ only there get the same name.
pub fn kubernetes_name(bundle_name: &str) -> String {
    let name: String = bundle_name
        .chars()
        .map(|c| if c == '.' || c == '_' { '-' } else { c })
        .collect();
    format!("predictor-{}", name.trim_end_matches('-'))
}

/// A label value: at most 63 letters, digits, `-`, `_` and `.`, beginning and ending with a letter
/// or digit. A version's `+` (semver build metadata) becomes `_`, as Helm does.
fn label_value(field: &str, value: &str) -> Result<String, String> {
    let value = value.replace('+', "_");
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = value.len() <= NAME_MAX
        && edge(value.chars().next())
        && edge(value.chars().last())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(value)
    } else {
        Err(format!(
            "{field}: '{value}' cannot be a Kubernetes label value (at most {NAME_MAX} characters, beginning and ending with a letter or digit)"
        ))
    }
}

/// The memory one server of the bundle needs in steady use, in MiB (its request):
/// `runtime.memory_mib`, else [`MEMORY_BASE_MIB`] + [`MEMORY_MODEL_FACTOR`] × the model file
/// for each instance (each session holds its own weights), rounded up. `predictor manifests`
/// measures a bundle without `runtime.memory_mib` first ([`run`]'s `measured_memory_mib`): the
/// estimate is left for callers that cannot load the model.
pub fn memory_mib(hints: &RuntimeHints, model_bytes: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let instances = hints.instances.unwrap_or(1) as u64;
    hints.memory_mib.unwrap_or_else(|| {
        MEMORY_BASE_MIB
            + (MEMORY_MODEL_FACTOR
                .saturating_mul(model_bytes)
                .saturating_mul(instances))
            .div_ceil(MIB)
    })
}

/// The connections one server of the manifests takes (`--max-connections`): its own, not the
/// open-file limit's, which a container sets high; behind a Service, far more than its callers
/// keep open.
pub const MAX_CONNECTIONS: usize = 256;
/// Its overflow places: a container's open-file limit is high enough for the most there are.
const OVERFLOW_CONNECTIONS: usize = 64;

/// What callers can make one server of the manifests hold beside its models' runs, in MiB
/// ([`memory_bound`], for the flags the manifests set; `cpus` decode images at once where the
/// bundle takes images). The memory limit adds it to the request, so that the kernel never kills
/// a server that keeps within its own limits.
pub fn server_bound_mib(cpus: usize, takes_images: bool) -> u64 {
    let bound = MemoryBound::of(&memory_bound::Flags {
        max_upload_bytes: defaults::MAX_UPLOAD_BYTES as u64,
        max_body_bytes: MAX_BODY_BYTES as u64,
        max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS.get() as u64,
        connections: (MAX_CONNECTIONS + OVERFLOW_CONNECTIONS) as u64,
        max_concurrent_streams: u64::from(defaults::MAX_CONCURRENT_STREAMS),
        max_image_pixels: takes_images.then_some(defaults::MAX_IMAGE_PIXELS),
        image_decoders: cpus as u64,
    });
    memory_bound::mib(bound.total())
}

/// The CPUs of one server of the bundle: `runtime.threads` for each of its `runtime.instances`,
/// else one for each instance (the server divides the CPUs its limit allows among the instances).
pub fn cpus(hints: &RuntimeHints) -> usize {
    hints.threads.unwrap_or(1) * hints.instances.unwrap_or(1)
}

/// What every manifest of one bundle is made from.
struct Plan<'a> {
    name: String,
    /// Recommended labels: the bundle's name and version.
    labels: Value,
    /// The labels that select the pods: the version is not among them, so that a new version
    /// rolls out over the same Deployment.
    selector: Value,
    cpus: usize,
    memory_mib: u64,
    takes_images: bool,
    options: &'a Options,
}

impl<'a> Plan<'a> {
    fn new(bundle: &Bundle, model_bytes: u64, options: &'a Options) -> Result<Plan<'a>, String> {
        let name = kubernetes_name(bundle.name());
        let most = match (options.kserve, options.serverless) {
            (true, true) => SERVERLESS_NAME_MAX,
            (true, false) => KSERVE_NAME_MAX,
            _ => NAME_MAX,
        };
        if name.len() > most {
            return Err(format!(
                "name: '{}' gives the Kubernetes name '{name}' of {} characters; {} allows at most {most}",
                bundle.name(),
                name.len(),
                if options.kserve { "KServe" } else { "Kubernetes" },
            ));
        }
        let bundle_name = label_value("name", bundle.name())?;
        let version = label_value("version", &bundle.config.version)?;
        // Which of the two deploys the pods: the plain Service and autoscaler select by it too,
        // so that they never take in the pods of an InferenceService of the same bundle.
        let component = if options.kserve {
            "inference-service"
        } else {
            "server"
        };
        let selector = json!({
            "app.kubernetes.io/name": bundle_name,
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": component,
        });
        let mut labels = selector.clone();
        labels["app.kubernetes.io/version"] = json!(version);
        labels["app.kubernetes.io/part-of"] = json!("predictor");
        Ok(Plan {
            name,
            labels,
            selector,
            cpus: cpus(&bundle.config.runtime),
            memory_mib: memory_mib(&bundle.config.runtime, model_bytes),
            takes_images: bundle.config.image.is_some(),
            options,
        })
    }

    fn metadata(&self) -> Value {
        json!({"name": self.name, "labels": self.labels})
    }

    /// CPU: the limit is the request, so the server, whose default thread count follows its CPU
    /// limit, runs the threads the bundle asks for. Memory: the scheduler reserves what the server
    /// needs in steady use; the limit adds what its own limits let callers make it hold.
    fn resources(&self) -> Value {
        let cpu = self.cpus.to_string();
        let limit = self.memory_mib + server_bound_mib(self.cpus, self.takes_images);
        json!({
            "requests": {"cpu": cpu, "memory": format!("{}Mi", self.memory_mib)},
            "limits": {"cpu": cpu, "memory": format!("{limit}Mi")},
        })
    }

    /// Long enough for the pre-stop pause, the drain and the exit.
    fn grace_seconds(&self) -> u64 {
        PRE_STOP_SECONDS + self.options.drain_timeout_seconds + EXIT_MARGIN_SECONDS
    }

    /// The pod's settings that do not depend on the container: non-root, no API access, and no
    /// service links, whose `<SERVICE>_PORT` variables a Service named `predictor` would turn
    /// into a `PREDICTOR_PORT=tcp://...` that the server cannot parse.
    fn pod_settings(&self) -> Map<String, Value> {
        let mut settings = object(json!({
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
        }));
        // Knative refuses a pod's security context (unless its operator allows it) and its grace
        // period (it derives that from the revision's timeout): the container's own security
        // context carries the user instead, and the queue-proxy drains before the server's stop.
        if !self.options.serverless {
            settings.extend(object(json!({
                "terminationGracePeriodSeconds": self.grace_seconds(),
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": USER,
                    "runAsGroup": USER,
                    // Mounted Secrets belong to this group: the tokens need not be readable by all.
                    "fsGroup": USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            })));
        }
        if let Some(secret) = &self.options.auth_token_secret {
            // 0440 with the group above: the server warns about a token file that every user
            // can read. Without a pod security context (Serverless) the file is root's, and the
            // server's user reads it only as "other" (the server then logs that warning).
            let mode = if self.options.serverless {
                0o444
            } else {
                0o440
            };
            settings.insert(
                "volumes".into(),
                json!([{
                    "name": "auth-tokens",
                    "secret": {
                        "secretName": secret,
                        "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
                        "defaultMode": mode,
                    },
                }]),
            );
        }
        settings
    }

    /// The server's container, as this template runs it (no image or resources: those are the
    /// bundle's). Probes and ports name the ports of [`PORTS`]; in Serverless mode the one port.
    fn server_container(name: &str, serverless: bool) -> Map<String, Value> {
        let probe_port = if serverless {
            json!(HTTP_PORT)
        } else {
            json!("http")
        };
        let probe = |path: &str, period: u32, failures: u32| {
            json!({
                "httpGet": {"path": path, "port": probe_port},
                "periodSeconds": period,
                "timeoutSeconds": 2,
                "failureThreshold": failures,
            })
        };
        let env = |name: &str, value: String| json!({"name": name, "value": value});
        let ports: Vec<Value> = if serverless {
            vec![
                json!({"name": SERVERLESS_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}),
            ]
        } else {
            PORTS
                .iter()
                .map(|(name, port)| json!({"name": name, "containerPort": port, "protocol": "TCP"}))
                .collect()
        };
        let listeners = if serverless {
            vec![
                env("PREDICTOR_PORT", HTTP_PORT.to_string()),
                env("PREDICTOR_SINGLE_PORT", "true".into()),
            ]
        } else {
            vec![
                env("PREDICTOR_PORT", HTTP_PORT.to_string()),
                env("PREDICTOR_GRPC_PORT", GRPC_PORT.to_string()),
                env("PREDICTOR_METRICS_PORT", METRICS_PORT.to_string()),
            ]
        };
        let mut environment = vec![
            // Reachable from the pod's network (the server's own default is 127.0.0.1).
            env("PREDICTOR_ADDRESS", "0.0.0.0".into()),
        ];
        environment.extend(listeners);
        environment.extend([
            env("PREDICTOR_LOG_FORMAT", "json".into()),
            // What the memory limit was sized for (server_bound_mib).
            env("PREDICTOR_MAX_BODY_BYTES", MAX_BODY_BYTES.to_string()),
            env(
                "PREDICTOR_MAX_CONCURRENT_REQUESTS",
                defaults::MAX_CONCURRENT_REQUESTS.to_string(),
            ),
            env(
                "PREDICTOR_MAX_UPLOAD_BYTES",
                defaults::MAX_UPLOAD_BYTES.to_string(),
            ),
            env(
                "PREDICTOR_MAX_CONCURRENT_STREAMS",
                defaults::MAX_CONCURRENT_STREAMS.to_string(),
            ),
            env("PREDICTOR_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        ]);

        let mut security = json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        });
        let mut container = object(json!({
            "name": name,
            "ports": ports,
            "env": environment,
        }));
        if serverless {
            // Knative has no startup probe nor lifecycle hooks (it adds its own pre-stop drain):
            // liveness waits as long as the startup probe would for the bundles to load, and
            // readiness, which the queue-proxy runs, holds traffic back until then.
            container.extend(object(json!({
                "livenessProbe": probe(LIVE_PATH, 10, 30),
                "readinessProbe": probe(READY_PATH, 5, 2),
            })));
            // The pod's security context is Knative's to refuse: the container's has the user.
            security["runAsUser"] = json!(USER);
            security["runAsGroup"] = json!(USER);
            security["seccompProfile"] = json!({"type": "RuntimeDefault"});
        } else {
            container.extend(object(json!({
                // The server listens only once every bundle has loaded and passed its sample:
                // up to 5 minutes for that before liveness counts.
                "startupProbe": probe(LIVE_PATH, 2, 150),
                "livenessProbe": probe(LIVE_PATH, 10, 3),
                // 400 from the moment shutdown begins, so the pod leaves the endpoints at once.
                "readinessProbe": probe(READY_PATH, 5, 2),
                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
            })));
        }
        container.insert("securityContext".into(), security);
        container
    }

    /// The deployment's part of the container: its image, resources, drain timeout and tokens.
    fn bundle_container(&self) -> Map<String, Value> {
        let mut container = object(json!({
            "image": self.options.image,
            "resources": self.resources(),
            "env": [{
                "name": "PREDICTOR_DRAIN_TIMEOUT_SECONDS",
                "value": self.options.drain_timeout_seconds.to_string(),
            }],
        }));
        if let Some(Value::Array(env)) = container.get_mut("env") {
            // The prediction log on standard output, the server's log on standard error.
            if let Some(rate) = self.options.prediction_log_rate {
                env.push(
                    json!({"name": "PREDICTOR_PREDICTION_LOG_RATE", "value": rate.to_string()}),
                );
            }
            if let Some(inputs) = self.options.prediction_log_inputs {
                let policy = inputs
                    .to_possible_value()
                    .map(|value| value.get_name().to_string())
                    .unwrap_or_default();
                env.push(json!({"name": "PREDICTOR_PREDICTION_LOG_INPUTS", "value": policy}));
            }
        }
        if self.options.auth_token_secret.is_some() {
            if let Some(Value::Array(env)) = container.get_mut("env") {
                env.push(json!({
                    "name": "PREDICTOR_AUTH_TOKEN_FILE",
                    "value": format!("{TOKEN_DIR}/{TOKEN_KEY}"),
                }));
            }
            container.insert(
                "volumeMounts".into(),
                json!([{"name": "auth-tokens", "mountPath": TOKEN_DIR, "readOnly": true}]),
            );
        }
        container
    }

    /// Where Prometheus scrapes: the metrics port, or in Serverless mode the one port.
    fn scrape_annotations(&self) -> Value {
        json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": self.metrics_port().to_string(),
            "prometheus.io/path": METRICS_PATH,
        })
    }

    fn metrics_port(&self) -> u16 {
        if self.options.serverless {
            HTTP_PORT
        } else {
            METRICS_PORT
        }
    }

    /// What the pods' requests in flight add up to, in the Prometheus that scrapes them with
    /// their `app.kubernetes.io/instance` and `/component` labels (docs/kubernetes.md's scrape
    /// job): the load that the autoscalers divide by the replicas.
    fn in_flight_query(&self) -> String {
        format!(
            "sum(predictor_requests_in_flight{{app_kubernetes_io_instance=\"{}\",app_kubernetes_io_component=\"{}\"}})",
            self.name, self.selector["app.kubernetes.io/component"].as_str().unwrap_or_default()
        )
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json!({{...}}) is an object"),
    }
}

/// Moves `from`'s `env` to the end of `to`'s.
fn append_env(to: &mut Map<String, Value>, from: &mut Map<String, Value>) {
    if let (Some(Value::Array(to)), Some(Value::Array(from))) =
        (to.get_mut("env"), from.remove("env"))
    {
        to.extend(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bundle(runtime: &str) -> Bundle {
        let text = format!(
            r#"
schema_version = 1
name = "iris_svc.v2"
version = "1.0.0+build.7"
model = "model.onnx"
[[inputs]]
name = "input"
dtype = "float32"
shape = [-1, 4]
[[outputs]]
name = "probabilities"
dtype = "float32"
shape = [-1, 3]
[sample]
input = [[5.1, 3.5, 1.4, 0.2]]
output = [[0.9, 0.05, 0.05]]
tolerance = 1e-4
{runtime}
"#
        );
        Bundle::parse(Path::new("models/iris/predictor.toml"), &text).unwrap()
    }

    /// The test bundle with `edit` applied to its configuration (checked by `Bundle::parse`
    /// before, not after).
    fn edited(edit: impl FnOnce(&mut crate::bundle::BundleConfig)) -> Bundle {
        let mut bundle = bundle("");
        edit(&mut bundle.config);
        bundle
    }

    fn options(kserve: bool) -> Options {
        Options {
            image: "registry.example.com/predictor-iris:1.0.0".into(),
            kserve,
            serverless: false,
            canary_traffic_percent: None,
            min_replicas: 2,
            max_replicas: 6,
            target_cpu_percent: 60,
            target_in_flight: 8,
            keda_prometheus_url: None,
            drain_timeout_seconds: 20,
            auth_token_secret: None,
            prediction_log_rate: None,
            prediction_log_inputs: None,
            format: Format::Yaml,
        }
    }

    #[test]
    fn the_prediction_log_is_set_on_the_bundles_container() {
        let mut with_log = options(false);
        with_log.prediction_log_rate = Some(0.01);
        with_log.prediction_log_inputs = Some(crate::prediction_log::InputsPolicy::Redact);
        for kserve in [false, true] {
            with_log.kserve = kserve;
            let documents = generate(&bundle(""), 1024, &with_log).unwrap();
            let text = serde_json::to_string(&documents).unwrap();
            assert!(
                text.contains(r#"{"name":"PREDICTOR_PREDICTION_LOG_RATE","value":"0.01"}"#),
                "{text}"
            );
            assert!(text.contains(r#"{"name":"PREDICTOR_PREDICTION_LOG_INPUTS","value":"redact"}"#));
        }
        with_log.prediction_log_rate = Some(1.5);
        assert!(generate(&bundle(""), 1024, &with_log).is_err());
    }

    fn generated(runtime: &str, kserve: bool) -> Vec<Value> {
        generate(&bundle(runtime), 3 * 1024 * 1024, &options(kserve)).unwrap()
    }

    fn kinds(documents: &[Value]) -> Vec<&str> {
        documents
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn names_and_labels_follow_the_bundle() {
        assert_eq!(kubernetes_name("iris-svc"), "predictor-iris-svc");
        assert_eq!(kubernetes_name("iris_svc.v2"), "predictor-iris-svc-v2");
        assert_eq!(kubernetes_name("iris-"), "predictor-iris");
        let documents = generated("", false);
        assert_eq!(
            kinds(&documents),
            ["Deployment", "Service", "HorizontalPodAutoscaler"]
        );
        for document in &documents {
            assert_eq!(document["metadata"]["name"], "predictor-iris-svc-v2");
            let labels = &document["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "iris_svc.v2");
            assert_eq!(labels["app.kubernetes.io/version"], "1.0.0_build.7");
        }
        let message =
            generate(&edited(|c| c.name = "a".repeat(60)), 0, &options(false)).unwrap_err();
        assert!(message.contains("at most 63"), "{message}");
    }

    #[test]
    fn kserve_names_leave_room_for_its_suffixes() {
        let long = edited(|c| c.name = "a".repeat(39));
        let message = generate(&long, 0, &options(true)).unwrap_err();
        assert!(message.contains("KServe allows at most 48"), "{message}");
        let fits = edited(|c| c.name = "a".repeat(38));
        assert!(generate(&fits, 0, &options(true)).is_ok());
        assert!(generate(&long, 0, &options(false)).is_ok());
    }

    #[test]
    fn the_service_and_autoscaler_point_at_the_deployment() {
        let documents = generated("", false);
        let (deployment, service, autoscaler) = (&documents[0], &documents[1], &documents[2]);
        let pod = &deployment["spec"]["template"];
        let selector = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        assert_eq!(
            &service["spec"]["selector"],
            &deployment["spec"]["selector"]["matchLabels"]
        );
        for (key, value) in selector {
            assert_eq!(&pod["metadata"]["labels"][key], value, "{key}");
        }
        assert!(selector.get("app.kubernetes.io/version").is_none());
        // KServe gives its pods the InferenceService's labels: the plain selector misses them.
        let kserve = generated("", true);
        let theirs = &kserve[1]["metadata"]["labels"];
        assert!(selector.iter().any(|(key, value)| &theirs[key] != value));
        let container = &pod["spec"]["containers"][0];
        let port_names: Vec<&Value> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        for port in service["spec"]["ports"].as_array().unwrap() {
            assert!(port_names.contains(&&port["targetPort"]), "{port}");
        }
        assert_eq!(autoscaler["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(
            autoscaler["spec"]["scaleTargetRef"]["name"],
            deployment["metadata"]["name"]
        );
        assert_eq!(autoscaler["spec"]["minReplicas"], 2);
        assert_eq!(autoscaler["spec"]["maxReplicas"], 6);
        assert!(deployment["spec"].get("replicas").is_none());
    }

    #[test]
    fn probes_and_ports_are_the_servers() {
        let documents = generated("", false);
        let container = &documents[0]["spec"]["template"]["spec"]["containers"][0];
        let port = |name: &str| {
            container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["containerPort"].as_u64().unwrap())
        };
        assert_eq!(port("http"), Some(u64::from(HTTP_PORT)));
        assert_eq!(port("grpc"), Some(u64::from(GRPC_PORT)));
        assert_eq!(port("metrics"), Some(u64::from(METRICS_PORT)));
        for (probe, path) in [
            ("startupProbe", LIVE_PATH),
            ("livenessProbe", LIVE_PATH),
            ("readinessProbe", READY_PATH),
        ] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
        }
        let env = |name: &str| {
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].as_str().unwrap().to_string())
        };
        assert_eq!(env("PREDICTOR_PORT"), Some(HTTP_PORT.to_string()));
        assert_eq!(env("PREDICTOR_DRAIN_TIMEOUT_SECONDS"), Some("20".into()));
        let annotations = &documents[0]["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string());
        assert_eq!(annotations["prometheus.io/path"], METRICS_PATH);
    }

    #[test]
    fn the_pod_is_locked_down_and_drains_before_it_is_killed() {
        let documents = generated("", false);
        let pod = &documents[0]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65534);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(pod["enableServiceLinks"], false);
        // 5 s pause + 20 s drain + 5 s to exit.
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(
            container["lifecycle"]["preStop"]["sleep"]["seconds"],
            PRE_STOP_SECONDS
        );
    }

    #[test]
    fn resources_come_from_the_runtime_hints() {
        let resources = |runtime: &str| {
            generated(runtime, false)[0]["spec"]["template"]["spec"]["containers"][0]["resources"]
                .clone()
        };
        // No hints: one CPU; 128 MiB + 4 × 3 MiB, and the server's bound for the flags the
        // manifests set: 256 MiB arriving, 64 requests of 60 MiB, 320 connections of 4.1 MiB,
        // and a quarter.
        assert_eq!(server_bound_mib(1, false), 6_770);
        assert_eq!(server_bound_mib(2, true), 6_770 + 440);
        let default = resources("");
        assert_eq!(default["requests"], json!({"cpu": "1", "memory": "140Mi"}));
        assert_eq!(default["limits"], json!({"cpu": "1", "memory": "6910Mi"}));
        let hinted = resources("[runtime]\nthreads = 3\nmemory_mib = 512");
        assert_eq!(hinted["requests"], json!({"cpu": "3", "memory": "512Mi"}));
        assert_eq!(hinted["limits"], json!({"cpu": "3", "memory": "7282Mi"}));
        let instances = resources("[runtime]\nthreads = 3\ninstances = 2");
        assert_eq!(
            instances["requests"],
            json!({"cpu": "6", "memory": "152Mi"})
        );
        assert_eq!(memory_mib(&RuntimeHints::default(), 1), 129);
        assert_eq!(memory_mib(&RuntimeHints::default(), 0), 128);
    }

    #[test]
    fn kserve_declares_the_v2_protocol_and_one_runtime_for_every_bundle() {
        let documents = generated("[runtime]\nthreads = 2", true);
        assert_eq!(kinds(&documents), ["ServingRuntime", "InferenceService"]);
        let (runtime, service) = (&documents[0], &documents[1]);
        assert_eq!(
            runtime["spec"]["protocolVersions"],
            json!(["v2", "grpc-v2"])
        );
        // The runtime is the template's: another bundle gets the very same.
        let other = generate(&edited(|c| c.name = "other".into()), 1, &options(true)).unwrap();
        assert_eq!(&other[0], runtime);
        let container = &runtime["spec"]["containers"][0];
        assert_eq!(container["name"], "kserve-container");
        assert!(container.get("image").is_none());
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], READY_PATH);
        let predictor = &service["spec"]["predictor"];
        let model = &predictor["model"];
        assert_eq!(model["runtime"], runtime["metadata"]["name"]);
        assert_eq!(
            model["modelFormat"]["name"],
            runtime["spec"]["supportedModelFormats"][0]["name"]
        );
        assert_eq!(model["protocolVersion"], "v2");
        assert_eq!(model["image"], "registry.example.com/predictor-iris:1.0.0");
        assert_eq!(model["resources"]["limits"]["cpu"], "2");
        assert_eq!(predictor["terminationGracePeriodSeconds"], 30);
        assert_eq!(predictor["securityContext"]["runAsUser"], 65534);
        assert_eq!(
            (&predictor["minReplicas"], &predictor["maxReplicas"]),
            (&json!(2), &json!(6))
        );
        assert_eq!(service["metadata"]["name"], "predictor-iris-svc-v2");
    }

    fn serverless(edit: impl FnOnce(&mut Options)) -> Result<Vec<Value>, String> {
        let mut options = options(true);
        options.serverless = true;
        edit(&mut options);
        generate(&bundle(""), 0, &options)
    }

    #[test]
    fn serverless_runs_on_one_port_with_what_knative_accepts() {
        let documents = serverless(|o| o.canary_traffic_percent = Some(10)).unwrap();
        let (runtime, service) = (&documents[0], &documents[1]);
        assert_eq!(runtime["metadata"]["name"], SERVERLESS_RUNTIME);
        let container = &runtime["spec"]["containers"][0];
        assert_eq!(
            container["ports"],
            json!([{"name": "h2c", "containerPort": HTTP_PORT, "protocol": "TCP"}])
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(container[probe]["httpGet"]["port"], HTTP_PORT, "{probe}");
        }
        // Fields Knative refuses.
        assert!(container.get("startupProbe").is_none());
        assert!(container.get("lifecycle").is_none());
        assert_eq!(container["securityContext"]["runAsUser"], USER);
        let env: Vec<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(env.contains(&"PREDICTOR_SINGLE_PORT"));
        assert!(!env.contains(&"PREDICTOR_GRPC_PORT") && !env.contains(&"PREDICTOR_METRICS_PORT"));
        assert_eq!(
            runtime["spec"]["annotations"]["prometheus.kserve.io/port"],
            HTTP_PORT.to_string()
        );
        // Only the Standard runtime is picked for an InferenceService that names none.
        assert_eq!(
            runtime["spec"]["supportedModelFormats"][0]["autoSelect"],
            false
        );
        let predictor = &service["spec"]["predictor"];
        assert_eq!(
            service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
            "Serverless"
        );
        assert_eq!(predictor["model"]["runtime"], SERVERLESS_RUNTIME);
        assert_eq!(predictor["canaryTrafficPercent"], 10);
        assert_eq!(predictor["scaleMetric"], "concurrency");
        assert_eq!(predictor["scaleTarget"], 8);
        assert_eq!(predictor["containerConcurrency"], 64);
        assert!(predictor.get("securityContext").is_none());
        assert!(predictor.get("terminationGracePeriodSeconds").is_none());
        // No canary unless asked for: a change then takes the traffic once ready.
        let plain = serverless(|_| {}).unwrap();
        assert!(plain[1]["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none());
    }

    #[test]
    fn keda_scales_the_deployment_on_requests_in_flight_and_cpu_instead_of_the_hpa() {
        let with_keda = |kserve: bool| {
            let mut options = options(kserve);
            options.keda_prometheus_url = Some("http://prometheus.monitoring:9090".into());
            generate(&bundle(""), 0, &options)
        };
        let documents = with_keda(false).unwrap();
        assert_eq!(kinds(&documents), ["Deployment", "Service", "ScaledObject"]);
        let scaled = &documents[2]["spec"];
        assert_eq!(
            scaled["scaleTargetRef"]["name"],
            documents[0]["metadata"]["name"]
        );
        assert_eq!(
            (&scaled["minReplicaCount"], &scaled["maxReplicaCount"]),
            (&json!(2), &json!(6))
        );
        let (load, cpu) = (&scaled["triggers"][0], &scaled["triggers"][1]);
        assert_eq!(load["type"], "prometheus");
        assert_eq!(load["metadata"]["threshold"], "8");
        assert_eq!(
            load["metadata"]["query"],
            "sum(predictor_requests_in_flight{app_kubernetes_io_instance=\"predictor-iris-svc-v2\",app_kubernetes_io_component=\"server\"})"
        );
        assert_eq!(cpu["metadata"]["value"], "60");
        let kserve = with_keda(true).unwrap();
        let service = &kserve[1];
        assert_eq!(
            service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"],
            "keda"
        );
        let predictor = &service["spec"]["predictor"];
        assert!(predictor.get("scaleMetric").is_none());
        let external = &predictor["autoScaling"]["metrics"][0]["external"];
        assert!(external["metric"]["query"]
            .as_str()
            .unwrap()
            .contains("app_kubernetes_io_component=\"inference-service\""));
        let mut bad = options(false);
        bad.keda_prometheus_url = Some("prometheus:9090".into());
        assert!(generate(&bundle(""), 0, &bad)
            .unwrap_err()
            .contains("--keda-prometheus-url"));
    }

    #[test]
    fn only_serverless_scales_to_zero_and_canaries_are_percentages() {
        let zero = serverless(|o| o.min_replicas = 0).unwrap();
        assert_eq!(zero[1]["spec"]["predictor"]["minReplicas"], 0);
        let mut standard = options(true);
        standard.min_replicas = 0;
        assert!(generate(&bundle(""), 0, &standard)
            .unwrap_err()
            .contains("with --serverless"));
        let message = serverless(|o| o.canary_traffic_percent = Some(101)).unwrap_err();
        assert!(message.contains("--canary-traffic-percent"), "{message}");
        assert!(serverless(|o| o.canary_traffic_percent = Some(0)).is_ok());
        assert!(serverless(|o| o.max_replicas = 0).is_err());
        // Knative's revision names leave 47 characters to the InferenceService's.
        let long = edited(|c| c.name = "a".repeat(38));
        let mut options = options(true);
        options.serverless = true;
        let message = generate(&long, 0, &options).unwrap_err();
        assert!(message.contains("at most 47"), "{message}");
    }

    #[test]
    fn tokens_come_from_a_secret_readable_by_the_server_only() {
        let mut with_tokens = options(false);
        with_tokens.auth_token_secret = Some("iris-tokens".into());
        let documents = generate(&bundle(""), 0, &with_tokens).unwrap();
        let pod = &documents[0]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "iris-tokens");
        assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o440);
        assert_eq!(pod["securityContext"]["fsGroup"], 65534);
        assert_eq!(container["volumeMounts"][0]["mountPath"], TOKEN_DIR);
        assert_eq!(container["volumeMounts"][0]["readOnly"], true);
        let file = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "PREDICTOR_AUTH_TOKEN_FILE")
            .unwrap();
        assert_eq!(file["value"], "/etc/predictor/auth/tokens");
        with_tokens.kserve = true;
        let kserve = generate(&bundle(""), 0, &with_tokens).unwrap();
        let predictor = &kserve[1]["spec"]["predictor"];
        assert_eq!(predictor["volumes"], pod["volumes"]);
        assert_eq!(
            predictor["model"]["volumeMounts"],
            container["volumeMounts"]
        );
        // Without the option, nothing of it.
        let plain = generated("", false);
        assert!(plain[0]["spec"]["template"]["spec"]
            .get("volumes")
            .is_none());
        with_tokens.auth_token_secret = Some("Tokens!".into());
        assert!(generate(&bundle(""), 0, &with_tokens)
            .unwrap_err()
            .contains("--auth-token-secret"));
    }

    #[test]
    fn refuses_options_that_cannot_deploy() {
        let refused = |edit: fn(&mut Options)| {
            let mut options = options(false);
            edit(&mut options);
            generate(&bundle(""), 0, &options).unwrap_err()
        };
        assert!(refused(|o| o.image = " ".into()).contains("--image"));
        assert!(refused(|o| o.min_replicas = 0).contains("1 <= min <= max"));
        assert!(refused(|o| o.target_in_flight = 0).contains("--target-in-flight"));
        assert!(refused(|o| o.max_replicas = 1).contains("1 <= min <= max"));
        assert!(refused(|o| o.target_cpu_percent = 0).contains("--target-cpu-percent"));
        let message =
            generate(&edited(|c| c.version = "1.0.0-".into()), 0, &options(false)).unwrap_err();
        assert!(
            message.starts_with("version: '1.0.0-' cannot be"),
            "{message}"
        );
    }

    #[test]
    fn json_is_a_list_of_the_same_documents() {
        let documents = generated("", false);
        let list: Value = serde_json::from_str(&render(&documents, Format::Json)).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"], json!(documents));
        assert!(render(&documents, Format::Yaml)
            .starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"));
    }
}
