//! Shutdown on SIGTERM or SIGINT: the server stops accepting, lets requests in flight finish, and
//! exits 0; a stalled client cannot hold it past the drain timeout, and a second signal stops it
//! at once.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{bundle, Server};

/// Signalled as soon as it says "listening", as a supervisor may: a few times each, since a
/// signal that came before the handlers were installed killed the process (exit status by signal).
#[test]
fn an_idle_server_exits_0_on_sigterm_and_on_sigint() {
    for signal in ["TERM", "INT"].repeat(4) {
        let mut server = Server::start(&[&bundle("iris-svc")]);
        server.signal(signal);
        let status = server.wait_for_exit(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "SIG{signal}");
    }
}

/// A request whose body never completes: the server waits for the rest of it. Returns once the
/// server has taken it in (it is in flight).
fn stalled_upload(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .write_all(
            b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    server.wait_for_metric("predictor_requests_in_flight{protocol=\"http\"}", |n| {
        n == 1.0
    });
    stream
}

#[test]
fn a_stalled_upload_cannot_hold_shutdown_past_the_drain_timeout() {
    let mut server = Server::start_with(&[&bundle("iris-svc")], &["--drain-timeout-seconds", "1"]);
    let _stream = stalled_upload(&server);
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stopped after {took:?}, before the timeout"
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut server = Server::start(&[&bundle("iris-svc")]);
    let _stream = stalled_upload(&server);
    server.signal("TERM");
    assert_eq!(
        server.wait_for_exit(Duration::from_millis(500)),
        None,
        "the first signal waits for the request in flight"
    );
    server.signal("TERM");
    let status = server.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
}

/// Callers keep sending while the server gets SIGTERM: every request the server took in is
/// answered 200 (its access log and the callers' count agree); the others never got in (their
/// connection was refused or closed before the server read them); then the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_sigterm_loses_no_admitted_request() {
    // Requests wait 1 s for company, so that every caller has one in flight when the signal comes.
    let (_folder, slow) = common::edited_copy(|text| {
        text.replace(
            "[runtime]\nthreads = 1",
            "[runtime]\nthreads = 1\nmax_batch_size = 64\nmax_queue_delay_ms = 1000",
        )
    });
    let mut server = Server::start(&[&slow]);
    let url = server.url("/predict");
    let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (url, stop_sending, answers) = (url.clone(), stop_sending.clone(), answers.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut answered, mut not_admitted) = (0, 0);
                while !stop_sending.load(std::sync::atomic::Ordering::SeqCst) {
                    let body = serde_json::json!({"data": [[5.1, 3.5, 1.4, 0.2]]});
                    match client.post(&url).json(&body).send().await {
                        Ok(response) => {
                            assert_eq!(response.status(), 200, "an admitted request failed");
                            answered += 1;
                            answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // Refused, or closed unread: the server never took it in.
                        Err(_) => {
                            not_admitted += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (answered, not_admitted)
            })
        })
        .collect();
    // The scrape itself is on the metrics listener: these are callers' requests. Waited for
    // (at least 4 in flight at the signal), as a loaded machine may start the callers late.
    let in_flight = tokio::task::block_in_place(|| {
        server.wait_for_metric("predictor_requests_in_flight{protocol=\"http\"}", |n| {
            n >= 4.0
        })
    });
    let answered_before_the_signal = answers.load(std::sync::atomic::Ordering::SeqCst);
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait_for_exit(Duration::from_secs(10)));
    stop_sending.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut answered, mut not_admitted) = (0, 0);
    for caller in callers {
        let (a, n) = caller.await.expect("every answer was a 200");
        answered += a;
        not_admitted += n;
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let access_lines: Vec<String> = server
        .log_events()
        .into_iter()
        .filter(|event| event["message"] == "request" && event["span"]["endpoint"] == "/predict")
        .map(|event| event["status"].as_str().unwrap_or_default().to_string())
        .collect();
    let answered_while_draining = answered - answered_before_the_signal;
    eprintln!("{answered} answered ({answered_while_draining} while draining), {not_admitted} not taken in, {in_flight} in flight at the signal");
    assert!(
        answered_while_draining as f64 >= in_flight,
        "{in_flight} requests were in flight at the signal, {answered_while_draining} answered after it"
    );
    assert!(
        not_admitted >= 16,
        "the callers went on after the server stopped"
    );
    assert_eq!(
        access_lines.len(),
        answered,
        "requests the server took in ({}) vs answered to callers ({answered}): {access_lines:?}",
        access_lines.len()
    );
    assert!(
        access_lines.iter().all(|status| status == "200"),
        "{access_lines:?}"
    );
}

/// Sends a kept-alive HTTP/1.1 request for the server's readiness on `stream`; gives back the
/// answer's head, lower-cased, once its body is read too.
fn ask_ready(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before the head");
        read.push(byte[0]);
    }
    let head = String::from_utf8(read).unwrap().to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |length| length.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head
}

/// While the server drains, kept-alive connections close without racing their callers: an
/// HTTP/1.1 caller that sends its next request, and one that connected before the signal and
/// sends its first after it, are answered with `Connection: close`, then the connection closes;
/// an HTTP/2 connection gets GOAWAY and closes cleanly. Then the server exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn draining_closes_kept_alive_connections_once_their_callers_are_answered() {
    let mut server = Server::start(&[&bundle("iris-svc")]);
    let tcp = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (mut http2, http2_connection) = h2::client::handshake(tcp).await.unwrap();
    let http2_connection = tokio::spawn(http2_connection);
    let request = axum::http::Request::get(format!("http://{}/v2/health/live", server.address))
        .body(())
        .unwrap();
    let (answer, _) = http2.send_request(request, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 200);

    let mut kept = TcpStream::connect(server.address).unwrap();
    let head = ask_ready(&mut kept);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // Accepted by the server before the signal (a connection still in the backlog then would be
    // refused with the listener): seen as one more socket among its descriptors.
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let before = sockets();
    let mut fresh = TcpStream::connect(server.address).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sockets() <= before {
        assert!(
            Instant::now() < deadline,
            "the fresh connection was never accepted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log_events().iter().any(|event| {
        event["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("shutting down")
    }) {
        assert!(Instant::now() < deadline, "no drain within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (which, stream) in [("kept", &mut kept), ("fresh", &mut fresh)] {
        let head = ask_ready(stream);
        assert!(head.starts_with("http/1.1 200"), "{which}: {head}");
        assert!(head.contains("connection: close"), "{which}: {head}");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(
            stream.read(&mut [0u8; 1]).unwrap(),
            0,
            "{which}: not closed"
        );
    }
    let closed = tokio::time::timeout(Duration::from_secs(30), http2_connection)
        .await
        .expect("the HTTP/2 connection closed within 30 s")
        .unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    let status = tokio::task::block_in_place(|| server.wait_for_exit(Duration::from_secs(30)));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}
