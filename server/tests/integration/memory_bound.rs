//! Every attack of hostile.rs at once, for 60 s, beside a steady load, against a server in a
//! memory cgroup (v1) limited to the memory bound it logs for its flags (`ops::memory_bound`,
//! docs/operations.md's formula) over what it held at start: the server is never killed, every ordinary request (HTTP/1 and gRPC) is answered within 5 s, and its RSS stays
//! under the bound. Without a writable memory cgroup (the Nix build sandbox) the cgroup is left
//! out, unless `PREDICTOR_REQUIRE_MEMORY_CGROUP` is set (scripts/test as root sets it): the RSS is
//! checked either way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::common::{self, bundle, Server};
use crate::hostile::{
    grpc_frame, grpc_request, iris_json, rows_4096_body, tiny_entry_bodies, unread_answers_of,
};

const SOAK: Duration = Duration::from_secs(60);

/// The server's flags: small bounds, short timeouts.
const FLAGS: &[&str] = &[
    "--max-body-bytes",
    "1048576",
    "--max-upload-bytes",
    "33554432",
    "--max-concurrent-requests",
    "16",
    "--max-queued-requests",
    "16",
    "--max-concurrent-streams",
    "8",
    "--max-connections",
    "48",
    "--header-read-timeout-seconds",
    "2",
    "--idle-timeout-seconds",
    "3",
    "--send-timeout-seconds",
    "2",
    "--body-read-timeout-seconds",
    "2",
    // A ping every 5 s: the ordinary callers' connections must answer within that, which a
    // test process this busy cannot promise within 1 s.
    "--http2-keepalive-seconds",
    "5",
];
/// The open-file limit it runs under; its overflow places are then min(64, 256 / 8).
const OPEN_FILES: &str = "--nofile=256:256";

/// The memory bound the server logs at start for its flags (`ops::memory_bound`, the formula of
/// docs/operations.md), in bytes.
fn logged_bound(server: &Server) -> u64 {
    let event = server
        .log_events()
        .into_iter()
        .find(|event| event["memory_bound_mib"].is_u64())
        .expect("the server logs its memory bound at start");
    event["memory_bound_mib"].as_u64().unwrap() << 20
}

/// A memory cgroup (v1) of its own for the server.
struct MemoryCgroup(PathBuf);

impl MemoryCgroup {
    fn create() -> Option<MemoryCgroup> {
        let path = PathBuf::from(format!(
            "/sys/fs/cgroup/memory/predictor-memory-bound-{}",
            std::process::id()
        ));
        std::fs::create_dir(&path).ok()?;
        Some(MemoryCgroup(path))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.join(file)).unwrap()
    }

    fn usage(&self) -> u64 {
        self.read("memory.usage_in_bytes").trim().parse().unwrap()
    }

    fn limit_to(&self, bytes: u64) {
        std::fs::write(self.0.join("memory.limit_in_bytes"), bytes.to_string()).unwrap();
    }

    /// Processes the kernel killed for the cgroup's limit.
    fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control")
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .map_or(0, |count| count.trim().parse().unwrap())
    }

    /// The wrapper that starts a command inside the cgroup.
    fn wrapper(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            r#"echo $$ > "$0/cgroup.procs" && exec "$@""#.into(),
            self.0.display().to_string(),
        ]
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Once its processes have gone (the server is killed before this runs).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What went wrong for the ordinary callers.
type Failures = Arc<Mutex<Vec<String>>>;

/// How often each attack got the answer the documentation gives it: each must have, for the soak
/// to have tried it.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<std::collections::BTreeMap<&'static str, usize>>>);

impl Outcomes {
    fn saw(&self, attack: &'static str) {
        *self.0.lock().unwrap().entry(attack).or_default() += 1;
    }
}

const ATTACKS: [&str; 8] = [
    "ping-only connections closed",
    "stream messages ended DEADLINE_EXCEEDED",
    "empty inputs refused INVALID_ARGUMENT",
    "unread answers' connections closed",
    "JSON bodies of tiny entries refused 400",
    "gzip bombs refused 413",
    "slow uploads answered 408",
    "declared lengths refused 413",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_at_once_beside_a_steady_load_stays_under_the_memory_bound() {
    let cgroup = MemoryCgroup::create();
    if cgroup.is_none() {
        assert!(
            std::env::var_os("PREDICTOR_REQUIRE_MEMORY_CGROUP").is_none(),
            "no memory cgroup could be made under /sys/fs/cgroup/memory"
        );
        eprintln!("no writable memory cgroup: the RSS alone is checked");
    }
    let mut wrapper: Vec<String> = vec!["prlimit".into(), OPEN_FILES.into()];
    wrapper.extend(cgroup.iter().flat_map(MemoryCgroup::wrapper));
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let server = Arc::new(Server::start_under(&wrapper, &[&bundle("iris-svc")], FLAGS));
    let base = server.rss_bytes();
    let bound = logged_bound(&server);
    if let Some(cgroup) = &cgroup {
        cgroup.limit_to(cgroup.usage() + bound);
    }
    let peak = Arc::new(AtomicU64::new(base));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.pid());
        move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(common::rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });

    let until = Instant::now() + SOAK;
    let failures: Failures = Arc::default();
    let seen = Outcomes::default();
    let mut tasks = vec![
        tokio::spawn(ping_only(server.grpc_address, until, seen.clone())),
        tokio::spawn(stream_parts(server.grpc_address, until, seen.clone())),
        tokio::spawn(empty_inputs(server.grpc_address, until, seen.clone())),
        tokio::spawn(unread_answers(server.address, until, seen.clone())),
        tokio::spawn(gzip_bombs(server.clone(), until, seen.clone())),
    ];
    for _ in 0..4 {
        tasks.push(tokio::spawn(tiny_entries(
            server.clone(),
            until,
            seen.clone(),
        )));
    }
    for _ in 0..2 {
        tasks.push(tokio::spawn(api_page_script(server.clone(), until)));
    }
    let ports = [server.address, server.grpc_address, server.metrics_address];
    // The ordinary callers each on a thread and runtime of their own: the attackers' tasks must
    // not keep them from reading their answers (a kept-alive connection idle for a second may
    // be given to a newcomer).
    let on_own_runtime =
        |caller: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(caller)
            })
        };
    let threads = vec![
        on_own_runtime(Box::pin(ordinary_http(
            server.clone(),
            until,
            failures.clone(),
        ))),
        on_own_runtime(Box::pin(ordinary_grpc(
            server.grpc_address,
            until,
            failures.clone(),
        ))),
        std::thread::spawn(move || half_sent_heads(ports, until)),
        std::thread::spawn({
            let (address, seen) = (server.address, seen.clone());
            move || slow_uploads(address, until, seen)
        }),
        std::thread::spawn({
            let (address, seen) = (server.address, seen.clone());
            move || declared_too_large(address, until, seen)
        }),
    ];
    for task in tasks {
        tokio::time::timeout(SOAK + Duration::from_secs(60), task)
            .await
            .expect("a task ended within a minute of the soak's end")
            .unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "ordinary requests failed: {failures:#?}"
    );
    let seen = seen.0.lock().unwrap().clone();
    eprintln!("attacks answered: {seen:?}");
    for attack in ATTACKS {
        assert!(seen.contains_key(attack), "never seen: {attack}: {seen:?}");
    }
    assert!(
        common::rss_of(server.pid()) > 0,
        "the server died: {:?}",
        server.log_events().last()
    );
    if let Some(cgroup) = &cgroup {
        assert_eq!(
            cgroup.oom_kills(),
            0,
            "the kernel killed for the cgroup's limit"
        );
    }
    let grown = peak.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!(
        "every attack at once: RSS grew by {} MiB from {} MiB (bound {} MiB)",
        grown >> 20,
        base >> 20,
        bound >> 20
    );
    assert!(
        grown < bound,
        "RSS grew by {} MiB (from {} MiB), past the bound's {} MiB",
        grown >> 20,
        base >> 20,
        bound >> 20
    );
    drop(server);
    drop(cgroup);
}

/// An ordinary caller over HTTP/1 on one kept-alive connection: every answer 200 within 5 s.
async fn ordinary_http(server: Arc<Server>, until: Instant, failures: Failures) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    let mut last = Instant::now();
    while Instant::now() < until {
        let since_last = last.elapsed();
        let sent = client
            .post(server.url("/v2/models/iris-svc/infer"))
            .json(&iris_json())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status() == 200 => {
                answered += 1;
                last = Instant::now();
            }
            Ok(answer) => {
                let failure = format!(
                    "HTTP: {} {}",
                    answer.status(),
                    answer.text().await.unwrap_or_default()
                );
                failures.lock().unwrap().push(failure);
            }
            Err(error) => failures.lock().unwrap().push(format!(
                "HTTP: {error:?} ({since_last:?} after the last answer)"
            )),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if answered == 0 {
        failures.lock().unwrap().push("HTTP: no answer".into());
    }
}

/// An ordinary gRPC caller on one connection: every ModelInfer OK within 5 s.
async fn ordinary_grpc(address: SocketAddr, until: Instant, failures: Failures) {
    let mut client = common::h2_connect(address).await;
    let mut answered = 0;
    while Instant::now() < until {
        let call = async {
            client = client
                .clone()
                .ready()
                .await
                .map_err(|error| error.to_string())?;
            let (answer, mut body) = client
                .send_request(grpc_request("ModelInfer"), false)
                .map_err(|error| error.to_string())?;
            body.send_data(Bytes::from(grpc_frame()), true)
                .map_err(|error| error.to_string())?;
            call_status(answer).await
        };
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(status)) if status == "0" => answered += 1,
            Ok(Ok(status)) => failures
                .lock()
                .unwrap()
                .push(format!("gRPC: status {status}")),
            Ok(Err(error)) => failures.lock().unwrap().push(format!("gRPC: {error}")),
            Err(_) => failures
                .lock()
                .unwrap()
                .push("gRPC: no answer within 5 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if answered == 0 {
        failures.lock().unwrap().push("gRPC: no answer".into());
    }
}

/// The grpc-status a call ends with (in its head or its trailers), or why it has none: the
/// attackers' connections may be closed under them.
async fn call_status(answer: h2::client::ResponseFuture) -> Result<String, String> {
    let answer = answer.await.map_err(|error| error.to_string())?;
    let status = |value: Option<&axum::http::HeaderValue>| {
        value
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    if let Some(status) = status(answer.headers().get("grpc-status")) {
        return Ok(status);
    }
    let mut body = answer.into_body();
    while let Some(data) = body.data().await {
        data.map_err(|error| error.to_string())?;
    }
    let trailers = body.trailers().await.map_err(|error| error.to_string())?;
    trailers
        .and_then(|trailers| status(trailers.get("grpc-status")))
        .ok_or_else(|| "no grpc-status".to_string())
}

/// Eight HTTP/2 connections that only answer pings, made again as the idle timeout closes them.
async fn ping_only(address: SocketAddr, until: Instant, seen: Outcomes) {
    while Instant::now() < until {
        let mut connections = Vec::new();
        for _ in 0..8 {
            let Ok(tcp) = tokio::net::TcpStream::connect(address).await else {
                continue;
            };
            if let Ok((client, connection)) = h2::client::handshake(tcp).await {
                connections.push((client, tokio::spawn(connection)));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until.min(deadline)
            && !connections.iter().all(|(_, driven)| driven.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if connections.iter().all(|(_, driven)| driven.is_finished()) {
            seen.saw("ping-only connections closed");
        }
    }
}

/// An HTTP/2 connection to `address`, driven, ready for a request; None when the server refused
/// or closed it (an attacker's connection may lose its place).
async fn connected(address: SocketAddr) -> Option<h2::client::SendRequest<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
    let (client, connection) = h2::client::handshake(tcp).await.ok()?;
    tokio::spawn(connection);
    client.ready().await.ok()
}

/// Four ModelStreamInfer messages declaring almost 1 MiB that stop after 512 KiB: each ends at
/// the body timeout; then four more.
async fn stream_parts(address: SocketAddr, until: Instant, seen: Outcomes) {
    while Instant::now() < until {
        let mut ends = Vec::new();
        for _ in 0..4 {
            let Some(mut client) = connected(address).await else {
                continue;
            };
            let Ok((answer, mut body)) =
                client.send_request(grpc_request("ModelStreamInfer"), false)
            else {
                continue;
            };
            let mut part = vec![0u8];
            part.extend_from_slice(&((1u32 << 20) - 64).to_be_bytes());
            part.resize(5 + (512 << 10), 0);
            let _ = body.send_data(Bytes::from(part), false);
            ends.push((client, body, answer));
        }
        for (_client, _body, answer) in ends {
            let ended = tokio::time::timeout(Duration::from_secs(10), call_status(answer)).await;
            if ended.is_ok_and(|status| status.is_ok_and(|code| code == "4")) {
                seen.saw("stream messages ended DEADLINE_EXCEEDED");
            }
        }
    }
}

/// ModelInferRequests of almost 1 MiB of empty `inputs` entries (2 bytes each on the wire).
async fn empty_inputs(address: SocketAddr, until: Instant, seen: Outcomes) {
    let message = [0x2a_u8, 0].repeat((1 << 19) - 32);
    let frame = Bytes::from(common::grpc_frame_of(&message));
    while Instant::now() < until {
        let Some(mut client) = connected(address).await else {
            continue;
        };
        for _ in 0..8 {
            let Ok((answer, mut body)) = client.send_request(grpc_request("ModelInfer"), false)
            else {
                break;
            };
            let _ = body.send_data(frame.clone(), true);
            let ended = tokio::time::timeout(Duration::from_secs(10), call_status(answer)).await;
            if ended.is_ok_and(|status| status.is_ok_and(|code| code == "3")) {
                seen.saw("empty inputs refused INVALID_ARGUMENT");
            }
        }
    }
}

/// Four requests of 4,096 rows on an HTTP/2 connection whose window stays closed: their answers
/// wait until the send timeout closes the connection; then again.
async fn unread_answers(address: SocketAddr, until: Instant, seen: Outcomes) {
    let body = rows_4096_body();
    while Instant::now() < until {
        let Some((_client, answers, driven)) = unread_answers_of(address, &body, 4).await else {
            continue;
        };
        if tokio::time::timeout(Duration::from_secs(20), driven)
            .await
            .is_ok()
        {
            seen.saw("unread answers' connections closed");
        }
        drop(answers);
    }
}

/// v2 bodies of 1 MiB of tiny `parameters` entries, or of empty `inputs` entries, one after
/// another.
async fn tiny_entries(server: Arc<Server>, until: Instant, seen: Outcomes) {
    let attacks = tiny_entry_bodies();
    let mut round = 0;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while Instant::now() < until {
        round += 1;
        let sent = client
            .post(server.url("/v2/models/iris-svc/infer"))
            .header("content-type", "application/json")
            .body(attacks[round % 2].clone())
            .send()
            .await;
        if sent.is_ok_and(|answer| answer.status() == 400) {
            seen.saw("JSON bodies of tiny entries refused 400");
        }
    }
}

/// Gzip bodies of a few kilobytes that inflate to 64 MiB.
async fn gzip_bombs(server: Arc<Server>, until: Instant, seen: Outcomes) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 64 << 20]).unwrap();
    let bomb = Bytes::from(encoder.finish().unwrap());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while Instant::now() < until {
        let sent = client
            .post(server.url("/v2/models/iris-svc/infer"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bomb.clone())
            .send()
            .await;
        if sent.is_ok_and(|answer| answer.status() == 413) {
            seen.saw("gzip bombs refused 413");
        }
    }
}

/// The API page's 1.7 MB script, again and again.
async fn api_page_script(server: Arc<Server>, until: Instant) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while Instant::now() < until {
        if let Ok(answer) = client
            .get(server.url("/docs/swagger-ui-bundle.js"))
            .header("accept-encoding", "gzip")
            .send()
            .await
        {
            let _ = answer.bytes().await;
        }
    }
}

/// 150 connections over the three ports, half sending nothing, half part of a request head or
/// the HTTP/2 preface, all made again each second.
fn half_sent_heads(ports: [SocketAddr; 3], until: Instant) {
    while Instant::now() < until {
        let held: Vec<TcpStream> = (0..150)
            .filter_map(|index| {
                let address = ports[index % 3];
                let mut stream =
                    TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
                if index % 2 == 0 {
                    let partial: &[u8] = if address == ports[1] {
                        b"PRI * HTTP/2.0\r\n"
                    } else {
                        b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: x\r\nContent-"
                    };
                    let _ = stream.write_all(partial);
                }
                Some(stream)
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
    }
}

/// Eight HTTP/1 uploads that stop after one byte of 1,000, each until its 408; then again.
fn slow_uploads(address: SocketAddr, until: Instant, seen: Outcomes) {
    while Instant::now() < until {
        let senders: Vec<TcpStream> = (0..8)
            .filter_map(|_| {
                let mut stream = TcpStream::connect(address).ok()?;
                stream
                    .write_all(b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                    .ok()?;
                Some(stream)
            })
            .collect();
        for mut sender in senders {
            let _ = sender.set_read_timeout(Some(Duration::from_secs(10)));
            if answered_with(&mut sender, b"HTTP/1.1 408") {
                seen.saw("slow uploads answered 408");
            }
        }
    }
}

/// A declared length past the limit, from a client that waits for the answer before it sends.
fn declared_too_large(address: SocketAddr, until: Instant, seen: Outcomes) {
    while Instant::now() < until {
        let Ok(mut stream) = TcpStream::connect(address) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.write_all(b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n");
        if answered_with(&mut stream, b"HTTP/1.1 413") {
            seen.saw("declared lengths refused 413");
        }
    }
}

/// Whether the first bytes read from `stream` begin with `status_line`.
fn answered_with(stream: &mut TcpStream, status_line: &[u8]) -> bool {
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head == status_line
}
