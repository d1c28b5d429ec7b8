//! Confinement of the VMM's threads, unprivileged, before the first guest
//! instruction runs. The VMM is a process of its own (`peapod __vmm`, see
//! `sandbox::vmm_process`), so every thread of it is confined.
//!
//! - **The process** ([`harden_process`]): `PR_SET_NO_NEW_PRIVS` (nothing
//!   it executes gains privileges; also what seccomp needs without
//!   `CAP_SYS_ADMIN`), `PR_SET_DUMPABLE=0` (no core dump holds guest
//!   memory, no other process of the user may ptrace it or read its
//!   memory through /proc) and `RLIMIT_CORE=0`.
//! - **A seccomp allowlist per thread kind** (rust-vmm's `seccompiler`):
//!   vCPU threads ([`confine_vcpu`]: what `KVM_RUN` and the port and MMIO
//!   exits they handle need), the device thread ([`confine_devices`]: the
//!   event loop, the virtio-fs passthrough's file calls, vsock's and the
//!   network's Unix sockets; no KVM ioctl, no process calls) and, once
//!   the VM runs, the main thread ([`confine_main`]: waits, kicks, exits;
//!   no open, no socket, no new thread, with `RLIMIT_NPROC` 0). A system
//!   call outside a list stops the VMM with a message naming the call
//!   ([`SECCOMP_EXIT`]), rather than let a compromised device model reach
//!   the rest of the kernel.
//! - **Landlock** ([`confine_paths`], every thread): the files the VMM
//!   may open are the pod's shares (read-only ones read-only), the pod
//!   directory and the console log's directory. Best-effort: a kernel
//!   without Landlock (before 5.13, or not enabled) runs the VM
//!   unconfined this way, and `peapod doctor` says so.
//!
//! Landlock and seccomp filters apply to the calling thread (and threads it
//! starts later), so each thread installs its own; `Vm::run` (in-process,
//! for tests) leaves the caller's thread unconfined.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The exit status of a VMM stopped by its seccomp filter.
pub const SECCOMP_EXIT: i32 = 159;

/// Why a thread could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The seccomp filter could not be built or installed.
    #[error("cannot install the seccomp filter of the {0} thread: {1}")]
    Seccomp(&'static str, String),
    /// Landlock failed on a kernel that has it.
    #[error("cannot confine the {0} thread with Landlock: {1}")]
    Landlock(&'static str, String),
    /// A process-wide setting failed.
    #[error("cannot harden the VMM process ({0}): {1}")]
    Process(&'static str, io::Error),
}

/// No new privileges, not dumpable, no core files: once, before the VM is
/// built.
pub fn harden_process() -> Result<(), JailError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(JailError::Process(
            "PR_SET_NO_NEW_PRIVS",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(JailError::Process(
            "PR_SET_DUMPABLE",
            io::Error::last_os_error(),
        ));
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(JailError::Process(
            "RLIMIT_CORE",
            io::Error::last_os_error(),
        ));
    }
    install_sigsys_handler();
    Ok(())
}

/// The system calls of a vCPU thread, beyond `ioctl` (limited to
/// `KVM_RUN` and non-blocking mode) and `socket` (Unix sockets only):
/// those of its exits' handlers and of the Rust runtime underneath
/// (allocation, locks, logging, thread exit). A guest driver that brings a
/// device up (DRIVER_OK, on a vCPU) makes it serve what waited, so the
/// socket I/O of vsock (host connections) and of the network (passt's
/// stream) is here too.
const VCPU_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_sendmmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_rseq,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_tgkill,
];

/// The system calls of the device thread (the event loop: virtio-fs,
/// vsock, net, rng, the queues' interrupts), beyond `ioctl` (non-blocking
/// and close-on-exec only) and `socket` (Unix sockets only). virtio-fs is a
/// passthrough file system, so the file calls are here, every one of them
/// on descriptors and paths that Landlock keeps to the pod's shares; what
/// is not here is what a VMM never needs: processes (`clone`, `execve`,
/// `ptrace`), mounts, namespaces, keys, BPF, modules, other address
/// families, KVM.
const DEVICE_SYSCALLS: &[i64] = &[
    // Descriptors and data.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    // The passthrough file system.
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_umask,
    // The same by path, as the standard library makes them (the vsock
    // socket's removal at the end, among others).
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_link,
    libc::SYS_symlink,
    libc::SYS_readlink,
    // The passthrough creates files as the guest's caller when it may
    // (root): the thread's credentials, switched and switched back.
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    // The event loop and vsock's and the network's sockets.
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    // The Rust runtime: memory, locks, time, signals, logging, exit.
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // virtio-balloon: what of a reported range is resident.
    libc::SYS_mincore,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_rseq,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The system calls of the VMM process's main thread once the VM runs: it
/// waits for the device thread, kicks the vCPUs out of `KVM_RUN` at the
/// end, joins them, measures memory, writes the outcome to the monitor and
/// exits; dropping the VM removes the vsock socket. No file is opened, no
/// socket made, no thread started.
const MAIN_SYSCALLS: &[i64] = &[
    libc::SYS_unlink,
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fcntl,
    libc::SYS_mincore,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_rseq,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// KVM's ioctl type: a vCPU thread's only ioctl is `KVM_RUN`.
const KVM_IOCTL_TYPE: u64 = 0xAE;

/// A rule: argument `arg` (a 32-bit value) equals `value`.
fn arg_is(arg: u8, value: u64) -> Result<SeccompRule, String> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )
    .map_err(|e| e.to_string())?])
    .map_err(|e| e.to_string())
}

/// An allowlist: `syscalls` with any arguments, `ioctl` with one of
/// `ioctls` as its request, and `socket` for Unix sockets when
/// `unix_sockets`. Anything else traps ([`SECCOMP_EXIT`]).
fn allowlist(syscalls: &[i64], ioctls: &[u64], unix_sockets: bool) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        syscalls.iter().map(|&n| (n, Vec::new())).collect();
    // seccomp compares whole words, so each request number is its own
    // rule rather than a mask.
    if !ioctls.is_empty() {
        rules.insert(
            libc::SYS_ioctl,
            ioctls
                .iter()
                .map(|&n| arg_is(1, n))
                .collect::<Result<_, _>>()?,
        );
    }
    if unix_sockets {
        rules.insert(libc::SYS_socket, vec![arg_is(0, libc::AF_UNIX as u64)?]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// FIONBIO and FIOCLEX, with which Rust's standard library makes a socket
/// non-blocking or close-on-exec.
const STD_IOCTLS: [u64; 2] = [libc::FIONBIO, libc::FIOCLEX];

fn install(what: &'static str, bpf: Result<BpfProgram, String>) -> Result<(), JailError> {
    let bpf = bpf.map_err(|e| JailError::Seccomp(what, e))?;
    seccompiler::apply_filter(&bpf).map_err(|e| JailError::Seccomp(what, e.to_string()))
}

/// Confine the calling vCPU thread with its seccomp allowlist: its only
/// KVM ioctl is `KVM_RUN`; vsock connects to the pod's Unix sockets.
pub fn confine_vcpu() -> Result<(), JailError> {
    let kvm_run = (KVM_IOCTL_TYPE << 8) | 0x80;
    let ioctls = [kvm_run, STD_IOCTLS[0], STD_IOCTLS[1]];
    install("vCPU", allowlist(VCPU_SYSCALLS, &ioctls, true))
}

/// Confine the calling device (event-loop) thread with its seccomp
/// allowlist: no KVM ioctl at all.
pub fn confine_devices() -> Result<(), JailError> {
    install("device", allowlist(DEVICE_SYSCALLS, &STD_IOCTLS, true))
}

/// Confine the VMM process's main thread once every other thread runs:
/// its seccomp allowlist, and no new process or thread for this process
/// from here on (`RLIMIT_NPROC` 0; root is exempt from it, not from the
/// filter, which has no `clone`).
pub fn confine_main() -> Result<(), JailError> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &none) } != 0 {
        return Err(JailError::Process(
            "RLIMIT_NPROC",
            io::Error::last_os_error(),
        ));
    }
    install("main", allowlist(MAIN_SYSCALLS, &[], false))
}

/// `SIGSYS` from a seccomp `Trap`: say which call, then end the process
/// (the filter's thread could not go on, and a VMM missing a thread is no
/// VMM). Only async-signal-safe calls.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // siginfo for SIGSYS: si_syscall is the int at byte 24 (after si_signo,
    // si_errno, si_code, padding and si_call_addr).
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let nr = unsafe { *(info as *const u8).add(24).cast::<i32>() };
    const HEAD: &[u8] = b"peapod: the VMM made system call #";
    const TAIL: &[u8] = b" outside its seccomp allowlist: stopped\n";
    let mut msg = [0u8; 96];
    msg[..HEAD.len()].copy_from_slice(HEAD);
    let mut len = HEAD.len();
    let mut digits = [0u8; 10];
    let mut n = nr.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits[..count].iter().rev() {
        msg[len] = d;
        len += 1;
    }
    msg[len..len + TAIL.len()].copy_from_slice(TAIL);
    len += TAIL.len();
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is a valid
    // buffer of its length.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), len);
        libc::_exit(SECCOMP_EXIT);
    }
}

fn install_sigsys_handler() {
    // SAFETY: a zeroed sigaction is valid; we set the handler and flags and
    // install it for SIGSYS only.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_sigsys;
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
    }
}

/// What Landlock did for a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confined {
    /// Every restriction asked for holds.
    Fully,
    /// The kernel's Landlock is older: some rights are not restricted.
    Partly,
    /// No Landlock on this kernel: not confined.
    Not,
}

/// The files a VMM thread may open: `read_only` beneath these for reading,
/// `writable` beneath these for everything.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    /// Read (and execute, and list) only.
    pub read_only: Vec<PathBuf>,
    /// Anything.
    pub writable: Vec<PathBuf>,
}

/// Confine the calling thread (named `what`) to `rules` with Landlock,
/// best-effort.
pub fn confine_paths(what: &'static str, rules: &PathRules) -> Result<Confined, JailError> {
    let abi = ABI::V3;
    let fail = |e: landlock::RulesetError| JailError::Landlock(what, e.to_string());
    let existing =
        |ps: &[PathBuf]| -> Vec<PathBuf> { ps.iter().filter(|p| p.exists()).cloned().collect() };
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            existing(&rules.read_only),
            AccessFs::from_read(abi),
        ))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            existing(&rules.writable),
            AccessFs::from_all(abi),
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confined::Fully,
        RulesetStatus::PartiallyEnforced => Confined::Partly,
        RulesetStatus::NotEnforced => Confined::Not,
    })
}

/// The Landlock ABI of the running kernel: `None` when it has none.
pub fn landlock_abi() -> Option<i64> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v)
}

/// A file's directory, for rules on files that may not exist yet.
pub fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: &str = "PEAPOD_JAIL_TEST_INNER";

    /// Run test `name` of this binary again in a child process with
    /// `INNER` set; returns its output.
    fn rerun(name: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(INNER, "1")
            .output()
            .unwrap()
    }

    /// A vCPU thread that makes a system call outside its list (here
    /// `socket`, as a compromised device model reaching for the network
    /// would) stops the VMM with a message naming the call.
    #[test]
    fn test_jail_vcpu_seccomp_stops_the_vmm_on_a_call_outside_the_list() {
        let name =
            "vmm::jail::tests::test_jail_vcpu_seccomp_stops_the_vmm_on_a_call_outside_the_list";
        if std::env::var_os(INNER).is_some() {
            harden_process().unwrap();
            let t = std::thread::spawn(|| {
                confine_vcpu().unwrap();
                // Allowed calls work.
                let mut buf = [0u8; 8];
                // SAFETY: getrandom into a buffer of its length.
                let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
                assert_eq!(n, 8);
                eprintln!("allowed calls work");
                // A Unix socket is allowed; an Internet one is not.
                // SAFETY: socket(2) with constant arguments; the fd is closed.
                unsafe { libc::close(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)) };
                eprintln!("unix sockets work");
                // SAFETY: socket(2) with constant arguments.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                eprintln!("still running after socket(2)");
            });
            let _ = t.join();
            return;
        }
        let out = rerun(name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(SECCOMP_EXIT), "{stderr}");
        assert!(stderr.contains("allowed calls work"), "{stderr}");
        assert!(stderr.contains("unix sockets work"), "{stderr}");
        assert!(
            stderr.contains(&format!("system call #{}", libc::SYS_socket))
                && stderr.contains("outside its seccomp allowlist"),
            "{stderr}"
        );
        assert!(!stderr.contains("still running"), "{stderr}");
    }

    /// The device thread's filter lets the passthrough's file calls and
    /// Unix sockets through and stops the VMM on `execve`; the main
    /// thread's stops it on any `openat` once the VM runs, and it can start
    /// no thread.
    #[test]
    fn test_jail_device_and_main_filters_stop_the_vmm_outside_their_lists() {
        let name =
            "vmm::jail::tests::test_jail_device_and_main_filters_stop_the_vmm_outside_their_lists";
        match std::env::var(INNER).as_deref() {
            Ok("device") => {
                harden_process().unwrap();
                let t = std::thread::spawn(|| {
                    confine_devices().unwrap();
                    let dir = std::env::temp_dir()
                        .join(format!("peapod-jail-dev-{}", std::process::id()));
                    std::fs::create_dir_all(dir.join("sub")).unwrap();
                    std::fs::write(dir.join("sub/f"), b"x").unwrap();
                    std::fs::rename(dir.join("sub/f"), dir.join("g")).unwrap();
                    std::os::unix::fs::symlink("g", dir.join("l")).unwrap();
                    assert_eq!(std::fs::read(dir.join("l")).unwrap(), b"x");
                    std::fs::remove_dir_all(&dir).unwrap();
                    // SAFETY: socket(2) with constant arguments; the fd
                    // is closed.
                    unsafe { libc::close(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)) };
                    eprintln!("file and socket calls work");
                    // SAFETY: execve with a valid path and empty argv/envp.
                    unsafe {
                        let argv: [*const libc::c_char; 1] = [std::ptr::null()];
                        libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), argv.as_ptr())
                    };
                    eprintln!("still running after execve(2)");
                });
                let _ = t.join();
                return;
            }
            Ok("main-open") => {
                harden_process().unwrap();
                confine_main().unwrap();
                eprintln!("confined");
                let _ = std::fs::File::open("/etc/hostname");
                eprintln!("still running after openat(2)");
                return;
            }
            Ok("main-thread") => {
                harden_process().unwrap();
                confine_main().unwrap();
                eprintln!("confined");
                // No new thread: RLIMIT_NPROC (for an unprivileged user)
                // or the filter (clone is not on the list) stops it; the
                // C library makes the call with signals blocked, so the
                // kernel ends the process with SIGSYS itself.
                let spawned = std::thread::Builder::new().spawn(|| ()).is_ok();
                eprintln!("still running: spawned a thread: {spawned}");
                return;
            }
            _ => {}
        }
        let run = |kind: &str| {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(INNER, kind)
                .output()
                .unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        use std::os::unix::process::ExitStatusExt;
        let (status, stderr) = run("device");
        assert_eq!(status.code(), Some(SECCOMP_EXIT), "{stderr}");
        assert!(stderr.contains("file and socket calls work"), "{stderr}");
        assert!(
            stderr.contains(&format!("system call #{} outside", libc::SYS_execve)),
            "{stderr}"
        );
        assert!(!stderr.contains("still running"), "{stderr}");
        let (status, stderr) = run("main-open");
        assert_eq!(status.code(), Some(SECCOMP_EXIT), "{stderr}");
        assert!(stderr.contains("confined"), "{stderr}");
        assert!(
            stderr.contains(&format!("system call #{} outside", libc::SYS_openat)),
            "{stderr}"
        );
        assert!(!stderr.contains("still running"), "{stderr}");
        let (status, stderr) = run("main-thread");
        assert!(stderr.contains("confined"), "{stderr}");
        assert!(
            status.signal() == Some(libc::SIGSYS)
                || stderr.contains("still running: spawned a thread: false"),
            "{status:?} {stderr}"
        );
    }

    /// A thread confined to the pod's paths cannot open a file outside
    /// them, nor write beneath a read-only share.
    #[test]
    fn test_jail_landlock_keeps_a_thread_to_its_paths() {
        if landlock_abi().is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "this kernel has no Landlock, and CI=true"
            );
            eprintln!("skipped: this kernel has no Landlock");
            return;
        }
        let base = std::env::temp_dir().join(format!("peapod-jail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for d in ["ro", "rw", "outside"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
            std::fs::write(base.join(d).join("f"), d).unwrap();
        }
        let rules = PathRules {
            read_only: vec![base.join("ro")],
            writable: vec![base.join("rw")],
        };
        let b = base.clone();
        let got = std::thread::spawn(move || {
            let status = confine_paths("test", &rules).unwrap();
            let read = |p: &str| std::fs::read_to_string(b.join(p)).map_err(|e| e.kind());
            let write = |p: &str| std::fs::write(b.join(p), "x").map_err(|e| e.kind());
            (
                status,
                read("ro/f"),
                write("ro/f"),
                write("rw/new"),
                read("outside/f"),
                std::fs::read_to_string("/etc/hostname").map_err(|e| e.kind()),
            )
        })
        .join()
        .unwrap();
        // This thread was not confined.
        assert_eq!(
            std::fs::read_to_string(base.join("outside/f")).unwrap(),
            "outside"
        );
        std::fs::remove_dir_all(&base).unwrap();
        let denied = Err(io::ErrorKind::PermissionDenied);
        assert_ne!(got.0, Confined::Not);
        assert_eq!(got.1, Ok("ro".to_owned()));
        assert_eq!(got.2, denied);
        assert_eq!(got.3, Ok(()));
        assert_eq!(got.4, Err(io::ErrorKind::PermissionDenied));
        assert_eq!(got.5, Err(io::ErrorKind::PermissionDenied));
    }
}
