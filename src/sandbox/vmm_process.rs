//! The VMM in a process of its own: `peapod-vmm` (or `peapod __vmm`), a
//! child of the pod's monitor, split along the guest-trust boundary.
//!
//! Everything that parses guest input (the vCPUs' port and MMIO exits,
//! the virtio devices, the virtio-fs server) runs in this child, hardened
//! and confined thread by thread (`vmm::jail`): no new privileges, not
//! dumpable, a seccomp allowlist per thread kind, Landlock to the pod's
//! paths. The monitor (the ledger's reservation, `state.json`, the logs,
//! `api.sock`, passt) is a single-owner supervisor the guest cannot stall:
//! it talks to peapod-init over the agent's Unix socket (which the VMM's
//! vsock device connects to, as before the split), and to this child over
//! two pipes.
//!
//! - **stdin**: the [`VmmLaunch`], as JSON, then end of file.
//! - **stdout**: [`VmmEvent`]s, one JSON line each; the last says how the
//!   VM ended. The monitor reads them as it reads the guest: bounded lines,
//!   a fixed vocabulary, nothing trusted beyond that.
//! - **stderr**: the monitor's log.
//! - **fd 3**: passt's stream, when the pod has a network.
//!
//! The child dies with the monitor (`PR_SET_PDEATHSIG`), and the monitor
//! ends it with `SIGKILL` through a pidfd. A VMM that dies any other way
//! (its seccomp filter, a crash, a signal from the user) leaves the monitor
//! running: the pod fails with the reason, its reservation is released and
//! `ps`, `logs` and `rm` work as for any other ended pod.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use linux_loader::loader::Cmdline;
use serde::{Deserialize, Serialize};

use super::Share;
use crate::vmm::boot::{self, initramfs, Initrd};
use crate::vmm::jail::SECCOMP_EXIT;
use crate::vmm::vstate::kvm;
use crate::vmm::{FsShare, NetBackendSocket, NetConfig, Vm, VmConfig};

/// The hidden command that runs the VMM.
pub const VMM_COMMAND: &str = "__vmm";
/// The VMM's own binary, looked for beside `peapod`.
pub const VMM_BINARY: &str = "peapod-vmm";
/// Where the child finds passt's stream.
const NET_FD: RawFd = 3;
/// The longest event line the monitor reads; the VMM's whole outcome fits
/// in a fraction of it.
pub const MAX_EVENT: usize = 256 << 10;
/// The most console lines, and the longest line, the monitor keeps from
/// an outcome.
const MAX_TAIL_LINES: usize = 40;
const MAX_TAIL_LINE: usize = 512;

/// What the VMM process builds and runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmmLaunch {
    /// The guest kernel.
    pub kernel: PathBuf,
    /// peapod-init, packed into the initramfs by the child when there is
    /// no `initrd`.
    pub init: PathBuf,
    /// The initramfs, prebuilt (mapped into the guest, not read).
    pub initrd: Option<PathBuf>,
    /// The kernel command line, without the virtio devices (the VMM adds
    /// them).
    pub cmdline: String,
    /// Guest memory, bytes.
    pub mem_bytes: u64,
    /// vCPUs.
    pub vcpus: u8,
    /// The virtio-fs shares.
    pub shares: Vec<Share>,
    /// The console log (in the pod directory).
    pub console_log: PathBuf,
    /// The vsock socket (in the pod directory).
    pub vsock_uds: PathBuf,
    /// The network device; its passt stream is fd 3.
    pub net: Option<VmmNet>,
    /// How long the guest has to print its readiness line.
    pub boot_timeout_s: u64,
}

/// The network device of a [`VmmLaunch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmmNet {
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// The MTU offered to the guest.
    pub mtu: Option<u16>,
}

/// What the VMM process tells the monitor, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmmEvent {
    /// The VM, its memory and devices exist.
    Created,
    /// The kernel and initramfs are in guest memory.
    KernelLoaded,
    /// The vCPUs are about to run the guest.
    Running,
    /// The VM ended.
    Ended(VmmOutcome),
    /// The VM could not be built or run.
    Failed(String),
}

/// How the VM ended, as the monitor records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmOutcome {
    /// Why the end was abnormal, for a user; `None`: the guest ended as
    /// peapod-init ends it.
    pub failure: Option<String>,
    /// The guest's uptime (ms) when it said it was ready.
    pub ready_uptime_ms: Option<u64>,
    /// Guest memory the host committed.
    pub guest_resident: u64,
    /// The VMM process's resident memory at the end.
    pub process_rss: Option<u64>,
    /// Its proportional set size (shared pages split) at the end.
    pub process_pss: Option<u64>,
    /// Guest memory the guest reported free and the host dropped, in all.
    pub guest_returned: u64,
    /// The last console lines.
    pub console_tail: Vec<String>,
}

impl VmmOutcome {
    /// Bounded as the monitor keeps it (the child is on the guest's side of
    /// the boundary).
    fn bounded(mut self) -> VmmOutcome {
        let skip = self.console_tail.len().saturating_sub(MAX_TAIL_LINES);
        self.console_tail.drain(..skip);
        for line in &mut self.console_tail {
            peapod_proto::truncate_utf8(line, MAX_TAIL_LINE);
        }
        if let Some(f) = self.failure.as_mut() {
            peapod_proto::truncate_utf8(f, MAX_EVENT / 4);
        }
        self
    }
}

// ---------------------------------------------------------------------
// The child.

/// `peapod __vmm`: build the VM from the launch on stdin, run it, say how
/// it ended on stdout.
pub fn main() -> ExitCode {
    // One malloc arena for all threads: the vCPU and device threads
    // allocate little and rarely, and an arena each costs resident memory.
    // SAFETY: mallopt with integer arguments, before any other thread.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let mut input = Vec::new();
    let launch: VmmLaunch = match std::io::stdin()
        .take(16 << 20)
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "peapod: the VMM is started by a pod's monitor, not by hand ({e}); \
                 if a monitor did, peapod-vmm is from another build than peapod: install both"
            );
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut send = |event: &VmmEvent| {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    match run(&launch, &mut send) {
        Ok(outcome) => {
            send(&VmmEvent::Ended(outcome));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e:#}");
            send(&VmmEvent::Failed(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(launch: &VmmLaunch, send: &mut dyn FnMut(&VmmEvent)) -> anyhow::Result<VmmOutcome> {
    let kvm = kvm::open_kvm()?;
    let flavour = kvm::detect_flavour(&kvm).context("cannot query KVM's MSR list")?;
    let net = match &launch.net {
        Some(n) => {
            // SAFETY: the monitor put passt's stream on this descriptor for
            // us alone; nothing else in this process owns it.
            let stream = unsafe { UnixStream::from_raw_fd(NET_FD) };
            Some(NetConfig {
                backend: NetBackendSocket::Connected(Arc::new(stream)),
                mac: n.mac,
                mtu: n.mtu,
            })
        }
        None => None,
    };
    let cfg = VmConfig {
        mem_bytes: launch.mem_bytes,
        vcpus: launch.vcpus,
        console_log: Some(launch.console_log.clone()),
        console_echo: false,
        vsock_uds: Some(launch.vsock_uds.clone()),
        fs_shares: launch
            .shares
            .iter()
            .map(|s| FsShare {
                tag: s.tag.clone(),
                path: s.path.clone(),
                read_only: s.read_only,
            })
            .collect(),
        net,
    };
    let mut vm = Vm::new(&kvm, &cfg)?;
    send(&VmmEvent::Created);
    let cmdline = Cmdline::try_from(&launch.cmdline, boot::CMDLINE_MAX_SIZE)
        .map_err(|e| anyhow!("kernel command line: {e}"))?;
    match &launch.initrd {
        Some(path) => vm.load_linux(&launch.kernel, Initrd::File(path), cmdline)?,
        // No cached archive: built here, and freed once in guest memory
        // (the VMM would otherwise hold its 1.6 MB for the pod's life).
        None => {
            let init = std::fs::read(&launch.init)
                .with_context(|| format!("cannot read {}", launch.init.display()))?;
            let built = initramfs::build(init).context("cannot build the initramfs")?;
            vm.load_linux(&launch.kernel, Initrd::Bytes(&built), cmdline)?;
        }
    }
    send(&VmmEvent::KernelLoaded);
    send(&VmmEvent::Running);
    let outcome = vm.run_confined(Some(Duration::from_secs(launch.boot_timeout_s)))?;
    Ok(VmmOutcome {
        failure: outcome.explain(flavour),
        ready_uptime_ms: outcome.ready.map(|(_, uptime)| uptime),
        guest_resident: outcome.guest_resident,
        process_rss: outcome.process_rss,
        process_pss: outcome.process_pss,
        guest_returned: outcome.guest_returned,
        console_tail: outcome.console_tail,
    })
}

// ---------------------------------------------------------------------
// The monitor's side.

/// A running VMM process.
pub struct VmmProcess {
    child: Child,
    events: BufReader<ChildStdout>,
    killer: Arc<ProcessKiller>,
}

impl VmmProcess {
    /// Start the VMM in the pod directory (the current one) with
    /// `launch`, handing it passt's `net` stream: `peapod-vmm` beside
    /// `exe` (the monitor's own executable), else `peapod __vmm`
    /// ([`super::helper_command`]).
    pub fn spawn(
        exe: &Path,
        launch: &VmmLaunch,
        net: Option<&UnixStream>,
    ) -> anyhow::Result<VmmProcess> {
        let input = serde_json::to_vec(launch)?;
        let mut cmd = super::helper_command(exe, VMM_BINARY, VMM_COMMAND);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let net_fd = net.map(AsRawFd::as_raw_fd);
        // SAFETY: prctl and dup2 are async-signal-safe; they touch only the
        // child's own settings and descriptors.
        unsafe {
            cmd.pre_exec(move || {
                // The VMM dies with its monitor: nothing would supervise it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = net_fd {
                    // dup2 clears close-on-exec on the copy (the original
                    // keeps it); the same number would keep it set.
                    let rc = if fd == NET_FD {
                        libc::fcntl(fd, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, NET_FD)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the VMM ({:?})", cmd.get_program()))?;
        let killer = Arc::new(ProcessKiller::new(child.id()));
        let mut stdin = child.stdin.take().context("no pipe to the VMM")?;
        let events = BufReader::new(child.stdout.take().context("no pipe from the VMM")?);
        if let Err(e) = stdin.write_all(&input) {
            killer.kill();
            let _ = child.wait();
            return Err(anyhow!(e).context("cannot hand the VMM its launch"));
        }
        drop(stdin);
        Ok(VmmProcess {
            child,
            events,
            killer,
        })
    }

    /// The VMM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What ends the VMM from any thread.
    pub fn killer(&self) -> Arc<ProcessKiller> {
        self.killer.clone()
    }

    /// The next event; `None` at the end of the stream, or when the VMM
    /// breaks the protocol (it is killed then: a line over [`MAX_EVENT`],
    /// or one that is not an event).
    pub fn next_event(&mut self) -> Option<VmmEvent> {
        let mut line = Vec::new();
        let read = (&mut self.events)
            .take(MAX_EVENT as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => None,
            Ok(_) if line.last() != Some(&b'\n') => {
                log::warn!("the VMM sent an overlong or unfinished event: killing it");
                self.killer.kill();
                None
            }
            Ok(_) => match serde_json::from_slice::<VmmEvent>(&line) {
                Ok(VmmEvent::Ended(o)) => Some(VmmEvent::Ended(o.bounded())),
                Ok(VmmEvent::Failed(mut why)) => {
                    peapod_proto::truncate_utf8(&mut why, MAX_EVENT / 4);
                    Some(VmmEvent::Failed(why))
                }
                Ok(e) => Some(e),
                Err(e) => {
                    log::warn!("the VMM sent something that is not an event ({e}): killing it");
                    self.killer.kill();
                    None
                }
            },
            Err(e) => {
                log::warn!("cannot read the VMM's events: {e}");
                None
            }
        }
    }

    /// Wait for the VMM to exit (the event stream ended first).
    pub fn wait(mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait();
        self.killer.reaped();
        status
    }
}

/// Why a VMM process ended without telling its end, for a user.
pub fn describe_death(status: ExitStatus) -> String {
    // SIGSYS itself when the call was made with signals blocked (the
    // handler that names the call could not run).
    if status.code() == Some(SECCOMP_EXIT) || status.signal() == Some(libc::SIGSYS) {
        return "the VMM made a system call outside its seccomp allowlist and was stopped \
                (see monitor.log)"
            .into();
    }
    if let Some(sig) = status.signal() {
        // SAFETY: strsignal returns a pointer to a static (or thread-local)
        // string, copied at once.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) }
            .to_string_lossy()
            .into_owned();
        return format!("the VMM process was killed by signal {sig} ({name})");
    }
    format!(
        "the VMM process exited ({status}) before the VM ended; see {}",
        super::monitor::MONITOR_LOG
    )
}

/// Sends `SIGKILL` to one child process, through a pidfd where the kernel
/// has them (5.3 and later), so a reaped and reused process id is never
/// hit; otherwise by pid, which is safe until the child is reaped (the
/// waiter calls [`ProcessKiller::reaped`] first thing after).
pub struct ProcessKiller {
    pid: u32,
    pidfd: Option<OwnedFd>,
    reaped: std::sync::atomic::AtomicBool,
}

impl ProcessKiller {
    /// For child `pid`, not yet reaped.
    pub fn new(pid: u32) -> ProcessKiller {
        // SAFETY: pidfd_open with a pid and no flags; the result is a new
        // descriptor we own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        ProcessKiller {
            pid,
            // SAFETY: a descriptor just returned to us, owned from here.
            pidfd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            reaped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Kill the process (no effect once it ended).
    pub fn kill(&self) {
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0u32,
                    )
                };
            }
            None if !self.reaped.load(std::sync::atomic::Ordering::SeqCst) => {
                // SAFETY: kill with the pid of our child, not yet reaped.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            }
            None => {}
        }
    }

    /// The child was reaped: its pid may name another process now.
    pub fn reaped(&self) {
        self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn test_vmm_outcome_is_bounded_on_receipt() {
        let o = VmmOutcome {
            failure: Some("x".repeat(MAX_EVENT)),
            ready_uptime_ms: None,
            guest_resident: 0,
            process_rss: None,
            process_pss: None,
            guest_returned: 0,
            console_tail: (0..1000)
                .map(|i| format!("{i}{}", "é".repeat(400)))
                .collect(),
        }
        .bounded();
        assert_eq!(o.console_tail.len(), MAX_TAIL_LINES);
        assert!(o.console_tail[0].starts_with("960"));
        assert!(o.console_tail.iter().all(|l| l.len() <= MAX_TAIL_LINE));
        assert!(o.failure.unwrap().len() <= MAX_EVENT / 4);
    }

    #[test]
    fn test_describe_death_names_seccomp_and_signals() {
        let seccomp = ExitStatus::from_raw(SECCOMP_EXIT << 8);
        assert!(describe_death(seccomp).contains("seccomp allowlist"));
        let sigsys = ExitStatus::from_raw(libc::SIGSYS);
        assert!(describe_death(sigsys).contains("seccomp allowlist"));
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(
            describe_death(killed),
            "the VMM process was killed by signal 9 (Killed)"
        );
        assert!(describe_death(ExitStatus::from_raw(3 << 8)).contains("exited"));
    }

    /// The killer reaches its child, and nothing once the child is
    /// reaped.
    #[test]
    fn test_process_killer_kills_its_child() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let killer = ProcessKiller::new(child.id());
        killer.kill();
        let status = child.wait().unwrap();
        killer.reaped();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        killer.kill();
    }
}
