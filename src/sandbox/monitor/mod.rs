//! The per-pod monitor: `peapod-monitor` (or `peapod __monitor`), started
//! by `peapod run` (and any other client of the pod API).
//!
//! It reserves the pod's resources, creates the pod directory, starts the
//! pod (the VMM as a child process, `peapod-vmm`, see
//! `sandbox::vmm_process`; or the native peapod-init as a child),
//! sends it the pod over the guest connection, and from then on keeps
//! `state.json` and the CRI logs up to date from what peapod-init reports,
//! and serves `api.sock`. When the guest ends it records how, releases the
//! reservation and exits; the directory stays for `ps`, `logs` and
//! `inspect` until `peapod rm`.
//!
//! Threads: main starts the VMM and reads its events until it exits (or
//! waits for the native launcher); `guest` accepts peapod-init's
//! connection, hands it the pod and then reads its messages; `api` accepts
//! requests, one thread per connection.
//!
//! Files, one seam each: `vm.rs` runs the guest (the VMM process, or the
//! native launcher), `network.rs` the pod network's host side (passt,
//! resolvers), `guest.rs` the connection to peapod-init, `control.rs`
//! `api.sock` and the exec relay; this file holds the shared state and the
//! pod's life.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use linux_loader::loader::Cmdline;
use peapod_proto::{
    truncate_utf8, Connection, ContainerEvent, ContainerState, ExecId, GuestMsg, HostMsg, PodPhase,
    Termination, VolumeKind, WireHostEntry, WireNetwork, GUEST_SHARE_DIR, MAX_TERMINATION_MESSAGE,
};

/// A container's waiting reason while its process exists and its
/// postStart hook runs, as Kubernetes shows it.
const CREATING: &str = "ContainerCreating";
/// The `--timings` mark of the first time all the app containers run.
const ALL_RUNNING: &str = "containers running";

mod control;
mod guest;
mod network;
mod vm;
mod volumes;

use self::control::*;
use self::guest::*;
use self::network::*;
use self::vm::*;
pub(crate) use self::volumes::VOLUMES_LINK;
use self::volumes::*;
use super::api::{Reply, Request, API_SOCKET};
use super::crilog;
use super::state::{now_ns, ContainerInfo, PodNetwork, PodState};
use super::vmm_process::{self, ProcessKiller, VmmEvent, VmmLaunch, VmmNet, VmmProcess};
use super::{Isolation, Launch, NetLaunch, Report, StartError, VmLaunch};
use crate::admission::{AdmissionError, Capacity, Ledger, Reservation};
use crate::vmm::net::{Passt, PasstConfig};

/// The vsock port the guest's agent connects to on the host.
pub const AGENT_PORT: u32 = 1024;
/// The VM's vsock socket in the pod directory (`<name>_<port>` for ports).
const VSOCK_SOCKET: &str = "vsock.sock";
/// The native init's socket in the pod directory.
const INIT_SOCKET: &str = "init.sock";
/// The console log in the pod directory.
pub const CONSOLE_LOG: &str = "console.log";
/// The monitor's own log in the pod directory.
pub const MONITOR_LOG: &str = "monitor.log";
/// Exec output bytes queued per session (its client reads slower than its
/// process writes) before the session is dropped.
const EXEC_BACKLOG_BYTES: usize = 8 << 20;
/// What a queued exec message costs beyond its data, so that a flood of
/// empty messages is bounded too.
const EXEC_MSG_COST: usize = 256;
/// How long a guest that said the pod ended may take to end its VM.
const END_GRACE: Duration = Duration::from_secs(15);
/// Longest a write to the guest may block before the guest counts as hung.
const GUEST_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a stop's grace period, how long the guest has to end by itself
/// before it is killed.
const STOP_SLACK: Duration = Duration::from_secs(15);
/// How long peapod-init has to answer an `add_container` or
/// `remove_container`.
const CONTAINER_OP_TIMEOUT: Duration = Duration::from_secs(20);

/// The one report to the CLI, on stdout; later reports are dropped.
struct Reporter(Mutex<Option<std::fs::File>>);

impl Reporter {
    fn send(&self, report: &Report) {
        let Some(mut out) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if let Ok(line) = serde_json::to_string(report) {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// At most a few warnings about a misbehaving guest per minute, so a
/// hostile one cannot fill the monitor's log.
#[derive(Default)]
struct WarnLimit(Mutex<(Option<Instant>, u32)>);

impl WarnLimit {
    fn warn(&self, what: impl FnOnce() -> String) {
        let mut w = lock(&self.0);
        let now = Instant::now();
        if w.0
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            *w = (Some(now), 0);
        }
        w.1 += 1;
        if w.1 <= 5 {
            log::warn!("{}", what());
        } else if w.1 == 6 {
            log::warn!("more guest warnings this minute are not logged");
        }
    }
}

/// What the threads share.
struct Monitor {
    dir: PathBuf,
    launch: Launch,
    state: Mutex<PodState>,
    logs: Mutex<crilog::Writer>,
    /// The write side of the guest connection, once connected.
    guest: Mutex<Option<Connection<UnixStream>>>,
    /// Exec sessions waiting for the guest's replies (bounded: a session
    /// whose client does not read is ended, never buffered without limit).
    execs: Mutex<HashMap<ExecId, control::ExecTx>>,
    next_exec: AtomicU64,
    /// Containers with an `add_container` or `remove_container` under way,
    /// waiting for peapod-init's answer (one request per container).
    container_ops: Mutex<HashMap<String, SyncSender<Result<(), String>>>>,
    /// Ends the guest's process (the VMM, or the native launcher).
    killer: Mutex<Option<Arc<ProcessKiller>>>,
    /// The monitor killed the guest's process.
    killed: AtomicBool,
    /// The pod's network as peapod-init configures it, once passt runs.
    network: Mutex<Option<WireNetwork>>,
    /// Why the pod is being stopped, once it is.
    stopping: Mutex<Option<String>>,
    reporter: Arc<Reporter>,
    guest_warnings: WarnLimit,
    /// This monitor, for threads it starts.
    me: Mutex<std::sync::Weak<Monitor>>,
    /// The guest (VM or native init) has ended.
    guest_ended: AtomicBool,
    /// peapod-init said the pod ended: what it says after that is ignored
    /// (one end, one watchdog, however many times a guest repeats it).
    pod_exited: AtomicBool,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// The monitor of `launch`'s pod in `dir`, its state `state`.
    fn new(dir: PathBuf, launch: Launch, state: PodState, reporter: Arc<Reporter>) -> Monitor {
        Monitor {
            dir,
            logs: Mutex::new(crilog::Writer::new(launch.log_limits)),
            launch,
            state: Mutex::new(state),
            guest: Mutex::new(None),
            execs: Mutex::default(),
            next_exec: AtomicU64::new(1),
            container_ops: Mutex::new(HashMap::new()),
            killer: Mutex::new(None),
            killed: AtomicBool::new(false),
            network: Mutex::new(None),
            stopping: Mutex::new(None),
            reporter,
            guest_warnings: WarnLimit::default(),
            me: Mutex::new(std::sync::Weak::new()),
            guest_ended: AtomicBool::new(false),
            pod_exited: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Change the state and write it out.
    fn update(&self, f: impl FnOnce(&mut PodState)) {
        let mut s = lock(&self.state);
        f(&mut s);
        if let Err(e) = s.store(&self.dir) {
            log::error!("cannot write the pod state: {e}");
        }
    }

    /// Milliseconds since the CLI started, to the microsecond: a whole
    /// number of microseconds fits a double's mantissa, so the state file
    /// reads back exactly what was written.
    fn since_cli_ms(&self) -> f64 {
        let us = now_ns().saturating_sub(self.launch.cli_started_ns) / 1000;
        us as f64 / 1000.0
    }

    fn mark(&self, what: &str) {
        let ms = self.since_cli_ms();
        self.update(|s| s.timings.push((what.to_owned(), ms)));
    }

    /// Send to peapod-init; false when it cannot be reached. A guest that
    /// stops reading for [`GUEST_WRITE_TIMEOUT`] is killed: nothing else
    /// could stop it then.
    fn send_guest(&self, msg: &HostMsg) -> bool {
        let sent = match lock(&self.guest).as_mut() {
            Some(conn) => conn.send(msg).map_err(|e| e.to_string()),
            None => return false,
        };
        match sent {
            Ok(()) => true,
            Err(e) => {
                log::warn!("cannot write to peapod-init ({e}): killing the pod");
                lock(&self.guest).take();
                self.kill();
                false
            }
        }
    }

    /// End the pod now.
    fn kill(&self) {
        if let Some(killer) = &*lock(&self.killer) {
            self.killed.store(true, Ordering::SeqCst);
            killer.kill();
        }
    }

    /// Stop the pod: the grace period for its containers, then by force.
    fn stop(self: &Arc<Self>, why: &str, grace_period_s: Option<u64>) {
        {
            let mut stopping = lock(&self.stopping);
            if stopping.is_some() {
                return;
            }
            *stopping = Some(why.to_owned());
        }
        let grace = grace_period_s.unwrap_or(self.launch.pod.grace_period_s);
        log::info!("stopping the pod ({why}; grace period {grace} s)");
        // The watchdog first: a guest that does not read must not keep the
        // pod alive.
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(grace).saturating_add(STOP_SLACK));
                if let Some(me) = me.upgrade() {
                    log::warn!("the pod did not end after its grace period: killing it");
                    me.kill();
                }
            });
        if !self.send_guest(&HostMsg::StopPod {
            grace_period_s: grace,
        }) {
            self.kill();
        }
    }

    /// Whether the pod has a container of this name (the guest cannot make
    /// the monitor write anywhere else).
    fn known(&self, container: &str) -> bool {
        let known = lock(&self.state).container(container).is_some();
        if !known {
            self.guest_warnings.warn(|| {
                format!("peapod-init named a container the pod does not have: {container:?}")
            });
        }
        known
    }

    /// A message from peapod-init.
    fn on_guest(&self, msg: GuestMsg) {
        if self.pod_exited.load(Ordering::SeqCst) {
            self.guest_warnings.warn(|| {
                format!(
                    "peapod-init sent `{}` after the pod ended: ignored",
                    peapod_proto::Message::kind(&msg)
                )
            });
            return;
        }
        match msg {
            GuestMsg::Log { ref container, .. }
            | GuestMsg::ContainerEvent { ref container, .. }
                if !self.known(container) => {}
            GuestMsg::Log {
                container,
                stream,
                timestamp_ns,
                partial,
                data,
            } => {
                let r = lock(&self.logs).write(
                    &self.dir,
                    &container,
                    timestamp_ns,
                    stream,
                    &data,
                    partial,
                );
                if let Err(e) = r {
                    log::error!("cannot write the log of {container}: {e}");
                }
            }
            GuestMsg::ContainerEvent {
                container, event, ..
            } => self.on_event(&container, event),
            GuestMsg::ExecStarted { exec_id }
            | GuestMsg::ExecOutput { exec_id, .. }
            | GuestMsg::ExecExited { exec_id, .. } => {
                let ended = matches!(msg, GuestMsg::ExecExited { .. });
                let mut execs = lock(&self.execs);
                let full = execs.get(&exec_id).is_some_and(|tx| !tx.offer(msg));
                if ended || full {
                    // Dropping the sender ends a session that does not keep
                    // up: its client hears so.
                    execs.remove(&exec_id);
                }
            }
            GuestMsg::PodExited { phase, reason } => {
                self.pod_exited.store(true, Ordering::SeqCst);
                // The guest resets right after; one that does not is ended.
                if let Some(me) = self.me.lock().unwrap_or_else(|e| e.into_inner()).upgrade() {
                    let _ = std::thread::Builder::new()
                        .name("end-watchdog".into())
                        .spawn(move || {
                            std::thread::sleep(END_GRACE);
                            if !me.guest_ended.load(Ordering::SeqCst) {
                                log::warn!("the guest did not end after the pod did: killing it");
                                me.kill();
                            }
                        });
                }
                let stopped = lock(&self.stopping).clone();
                // An evicted pod failed, whatever its containers did on
                // SIGTERM (as the kubelet marks it).
                let evicted = stopped.as_deref().is_some_and(|w| w.starts_with("Evicted"));
                self.update(|s| {
                    s.phase = if evicted { PodPhase::Failed } else { phase };
                    s.reason = match stopped {
                        Some(why) => {
                            let rest = reason.strip_prefix("stopped; ").unwrap_or(&reason);
                            format!("{why}; {rest}")
                        }
                        None => reason,
                    };
                    s.finished_ns = Some(now_ns());
                });
            }
            GuestMsg::Error { message } => {
                self.guest_warnings
                    .warn(|| format!("peapod-init: {message}"));
                // `exec <id>: why`: that exec session could not start.
                let id = message
                    .strip_prefix("exec ")
                    .and_then(|rest| rest.split_once(':'))
                    .and_then(|(id, _)| id.parse::<ExecId>().ok());
                if let Some(tx) = id.and_then(|id| lock(&self.execs).get(&id).cloned()) {
                    tx.offer(GuestMsg::Error { message });
                }
            }
            other => log::debug!("from peapod-init: {other:?}"),
        }
    }

    fn on_event(&self, container: &str, event: ContainerEvent) {
        // A request about this container learns how it went, once the
        // state shows it.
        let answer = match &event {
            ContainerEvent::Started { .. }
            | ContainerEvent::Exited { .. }
            | ContainerEvent::Removed {} => Some(Ok(())),
            ContainerEvent::Refused { message } => Some(Err(message.clone())),
            ContainerEvent::Created { .. }
            | ContainerEvent::Restarting { .. }
            | ContainerEvent::Ready { .. }
            | ContainerEvent::Unhealthy { .. }
            | ContainerEvent::HookFailed { .. } => None,
        };
        self.apply_event(container, event);
        if let Some(answer) = answer {
            if let Some(tx) = lock(&self.container_ops).remove(container) {
                let _ = tx.try_send(answer);
            }
        }
    }

    fn apply_event(&self, container: &str, event: ContainerEvent) {
        match event {
            ContainerEvent::Removed {} => {
                self.update(|s| s.containers.retain(|c| c.status.name != container));
                return;
            }
            ContainerEvent::Refused { .. } => return,
            ContainerEvent::Unhealthy { probe, message } => {
                let text = format!("{} probe failed: {message}", probe.word());
                self.guest_warnings
                    .warn(|| format!("container {container}: {text}"));
                let mut text = text;
                truncate_utf8(&mut text, 1024);
                self.update(|s| {
                    if let Some(c) = s.container_mut(container) {
                        c.status.probe_failure = Some(text);
                    }
                });
                return;
            }
            ContainerEvent::HookFailed { hook, message } => {
                let mut text = format!("{}: {message}", hook.failure());
                self.guest_warnings
                    .warn(|| format!("container {container}: {text}"));
                truncate_utf8(&mut text, 1024);
                self.update(|s| {
                    if let Some(c) = s.container_mut(container) {
                        c.status.hook_failure = Some(text);
                    }
                });
                return;
            }
            ContainerEvent::Ready { ready } => {
                self.update(|s| {
                    if let Some(c) = s.container_mut(container) {
                        c.status.ready = ready;
                    }
                });
                return;
            }
            _ => {}
        }
        // Its output is logged from its creation (a postStart hook runs
        // while it does), under this run's number.
        let creating = lock(&self.state).container(container).is_some_and(
            |c| matches!(&c.status.state, ContainerState::Waiting { reason } if reason == CREATING),
        );
        if matches!(event, ContainerEvent::Created { .. })
            || matches!(event, ContainerEvent::Started { .. }) && !creating
        {
            let restart = lock(&self.state)
                .container(container)
                .map_or(0, |c| c.status.restart_count);
            if let Err(e) = lock(&self.logs).start(&self.dir, container, restart) {
                log::error!("cannot create the log of {container}: {e}");
            }
        }
        let started = matches!(event, ContainerEvent::Started { .. });
        let since_cli_ms = self.since_cli_ms();
        self.update(|s| {
            let Some(c) = s.container_mut(container) else {
                return;
            };
            let init = c.status.init;
            match event {
                ContainerEvent::Created { .. } => {
                    c.status.ready = false;
                    c.status.state = ContainerState::Waiting {
                        reason: CREATING.into(),
                    };
                }
                ContainerEvent::Started { .. } => {
                    c.status.ready = false;
                    c.status.state = ContainerState::Running {
                        started_at_ns: now_ns(),
                    };
                    if !init {
                        s.phase = PodPhase::Running;
                    }
                }
                ContainerEvent::Exited {
                    code,
                    signal,
                    oom_killed,
                    message,
                } => {
                    let reason = if oom_killed {
                        "OOMKilled"
                    } else if code == Some(0) {
                        "Completed"
                    } else {
                        "Error"
                    };
                    let t = Termination {
                        code,
                        signal,
                        reason: reason.into(),
                        finished_at_ns: now_ns(),
                        message: message.map(|mut m| {
                            truncate_utf8(&mut m, MAX_TERMINATION_MESSAGE);
                            m
                        }),
                    };
                    c.status.ready = false;
                    c.status.state = ContainerState::Terminated(t.clone());
                    c.status.last_termination = Some(t);
                }
                ContainerEvent::Restarting { .. } => {
                    // Counted here: the guest's count would name log
                    // files (a hostile one, billions of them).
                    c.status.restart_count = c.status.restart_count.saturating_add(1);
                    c.status.state = ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                    };
                }
                ContainerEvent::Removed {}
                | ContainerEvent::Refused { .. }
                | ContainerEvent::Ready { .. }
                | ContainerEvent::Unhealthy { .. }
                | ContainerEvent::HookFailed { .. } => {}
            }
            // The first time all the app containers run: the end of the
            // pod's start, for `--timings`.
            let all_running = s
                .containers
                .iter()
                .all(|c| c.status.init || matches!(c.status.state, ContainerState::Running { .. }));
            if started && all_running && !s.timings.iter().any(|(w, _)| w == ALL_RUNNING) {
                s.timings.push((ALL_RUNNING.to_owned(), since_cli_ms));
            }
        });
    }
}

/// `peapod __monitor`: read the launch from stdin, run the pod, exit when
/// it ended.
/// The soft limit of open files up to the hard one: the VMM holds a
/// descriptor per guest-visible inode of its virtio-fs shares and the
/// sockets of the pod (the soft 1024 of an ordinary session is soon
/// reached by a guest that walks a large image, and then `stop` and `exec`
/// cannot connect).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::warn!(
                    "cannot raise the open-file limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

pub fn main() -> ExitCode {
    // Descriptors the caller left open (a held lock, a pipe) must not live
    // as long as the pod, nor reach passt or peapod-init.
    // SAFETY: close_range on descriptors this process does not use; it
    // only sets close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    raise_nofile();
    let mut input = Vec::new();
    let launch: Launch = match std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peapod: the monitor is started by `peapod run`, not by hand ({e})");
            return ExitCode::from(2);
        }
    };
    // SAFETY: fcntl duplicating our own stdout (close-on-exec: the pod's
    // processes must not inherit it); the result is checked.
    let report_fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    let reporter = Arc::new(Reporter(Mutex::new(if report_fd >= 0 {
        // SAFETY: a descriptor we just duplicated and own from here on.
        Some(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(report_fd) })
    } else {
        None
    })));
    // Nothing else may write to the report pipe (the CLI waits for it to
    // say something or close).
    redirect(1, Path::new("/dev/null"));
    let code = match prepare(&launch, &reporter) {
        Ok((monitor, reservation)) => run(monitor, reservation),
        Err(e) => {
            reporter.send(&Report::Failed(e));
            1
        }
    };
    ExitCode::from(code)
}

/// Point descriptor `fd` at `path` (appending).
fn redirect(fd: i32, path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        // SAFETY: dup2 onto a standard descriptor of this process.
        unsafe { libc::dup2(f.as_raw_fd(), fd) };
    }
}

/// Reserve, create the pod directory, and start the guest.
fn prepare(
    launch: &Launch,
    reporter: &Arc<Reporter>,
) -> Result<(Arc<Monitor>, Reservation), StartError> {
    let usage = |e: &dyn std::fmt::Display| StartError {
        usage: true,
        message: e.to_string(),
    };
    let failed = |e: anyhow::Error| StartError {
        usage: false,
        message: format!("{e:#}"),
    };
    let name = &launch.pod.name;
    let runtime = super::runtime_dir();
    let capacity = Capacity::resolve().map_err(|e| usage(&e))?;
    let reservation = Ledger::new(&runtime)
        .reserve(name, launch.memory, launch.millicpu, &capacity)
        .map_err(|e| match e {
            AdmissionError::Ledger { .. } => failed(anyhow!(e)),
            e => usage(&e),
        })?;
    let dir = runtime.join(name);
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        return Err(if e.kind() == ErrorKind::AlreadyExists {
            let phase = super::PodState::load(&dir)
                .map(|s| s.status_word().to_owned())
                .unwrap_or_else(|_| "unknown state".into());
            usage(&format!(
                "a pod named {name} exists ({phase}); remove it with `peapod rm {name}` or pick \
                 another metadata.name"
            ))
        } else {
            failed(anyhow!(e).context(format!("cannot create {}", dir.display())))
        });
    }
    // From here on a failure removes the directory again.
    let cleanup = |e: StartError| {
        super::remove_volumes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        e
    };
    std::env::set_current_dir(&dir)
        .map_err(|e| cleanup(failed(anyhow!(e).context("cannot enter the pod directory"))))?;
    redirect(2, Path::new(MONITOR_LOG));
    log::info!("monitor of pod {name} (pid {})", std::process::id());

    // The pod passed every check and holds its reservation: now the
    // hostPaths it asks for may be created (they stay, as the kubelet's do).
    for (path, kind) in &launch.create_host_paths {
        super::wire::create_host_path(path, *kind)
            .map_err(|e| cleanup(failed(anyhow!("hostPath volume: {e}"))))?;
    }
    for claim in &launch.claims {
        super::claims::create(claim).map_err(|e| {
            cleanup(failed(anyhow!(e).context(format!(
                "cannot make the volume of persistentVolumeClaim {}",
                claim.name
            ))))
        })?;
    }
    let (mut launch, volumes) = disk_empty_dirs(launch, &dir).map_err(|e| {
        cleanup(failed(
            e.context("cannot create the pod's emptyDir volumes"),
        ))
    })?;
    if launch.pod.sandbox {
        for (sub, tag, read_only) in [
            (super::CONTAINERS_DIR, super::CONTAINERS_SHARE, true),
            (super::BINDS_DIR, super::BINDS_SHARE, false),
        ] {
            let path = dir.join(sub);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(|e| {
                    cleanup(failed(anyhow!(e).context(format!("cannot create {sub}/"))))
                })?;
            if let Some(vm) = launch.vm.as_mut() {
                vm.shares.push(super::Share {
                    tag: tag.into(),
                    path,
                    read_only,
                });
            }
        }
    }
    let launch = &launch;
    let mut state = PodState::new(name, &launch.spec_file, launch.isolation.word());
    state.memory = launch.memory;
    state.millicpu = launch.millicpu;
    state.vcpus = launch.vm.as_ref().map_or(0, |v| v.vcpus);
    state.grace_period_s = launch.pod.grace_period_s;
    state.volumes = volumes;
    state.claims = launch.claims.iter().map(|c| c.name.clone()).collect();
    let image = |c: &str| {
        launch
            .images
            .iter()
            .find(|(n, _)| n == c)
            .map_or(String::new(), |(_, i)| i.clone())
    };
    for (c, init) in launch
        .pod
        .init_containers
        .iter()
        .map(|c| (c, true))
        .chain(launch.pod.containers.iter().map(|c| (c, false)))
    {
        let mut info = ContainerInfo::waiting(&c.name, init, &image(&c.name));
        info.image_digest = launch
            .image_digests
            .iter()
            .find(|(n, _)| *n == c.name)
            .map(|(_, d)| d.clone());
        state.containers.push(info);
    }
    state
        .store(&dir)
        .map_err(|e| cleanup(failed(anyhow!(e).context("cannot write the pod state"))))?;
    let monitor = Arc::new(Monitor::new(
        dir.clone(),
        launch.clone(),
        state,
        reporter.clone(),
    ));
    *lock(&monitor.me) = Arc::downgrade(&monitor);
    monitor.mark("admitted");
    let api = UnixListener::bind(API_SOCKET)
        .map_err(|e| cleanup(failed(anyhow!(e).context("cannot listen on api.sock"))))?;
    let m = monitor.clone();
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || serve_api(&m, &api))
        .map_err(|e| cleanup(failed(anyhow!(e))))?;
    Ok((monitor, reservation))
}

/// Run the pod to its end; returns the monitor's exit code.
fn run(monitor: Arc<Monitor>, reservation: Reservation) -> u8 {
    let launch = monitor.launch.clone();
    let outcome = match launch.isolation {
        Isolation::Vm => run_vm(&monitor),
        Isolation::Namespace => run_native(&monitor),
    };
    monitor.guest_ended.store(true, Ordering::SeqCst);
    let (ended_ok, detail, tail) = match &outcome {
        Ok(o) => (o.0, o.1.clone(), o.2.clone()),
        Err(e) => (false, format!("{e:#}"), Vec::new()),
    };
    let reported_end = lock(&monitor.state).ended();
    monitor.update(|s| {
        if !reported_end {
            s.phase = PodPhase::Failed;
            s.reason = if detail.is_empty() {
                "peapod-init ended without reporting the pod's end".into()
            } else {
                detail.clone()
            };
            s.finished_ns = Some(now_ns());
            for c in &mut s.containers {
                if !matches!(c.status.state, ContainerState::Terminated(_)) {
                    c.status.state = ContainerState::Terminated(Termination {
                        code: None,
                        signal: None,
                        reason: "ContainerStatusUnknown".into(),
                        finished_at_ns: now_ns(),
                        message: None,
                    });
                }
            }
        }
        if !ended_ok || !reported_end {
            s.console_tail = tail.clone();
        }
    });
    let reason = lock(&monitor.state).reason.clone();
    monitor.reporter.send(&Report::Failed(StartError {
        usage: false,
        message: format!("pod {}: {reason}", launch.pod.name),
    }));
    for f in [API_SOCKET, VSOCK_SOCKET, INIT_SOCKET] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(format!("{VSOCK_SOCKET}_{AGENT_PORT}"));
    drop(reservation);
    log::info!(
        "pod ended after {:.1?}: {reason}",
        monitor.started.elapsed()
    );
    0
}

/// (guest ended cleanly, why not, last console lines)
type GuestOutcome = (bool, String, Vec<String>);

/// The guest-side path of a share.
pub fn guest_share_path(tag: &str) -> String {
    format!("{GUEST_SHARE_DIR}/{tag}")
}

/// The monitor's handling of guest messages, for the `monitor_guest` fuzz
/// target (built with `--cfg fuzzing` only): a monitor of a pod with an
/// init container `init` and app containers `app` and `side`, over a pod
/// directory of the caller's, without a reservation, a guest or an API
/// socket, and without the end watchdog (whose thread would outlive an
/// input by 15 s).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;
    use peapod_proto::{Backoff, RestartPolicy, WireContainer, WirePod};

    /// A monitor fed guest messages.
    pub struct GuestFeed(Arc<Monitor>);

    fn container(name: &str) -> WireContainer {
        WireContainer {
            name: name.into(),
            rootfs: format!("/peapod/{name}"),
            command: vec!["true".into()],
            env: Vec::new(),
            working_dir: "/".into(),
            uid: 0,
            gid: 0,
            volume_mounts: Vec::new(),
            memory_limit: None,
            cpu_limit_millis: None,
            pids_limit: None,
            read_only_rootfs: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            tty: false,
            stdin: false,
            stdin_once: false,
            sidecar: false,
            binds: Vec::new(),
            supplemental_groups: Vec::new(),
            no_new_privs: false,
            probes: Vec::new(),
            post_start: None,
            pre_stop: None,
            stop_signal: None,
            termination_message_path: None,
            termination_message_fallback: false,
        }
    }

    impl GuestFeed {
        /// A monitor of the pod in `dir` (which exists), keeping logs
        /// within `log_limits`.
        pub fn new(dir: &Path, log_limits: crilog::LogLimits) -> GuestFeed {
            let pod = WirePod {
                name: "fuzz".into(),
                hostname: "fuzz".into(),
                init_containers: vec![container("init")],
                containers: vec![container("app"), container("side")],
                volumes: Vec::new(),
                restart_policy: RestartPolicy::Always,
                grace_period_s: 1,
                backoff: Backoff::default(),
                share_process_namespace: false,
                network: None,
                sandbox: false,
                fs_group: None,
                sysctls: Vec::new(),
            };
            let launch = Launch {
                spec_file: dir.join("pod.yaml"),
                pod,
                images: Vec::new(),
                image_digests: Vec::new(),
                isolation: Isolation::Vm,
                memory: 0,
                millicpu: 0,
                init: PathBuf::new(),
                vm: None,
                boot_timeout_s: 1,
                deadline_s: None,
                cli_started_ns: 0,
                monitor_exe: None,
                log_limits,
                create_host_paths: Vec::new(),
                claims: Vec::new(),
            };
            let mut state = PodState::new("fuzz", &launch.spec_file, "vm");
            for (c, init) in [("init", true), ("app", false), ("side", false)] {
                state
                    .containers
                    .push(ContainerInfo::waiting(c, init, "busybox"));
            }
            state.store(dir).expect("write the pod state");
            GuestFeed(Arc::new(Monitor::new(
                dir.to_owned(),
                launch,
                state,
                Arc::new(Reporter(Mutex::new(None))),
            )))
        }

        /// One message from the guest.
        pub fn feed(&self, msg: GuestMsg) {
            self.0.on_guest(msg);
        }

        /// The pod's state as the monitor keeps it.
        pub fn state(&self) -> PodState {
            lock(&self.0.state).clone()
        }
    }
}
