//! Shared by the integration tests: the real `predictor` binary on a free port, the real bundles.

#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_predictor");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every bundle folder under `models/`: a template change must keep each of them working.
pub fn all_bundles() -> Vec<PathBuf> {
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(repo_root().join("models"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("predictor.toml").is_file())
        .collect();
    bundles.sort();
    assert!(
        bundles.len() >= 3,
        "expected the bundles under models/, found {bundles:?}"
    );
    // A model too large for git is named in its bundle's fetch.toml, not in the folder.
    for bundle in &bundles {
        assert!(
            !bundle.join("fetch.toml").is_file() || bundle.join("model.onnx").exists(),
            "{}: its model is fetched (fetch.toml) and not here yet: run scripts/fetch-models",
            bundle.display()
        );
    }
    bundles
}

pub fn bundle(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

/// A test fixture bundle under server/tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("server/tests/fixtures").join(name)
}

/// A copy of `models/iris-svc` in a temporary folder, its predictor.toml changed by `edit`
/// (which must change something). Keep the `TempDir` alive while the path is used.
pub fn edited_copy(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    edited_copy_of(&bundle("iris-svc"), edit)
}

/// Like [`edited_copy`], of the bundle folder `source`.
pub fn edited_copy_of(
    source: &Path,
    edit: impl Fn(String) -> String,
) -> (tempfile::TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    // Every file of the bundle (the model, a tokenizer, sample images), as bytes, not with their
    // mode: tests change the copy, and the source may be read-only (the Nix store, and
    // scripts/rehearse-sandbox), which fs::copy would carry over.
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap();
            std::fs::write(folder.path().join(name), std::fs::read(&path).unwrap()).unwrap();
        }
    }
    let text = std::fs::read_to_string(source.join("predictor.toml")).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change something");
    std::fs::write(folder.path().join("predictor.toml"), edited).unwrap();
    let path = folder.path().to_path_buf();
    (folder, path)
}

/// `predictor ARGS...`, run to completion.
pub fn predictor(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

/// How long a test waits for a state it polls for: generous, as it is only spent on failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The value of the metrics sample `series` (name and labels, as exposed), if present.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// A `predictor serve` process, killed when dropped.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    pub grpc_address: SocketAddr,
    pub metrics_address: SocketAddr,
    pub client: reqwest::Client,
    /// Every line the server wrote to stderr (JSON log events), as it writes them.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(bundles: &[&Path]) -> Server {
        Server::start_with(bundles, &[])
    }

    /// Starts the server on port 0 and waits for its "listening" log line, which names the ports.
    pub fn start_with(bundles: &[&Path], flags: &[&str]) -> Server {
        Server::start_under(&[], bundles, flags)
    }

    /// Like [`Server::start_with`], the binary run by `wrapper` (e.g. `taskset -c 0`).
    pub fn start_under(wrapper: &[&str], bundles: &[&Path], flags: &[&str]) -> Server {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        // On a single port the gRPC and metrics ports are refused: only the one is given.
        let ports: &[&str] = if flags.contains(&"--single-port") {
            &["--port", "0"]
        } else {
            &["--port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        };
        let mut child = command
            .args(["serve", "--log-format", "json"])
            .args(ports)
            .args(flags)
            .args(bundles)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = mpsc::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                let mut found = Some(found);
                for line in stderr.lines() {
                    let Ok(line) = line else { break };
                    let event = serde_json::from_str::<serde_json::Value>(&line).ok();
                    log.lock().unwrap().push(line);
                    if let Some(event) = event.filter(|e| e["message"] == "listening") {
                        if let Some(found) = found.take() {
                            let _ = found.send(Ok(event));
                        }
                    }
                }
                if let Some(found) = found {
                    let _ = found.send(Err(log.lock().unwrap().join("\n")));
                }
            }
        });
        let event = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(event)) => event,
            Ok(Err(log)) => panic!("the server exited before listening:\n{log}"),
            Err(_) => panic!("the server did not listen within 30 s"),
        };
        let address = |field: &str| event[field].as_str().unwrap().parse().unwrap();
        Server {
            child,
            address: address("address"),
            grpc_address: address("grpc_address"),
            metrics_address: address("metrics_address"),
            client: reqwest::Client::new(),
            log,
        }
    }

    /// The JSON log events written so far.
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The metrics text, as Prometheus scrapes it.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_address);
        let response = self.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The metrics text, scraped without an async runtime (HTTP/1.0: no chunked encoding).
    pub fn metrics_blocking(&self) -> String {
        let mut stream = TcpStream::connect(self.metrics_address).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    }

    /// Polls the metrics until the sample `series` (name and labels, as exposed) satisfies
    /// `reached`, and returns its value: a test waits for the state it needs, not for a fixed
    /// time, which a loaded machine (a Nix builder running the tests in parallel) may exceed.
    /// Panics with the last scrape after [`PATIENCE`]. Blocking: async tests call it in
    /// `tokio::task::block_in_place`.
    pub fn wait_for_metric(&self, series: &str, reached: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let metrics = self.metrics_blocking();
            match metric_value(&metrics, series) {
                Some(value) if reached(value) => return value,
                _ if Instant::now() > deadline => {
                    panic!(
                        "{series} did not reach the awaited value within {PATIENCE:?}:\n{metrics}"
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The server's resident memory now, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        Self::read(response).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        Self::read(response).await
    }

    /// Posts raw bytes with the given content type (None: no content type at all).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn read(response: reqwest::Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, body)
    }
}

impl Server {
    /// Sends `signal` (e.g. "TERM") to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The server's exit status, once it exits within `timeout` (None if it does not).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[sample]` of a bundle's predictor.toml, as JSON.
pub fn sample(bundle: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(bundle.join("predictor.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    serde_json::to_value(&config["sample"]).unwrap()
}

/// Asserts two nested arrays of numbers are equal within `tolerance`, element by element.
pub fn assert_close(actual: &serde_json::Value, expected: &serde_json::Value, tolerance: f64) {
    match (actual, expected) {
        (serde_json::Value::Array(a), serde_json::Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "lengths differ: {actual} vs {expected}");
            a.iter()
                .zip(e)
                .for_each(|(a, e)| assert_close(a, e, tolerance));
        }
        (a, e) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                (a - e).abs() <= tolerance,
                "{a} differs from {e} by more than {tolerance}"
            );
        }
    }
}

/// One iris row, as the protocol tests send it.
pub const IRIS_ROW: [f32; 4] = [5.1, 3.5, 1.4, 0.2];

/// A v2 JSON inference body of [`IRIS_ROW`].
pub fn iris_infer_json() -> serde_json::Value {
    serde_json::json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]})
}

/// A gRPC ModelInfer request of [`IRIS_ROW`] for iris-svc, as raw contents.
pub fn iris_infer_request() -> predictor::transport::grpc::proto::ModelInferRequest {
    use predictor::transport::grpc::proto::{
        model_infer_request::InferInputTensor, ModelInferRequest,
    };
    ModelInferRequest {
        model_name: "iris-svc".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![IRIS_ROW.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    }
}

/// A gRPC message framed as on the wire (a flag byte, a 4-byte big-endian length).
pub fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    grpc_frame_of(&message.encode_to_vec())
}

/// Encoded message bytes (valid or not) framed as on the wire.
pub fn grpc_frame_of(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// A ready HTTP/2 client (prior knowledge, no TLS) on a new connection to `address`; the
/// connection is driven by a task of its own.
pub async fn h2_connect(address: SocketAddr) -> h2::client::SendRequest<axum::body::Bytes> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// One unary gRPC call of `method` over a new HTTP/2 connection to `address`: its grpc-status
/// and the answer's message bytes (without the frame header).
pub async fn grpc_call(
    address: SocketAddr,
    method: &str,
    message: axum::body::Bytes,
    authorization: Option<&str>,
) -> (String, Vec<u8>) {
    let mut client = h2_connect(address).await;
    let mut request = axum::http::Request::post(format!(
        "http://{address}/inference.GRPCInferenceService/{method}"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let (answer, mut body) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    body.send_data(message, true).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .unwrap()
        .unwrap();
    if let Some(status) = answer.headers().get("grpc-status") {
        return (status.to_str().unwrap().to_string(), Vec::new());
    }
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(data) = body.data().await {
        bytes.extend_from_slice(&data.unwrap());
    }
    let trailers = body.trailers().await.unwrap().unwrap();
    let status = trailers["grpc-status"].to_str().unwrap().to_string();
    (status, bytes.get(5..).unwrap_or_default().to_vec())
}

/// The resident memory of process `pid` now, from /proc (0 once it has exited).
pub fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib * 1024
}
