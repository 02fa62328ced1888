//! `predictor manifests` against the real server: every probe of the generated Deployment, sent
//! to the port it names on a server started from every bundle, answers 200; so does the metrics
//! endpoint the scrape annotations name; KServe's runtime runs the very same container.

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use serde_json::Value;

use common::{all_bundles, edited_copy, predictor, Server};

/// The environment variable that sets each listener's port, and the field of the server's
/// `listening` log line that names the address it took (docs/operations.md, Command line).
const LISTENERS: [(&str, &str); 3] = [
    ("PREDICTOR_PORT", "address"),
    ("PREDICTOR_GRPC_PORT", "grpc_address"),
    ("PREDICTOR_METRICS_PORT", "metrics_address"),
];

/// The documents `predictor manifests` prints for `bundle` (JSON, as a List).
fn manifests(bundle: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "manifests",
        bundle.to_str().unwrap(),
        "--image",
        "registry.example.com/predictor:test",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let output = predictor(&args);
    assert!(output.status.success(), "{output:?}");
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    list["items"].as_array().unwrap().clone()
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {documents:?}"))
}

/// The container port that a probe's or Service's `port` names (by name or number).
fn container_port(container: &Value, port: &Value) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| &p["name"] == port || &p["containerPort"] == port)
        .unwrap_or_else(|| panic!("no container port {port}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// Where the running server really listens for the listener that the container's environment
/// puts on `port`: the variable set to it, then the server's own log line for that listener.
fn served_address(server: &Server, container: &Value, port: u64) -> SocketAddr {
    let port_text = port.to_string();
    let set_to_port: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["value"] == port_text.as_str())
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let (_, field) = LISTENERS
        .iter()
        .find(|(variable, _)| set_to_port == [*variable])
        .unwrap_or_else(|| panic!("port {port} is set by {set_to_port:?}, not by one listener"));
    let listening = server
        .log_events()
        .into_iter()
        .find(|e| e["message"] == "listening")
        .unwrap();
    listening[field].as_str().unwrap().parse().unwrap()
}

async fn status(server: &Server, address: SocketAddr, path: &str) -> u16 {
    let url = format!("http://{address}{path}");
    server
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_probe_answers_200_on_the_port_it_names() {
    for bundle in all_bundles() {
        let documents = manifests(&bundle, &[]);
        let pod = &find(&documents, "Deployment")["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        // Ports 0 (the tests run side by side); the mapping from the manifests' ports to the
        // ones taken goes through the environment variables the container sets.
        let server = Server::start(&[&bundle]);
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let get = &container[probe]["httpGet"];
            let port = container_port(container, &get["port"]);
            let address = served_address(&server, container, port);
            let path = get["path"].as_str().unwrap();
            assert_eq!(
                status(&server, address, path).await,
                200,
                "{}: {probe} GET {path} on port {port}",
                bundle.display()
            );
        }
        let annotations = &pod["metadata"]["annotations"];
        let port: u64 = annotations["prometheus.io/port"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(container_port(container, &port.into()), port);
        let address = served_address(&server, container, port);
        let path = annotations["prometheus.io/path"].as_str().unwrap();
        assert_eq!(status(&server, address, path).await, 200, "{path}");
        // The gRPC port: a listener is there (the v2 gRPC tests speak to it).
        let grpc = container_port(container, &"grpc".into());
        TcpStream::connect(served_address(&server, container, grpc)).unwrap();
    }
}

/// With `--auth-token-secret`, the server needs a token for everything but its probes: they still
/// answer 200 without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_probes_need_no_token_when_the_server_has_some() {
    let bundle = &all_bundles()[0];
    let documents = manifests(bundle, &["--auth-token-secret", "predictor-tokens"]);
    let pod = &find(&documents, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let file = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PREDICTOR_AUTH_TOKEN_FILE")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert!(
        file.starts_with(&format!("{mount}/")),
        "{file} not in {mount}"
    );
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "predictor-tokens"
    );

    // The Secret's file, as the pod sees it, here in a temporary folder.
    let folder = tempfile::tempdir().unwrap();
    let tokens = folder.path().join("tokens");
    std::fs::write(&tokens, "0123456789abcdef0123456789abcdef\n").unwrap();
    let server = Server::start_with(&[bundle], &["--auth-token-file", tokens.to_str().unwrap()]);
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        let address = served_address(&server, container, container_port(container, &get["port"]));
        let path = get["path"].as_str().unwrap();
        assert_eq!(status(&server, address, path).await, 200, "{probe} {path}");
    }
    // The token is in force: the API itself refuses a caller without one.
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let metadata = format!("/v2/models/{name}");
    assert_eq!(status(&server, server.address, &metadata).await, 401);
}

#[test]
fn the_service_reaches_the_containers_ports() {
    let documents = manifests(&all_bundles()[0], &[]);
    let container = &find(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let service = find(&documents, "Service");
    for port in service["spec"]["ports"].as_array().unwrap() {
        // Service port = container port: `kubectl port-forward svc/... 8080` reaches HTTP.
        assert_eq!(
            container_port(container, &port["targetPort"]),
            port["port"].as_u64().unwrap()
        );
    }
}

/// Container resources with each memory quantity replaced by "<n>Mi" (checked to be one).
fn without_memory(resources: &Value) -> Value {
    let mut resources = resources.clone();
    for kind in ["requests", "limits"] {
        if let Some(memory) = resources[kind].get_mut("memory") {
            let quantity = memory.as_str().unwrap_or_default();
            let digits = quantity.strip_suffix("Mi").unwrap_or_default();
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{quantity}"
            );
            *memory = Value::from("<n>Mi");
        }
    }
    resources
}

#[test]
fn kserve_runs_the_same_container_as_the_deployment() {
    for bundle in all_bundles() {
        let plain = manifests(&bundle, &[]);
        let kserve = manifests(&bundle, &["--kserve"]);
        let deployment = &find(&plain, "Deployment")["spec"]["template"]["spec"];
        let runtime = &find(&kserve, "ServingRuntime")["spec"]["containers"][0];
        let container = &deployment["containers"][0];
        for field in [
            "ports",
            "startupProbe",
            "livenessProbe",
            "readinessProbe",
            "lifecycle",
            "securityContext",
        ] {
            assert_eq!(runtime[field], container[field], "{field}");
        }
        let predictor = &find(&kserve, "InferenceService")["spec"]["predictor"];
        let model = &predictor["model"];
        assert_eq!(model["image"], container["image"]);
        // The same resources, but for memory: each run of `predictor manifests` measures the
        // largest request of a bundle without runtime.memory_mib, and two runs' peaks can fall
        // on either side of a 64 MiB step (CI saw 576Mi and 640Mi for support-tickets-tfidf).
        assert_eq!(
            without_memory(&model["resources"]),
            without_memory(&container["resources"])
        );
        // The runtime's environment and the InferenceService's together are the Deployment's.
        let mut env = runtime["env"].as_array().unwrap().clone();
        env.extend(model["env"].as_array().unwrap().iter().cloned());
        assert_eq!(Value::Array(env), container["env"]);
        for field in [
            "securityContext",
            "terminationGracePeriodSeconds",
            "enableServiceLinks",
        ] {
            assert_eq!(predictor[field], deployment[field], "{field}");
        }
    }
}

#[test]
fn yaml_is_the_default_and_a_broken_bundle_is_refused() {
    let bundle = &all_bundles()[0];
    let output = predictor(&[
        "manifests",
        bundle.to_str().unwrap(),
        "--image",
        "predictor:1",
    ]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    assert_eq!(text.matches("\n---\n").count() + 1, 3, "{text}");
    assert!(text.starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"));

    let (_keep, broken) = edited_copy(|text| text.replace("name = \"iris-svc\"", "name = \"-x\""));
    let output = predictor(&["manifests", broken.to_str().unwrap(), "--image", "p:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("predictor.toml: name: expected"),
        "{stderr}"
    );

    let output = predictor(&["manifests", bundle.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--image"));
}

/// KServe's Serverless runtime runs the server on its one container port (`--single-port`): the
/// probes, the scrape and the API all answer there.
#[tokio::test(flavor = "multi_thread")]
async fn the_serverless_runtime_serves_everything_on_its_one_port() {
    let bundle = &all_bundles()[0];
    let documents = manifests(bundle, &["--kserve", "--serverless"]);
    let runtime = find(&documents, "ServingRuntime");
    let container = &runtime["spec"]["containers"][0];
    let ports = container["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "Knative allows one port: {ports:?}");
    let port = ports[0]["containerPort"].as_u64().unwrap();
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    assert_eq!(env("PREDICTOR_SINGLE_PORT").as_deref(), Some("true"));
    assert_eq!(env("PREDICTOR_PORT"), Some(port.to_string()));
    assert_eq!(env("PREDICTOR_GRPC_PORT"), None);
    assert_eq!(env("PREDICTOR_METRICS_PORT"), None);
    let server = Server::start_with(&[bundle], &["--single-port"]);
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["port"].as_u64(), Some(port), "{probe}");
        let path = get["path"].as_str().unwrap();
        assert_eq!(status(&server, server.address, path).await, 200, "{probe}");
    }
    let annotations = &runtime["spec"]["annotations"];
    for key in ["prometheus.io/port", "prometheus.kserve.io/port"] {
        assert_eq!(annotations[key], port.to_string(), "{key}");
    }
    let path = annotations["prometheus.io/path"].as_str().unwrap();
    assert_eq!(status(&server, server.address, path).await, 200, "{path}");
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let ready = format!("/v2/models/{name}/ready");
    assert_eq!(status(&server, server.address, &ready).await, 200);
}

/// The series KEDA's trigger sums is one the server exposes, on the port the scrape annotations
/// name, and it counts a request while it is answered.
#[tokio::test(flavor = "multi_thread")]
async fn the_keda_trigger_sums_a_series_the_server_exposes() {
    let bundle = &all_bundles()[0];
    let documents = manifests(bundle, &["--keda-prometheus-url", "http://prometheus:9090"]);
    let scaled = find(&documents, "ScaledObject");
    let query = scaled["spec"]["triggers"][0]["metadata"]["query"]
        .as_str()
        .unwrap();
    let series = query
        .strip_prefix("sum(")
        .and_then(|rest| rest.split('{').next())
        .unwrap();
    let server = Server::start(&[bundle]);
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with(&format!("{series}{{"))),
        "{series} not in\n{metrics}"
    );
}

/// A bundle without `runtime.memory_mib` gets the memory its largest request was measured to
/// need, not an estimate from the model file's size (which gave this 354-byte model 129 MiB):
/// the pod's request covers the peak that `predictor check` measures for that request.
#[test]
fn the_memory_of_a_bundle_without_memory_mib_is_measured() {
    let bundle = common::fixture("token-pair");
    let checked = predictor(&["check", bundle.to_str().unwrap()]);
    assert!(checked.status.success(), "{checked:?}");
    let stdout = String::from_utf8(checked.stdout).unwrap();
    let peak: u64 = stdout
        .split(" peaked at ")
        .nth(1)
        .and_then(|rest| rest.split(" MiB").next())
        .and_then(|mib| mib.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stdout}"));
    let documents = manifests(&bundle, &[]);
    let resources =
        &find(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"];
    let mib = |value: &Value| -> u64 {
        value
            .as_str()
            .unwrap()
            .strip_suffix("Mi")
            .unwrap()
            .parse()
            .unwrap()
    };
    let request = mib(&resources["requests"]["memory"]);
    assert!(
        request >= peak && request > 129,
        "request {request} MiB for a peak of {peak} MiB"
    );
    assert!(mib(&resources["limits"]["memory"]) > request);
}
