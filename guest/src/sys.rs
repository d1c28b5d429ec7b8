//! The few system calls PID 1 needs, as safe functions.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A file system PID 1 mounts at boot.
pub struct MountSpec {
    /// Source (device or pseudo name).
    pub source: &'static str,
    /// Where it goes.
    pub target: &'static str,
    /// File system type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: libc::c_ulong,
    /// File-system specific options.
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The kernel file systems every guest gets.
pub const BASE_MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
];

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

/// Mount one file system, creating the mount point if needed.
pub fn mount_fs(m: &MountSpec) -> io::Result<()> {
    std::fs::create_dir_all(m.target)?;
    let (source, target, fstype, data) = (
        cstr(m.source)?,
        cstr(m.target)?,
        cstr(m.fstype)?,
        cstr(m.data)?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Ok(());
        }
        return Err(io::Error::new(
            e.kind(),
            format!("mount {} on {}: {e}", m.fstype, m.target),
        ));
    }
    Ok(())
}

/// Report free pages to the host (virtio-balloon) in 128 KiB blocks. The
/// kernel's default is a pageblock (4 MiB in the peapod kernel), and it
/// reports only while a zone has 32 such blocks free over its low
/// watermark: 128 MiB, which a small pod never has. At order 5 that is
/// 4 MiB. The 6.1 kernel resets a boot-time value when the balloon driver
/// registers, so it is set here, after the driver's probe. Without the
/// device (or the parameter) nothing changes.
pub fn tune_page_reporting() {
    let _ = std::fs::write(
        "/sys/module/page_reporting/parameters/page_reporting_order",
        "5",
    );
}

/// Milliseconds since the guest kernel booted.
pub fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Set the UTS host name.
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Flush file systems and reset the VM (the kernel runs with `reboot=k`, so
/// this pulses the i8042 reset line, which the VMM turns into a clean exit).
pub fn reset_machine() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot only returns on error.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
    }
    // Without CAP_SYS_BOOT (never in a guest) there is nothing left to do.
    std::process::exit(1)
}

/// Turn a `-1` return into the thread's `errno`, with what failed.
fn check(rc: libc::c_long, what: impl FnOnce() -> String) -> io::Result<libc::c_long> {
    if rc == -1 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
    }
    Ok(rc)
}

fn path_cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// mount(2) with optional source, type and data; errors name the target.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let target_c = path_cstr(target)?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NULL or a NUL-terminated string alive for the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(rc.into(), || {
        format!(
            "mount {} on {}",
            fstype
                .as_ref()
                .or(source.as_ref())
                .map_or("(flags)".into(), |c| c.to_string_lossy().into_owned()),
            target.display()
        )
    })?;
    Ok(())
}

/// Bind-mount `source` on `target`, read-only if asked (a bind mount only
/// becomes read-only with a second, remounting call).
pub fn bind_mount(source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
    let src = source
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 bind source path"))?;
    mount(Some(src), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if read_only {
        mount(
            None,
            target,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Make every mount below `/` private, so nothing we mount propagates out.
pub fn make_mounts_private() -> io::Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes no pointers.
    let rc = unsafe { libc::unshare(flags) };
    check(rc.into(), || "unshare namespaces".into())?;
    Ok(())
}

/// Switch the root of this mount namespace to the current directory, and
/// detach the old root (the `pivot_root(".", ".")` idiom).
pub fn pivot_to_cwd() -> io::Result<()> {
    let dot = cstr(".")?;
    // SAFETY: both arguments are valid NUL-terminated strings.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check(rc, || "pivot_root".into())?;
    // SAFETY: a valid NUL-terminated string.
    let rc = unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) };
    check(rc.into(), || "detach the old root".into())?;
    std::env::set_current_dir("/")
}

/// Fork into new namespaces (`clone` without a new stack, like fork).
/// Returns 0 in the child and the child's PID in the parent. Only safe in a
/// single-threaded process, which peapod-init is.
pub fn clone_process(ns_flags: libc::c_int) -> io::Result<libc::pid_t> {
    let flags = (ns_flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: the raw clone syscall with a NULL stack behaves like fork: the
    // child continues on a copy of our stack. The process has one thread, so
    // no lock can be held by a thread that does not exist in the child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    Ok(check(rc, || "clone a process".into())? as libc::pid_t)
}

/// A pipe whose ends are close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(rc.into(), || "create a pipe".into())?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Set O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor with integer arguments.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check(fl.into(), || "get descriptor flags".into())?;
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) };
    check(rc.into(), || "set O_NONBLOCK".into())?;
    Ok(())
}

/// Make `fd` the descriptor `target` (dup2), clearing close-on-exec.
pub fn dup_to(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on valid descriptor numbers.
    let rc = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    check(rc.into(), || format!("dup2 to fd {target}"))?;
    Ok(())
}

/// Block SIGCHLD and return a signalfd that reports it.
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset to fill.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid; the calls only write into it / read it.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    check(fd.into(), || "create a signalfd".into())?;
    // SAFETY: signalfd returned a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drain a signalfd (the reaping loop finds the children itself).
pub fn drain_signalfd(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>() * 8];
    loop {
        // SAFETY: reading into a buffer we own, of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
    }
}

/// Give a forked child the default signal state: nothing blocked, nothing
/// ignored (Rust ignores SIGPIPE, and ignored signals survive execve).
pub fn reset_signals() {
    // SAFETY: sigset/sigaction calls on valid local storage; resetting a
    // disposition to SIG_DFL has no memory-safety preconditions.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// Reap one exited child without blocking: `None` when none is left to reap.
pub fn reap_one() -> Option<(libc::pid_t, ExitStatus)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid storage for waitpid to fill.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if libc::WIFEXITED(status) {
            return Some((pid, ExitStatus::Code(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Some((pid, ExitStatus::Signal(libc::WTERMSIG(status))));
        }
        // Stopped/continued children are not exits; keep looking.
    }
}

/// Wait for one specific child, blocking.
pub fn wait_for(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid storage for waitpid to fill.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) {
            return Ok(ExitStatus::Code(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(ExitStatus::Signal(libc::WTERMSIG(status)));
        }
    }
}

/// Send a signal; a process that is already gone is not an error.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, sig) };
}

/// Realtime clock in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Bring the loopback interface up (SIOCSIFFLAGS on a datagram socket).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd.into(), || "open a socket to configure lo".into())?;
    // SAFETY: a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming `lo`, filled in by the kernel.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    check(rc.into(), || "get the flags of lo".into())?;
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above, a valid ifreq read by the kernel.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    check(rc.into(), || "bring lo up".into())?;
    Ok(())
}

/// `_exit(2)`: end a forked child without running our parent's cleanup.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// The scratch a pod's PID 1 needs: shared memory for the pod's IPC
/// namespace, a fresh /run (the share, volumes and containers live below
/// it), and loopback up.
pub fn mount_pod_scratch() -> io::Result<()> {
    std::fs::create_dir_all("/dev/shm")?;
    mount(
        Some("shm"),
        Path::new("/dev/shm"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )?;
    mount(
        Some("tmpfs"),
        Path::new("/run"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755"),
    )?;
    loopback_up()
}

/// setns(2): join the namespace `fd` refers to; `nstype` is its
/// `CLONE_NEW*` flag (the kernel checks the descriptor is of that type).
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and an integer.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    check(rc.into(), || "join a namespace (setns)".into())?;
    Ok(())
}

/// Open a new pseudo-terminal pair on the devpts instance mounted at
/// `dev/pts` under the directory `root` (an `O_PATH` descriptor of a
/// container's root), resolving the path as if `root` were `/`, so no
/// symlink inside the container can lead elsewhere. Returns `(master,
/// slave)`, both close-on-exec, the slave opened from the master
/// (TIOCGPTPEER), never by a path.
pub fn open_pty_in(root: BorrowedFd<'_>) -> io::Result<(OwnedFd, OwnedFd)> {
    let name = cstr("dev/pts/ptmx")?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory descriptor, a NUL-terminated path and an
    // open_how of the size passed, all alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = check(rc, || "find /dev/pts/ptmx in the container".into())?;
    // SAFETY: openat2 returned a fresh descriptor we own.
    let path_fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // Only a pty multiplexer (char 5:2) may be opened: the container owns
    // this path, and opening some devices has effects.
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `st` for an open descriptor.
    let rc = unsafe { libc::fstat(path_fd.as_raw_fd(), st.as_mut_ptr()) };
    check(rc.into(), || "stat /dev/pts/ptmx in the container".into())?;
    // SAFETY: fstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    let is_ptmx = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 5
        && libc::minor(st.st_rdev) == 2;
    if !is_ptmx {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "/dev/pts/ptmx in the container is not a pty multiplexer (devpts not mounted?)",
        ));
    }
    // Reopen the checked file itself for reading and writing.
    let reopen = cstr(&format!("/proc/self/fd/{}", path_fd.as_raw_fd()))?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            reopen.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    check(fd.into(), || "open /dev/pts/ptmx in the container".into())?;
    // SAFETY: a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    check(rc.into(), || "unlock the pty".into())?;
    // SAFETY: TIOCGPTPEER takes open flags as an integer argument.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    check(fd.into(), || "open the pty's terminal side".into())?;
    // SAFETY: TIOCGPTPEER returned a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((master, slave))
}

/// Set a terminal's size (the kernel sends SIGWINCH to its foreground
/// process group).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    check(rc.into(), || "set the terminal size".into())?;
    Ok(())
}

/// Start a new session and make `fd`, a terminal, its controlling terminal.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    let rc = unsafe { libc::setsid() };
    check(rc.into(), || "start a session (setsid)".into())?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    check(rc.into(), || "set the controlling terminal".into())?;
    Ok(())
}

/// Close every descriptor from 3 up except `keep`, so a process about to
/// enter a container holds nothing else of its parent's (close-on-exec
/// would only close them at execve). A kernel without close_range (before
/// 5.9) leaves them to close-on-exec.
pub fn close_other_fds(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd >= 3)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let close_range = |first: u32, last: u32| -> io::Result<()> {
        // SAFETY: close_range takes integers; the descriptors it closes are
        // not used again by this process.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        match io::Error::last_os_error() {
            _ if rc != -1 => Ok(()),
            e if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
            e => Err(io::Error::new(e.kind(), format!("close descriptors: {e}"))),
        }
    };
    let mut from = 3u32;
    for fd in keep {
        if fd > from {
            close_range(from, fd - 1)?;
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX)
}

/// Make the process not dumpable: no ptrace attach or /proc/PID/fd access
/// by processes of the same user (the kernel resets it at execve).
pub fn set_not_dumpable() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) };
}

/// One read(2) from `fd`.
pub fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One send(2) on socket `fd`, without SIGPIPE if the peer has gone.
pub fn write_some(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `addr` as the kernel takes it.
pub fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD on any number only reads the descriptor table.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    }

    #[test]
    fn test_close_other_fds_keeps_only_the_listed() {
        // In a forked child: this would close the test harness's descriptors.
        // SAFETY: glibc's fork makes malloc usable in the child; the child
        // only opens, closes and checks descriptors, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let fds: Vec<RawFd> = (0..6)
                // SAFETY: a valid NUL-terminated path.
                .map(|_| unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) })
                .collect();
            let keep = [fds[1], fds[4]];
            let ok = fds.iter().all(|fd| *fd >= 3)
                && close_other_fds(&keep).is_ok()
                && fds.iter().all(|fd| is_open(*fd) == keep.contains(fd))
                && (0..3).all(is_open);
            exit_now(if ok { 0 } else { 1 });
        }
        assert_eq!(wait_for(pid).unwrap(), ExitStatus::Code(0));
    }
}
