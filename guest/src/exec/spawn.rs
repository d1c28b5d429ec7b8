//! Starting an exec session's process: prepared before the fork, then, in
//! the child, the container's cgroups, mount namespace, user, working
//! directory and command (see the parent module for the whole design).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use super::{Io, Request, Session, Target, EXIT_CANNOT_RUN, EXIT_NOT_FOUND};
use crate::sys;
use crate::{cgroup, container};

/// The descriptors the new process starts with.
enum ChildIo {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty {
        terminal: OwnedFd,
    },
}

/// Everything the new process needs, prepared before the fork.
struct Plan {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// `PATH` of its environment.
    path: String,
    cwd: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    no_new_privs: bool,
}

/// Start the process of `req` in `target`.
pub fn spawn(req: &Request, target: &Target) -> io::Result<Session> {
    let plan = Plan::new(req, target)?;
    let ns = |kind: &str| -> io::Result<OwnedFd> {
        let path = format!("/proc/{}/ns/{kind}", target.pid);
        fs::File::open(&path).map(OwnedFd::from).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(e.kind(), "the container has exited")
            } else {
                io::Error::new(e.kind(), format!("open {path}: {e}"))
            }
        })
    };
    let mnt = ns("mnt")?;
    let pid_ns = ns("pid")?;
    let (child_io, io) = if req.tty {
        let root = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(format!("/proc/{}/root", target.pid))
            .map_err(|e| io::Error::new(e.kind(), format!("open the container's root: {e}")))?;
        let (master, terminal) = sys::open_pty_in(root.as_fd())?;
        (ChildIo::Tty { terminal }, Io::Tty { master, open: true })
    } else {
        let (stdin_r, stdin_w) = if req.stdin {
            let (r, w) = sys::pipe()?;
            (r, Some(w))
        } else {
            let null = fs::File::open("/dev/null")
                .map_err(|e| io::Error::new(e.kind(), format!("open /dev/null: {e}")))?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = sys::pipe()?;
        let (err_r, err_w) = sys::pipe()?;
        (
            ChildIo::Pipes {
                stdin: stdin_r,
                stdout: out_w,
                stderr: err_w,
            },
            Io::Pipes {
                stdin: stdin_w,
                stdout: Some(out_r),
                stderr: Some(err_r),
            },
        )
    };
    let pid = fork_in(pid_ns.as_fd())?;
    if pid == 0 {
        child(&plan, child_io, mnt, &target.cgroup_procs)
    }
    drop(child_io);
    let session = Session {
        id: req.exec_id,
        pid,
        ctr_pid: target.pid,
        io,
        input: vec![],
        input_eof: false,
        killed: false,
    };
    let fds: Vec<BorrowedFd<'_>> = match &session.io {
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => [stdin, stdout, stderr]
            .into_iter()
            .flatten()
            .map(|f| f.as_fd())
            .collect(),
        Io::Tty { master, .. } => vec![master.as_fd()],
    };
    for fd in fds {
        if let Err(e) = sys::set_nonblocking(fd) {
            eprintln!("peapod-init: exec {}: {e}", req.exec_id);
        }
    }
    Ok(session)
}

/// Start `command` in `target` as its main process runs (user, groups,
/// environment, working directory), its input and output on /dev/null: a
/// probe's or a hook's command. Returns its PID; the caller reaps it.
pub fn spawn_quiet(command: &[String], target: &Target) -> io::Result<libc::pid_t> {
    let req = Request {
        exec_id: 0,
        command: command.to_vec(),
        tty: false,
        stdin: false,
        env: Vec::new(),
        working_dir: None,
        user: None,
    };
    let plan = Plan::new(&req, target)?;
    let ns = |kind: &str| -> io::Result<OwnedFd> {
        fs::File::open(format!("/proc/{}/ns/{kind}", target.pid)).map(OwnedFd::from)
    };
    let mnt = ns("mnt")?;
    let pid_ns = ns("pid")?;
    let null = |write: bool| -> io::Result<OwnedFd> {
        fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map(OwnedFd::from)
    };
    let io = ChildIo::Pipes {
        stdin: null(false)?,
        stdout: null(true)?,
        stderr: null(true)?,
    };
    let pid = fork_in(pid_ns.as_fd())?;
    if pid == 0 {
        child(&plan, io, mnt, &target.cgroup_procs)
    }
    Ok(pid)
}

impl Plan {
    fn new(req: &Request, target: &Target) -> io::Result<Plan> {
        if req.command.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command is empty",
            ));
        }
        let env = merge_env(&target.env, &req.env);
        let nul = |what: &str| {
            let what = what.to_string();
            move |_: std::ffi::NulError| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {what}"))
            }
        };
        let argv = req
            .command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(nul("the command")))
            .collect::<io::Result<_>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(nul("the environment")))
            .collect::<io::Result<_>>()?;
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(container::DEFAULT_PATH, |(_, v)| v.as_str())
            .to_string();
        let (uid, gid) = req.user.unwrap_or((target.uid, target.gid));
        // Another user (`exec --user`) gets no groups of the container's.
        let groups = if req.user.is_none() {
            target.groups.clone()
        } else {
            Vec::new()
        };
        Ok(Plan {
            argv,
            envp,
            path,
            cwd: req
                .working_dir
                .clone()
                .unwrap_or_else(|| target.working_dir.clone()),
            uid,
            gid,
            groups,
            no_new_privs: target.no_new_privs,
        })
    }
}

/// The container's environment with `overrides` replacing equal names and
/// new names appended, in order.
fn merge_env(base: &[(String, String)], overrides: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    for (k, v) in overrides {
        let mut found = false;
        for slot in env.iter_mut().filter(|(key, _)| key == k) {
            slot.1 = v.clone();
            found = true;
        }
        if !found {
            env.push((k.clone(), v.clone()));
        }
    }
    env
}

/// Fork a child into the PID namespace `ns`; the caller stays in its own.
/// Returns 0 in the child, its PID (in the caller's namespace) in the parent.
fn fork_in(ns: BorrowedFd<'_>) -> io::Result<libc::pid_t> {
    let own = fs::File::open("/proc/self/ns/pid")
        .map_err(|e| io::Error::new(e.kind(), format!("open /proc/self/ns/pid: {e}")))?;
    sys::setns(ns, libc::CLONE_NEWPID)?;
    let pid = sys::clone_process(0);
    if matches!(pid, Ok(0)) {
        return pid;
    }
    if let Err(e) = sys::setns(own.as_fd(), libc::CLONE_NEWPID) {
        // The kernel allows it (the init's own namespace is its active one);
        // were it refused, later containers would nest in this one.
        eprintln!("peapod-init: cannot return to the init's PID namespace: {e}");
    }
    pid
}

enum Never {}

fn child(plan: &Plan, io: ChildIo, mnt: OwnedFd, cgroup_procs: &[fs::File]) -> ! {
    // Visible in the container's PID namespace from now on, with the init's
    // descriptors until they are closed: no ptrace, no /proc/PID/fd for
    // the container's processes of the same user.
    sys::set_not_dumpable();
    sys::reset_signals();
    let (code, e) = match child_setup(plan, io, &mnt, cgroup_procs) {
        Ok(never) => match never {},
        Err(failed) => failed,
    };
    eprintln!("peapod-init: exec: {e}");
    sys::exit_now(code)
}

fn with_context(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> (i32, io::Error) {
    move |e| {
        (
            EXIT_CANNOT_RUN,
            io::Error::new(e.kind(), format!("{what}: {e}")),
        )
    }
}

/// In the new process: its descriptors, cgroups, mount namespace, user and
/// working directory, then the command. Fails with the exit code to use.
fn child_setup(
    plan: &Plan,
    io: ChildIo,
    mnt: &OwnedFd,
    cgroup_procs: &[fs::File],
) -> Result<Never, (i32, io::Error)> {
    let dup = with_context("set up stdin, stdout and stderr");
    match io {
        ChildIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => sys::dup_to(stdin.as_fd(), 0)
            .and_then(|()| sys::dup_to(stdout.as_fd(), 1))
            .and_then(|()| sys::dup_to(stderr.as_fd(), 2))
            .map_err(dup)?,
        ChildIo::Tty { terminal } => {
            (0..3)
                .try_for_each(|fd| sys::dup_to(terminal.as_fd(), fd))
                .map_err(dup)?;
            sys::set_controlling_tty(terminal.as_fd()).map_err(with_context("the terminal"))?;
            // Owned by the user, as if the process had opened it itself.
            // SAFETY: fchown on an open descriptor with integer ids.
            unsafe { libc::fchown(terminal.as_raw_fd(), plan.uid, plan.gid) };
        }
    }
    // Nothing else of the init's goes into the container.
    let keep: Vec<RawFd> = std::iter::once(mnt.as_raw_fd())
        .chain(cgroup_procs.iter().map(|f| f.as_raw_fd()))
        .collect();
    sys::close_other_fds(&keep).map_err(|e| (EXIT_CANNOT_RUN, e))?;
    cgroup::join(cgroup_procs).map_err(|e| (EXIT_CANNOT_RUN, e))?;
    sys::setns(mnt.as_fd(), libc::CLONE_NEWNS)
        .map_err(with_context("enter the container's mount namespace"))?;
    container::set_user(plan.uid, plan.gid, &plan.groups).map_err(with_context("set the user"))?;
    if plan.no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(with_context("no_new_privs")(io::Error::last_os_error()));
        }
    }
    std::env::set_current_dir(&plan.cwd)
        .map_err(with_context(format!("working directory {}", plan.cwd)))?;
    let name = plan.argv[0].to_string_lossy();
    let prog = container::lookup(&name, &plan.path).ok_or_else(|| {
        (
            EXIT_NOT_FOUND,
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("command {name:?} not found in PATH {}", plan.path),
            ),
        )
    })?;
    let prog_c = CString::new(prog.as_os_str().as_bytes())
        .map_err(|_| with_context("the command")(io::ErrorKind::InvalidInput.into()))?;
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: prog, argv and envp are NUL-terminated strings in
    // NULL-terminated arrays, all alive for the call.
    unsafe { libc::execve(prog_c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = io::Error::last_os_error();
    let code = if e.kind() == io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    };
    Err((
        code,
        io::Error::new(e.kind(), format!("exec {}: {e}", prog.display())),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::request;
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn test_merge_env_overrides_and_appends() {
        let base = pairs(&[("PATH", "/bin"), ("FOO", "a"), ("BAR", "b")]);
        assert_eq!(merge_env(&base, &[]), base);
        assert_eq!(
            merge_env(&base, &pairs(&[("FOO", "x"), ("NEW", "y")])),
            pairs(&[("PATH", "/bin"), ("FOO", "x"), ("BAR", "b"), ("NEW", "y")])
        );
    }

    fn target() -> Target {
        Target {
            pid: 1,
            env: pairs(&[("PATH", "/ctr/bin"), ("FOO", "a")]),
            working_dir: "/work".into(),
            uid: 1000,
            gid: 1001,
            groups: Vec::new(),
            no_new_privs: false,
            cgroup_procs: vec![],
        }
    }

    #[test]
    fn test_plan_defaults_to_the_container() {
        let plan = Plan::new(&request(&["ls", "-l"]), &target()).unwrap();
        assert_eq!(plan.argv, [c"ls".to_owned(), c"-l".to_owned()]);
        assert_eq!(
            plan.envp,
            [c"PATH=/ctr/bin".to_owned(), c"FOO=a".to_owned()]
        );
        assert_eq!(
            (plan.path.as_str(), plan.cwd.as_str(), plan.uid, plan.gid),
            ("/ctr/bin", "/work", 1000, 1001)
        );
    }

    #[test]
    fn test_plan_takes_overrides() {
        let mut req = request(&["sh"]);
        req.env = pairs(&[("PATH", "/mine"), ("X", "1")]);
        req.working_dir = Some("/tmp".into());
        req.user = Some((0, 5));
        let plan = Plan::new(&req, &target()).unwrap();
        assert_eq!(
            (plan.path.as_str(), plan.cwd.as_str(), plan.uid, plan.gid),
            ("/mine", "/tmp", 0, 5)
        );
        assert_eq!(plan.envp.len(), 3);
    }

    #[test]
    fn test_plan_rejects_empty_commands_and_nul_bytes() {
        let err = Plan::new(&request(&[]), &target()).err().unwrap();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = Plan::new(&request(&["a\0b"]), &target()).err().unwrap();
        assert!(err.to_string().contains("NUL"), "{err}");
        let mut req = request(&["sh"]);
        req.env = pairs(&[("K", "v\0")]);
        assert!(Plan::new(&req, &target()).is_err());
    }
}
