//! The task service: containerd's task API v2 on the peapod pod API.
//!
//! One shim serves one pod. The sandbox task (CRI's pause container, or
//! the one container of a `ctr run`) starts the pod's monitor through
//! `peapod::sandbox`, exactly as `peapod run -d` does (ledger, passt,
//! state, `peapod ps`); CRI containers join it through the monitor's API.
//! Every task reports the monitor's pid, as Kata reports its hypervisor's.
//!
//! Exits are learnt from the pod's state file (a watcher polls it), so a
//! monitor or VM that dies still ends every task: each Wait returns, each
//! exit event goes out, and Delete cleans up.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_shim::api;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, ExitSignal, TtrpcContext, TtrpcResult};
use oci_spec::runtime::Spec;
use peapod::sandbox::api::{self as pod_api, Reply, Request};
use peapod::sandbox::artifacts::GuestPaths;
use peapod::sandbox::launch::{self, PodOptions, SandboxSize};
use peapod::sandbox::{self, Isolation, PodState};
use peapod_proto::{Connection, ContainerState, Termination, WireContainer};

use crate::config::ShimConfig;
use crate::mounts;
use crate::oci::{self, Kind};
use crate::stdio::{LogPump, Sink};

/// How often the watcher reads the pod's state.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The file in a sandbox task's bundle that names its pod directory, for
/// `delete` after the shim itself died.
pub const POD_FILE: &str = "peapod-pod";
/// The file in a container task's bundle that names where its root
/// filesystem is bound in the pod directory.
pub const BIND_FILE: &str = "peapod-rootfs";

/// A container's mounts, made at Create.
struct Prepared {
    name: String,
    wire: Option<WireContainer>,
    /// Its root filesystem in the pod directory.
    bound: PathBuf,
    /// `bundle/rootfs`, when the snapshot was mounted there.
    rootfs: Option<PathBuf>,
    /// Its host binds in the pod directory.
    binds_dir: PathBuf,
}

fn bind_of(b: &oci::HostBind, source: String) -> peapod_proto::WireBind {
    peapod_proto::WireBind {
        source,
        destination: b.destination.clone(),
        read_only: b.read_only,
    }
}

/// Unmount a container's binds, its root filesystem in the pod directory
/// and its snapshot, and remove the mount points.
fn release(rootfs: &mut Option<PathBuf>, bound: &Path, binds: &Path) -> Result<(), String> {
    if !binds.as_os_str().is_empty() {
        mounts::unmount_all(binds)?;
        let _ = std::fs::remove_dir_all(binds);
    }
    mounts::unmount_all(bound)?;
    let _ = std::fs::remove_dir(bound);
    if let Some(r) = rootfs.take() {
        mounts::unmount_all(&r)?;
    }
    Ok(())
}

/// Exit status of a task whose pod went away under it (as SIGKILL).
const KILLED: u32 = 137;

fn err(code: Code, msg: impl std::fmt::Display) -> ttrpc::Error {
    log::warn!("{msg}");
    ttrpc::error::get_rpc_status(code, msg.to_string())
}

fn now() -> Timestamp {
    Timestamp::now()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Stopped,
}

/// A process containerd knows: a task's, or an exec's.
struct Proc {
    status: Status,
    exit_code: u32,
    exited_at: Option<Timestamp>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
}

impl Proc {
    fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            status: Status::Created,
            exit_code: 0,
            exited_at: None,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
        }
    }

    fn exit(&mut self, code: u32) {
        self.status = Status::Stopped;
        self.exit_code = code;
        self.exited_at = Some(now());
    }
}

struct Exec {
    proc_: Proc,
    command: Vec<String>,
    /// Writes stdin and terminal sizes to the monitor's exec session.
    writer: Option<Arc<Mutex<Connection<UnixStream>>>>,
}

struct Task {
    kind: Kind,
    bundle: String,
    proc_: Proc,
    /// The container's name in the pod (none for a CRI sandbox).
    name: Option<String>,
    /// The container to add when the task starts.
    wire: Option<WireContainer>,
    image: String,
    /// Where its root filesystem is bound in the pod directory.
    bound: Option<PathBuf>,
    /// Where its host binds are bound in the pod directory.
    binds_dir: Option<PathBuf>,
    /// `bundle/rootfs` when the shim mounted the snapshot there.
    rootfs: Option<PathBuf>,
    pump: Option<LogPump>,
    execs: BTreeMap<String, Exec>,
}

impl Task {
    fn prepared(&mut self, p: Prepared) {
        self.name = Some(p.name);
        self.wire = p.wire;
        self.bound = Some(p.bound);
        self.rootfs = p.rootfs;
        self.binds_dir = Some(p.binds_dir);
    }
}

struct Pod {
    name: String,
    dir: PathBuf,
    pid: u32,
    /// The monitor is gone (the pod ended or died).
    gone: bool,
    /// The pod ended by a kill (not a clean stop).
    killed: bool,
}

#[derive(Default)]
struct Tasks {
    pod: Option<Pod>,
    tasks: BTreeMap<String, Task>,
}

impl Tasks {
    fn pid(&self) -> u32 {
        self.pod.as_ref().map_or(0, |p| p.pid)
    }

    /// Task `id` and its process: the task's own, or exec `exec_id`'s.
    fn process(&self, id: &str, exec_id: &str) -> Result<(&Task, &Proc), ttrpc::Error> {
        let task = self
            .tasks
            .get(id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("task {id} not found")))?;
        if exec_id.is_empty() {
            return Ok((task, &task.proc_));
        }
        let e = task
            .execs
            .get(exec_id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {exec_id} not found")))?;
        Ok((task, &e.proc_))
    }
}

enum Event {
    Create(TaskCreate),
    Start(TaskStart),
    Exit(TaskExit),
    Delete(TaskDelete),
    ExecAdded(TaskExecAdded),
    ExecStarted(TaskExecStarted),
}

impl Event {
    fn into_parts(self) -> (&'static str, Box<dyn MessageDyn>) {
        match self {
            Event::Create(e) => (topics::TASK_CREATE_EVENT_TOPIC, Box::new(e)),
            Event::Start(e) => (topics::TASK_START_EVENT_TOPIC, Box::new(e)),
            Event::Exit(e) => (topics::TASK_EXIT_EVENT_TOPIC, Box::new(e)),
            Event::Delete(e) => (topics::TASK_DELETE_EVENT_TOPIC, Box::new(e)),
            Event::ExecAdded(e) => (topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(e)),
            Event::ExecStarted(e) => (topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(e)),
        }
    }
}

struct Inner {
    config: Result<ShimConfig, String>,
    exit: Arc<ExitSignal>,
    /// Events, published in order by one thread.
    events: Mutex<mpsc::Sender<Event>>,
    state: Mutex<Tasks>,
    changed: Condvar,
}

/// The task service of one shim.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn exit_event(id: &str, exec_id: &str, pid: u32, p: &Proc) -> Event {
    Event::Exit(TaskExit {
        container_id: id.into(),
        id: if exec_id.is_empty() { id } else { exec_id }.into(),
        pid,
        exit_status: p.exit_code,
        exited_at: MessageField::from_option(p.exited_at.clone()),
        ..Default::default()
    })
}

fn code_of(t: &Termination) -> u32 {
    match (t.code, t.signal) {
        (Some(c), _) => c as u32,
        (None, Some(s)) => 128 + s as u32,
        (None, None) => 255,
    }
}

impl Service {
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Service {
        let (tx, rx) = mpsc::channel::<Event>();
        let ns = namespace.to_owned();
        std::thread::spawn(move || {
            for ev in rx {
                let (topic, msg) = ev.into_parts();
                if let Err(e) = publisher.publish(Context::default(), topic, &ns, msg) {
                    log::warn!("cannot publish {topic}: {e}");
                }
            }
        });
        Service {
            inner: Arc::new(Inner {
                config: ShimConfig::load(),
                exit,
                events: Mutex::new(tx),
                state: Mutex::new(Tasks::default()),
                changed: Condvar::new(),
            }),
        }
    }

    fn publish(&self, ev: Event) {
        let _ = lock(&self.inner.events).send(ev);
    }

    fn config(&self) -> Result<&ShimConfig, ttrpc::Error> {
        self.inner
            .config
            .as_ref()
            .map_err(|e| err(Code::FAILED_PRECONDITION, e))
    }

    /// Start the pod's monitor for sandbox (or solo) task `id`.
    fn start_pod(&self, id: &str, spec: &Spec, kind: Kind, bundle: &Path) -> TtrpcResult<Pod> {
        let cfg = self.config()?;
        let ann = spec.annotations().clone().unwrap_or_default();
        let name = oci::pod_name(&ann, id);
        let (memory, millicpu) =
            oci::pod_size(spec, kind).map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
        let size = SandboxSize {
            memory: memory.unwrap_or(cfg.default_memory_mib << 20),
            millicpu: millicpu.unwrap_or(cfg.default_millicpu),
        };
        let opts = PodOptions {
            isolation: if cfg.isolation == "namespace" {
                Isolation::Namespace
            } else {
                Isolation::Vm
            },
            guest: GuestPaths {
                kernel: cfg.kernel.clone(),
                init: cfg.init.clone(),
            },
            no_network: cfg.network == "none",
            publish: vec![],
            verbose_console: false,
            console_log: None,
            boot_timeout_s: cfg.boot_timeout_s,
            force_boot: false,
            started_ns: sandbox::state::now_ns(),
            // A sandbox has no pod file; its mounts are containerd's.
            allow_host_paths: vec![],
            configmaps: vec![],
            pull: Default::default(),
        };
        let mut launch = launch::prepare_sandbox(&name, size, &opts)
            .map_err(|e| err(Code::INVALID_ARGUMENT, format!("pod {name}: {e:#}")))?;
        launch.monitor_exe = Some(
            cfg.peapod_exe()
                .map_err(|e| err(Code::FAILED_PRECONDITION, e))?,
        );
        let started = sandbox::start(&launch, |_| {}).map_err(|(e, _)| {
            let code = if e.usage {
                Code::RESOURCE_EXHAUSTED
            } else {
                Code::INTERNAL
            };
            err(code, format!("pod {name}: {}", e.message))
        })?;
        let pid = started.monitor.id();
        // The shim's reaper collects the monitor when it exits.
        drop(started.monitor);
        let dir = started.dir;
        if let Err(e) = std::fs::write(bundle.join(POD_FILE), dir.as_os_str().as_encoded_bytes()) {
            log::warn!("cannot note the pod in {}: {e}", bundle.display());
        }
        log::info!("pod {name} started (monitor {pid}) for task {id}");
        Ok(Pod {
            name,
            dir,
            pid,
            gone: false,
            killed: false,
        })
    }

    /// Mount a container's root filesystem and its host binds where the
    /// pod sees them, and describe the container; on an error nothing is
    /// left mounted.
    fn prepare_container(
        &self,
        t: &Tasks,
        req: &api::CreateTaskRequest,
        spec: &Spec,
        pod: (&str, &Path),
        solo_name: Option<&str>,
    ) -> Result<Prepared, ttrpc::Error> {
        oci::check(spec).map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
        let ann = spec.annotations().clone().unwrap_or_default();
        let taken = |n: &str| t.tasks.values().any(|x| x.name.as_deref() == Some(n));
        let name = match solo_name {
            Some(n) => n.to_owned(),
            None => oci::container_name(&ann, &req.id, &taken),
        };
        let isolation = self.isolation()?;
        let (bound, share) = launch::joining_rootfs(pod.1, isolation, &name);
        let mut wire =
            oci::container(spec, &name, share).map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
        let bundle = Path::new(&req.bundle);
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| "rootfs".into());
        let rootfs = if root.is_absolute() {
            root
        } else {
            bundle.join(root)
        };
        let binds_dir = pod.1.join(sandbox::BINDS_DIR).join(&name);
        let mut p = Prepared {
            name: name.clone(),
            wire: None,
            bound: bound.clone(),
            rootfs: None,
            binds_dir: binds_dir.clone(),
        };
        let notes = format!("{}\n{}\n", bound.display(), binds_dir.display());
        let _ = std::fs::write(bundle.join(BIND_FILE), notes);
        let mounted = self.mount_container(t, req, spec, &rootfs, &mut p, &mut wire, isolation);
        if let Err(e) = mounted {
            let _ = release(&mut p.rootfs, &p.bound, &p.binds_dir);
            return Err(err(Code::INVALID_ARGUMENT, e));
        }
        log::info!(
            "container {name} of pod {}: root filesystem and binds mounted",
            pod.0
        );
        p.wire = Some(wire);
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn mount_container(
        &self,
        t: &Tasks,
        req: &api::CreateTaskRequest,
        spec: &Spec,
        rootfs: &Path,
        p: &mut Prepared,
        wire: &mut WireContainer,
        isolation: Isolation,
    ) -> Result<(), String> {
        let binds = oci::host_binds(spec);
        let pod_dir = p
            .binds_dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        if isolation == Isolation::Namespace {
            // The pod's mounts are private: mount in its namespace, where
            // the pod's end takes the mounts with it.
            let holder =
                mounts::pod_mount_ns_holder(t.pid()).ok_or("the pod's namespaces are gone")?;
            mounts::mount_in_namespace_of(holder, &req.rootfs, rootfs, &p.bound)?;
            for (i, b) in binds.iter().enumerate() {
                let (host, share) = launch::joining_bind(pod_dir, isolation, &p.name, i);
                mounts::mount_in_namespace_of(holder, &[], &b.source, &host)?;
                wire.binds.push(bind_of(b, share));
            }
            return Ok(());
        }
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(rootfs).map_err(|e| format!("{}: {e}", rootfs.display()))?;
            p.rootfs = Some(rootfs.to_owned());
            mounts::mount_rootfs(&req.rootfs, rootfs)?;
        }
        mounts::bind(rootfs, &p.bound)?;
        for (i, b) in binds.iter().enumerate() {
            let (host, share) = launch::joining_bind(pod_dir, isolation, &p.name, i);
            mounts::bind(&b.source, &host)
                .map_err(|e| format!("config.json: mounts ({}): {e}", b.destination))?;
            wire.binds.push(bind_of(b, share));
        }
        Ok(())
    }

    fn isolation(&self) -> Result<Isolation, ttrpc::Error> {
        Ok(if self.config()?.isolation == "namespace" {
            Isolation::Namespace
        } else {
            Isolation::Vm
        })
    }

    /// Undo a container's mounts (its binds and root filesystem in the pod
    /// directory, then the snapshot).
    fn release_rootfs(task: &mut Task) -> Result<(), String> {
        if let Some(b) = task.bound.take() {
            let binds = task.binds_dir.take().unwrap_or_default();
            release(&mut task.rootfs, &b, &binds)?;
        }
        Ok(())
    }

    fn spawn_watcher(&self) {
        let me = self.clone();
        std::thread::spawn(move || me.watch());
    }

    /// Follow the pod's state: container exits, output, the pod's end.
    fn watch(&self) {
        loop {
            std::thread::sleep(WATCH_EVERY);
            let Some((dir, pid)) = lock(&self.inner.state)
                .pod
                .as_ref()
                .map(|p| (p.dir.clone(), p.pid))
            else {
                return;
            };
            reap(pid);
            let state = PodState::load(&dir).ok();
            let gone = state
                .as_ref()
                .is_none_or(|s| s.ended() || !s.monitor_alive());
            // Ended containers: their exit code, and their pumps to finish
            // outside the lock.
            let mut ending: Vec<(String, u32, Option<LogPump>)> = Vec::new();
            {
                let mut t = lock(&self.inner.state);
                for (id, task) in t.tasks.iter_mut() {
                    if task.proc_.status != Status::Running {
                        continue;
                    }
                    if let Some(p) = task.pump.as_mut() {
                        p.pump();
                    }
                    let code = match (&task.name, task.kind) {
                        (_, Kind::Sandbox) => gone.then_some(0),
                        (Some(name), _) => {
                            let term = state.as_ref().and_then(|s| s.container(name)).and_then(
                                |c| match &c.status.state {
                                    ContainerState::Terminated(t) => Some(code_of(t)),
                                    _ => None,
                                },
                            );
                            term.or(gone.then_some(KILLED))
                        }
                        (None, _) => None,
                    };
                    if let Some(code) = code {
                        ending.push((id.clone(), code, task.pump.take()));
                    }
                }
            }
            for (_, _, pump) in ending.iter_mut() {
                if let Some(p) = pump {
                    p.finish();
                }
            }
            let mut t = lock(&self.inner.state);
            let killed = t.pod.as_ref().is_some_and(|p| p.killed);
            let pid = t.pid();
            for (id, code, _) in ending {
                if let Some(task) = t.tasks.get_mut(&id) {
                    let code = if task.kind == Kind::Sandbox && killed {
                        KILLED
                    } else {
                        code
                    };
                    task.proc_.exit(code);
                    self.publish(exit_event(&id, "", pid, &task.proc_));
                }
            }
            if gone {
                if let Some(p) = t.pod.as_mut() {
                    p.gone = true;
                }
            }
            self.inner.changed.notify_all();
            if gone {
                return;
            }
        }
    }

    /// Start an exec's session with the monitor; a thread relays it.
    fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<()> {
        let (dir, container, command, proc_io, pid) = {
            let t = lock(&self.inner.state);
            let pod = t
                .pod
                .as_ref()
                .filter(|p| !p.gone)
                .ok_or_else(|| err(Code::FAILED_PRECONDITION, "the pod is not running"))?;
            let task = t
                .tasks
                .get(id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("task {id} not found")))?;
            let name = task.name.clone().ok_or_else(|| {
                err(
                    Code::FAILED_PRECONDITION,
                    format!("task {id} is a pod sandbox: it has no process to exec in"),
                )
            })?;
            let e = task
                .execs
                .get(exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {exec_id} not found")))?;
            if e.proc_.status != Status::Created {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {exec_id} was started already"),
                ));
            }
            let io = (
                e.proc_.stdin.clone(),
                e.proc_.stdout.clone(),
                e.proc_.stderr.clone(),
                e.proc_.terminal,
            );
            (pod.dir.clone(), name, e.command.clone(), io, pod.pid)
        };
        let (stdin, stdout, stderr, tty) = proc_io;
        let fail = |e: String| err(Code::INTERNAL, format!("exec {exec_id}: {e}"));
        let mut conn = pod_api::connect(&dir).map_err(|e| fail(e.to_string()))?;
        conn.send(&Request::Exec {
            container,
            command,
            tty,
            stdin: !stdin.is_empty(),
        })
        .map_err(|e| fail(e.to_string()))?;
        match conn.recv::<Reply>() {
            Ok(Some(Reply::ExecStarted {})) => {}
            Ok(Some(Reply::Error { message, usage })) => {
                let code = if usage {
                    Code::INVALID_ARGUMENT
                } else {
                    Code::INTERNAL
                };
                return Err(err(code, format!("exec {exec_id}: {message}")));
            }
            other => return Err(fail(format!("unexpected answer {other:?}"))),
        }
        let writer = pod_api::connect_clone(&conn)
            .map(|w| Arc::new(Mutex::new(w)))
            .map_err(|e| fail(e.to_string()))?;
        {
            let mut t = lock(&self.inner.state);
            if let Some(e) = t.tasks.get_mut(id).and_then(|x| x.execs.get_mut(exec_id)) {
                e.proc_.status = Status::Running;
                e.writer = Some(writer.clone());
            }
        }
        self.publish(Event::ExecStarted(TaskExecStarted {
            container_id: id.into(),
            exec_id: exec_id.into(),
            pid,
            ..Default::default()
        }));
        if !stdin.is_empty() {
            std::thread::spawn(move || relay_stdin(&stdin, &writer));
        }
        let me = self.clone();
        let (id, exec_id) = (id.to_owned(), exec_id.to_owned());
        std::thread::spawn(move || me.relay_exec(conn, &id, &exec_id, &stdout, &stderr, tty));
        Ok(())
    }

    fn relay_exec(
        &self,
        mut conn: Connection<UnixStream>,
        id: &str,
        exec_id: &str,
        stdout: &str,
        stderr: &str,
        tty: bool,
    ) {
        let (mut out, mut errs) = (Sink::new(stdout), Sink::new(stderr));
        let code = loop {
            match conn.recv::<Reply>() {
                Ok(Some(Reply::ExecOutput { stream, data })) => match (stream, tty) {
                    (peapod_proto::Stream::Stderr, false) => errs.write(&data),
                    _ => out.write(&data),
                },
                Ok(Some(Reply::ExecExited { code, signal })) => {
                    break match (code, signal) {
                        (Some(c), _) => c as u32,
                        (None, Some(s)) => 128 + s as u32,
                        _ => 255,
                    }
                }
                Ok(Some(_)) => continue,
                // The monitor went away under the exec.
                Ok(None) | Err(_) => break KILLED,
            }
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        out.finish(deadline);
        errs.finish(deadline);
        let mut t = lock(&self.inner.state);
        let pid = t.pid();
        if let Some(e) = t.tasks.get_mut(id).and_then(|x| x.execs.get_mut(exec_id)) {
            e.writer = None;
            // (Already ended when its pod was ended under it.)
            if e.proc_.status == Status::Running {
                e.proc_.exit(code);
                self.publish(exit_event(id, exec_id, pid, &e.proc_));
            }
        }
        self.inner.changed.notify_all();
    }

    /// End the pod and remove its directory; nothing of it is left.
    fn end_pod(&self, t: &mut Tasks) -> Result<(), String> {
        let Some(pod) = t.pod.as_mut() else {
            return Ok(());
        };
        if !pod.gone {
            let _ = pod_api::ask(&pod.dir, &pod.name, &Request::Kill {});
            pod.killed = true;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while {
            reap(pod.pid);
            PodState::load(&pod.dir).is_ok_and(|s| s.monitor_alive())
        } {
            if Instant::now() > deadline {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pod.pid as libc::pid_t, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(200));
                reap(pod.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pod.gone = true;
        // Whatever still ran ended with the pod: its waiters return.
        let pid = pod.pid;
        for (id, task) in t.tasks.iter_mut() {
            if task.proc_.status == Status::Running {
                if let Some(p) = task.pump.as_mut() {
                    p.finish();
                }
                task.pump = None;
                task.proc_.exit(KILLED);
                self.publish(exit_event(id, "", pid, &task.proc_));
            }
            for (exec_id, e) in task.execs.iter_mut() {
                if e.proc_.status == Status::Running {
                    e.proc_.exit(KILLED);
                    self.publish(exit_event(id, exec_id, pid, &e.proc_));
                }
            }
            Self::release_rootfs(task)?;
        }
        self.inner.changed.notify_all();
        let pod = t.pod.take().expect("pod checked above");
        mounts::unmount_all(&pod.dir.join(sandbox::CONTAINERS_DIR))?;
        mounts::unmount_all(&pod.dir.join(sandbox::BINDS_DIR))?;
        sandbox::remove(&pod.dir).map_err(|e| format!("{e:#}"))?;
        log::info!("pod {} removed", pod.name);
        Ok(())
    }
}

/// Collect the monitor `pid` if it exited (the shim is its parent; a
/// zombie would look alive).
fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid writes only the status integer given.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
}

/// Copy an exec's stdin fifo to its session (EOF included).
fn relay_stdin(path: &str, writer: &Mutex<Connection<UnixStream>>) {
    use std::io::Read;
    // Blocks until containerd opens its end; only this thread waits.
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let (data, eof) = match f.read(&mut buf) {
            Ok(0) | Err(_) => (Vec::new(), true),
            Ok(n) => (buf[..n].to_vec(), false),
        };
        if lock(writer)
            .send(&Request::ExecStdin { data, eof })
            .is_err()
            || eof
        {
            return;
        }
    }
}

fn not_implemented(what: &str) -> ttrpc::Error {
    err(
        Code::UNIMPLEMENTED,
        format!("{what} is not implemented by the peapod shim"),
    )
}

impl containerd_shim::Task for Service {
    fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let t = lock(&self.inner.state);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: t.pid(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(bundle.join("config.json")).map_err(|e| {
            err(
                Code::INVALID_ARGUMENT,
                format!("{}: {e}", bundle.join("config.json").display()),
            )
        })?;
        let ann = spec.annotations().clone().unwrap_or_default();
        let mut kind = oci::kind(&ann).map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
        if !req.checkpoint.is_empty() {
            return Err(not_implemented("restoring a checkpoint"));
        }
        let mut t = lock(&self.inner.state);
        // Plain containers grouped by a sandbox id (no CRI container type):
        // the first one's pod takes in the others.
        if kind == Kind::Solo && t.pod.is_some() && ann.contains_key(oci::SANDBOX_ID) {
            kind = Kind::Container;
        }
        if t.tasks.contains_key(&req.id) {
            return Err(err(Code::ALREADY_EXISTS, format!("task {} exists", req.id)));
        }
        let io = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        let mut task = Task {
            kind,
            bundle: req.bundle.clone(),
            proc_: io,
            name: None,
            wire: None,
            image: ann.get(oci::IMAGE_NAME).cloned().unwrap_or_default(),
            bound: None,
            binds_dir: None,
            rootfs: None,
            pump: None,
            execs: BTreeMap::new(),
        };
        match kind {
            Kind::Sandbox | Kind::Solo => {
                if t.pod.is_some() {
                    return Err(err(
                        Code::FAILED_PRECONDITION,
                        "this shim already runs a pod: one shim serves one pod",
                    ));
                }
                if kind == Kind::Solo {
                    // Checked before a VM is started for it.
                    oci::check(&spec).map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
                }
                let pod = self.start_pod(&req.id, &spec, kind, &bundle)?;
                let (name, dir) = (pod.name.clone(), pod.dir.clone());
                t.pod = Some(pod);
                if kind == Kind::Solo {
                    match self.prepare_container(&t, &req, &spec, (&name, &dir), Some(&name)) {
                        Ok(p) => task.prepared(p),
                        Err(e) => {
                            if let Err(why) = self.end_pod(&mut t) {
                                log::warn!("pod {name}: {why}");
                            }
                            return Err(e);
                        }
                    }
                }
                self.spawn_watcher();
            }
            Kind::Container => {
                let sandbox_id = ann.get(oci::SANDBOX_ID).cloned().unwrap_or_default();
                let (name, dir) = match &t.pod {
                    Some(p) if !p.gone => (p.name.clone(), p.dir.clone()),
                    Some(p) => {
                        return Err(err(
                            Code::FAILED_PRECONDITION,
                            format!("pod {} of sandbox {sandbox_id} is not running", p.name),
                        ))
                    }
                    None => {
                        return Err(err(
                            Code::NOT_FOUND,
                            format!("sandbox {sandbox_id} has no pod in this shim"),
                        ))
                    }
                };
                let p = self.prepare_container(&t, &req, &spec, (&name, &dir), None)?;
                task.prepared(p);
            }
        }
        let pid = t.pid();
        t.tasks.insert(req.id.clone(), task);
        self.publish(Event::Create(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        }));
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        if !req.exec_id.is_empty() {
            self.start_exec(&req.id, &req.exec_id)?;
            let pid = lock(&self.inner.state).pid();
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        let mut t = lock(&self.inner.state);
        let pid = t.pid();
        let (dir, pod_name) = match t.pod.as_ref().filter(|p| !p.gone) {
            Some(p) => (p.dir.clone(), p.name.clone()),
            None => {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    "the pod is not running (its VM or monitor ended)",
                ))
            }
        };
        let task = t
            .tasks
            .get_mut(&req.id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("task {} not found", req.id)))?;
        if task.proc_.status != Status::Created {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("task {} was started already", req.id),
            ));
        }
        if let Some(wire) = task.wire.take() {
            let name = wire.name.clone();
            let add = Request::AddContainer {
                container: Box::new(wire),
                image: task.image.clone(),
            };
            pod_api::ask(&dir, &pod_name, &add).map_err(|e| {
                let code = if e.usage {
                    Code::INVALID_ARGUMENT
                } else {
                    Code::INTERNAL
                };
                err(code, e.message)
            })?;
            let p = &task.proc_;
            task.pump = Some(LogPump::new(&dir, &name, &p.stdout, &p.stderr, p.terminal));
        }
        task.proc_.status = Status::Running;
        self.publish(Event::Start(TaskStart {
            container_id: req.id.clone(),
            pid,
            ..Default::default()
        }));
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let mut t = lock(&self.inner.state);
        loop {
            let (_, p) = t.process(&req.id, &req.exec_id)?;
            if p.status == Status::Stopped {
                return Ok(api::WaitResponse {
                    exit_status: p.exit_code,
                    exited_at: MessageField::from_option(p.exited_at.clone()),
                    ..Default::default()
                });
            }
            t = self
                .inner
                .changed
                .wait(t)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let t = lock(&self.inner.state);
        let (task, p) = t.process(&req.id, &req.exec_id)?;
        let status = match p.status {
            Status::Created => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Stopped => api::Status::STOPPED,
        };
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.clone(),
            pid: t.pid(),
            status: status.into(),
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            exit_status: p.exit_code,
            exited_at: MessageField::from_option(p.exited_at.clone()),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let mut t = lock(&self.inner.state);
        let (dir, pod_name, gone) = match &t.pod {
            Some(p) => (p.dir.clone(), p.name.clone(), p.gone),
            None => return Err(err(Code::NOT_FOUND, "this shim runs no pod")),
        };
        let task = t
            .tasks
            .get(&req.id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("task {} not found", req.id)))?;
        if !req.exec_id.is_empty() {
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.status != Status::Running {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("exec {}: process already finished", req.exec_id),
                ));
            }
            // The exec protocol has no signal of its own: ending the
            // session is how its process is told to go.
            if let Some(w) = &e.writer {
                let _ = lock(w).get_ref().shutdown(std::net::Shutdown::Both);
            }
            return Ok(api::Empty::default());
        }
        if task.proc_.status == Status::Stopped || gone {
            return Err(err(
                Code::NOT_FOUND,
                format!("task {}: process already finished", req.id),
            ));
        }
        let signal = req.signal as i32;
        let answer = match (task.kind, &task.name) {
            (Kind::Sandbox, _) => {
                let r = if signal == libc::SIGKILL {
                    Request::Kill {}
                } else {
                    Request::Stop {
                        grace_period_s: None,
                    }
                };
                if signal == libc::SIGKILL {
                    if let Some(p) = t.pod.as_mut() {
                        p.killed = true;
                    }
                }
                pod_api::ask(&dir, &pod_name, &r)
            }
            (_, Some(name)) if task.proc_.status == Status::Running => {
                let r = Request::Signal {
                    container: Some(name.clone()),
                    signal,
                };
                pod_api::ask(&dir, &pod_name, &r)
            }
            // Created, never started: there is no process to signal.
            _ => Ok(()),
        };
        answer.map_err(|e| err(Code::INTERNAL, e.message))?;
        Ok(api::Empty::default())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let mut t = lock(&self.inner.state);
        let pid = t.pid();
        if !req.exec_id.is_empty() {
            let task = t
                .tasks
                .get_mut(&req.id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("task {} not found", req.id)))?;
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.status == Status::Running {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is running", req.exec_id),
                ));
            }
            let e = task.execs.remove(&req.exec_id).expect("found above");
            return Ok(api::DeleteResponse {
                pid,
                exit_status: e.proc_.exit_code,
                exited_at: MessageField::from_option(e.proc_.exited_at),
                ..Default::default()
            });
        }
        let Some(task) = t.tasks.get_mut(&req.id) else {
            return Err(err(Code::NOT_FOUND, format!("task {} not found", req.id)));
        };
        if task.proc_.status == Status::Running {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("task {} is running: kill it first", req.id),
            ));
        }
        if task.proc_.status == Status::Created {
            task.proc_.exit(0);
        }
        let kind = task.kind;
        // An ended container the pod knows (one never started: nothing).
        let added = task.name.clone().filter(|_| task.wire.is_none());
        if kind == Kind::Container {
            if let (Some(name), Some(pod)) = (added, t.pod.as_ref().filter(|p| !p.gone)) {
                let r = Request::RemoveContainer { container: name };
                if let Err(e) = pod_api::ask(&pod.dir, &pod.name, &r) {
                    log::warn!("{e}");
                }
            }
            let task = t.tasks.get_mut(&req.id).expect("found above");
            Self::release_rootfs(task).map_err(|e| err(Code::INTERNAL, e))?;
        } else {
            // The sandbox (or a pod's one container): the pod ends with it.
            self.end_pod(&mut t).map_err(|e| err(Code::INTERNAL, e))?;
        }
        let task = t.tasks.remove(&req.id).expect("found above");
        self.inner.changed.notify_all();
        self.publish(Event::Delete(TaskDelete {
            container_id: req.id.clone(),
            pid,
            exit_status: task.proc_.exit_code,
            exited_at: MessageField::from_option(task.proc_.exited_at.clone()),
            id: req.id.clone(),
            ..Default::default()
        }));
        Ok(api::DeleteResponse {
            pid,
            exit_status: task.proc_.exit_code,
            exited_at: MessageField::from_option(task.proc_.exited_at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let t = lock(&self.inner.state);
        if !t.tasks.contains_key(&req.id) {
            return Err(err(Code::NOT_FOUND, format!("task {} not found", req.id)));
        }
        let mut info = containerd_shim::protos::api::ProcessInfo::new();
        info.pid = t.pid();
        Ok(api::PidsResponse {
            processes: vec![info],
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let (command, terminal) = match req.spec.as_ref() {
            Some(any) => {
                oci::exec_process(&any.value).map_err(|e| err(Code::INVALID_ARGUMENT, e))?
            }
            None => return Err(err(Code::INVALID_ARGUMENT, "exec: no process spec")),
        };
        let mut t = lock(&self.inner.state);
        let task = t
            .tasks
            .get_mut(&req.id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("task {} not found", req.id)))?;
        if task.proc_.status != Status::Running || task.name.is_none() {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("task {} is not a running container", req.id),
            ));
        }
        if task.execs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("exec {} exists", req.exec_id),
            ));
        }
        task.execs.insert(
            req.exec_id.clone(),
            Exec {
                proc_: Proc::new(
                    &req.stdin,
                    &req.stdout,
                    &req.stderr,
                    terminal || req.terminal,
                ),
                command,
                writer: None,
            },
        );
        self.publish(Event::ExecAdded(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        }));
        Ok(api::Empty::default())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let t = lock(&self.inner.state);
        let writer = t
            .tasks
            .get(&req.id)
            .and_then(|x| x.execs.get(&req.exec_id))
            .and_then(|e| e.writer.clone());
        drop(t);
        if let Some(w) = writer {
            let r = Request::ExecResize {
                rows: req.height.min(u16::MAX.into()) as u16,
                cols: req.width.min(u16::MAX.into()) as u16,
            };
            let _ = lock(&w).send(&r);
        }
        Ok(api::Empty::default())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let t = lock(&self.inner.state);
        let writer = t
            .tasks
            .get(&req.id)
            .and_then(|x| x.execs.get(&req.exec_id))
            .and_then(|e| e.writer.clone());
        drop(t);
        if let (Some(w), true) = (writer, req.stdin) {
            let _ = lock(&w).send(&Request::ExecStdin {
                data: vec![],
                eof: true,
            });
        }
        Ok(api::Empty::default())
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        let t = lock(&self.inner.state);
        if t.tasks.is_empty() && t.pod.is_none() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::default())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        _req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        Err(not_implemented("stats"))
    }

    fn update(&self, _ctx: &TtrpcContext, _req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        Err(not_implemented("updating a task's resources"))
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        Err(not_implemented("pause"))
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        Err(not_implemented("resume"))
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(not_implemented("checkpoint"))
    }
}

/// `delete` after the shim died: end the pod of this bundle's task and
/// undo its mounts, from what the bundle notes.
pub fn cleanup_bundle(bundle: &Path) -> Result<(), String> {
    if let Ok(notes) = std::fs::read_to_string(bundle.join(BIND_FILE)) {
        // The container's root filesystem, then its binds, in the pod.
        for path in notes.lines().filter(|l| l.starts_with('/')) {
            mounts::unmount_all(Path::new(path))?;
            let _ = std::fs::remove_dir(path);
        }
    }
    let rootfs = bundle.join("rootfs");
    mounts::unmount_all(&rootfs)?;
    if let Ok(dir) = std::fs::read(bundle.join(POD_FILE)) {
        let dir = PathBuf::from(String::from_utf8_lossy(&dir).into_owned());
        if let Ok(state) = PodState::load(&dir) {
            if state.monitor_alive() {
                let _ = pod_api::ask(&dir, &state.name, &Request::Kill {});
                let deadline = Instant::now() + Duration::from_secs(10);
                while state.monitor_alive() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if state.monitor_alive() {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(state.monitor_pid as libc::pid_t, libc::SIGKILL) };
                }
            }
        }
        if dir.exists() {
            mounts::unmount_all(&dir.join(sandbox::CONTAINERS_DIR))?;
            mounts::unmount_all(&dir.join(sandbox::BINDS_DIR))?;
            sandbox::remove(&dir).map_err(|e| format!("{e:#}"))?;
        }
    }
    Ok(())
}
