//! Exec sessions: more processes in a running container (`peapod exec`,
//! `kubectl exec`).
//!
//! The process joins the container's cgroups (the `cgroup.procs` files the
//! container's own process joined, see [`crate::cgroup`]) and its mount and
//! PID namespaces, and runs as the container's user, with its environment and
//! working directory, unless the request overrides them. It stays a direct
//! child of PID 1, so the runtime's SIGCHLD loop reaps it: the init enters
//! the container's PID namespace for the fork only. `setns(CLONE_NEWPID)`
//! changes the namespace of the caller's later children, never its own, and
//! going back is allowed because the init's own namespace is still its
//! active one.
//!
//! Without a tty the process gets pipes: stdout, stderr, and stdin when the
//! host sends input (else /dev/null). With a tty it gets a pseudo-terminal
//! of the container's own devpts, opened by the init through
//! `/proc/PID/root` (resolved inside that root, so the container's symlinks
//! cannot lead elsewhere) and made the controlling terminal of a new
//! session; all output comes from the terminal, as `stdout` (as with docker
//! and kubectl). End of input on a tty is the end-of-file key, `^D`.
//!
//! On the wire:
//! - `exec_started` as soon as the process exists. A failure after that,
//!   inside the new process (the command is not found, the user or working
//!   directory cannot be set), is printed on its stderr (the terminal with a
//!   tty) and ends it with exit code 127 (command not found) or 126
//!   (anything else), as shells do.
//! - A request that cannot start at all (no such container, the container
//!   is not running, an empty command, no pty): `error` with a message that
//!   starts `exec ID: `, then `exec_exited` with code 126, and no
//!   `exec_started` before it: that is how the host tells the two apart.
//! - An exec id that is already running: `error` only (an `exec_exited`
//!   would end the running session).
//! - `exec_stdin` and `exec_resize` for an exec id that is not running are
//!   ignored (the session may have just ended), as is input for a session
//!   without stdin.
//! - When the process ends, the output it left in its pipes or terminal is
//!   sent, then `exec_exited`; output of its own children after that is
//!   lost (the pipes close).
//!
//! Sessions do not keep the pod alive: when the pod ends they are killed
//! (and reported), and when the host goes away they are killed.

mod spawn;

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use peapod_proto::{ExecId, GuestMsg, Stream, MAX_CHUNK};

use crate::sys::{self, ExitStatus};
use spawn::spawn;
pub use spawn::spawn_quiet;

/// Exit code of an exec whose command was not found.
const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of an exec that failed before its command ran, for any other
/// reason; also of a request that could not start at all.
pub const EXIT_CANNOT_RUN: i32 = 126;

/// The most input held for a process that does not read it.
const MAX_PENDING_INPUT: usize = 8 << 20;

/// Reads of one descriptor per poll round, so one busy session cannot
/// starve the others.
const READS_PER_ROUND: usize = 4;

/// Reads of one descriptor when its process has ended: what it left in the
/// pipe (64 KiB by default) or terminal, with room for a larger pipe.
const READS_AT_EXIT: usize = 32;

/// The end-of-file key of a terminal in canonical mode (`^D`).
const TTY_EOF: u8 = 4;

/// What the host asked to run.
pub struct Request {
    pub exec_id: ExecId,
    /// argv; the first element is looked up in `PATH`.
    pub command: Vec<String>,
    pub tty: bool,
    /// The host sends input.
    pub stdin: bool,
    /// Added to the container's environment (replacing equal names).
    pub env: Vec<(String, String)>,
    /// `None`: the container's.
    pub working_dir: Option<String>,
    /// `(uid, gid)`; `None`: the container's.
    pub user: Option<(u32, u32)>,
}

/// The running container to exec in.
pub struct Target {
    /// Its main process, as the init sees it.
    pub pid: libc::pid_t,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// Its processes gain no privileges (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
    /// Its `cgroup.procs` files, open for writing (none without cgroups).
    pub cgroup_procs: Vec<fs::File>,
}

/// The exec sessions of the pod.
#[derive(Default)]
pub struct Execs {
    sessions: Vec<Session>,
}

struct Session {
    id: ExecId,
    pid: libc::pid_t,
    /// The main process of its container.
    ctr_pid: libc::pid_t,
    io: Io,
    /// Input the process has not taken yet.
    input: Vec<u8>,
    /// Close stdin once `input` is written (pipes only).
    input_eof: bool,
    killed: bool,
}

enum Io {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
    Tty {
        master: OwnedFd,
        /// The terminal side is open somewhere (reads have not failed).
        open: bool,
    },
}

impl Execs {
    /// Start a session in `target` (or report why there is none).
    pub fn start(&mut self, req: Request, target: Result<Target, String>) -> Vec<GuestMsg> {
        let id = req.exec_id;
        if self.sessions.iter().any(|s| s.id == id) {
            return vec![GuestMsg::Error {
                message: format!("exec {id}: exec id {id} is already running"),
            }];
        }
        match target.and_then(|t| spawn(&req, &t).map_err(|e| e.to_string())) {
            Ok(session) => {
                self.sessions.push(session);
                vec![GuestMsg::ExecStarted { exec_id: id }]
            }
            Err(message) => vec![
                GuestMsg::Error {
                    message: format!("exec {id}: {message}"),
                },
                GuestMsg::ExecExited {
                    exec_id: id,
                    code: Some(EXIT_CANNOT_RUN),
                    signal: None,
                },
            ],
        }
    }

    /// Input for a session; `eof` closes its stdin once written.
    pub fn stdin(&mut self, id: ExecId, data: Vec<u8>, eof: bool) -> Vec<GuestMsg> {
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return vec![];
        };
        let mut out = vec![];
        if s.input.len() + data.len() > MAX_PENDING_INPUT {
            out.push(GuestMsg::Error {
                message: format!(
                    "exec {id}: the process does not read its input: {} bytes dropped",
                    data.len()
                ),
            });
        } else {
            s.input.extend_from_slice(&data);
        }
        if eof {
            match s.io {
                Io::Tty { .. } => s.input.push(TTY_EOF),
                Io::Pipes { .. } => s.input_eof = true,
            }
        }
        s.flush_input();
        out
    }

    /// Set a tty session's terminal size.
    pub fn resize(&mut self, id: ExecId, rows: u16, cols: u16) {
        let Some(s) = self.sessions.iter().find(|s| s.id == id) else {
            return;
        };
        if let Io::Tty { master, open: true } = &s.io {
            if let Err(e) = sys::set_window_size(master.as_fd(), rows, cols) {
                eprintln!("peapod-init: exec {id}: {e}");
            }
        }
    }

    /// The descriptors to poll: output to read, input to write.
    pub fn poll_fds(&self) -> Vec<libc::pollfd> {
        let pollfd = |fd: &OwnedFd, events| libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let mut fds = vec![];
        for s in &self.sessions {
            match &s.io {
                Io::Pipes {
                    stdin,
                    stdout,
                    stderr,
                } => {
                    for fd in [stdout, stderr].into_iter().flatten() {
                        fds.push(pollfd(fd, libc::POLLIN));
                    }
                    if let (Some(fd), false) = (stdin, s.input.is_empty()) {
                        fds.push(pollfd(fd, libc::POLLOUT));
                    }
                }
                // A closed terminal side polls as POLLHUP for ever: not polled.
                Io::Tty { master, open: true } => {
                    let out = if s.input.is_empty() { 0 } else { libc::POLLOUT };
                    fds.push(pollfd(master, libc::POLLIN | out));
                }
                Io::Tty { open: false, .. } => {}
            }
        }
        fds
    }

    /// Serve the descriptors `poll` found ready (from [`Self::poll_fds`]).
    pub fn on_poll(&mut self, fds: &[libc::pollfd]) -> Vec<GuestMsg> {
        let ready: Vec<RawFd> = fds
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| p.fd)
            .collect();
        let mut out = vec![];
        if ready.is_empty() {
            return out;
        }
        for s in &mut self.sessions {
            s.read_output(Some(&ready), READS_PER_ROUND, &mut out);
            if s.input_fd().is_some_and(|fd| ready.contains(&fd)) {
                s.flush_input();
            }
        }
        out
    }

    /// A child of the init ended: if it was a session's process, its last
    /// output and `exec_exited`.
    pub fn exited(&mut self, pid: libc::pid_t, status: ExitStatus) -> Option<Vec<GuestMsg>> {
        let i = self.sessions.iter().position(|s| s.pid == pid)?;
        Some(self.sessions.remove(i).end(status))
    }

    /// Kill the sessions in the container whose main process was
    /// `ctr_pid` (it ended): an exec lives no longer than its container,
    /// whether or not the container has a PID namespace of its own (which
    /// the kernel empties when its first process ends). They are reaped and
    /// reported as usual.
    pub fn container_exited(&mut self, ctr_pid: libc::pid_t) {
        for s in self.sessions.iter_mut().filter(|s| s.ctr_pid == ctr_pid) {
            s.kill();
        }
    }

    /// Kill every session's process (the host is gone); they are reaped and
    /// reported as usual.
    pub fn kill_all(&mut self) {
        for s in &mut self.sessions {
            s.kill();
        }
    }

    /// The pod has ended: kill, reap and report every session left.
    pub fn finish(&mut self) -> Vec<GuestMsg> {
        self.kill_all();
        let mut out = vec![];
        for s in std::mem::take(&mut self.sessions) {
            let status = sys::wait_for(s.pid).unwrap_or_else(|e| {
                eprintln!("peapod-init: exec {}: waiting for it: {e}", s.id);
                ExitStatus::Signal(libc::SIGKILL)
            });
            out.extend(s.end(status));
        }
        out
    }
}

impl Session {
    fn kill(&mut self) {
        if !self.killed {
            sys::kill(self.pid, libc::SIGKILL);
            self.killed = true;
        }
    }

    /// Where its input goes, while it takes input.
    fn input_fd(&self) -> Option<RawFd> {
        match &self.io {
            Io::Pipes {
                stdin: Some(fd), ..
            } => Some(fd.as_raw_fd()),
            Io::Tty { master, open: true } => Some(master.as_raw_fd()),
            _ => None,
        }
    }

    /// Write what input it takes now; close stdin after the last of it if
    /// the host said so. Input to a process that closed its stdin is lost.
    fn flush_input(&mut self) {
        let Some(fd) = self.input_fd() else {
            self.input.clear();
            return;
        };
        while !self.input.is_empty() {
            // SAFETY: writing from a buffer we own to an open descriptor.
            let r = unsafe { libc::write(fd, self.input.as_ptr().cast(), self.input.len()) };
            if r >= 0 {
                self.input.drain(..r as usize);
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return,
                // EPIPE, EIO: nobody will read it.
                _ => {
                    self.input.clear();
                    self.input_eof = true;
                }
            }
        }
        if self.input_eof {
            if let Io::Pipes { stdin, .. } = &mut self.io {
                *stdin = None;
            }
        }
    }

    /// Read its output that is ready (from the `ready` descriptors, or all
    /// of them), at most `reads` reads a descriptor.
    fn read_output(&mut self, ready: Option<&[RawFd]>, reads: usize, out: &mut Vec<GuestMsg>) {
        let id = self.id;
        let is_ready = |fd: &OwnedFd| ready.is_none_or(|r| r.contains(&fd.as_raw_fd()));
        match &mut self.io {
            Io::Pipes { stdout, stderr, .. } => {
                for (slot, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
                    if slot.as_ref().is_some_and(is_ready) {
                        let fd = slot.as_ref().map(|f| f.as_fd());
                        if fd.is_some_and(|fd| !read_some(id, fd, stream, reads, out)) {
                            *slot = None;
                        }
                    }
                }
            }
            Io::Tty { master, open } => {
                if *open && is_ready(master) {
                    *open = read_some(id, master.as_fd(), Stream::Stdout, reads, out);
                }
            }
        }
    }

    /// Its process ended: the output it left, then `exec_exited`.
    fn end(mut self, status: ExitStatus) -> Vec<GuestMsg> {
        let mut out = vec![];
        self.read_output(None, READS_AT_EXIT, &mut out);
        let (code, signal) = match status {
            ExitStatus::Code(c) => (Some(c), None),
            ExitStatus::Signal(s) => (None, Some(s)),
        };
        out.push(GuestMsg::ExecExited {
            exec_id: self.id,
            code,
            signal,
        });
        out
    }
}

/// Read from a nonblocking descriptor until it has nothing more now, at most
/// `reads` times, sending each read as `exec_output`. Returns false at the
/// end of the stream (for a terminal: EIO, its other side is closed).
fn read_some(
    id: ExecId,
    fd: BorrowedFd<'_>,
    stream: Stream,
    reads: usize,
    out: &mut Vec<GuestMsg>,
) -> bool {
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut done = 0;
    while done < reads {
        // SAFETY: reading into a buffer we own, of its length, from an open
        // descriptor.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r > 0 {
            out.push(GuestMsg::ExecOutput {
                exec_id: id,
                stream,
                data: buf[..r as usize].to_vec(),
            });
            done += 1;
            continue;
        }
        if r == 0 {
            return false;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return true,
            _ => {
                if e.raw_os_error() != Some(libc::EIO) {
                    eprintln!("peapod-init: exec {id}: reading its output: {e}");
                }
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A request to run `command` with every default.
    pub(super) fn request(command: &[&str]) -> Request {
        Request {
            exec_id: 1,
            command: command.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin: false,
            env: vec![],
            working_dir: None,
            user: None,
        }
    }

    #[test]
    fn test_start_reports_a_missing_target() {
        let mut execs = Execs::default();
        let msgs = execs.start(request(&["sh"]), Err("no container \"x\"".into()));
        assert_eq!(
            msgs,
            [
                GuestMsg::Error {
                    message: "exec 1: no container \"x\"".into()
                },
                GuestMsg::ExecExited {
                    exec_id: 1,
                    code: Some(EXIT_CANNOT_RUN),
                    signal: None
                }
            ]
        );
        assert!(execs.sessions.is_empty());
        // Nothing to serve, and input for an unknown session is ignored.
        assert!(execs.poll_fds().is_empty());
        assert!(execs.stdin(1, b"x".to_vec(), true).is_empty());
    }
}
