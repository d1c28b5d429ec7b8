//! Starting one container: a child cloned into its own mount namespace (and
//! PID namespace unless the pod shares one), with an overlay root, its own
//! /proc and /dev, per-container /etc files, the pod's volumes, then the
//! user, working directory and command.
//!
//! Everything after the clone runs in the child, which reports any failure
//! on its stderr (so it shows up in the container's log) and exits 127.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use peapod_proto::{WireContainer, WireMount, WirePod};

use crate::{cgroup, net, sys};

/// Where the init keeps per-container scratch (a tmpfs per container).
pub const CONTAINERS_DIR: &str = "/run/peapod/containers";
/// Where the init mounts the pod's emptyDir volumes.
pub const VOLUMES_DIR: &str = "/run/peapod/volumes";
/// Where the init keeps each container's termination message file (bound
/// on its `terminationMessagePath`).
pub const TERMINATION_DIR: &str = "/run/peapod/termination";

/// Device nodes bind-mounted from the init's /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every container of the pod shares.
pub struct PodContext<'a> {
    /// The pod.
    pub pod: &'a WirePod,
    /// Root of the pod share: image root filesystems live under it.
    pub share: &'a Path,
    /// Content for each container's /etc/resolv.conf: from the pod's
    /// network, else the init's own.
    pub resolv_conf: &'a [u8],
}

/// A started container: its main process, the read ends of its output,
/// and a pipe that closes once the process has exec'd its command (or
/// ended): until then it is still setting up its root, and an exec or a
/// probe in it would not see the container's filesystem.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub execed: OwnedFd,
}

/// Clone the container's process and return its PID and output pipes.
/// The process first joins the cgroups whose `cgroup.procs` files are
/// given (see [`crate::cgroup::join`]), so all of the container runs in them.
pub fn spawn(
    ctx: &PodContext<'_>,
    c: &WireContainer,
    cgroup_procs: &[fs::File],
) -> io::Result<Spawned> {
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    let termination = match &c.termination_message_path {
        Some(_) => Some(termination_file(&c.name)?),
        None => None,
    };
    // Close-on-exec: the child's end closes at its execve.
    let (execed_r, execed_w) = sys::pipe()?;
    let mut flags = libc::CLONE_NEWNS;
    if !ctx.pod.share_process_namespace {
        flags |= libc::CLONE_NEWPID;
    }
    let pid = sys::clone_process(flags)?;
    if pid == 0 {
        drop((out_r, err_r, execed_r));
        child(
            ctx,
            c,
            cgroup_procs,
            termination.as_deref(),
            out_w,
            err_w,
            execed_w,
        )
    }
    Ok(Spawned {
        pid,
        stdout: out_r,
        stderr: err_r,
        execed: execed_r,
    })
}

/// The init's file for container `name`'s termination message: empty, and
/// writable by whatever user the container runs as (as the kubelet makes
/// it).
fn termination_file(name: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(TERMINATION_DIR).map_err(ctx_err(format!("create {TERMINATION_DIR}")))?;
    let path = Path::new(TERMINATION_DIR).join(name);
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(ctx_err(format!("create {}", path.display())))?;
    file.set_permissions(fs::Permissions::from_mode(0o666))?;
    Ok(path)
}

/// What container `name` left in its termination message file: at most
/// `max` bytes, `None` if nothing.
pub fn termination_message(name: &str, max: usize) -> Option<String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(Path::new(TERMINATION_DIR).join(name))
        .ok()?;
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, max as u64), &mut buf).ok()?;
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

fn child(
    ctx: &PodContext<'_>,
    c: &WireContainer,
    cgroup_procs: &[fs::File],
    termination: Option<&Path>,
    out: OwnedFd,
    err: OwnedFd,
    execed: OwnedFd,
) -> ! {
    sys::reset_signals();
    if sys::dup_to(out.as_fd(), 1).is_err() || sys::dup_to(err.as_fd(), 2).is_err() {
        sys::exit_now(127);
    }
    drop((out, err));
    let e = match cgroup::join(cgroup_procs).and_then(|()| setup(ctx, c, termination)) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // The init hears that the setup failed (a byte, then the pipe's end)
    // before it reads why.
    // SAFETY: write of one byte from a valid buffer to an owned descriptor.
    unsafe { libc::write(execed.as_raw_fd(), b"!".as_ptr().cast(), 1) };
    drop(execed);
    eprintln!("peapod-init: container {}: {e}", c.name);
    sys::exit_now(127)
}

enum Never {}

fn ctx_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `root` joined with an absolute in-container path.
fn inside(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn setup(ctx: &PodContext<'_>, c: &WireContainer, termination: Option<&Path>) -> io::Result<Never> {
    let null = fs::File::open("/dev/null").map_err(ctx_err("open /dev/null"))?;
    sys::dup_to(null.as_fd(), 0)?;
    drop(null);
    sys::make_mounts_private()?;

    let dir = Path::new(CONTAINERS_DIR).join(&c.name);
    fs::create_dir_all(&dir).map_err(ctx_err(format!("create {}", dir.display())))?;
    sys::mount(Some("tmpfs"), &dir, Some("tmpfs"), 0, Some("mode=0755"))?;
    let (upper, work, merged, files) = (
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
        dir.join("files"),
    );
    for d in [&upper, &work, &merged, &files] {
        fs::create_dir(d).map_err(ctx_err(format!("create {}", d.display())))?;
    }

    // The root: the read-only image under a writable tmpfs upper layer.
    let lower = ctx.share.join(&c.rootfs);
    let lower_s = lower.to_str().unwrap_or_default();
    if lower_s.is_empty() || lower_s.contains([',', ':', '\\']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "rootfs path {} cannot be an overlay lower dir",
                lower.display()
            ),
        ));
    }
    if !lower.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("rootfs {} is not a directory", lower.display()),
        ));
    }
    let data = format!(
        "lowerdir={lower_s},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    sys::mount(Some("overlay"), &merged, Some("overlay"), 0, Some(&data))?;

    mount_proc_dev(&merged)?;
    write_etc_files(ctx, &merged, &files)?;
    for m in &c.volume_mounts {
        mount_volume(&merged, m).map_err(ctx_err(format!("volume mount {}", m.mount_path)))?;
    }
    for b in &c.binds {
        mount_bind(ctx.share, &merged, b)
            .map_err(ctx_err(format!("bind mount {}", b.destination)))?;
    }
    // Last, as the kubelet's: the path may be inside a volume.
    if let (Some(file), Some(at)) = (termination, &c.termination_message_path) {
        let fd = open_beneath(Path::new("/"), &file.to_string_lossy(), false)?;
        bind_opened(&fd, &inside(&merged, at), false)
            .map_err(ctx_err(format!("termination message file {at}")))?;
    }
    let cwd = inside(&merged, &c.working_dir);
    fs::create_dir_all(&cwd).map_err(ctx_err(format!("create working dir {}", c.working_dir)))?;
    if c.read_only_rootfs {
        sys::mount(
            None,
            &merged,
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )?;
    }

    std::env::set_current_dir(&merged).map_err(ctx_err("enter the new root"))?;
    sys::pivot_to_cwd()?;

    set_user(c.uid, c.gid, &c.supplemental_groups)?;
    std::env::set_current_dir(&c.working_dir)
        .map_err(ctx_err(format!("chdir {}", c.working_dir)))?;
    if c.no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(ctx_err("no_new_privs")(io::Error::last_os_error()));
        }
    }
    exec(c)
}

fn mount_proc_dev(root: &Path) -> io::Result<()> {
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let proc_dir = root.join("proc");
    fs::create_dir_all(&proc_dir).map_err(ctx_err("create /proc"))?;
    sys::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;
    // A read-only sysfs where the image has /sys, as Docker and the
    // kubelet give containers (tools read interfaces and limits there);
    // best effort: a container runs without it.
    let sys_dir = root.join("sys");
    if sys_dir.is_dir() {
        if let Err(e) = sys::mount(
            Some("sysfs"),
            &sys_dir,
            Some("sysfs"),
            nosuid_nodev_noexec | libc::MS_RDONLY,
            None,
        ) {
            eprintln!("peapod-init: no /sys in the container: {e}");
        }
    }

    let dev = root.join("dev");
    fs::create_dir_all(&dev).map_err(ctx_err("create /dev"))?;
    sys::mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=0755,size=65536k"),
    )?;
    for name in DEVICES {
        let target = dev.join(name);
        fs::File::create(&target).map_err(ctx_err(format!("create /dev/{name}")))?;
        sys::bind_mount(&Path::new("/dev").join(name), &target, false)?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts).map_err(ctx_err("create /dev/pts"))?;
    sys::mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    // The pod's IPC namespace is shared, so is its POSIX shared memory.
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(ctx_err("create /dev/shm"))?;
    sys::bind_mount(Path::new("/dev/shm"), &shm, false)?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(ctx_err(format!("create /dev/{link}")))?;
    }
    Ok(())
}

fn write_etc_files(ctx: &PodContext<'_>, root: &Path, files: &Path) -> io::Result<()> {
    let host = &ctx.pod.hostname;
    let hosts = net::hosts_file(host, ctx.pod.network.as_ref());
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(ctx_err("create /etc"))?;
    for (name, content) in [
        ("hosts", hosts.as_bytes()),
        ("hostname", format!("{host}\n").as_bytes()),
        ("resolv.conf", ctx.resolv_conf),
    ] {
        let src = files.join(name);
        fs::write(&src, content).map_err(ctx_err(format!("write {}", src.display())))?;
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644))?;
        let target = etc.join(name);
        // An image's symlink would resolve against the init's root: replace it.
        if target.symlink_metadata().is_ok_and(|m| !m.is_file()) {
            fs::remove_file(&target).map_err(ctx_err(format!("replace /etc/{name}")))?;
        }
        if !target.exists() {
            fs::File::create(&target).map_err(ctx_err(format!("create /etc/{name}")))?;
        }
        sys::bind_mount(&src, &target, false)?;
    }
    Ok(())
}

/// Open `sub` inside the directory `root` one component at a time, never
/// following a symlink (so it cannot lead out of `root`), creating missing
/// directories if `create` (as Kubernetes does for a sub_path).
pub fn open_beneath(root: &Path, sub: &str, create: bool) -> io::Result<OwnedFd> {
    let open = |dir: libc::c_int, name: &CString| -> io::Result<OwnedFd> {
        // SAFETY: `name` is a valid NUL-terminated string; `dir` is open.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let root_c = CString::new(root.as_os_str().as_bytes())?;
    let mut cur = open(libc::AT_FDCWD, &root_c)?;
    for comp in sub.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`..` in {sub:?}"),
            ));
        }
        let name = CString::new(comp)?;
        let next = match open(cur.as_raw_fd(), &name) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: as above.
                let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                open(cur.as_raw_fd(), &name)?
            }
            other => other?,
        };
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills `st` for an open descriptor.
        let rc = unsafe { libc::fstat(next.as_raw_fd(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat succeeded, so `st` is initialised.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        if mode == libc::S_IFLNK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{comp:?} in {sub:?} is a symlink"),
            ));
        }
        cur = next;
    }
    Ok(cur)
}

fn mount_volume(root: &Path, m: &WireMount) -> io::Result<()> {
    let vol = Path::new(VOLUMES_DIR).join(&m.volume);
    let mut sub = m.sub_path.clone().unwrap_or_default();
    // A ConfigMap, Secret or downward API volume (which this init laid
    // out, read-only): its names are links into `..data`, itself a link
    // to the current payload; a subPath is taken from the payload, as the
    // kubelet takes it.
    if !sub.is_empty() {
        if let Ok(payload) = fs::read_link(vol.join("..data")) {
            sub = format!("{}/{sub}", payload.display());
        }
    }
    let fd = open_beneath(&vol, &sub, true)?;
    bind_opened(&fd, &inside(root, &m.mount_path), m.read_only)
}

/// A host file or directory the pod shares, bound into the container
/// (opened beneath the share root: a symlink cannot lead out of it).
fn mount_bind(share: &Path, root: &Path, b: &peapod_proto::WireBind) -> io::Result<()> {
    let fd = open_beneath(share, &b.source, false)?;
    bind_opened(&fd, &inside(root, &b.destination), b.read_only)
}

/// Bind the file or directory `fd` (an `O_PATH` descriptor) on `target`,
/// created as a directory or an empty file to match.
fn bind_opened(fd: &OwnedFd, target: &Path, read_only: bool) -> io::Result<()> {
    let src = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if fs::metadata(&src)?.is_dir() {
        fs::create_dir_all(target)?;
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        if !target.exists() {
            fs::File::create(target)?;
        }
    }
    sys::bind_mount(&src, target, read_only)
}

/// Become `uid`:`gid`, with `gid` and `extra` (supplementalGroups,
/// fsGroup) as the supplementary groups.
pub fn set_user(uid: u32, gid: u32, extra: &[u32]) -> io::Result<()> {
    let mut groups = vec![gid];
    groups.extend(extra.iter().filter(|g| **g != gid));
    // SAFETY: `groups` holds valid gids for the kernel to read, its length
    // given.
    let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    if rc != 0 {
        return Err(ctx_err("setgroups")(io::Error::last_os_error()));
    }
    // SAFETY: setgid/setuid take no pointers.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(ctx_err(format!("setgid {gid}"))(io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(ctx_err(format!("setuid {uid}"))(io::Error::last_os_error()));
    }
    Ok(())
}

/// Find a bare command name in `path` (colon-separated), as execvp would.
pub fn lookup(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn exec(c: &WireContainer) -> io::Result<Never> {
    let path = c
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let prog = lookup(&c.command[0], path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("command {:?} not found in PATH {path}", c.command[0]),
        )
    })?;
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in command or env");
    let prog_c = CString::new(prog.as_os_str().as_bytes()).map_err(nul)?;
    let argv: Vec<CString> = c
        .command
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(nul))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = c
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(nul))
        .collect::<io::Result<_>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: prog, argv and envp are NUL-terminated strings in
    // NULL-terminated arrays, all alive for the call.
    unsafe { libc::execve(prog_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    Err(ctx_err(format!("exec {}", prog.display()))(
        io::Error::last_os_error(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lookup_bare_and_slashed_names() {
        assert_eq!(lookup("/x/y", ""), Some(PathBuf::from("/x/y")));
        assert_eq!(lookup("./y", ""), Some(PathBuf::from("./y")));
        assert_eq!(
            lookup("sh", "/nonexistent:/bin"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(lookup("no-such-command-here", "/bin"), None);
    }

    #[test]
    fn test_inside_joins_absolute_paths() {
        assert_eq!(inside(Path::new("/m"), "/a/b"), PathBuf::from("/m/a/b"));
        assert_eq!(inside(Path::new("/m"), "/"), PathBuf::from("/m"));
    }
}
