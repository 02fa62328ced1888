//! Listening sockets handed over by systemd (socket activation), with sd_listen_fds' protocol and
//! without libsystemd: `LISTEN_PID` is this process, `LISTEN_FDS` says how many descriptors follow
//! standard error (3, 4, ...), and `LISTEN_FDNAMES` names them, `:`-separated (a socket unit's
//! `FileDescriptorName=`). The sockets outlive the process: while one instance drains and the next
//! loads, connections wait in the kernel's backlog instead of being refused.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first descriptor passed (after standard input, output and error).
const FIRST_PASSED: RawFd = 3;

/// What the service manager passed, as the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The descriptors' names, in descriptor order ("unknown" where none was given, as systemd
    /// says it).
    pub names: Vec<String>,
}

/// The descriptors passed to this process, if any: None when `LISTEN_PID` is unset or names
/// another process (a variable inherited from a parent that was activated, not this process).
pub fn passed_to_this_process() -> Result<Option<Passed>, String> {
    let variable = |name| std::env::var(name).ok();
    passed(
        variable("LISTEN_PID").as_deref(),
        variable("LISTEN_FDS").as_deref(),
        variable("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )
}

/// [`passed_to_this_process`] of the variables given.
fn passed(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    this_process: u32,
) -> Result<Option<Passed>, String> {
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>() != Ok(this_process) {
        return Ok(None);
    }
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS is {count:?}, not a number of descriptors"))?;
    let names: Vec<String> = match names {
        Some(names) => names.split(':').map(str::to_string).collect(),
        None => vec!["unknown".to_string(); count],
    };
    if names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES names {} descriptors ({}) but LISTEN_FDS says {count}",
            names.len(),
            names.join(":")
        ));
    }
    Ok(Some(Passed { names }))
}

/// Which passed socket serves which listener.
#[derive(Debug, PartialEq, Eq)]
pub enum Assignment {
    /// HTTP, gRPC and metrics: the descriptors named `http`, `grpc` and `metrics`.
    Separate {
        http: RawFd,
        grpc: RawFd,
        metrics: RawFd,
    },
    /// The one socket of `--single-port`, whatever its name.
    Single(RawFd),
}

/// The names of the listeners on separate ports, as the sockets must be named.
const NAMES: [&str; 3] = ["http", "grpc", "metrics"];

impl Passed {
    /// Which descriptor each listener takes: on separate ports, exactly one named for each of
    /// [`NAMES`]; on a single port, exactly one.
    pub fn assign(&self, single_port: bool) -> Result<Assignment, String> {
        let descriptor = |index: usize| FIRST_PASSED + index as RawFd;
        if single_port {
            return match self.names.as_slice() {
                [_] => Ok(Assignment::Single(descriptor(0))),
                names => Err(format!(
                    "--single-port takes one socket from systemd, but {} were passed ({})",
                    names.len(),
                    names.join(":")
                )),
            };
        }
        let mut by_name: HashMap<&str, RawFd> = HashMap::new();
        for (index, name) in self.names.iter().enumerate() {
            if !NAMES.contains(&name.as_str()) || by_name.insert(name, descriptor(index)).is_some()
            {
                return Err(self.misnamed());
            }
        }
        match (
            by_name.get("http"),
            by_name.get("grpc"),
            by_name.get("metrics"),
        ) {
            (Some(&http), Some(&grpc), Some(&metrics)) => Ok(Assignment::Separate {
                http,
                grpc,
                metrics,
            }),
            _ => Err(self.misnamed()),
        }
    }

    fn misnamed(&self) -> String {
        format!(
            "systemd passed sockets named {:?}; the server takes three, one named each of http, \
             grpc and metrics (FileDescriptorName=), or one with --single-port",
            self.names
        )
    }
}

/// Takes the passed descriptor `fd` as a TCP listener, once it is known to be a listening stream
/// socket of IPv4 or IPv6; it is then closed on exec, and non-blocking, as the reactor needs.
pub fn listener(fd: RawFd) -> Result<TcpListener, String> {
    let option = |level, name| socket_option(fd, level, name);
    let refused = |why: &str| format!("the socket systemd passed as descriptor {fd} {why}");
    let domain = option(libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(|error| refused(&format!("cannot be read as a socket: {error}")))?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(refused(
            "is not an IPv4 or IPv6 socket (ListenStream= takes a port or address:port)",
        ));
    }
    let listening = option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).map_err(|e| refused(&e))?;
    let kind = option(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| refused(&e))?;
    if kind != libc::SOCK_STREAM || listening != 1 {
        return Err(refused(
            "is not a listening stream socket (ListenStream=, Accept=no)",
        ));
    }
    close_on_exec(fd).map_err(|e| refused(&e))?;
    let listener = TcpListener::from(take(fd));
    listener
        .set_nonblocking(true)
        .map_err(|error| refused(&format!("cannot be made non-blocking: {error}")))?;
    Ok(listener)
}

/// Owns `fd` from now on.
#[allow(unsafe_code)] // Taking a passed descriptor: see the SAFETY comment.
fn take(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is one the service manager passed to this process (LISTEN_PID is this
    // process), open since exec, checked to be a listening socket, and taken once: `assign` gives
    // each descriptor to one listener.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// One integer socket option of `fd`.
#[allow(unsafe_code)] // getsockopt into a local integer: see the SAFETY comment.
fn socket_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<libc::c_int, String> {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `length` bytes into `value`, which lives for the call; a
    // descriptor that is not an open socket is an error returned, not undefined behaviour.
    let result = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of_mut!(value).cast(),
            &mut length,
        )
    };
    if result == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Sets FD_CLOEXEC on `fd` (a passed descriptor is inherited open).
#[allow(unsafe_code)] // fcntl on a descriptor: see the SAFETY comment.
fn close_on_exec(fd: RawFd) -> Result<(), String> {
    // SAFETY: F_SETFD with FD_CLOEXEC changes only the descriptor's flag; a bad descriptor is
    // an error returned.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_passed_only_to_the_process_named() {
        assert_eq!(passed(None, Some("3"), None, 7), Ok(None));
        assert_eq!(passed(Some("8"), Some("3"), None, 7), Ok(None));
        assert_eq!(
            passed(Some("7"), Some("2"), None, 7),
            Ok(Some(Passed {
                names: vec!["unknown".into(), "unknown".into()]
            }))
        );
        assert!(passed(Some("7"), Some("two"), None, 7).is_err());
        let miscounted = passed(Some("7"), Some("2"), Some("http:grpc:metrics"), 7).unwrap_err();
        assert!(miscounted.contains("LISTEN_FDS says 2"), "{miscounted}");
    }

    #[test]
    fn separate_ports_take_one_socket_named_for_each_listener() {
        let passed = |names: &str| Passed {
            names: names.split(':').map(str::to_string).collect(),
        };
        assert_eq!(
            passed("metrics:http:grpc").assign(false),
            Ok(Assignment::Separate {
                http: 4,
                grpc: 5,
                metrics: 3
            })
        );
        for wrong in [
            "http:grpc",
            "http:grpc:metrics:http",
            "http:grpc:admin",
            "unknown",
        ] {
            let refusal = passed(wrong).assign(false).unwrap_err();
            assert!(
                refusal.contains("one named each of http"),
                "{wrong}: {refusal}"
            );
        }
        assert_eq!(passed("web").assign(true), Ok(Assignment::Single(3)));
        let refusal = passed("http:grpc").assign(true).unwrap_err();
        assert!(
            refusal.contains("--single-port takes one socket"),
            "{refusal}"
        );
    }

    #[test]
    fn only_a_listening_tcp_socket_is_taken() {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile().unwrap();
        let refusal = listener(file.as_raw_fd()).unwrap_err();
        assert!(refusal.contains("cannot be read as a socket"), "{refusal}");
        let unix = std::os::unix::net::UnixListener::bind(
            tempfile::tempdir().unwrap().path().join("socket"),
        )
        .unwrap();
        let refusal = listener(unix.as_raw_fd()).unwrap_err();
        assert!(refusal.contains("not an IPv4 or IPv6"), "{refusal}");
        let unconnected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let refusal = listener(unconnected.as_raw_fd()).unwrap_err();
        assert!(
            refusal.contains("not a listening stream socket"),
            "{refusal}"
        );

        use std::os::fd::IntoRawFd;
        let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = passed.local_addr().unwrap();
        let taken = listener(passed.into_raw_fd()).unwrap();
        std::net::TcpStream::connect(address).unwrap();
        let accepted = loop {
            match taken.accept() {
                Ok(accepted) => break accepted,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(error) => panic!("{error}"),
            }
        };
        assert_eq!(accepted.1.ip(), address.ip());
    }
}
