//! Under systemd: the listening sockets a socket unit passes (socket activation), run as systemd
//! runs them with its own tool, `systemd-socket-activate`: it listens and, once a first connection
//! comes (as a socket unit starts its service), executes the server with the sockets as
//! descriptors 3, 4, 5 and `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` set.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{bundle, Server};

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

/// Sockets that do not name the three listeners are refused at start, saying what is expected.
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
        // Its connection is closed unanswered with the sockets.
        assert_eq!(first.join().unwrap(), "");
    }
}
