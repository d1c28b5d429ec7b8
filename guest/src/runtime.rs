//! The pod runtime: one single-threaded poll loop in PID 1.
//!
//! Descriptors polled: the host stream (messages in, decoded with a
//! `FrameDecoder`), a signalfd for SIGCHLD (then `waitpid(-1, WNOHANG)`
//! until nothing is left, so re-parented orphans are reaped too), the read
//! ends of every container's stdout/stderr pipe, and the descriptors of exec
//! sessions (see [`crate::exec`]), and the connections of probes and
//! lifecycle hooks. Timers (restart backoff, probe periods, the stop grace
//! period) become the poll timeout. Writes to the host are blocking, whole
//! frames.
//!
//! A container is stopped as the kubelet stops one: its preStop hook, then
//! its stop signal (SIGTERM unless it names another), then SIGKILL once the
//! grace period is over (2 s more if the hook was still running then).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use peapod_proto::{
    encode, write_frame, Connection, ContainerEvent, ContainerState, ContainerStatus, FrameDecoder,
    GuestMsg, HookKind, HostMsg, PodPhase, PodStatus, ProbeAction, ProbeKind, Stream, Termination,
    VolumeKind, WirePod, MAX_TERMINATION_MESSAGE,
};

use crate::cgroup::{self, PodCgroups};
use crate::container::{self, PodContext, VOLUMES_DIR};
use crate::exec::{self, Execs};
use crate::logs::take_chunks;
use crate::net;
use crate::probe::{Attempt, Probe, Transition, Verdict};
use crate::sys::{self, ExitStatus};
use crate::transport::Transport;

/// Kubernetes' termination reason of a container the OOM killer ended.
const OOM_KILLED: &str = "OOMKilled";

/// The most of a container's output a `FallbackToLogsOnError` termination
/// message takes, as the kubelet: 2048 bytes, 80 lines.
const FALLBACK_BYTES: usize = 2048;
const FALLBACK_LINES: usize = 80;

/// How long past its grace period a container whose preStop hook still
/// runs has to end after its stop signal, as the kubelet gives.
const PRE_STOP_EXTRA: Duration = Duration::from_secs(2);

/// The agent string in our hello.
pub const AGENT: &str = concat!("peapod-init ", env!("CARGO_PKG_VERSION"));

/// How the pod ended.
pub struct Outcome {
    pub phase: PodPhase,
    pub reason: String,
}

/// Handshake, `ready`, receive and validate the pod. Errors are reported to
/// the host (when it can still hear us) by the caller.
pub fn receive_pod(conn: &mut Connection<Transport>, uptime_ms: u64) -> io::Result<WirePod> {
    let proto = |e: peapod_proto::ProtoError| io::Error::other(e.to_string());
    conn.handshake_guest(AGENT).map_err(proto)?;
    conn.send(&GuestMsg::Ready { uptime_ms }).map_err(proto)?;
    loop {
        match conn.recv::<HostMsg>().map_err(proto)? {
            None => {
                return Err(io::Error::other(
                    "the host closed the connection before run_pod",
                ))
            }
            Some(HostMsg::RunPod(pod)) => {
                pod.validate().map_err(proto)?;
                return Ok(*pod);
            }
            Some(HostMsg::StatusQuery {}) => conn
                .send(&GuestMsg::Status(PodStatus {
                    phase: PodPhase::Pending,
                    containers: vec![],
                }))
                .map_err(proto)?,
            Some(other) => {
                let message = format!("`{}` before `run_pod`", peapod_proto::Message::kind(&other));
                conn.send(&GuestMsg::Error { message }).map_err(proto)?;
            }
        }
    }
}

/// The agent's whole life once connected: after `setup` (the PID 1 mounts
/// of the caller's mode) succeeded, take the pod from the host, prepare it
/// (hostname, network interface, volumes) and run it from `share`. Returns
/// the exit status: 0 when the pod Succeeded, 1 when it Failed, 2 when it
/// never started.
pub fn serve(mut conn: Connection<Transport>, setup: io::Result<()>, share: &Path) -> i32 {
    let pod = match setup.and_then(|()| receive_pod(&mut conn, sys::uptime_ms())) {
        Ok(pod) => pod,
        Err(e) => {
            let message = format!("peapod-init: {e}");
            eprintln!("{message}");
            let _ = conn.send(&GuestMsg::Error { message });
            return 2;
        }
    };
    let prepared = sys::set_hostname(&pod.hostname)
        .map_err(|e| io::Error::new(e.kind(), format!("set hostname {}: {e}", pod.hostname)))
        .and_then(|()| match &pod.network {
            Some(network) => net::configure(network).map(drop),
            None => Ok(()),
        })
        .and_then(|()| mount_volumes(&pod, share));
    if let Err(e) = prepared {
        let reason = format!("cannot prepare the pod: {e}");
        eprintln!("peapod-init: {reason}");
        let _ = conn.send(&GuestMsg::PodExited {
            phase: PodPhase::Failed,
            reason,
        });
        return 1;
    }
    match Runtime::new(conn.into_inner(), &pod, share).map(|rt| rt.run().phase) {
        Ok(PodPhase::Succeeded) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("peapod-init: {e}");
            2
        }
    }
}

/// Mount the pod's volumes: one tmpfs per emptyDir; for a hostPath, a bind
/// mount of what the host exposes at that path of the pod `share`, reached
/// without following any symlink (so nothing leads out of the share).
pub fn mount_volumes(pod: &WirePod, share: &Path) -> io::Result<()> {
    set_sysctls(&pod.sysctls)?;
    for v in &pod.volumes {
        match &v.kind {
            VolumeKind::EmptyDir { size_limit, .. } => {
                let dir = Path::new(VOLUMES_DIR).join(&v.name);
                std::fs::create_dir_all(&dir)?;
                // fsGroup: the group owns it, and what is made in it.
                let mut opts = match pod.fs_group {
                    Some(g) => format!("mode=2777,gid={g}"),
                    None => "mode=0777".to_string(),
                };
                if let Some(size) = size_limit {
                    opts.push_str(&format!(",size={size}"));
                }
                sys::mount(Some("tmpfs"), &dir, Some("tmpfs"), 0, Some(&opts))?;
            }
            VolumeKind::HostPath { path } => {
                let at = |e: io::Error| {
                    io::Error::new(
                        e.kind(),
                        format!("hostPath volume {} ({path}): {e}", v.name),
                    )
                };
                let fd = container::open_beneath(share, path, false).map_err(at)?;
                let src = Path::new("/proc/self/fd").join(fd.as_raw_fd().to_string());
                let dir = Path::new(VOLUMES_DIR).join(&v.name);
                if std::fs::metadata(&src).map_err(at)?.is_dir() {
                    std::fs::create_dir_all(&dir)?;
                } else {
                    std::fs::create_dir_all(VOLUMES_DIR)?;
                    std::fs::File::create(&dir)?;
                }
                sys::bind_mount(&src, &dir, false).map_err(at)?;
            }
            VolumeKind::Files { files } => {
                let dir = Path::new(VOLUMES_DIR).join(&v.name);
                files_volume(&dir, files, pod.fs_group)
                    .map_err(|e| io::Error::new(e.kind(), format!("volume {}: {e}", v.name)))?;
            }
        }
    }
    Ok(())
}

/// A ConfigMap, Secret or downward API volume at `dir`: a tmpfs of its
/// own, laid out as the kubelet lays it out so that an update can swap it
/// whole (`..<time>/` holds the files, `..data` links to it, each
/// top-level name links into `..data`), then made read-only.
/// The pod's namespaced sysctls (validated names), before any container.
fn set_sysctls(sysctls: &[(String, String)]) -> io::Result<()> {
    for (name, value) in sysctls {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| io::Error::new(e.kind(), format!("sysctl {name}={value}: {e}")))?;
    }
    Ok(())
}

fn files_volume(
    dir: &Path,
    files: &[peapod_proto::WireFile],
    fs_group: Option<u32>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let bytes: usize = files.iter().map(|f| f.data.len() + 4096).sum();
    let opts = format!("mode=0755,size={}", bytes + (64 << 10));
    sys::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&opts),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = format!("..{}.{:09}", now.as_secs(), now.subsec_nanos());
    let payload = dir.join(&stamp);
    std::fs::create_dir(&payload)?;
    let mut top = std::collections::BTreeSet::new();
    for f in files {
        // Validated by WirePod::validate: plain relative names.
        let target = payload.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &f.data)?;
        let mut mode = f.mode;
        if let Some(g) = fs_group {
            // As the kubelet: the fsGroup owns the files and may read them.
            std::os::unix::fs::chown(&target, Some(0), Some(g))?;
            mode |= 0o040;
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        if let Some(first) = f.path.split('/').next() {
            top.insert(first.to_owned());
        }
    }
    std::os::unix::fs::symlink(&stamp, dir.join("..data"))?;
    for name in top {
        std::os::unix::fs::symlink(Path::new("..data").join(&name), dir.join(&name))?;
    }
    sys::mount(
        None,
        dir,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
}

/// The pod's IP address: its network's, else loopback's.
fn pod_ip(pod: &WirePod) -> String {
    pod.network
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_owned(), |n| n.address.to_string())
}

#[derive(Debug)]
enum State {
    /// Not started (yet, or ever).
    Waiting,
    Running {
        pid: libc::pid_t,
        started_ns: u64,
    },
    /// Restarts at the given time.
    Backoff {
        until: Instant,
    },
    /// Done for good (no restart follows).
    Exited,
}

struct Ctr {
    spec: peapod_proto::WireContainer,
    init: bool,
    /// Gone from the pod (`remove_container`); kept so that indices stay.
    removed: bool,
    state: State,
    restarts: u32,
    last: Option<(ExitStatus, Termination)>,
    /// Its cgroup while it runs.
    cgroup: Option<cgroup::Cgroup>,
    /// Its probes while it runs.
    probes: Vec<Probe>,
    /// It runs and passes its readiness probe (as told to the host).
    ready: bool,
    /// Its startup probe passed (or it has none).
    started: bool,
    /// Its lifecycle hook under way.
    hook: Option<(HookKind, Attempt)>,
    /// It is being stopped (the pod stops, a probe or its postStart hook
    /// failed, the pod is done with a sidecar).
    stopping: Option<Stopping>,
    /// The end of its output (`FallbackToLogsOnError`).
    tail: Vec<u8>,
    /// While its process sets up its root: the pipe that closes when the
    /// process execs its command (or ends). It counts as started then.
    execing: Option<OwnedFd>,
}

/// A container being stopped.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    /// SIGKILL then, if it still runs.
    kill_at: Instant,
    /// It got SIGKILL.
    killed: bool,
}

impl Ctr {
    fn new(spec: peapod_proto::WireContainer, init: bool) -> Ctr {
        Ctr {
            spec,
            init,
            removed: false,
            state: State::Waiting,
            restarts: 0,
            last: None,
            cgroup: None,
            probes: Vec::new(),
            ready: false,
            started: false,
            hook: None,
            stopping: None,
            tail: Vec::new(),
            execing: None,
        }
    }

    /// Its main process, while it runs.
    fn pid(&self) -> Option<libc::pid_t> {
        match self.state {
            State::Running { pid, .. } if pid > 0 => Some(pid),
            _ => None,
        }
    }

    /// Keep the end of its output for a termination message.
    fn keep_tail(&mut self, data: &[u8]) {
        if !self.spec.termination_message_fallback {
            return;
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > FALLBACK_BYTES {
            self.tail.drain(..self.tail.len() - FALLBACK_BYTES);
        }
    }

    /// Its termination message, once it ended with `status`: what it
    /// wrote at its `terminationMessagePath`, else, under
    /// `FallbackToLogsOnError` after a failure, its last lines of output.
    fn termination_message(&self, status: ExitStatus) -> Option<String> {
        self.spec.termination_message_path.as_ref()?;
        let written = container::termination_message(&self.spec.name, MAX_TERMINATION_MESSAGE);
        if written.is_some() || !self.spec.termination_message_fallback || status.success() {
            return written;
        }
        let text = String::from_utf8_lossy(&self.tail);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(FALLBACK_LINES)..].join("\n");
        (!tail.is_empty()).then_some(tail)
    }
}

struct LogPipe {
    fd: OwnedFd,
    ctr: usize,
    stream: Stream,
    buf: Vec<u8>,
}

/// The running pod.
pub struct Runtime<'a> {
    conn: Transport,
    host_open: bool,
    decoder: FrameDecoder,
    pod: &'a WirePod,
    share: &'a Path,
    resolv_conf: Vec<u8>,
    ctrs: Vec<Ctr>,
    pipes: Vec<LogPipe>,
    execs: Execs,
    sigchld: OwnedFd,
    /// The first init container that has not succeeded yet.
    next_init: usize,
    apps_started: bool,
    /// The pod is stopping (`stop_pod`, or the host is gone).
    stopping: bool,
    failed_init: Option<String>,
    cgroups: PodCgroups,
    /// Sidecars got SIGTERM (the app containers are done); SIGKILL then.
    sidecars_stopping: bool,
}

impl<'a> Runtime<'a> {
    /// Set up the loop's descriptors. SIGCHLD is blocked from here on.
    pub fn new(conn: Transport, pod: &'a WirePod, share: &'a Path) -> io::Result<Self> {
        let sigchld = sys::sigchld_fd()?;
        let ctrs = pod
            .init_containers
            .iter()
            .map(|c| (c, true))
            .chain(pod.containers.iter().map(|c| (c, false)))
            .map(|(c, init)| Ctr::new(c.clone().with_pod_ip(&pod_ip(pod)), init))
            .collect();
        Ok(Runtime {
            conn,
            host_open: true,
            decoder: FrameDecoder::new(),
            pod,
            share,
            resolv_conf: match &pod.network {
                Some(network) => net::resolv_conf(network).into_bytes(),
                None => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            },
            ctrs,
            pipes: Vec::new(),
            execs: Execs::default(),
            sigchld,
            next_init: 0,
            apps_started: false,
            stopping: false,
            failed_init: None,
            cgroups: PodCgroups::new(&pod.name),
            sidecars_stopping: false,
        })
    }

    fn send(&mut self, msg: &GuestMsg) {
        if !self.host_open {
            return;
        }
        let ok = encode(msg).and_then(|payload| write_frame(&mut self.conn, &payload));
        if let Err(e) = ok {
            eprintln!("peapod-init: lost the host connection: {e}");
            self.host_open = false;
            self.stop(self.pod.grace_period_s);
        }
    }

    fn event(&mut self, i: usize, event: ContainerEvent) {
        let msg = GuestMsg::ContainerEvent {
            container: self.ctrs[i].spec.name.clone(),
            init: self.ctrs[i].init,
            event,
        };
        self.send(&msg);
    }

    fn start(&mut self, i: usize) {
        let spec = &self.ctrs[i].spec;
        let limits = cgroup::Limits {
            memory: spec.memory_limit,
            cpu_millis: spec.cpu_limit_millis,
            pids: spec.pids_limit,
        };
        let (cg, warnings) = self.cgroups.create(&spec.name, &limits);
        // Said once, not at every restart.
        if self.ctrs[i].restarts == 0 {
            for w in warnings {
                let message = format!("warning: container {}: {w}", self.ctrs[i].spec.name);
                eprintln!("peapod-init: {message}");
                self.send(&GuestMsg::Error { message });
            }
        }
        let ctx = PodContext {
            pod: self.pod,
            share: self.share,
            resolv_conf: &self.resolv_conf,
        };
        let spawned = cg
            .as_ref()
            .map_or(Ok(vec![]), |cg| cg.procs_files())
            .and_then(|procs| container::spawn(&ctx, &self.ctrs[i].spec, &procs));
        match spawned {
            Ok(sp) => {
                self.ctrs[i].cgroup = cg;
                for (fd, stream) in [(sp.stdout, Stream::Stdout), (sp.stderr, Stream::Stderr)] {
                    if let Err(e) = sys::set_nonblocking(fd.as_fd()) {
                        eprintln!("peapod-init: {e}");
                    }
                    self.pipes.push(LogPipe {
                        fd,
                        ctr: i,
                        stream,
                        buf: Vec::new(),
                    });
                }
                self.ctrs[i].state = State::Running {
                    pid: sp.pid,
                    started_ns: sys::realtime_ns(),
                };
                self.ctrs[i].tail.clear();
                self.ctrs[i].started = false;
                self.ctrs[i].execing = Some(sp.execed);
            }
            Err(e) => {
                if let Some(cg) = cg {
                    cg.remove();
                }
                let message = format!("cannot start container {}: {e}", self.ctrs[i].spec.name);
                self.send(&GuestMsg::Error { message });
                self.ctrs[i].state = State::Running {
                    pid: 0,
                    started_ns: sys::realtime_ns(),
                };
                self.exited(i, ExitStatus::Code(127));
            }
        }
    }

    /// Container `i`'s setup pipe closed: its process exec'd its command,
    /// or its setup failed (it wrote a byte first, and its exit follows).
    /// Started, or, with a postStart hook, its hook starts and it counts
    /// as running once the hook passed. One that never ran is told as
    /// started (its exit comes next), and no hook, probe or next init
    /// container goes on from it.
    fn execed(&mut self, i: usize) {
        let Some(fd) = self.ctrs[i].execing.take() else {
            return;
        };
        let mut byte = [0u8; 1];
        let failed = matches!(
            io::Read::read(&mut std::fs::File::from(fd), &mut byte),
            Ok(1)
        );
        self.announce_start(i, !failed);
    }

    fn announce_start(&mut self, i: usize, ran: bool) {
        let Some(pid) = self.ctrs[i].pid() else {
            return;
        };
        match self.ctrs[i].spec.post_start.clone() {
            _ if !ran => self.event(i, ContainerEvent::Started { pid: pid as u32 }),
            None => {
                self.event(i, ContainerEvent::Started { pid: pid as u32 });
                self.start_probes(i);
            }
            Some(action) => {
                self.event(i, ContainerEvent::Created { pid: pid as u32 });
                self.start_hook(i, HookKind::PostStart, &action);
            }
        }
    }

    /// A container started: its probes begin; without a startup or
    /// readiness probe it is ready at once.
    fn start_probes(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.ctrs[i];
        c.probes = c
            .spec
            .probes
            .iter()
            .map(|p| Probe::new(p.clone(), now))
            .collect();
        c.started = !c.probes.iter().any(|p| p.kind() == ProbeKind::Startup);
        if c.started && !c.probes.iter().any(|p| p.kind() == ProbeKind::Readiness) {
            self.set_ready(i, true);
        }
        // A sidecar that started lets the next init container go.
        self.advance();
    }

    /// Tell the host when a container's readiness changes.
    fn set_ready(&mut self, i: usize, ready: bool) {
        if self.ctrs[i].ready != ready {
            self.ctrs[i].ready = ready;
            self.event(i, ContainerEvent::Ready { ready });
        }
    }

    /// Whether container `i`'s probe `p` runs now: a startup probe until
    /// it passed, the others after.
    fn probe_active(&self, i: usize, p: usize) -> bool {
        let c = &self.ctrs[i];
        c.pid().is_some()
            && c.stopping.is_none()
            && (c.probes[p].kind() == ProbeKind::Startup) != c.started
    }

    /// An attempt of container `i`'s probe `p` ended.
    fn probe_result(&mut self, i: usize, p: usize, verdict: Verdict) {
        let kind = self.ctrs[i].probes[p].kind();
        let Some(transition) = self.ctrs[i].probes[p].record(verdict) else {
            return;
        };
        match (kind, transition) {
            (ProbeKind::Startup, Transition::Healthy) => {
                let now = Instant::now();
                self.ctrs[i].started = true;
                for probe in &mut self.ctrs[i].probes {
                    probe.restart_clock(now);
                }
                if !self.ctrs[i]
                    .probes
                    .iter()
                    .any(|p| p.kind() == ProbeKind::Readiness)
                {
                    self.set_ready(i, true);
                }
                self.advance();
            }
            (ProbeKind::Readiness, Transition::Healthy) => self.set_ready(i, true),
            (ProbeKind::Liveness, Transition::Healthy) => {}
            (ProbeKind::Readiness, Transition::Unhealthy(why)) => {
                self.set_ready(i, false);
                self.unhealthy(i, kind, why);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Transition::Unhealthy(why)) => {
                self.set_ready(i, false);
                self.unhealthy(i, kind, why);
                // Restarted as the kubelet restarts it (preStop, stop
                // signal, SIGKILL after the grace period); restartPolicy
                // decides the rest.
                self.terminate(i, Duration::from_secs(self.pod.grace_period_s));
            }
        }
    }

    fn unhealthy(&mut self, i: usize, probe: ProbeKind, why: String) {
        let message = format!("{} probe failed: {why}", probe.word());
        eprintln!(
            "peapod-init: container {}: {message}",
            self.ctrs[i].spec.name
        );
        self.event(
            i,
            ContainerEvent::Unhealthy {
                probe,
                message: why,
            },
        );
    }

    /// Start due probe attempts and time out late ones.
    fn probe_timers(&mut self, now: Instant) {
        let pod_ip = pod_ip(self.pod);
        for i in 0..self.ctrs.len() {
            for p in 0..self.ctrs[i].probes.len() {
                if !self.probe_active(i, p) || self.ctrs[i].probes[p].due() > now {
                    continue;
                }
                let target = match &self.ctrs[i].probes[p].spec.action {
                    ProbeAction::Exec { .. } => self.exec_target(&self.ctrs[i].spec.name).ok(),
                    _ => None,
                };
                let verdict = self.ctrs[i].probes[p].tick(now, &pod_ip, target.as_ref());
                if let Some(v) = verdict {
                    self.probe_result(i, p, v);
                }
            }
        }
    }

    /// The connections of probes and hooks to poll, with (container,
    /// probe) for each (no probe: the container's hook).
    fn probe_fds(&self) -> (Vec<libc::pollfd>, Vec<(usize, Option<usize>)>) {
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for (i, c) in self.ctrs.iter().enumerate() {
            for (p, probe) in c.probes.iter().enumerate() {
                if let Some(fd) = probe.poll_fd() {
                    fds.push(fd);
                    owners.push((i, Some(p)));
                }
            }
            if let Some(fd) = c.hook.as_ref().and_then(|(_, a)| a.poll_fd()) {
                fds.push(fd);
                owners.push((i, None));
            }
        }
        (fds, owners)
    }

    /// Process `pid` ended: whether it was a probe's or a hook's.
    fn probe_exited(&mut self, pid: libc::pid_t, status: ExitStatus) -> bool {
        for i in 0..self.ctrs.len() {
            for p in 0..self.ctrs[i].probes.len() {
                if let Some(v) = self.ctrs[i].probes[p].on_exit(pid, status) {
                    self.probe_result(i, p, v);
                    return true;
                }
            }
            let hook = self.ctrs[i].hook.as_mut();
            if let Some(v) = hook.and_then(|(_, a)| a.on_exit(pid, status)) {
                self.hook_result(i, v);
                return true;
            }
        }
        false
    }

    /// Start container `i`'s `kind` hook, doing `action`. It has no time
    /// limit of its own: a preStop hook ends with the grace period.
    fn start_hook(&mut self, i: usize, kind: HookKind, action: &peapod_proto::ProbeAction) {
        let target = match action {
            ProbeAction::Exec { .. } => self.exec_target(&self.ctrs[i].spec.name).ok(),
            _ => None,
        };
        let pod_ip = pod_ip(self.pod);
        match Attempt::start(action, Instant::now(), None, &pod_ip, target.as_ref(), true) {
            Ok(a) => self.ctrs[i].hook = Some((kind, a)),
            Err(v) => {
                self.ctrs[i].hook = None;
                self.hook_done(i, kind, v);
            }
        }
    }

    /// Container `i`'s hook ended with `verdict`.
    fn hook_result(&mut self, i: usize, verdict: Verdict) {
        if let Some((kind, _)) = self.ctrs[i].hook.take() {
            self.hook_done(i, kind, verdict);
        }
    }

    fn hook_done(&mut self, i: usize, kind: HookKind, verdict: Verdict) {
        if let Verdict::Fail(why) = &verdict {
            let message = format!("{} hook failed: {why}", hook_field(kind));
            eprintln!(
                "peapod-init: container {}: {}: {message}",
                self.ctrs[i].spec.name,
                kind.failure()
            );
            self.event(
                i,
                ContainerEvent::HookFailed {
                    hook: kind,
                    message,
                },
            );
        }
        let Some(pid) = self.ctrs[i].pid() else {
            return;
        };
        match (kind, verdict) {
            (HookKind::PostStart, Verdict::Pass) => {
                self.event(i, ContainerEvent::Started { pid: pid as u32 });
                self.start_probes(i);
            }
            // As the kubelet: the container is stopped, and restartPolicy
            // decides the rest.
            (HookKind::PostStart, Verdict::Fail(_)) => {
                self.terminate(i, Duration::from_secs(self.pod.grace_period_s));
            }
            // Failed or not, the stop goes on.
            (HookKind::PreStop, _) => self.stop_signal(i),
        }
    }

    /// Stop container `i` as the kubelet stops one: its preStop hook, then
    /// its stop signal, SIGKILL once `grace` is over. One waiting to
    /// restart is done.
    fn terminate(&mut self, i: usize, grace: Duration) {
        let c = &mut self.ctrs[i];
        if let State::Backoff { .. } = c.state {
            c.state = State::Exited;
            return;
        }
        if c.pid().is_none() || c.stopping.is_some() {
            return;
        }
        c.stopping = Some(Stopping {
            kill_at: Instant::now() + grace,
            killed: false,
        });
        for probe in &mut c.probes {
            probe.cancel();
        }
        // A postStart hook under way ends (its process killed).
        c.hook = None;
        match c.spec.pre_stop.clone() {
            Some(action) if !grace.is_zero() => self.start_hook(i, HookKind::PreStop, &action),
            _ => self.stop_signal(i),
        }
    }

    /// Send container `i` its stop signal.
    fn stop_signal(&mut self, i: usize) {
        if let Some(pid) = self.ctrs[i].pid() {
            sys::kill(pid, self.ctrs[i].spec.stop_signal.unwrap_or(libc::SIGTERM));
        }
    }

    /// Containers being stopped whose grace period is over: a preStop hook
    /// still running is ended and the stop signal sent, with 2 s more;
    /// else SIGKILL.
    fn stop_timers(&mut self, now: Instant) {
        for i in 0..self.ctrs.len() {
            let Some(st) = self.ctrs[i].stopping else {
                continue;
            };
            if st.killed || now < st.kill_at || self.ctrs[i].pid().is_none() {
                continue;
            }
            if matches!(self.ctrs[i].hook, Some((HookKind::PreStop, _))) {
                self.ctrs[i].hook = None;
                let message = "preStop hook failed: it did not finish within the grace period";
                self.event(
                    i,
                    ContainerEvent::HookFailed {
                        hook: HookKind::PreStop,
                        message: message.into(),
                    },
                );
                self.stop_signal(i);
                self.ctrs[i].stopping = Some(Stopping {
                    kill_at: now + PRE_STOP_EXTRA,
                    killed: false,
                });
            } else if let Some(pid) = self.ctrs[i].pid() {
                sys::kill(pid, libc::SIGKILL);
                self.ctrs[i].stopping = Some(Stopping { killed: true, ..st });
            }
        }
    }

    /// Start what is due: the next init container, or all app containers.
    fn advance(&mut self) {
        if self.stopping || self.failed_init.is_some() || self.apps_started {
            return;
        }
        while self.next_init < self.pod.init_containers.len() {
            let i = self.next_init;
            let sidecar = self.ctrs[i].spec.sidecar;
            match &self.ctrs[i].state {
                State::Waiting => {
                    self.start(i);
                    // The next one waits for this one to succeed, or, for a
                    // sidecar, only to have started (looked at next round).
                    if !sidecar {
                        return;
                    }
                }
                State::Exited if self.ctrs[i].last.as_ref().is_some_and(|l| l.0.success()) => {
                    self.next_init += 1;
                }
                // As the kubelet: once the sidecar has started (its
                // command runs, its postStart hook and startup probe
                // passed).
                State::Running { .. }
                    if sidecar && self.ctrs[i].execing.is_none() && self.ctrs[i].started =>
                {
                    self.next_init += 1
                }
                _ => return,
            }
        }
        self.apps_started = true;
        for i in self.pod.init_containers.len()..self.ctrs.len() {
            if !self.ctrs[i].removed {
                self.start(i);
            }
        }
    }

    /// The container named `name` that is part of the pod (not removed).
    fn find(&self, name: &str) -> Option<usize> {
        self.ctrs
            .iter()
            .position(|c| !c.removed && c.spec.name == name)
    }

    /// `add_container`: a new app container joins the running pod; it
    /// starts now, or with the other app containers once the init
    /// containers are done.
    fn add(&mut self, spec: peapod_proto::WireContainer) {
        let spec = spec.with_pod_ip(&pod_ip(self.pod));
        let volumes = self.pod.volumes.iter().map(|v| v.name.as_str()).collect();
        let refused = if !self.pod.sandbox {
            Some("the pod is not a sandbox: containers join only pods started as one".into())
        } else if self.stopping || self.failed_init.is_some() {
            Some("the pod is ending".to_string())
        } else if self.find(&spec.name).is_some() {
            Some("the pod already has a container of that name".into())
        } else if spec.sidecar {
            Some("only init containers are sidecars".into())
        } else {
            spec.validate("container", &volumes)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(message) = refused {
            self.refuse(&spec.name, message);
            return;
        }
        self.ctrs.push(Ctr::new(spec, false));
        if self.apps_started {
            self.start(self.ctrs.len() - 1);
        }
    }

    /// `remove_container`: forget a container that has ended for good (or
    /// never started).
    fn remove(&mut self, name: &str) {
        let why = match self.find(name) {
            None => Some(format!(
                "pod {:?} has no container of that name",
                self.pod.name
            )),
            Some(i) => match self.ctrs[i].state {
                State::Exited | State::Waiting => {
                    self.ctrs[i].removed = true;
                    self.ctrs[i].state = State::Exited;
                    self.event(i, ContainerEvent::Removed {});
                    None
                }
                State::Running { .. } | State::Backoff { .. } => {
                    Some("the container has not ended; stop it first".to_string())
                }
            },
        };
        if let Some(message) = why {
            self.refuse(name, message);
        }
    }

    /// Say that a request about container `name` was refused, and why.
    fn refuse(&mut self, name: &str, message: String) {
        self.send(&GuestMsg::ContainerEvent {
            container: name.to_owned(),
            init: false,
            event: ContainerEvent::Refused { message },
        });
    }

    /// A container's main process ended with `status`.
    fn exited(&mut self, i: usize, status: ExitStatus) {
        // One that ended while still setting up never ran.
        if self.ctrs[i].execing.take().is_some() {
            self.announce_start(i, false);
        }
        // Its probes and hook end with it (dropping one kills its process).
        self.ctrs[i].probes.clear();
        self.ctrs[i].hook = None;
        self.ctrs[i].stopping = None;
        self.ctrs[i].ready = false;
        // Its output up to now goes out before the event.
        for p in 0..self.pipes.len() {
            if self.pipes[p].ctr == i {
                self.read_pipe(p);
            }
        }
        // The OOM counter first, then the cgroup goes with what is left in it.
        let oom_killed = self.ctrs[i].cgroup.take().is_some_and(|cg| {
            let oom = cg.oom_killed();
            cg.remove();
            oom
        });
        let (code, signal) = match status {
            ExitStatus::Code(c) => (Some(c), None),
            ExitStatus::Signal(s) => (None, Some(s)),
        };
        let message = self.ctrs[i].termination_message(status);
        self.event(
            i,
            ContainerEvent::Exited {
                code,
                signal,
                oom_killed,
                message: message.clone(),
            },
        );
        let reason = if oom_killed {
            OOM_KILLED
        } else if status.success() {
            "Completed"
        } else {
            "Error"
        };
        self.ctrs[i].last = Some((
            status,
            Termination {
                code,
                signal,
                reason: reason.into(),
                finished_at_ns: sys::realtime_ns(),
                message,
            },
        ));
        let init = self.ctrs[i].init;
        let sidecar = self.ctrs[i].spec.sidecar;
        let restart = if sidecar {
            // A sidecar runs for the life of the pod, whatever restartPolicy
            // says, until the pod winds down.
            !self.stopping && !self.sidecars_stopping && self.failed_init.is_none()
        } else {
            // Init containers only restart after failures, and never under
            // `Never`.
            !self.stopping
                && self.pod.restart_policy.restarts(status.success())
                && !(init && status.success())
        };
        if restart {
            let delay = self.pod.backoff.delay(self.ctrs[i].restarts);
            self.ctrs[i].restarts += 1;
            self.ctrs[i].state = State::Backoff {
                until: Instant::now() + delay,
            };
            let restart_count = self.ctrs[i].restarts;
            self.event(
                i,
                ContainerEvent::Restarting {
                    restart_count,
                    backoff_ms: delay.as_millis() as u64,
                },
            );
        } else {
            self.ctrs[i].state = State::Exited;
            if init && !sidecar && !status.success() && !self.stopping {
                self.failed_init = Some(format!(
                    "init container {} failed ({}{})",
                    self.ctrs[i].spec.name,
                    describe(status),
                    if oom_killed { ", OOMKilled" } else { "" }
                ));
            }
        }
        self.advance();
    }

    /// Begin stopping the pod: every container is stopped, within the
    /// grace period.
    fn stop(&mut self, grace_period_s: u64) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for i in 0..self.ctrs.len() {
            self.terminate(i, Duration::from_secs(grace_period_s));
        }
    }

    /// Once every app container is done for good (or an init container
    /// failed), sidecars get SIGTERM, and SIGKILL after the grace period;
    /// how they end does not change the pod's phase. (Not in a sandbox:
    /// more app containers may join it.)
    fn stop_sidecars_when_done(&mut self) {
        if self.sidecars_stopping || self.stopping {
            return;
        }
        let apps_done = self.apps_started
            && !self.pod.sandbox
            && self
                .ctrs
                .iter()
                .filter(|c| !c.init)
                .all(|c| matches!(c.state, State::Exited));
        if !(apps_done || self.failed_init.is_some()) || !self.ctrs.iter().any(|c| c.spec.sidecar) {
            return;
        }
        self.sidecars_stopping = true;
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].spec.sidecar {
                self.terminate(i, Duration::from_secs(self.pod.grace_period_s));
            }
        }
    }

    fn running(&self) -> impl Iterator<Item = libc::pid_t> + '_ {
        self.ctrs.iter().filter_map(|c| match c.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        })
    }

    /// The pod is over once nothing runs and nothing will start again.
    fn outcome(&self) -> Option<Outcome> {
        if self.running().next().is_some() {
            return None;
        }
        // A sandbox runs until it is stopped, whatever its containers do.
        if self.pod.sandbox && !self.stopping {
            return None;
        }
        if let Some(reason) = &self.failed_init {
            return Some(Outcome {
                phase: PodPhase::Failed,
                reason: reason.clone(),
            });
        }
        let pending =
            |c: &Ctr| !c.removed && matches!(c.state, State::Backoff { .. } | State::Waiting);
        let stopping = self.stopping;
        if !stopping && (!self.apps_started || self.ctrs.iter().any(pending)) {
            return None;
        }
        let failed: Vec<String> = self
            .ctrs
            .iter()
            .filter(|c| !c.init && !c.removed)
            .filter_map(|c| match &c.last {
                // Exit code 0 is success even if the OOM killer hit a child.
                Some((s, _)) if s.success() => None,
                Some((s, t)) if t.reason == OOM_KILLED => {
                    Some(format!("{} {} ({OOM_KILLED})", c.spec.name, describe(*s)))
                }
                Some((s, _)) => Some(format!("{} {}", c.spec.name, describe(*s))),
                None => Some(format!("{} never ran", c.spec.name)),
            })
            .collect();
        let phase = if failed.is_empty() {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        };
        let mut reason = if failed.is_empty() {
            "all containers completed".to_string()
        } else {
            format!("failed: {}", failed.join(", "))
        };
        if stopping {
            reason = format!("stopped; {reason}");
        }
        Some(Outcome { phase, reason })
    }

    fn status(&self) -> PodStatus {
        let containers = self
            .ctrs
            .iter()
            .filter(|c| !c.removed)
            .map(|c| ContainerStatus {
                name: c.spec.name.clone(),
                init: c.init,
                state: match (&c.state, &c.last) {
                    (State::Running { .. }, _) if c.execing.is_some() => ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                    },
                    (State::Running { started_ns, .. }, _) => ContainerState::Running {
                        started_at_ns: *started_ns,
                    },
                    (State::Exited, Some((_, t))) => ContainerState::Terminated(t.clone()),
                    (State::Backoff { .. }, _) => ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                    },
                    _ => ContainerState::Waiting {
                        reason: "PodInitializing".into(),
                    },
                },
                restart_count: c.restarts,
                last_termination: c.last.as_ref().map(|l| l.1.clone()),
                ready: c.ready,
                probe_failure: None,
                hook_failure: None,
            })
            .collect();
        let phase = if self.apps_started {
            PodPhase::Running
        } else {
            PodPhase::Pending
        };
        PodStatus { phase, containers }
    }

    /// The running container named `name`, for an exec; else why not.
    fn exec_target(&self, name: &str) -> Result<exec::Target, String> {
        let c = self
            .find(name)
            .map(|i| &self.ctrs[i])
            .ok_or_else(|| format!("no container {name:?} in pod {:?}", self.pod.name))?;
        let pid = match c.state {
            State::Running { .. } if c.execing.is_some() => {
                return Err(format!("container {name:?} is still being created"))
            }
            State::Running { pid, .. } if pid > 0 => pid,
            State::Waiting => return Err(format!("container {name:?} has not started")),
            State::Exited => return Err(format!("container {name:?} has exited")),
            _ => return Err(format!("container {name:?} is not running")),
        };
        let cgroup_procs = c
            .cgroup
            .as_ref()
            .map_or(Ok(vec![]), |cg| cg.procs_files())
            .map_err(|e| format!("container {name:?}: {e}"))?;
        Ok(exec::Target {
            pid,
            env: c.spec.env.clone(),
            working_dir: c.spec.working_dir.clone(),
            uid: c.spec.uid,
            groups: c.spec.supplemental_groups.clone(),
            no_new_privs: c.spec.no_new_privs,
            gid: c.spec.gid,
            cgroup_procs,
        })
    }

    fn send_all(&mut self, msgs: Vec<GuestMsg>) {
        for msg in msgs {
            self.send(&msg);
        }
    }

    fn on_host_msg(&mut self, msg: HostMsg) {
        match msg {
            HostMsg::Exec {
                exec_id,
                container,
                command,
                tty,
                stdin,
                env,
                working_dir,
                user,
            } => {
                let target = self.exec_target(&container);
                let req = exec::Request {
                    exec_id,
                    command,
                    tty,
                    stdin,
                    env,
                    working_dir,
                    user,
                };
                let msgs = self.execs.start(req, target);
                self.send_all(msgs);
            }
            HostMsg::ExecStdin { exec_id, data, eof } => {
                let msgs = self.execs.stdin(exec_id, data, eof);
                self.send_all(msgs);
            }
            HostMsg::ExecResize {
                exec_id,
                rows,
                cols,
            } => self.execs.resize(exec_id, rows, cols),
            HostMsg::StopPod { grace_period_s } => self.stop(grace_period_s),
            HostMsg::StatusQuery {} => {
                let status = self.status();
                self.send(&GuestMsg::Status(status));
            }
            HostMsg::AddContainer { container } => self.add(*container),
            HostMsg::RemoveContainer { container } => self.remove(&container),
            HostMsg::Signal { container, signal } => {
                let pids: Vec<libc::pid_t> = self
                    .ctrs
                    .iter()
                    .filter(|c| container.as_ref().is_none_or(|n| *n == c.spec.name))
                    .filter_map(|c| match c.state {
                        State::Running { pid, .. } if pid > 0 => Some(pid),
                        _ => None,
                    })
                    .collect();
                for pid in pids {
                    sys::kill(pid, signal);
                }
            }
            other => {
                let message = format!(
                    "`{}` is not supported by this peapod-init",
                    peapod_proto::Message::kind(&other)
                );
                self.send(&GuestMsg::Error { message });
            }
        }
    }

    fn read_host(&mut self) {
        match self.decoder.read_from(&mut self.conn) {
            Ok(0) => {
                // The host is gone: nobody will ever stop the pod otherwise.
                self.host_open = false;
                self.stop(self.pod.grace_period_s);
            }
            Ok(_) => loop {
                match self.decoder.next_frame() {
                    Ok(Some(payload)) => match peapod_proto::decode::<HostMsg>(&payload) {
                        Ok(msg) => self.on_host_msg(msg),
                        Err(e) => self.send(&GuestMsg::Error {
                            message: e.to_string(),
                        }),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("peapod-init: bad frame from the host: {e}");
                        self.host_open = false;
                        self.stop(self.pod.grace_period_s);
                        break;
                    }
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("peapod-init: reading from the host: {e}");
                self.host_open = false;
                self.stop(self.pod.grace_period_s);
            }
        }
    }

    /// Read what a pipe holds now and send it; returns false at EOF.
    fn read_pipe(&mut self, p: usize) -> bool {
        let mut chunk = [0u8; 16 << 10];
        let mut open = true;
        loop {
            let fd = self.pipes[p].fd.as_raw_fd();
            // SAFETY: reading into a buffer we own from an open descriptor.
            let r = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if r > 0 {
                let ctr = self.pipes[p].ctr;
                self.ctrs[ctr].keep_tail(&chunk[..r as usize]);
                self.pipes[p].buf.extend_from_slice(&chunk[..r as usize]);
                self.flush_pipe(p, false);
                continue;
            }
            if r == 0 {
                open = false;
            } else if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if !open {
            self.flush_pipe(p, true);
        }
        open
    }

    fn flush_pipe(&mut self, p: usize, eof: bool) {
        let chunks = take_chunks(&mut self.pipes[p].buf, eof);
        let (ctr, stream) = (self.pipes[p].ctr, self.pipes[p].stream);
        for (data, partial) in chunks {
            let msg = GuestMsg::Log {
                container: self.ctrs[ctr].spec.name.clone(),
                stream,
                timestamp_ns: sys::realtime_ns(),
                partial,
                data,
            };
            self.send(&msg);
        }
    }

    fn reap(&mut self) {
        sys::drain_signalfd(self.sigchld.as_fd());
        while let Some((pid, status)) = sys::reap_one() {
            let found = self
                .ctrs
                .iter()
                .position(|c| matches!(c.state, State::Running { pid: p, .. } if p == pid));
            // Anything else is an exec session's process, or a re-parented
            // orphan: reaped, nothing to report.
            if let Some(i) = found {
                self.execs.container_exited(pid);
                self.exited(i, status);
            } else if self.probe_exited(pid, status) {
            } else if let Some(msgs) = self.execs.exited(pid, status) {
                self.send_all(msgs);
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if !self.stopping {
            self.probe_timers(now);
        }
        for i in 0..self.ctrs.len() {
            let hook = self.ctrs[i].hook.as_mut();
            if let Some(v) = hook.and_then(|(_, a)| a.expired(now)) {
                self.hook_result(i, v);
            }
        }
        self.stop_timers(now);
        for i in 0..self.ctrs.len() {
            if let State::Backoff { until } = self.ctrs[i].state {
                if now >= until && !self.stopping {
                    self.start(i);
                    // A restarted sidecar may let the next init container go.
                    self.advance();
                }
            }
        }
    }

    fn next_timeout(&self) -> libc::c_int {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (i, c) in self.ctrs.iter().enumerate() {
            let backoff = match c.state {
                State::Backoff { until } => Some(until),
                _ => None,
            };
            let probes = (0..c.probes.len())
                .filter(|&p| !self.stopping && self.probe_active(i, p))
                .map(|p| c.probes[p].due());
            let hook = c.hook.as_ref().and_then(|(_, a)| a.due());
            let kill = c.stopping.filter(|s| !s.killed).map(|s| s.kill_at);
            for t in probes.chain(backoff).chain(hook).chain(kill) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        match next {
            None => -1,
            Some(t) => t
                .saturating_duration_since(now)
                .as_millis()
                .saturating_add(1)
                .min(60_000) as libc::c_int,
        }
    }

    /// Run the pod to its end and tell the host how it ended.
    pub fn run(mut self) -> Outcome {
        self.advance();
        let outcome = loop {
            self.stop_sidecars_when_done();
            if let Some(outcome) = self.outcome() {
                break outcome;
            }
            let mut fds = vec![
                libc::pollfd {
                    fd: self.sigchld.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if self.host_open {
                        self.conn.as_raw_fd()
                    } else {
                        -1
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            fds.extend(self.pipes.iter().map(|p| libc::pollfd {
                fd: p.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            let exec_fds = fds.len();
            fds.extend(self.execs.poll_fds());
            let probe_fds = fds.len();
            let (pfds, probe_owners) = self.probe_fds();
            fds.extend(pfds);
            let execing_fds = fds.len();
            let execing: Vec<usize> = (0..self.ctrs.len())
                .filter(|&i| self.ctrs[i].execing.is_some())
                .collect();
            fds.extend(execing.iter().filter_map(|&i| {
                self.ctrs[i].execing.as_ref().map(|fd| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
            }));
            let timeout = self.next_timeout();
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("peapod-init: poll: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            // A container's start first, then its output, then its exit.
            for (k, &i) in execing.iter().enumerate() {
                if fds[execing_fds + k].revents != 0 {
                    self.execed(i);
                }
            }
            let mut closed = Vec::new();
            for (p, pfd) in fds[2..exec_fds].iter().enumerate() {
                if pfd.revents != 0 && !self.read_pipe(p) {
                    closed.push(p);
                }
            }
            for p in closed.into_iter().rev() {
                self.pipes.remove(p);
            }
            let msgs = self.execs.on_poll(&fds[exec_fds..probe_fds]);
            self.send_all(msgs);
            for (k, &(i, p)) in probe_owners.iter().enumerate() {
                let revents = fds[probe_fds + k].revents;
                if revents == 0 {
                    continue;
                }
                match p {
                    Some(p) => {
                        let probe = self.ctrs[i].probes.get_mut(p);
                        if let Some(v) = probe.and_then(|pr| pr.on_ready(revents)) {
                            self.probe_result(i, p, v);
                        }
                    }
                    None => {
                        let hook = self.ctrs[i].hook.as_mut();
                        if let Some(v) = hook.and_then(|(_, a)| a.on_ready(revents)) {
                            self.hook_result(i, v);
                        }
                    }
                }
            }
            if fds[0].revents != 0 {
                self.reap();
            }
            if fds[1].revents != 0 {
                self.read_host();
            }
            if !self.host_open {
                // Nobody is left to talk to an exec session.
                self.execs.kill_all();
            }
            self.on_timers();
        };
        // Exec sessions do not outlive the pod (nor keep its cgroups).
        let msgs = self.execs.finish();
        self.send_all(msgs);
        // Whatever is still buffered in the pipes goes out before the end.
        for p in 0..self.pipes.len() {
            self.read_pipe(p);
            self.flush_pipe(p, true);
        }
        for dir in self.cgroups.remove_all(Duration::from_secs(5)) {
            let message = format!("warning: cannot remove cgroup {}", dir.display());
            eprintln!("peapod-init: {message}");
            self.send(&GuestMsg::Error { message });
        }
        self.send(&GuestMsg::PodExited {
            phase: outcome.phase,
            reason: outcome.reason.clone(),
        });
        outcome
    }
}

/// The hook's field name (`postStart`).
fn hook_field(kind: HookKind) -> &'static str {
    match kind {
        HookKind::PostStart => "postStart",
        HookKind::PreStop => "preStop",
    }
}

fn describe(s: ExitStatus) -> String {
    match s {
        ExitStatus::Code(c) => format!("exit code {c}"),
        ExitStatus::Signal(s) => format!("signal {s}"),
    }
}
