//! Pod lifecycle: the pod directory, the per-pod monitor process, and what
//! the CLI reads and asks of it.
//!
//! `peapod run` checks everything it can (spec, images, kernel, init, KVM),
//! then starts a **monitor**: a `peapod` process of its own session that
//! reserves the pod's resources, creates the pod directory, runs the VMM
//! (or, in namespace mode, the native peapod-init) and talks to peapod-init
//! until the pod ends. It outlives the CLI. It says on a pipe whether the
//! pod started; after that, everything it knows is in the pod directory:
//!
//! ```text
//! $XDG_RUNTIME_DIR/peapod/<pod>/   (else /run/user/UID/peapod, else a private tmp dir)
//!   state.json        the pod and its containers (state::PodState)
//!   api.sock          requests: stop, kill, exec (api)
//!   logs/<c>/<n>.log  container output, CRI format, one file per run (crilog)
//!   console.log       the guest console (VM mode)
//!   monitor.log       the monitor's own messages
//!   vsock.sock[_P]    the VM's vsock (VM mode)
//! ```
//!
//! Pod names are unique per user: the capacity ledger holds the names of
//! running pods, the directory the names of ended ones until `peapod rm`.

pub mod api;
pub mod artifacts;
pub mod claims;
pub mod crilog;
pub mod host_paths;
pub mod launch;
pub mod monitor;
pub mod pull_policy;
pub mod state;
pub mod vmm_process;
pub mod wire;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::anyhow;
use peapod_proto::WirePod;
use serde::{Deserialize, Serialize};

use crate::admission::Ledger;

pub use state::PodState;

/// The directory of a sandbox pod that holds its joining containers' root
/// filesystems (`launch::joining_rootfs`).
pub const CONTAINERS_DIR: &str = "containers";

/// The tag under which a VM sandbox shares [`CONTAINERS_DIR`] with its
/// guest.
pub const CONTAINERS_SHARE: &str = "ctr";

/// The directory of a sandbox pod that holds the host files and
/// directories bound into its joining containers (`launch::joining_bind`).
pub const BINDS_DIR: &str = "binds";

/// The tag under which a VM sandbox shares [`BINDS_DIR`] (read-write: a
/// Kubernetes emptyDir is such a bind).
pub const BINDS_SHARE: &str = "bnd";

/// The hidden subcommand that runs a monitor.
pub const MONITOR_COMMAND: &str = "__monitor";
/// The monitor's own binary, looked for beside `peapod`.
pub const MONITOR_BINARY: &str = "peapod-monitor";

/// The log filter of the per-pod processes (monitor, VMM): their stderr
/// is the monitor's log, a file nobody watches live, so it keeps the story.
pub const HELPER_LOG_FILTER: &str = "info,fuse_backend_rs=warn";

/// Logging for a per-pod process started as a binary of its own
/// (`peapod-monitor`, `peapod-vmm`); `RUST_LOG` still overrides it.
pub fn init_helper_log() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(HELPER_LOG_FILTER))
        .format_timestamp(None)
        .init();
}

/// The command that runs one of peapod's helper processes (the monitor,
/// the VMM): its own small binary `binary` beside `exe` (any of peapod's
/// executables), else `peapod HIDDEN_COMMAND` from the same directory, else
/// `exe HIDDEN_COMMAND`.
pub fn helper_command(exe: &Path, binary: &str, hidden_command: &str) -> Command {
    let small = exe.with_file_name(binary);
    if small.is_file() {
        return Command::new(small);
    }
    let peapod = exe.with_file_name("peapod");
    let mut cmd = Command::new(if peapod.is_file() {
        peapod.as_path()
    } else {
        exe
    });
    cmd.arg(hidden_command);
    cmd
}

/// peapod's per-user runtime directory (pods and the capacity ledger).
pub fn runtime_dir() -> PathBuf {
    Ledger::default_dir()
}

/// The directory of pod `name`.
pub fn pod_dir(name: &str) -> PathBuf {
    runtime_dir().join(name)
}

/// The runtime directory, once it is known to be this user's own and
/// private (when it exists): in a shared temp directory another user could
/// have made it, and its pods and sockets would be theirs.
pub fn trusted_runtime_dir() -> anyhow::Result<PathBuf> {
    let dir = runtime_dir();
    if std::fs::symlink_metadata(&dir).is_ok() {
        crate::admission::check_private(&dir)?;
    }
    Ok(dir)
}

/// Every pod directory (one with a state file), sorted by name.
pub fn list() -> anyhow::Result<Vec<(PathBuf, std::io::Result<PodState>)>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(trusted_runtime_dir()?)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join(state::STATE_FILE).exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .map(|d| {
            let s = PodState::load(&d);
            (d, s)
        })
        .collect())
}

/// A pod directory that exists, with its state; the error says the pod is
/// not there.
pub fn find(name: &str) -> anyhow::Result<(PathBuf, PodState)> {
    let dir = trusted_runtime_dir()?.join(name);
    match PodState::load(&dir) {
        Ok(s) => Ok((dir, s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(anyhow!("no pod named {name} (`peapod ps` lists the pods)"))
        }
        Err(e) => Err(anyhow!(e).context(format!("pod {name}: cannot read its state"))),
    }
}

/// How the pod is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A KVM microVM.
    Vm,
    /// Namespaces on the host (no VM boundary).
    Namespace,
}

impl Isolation {
    /// `vm` or `namespace`.
    pub fn word(self) -> &'static str {
        match self {
            Isolation::Vm => "vm",
            Isolation::Namespace => "namespace",
        }
    }
}

/// One virtio-fs share of a VM pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The mount tag; the guest mounts it at `GUEST_SHARE_DIR/<tag>`.
    pub tag: String,
    /// The host directory.
    pub path: PathBuf,
    /// Refuse changes from the guest.
    pub read_only: bool,
}

/// A host port published to a container port (`hostPort`, `-p`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Bind only this host address (default: all).
    pub host_ip: Option<std::net::IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// The container (guest) port.
    pub container_port: u16,
    /// UDP rather than TCP.
    pub udp: bool,
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(f, "{}->{}/{proto}", self.host_port, self.container_port)
    }
}

impl Publish {
    /// As the passt launcher takes it.
    pub fn forward(&self) -> crate::vmm::net::PortForward {
        crate::vmm::net::PortForward {
            host_ip: self.host_ip,
            host_port: self.host_port,
            container_port: self.container_port,
            protocol: if self.udp {
                crate::vmm::net::Protocol::Udp
            } else {
                crate::vmm::net::Protocol::Tcp
            },
        }
    }
}

/// The VM's network: virtio-net with passt behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLaunch {
    /// Host ports forwarded into the pod.
    pub publish: Vec<Publish>,
    /// Extra /etc/hosts entries (`spec.hostAliases`): (ip, names).
    pub host_aliases: Vec<(std::net::IpAddr, Vec<String>)>,
    /// `spec.dnsPolicy` and `spec.dnsConfig`.
    #[serde(default)]
    pub dns: crate::spec::PodDns,
    /// The gateway address reaches the host's loopback
    /// (`peapod.io/host-loopback: "true"`).
    #[serde(default)]
    pub host_loopback: bool,
}

/// The VM of a VM pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLaunch {
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs holding the launch's init, from the cache (`None`:
    /// the VMM builds it).
    pub initrd: Option<PathBuf>,
    /// Guest memory, bytes (the pod's plus the guest overhead).
    pub mem_bytes: u64,
    /// vCPUs.
    pub vcpus: u8,
    /// Image root filesystems and hostPath volumes.
    pub shares: Vec<Share>,
    /// Also copy the console here.
    pub console_log: Option<PathBuf>,
    /// Kernel messages on the console (not `quiet`).
    pub verbose_console: bool,
    /// The network; `None`: loopback only (`--network none`).
    pub net: Option<NetLaunch>,
}

/// Everything a monitor needs, checked by the CLI beforehand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// The Pod YAML.
    pub spec_file: PathBuf,
    /// The pod as peapod-init takes it (share paths for this isolation).
    pub pod: WirePod,
    /// Image reference of each container, by name.
    pub images: Vec<(String, String)>,
    /// The manifest digest of each container's image, by name (images
    /// of the store).
    #[serde(default)]
    pub image_digests: Vec<(String, String)>,
    /// VM or namespaces.
    pub isolation: Isolation,
    /// Memory to reserve, bytes.
    pub memory: u64,
    /// CPU to reserve, millicores.
    pub millicpu: u64,
    /// peapod-init (the native launcher runs it; a VM gets it in its
    /// initramfs).
    pub init: PathBuf,
    /// The VM, in VM mode.
    pub vm: Option<VmLaunch>,
    /// Give up when peapod-init is not ready after this long.
    pub boot_timeout_s: u64,
    /// `activeDeadlineSeconds`.
    pub deadline_s: Option<u64>,
    /// When the CLI started (realtime ns), for `--timings`.
    pub cli_started_ns: u64,
    /// The peapod executable beside which `peapod-monitor` is (else whose
    /// `__monitor` runs the pod); `None`: this process's own (the CLI). A
    /// client that is not peapod names it.
    #[serde(default)]
    pub monitor_exe: Option<PathBuf>,
    /// How much log each container keeps (the settings file's
    /// `containerLogMaxSize` and `containerLogMaxFiles`).
    #[serde(default)]
    pub log_limits: crilog::LogLimits,
    /// hostPath volumes to create (`DirectoryOrCreate`, `FileOrCreate`,
    /// the default type) once the monitor holds the pod's reservation.
    #[serde(default)]
    pub create_host_paths: Vec<(PathBuf, crate::spec::HostPathType)>,
    /// The named volumes of the pod's PersistentVolumeClaims, made on
    /// first use once the monitor holds the pod's reservation.
    #[serde(default)]
    pub claims: Vec<claims::Claim>,
}

/// Why a pod did not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartError {
    /// The user asked for something impossible (exit 2: name taken, does
    /// not fit), rather than something failing.
    pub usage: bool,
    /// What to tell the user.
    pub message: String,
}

/// The monitor's one line on its report pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// peapod-init has the pod.
    Started,
    /// Nothing was started (and nothing is left behind).
    Failed(StartError),
}

/// A started monitor.
pub struct Started {
    /// The pod directory.
    pub dir: PathBuf,
    /// The monitor (the CLI's child until the CLI exits).
    pub monitor: Child,
}

/// Start a monitor for `launch` and wait until it says the pod started;
/// `spawned` gets the monitor's pid as soon as it runs. An error comes with
/// the monitor's pid (0 if it never ran), which tells whether a pod
/// directory of that name is this attempt's.
pub fn start(launch: &Launch, spawned: impl FnOnce(u32)) -> Result<Started, (StartError, u32)> {
    let runtime = |message: String| {
        (
            StartError {
                usage: false,
                message,
            },
            0,
        )
    };
    let exe = match &launch.monitor_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe()
            .map_err(|e| runtime(format!("cannot find the peapod executable: {e}")))?,
    };
    let mut cmd = helper_command(&exe, MONITOR_BINARY, MONITOR_COMMAND);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            // Its own session: the terminal's Ctrl-C and hangup reach the
            // CLI only.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| runtime(format!("cannot start the pod's monitor: {e}")))?;
    let pid = child.id();
    spawned(pid);
    let json = serde_json::to_vec(launch).map_err(|e| runtime(e.to_string()))?;
    let sent = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(&json))
        .unwrap_or(Ok(()));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match serde_json::from_str::<Report>(line.trim()) {
        Ok(Report::Started) => Ok(Started {
            dir: pod_dir(&launch.pod.name),
            monitor: child,
        }),
        Ok(Report::Failed(e)) => {
            let _ = child.wait();
            Err((e, pid))
        }
        Err(_) => {
            let status = child.wait();
            let why = match (sent, status) {
                (Err(e), _) => format!("could not be told the pod: {e}"),
                (_, Ok(s)) => format!("exited ({s})"),
                (_, Err(e)) => format!("cannot be waited for: {e}"),
            };
            Err((
                StartError {
                    usage: false,
                    message: format!(
                        "the pod's monitor {why} before the pod started; its messages are above"
                    ),
                },
                pid,
            ))
        }
    }
}

/// Remove a pod directory whose monitor is gone, and prune the ledger of
/// dead reservations.
pub fn remove(dir: &Path) -> anyhow::Result<()> {
    // Never through a mount: a containerd container's root filesystem or
    // volume bound into a shim's pod is not the pod's to delete.
    if let Some(m) = mounted_under(dir).first() {
        anyhow::bail!(
            "cannot remove {}: {} is mounted there (a containerd container's root \
             filesystem or volume; its shim unmounts it when containerd deletes the task)",
            dir.display(),
            m.display()
        );
    }
    remove_volumes(dir);
    let removed = match std::fs::remove_dir_all(dir) {
        // A container may have left directories it cannot be entered or
        // changed (mode 0555, 0000) in a volume: we own them, so open
        // them up and try again.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up_dirs(dir);
            std::fs::remove_dir_all(dir)
        }
        other => other,
    };
    removed.map_err(|e| anyhow!(e).context(format!("cannot remove {}", dir.display())))?;
    // Reclaims the reservation of a monitor that died without releasing it.
    Ledger::new(runtime_dir()).entries()?;
    Ok(())
}

/// Remove the disk emptyDir volumes of the pod in `dir` (in peapod's data
/// directory, `pods/<pod>-<id>`, linked from the pod directory), if it has
/// any. The pod directory is private, so the link is the monitor's; still,
/// only a link of that shape is followed.
pub(crate) fn remove_volumes(dir: &Path) {
    let link = dir.join(monitor::VOLUMES_LINK);
    let Ok(target) = std::fs::read_link(&link) else {
        return;
    };
    let pod = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ours = target.is_absolute()
        && target
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "pods")
        && target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(pod)?.strip_prefix('-'))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ours {
        log::warn!("{} leads elsewhere: left alone", link.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&target) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            open_up_dirs(&target);
            let _ = std::fs::remove_dir_all(&target);
        }
    }
}

/// Mount points at or under `dir` in this process's mount namespace.
pub fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as octal
/// escapes (`\040`).
fn unescape_mountinfo(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d));
        if octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Give the owner rwx on every directory under `root` (not following
/// symlinks), so the tree can be removed. Runs once the pod's guest is gone:
/// nothing changes the tree meanwhile.
fn open_up_dirs(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c\134d"), "/a b/c\\d");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn test_helper_command_prefers_the_small_binary_then_peapod() {
        let dir = std::env::temp_dir().join(format!("peapod-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shim = dir.join("containerd-shim-peapod-v2");
        let run = |exe: &Path| {
            let cmd = helper_command(exe, MONITOR_BINARY, MONITOR_COMMAND);
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            (PathBuf::from(cmd.get_program()), args)
        };
        // Nothing beside it: the executable itself runs the hidden command.
        assert_eq!(run(&shim), (shim.clone(), vec!["__monitor".to_string()]));
        std::fs::write(dir.join("peapod"), "").unwrap();
        assert_eq!(
            run(&shim),
            (dir.join("peapod"), vec!["__monitor".to_string()])
        );
        std::fs::write(dir.join(MONITOR_BINARY), "").unwrap();
        assert_eq!(run(&shim), (dir.join(MONITOR_BINARY), vec![]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
