//! `peapod run --isolation=namespace POD.yaml`: the pod without a VM.
//!
//! peapod-init runs on the host as PID 1 of fresh PID, mount, network, IPC
//! and UTS namespaces (its `--native` launcher makes them), and peapod
//! drives it over a Unix socket with the same protocol as a guest: for
//! development and hosts without KVM. The containers share the host's
//! kernel: this is NOT a VM boundary. Namespaces and mounts need root for
//! now.
//!
//! Admission reserves the pod's effective memory (no guest overhead: there
//! is no guest kernel) and CPU request, as `peapod run` does.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use peapod_proto::{Connection, ContainerEvent, GuestMsg, HostMsg, PodPhase, Stream, WirePod};

use super::run::RunArgs;
use super::{image, native_pod, paths, Failure};
use crate::admission::{pod_cpu_request, Capacity, Ledger};

/// What we say when not root.
pub const NEEDS_ROOT: &str =
    "--isolation=namespace needs root for now; use the VM isolation (the default)";

/// How long a launcher may take to exit once the pod's connection closed.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod's runtime directory (holding the socket), removed on drop.
struct PodDir(PathBuf);

impl PodDir {
    fn create(path: PathBuf) -> std::io::Result<PodDir> {
        use std::os::unix::fs::DirBuilderExt;
        // The pod name is reserved in the ledger: a directory left here is a
        // dead run's.
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)?;
        Ok(PodDir(path))
    }
}

impl Drop for PodDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("cannot remove {}: {e}", self.0.display());
        }
    }
}

/// What the signal thread and the main thread share.
struct Shared {
    /// The launcher; killed on drop if it is still running.
    launcher: Mutex<Child>,
    /// Where StopPod goes, once the pod runs.
    writer: Mutex<Option<Connection<UnixStream>>>,
    /// A stop was asked for (signal or deadline).
    stopping: AtomicBool,
    grace_period_s: u64,
}

impl Shared {
    /// Stop the pod: StopPod with the grace period the first time, SIGKILL
    /// to the launcher (which takes the pod's PID namespace down) the next
    /// time, or at once if the pod is not running yet.
    fn stop(&self, why: &str) {
        let first = !self.stopping.swap(true, Ordering::SeqCst);
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(conn)) = (first, writer.as_mut()) {
            log::warn!(
                "{why}: stopping the pod ({} s grace period; again to kill it)",
                self.grace_period_s
            );
            if conn
                .send(&HostMsg::StopPod {
                    grace_period_s: self.grace_period_s,
                })
                .is_ok()
            {
                return;
            }
        }
        drop(writer);
        log::warn!("{why}: killing the pod");
        let _ = self
            .launcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kill();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let launcher = self.launcher.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = launcher.try_wait() {
            // SIGKILL: its child, the pod's PID 1, dies with it
            // (PR_SET_PDEATHSIG), and with PID 1 the whole pod.
            let _ = launcher.kill();
            let _ = launcher.wait();
        }
    }
}

/// Block SIGINT and SIGTERM in this thread (and the threads it starts) and
/// hand them to a thread that stops the pod.
fn handle_signals(shared: &Arc<Shared>) -> std::io::Result<()> {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, and
    // every pointer passed points to that local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` is an initialised sigset_t and `sig` a valid
            // out-pointer; both outlive the call.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            shared.stop(&format!("received {name}"));
        })?;
    Ok(())
}

/// Whole log lines from the pod's chunks, per container and stream.
#[derive(Default)]
struct Lines {
    pending: BTreeMap<(String, bool), Vec<u8>>,
}

impl Lines {
    /// Add a chunk; returns the complete lines it finishes, without `\n`.
    fn push(&mut self, container: &str, stderr: bool, data: &[u8], partial: bool) -> Vec<String> {
        let buf = self
            .pending
            .entry((container.to_owned(), stderr))
            .or_default();
        buf.extend_from_slice(data);
        if partial {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(buf).into_owned();
        buf.clear();
        text.strip_suffix('\n')
            .unwrap_or(&text)
            .split('\n')
            .map(str::to_owned)
            .collect()
    }

    /// What is left: unfinished lines, as ((container, stderr), line).
    fn rest(&mut self) -> Vec<((String, bool), String)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(k, b)| (k, String::from_utf8_lossy(&b).into_owned()))
            .collect()
    }
}

fn print_line(container: &str, stderr: bool, line: &str) {
    // A closed stdout (`| head`) must not stop the pod's supervision.
    let _ = if stderr {
        writeln!(std::io::stderr().lock(), "[{container}] {line}")
    } else {
        writeln!(std::io::stdout().lock(), "[{container}] {line}")
    };
}

fn log_event(container: &str, init: bool, event: &ContainerEvent) {
    let kind = if init { "init container" } else { "container" };
    match event {
        ContainerEvent::Started { pid } => log::info!("{kind} {container}: started (pid {pid})"),
        ContainerEvent::Exited {
            code,
            signal,
            oom_killed,
        } => {
            let how = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                (None, None) => "exited".to_owned(),
            };
            let oom = if *oom_killed { " (out of memory)" } else { "" };
            log::info!("{kind} {container}: {how}{oom}");
        }
        ContainerEvent::Restarting {
            restart_count,
            backoff_ms,
        } => log::info!(
            "{kind} {container}: restart {restart_count} in {:.1} s",
            *backoff_ms as f64 / 1e3
        ),
    }
}

/// Accept peapod-init's connection, or fail if it exits or takes too long.
fn accept(
    listener: &UnixListener,
    shared: &Shared,
    deadline: Instant,
) -> anyhow::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(anyhow!(e).context("cannot accept peapod-init's connection")),
        }
        let status = shared
            .launcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()?;
        if let Some(status) = status {
            return Err(anyhow!(
                "peapod-init exited ({status}) before it connected; its messages are above"
            ));
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("peapod-init did not connect in time"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Handshake and wait for `ready`.
fn wait_ready(conn: &mut Connection<UnixStream>, timeout: Duration) -> anyhow::Result<()> {
    conn.get_ref().set_read_timeout(Some(timeout))?;
    conn.handshake_host(&format!("peapod {}", env!("CARGO_PKG_VERSION")))?;
    loop {
        match conn.recv::<GuestMsg>()? {
            Some(GuestMsg::Ready { uptime_ms }) => {
                log::debug!("peapod-init ready after {uptime_ms} ms");
                break;
            }
            Some(GuestMsg::Error { message }) => return Err(anyhow!("{message}")),
            Some(other) => log::debug!("before ready: {other:?}"),
            None => {
                return Err(anyhow!(
                    "peapod-init closed the connection before it was ready"
                ))
            }
        }
    }
    conn.get_ref().set_read_timeout(None)?;
    Ok(())
}

/// Print the pod's output and events until peapod-init closes the
/// connection; returns how the pod ended, if it said.
fn attach(conn: &mut Connection<UnixStream>) -> Option<(PodPhase, String)> {
    let mut lines = Lines::default();
    let mut ended = None;
    loop {
        let msg = match conn.recv::<GuestMsg>() {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(e) => {
                log::warn!("connection to peapod-init: {e}");
                break;
            }
        };
        match msg {
            GuestMsg::Log {
                container,
                stream,
                partial,
                data,
                ..
            } => {
                let stderr = stream == Stream::Stderr;
                for line in lines.push(&container, stderr, &data, partial) {
                    print_line(&container, stderr, &line);
                }
            }
            GuestMsg::ContainerEvent {
                container,
                init,
                event,
            } => log_event(&container, init, &event),
            GuestMsg::PodExited { phase, reason } => {
                log::info!("pod {phase:?}: {reason}");
                ended = Some((phase, reason));
                // Only the end of the stream is left; do not hang on it.
                let _ = conn.get_ref().set_read_timeout(Some(REAP_TIMEOUT));
            }
            GuestMsg::Error { message } => log::error!("peapod-init: {message}"),
            other => log::debug!("from peapod-init: {other:?}"),
        }
    }
    for ((container, stderr), line) in lines.rest() {
        print_line(&container, stderr, &line);
    }
    ended
}

/// Wait for the launcher to exit (killing it after [`REAP_TIMEOUT`]).
fn reap(shared: &Shared) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        let mut launcher = shared.launcher.lock().unwrap_or_else(|e| e.into_inner());
        match launcher.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) | Err(_) => {
                log::warn!("peapod-init did not exit; killing it");
                let _ = launcher.kill();
                return launcher.wait().ok();
            }
        }
        drop(launcher);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run the pod in namespaces.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    // The spec first, as in VM mode: a bad file gets the same answer on
    // every machine.
    let plan = crate::spec::load(&args.pod).map_err(|e| Failure::Usage(e.into()))?;
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err(Failure::Usage(anyhow!("{NEEDS_ROOT}")));
    }
    let init = paths::init(&args.guest);
    paths::read_init(&init).map_err(Failure::Usage)?;
    let pod: WirePod = native_pod::wire_pod(&plan, &image::store())
        .map_err(|e| Failure::Usage(e.context(format!("{}", args.pod.display()))))?;

    // Admission: the pod's memory (no guest kernel to add) and CPU request;
    // released on every way out (drop).
    let capacity = Capacity::resolve().map_err(|e| Failure::Usage(e.into()))?;
    let runtime = Ledger::default_dir();
    let _reservation = Ledger::new(&runtime)
        .reserve(
            &plan.name,
            plan.effective_memory(),
            pod_cpu_request(&plan),
            &capacity,
        )
        .map_err(|e| Failure::Usage(e.into()))?;

    let dir = runtime.join("pods").join(&plan.name);
    let dir = PodDir::create(dir.clone()).map_err(|e| {
        Failure::Runtime(anyhow!(e).context(format!("cannot create {}", dir.display())))
    })?;
    let boot_timeout = Duration::from_secs(args.boot_timeout);
    let result = supervise(
        &init.path,
        &dir.0,
        pod,
        boot_timeout,
        plan.active_deadline_seconds,
    );
    drop(dir);
    result
}

/// Start peapod-init in `dir`, run `pod`, print its output, and wait for
/// its end (`deadline_s`: `activeDeadlineSeconds`).
fn supervise(
    init: &Path,
    dir: &Path,
    pod: WirePod,
    timeout: Duration,
    deadline_s: Option<u64>,
) -> Result<ExitCode, Failure> {
    let runtime = |e: anyhow::Error| Failure::Runtime(e.context(format!("pod {}", pod.name)));
    let sock = dir.join("init.sock");
    let listener = UnixListener::bind(&sock)
        .map_err(|e| runtime(anyhow!(e).context(format!("cannot listen on {}", sock.display()))))?;
    // Its own process group: a Ctrl-C on the terminal reaches peapod only,
    // which stops the pod gracefully.
    let launcher = Command::new(init)
        .arg("--native")
        .arg("--socket")
        .arg(&sock)
        .arg("--share")
        .arg(native_pod::SHARE_ROOT)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| runtime(anyhow!(e).context(format!("cannot start {}", init.display()))))?;
    log::info!(
        "pod {}: peapod-init --native (pid {}), namespaces only, no VM",
        pod.name,
        launcher.id()
    );
    let shared = Arc::new(Shared {
        launcher: Mutex::new(launcher),
        writer: Mutex::new(None),
        stopping: AtomicBool::new(false),
        grace_period_s: pod.grace_period_s,
    });
    handle_signals(&shared).map_err(|e| runtime(anyhow!(e).context("cannot handle signals")))?;

    let started = (|| {
        let stream = accept(&listener, &shared, Instant::now() + timeout)?;
        let mut conn = Connection::new(stream);
        wait_ready(&mut conn, timeout)?;
        let mut writer = Connection::new(conn.get_ref().try_clone()?);
        writer.send(&HostMsg::RunPod(Box::new(pod.clone())))?;
        *shared.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
        anyhow::Ok(conn)
    })();
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    let mut conn = match started {
        Ok(conn) => conn,
        Err(e) if shared.stopping.load(Ordering::SeqCst) => {
            return Err(runtime(e.context("stopped before it started")))
        }
        Err(e) => return Err(runtime(e.context("peapod-init did not start the pod"))),
    };
    if shared.stopping.load(Ordering::SeqCst) {
        // A signal came while the pod was being sent: stop it now.
        shared.stopping.store(false, Ordering::SeqCst);
        shared.stop("interrupted");
    }
    if let Some(secs) = deadline_s {
        let weak = Arc::downgrade(&shared);
        let _ = std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                if let Some(shared) = weak.upgrade() {
                    shared.stop("activeDeadlineSeconds passed");
                }
            });
    }

    let ended = attach(&mut conn);
    drop(conn);
    shared
        .writer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let status = reap(&shared);
    match ended {
        Some((PodPhase::Succeeded, _)) => Ok(ExitCode::SUCCESS),
        Some((phase, reason)) => Err(Failure::Runtime(anyhow!(
            "pod {}: {phase:?}: {reason}",
            pod.name
        ))),
        None => Err(Failure::Runtime(anyhow!(
            "pod {}: peapod-init ended without reporting the pod's end ({})",
            pod.name,
            status.map_or("not reaped".to_owned(), |s| s.to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lines_join_partial_chunks() {
        let mut l = Lines::default();
        assert_eq!(l.push("a", false, b"one\n", false), ["one"]);
        assert!(l.push("a", false, b"tw", true).is_empty());
        assert_eq!(l.push("b", false, b"x\ny\n", false), ["x", "y"]);
        assert_eq!(l.push("a", false, b"o\n", false), ["two"]);
        assert!(l.push("a", true, b"tail", true).is_empty());
        assert_eq!(l.rest(), [(("a".to_owned(), true), "tail".to_owned())]);
        assert!(l.rest().is_empty());
    }
}
