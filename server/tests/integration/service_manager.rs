//! Under systemd. What the server tells a service manager (`NOTIFY_SOCKET`, as systemd sets it for a
//! unit of `Type=notify`: READY, STOPPING, the watchdog's pings, more time while models load), read
//! from a socket as systemd reads it. And the listening sockets a socket unit passes (socket
//! activation), run as systemd runs them with its own tool, `systemd-socket-activate`: it listens
//! and, once a first connection comes (as a socket unit starts its service), executes the server
//! with the sockets as descriptors 3, 4, 5 and `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` set.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{bundle, fixture, Server};

/// The notify socket of a service manager, as systemd's: it reads each datagram the server sends.
struct ServiceManager {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    _folder: tempfile::TempDir,
}

impl ServiceManager {
    fn listen() -> Self {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        ServiceManager {
            socket,
            path,
            _folder: folder,
        }
    }

    /// `NOTIFY_SOCKET=...`, for `env`.
    fn setting(&self) -> String {
        format!("NOTIFY_SOCKET={}", self.path.display())
    }

    /// The next message within `wait`, if one comes.
    fn next_within(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut said = [0u8; 1024];
        let length = self.socket.recv(&mut said).ok()?;
        Some(String::from_utf8(said[..length].to_vec()).unwrap())
    }

    /// The next message that is not `EXTEND_TIMEOUT_USEC` (a start given more time), within 60 s.
    fn next_but_extensions(&self) -> String {
        loop {
            let said = self
                .next_within(Duration::from_secs(60))
                .expect("a message within 60 s");
            if !said.starts_with("EXTEND_TIMEOUT_USEC=") {
                return said;
            }
        }
    }
}

/// Under a service manager, the server asks for more time while its models load, says
/// `READY=1` once it listens with every model loaded and checked, and a request sent then is
/// answered; `STOPPING=1` when SIGTERM begins the drain; and it exits 0.
#[test]
fn a_service_manager_is_told_ready_then_stopping() {
    let manager = ServiceManager::listen();
    let mut server = Server::start_under(&["env", &manager.setting()], &[&bundle("iris-svc")], &[]);
    let first = manager.next_within(Duration::from_secs(60)).unwrap();
    assert!(
        first.starts_with("EXTEND_TIMEOUT_USEC=15000000\nSTATUS=loading 1 models"),
        "{first}"
    );
    assert_eq!(
        manager.next_but_extensions(),
        "READY=1\nSTATUS=serving 1 models"
    );
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    server.signal("TERM");
    let stopping = manager.next_but_extensions();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    let status = server.wait_for_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

/// With a watchdog (`WATCHDOG_USEC`, as `WatchdogSec=` sets it), the server says `WATCHDOG=1`
/// within each period while its model answers. Once a run has lasted longer than the request
/// timeout and a period (a Loop of 10^12 turns: days), the pings stop, with a status line and an
/// error saying why: systemd then restarts the server.
#[test]
fn the_watchdog_hears_from_the_server_only_while_its_model_answers() {
    let manager = ServiceManager::listen();
    let period = "WATCHDOG_USEC=1000000";
    let server = Server::start_under(
        &["env", &manager.setting(), period],
        &[&fixture("long-loop")],
        &["--request-timeout-seconds", "1"],
    );
    assert!(manager.next_but_extensions().starts_with("READY=1\n"));
    for _ in 0..3 {
        let said = manager.next_within(Duration::from_secs(60)).unwrap();
        assert_eq!(
            said,
            "WATCHDOG=1\nSTATUS=serving 1 models, 0 requests in flight"
        );
    }
    // Answered 503 once the request timeout passes; the run goes on.
    let body = r#"{"inputs": [{"name": "turns", "datatype": "INT64", "shape": [1, 1], "data": [1000000000000]}]}"#;
    let mut stream = TcpStream::connect(server.address).unwrap();
    write!(
        stream,
        "POST /v2/models/long-loop/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let why = loop {
        let said = manager
            .next_within(Duration::from_secs(60))
            .expect("a message within 60 s");
        if let Some(why) = said.strip_prefix("STATUS=not answering: ") {
            break why.to_string();
        }
        assert!(said.starts_with("WATCHDOG=1\n"), "{said}");
        assert!(Instant::now() < deadline, "still pinging after 60 s");
    };
    assert!(
        why.starts_with("a run of model 'long-loop' has lasted"),
        "{why}"
    );
    // Three periods more: no ping comes.
    assert_eq!(manager.next_within(Duration::from_secs(3)), None);
    assert!(server.log_events().iter().any(|event| {
        event["level"] == "ERROR"
            && event["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("not answering")
    }));
}

/// Ports free on the loopback now (each bound, then let go for the activator to bind).
fn free_ports(count: usize) -> Vec<u16> {
    let held: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// `systemd-socket-activate` listening on `ports` of the loopback, the sockets named `names`
/// (`:`-separated, in the same order), as a wrapper of the server. It passes the server no
/// environment but the variables named with -E.
fn activator(ports: &[u16], names: &str) -> Vec<String> {
    let mut wrapper = vec!["systemd-socket-activate".to_string()];
    for port in ports {
        wrapper.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
    }
    wrapper.push(format!("--fdname={names}"));
    wrapper.extend(["--setenv".to_string(), "PREDICTOR_ONNXRUNTIME".to_string()]);
    wrapper
}

/// The first caller, which makes the activator start the server: it connects to `port` as soon
/// as the activator listens, and its request waits in the socket's backlog while the server loads.
/// Gives back the answer's status line.
fn first_caller(port: u16) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => return format!("cannot connect: {error}"),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let request = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if let Err(error) = stream.write_all(request) {
            return format!("cannot send: {error}");
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_string()
    })
}

/// The server under the activator, started by a first caller on `first_port`, which it answers.
fn start_activated(wrapper: &[String], first_port: u16, flags: &[&str]) -> Server {
    let first = first_caller(first_port);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let server = Server::start_under(&wrapper, &[&bundle("iris-svc")], flags);
    assert_eq!(first.join().unwrap(), "HTTP/1.1 200 OK");
    server
}

async fn infer_over_http(server: &Server) -> u16 {
    let (status, _) = server
        .post_json("/v2/models/iris-svc/infer", &common::iris_infer_json())
        .await;
    status
}

async fn infer_over_grpc(address: std::net::SocketAddr) -> String {
    let message = common::grpc_frame(&common::iris_infer_request()).into();
    common::grpc_call(address, "ModelInfer", message, None)
        .await
        .0
}

/// Each passed socket serves the listener its name says, whatever their order, and the server
/// binds none of its own (the port flags, 0 here, are not used); the connection that came before
/// the server was started is answered.
#[tokio::test(flavor = "multi_thread")]
async fn each_socket_systemd_passes_serves_the_listener_it_is_named_for() {
    let [metrics, http, grpc] = free_ports(3)[..] else {
        unreachable!()
    };
    let wrapper = activator(&[metrics, http, grpc], "metrics:http:grpc");
    let server = start_activated(&wrapper, http, &[]);
    assert_eq!(server.address.port(), http);
    assert_eq!(server.grpc_address.port(), grpc);
    assert_eq!(server.metrics_address.port(), metrics);
    assert_eq!(infer_over_http(&server).await, 200);
    assert_eq!(infer_over_grpc(server.grpc_address).await, "0");
    assert!(server.metrics().await.contains("predictor_requests_total{"));
    let taken: Vec<Value> = server
        .log_events()
        .into_iter()
        .filter(|event| {
            event["message"]
                .as_str()
                .unwrap_or("")
                .contains("systemd passed")
        })
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
}

/// With `--single-port`, the one socket passed serves HTTP, gRPC and the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn single_port_takes_the_one_socket_passed() {
    let ports = free_ports(1);
    let server = start_activated(&activator(&ports, "web"), ports[0], &["--single-port"]);
    assert_eq!(server.address.port(), ports[0]);
    assert_eq!(infer_over_http(&server).await, 200);
    assert_eq!(infer_over_grpc(server.address).await, "0");
}

/// Sockets that do not name the three listeners are refused at start, before any model loads,
/// saying what is expected.
#[test]
fn sockets_not_named_for_the_listeners_are_refused() {
    for (names, flags) in [
        ("http:grpc:admin", &[][..]),
        ("http:grpc", &["--single-port"][..]),
    ] {
        let ports = free_ports(names.split(':').count());
        let mut child = Command::new("systemd-socket-activate")
            .args(&activator(&ports, names)[1..])
            .arg(common::BINARY)
            .args(["serve", "--log-format", "json"])
            .args(flags)
            .arg(bundle("iris-svc"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first = first_caller(ports[0]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{names}: still running after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        assert_eq!(status.code(), Some(1), "{names}: {log}");
        let expected = if flags.is_empty() {
            "one named each of http, grpc and metrics"
        } else {
            "--single-port takes one socket from systemd, but 2 were passed"
        };
        assert!(log.contains(expected), "{names}: {log}");
        assert!(
            !log.contains("model ready"),
            "{names}: refused only after loading: {log}"
        );
        // Its connection is closed unanswered with the sockets.
        assert_eq!(first.join().unwrap(), "");
    }
}
