//! Tells systemd what the server is doing, with sd_notify's protocol and without libsystemd: a
//! datagram of `KEY=value` lines to the Unix socket `$NOTIFY_SOCKET` names (a path, or an abstract
//! socket when it begins with `@`). A unit of `Type=notify` is started once `READY=1` comes, and
//! is stopping once `STOPPING=1` does; `EXTEND_TIMEOUT_USEC` gives a start more time while models
//! load; with `WatchdogSec=`, `WATCHDOG=1` must come within each period or the unit is restarted.
//! Without the variable (not a notify unit: a plain `predictor serve`, the OCI image, a unit of
//! another type) nothing is sent.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sends `state` (e.g. `READY=1`) to the service manager, if one listens; a failure is logged,
/// never fatal.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send(&socket, state) {
        tracing::warn!(%error, state, "cannot tell the service manager ($NOTIFY_SOCKET)");
    }
}

/// The watchdog's period, when the service manager keeps one for this process (`WatchdogSec=`
/// sets `WATCHDOG_USEC`, and `WATCHDOG_PID` when it names a process).
pub fn watchdog_period() -> Option<Duration> {
    let variable = |name| std::env::var(name).ok();
    watchdog_period_of(
        variable("WATCHDOG_USEC").as_deref(),
        variable("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

fn watchdog_period_of(
    usec: Option<&str>,
    pid: Option<&str>,
    this_process: u32,
) -> Option<Duration> {
    if pid.is_some_and(|pid| pid.trim().parse::<u32>() != Ok(this_process)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// How often a start still loading models asks for more time, and how much.
const LOADING_TICK: Duration = Duration::from_secs(5);
const LOADING_EXTENSION: Duration = Duration::from_secs(15);
/// How long loading is given more time at most: a load (or a sample's run) that never ends is
/// then ended by the unit's `TimeoutStartSec=`, about this long after it began.
const MAX_LOADING: Duration = Duration::from_secs(30 * 60);

/// While it lives (the models loading), the service manager is told every few seconds to give the
/// start more time, up to `MAX_LOADING` (30 minutes); nothing without `NOTIFY_SOCKET`.
pub struct Loading {
    /// The ticker and what stops it (dropped: it stops); none without a service manager.
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Loading {
    pub fn begin(models: usize) -> Loading {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Loading { ticker: None };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let started = Instant::now();
        let ticker = std::thread::Builder::new()
            .name("notify-loading".into())
            .spawn(move || loop {
                if started.elapsed() >= MAX_LOADING {
                    tracing::warn!(
                        minutes = MAX_LOADING.as_secs() / 60,
                        "the models are still loading: no more start time asked of the service manager"
                    );
                    break;
                }
                notify(&format!(
                    "EXTEND_TIMEOUT_USEC={}\nSTATUS=loading {models} models ({} s)",
                    LOADING_EXTENSION.as_micros(),
                    started.elapsed().as_secs()
                ));
                if stopped.recv_timeout(LOADING_TICK) != Err(mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            })
            .map_err(|error| tracing::warn!(%error, "cannot start telling systemd the models load"))
            .ok();
        Loading {
            ticker: ticker.map(|ticker| (stop, ticker)),
        }
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        if let Some((stop, ticker)) = self.ticker.take() {
            drop(stop);
            let _ = ticker.join();
        }
    }
}

fn send(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &address)?;
        }
        None => {
            sender.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_this_process_s_when_its_pid_is_unset_or_this_one() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(watchdog_period_of(Some("1000000"), None, 7), second);
        assert_eq!(watchdog_period_of(Some("1000000"), Some("7"), 7), second);
        assert_eq!(watchdog_period_of(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period_of(None, None, 7), None);
        assert_eq!(watchdog_period_of(Some("0"), None, 7), None);
        assert_eq!(watchdog_period_of(Some("soon"), None, 7), None);
    }

    #[test]
    fn a_state_reaches_a_socket_named_by_path_or_abstract_name() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("notify");
        let listening = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let length = listening.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("predictor-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listening = UnixDatagram::bind_addr(&address).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let length = abstract_listening.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"STOPPING=1");
    }
}
