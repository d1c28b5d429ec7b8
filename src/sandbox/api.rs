//! The monitor's control socket (`api.sock` in the pod directory): what
//! `peapod stop/rm/exec` and attached `run` ask of a running pod. Frames
//! and JSON as on the guest connection ([`peapod_proto::frame`]); one
//! request opens a connection, `exec` then streams both ways.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;

use peapod_proto::{Connection, Stream, WireContainer};
use serde::{Deserialize, Serialize};

/// How long a one-shot request may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The socket's name in the pod directory.
pub const API_SOCKET: &str = "api.sock";

/// CLI to monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Stop the pod: SIGTERM to its containers, SIGKILL after the grace
    /// period (the pod's own when `None`), then the VM ends.
    Stop { grace_period_s: Option<u64> },
    /// End the pod now: the VM (or namespace init) is killed.
    Kill {},
    /// Start a process in a running container; the connection then carries
    /// `exec_stdin`/`exec_resize` one way and `exec_*` replies the other.
    Exec {
        container: String,
        command: Vec<String>,
        tty: bool,
        stdin: bool,
    },
    /// Input for the exec session of this connection.
    ExecStdin {
        #[serde(with = "peapod_proto::bytes::chunk")]
        data: Vec<u8>,
        eof: bool,
    },
    /// The terminal of a tty exec session changed size.
    ExecResize { rows: u16, cols: u16 },
    /// Add an app container to a running sandbox pod and start it;
    /// answered once peapod-init has started it (or refused it).
    AddContainer {
        container: Box<WireContainer>,
        /// Its image reference, for `ps` and `inspect`.
        image: String,
    },
    /// Remove an ended container from a sandbox pod.
    RemoveContainer { container: String },
    /// Send a signal to one container's process, or to every container's.
    Signal {
        container: Option<String>,
        signal: i32,
    },
}

/// Monitor to CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Done (stop, kill).
    Ok {},
    /// The request cannot be done; `usage`: the caller asked for something
    /// that does not exist or cannot be (exit 2), else a runtime failure.
    Error { message: String, usage: bool },
    /// The exec process runs.
    ExecStarted {},
    /// Exec output.
    ExecOutput {
        stream: Stream,
        #[serde(with = "peapod_proto::bytes::chunk")]
        data: Vec<u8>,
    },
    /// The exec process ended.
    ExecExited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Connect to a pod's monitor. Long pod directories are reached through
/// `/proc/self/fd`, since a socket path must fit in 108 bytes.
pub fn connect(pod_dir: &Path) -> io::Result<Connection<UnixStream>> {
    let path = pod_dir.join(API_SOCKET);
    let stream = if path.as_os_str().len() < 100 {
        UnixStream::connect(&path)?
    } else {
        let dir = std::fs::File::open(pod_dir)?;
        let short = format!(
            "/proc/self/fd/{}/{API_SOCKET}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        );
        UnixStream::connect(short)?
    };
    Ok(Connection::new(stream))
}

/// A second handle on the same connection (to write while another thread
/// reads).
pub fn connect_clone(conn: &Connection<UnixStream>) -> io::Result<Connection<UnixStream>> {
    Ok(Connection::new(conn.get_ref().try_clone()?))
}

/// Send one request and read its one reply.
pub fn call(pod_dir: &Path, req: &Request) -> io::Result<Reply> {
    let mut conn = connect(pod_dir)?;
    // A monitor that does not answer must not hang the CLI.
    conn.get_ref().set_read_timeout(Some(CALL_TIMEOUT))?;
    conn.get_ref().set_write_timeout(Some(CALL_TIMEOUT))?;
    conn.send(req).map_err(io::Error::other)?;
    conn.recv::<Reply>()
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::other("the pod's monitor closed the connection"))
}

/// Why a request that wants `ok` did not get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskError {
    /// What went wrong, naming the pod.
    pub message: String,
    /// The caller asked for something that does not exist or cannot be.
    pub usage: bool,
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AskError {}

/// Ask pod `name` (its directory `pod_dir`) for something its monitor
/// answers with `ok`: stop, kill, add or remove a container.
pub fn ask(pod_dir: &Path, name: &str, req: &Request) -> Result<(), AskError> {
    let runtime = |message: String| AskError {
        message,
        usage: false,
    };
    match call(pod_dir, req) {
        Ok(Reply::Ok {}) => Ok(()),
        Ok(Reply::Error { message, usage }) => Err(AskError { message, usage }),
        Ok(other) => Err(runtime(format!("pod {name}: unexpected reply {other:?}"))),
        Err(e) => Err(runtime(format!(
            "pod {name}: cannot reach its monitor: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_requests_round_trip_and_unknown_fields_fail() {
        let r = Request::ExecStdin {
            data: b"\x00\xffhi".to_vec(),
            eof: true,
        };
        let bytes = peapod_proto::encode(&r).unwrap();
        assert_eq!(peapod_proto::decode::<Request>(&bytes).unwrap(), r);
        assert!(peapod_proto::decode::<Request>(br#"{"type":"kill","x":1}"#).is_err());
        assert!(peapod_proto::decode::<Request>(br#"{"type":"reboot"}"#).is_err());
    }
}
