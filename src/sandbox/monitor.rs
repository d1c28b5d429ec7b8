//! The per-pod monitor: `peapod __monitor`, started by `peapod run`.
//!
//! It reserves the pod's resources, creates the pod directory, starts the
//! pod (the VMM in this process, or the native peapod-init as a child),
//! sends it the pod over the guest connection, and from then on keeps
//! `state.json` and the CRI logs up to date from what peapod-init reports,
//! and serves `api.sock`. When the guest ends it records how, releases the
//! reservation and exits; the directory stays for `ps`, `logs` and
//! `inspect` until `peapod rm`.
//!
//! Threads: main runs the VM (or waits for the native launcher); `guest`
//! accepts peapod-init's connection, hands it the pod and then reads its
//! messages; `api` accepts requests, one thread per connection.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use linux_loader::loader::Cmdline;
use peapod_proto::{
    Connection, ContainerEvent, ContainerState, ExecId, GuestMsg, HostMsg, PodPhase, Termination,
    VolumeKind, WireHostEntry, WireNetwork, GUEST_SHARE_DIR,
};

use super::api::{Reply, Request, API_SOCKET};
use super::crilog;
use super::state::{now_ns, ContainerInfo, PodNetwork, PodState};
use super::{Isolation, Launch, NetLaunch, Report, StartError, VmLaunch};
use crate::admission::{AdmissionError, Capacity, Ledger, Reservation};
use crate::vmm::boot::initramfs;
use crate::vmm::net::{Passt, PasstConfig};
use crate::vmm::vstate::kvm;
use crate::vmm::{
    FsShare, GuestEnd, NetBackendSocket, NetConfig, NetLinkState, RunOutcome, Vm, VmConfig,
    VmStopper,
};

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
/// Exec output messages buffered per session before it is dropped.
const EXEC_BACKLOG: usize = 1024;
/// How long a guest that said the pod ended may take to end its VM.
const END_GRACE: Duration = Duration::from_secs(15);
/// Longest a write to the guest may block before the guest counts as hung.
const GUEST_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a stop's grace period, how long the guest has to end by itself
/// before it is killed.
const STOP_SLACK: Duration = Duration::from_secs(15);

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

/// How the monitor ends the pod by force.
enum Killer {
    Vm(VmStopper),
    Native(u32),
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
    execs: Mutex<HashMap<ExecId, SyncSender<GuestMsg>>>,
    next_exec: AtomicU64,
    killer: Mutex<Option<Killer>>,
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
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// Change the state and write it out.
    fn update(&self, f: impl FnOnce(&mut PodState)) {
        let mut s = lock(&self.state);
        f(&mut s);
        if let Err(e) = s.store(&self.dir) {
            log::error!("cannot write the pod state: {e}");
        }
    }

    fn mark(&self, what: &str) {
        let ms = now_ns().saturating_sub(self.launch.cli_started_ns) as f64 / 1e6;
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
        match &*lock(&self.killer) {
            Some(Killer::Vm(stopper)) => stopper.stop(),
            Some(Killer::Native(pid)) => {
                // SAFETY: kill with a pid of our own child (not yet reaped:
                // the main thread reaps it only after the guest ended).
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            None => {}
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
                let full = match execs.get(&exec_id) {
                    Some(tx) => matches!(tx.try_send(msg), Err(TrySendError::Full(_))),
                    None => false,
                };
                if ended || full {
                    // Dropping the sender ends a session that does not keep
                    // up: its client hears so.
                    execs.remove(&exec_id);
                }
            }
            GuestMsg::PodExited { phase, reason } => {
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
                self.update(|s| {
                    s.phase = phase;
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
                    let _ = tx.try_send(GuestMsg::Error { message });
                }
            }
            other => log::debug!("from peapod-init: {other:?}"),
        }
    }

    fn on_event(&self, container: &str, event: ContainerEvent) {
        if let ContainerEvent::Started { .. } = event {
            let restart = lock(&self.state)
                .container(container)
                .map_or(0, |c| c.status.restart_count);
            if let Err(e) = lock(&self.logs).start(&self.dir, container, restart) {
                log::error!("cannot create the log of {container}: {e}");
            }
        }
        self.update(|s| {
            let Some(c) = s.container_mut(container) else {
                return;
            };
            let init = c.status.init;
            match event {
                ContainerEvent::Started { .. } => {
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
                    };
                    c.status.state = ContainerState::Terminated(t.clone());
                    c.status.last_termination = Some(t);
                }
                ContainerEvent::Restarting { restart_count, .. } => {
                    c.status.restart_count = restart_count;
                    c.status.state = ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                    };
                }
            }
        });
    }
}

/// `peapod __monitor`: read the launch from stdin, run the pod, exit when
/// it ended.
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
        let _ = std::fs::remove_dir_all(&dir);
        e
    };
    std::env::set_current_dir(&dir)
        .map_err(|e| cleanup(failed(anyhow!(e).context("cannot enter the pod directory"))))?;
    redirect(2, Path::new(MONITOR_LOG));
    log::info!("monitor of pod {name} (pid {})", std::process::id());

    let launch = &disk_empty_dirs(launch, &dir).map_err(|e| {
        cleanup(failed(
            e.context("cannot create the pod's emptyDir volumes"),
        ))
    })?;
    let mut state = PodState::new(name, &launch.spec_file, launch.isolation.word());
    state.memory = launch.memory;
    state.millicpu = launch.millicpu;
    state.vcpus = launch.vm.as_ref().map_or(0, |v| v.vcpus);
    state.grace_period_s = launch.pod.grace_period_s;
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
        state
            .containers
            .push(ContainerInfo::waiting(&c.name, init, &image(&c.name)));
    }
    state
        .store(&dir)
        .map_err(|e| cleanup(failed(anyhow!(e).context("cannot write the pod state"))))?;
    let monitor = Arc::new(Monitor {
        dir: dir.clone(),
        launch: launch.clone(),
        state: Mutex::new(state),
        logs: Mutex::default(),
        guest: Mutex::new(None),
        execs: Mutex::default(),
        next_exec: AtomicU64::new(1),
        killer: Mutex::new(None),
        network: Mutex::new(None),
        stopping: Mutex::new(None),
        reporter: reporter.clone(),
        guest_warnings: WarnLimit::default(),
        me: Mutex::new(std::sync::Weak::new()),
        guest_ended: AtomicBool::new(false),
        started: Instant::now(),
    });
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

/// Where a VM pod's disk-medium emptyDir volumes live: `volumes/<name>` in
/// the pod directory, each shared with the guest (writable, tag `ed<N>`)
/// like a hostPath, so they take host disk, not the pod's memory, as in
/// Kubernetes (`medium: Memory` stays a tmpfs in the guest). They go when
/// the pod is removed.
fn disk_empty_dirs(launch: &Launch, dir: &Path) -> anyhow::Result<Launch> {
    let mut launch = launch.clone();
    let Some(vm) = launch.vm.as_mut() else {
        return Ok(launch);
    };
    for v in &mut launch.pod.volumes {
        if !matches!(
            v.kind,
            VolumeKind::EmptyDir {
                medium_memory: false,
                ..
            }
        ) {
            continue;
        }
        let path = dir.join("volumes").join(&v.name);
        std::fs::create_dir_all(&path)?;
        // Any container user may write, as in Kubernetes; the pod directory
        // (0700) keeps other host users out.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let tag = format!(
            "ed{}",
            vm.shares.iter().filter(|s| s.tag.starts_with("ed")).count()
        );
        vm.shares.push(super::Share {
            tag: tag.clone(),
            path,
            read_only: false,
        });
        v.kind = VolumeKind::HostPath { path: tag };
    }
    Ok(launch)
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

fn run_vm(monitor: &Arc<Monitor>) -> anyhow::Result<GuestOutcome> {
    let launch = &monitor.launch;
    let vm_launch: &VmLaunch = launch.vm.as_ref().context("no VM in a VM launch")?;
    let kvm = kvm::open_kvm()?;
    let flavour = kvm::detect_flavour(&kvm).context("cannot query KVM's MSR list")?;
    let init = std::fs::read(&launch.init)
        .with_context(|| format!("cannot read {}", launch.init.display()))?;
    let agent = UnixListener::bind(format!("{VSOCK_SOCKET}_{AGENT_PORT}"))
        .context("cannot listen for the guest's agent")?;
    let mut cfg = VmConfig {
        mem_bytes: vm_launch.mem_bytes,
        vcpus: vm_launch.vcpus,
        console_log: Some(PathBuf::from(CONSOLE_LOG)),
        console_echo: false,
        vsock_uds: Some(PathBuf::from(VSOCK_SOCKET)),
        fs_shares: vm_launch
            .shares
            .iter()
            .map(|s| FsShare {
                tag: s.tag.clone(),
                path: s.path.clone(),
                read_only: s.read_only,
            })
            .collect(),
        net: None,
    };
    // passt before the VM, from this (the main, long-lived) thread: its
    // parent-death signal follows the thread that started it.
    let mut passt = None;
    if let Some(net) = &vm_launch.net {
        let (p, net_cfg, wire) = start_passt(net)?;
        log::info!(
            "network: passt (pid {}), pod address {}/{} via {}",
            p.pid(),
            wire.address,
            wire.prefix_len,
            wire.gateway
        );
        let shown = PodNetwork {
            address: format!("{}/{}", wire.address, wire.prefix_len),
            gateway: wire.gateway.to_string(),
            dns: wire.dns_servers.iter().map(ToString::to_string).collect(),
            ports: net.publish.iter().map(ToString::to_string).collect(),
            passt_pid: p.pid(),
            down: None,
        };
        monitor.update(|s| s.network = Some(shown));
        *lock(&monitor.network) = Some(wire);
        cfg.net = Some(net_cfg);
        passt = Some(p);
        monitor.mark("passt ready");
    }
    let initrd = initramfs::build(init).context("cannot build the initramfs")?;
    let mut vm = Vm::new(&kvm, &cfg)?;
    monitor.mark("VM created");
    let passt_watch = match passt.take() {
        Some(p) => Some(watch_passt(monitor, p, vm.net_link())?),
        None => None,
    };
    let cmdline = guest_cmdline(monitor, vm_launch)?;
    vm.load_linux(&vm_launch.kernel, &initrd, cmdline)?;
    monitor.mark("kernel loaded");
    *lock(&monitor.killer) = Some(Killer::Vm(vm.stop_handle()));
    log::info!(
        "VM: {} MiB, {} vCPU(s), kernel {}",
        vm_launch.mem_bytes >> 20,
        vm_launch.vcpus,
        vm_launch.kernel.display()
    );
    let guest = spawn_guest_thread(monitor, agent)?;
    monitor.mark("first KVM_RUN");
    let outcome = vm.run(Some(Duration::from_secs(launch.boot_timeout_s)));
    monitor.guest_ended.store(true, Ordering::SeqCst);
    if let Some(watch) = passt_watch {
        // It sees the end within a poll and drops (kills) passt.
        let _ = watch.join();
    }
    if let Some(copy) = &vm_launch.console_log {
        if let Err(e) = std::fs::copy(CONSOLE_LOG, copy) {
            log::warn!("cannot copy the console log to {}: {e}", copy.display());
        }
    }
    let outcome: RunOutcome = outcome?;
    // The VM is gone, and with it every vsock connection: the guest thread
    // sees the end of its stream.
    let _ = guest.join();
    if let Some((_, uptime)) = outcome.ready {
        monitor.update(|s| {
            s.timings
                .push(("guest uptime at ready".into(), uptime as f64))
        });
    }
    let rss = outcome
        .process_rss
        .map(|r| r.saturating_sub(outcome.guest_resident));
    monitor.update(|s| {
        if let Some(rss) = rss {
            s.timings
                .push(("VMM RSS excl. guest (MiB)".into(), rss as f64 / 1048576.0));
        }
        s.timings.push((
            "guest memory touched (MiB)".into(),
            outcome.guest_resident as f64 / 1048576.0,
        ));
    });
    let explained = match outcome.end {
        GuestEnd::Killed => Some(match lock(&monitor.stopping).clone() {
            Some(why) => format!("{why}: the VM was killed"),
            None => "the VM was killed".into(),
        }),
        _ => outcome.explain(flavour),
    };
    Ok(match explained {
        None => (true, String::new(), Vec::new()),
        Some(msg) => (false, msg, outcome.console_tail),
    })
}

/// How often the passt watcher looks at passt.
const PASST_POLL: Duration = Duration::from_millis(200);

/// Watch the pod's passt until the guest ends, then kill it (by dropping
/// it). If passt exits first, the pod loses its network but goes on (exec,
/// logs and stop work over vsock): the state says why, for `ps` and
/// `inspect`.
fn watch_passt(
    monitor: &Arc<Monitor>,
    mut passt: Passt,
    link: Option<NetLinkState>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let m = monitor.clone();
    let watch = move || {
        while !m.guest_ended.load(Ordering::SeqCst) {
            let mut exited = passt.try_exited();
            if exited.is_none() && link.as_ref().is_some_and(NetLinkState::is_down) {
                // The connection broke first: give passt a moment to be
                // reapable, for its status.
                std::thread::sleep(PASST_POLL);
                exited = passt.try_exited();
            }
            let why = match exited {
                Some((status, stderr)) => {
                    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                    match last {
                        Some(line) => format!("passt exited ({status}): {}", line.trim()),
                        None => format!("passt exited ({status})"),
                    }
                }
                None if link.as_ref().is_some_and(NetLinkState::is_down) => {
                    "passt closed the pod's network connection".to_owned()
                }
                None => {
                    std::thread::sleep(PASST_POLL);
                    continue;
                }
            };
            log::warn!(
                "network down: {why}; the pod runs on without a network (see {})",
                passt.log_path().display()
            );
            m.update(|s| {
                if let Some(n) = s.network.as_mut() {
                    n.down = Some(why);
                }
            });
            return;
        }
    };
    std::thread::Builder::new()
        .name("passt-watch".into())
        .spawn(watch)
        .context("cannot start the passt watcher")
}

/// The pod network's MTU: passt's own default, as Podman's pasta uses it.
/// passt speaks to the host through sockets, so no frame of this size ever
/// reaches a wire; one frame carries up to 64 KiB of a TCP stream, and the
/// guest, the VMM and passt move ~40 times fewer frames than at 1500.
const POD_MTU: u16 = 65520;

/// Start the pod's passt; returns it, the VM's network device and what
/// peapod-init is told (the address passt answers DHCP with, the host's
/// resolvers, the MAC).
fn start_passt(net: &NetLaunch) -> anyhow::Result<(Passt, NetConfig, WireNetwork)> {
    let mut cfg = PasstConfig::new(std::env::current_dir()?);
    cfg.forwards = net.publish.iter().map(super::Publish::forward).collect();
    cfg.mtu = Some(POD_MTU);
    let mut passt = Passt::spawn(&cfg).context("cannot start passt for the pod network")?;
    let stream = passt
        .take_stream()
        .context("passt's stream was already taken")?;
    let ip = passt.guest_ipv4();
    let mac = random_mac();
    let (dns_servers, dns_search, dns_options) = if net.dns.config_only {
        let d = &net.dns;
        (d.nameservers.clone(), d.searches.clone(), d.options.clone())
    } else {
        let (servers, search) = host_resolvers(ip.gateway);
        with_dns_config(servers, search, &net.dns)
    };
    let wire = WireNetwork {
        mac: Some(
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        address: ip.address,
        prefix_len: ip.prefix_len,
        gateway: ip.gateway,
        mtu: POD_MTU.into(),
        dns_servers,
        dns_search,
        dns_options,
        hosts: net
            .host_aliases
            .iter()
            .map(|(ip, names)| WireHostEntry {
                ip: *ip,
                names: names.clone(),
            })
            .collect(),
    };
    let net_cfg = NetConfig {
        backend: NetBackendSocket::Connected(Arc::new(stream)),
        mac,
        mtu: Some(POD_MTU),
    };
    Ok((passt, net_cfg, wire))
}

/// A locally administered unicast MAC, random per pod.
fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut mac);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The host's resolvers and search domains with `spec.dnsConfig` added,
/// as the kubelet adds it: its nameservers and searches after the host's
/// (no repeats, within resolv.conf's limits: the first 3 nameservers, 32
/// search domains), and its options.
fn with_dns_config(
    mut servers: Vec<IpAddr>,
    mut search: Vec<String>,
    dns: &crate::spec::PodDns,
) -> (Vec<IpAddr>, Vec<String>, Vec<String>) {
    use peapod_proto::network::{MAX_DNS_SEARCH, MAX_DNS_SERVERS};
    for n in &dns.nameservers {
        if !servers.contains(n) {
            servers.push(*n);
        }
    }
    if servers.len() > MAX_DNS_SERVERS {
        log::warn!(
            "resolv.conf takes {MAX_DNS_SERVERS} nameservers: {:?} left out",
            &servers[MAX_DNS_SERVERS..]
        );
        servers.truncate(MAX_DNS_SERVERS);
    }
    for d in &dns.searches {
        if !search.contains(d) {
            search.push(d.clone());
        }
    }
    search.truncate(MAX_DNS_SEARCH);
    (servers, search, dns.options.clone())
}

/// systemd-resolved's list of the real upstream servers, for hosts whose
/// /etc/resolv.conf names only its loopback stub (127.0.0.53).
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// The host's resolvers as the pod sees them through passt, and the
/// `search` domains.
fn host_resolvers(gateway: Ipv4Addr) -> (Vec<IpAddr>, Vec<String>) {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    choose_resolvers(
        &read("/etc/resolv.conf"),
        || read(RESOLVED_UPSTREAMS),
        gateway,
    )
}

/// The pod's resolvers from the host's resolv.conf: its non-loopback IPv4
/// `nameserver`s (at most 3), which the pod reaches through passt like any
/// other address. A loopback resolver cannot be reached that way: for
/// systemd-resolved's stub the pod gets the stub's upstreams (as Podman
/// does); otherwise the gateway, which passt maps to the host's
/// 127.0.0.1, where such a resolver (dnsmasq, unbound) listens.
fn choose_resolvers(
    resolv_conf: &str,
    resolved_upstreams: impl FnOnce() -> String,
    gateway: Ipv4Addr,
) -> (Vec<IpAddr>, Vec<String>) {
    let parse = |text: &str| {
        let mut servers = Vec::new();
        let mut search = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        servers.push(ip);
                    }
                }
                Some("search") => {
                    search = words
                        .filter(|w| peapod_proto::network::is_dns_name(w))
                        .take(6)
                        .map(str::to_owned)
                        .collect();
                }
                _ => {}
            }
        }
        (servers, search)
    };
    let reachable = |servers: &[IpAddr]| -> Vec<IpAddr> {
        servers
            .iter()
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .take(3)
            .copied()
            .collect()
    };
    let (listed, search) = parse(resolv_conf);
    let mut servers = reachable(&listed);
    if servers.is_empty() && listed.contains(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))) {
        servers = reachable(&parse(&resolved_upstreams()).0);
    }
    if servers.is_empty() {
        servers.push(IpAddr::V4(gateway));
    }
    (servers, search)
}

/// The guest kernel's command line for this pod.
fn guest_cmdline(monitor: &Monitor, vm: &VmLaunch) -> anyhow::Result<Cmdline> {
    let mut c = crate::cli::run::kernel_cmdline(&monitor.launch.pod.name, vm.verbose_console)
        .map_err(|e| anyhow!("kernel command line: {e}"))?;
    let cmd = |e: linux_loader::cmdline::Error| anyhow!("kernel command line: {e}");
    c.insert("peapod.agent", &AGENT_PORT.to_string())
        .map_err(cmd)?;
    let tags: Vec<&str> = vm.shares.iter().map(|s| s.tag.as_str()).collect();
    if !tags.is_empty() {
        c.insert(peapod_proto::CMDLINE_SHARE_TAGS, &tags.join(","))
            .map_err(cmd)?;
    }
    Ok(c)
}

fn run_native(monitor: &Arc<Monitor>) -> anyhow::Result<GuestOutcome> {
    let launch = &monitor.launch;
    let listener = UnixListener::bind(INIT_SOCKET).context("cannot listen for peapod-init")?;
    let mut cmd = Command::new(&launch.init);
    cmd.arg("--native")
        .arg("--socket")
        .arg(INIT_SOCKET)
        .arg("--share")
        .arg(crate::cli::native_pod::SHARE_ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: prctl is async-signal-safe; it only sets this child's
    // parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            // The launcher (and with it the pod's PID 1) dies with us.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut launcher: Child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", launch.init.display()))?;
    log::info!(
        "peapod-init --native (pid {}): namespaces only, no VM",
        launcher.id()
    );
    *lock(&monitor.killer) = Some(Killer::Native(launcher.id()));
    let guest = spawn_guest_thread(monitor, listener)?;
    let status = launcher.wait().context("cannot wait for peapod-init");
    *lock(&monitor.killer) = None;
    monitor.guest_ended.store(true, Ordering::SeqCst);
    let status = status?;
    let _ = guest.join();
    let ended = lock(&monitor.state).ended();
    Ok(if ended {
        (true, String::new(), Vec::new())
    } else {
        let why = match lock(&monitor.stopping).clone() {
            Some(why) => format!("{why}: peapod-init was killed"),
            None => {
                format!("peapod-init exited ({status}) before the pod ended; see {MONITOR_LOG}")
            }
        };
        (false, why, Vec::new())
    })
}

/// Accept peapod-init's connection, give it the pod, then read what it
/// says until it closes the connection.
fn spawn_guest_thread(
    monitor: &Arc<Monitor>,
    listener: UnixListener,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let m = monitor.clone();
    Ok(std::thread::Builder::new()
        .name("guest".into())
        .spawn(move || {
            let timeout = Duration::from_secs(m.launch.boot_timeout_s);
            let conn = match connect_guest(&m, &listener, timeout) {
                Ok(conn) => conn,
                Err(e) => {
                    log::error!("{e:#}");
                    m.update(|s| {
                        s.reason = format!("{e:#}");
                    });
                    m.kill();
                    return;
                }
            };
            drop(listener);
            m.mark("pod sent");
            m.reporter.send(&Report::Started);
            if let Some(secs) = m.launch.deadline_s {
                let weak = Arc::downgrade(&m);
                let _ = std::thread::Builder::new()
                    .name("deadline".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_secs(secs));
                        if let Some(m) = weak.upgrade() {
                            m.stop("DeadlineExceeded: activeDeadlineSeconds passed", None);
                        }
                    });
            }
            read_guest(&m, conn);
            lock(&m.guest).take();
            // Sessions still waiting hear that the pod is gone.
            lock(&m.execs).clear();
        })?)
}

fn connect_guest(
    m: &Monitor,
    listener: &UnixListener,
    timeout: Duration,
) -> anyhow::Result<Connection<UnixStream>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(anyhow!(e).context("cannot accept peapod-init's connection")),
        }
        if m.guest_ended.load(Ordering::SeqCst) {
            return Err(anyhow!("the guest ended before peapod-init connected"));
        }
        if lock(&m.stopping).is_some() {
            return Err(anyhow!("stopped before peapod-init connected"));
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "peapod-init did not connect within {timeout:?}; see {}",
                m.dir.join(CONSOLE_LOG).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stream.set_nonblocking(false)?;
    let mut conn = Connection::new(stream);
    conn.get_ref().set_read_timeout(Some(timeout))?;
    conn.handshake_host(&format!("peapod {}", env!("CARGO_PKG_VERSION")))?;
    loop {
        match conn.recv::<GuestMsg>()? {
            Some(GuestMsg::Ready { uptime_ms }) => {
                log::info!("peapod-init ready (its uptime {uptime_ms} ms)");
                break;
            }
            Some(GuestMsg::Error { message }) => return Err(anyhow!("peapod-init: {message}")),
            Some(other) => log::debug!("before ready: {other:?}"),
            None => {
                return Err(anyhow!(
                    "peapod-init closed the connection before it was ready"
                ))
            }
        }
    }
    m.mark("peapod-init ready");
    conn.get_ref().set_read_timeout(None)?;
    let mut writer = Connection::new(conn.get_ref().try_clone()?);
    writer
        .get_ref()
        .set_write_timeout(Some(GUEST_WRITE_TIMEOUT))?;
    let mut pod = m.launch.pod.clone();
    pod.network = lock(&m.network).clone();
    writer.send(&HostMsg::RunPod(Box::new(pod)))?;
    *lock(&m.guest) = Some(writer);
    m.update(|s| s.started_ns = Some(now_ns()));
    Ok(conn)
}

fn read_guest(m: &Monitor, mut conn: Connection<UnixStream>) {
    loop {
        match conn.recv::<GuestMsg>() {
            Ok(Some(msg)) => m.on_guest(msg),
            Ok(None) => return,
            Err(e) => {
                log::warn!("connection to peapod-init: {e}");
                return;
            }
        }
    }
}

fn serve_api(m: &Arc<Monitor>, listener: &UnixListener) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let m = m.clone();
        let _ = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                let mut conn = Connection::new(stream);
                match conn.recv::<Request>() {
                    Ok(Some(req)) => handle(&m, conn, req),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = conn.send(&Reply::Error {
                            message: e.to_string(),
                            usage: false,
                        });
                    }
                }
            });
    }
}

fn handle(m: &Arc<Monitor>, mut conn: Connection<UnixStream>, req: Request) {
    let reply = match req {
        Request::Stop { grace_period_s } => {
            m.stop("stopped by `peapod stop`", grace_period_s);
            Reply::Ok {}
        }
        Request::Kill {} => {
            *lock(&m.stopping) = Some("killed by `peapod rm -f`".into());
            m.kill();
            Reply::Ok {}
        }
        Request::Exec {
            container,
            command,
            tty,
            stdin,
        } => return exec(m, conn, container, command, tty, stdin),
        Request::ExecStdin { .. } | Request::ExecResize { .. } => Reply::Error {
            message: "no exec session on this connection".into(),
            usage: false,
        },
    };
    let _ = conn.send(&reply);
}

fn exec(
    m: &Arc<Monitor>,
    mut conn: Connection<UnixStream>,
    container: String,
    command: Vec<String>,
    tty: bool,
    stdin: bool,
) {
    let refuse = |conn: &mut Connection<UnixStream>, message: String| {
        let _ = conn.send(&Reply::Error {
            message,
            usage: true,
        });
    };
    let pod = m.launch.pod.name.clone();
    {
        let s = lock(&m.state);
        match s.container(&container) {
            None => {
                let names: Vec<&str> = s
                    .containers
                    .iter()
                    .map(|c| c.status.name.as_str())
                    .collect();
                return refuse(
                    &mut conn,
                    format!(
                        "pod {pod} has no container {container} (it has: {})",
                        names.join(", ")
                    ),
                );
            }
            Some(c) if !c.running() => {
                return refuse(
                    &mut conn,
                    format!(
                        "container {container} of pod {pod} is not running: {}",
                        c.state_word()
                    ),
                )
            }
            Some(_) => {}
        }
    }
    if command.is_empty() {
        return refuse(&mut conn, "no command to run".into());
    }
    let exec_id = m.next_exec.fetch_add(1, Ordering::SeqCst);
    let (tx, rx): (SyncSender<GuestMsg>, Receiver<GuestMsg>) = mpsc::sync_channel(EXEC_BACKLOG);
    lock(&m.execs).insert(exec_id, tx);
    let sent = m.send_guest(&HostMsg::Exec {
        exec_id,
        container,
        command,
        tty,
        stdin,
        env: Vec::new(),
        working_dir: None,
        user: None,
    });
    if !sent {
        lock(&m.execs).remove(&exec_id);
        let _ = conn.send(&Reply::Error {
            message: format!("pod {pod} is not running"),
            usage: true,
        });
        return;
    }
    // Input from the CLI goes to the guest until the CLI closes.
    let done = Arc::new(AtomicBool::new(false));
    if let Ok(read_half) = conn.get_ref().try_clone() {
        let m2 = m.clone();
        let done2 = done.clone();
        let _ = std::thread::Builder::new()
            .name("exec-input".into())
            .spawn(move || {
                let mut input = Connection::new(read_half);
                let mut eof_sent = false;
                while let Ok(Some(req)) = input.recv::<Request>() {
                    let msg = match req {
                        Request::ExecStdin { data, eof } => {
                            eof_sent |= eof;
                            HostMsg::ExecStdin { exec_id, data, eof }
                        }
                        Request::ExecResize { rows, cols } => HostMsg::ExecResize {
                            exec_id,
                            rows,
                            cols,
                        },
                        _ => continue,
                    };
                    if done2.load(Ordering::SeqCst) || !m2.send_guest(&msg) {
                        return;
                    }
                }
                if !eof_sent && !done2.load(Ordering::SeqCst) {
                    m2.send_guest(&HostMsg::ExecStdin {
                        exec_id,
                        data: Vec::new(),
                        eof: true,
                    });
                }
            });
    }
    let mut started = false;
    loop {
        let reply = match rx.recv_timeout(Duration::from_secs(if started { 3600 } else { 30 })) {
            Ok(GuestMsg::ExecStarted { .. }) => {
                started = true;
                Reply::ExecStarted {}
            }
            Ok(GuestMsg::ExecOutput { stream, data, .. }) => Reply::ExecOutput { stream, data },
            Ok(GuestMsg::ExecExited { code, signal, .. }) => {
                let _ = conn.send(&Reply::ExecExited { code, signal });
                break;
            }
            Ok(GuestMsg::Error { message }) if !started => {
                // "exec 3: container \"x\" has exited": the part after the id.
                let why = message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, why)| why)
                    .to_owned();
                let _ = conn.send(&Reply::Error {
                    message: format!("pod {pod}: {why}"),
                    usage: true,
                });
                break;
            }
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) if started => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = conn.send(&Reply::Error {
                    message: "peapod-init did not start the process".into(),
                    usage: false,
                });
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let message = if m.guest_ended.load(Ordering::SeqCst) || lock(&m.guest).is_none() {
                    format!("pod {pod} ended")
                } else {
                    "the exec session's output was not read fast enough; it was dropped".into()
                };
                let _ = conn.send(&Reply::Error {
                    message,
                    usage: false,
                });
                break;
            }
        };
        if conn.send(&reply).is_err() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    lock(&m.execs).remove(&exec_id);
    let _ = conn.get_ref().shutdown(std::net::Shutdown::Both);
}

/// The guest-side path of a share.
pub fn guest_share_path(tag: &str) -> String {
    format!("{GUEST_SHARE_DIR}/{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn test_resolvers_are_the_hosts_reachable_ones() {
        let conf = "# comment\nnameserver 192.0.2.53\nnameserver ::1\nnameserver 127.0.0.1\n\
                    nameserver 198.51.100.1\nnameserver 198.51.100.2\nnameserver 198.51.100.3\n\
                    search corp.example bad..name example.com\n";
        let (servers, search) = choose_resolvers(conf, || unreachable!(), GW);
        assert_eq!(
            servers,
            ips(&["192.0.2.53", "198.51.100.1", "198.51.100.2"])
        );
        assert_eq!(search, ["corp.example", "example.com"]);
    }

    #[test]
    fn test_dns_config_is_added_to_the_hosts_resolvers() {
        let dns = crate::spec::PodDns {
            config_only: false,
            nameservers: ips(&["192.0.2.53", "198.51.100.1", "203.0.113.9"]),
            searches: vec!["corp.example".into(), "svc.example".into()],
            options: vec!["ndots:2".into()],
        };
        let host = ips(&["198.51.100.1", "198.51.100.2"]);
        let (servers, search, options) = with_dns_config(host, vec!["svc.example".into()], &dns);
        // The host's first, no repeats, at most 3.
        assert_eq!(
            servers,
            ips(&["198.51.100.1", "198.51.100.2", "192.0.2.53"])
        );
        assert_eq!(search, ["svc.example", "corp.example"]);
        assert_eq!(options, ["ndots:2"]);
    }

    #[test]
    fn test_resolvers_behind_a_loopback_resolver() {
        // dnsmasq or unbound on 127.0.0.1: the gateway, which passt maps
        // to the host's loopback.
        let (servers, _) = choose_resolvers("nameserver 127.0.0.1\n", String::new, GW);
        assert_eq!(servers, ips(&["10.0.2.2"]));
        // systemd-resolved's stub: its upstreams.
        let upstreams = || "nameserver 203.0.113.7\nnameserver 127.0.0.1\n".to_owned();
        let (servers, _) = choose_resolvers("nameserver 127.0.0.53\n", upstreams, GW);
        assert_eq!(servers, ips(&["203.0.113.7"]));
        // ...unless it has none: the gateway.
        let (servers, _) = choose_resolvers("nameserver 127.0.0.53\n", String::new, GW);
        assert_eq!(servers, ips(&["10.0.2.2"]));
        // No resolv.conf at all.
        let (servers, search) = choose_resolvers("", String::new, GW);
        assert_eq!((servers, search.len()), (ips(&["10.0.2.2"]), 0));
    }
}
