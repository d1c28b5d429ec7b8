//! Native mode: peapod-init on the host, PID 1 of fresh namespaces, driven
//! over a Unix socket. Used by the pod runtime tests (no VM).
//!
//! `peapod-init --native --socket PATH --share DIR` started by anyone (not
//! as PID 1) is the launcher: it unshares PID, mount, network, IPC and UTS
//! namespaces, makes every mount private, and forks; the child is PID 1 of
//! the new PID namespace and runs the pod. The launcher waits for it and
//! exits with its status, so whoever started the launcher reaps a finished
//! pod: once PID 1 is gone the kernel has killed everything in its PID
//! namespace. The child dies with the launcher (PR_SET_PDEATHSIG SIGKILL).

use std::io;
use std::path::{Path, PathBuf};

use peapod_proto::Connection;

use crate::sys::{self, ExitStatus};
use crate::transport::Transport;
use crate::{cgroup, runtime};

/// Command line of native mode.
#[derive(Debug, PartialEq, Eq)]
pub struct NativeArgs {
    /// The host's listening Unix socket.
    pub socket: PathBuf,
    /// Root of the pod share: `WireContainer::rootfs` is relative to it.
    pub share: PathBuf,
}

/// Parse `--native --socket PATH --share DIR` (after the program name).
pub fn parse_args(args: &[String]) -> Result<Option<NativeArgs>, String> {
    if !args.iter().any(|a| a == "--native") {
        return Ok(None);
    }
    let (mut socket, mut share) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--native" => {}
            "--socket" => socket = it.next().map(PathBuf::from),
            "--share" => share = it.next().map(PathBuf::from),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(NativeArgs {
        socket: socket.ok_or("--native needs --socket PATH")?,
        share: share.ok_or("--native needs --share DIR")?,
    }))
}

/// The launcher: new namespaces, then PID 1 in a child. Returns the exit code.
pub fn launch(args: &NativeArgs) -> i32 {
    let ns = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // Before the pod's /proc replaces ours: where its cgroups will be, to
    // remove what a pod that died unexpectedly left behind. The pod names
    // its cgroups after our PID and PID namespace (its own PID is 1).
    let cgroups = cgroup::detect();
    cgroup::remove_stale(&cgroups);
    let instance = cgroup::set_instance();
    if let Err(e) = sys::unshare(ns).and_then(|()| sys::make_mounts_private()) {
        eprintln!("peapod-init: cannot create the pod's namespaces (root needed): {e}");
        return 2;
    }
    let pid = match sys::clone_process(0) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("peapod-init: {e}");
            return 2;
        }
    };
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        std::process::exit(pid1(args));
    }
    let code = match sys::wait_for(pid) {
        Ok(ExitStatus::Code(c)) => c,
        Ok(ExitStatus::Signal(s)) => 128 + s,
        Err(e) => {
            eprintln!("peapod-init: waiting for the pod's PID 1: {e}");
            2
        }
    };
    // Every process of the pod died with its PID 1.
    cgroup::remove_instance(&cgroups, &instance);
    code
}

fn setup_pid1() -> io::Result<()> {
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // A /proc of our own PID namespace, shared memory of our IPC namespace,
    // and a fresh /run for the pod's scratch and volumes.
    sys::mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;
    sys::mount_pod_scratch()
}

/// PID 1 of the pod's namespaces: returns the exit code.
pub fn pid1(args: &NativeArgs) -> i32 {
    // Connect first: the socket may live under /run, which we replace.
    let transport = match Transport::connect_unix(&args.socket) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("peapod-init: {e}");
            return 2;
        }
    };
    let share = match args.share.canonicalize() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("peapod-init: share {}: {e}", args.share.display());
            return 2;
        }
    };
    runtime::serve(Connection::new(transport), setup_pid1(), &share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn test_parse_args_native() {
        assert_eq!(parse_args(&args("")), Ok(None));
        assert_eq!(
            parse_args(&args("--native --socket /s --share /d")),
            Ok(Some(NativeArgs {
                socket: "/s".into(),
                share: "/d".into()
            }))
        );
        assert!(parse_args(&args("--native --socket /s")).is_err());
        assert!(parse_args(&args("--native --bogus")).is_err());
    }
}
