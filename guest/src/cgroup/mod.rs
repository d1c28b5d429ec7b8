//! One cgroup per container: memory, CPU and process limits, and the OOM
//! counter that tells an out-of-memory kill from any other SIGKILL.
//!
//! Where the controllers live is found at startup from
//! `/proc/self/mountinfo`: in a pod's VM the init mounts cgroup v2 at
//! /sys/fs/cgroup ([`mount_unified`]); in native mode the host may be pure
//! v2, or hybrid (v1 `memory`, `cpu`, `pids` hierarchies next to an empty
//! v2 one). Each controller is used where it is bound: v2 if the unified
//! hierarchy offers it, else its v1 hierarchy.
//!
//! A container's cgroup is `<base>/peapod/<pod>-<instance>/<container>` in
//! every hierarchy used. `<base>` is, for v2, the root of the mounted
//! hierarchy: v2 forbids processes in a cgroup that delegates controllers,
//! so the pod cannot nest below the cgroup the init itself sits in; for v1
//! it is the init's own cgroup, so any limit the caller runs under still
//! holds for the pod. `<instance>` is `<PID namespace inode>-<PID>` of the
//! init as the host sees it (the native launcher's), so pods of the same
//! name never share a directory, even from PID namespaces that share the
//! cgroup hierarchies.
//!
//! The container's process joins its cgroup itself, as its first step after
//! the clone (it writes `0` to `cgroup.procs` descriptors its parent opened),
//! so nothing of the container ever runs outside it. Once a container ended
//! its cgroup is emptied and removed; when the pod ends every directory of
//! the pod is removed, and `peapod/` too once no other pod uses it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// Process limit of a container whose spec sets none: a fork bomb stops
/// here instead of exhausting the machine.
pub const DEFAULT_PIDS_MAX: u64 = 4096;
/// The CFS period every CPU limit uses, in microseconds (as Kubernetes).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts, in microseconds.
const MIN_CPU_QUOTA_US: u64 = 1000;
/// The directory below each hierarchy's base that holds every pod.
pub const PARENT: &str = "peapod";

/// The controllers peapod sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// cgroup v1 (one hierarchy per controller group) or v2 (unified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A mounted hierarchy and the controllers peapod uses from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// Where `peapod/` is created.
    pub base: PathBuf,
    pub controllers: Vec<Controller>,
}

/// Where each controller lives, and why a missing one is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
    pub unavailable: Vec<(Controller, String)>,
}

/// One line of `/proc/self/mountinfo`, the fields we need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    /// Path of the mount's root inside its file system.
    root: String,
    point: PathBuf,
    fstype: String,
    super_opts: String,
}

/// Undo mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fields.get(sep + 1)?.to_string(),
                super_opts: fields.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The process's cgroup path in the hierarchy holding `controller` (v1), or
/// in the unified hierarchy (`None`), from `/proc/self/cgroup` text.
fn own_path(self_cgroup: &str, controller: Option<&str>) -> Option<String> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => id == "0" && ctls.is_empty(),
            Some(name) => ctls.split(',').any(|c| c == name),
        };
        hit.then(|| path.to_string())
    })
}

/// `point` joined with the part of `own` below the mount's `root`; the
/// mount point itself when `own` is not below it.
fn below_mount(m: &MountEntry, own: Option<&str>) -> PathBuf {
    let rel = own.and_then(|own| {
        let root = m.root.trim_end_matches('/');
        own.strip_prefix(root)
            .filter(|r| r.is_empty() || r.starts_with('/'))
    });
    match rel {
        Some(r) => m.point.join(r.trim_start_matches('/')),
        None => m.point.clone(),
    }
}

/// Work out the layout from `/proc/self/mountinfo` and `/proc/self/cgroup`
/// text; `read_controllers` returns the `cgroup.controllers` of a v2 mount.
fn layout_from(
    mountinfo: &str,
    self_cgroup: &str,
    read_controllers: impl Fn(&Path) -> Option<String>,
) -> Layout {
    let mounts = parse_mountinfo(mountinfo);
    let v2 = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .min_by_key(|m| match m.point.to_str() {
            Some("/sys/fs/cgroup") => 0,
            Some("/sys/fs/cgroup/unified") => 1,
            _ => 2,
        });
    let v2_offers = v2
        .and_then(|m| read_controllers(&m.point))
        .unwrap_or_default();
    let mut layout = Layout::default();
    let mut add = |version: Version, base: PathBuf, ctl: Controller| match layout
        .hierarchies
        .iter_mut()
        .find(|h| h.version == version && h.base == base)
    {
        Some(h) => h.controllers.push(ctl),
        None => layout.hierarchies.push(Hierarchy {
            version,
            base,
            controllers: vec![ctl],
        }),
    };
    let mut unavailable = Vec::new();
    for ctl in Controller::ALL {
        let name = ctl.name();
        if let Some(m) = v2.filter(|_| v2_offers.split_whitespace().any(|c| c == name)) {
            add(Version::V2, m.point.clone(), ctl);
            continue;
        }
        let v1 = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == name));
        match v1 {
            Some(m) => add(
                Version::V1,
                below_mount(m, own_path(self_cgroup, Some(name)).as_deref()),
                ctl,
            ),
            None => unavailable.push((
                ctl,
                format!("no mounted cgroup hierarchy has the {name} controller"),
            )),
        }
    }
    layout.unavailable = unavailable;
    layout
}

/// The layout of this process's mount namespace; never fails (an
/// unreadable /proc leaves every controller unavailable, with the reason).
pub fn detect() -> Layout {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo");
    let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    match mountinfo {
        Ok(text) => layout_from(&text, &self_cgroup, |p| {
            fs::read_to_string(p.join("cgroup.controllers")).ok()
        }),
        Err(e) => Layout {
            hierarchies: vec![],
            unavailable: Controller::ALL
                .iter()
                .map(|c| (*c, format!("cannot read /proc/self/mountinfo: {e}")))
                .collect(),
        },
    }
}

/// Mount cgroup v2 at /sys/fs/cgroup (in a pod's VM).
pub fn mount_unified() -> io::Result<()> {
    let dir = Path::new("/sys/fs/cgroup");
    fs::create_dir_all(dir)?;
    sys::mount(
        Some("cgroup2"),
        dir,
        Some("cgroup2"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

/// The inode of our PID namespace (0 if /proc is not there).
fn pid_ns() -> u64 {
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

fn instance_of(ns: u64, pid: u32) -> String {
    format!("{ns}-{pid}")
}

/// `<ns>-<pid>` of the last two `-`-separated fields of a pod directory's
/// name.
fn parse_instance(name: &str) -> Option<(u64, u32)> {
    let mut fields = name.rsplitn(3, '-');
    let pid = fields.next()?.parse().ok()?;
    let ns = fields.next()?.parse().ok()?;
    fields.next()?;
    Some((ns, pid))
}

static INSTANCE: OnceLock<String> = OnceLock::new();

/// Name this process's pods, and those of the children it forks, after it
/// (the native launcher: the host sees its PID, not its child's, which is
/// 1). Returns the instance, for [`remove_instance`].
pub fn set_instance() -> String {
    INSTANCE
        .get_or_init(|| instance_of(pid_ns(), std::process::id()))
        .clone()
}

fn instance() -> String {
    INSTANCE
        .get()
        .cloned()
        .unwrap_or_else(|| instance_of(pid_ns(), std::process::id()))
}

/// A name usable as one path component.
fn component(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

/// A container's resource limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    /// Millicores.
    pub cpu_millis: Option<u64>,
    /// Processes; `None` means [`DEFAULT_PIDS_MAX`], silently.
    pub pids: Option<u64>,
}

impl Limits {
    /// The limit of one controller as the user would read it, if the spec
    /// set one.
    fn describe(&self, ctl: Controller) -> Option<String> {
        match ctl {
            Controller::Memory => self.memory.map(|b| format!("memory limit of {b} bytes")),
            Controller::Cpu => self.cpu_millis.map(|m| format!("CPU limit of {m}m")),
            Controller::Pids => self.pids.map(|n| format!("process limit of {n}")),
        }
    }
}

/// CFS quota in microseconds per [`CPU_PERIOD_US`] for a CPU limit in
/// millicores (as Kubernetes computes it, at least the kernel's minimum).
pub fn cpu_quota_us(millis: u64) -> u64 {
    (millis.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_CPU_QUOTA_US)
}

/// One interface file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LimitWrite {
    file: &'static str,
    value: String,
    /// A missing optional file (no swap accounting) is not an error.
    required: bool,
}

fn w(file: &'static str, value: impl ToString, required: bool) -> LimitWrite {
    LimitWrite {
        file,
        value: value.to_string(),
        required,
    }
}

/// The writes that set `ctl`'s limit on a cgroup of `version`, in order.
fn limit_writes(version: Version, ctl: Controller, limits: &Limits) -> Vec<LimitWrite> {
    match (ctl, version) {
        (Controller::Memory, _) if limits.memory.is_none() => vec![],
        // No swap either: a memory limit is a limit (Kubernetes without swap).
        (Controller::Memory, Version::V2) => vec![
            w("memory.max", limits.memory.unwrap_or_default(), true),
            w("memory.swap.max", 0, false),
        ],
        (Controller::Memory, Version::V1) => {
            let bytes = limits.memory.unwrap_or_default();
            vec![
                w("memory.limit_in_bytes", bytes, true),
                w("memory.memsw.limit_in_bytes", bytes, false),
            ]
        }
        (Controller::Cpu, _) if limits.cpu_millis.is_none() => vec![],
        (Controller::Cpu, Version::V2) => {
            let quota = cpu_quota_us(limits.cpu_millis.unwrap_or_default());
            vec![w("cpu.max", format!("{quota} {CPU_PERIOD_US}"), true)]
        }
        (Controller::Cpu, Version::V1) => {
            let quota = cpu_quota_us(limits.cpu_millis.unwrap_or_default());
            vec![
                w("cpu.cfs_period_us", CPU_PERIOD_US, true),
                w("cpu.cfs_quota_us", quota, true),
            ]
        }
        (Controller::Pids, _) => vec![w("pids.max", limits.pids.unwrap_or(DEFAULT_PIDS_MAX), true)],
    }
}

/// The `oom_kill` counter of v2 `memory.events` or v1 `memory.oom_control`
/// text (both are `key value` lines).
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(char::is_whitespace)?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

fn oom_file(version: Version) -> &'static str {
    match version {
        Version::V2 => "memory.events",
        Version::V1 => "memory.oom_control",
    }
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// Kill whatever still runs in the cgroup `dir` (not its children).
fn kill_all(dir: &Path) {
    // v2 since Linux 5.14: one write kills the whole cgroup.
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|p| p.trim().parse().ok()) {
        // PIDs outside our namespace read as 0; never signal those.
        if pid > 0 {
            sys::kill(pid, libc::SIGKILL);
        }
    }
}

/// Remove the cgroup `dir` and every cgroup below it, killing what runs in
/// them. Returns whether it is gone.
fn remove_tree(dir: &Path) -> bool {
    remove_tree_with(dir, true)
}

/// [`remove_tree`], killing only if `kill` (else a cgroup that still has
/// processes stays).
fn remove_tree_with(dir: &Path, kill: bool) -> bool {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree_with(&e.path(), kill);
            }
        }
    }
    if kill {
        kill_all(dir);
    }
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Remove `dirs` (cgroup trees), retrying while killed processes die,
/// until `timeout`. Returns the ones still there.
fn remove_trees(mut dirs: Vec<PathBuf>, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        dirs.retain(|d| !remove_tree(d));
        if dirs.is_empty() || Instant::now() >= deadline {
            return dirs;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A container's cgroup: one directory per hierarchy used.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Where the OOM counter is, and its value when the container started.
    oom: Option<(PathBuf, u64)>,
}

impl Cgroup {
    /// The `cgroup.procs` files, opened for the container's process to
    /// write `0` to (joining) before it does anything else. Close-on-exec.
    pub fn procs_files(&self) -> io::Result<Vec<fs::File>> {
        self.dirs
            .iter()
            .map(|d| {
                let p = d.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
            })
            .collect()
    }

    /// Whether the kernel OOM-killed a process of the container since it
    /// started.
    pub fn oom_killed(&self) -> bool {
        self.oom.as_ref().is_some_and(|(file, base)| {
            fs::read_to_string(file)
                .ok()
                .and_then(|t| parse_oom_kills(&t))
                .is_some_and(|n| n > *base)
        })
    }

    /// Kill what is left of the container and remove its cgroup; what
    /// cannot go yet goes when the pod ends.
    pub fn remove(&self) {
        for d in &self.dirs {
            remove_tree(d);
        }
    }
}

/// Join cgroups from a freshly cloned child: write `0` (ourselves) to each.
pub fn join(procs: &[fs::File]) -> io::Result<()> {
    for mut f in procs {
        f.write_all(b"0")
            .map_err(|e| io::Error::new(e.kind(), format!("join the container's cgroup: {e}")))?;
    }
    Ok(())
}

/// The cgroups of one pod.
#[derive(Debug)]
pub struct PodCgroups {
    layout: Layout,
    /// `<pod>-<instance>`.
    name: String,
    prepared: bool,
}

impl PodCgroups {
    /// Find the hierarchies; nothing is created before the first container.
    pub fn new(pod_name: &str) -> Self {
        PodCgroups::with_layout(detect(), pod_name)
    }

    fn with_layout(layout: Layout, pod_name: &str) -> Self {
        PodCgroups {
            layout,
            name: format!("{}-{}", component(pod_name), instance()),
            prepared: false,
        }
    }

    fn pod_dir(&self, h: &Hierarchy) -> PathBuf {
        h.base.join(PARENT).join(&self.name)
    }

    /// Create the pod's directory in every hierarchy and, in v2, delegate
    /// the controllers down to it. A controller that cannot be set up
    /// becomes unavailable, with the reason.
    fn prepare(&mut self) {
        if self.prepared {
            return;
        }
        self.prepared = true;
        let mut usable = Vec::new();
        for mut h in std::mem::take(&mut self.layout.hierarchies) {
            let pod_dir = self.pod_dir(&h);
            // Another pod's end may remove `peapod/` under our feet: retry.
            let mut made = fs::create_dir_all(&pod_dir);
            for _ in 0..3 {
                if made.is_ok() {
                    break;
                }
                made = fs::create_dir_all(&pod_dir);
            }
            if let Err(e) = made {
                for c in &h.controllers {
                    self.layout.unavailable.push((
                        *c,
                        format!("cannot create cgroup {}: {e}", pod_dir.display()),
                    ));
                }
                continue;
            }
            if h.version == Version::V2 {
                let path = [h.base.clone(), h.base.join(PARENT), pod_dir];
                let mut enabled = Vec::new();
                for c in &h.controllers {
                    match path.iter().try_for_each(|d| enable(d, *c)) {
                        Ok(()) => enabled.push(*c),
                        Err(e) => self.layout.unavailable.push((*c, e.to_string())),
                    }
                }
                h.controllers = enabled;
            }
            if !h.controllers.is_empty() {
                usable.push(h);
            }
        }
        self.layout.hierarchies = usable;
    }

    /// Create (or empty and reuse) the cgroup of container `ctr` with
    /// `limits`. Returns it (`None` when no hierarchy is usable) and one
    /// warning per limit the spec set that will not be enforced.
    pub fn create(&mut self, ctr: &str, limits: &Limits) -> (Option<Cgroup>, Vec<String>) {
        self.prepare();
        let mut warnings: Vec<String> = self
            .layout
            .unavailable
            .iter()
            .filter_map(|(c, why)| {
                let what = limits.describe(*c)?;
                Some(format!("{what} is not enforced: {why}"))
            })
            .collect();
        let mut cg = Cgroup {
            dirs: Vec::new(),
            oom: None,
        };
        for h in &self.layout.hierarchies {
            let dir = self.pod_dir(h).join(component(ctr));
            // What a previous run left (it is dead by now): start afresh.
            remove_tree(&dir);
            if let Err(e) = fs::create_dir(&dir) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    for c in &h.controllers {
                        if let Some(what) = limits.describe(*c) {
                            warnings.push(format!(
                                "{what} is not enforced: cannot create cgroup {}: {e}",
                                dir.display()
                            ));
                        }
                    }
                    continue;
                }
            }
            for c in &h.controllers {
                for lw in limit_writes(h.version, *c, limits) {
                    let file = dir.join(lw.file);
                    let missing = !file.exists();
                    if missing && !lw.required {
                        continue;
                    }
                    if let Err(e) = write_file(&file, &lw.value) {
                        if let Some(what) = limits.describe(*c) {
                            warnings.push(format!(
                                "{what} is not enforced: cannot write {} to {}: {e}",
                                lw.value,
                                file.display()
                            ));
                        }
                    }
                }
                if *c == Controller::Memory {
                    let file = dir.join(oom_file(h.version));
                    let base = fs::read_to_string(&file)
                        .ok()
                        .and_then(|t| parse_oom_kills(&t))
                        .unwrap_or(0);
                    cg.oom = Some((file, base));
                }
            }
            cg.dirs.push(dir);
        }
        ((!cg.dirs.is_empty()).then_some(cg), warnings)
    }

    /// Remove every cgroup of the pod (killing what is left in them), then
    /// `peapod/` where no other pod uses it. Returns what could not be
    /// removed within `timeout`.
    pub fn remove_all(&self, timeout: Duration) -> Vec<PathBuf> {
        if !self.prepared {
            return vec![];
        }
        let dirs = self
            .layout
            .hierarchies
            .iter()
            .map(|h| self.pod_dir(h))
            .collect();
        let left = remove_trees(dirs, timeout);
        for h in &self.layout.hierarchies {
            // Fails while another pod lives there: that pod removes it.
            let _ = fs::remove_dir(h.base.join(PARENT));
        }
        left
    }
}

/// Enable `ctl` for the children of the v2 cgroup `dir`.
fn enable(dir: &Path, ctl: Controller) -> io::Result<()> {
    let name = ctl.name();
    let has = |file: &str| {
        fs::read_to_string(dir.join(file)).is_ok_and(|t| t.split_whitespace().any(|c| c == name))
    };
    if has("cgroup.subtree_control") {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    write_file(&file, &format!("+{name}")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot enable the {name} controller in {}: {e}",
                file.display()
            ),
        )
    })
}

/// Remove what a pod of `instance` left behind (its PID 1 died without
/// cleaning up). `layout` must be detected before the pod's /proc replaced
/// ours.
pub fn remove_instance(layout: &Layout, instance: &str) {
    let suffix = format!("-{instance}");
    let mut dirs = Vec::new();
    for h in &layout.hierarchies {
        let parent = h.base.join(PARENT);
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .map(|e| e.path()),
        );
    }
    if dirs.is_empty() {
        return;
    }
    for d in remove_trees(dirs, Duration::from_secs(2)) {
        eprintln!("peapod-init: cannot remove cgroup {}", d.display());
    }
    for h in &layout.hierarchies {
        let _ = fs::remove_dir(h.base.join(PARENT));
    }
}

/// Remove the cgroups of pods whose launcher is gone (it was killed before
/// it could clean up): `<pod>-<ns>-<pid>` where `ns` is our PID namespace
/// and no process `pid` exists. Nothing is killed, so only empty cgroups
/// go. Run by a launcher, before it starts its own pod.
pub fn remove_stale(layout: &Layout) {
    let ours = pid_ns();
    for h in &layout.hierarchies {
        let Ok(entries) = fs::read_dir(h.base.join(PARENT)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let gone = name
                .to_str()
                .and_then(parse_instance)
                .is_some_and(|(ns, pid)| {
                    ns == ours && !Path::new("/proc").join(pid.to_string()).exists()
                });
            if gone {
                remove_tree_with(&e.path(), false);
            }
        }
        let _ = fs::remove_dir(h.base.join(PARENT));
    }
}

#[cfg(test)]
mod tests;
