//! Shutdown on SIGTERM or SIGINT: the server stops accepting, lets requests in flight finish, and
//! exits 0; a stalled client cannot hold it past the drain timeout, and a second signal stops it
//! at once.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{bundle, Server};

#[test]
fn an_idle_server_exits_0_on_sigterm_and_on_sigint() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&[&bundle("iris-svc")]);
        server.signal(signal);
        let status = server.wait_for_exit(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "SIG{signal}");
    }
}

/// A request whose body never completes: the server waits for the rest of it.
fn stalled_upload(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .write_all(
            b"POST /v2/models/iris-svc/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
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
