//! Startup, liveness and readiness probes, and lifecycle hooks' actions, run
//! by the init as the kubelet runs them, inside the guest: an exec probe is a process in the
//! container, a TCP or HTTP probe a non-blocking connection the init's poll
//! loop drives. Between periods a probe costs nothing but a timer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use peapod_proto::{ProbeAction, ProbeKind, WireProbe};

use crate::exec::{self, Target};

mod grpc;
use crate::sys::{self, ExitStatus};

/// The most of an HTTP response a probe reads: the status line is enough.
const MAX_RESPONSE: usize = 1024;
/// The most of a gRPC health check's HTTP/2 answer read before its status.
const MAX_GRPC_RESPONSE: usize = 64 << 10;

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
}

/// What a finished attempt changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `successThreshold` passes in a row, after failing (or at first).
    Healthy,
    /// `failureThreshold` failures in a row.
    Unhealthy(String),
}

enum Stage {
    Connecting,
    Sending { sent: usize },
    Reading { got: Vec<u8> },
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Connecting is all.
    Tcp,
    /// An HTTP/1.1 GET: the status line decides.
    Http,
    /// A gRPC health check over HTTP/2; `acked`: the server's settings
    /// were acknowledged.
    Grpc { acked: bool },
}

enum Work {
    Exec {
        pid: libc::pid_t,
    },
    Net {
        fd: OwnedFd,
        stage: Stage,
        wire: Wire,
        request: Vec<u8>,
    },
    Sleep,
    /// Its result is in: nothing to stop.
    Done,
}

/// One run of a probe's or a hook's action: a process in the container, a
/// connection the init's poll loop drives, or a wait. Dropping one that is
/// under way kills its process.
pub struct Attempt {
    work: Work,
    /// It fails (a sleep: passes) at this time; `None`: it may take as
    /// long as it takes.
    deadline: Option<Instant>,
    /// Any HTTP response passes (a hook, as the kubelet runs one), not
    /// only a status from 200 to 399 (a probe).
    any_status: bool,
}

impl Attempt {
    /// Start `action` at `now`; it fails after `timeout`. A result at once
    /// (it could not start) is the error. An exec needs the container
    /// (`target`); a connection without a host goes to `pod_ip`.
    pub fn start(
        action: &ProbeAction,
        now: Instant,
        timeout: Option<Duration>,
        pod_ip: &str,
        target: Option<&Target>,
        any_status: bool,
    ) -> Result<Attempt, Verdict> {
        let work = match action {
            ProbeAction::Exec { command } => {
                let Some(target) = target else {
                    return Err(Verdict::Fail("the container does not run".into()));
                };
                let pid = exec::spawn_quiet(command, target)
                    .map_err(|e| Verdict::Fail(format!("cannot run {:?}: {e}", command[0])))?;
                Work::Exec { pid }
            }
            ProbeAction::Tcp { .. } | ProbeAction::Http { .. } | ProbeAction::Grpc { .. } => {
                let (host, port) = match action {
                    ProbeAction::Tcp { host, port } | ProbeAction::Http { host, port, .. } => {
                        (host.as_deref().unwrap_or(pod_ip), *port)
                    }
                    ProbeAction::Grpc { port, .. } => (pod_ip, *port),
                    _ => unreachable!("a network action"),
                };
                let addr = match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, port),
                    Err(_) => return Err(Verdict::Fail(format!("{host:?} is not an address"))),
                };
                let (wire, request) = match action {
                    ProbeAction::Http { path, headers, .. } => {
                        (Wire::Http, http_request(host, port, path, headers))
                    }
                    ProbeAction::Grpc { service, .. } => (
                        Wire::Grpc { acked: false },
                        grpc::request(&addr.to_string(), service),
                    ),
                    _ => (Wire::Tcp, Vec::new()),
                };
                let fd = connect_nonblocking(addr)
                    .map_err(|e| Verdict::Fail(format!("dial tcp {addr}: {e}")))?;
                Work::Net {
                    fd,
                    stage: Stage::Connecting,
                    wire,
                    request,
                }
            }
            ProbeAction::Sleep { seconds } => {
                return Ok(Attempt {
                    work: Work::Sleep,
                    deadline: Some(now + Duration::from_secs((*seconds).into())),
                    any_status,
                });
            }
        };
        Ok(Attempt {
            work,
            deadline: timeout.map(|t| now + t),
            any_status,
        })
    }

    /// When it needs the loop: its deadline.
    pub fn due(&self) -> Option<Instant> {
        self.deadline
    }

    /// Its deadline passed (`now`): the result, its process killed.
    pub fn expired(&mut self, now: Instant) -> Option<Verdict> {
        self.deadline.filter(|d| now >= *d)?;
        let verdict = match self.work {
            Work::Sleep => Verdict::Pass,
            _ => Verdict::Fail("timed out".into()),
        };
        self.stop();
        Some(verdict)
    }

    /// The descriptor to poll, and for what.
    pub fn poll_fd(&self) -> Option<libc::pollfd> {
        let Work::Net { fd, stage, .. } = &self.work else {
            return None;
        };
        let events = match stage {
            Stage::Connecting | Stage::Sending { .. } => libc::POLLOUT,
            Stage::Reading { .. } => libc::POLLIN,
        };
        Some(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        })
    }

    /// Its connection is ready (`revents`): go on; the result once there is
    /// one.
    pub fn on_ready(&mut self, revents: libc::c_short) -> Option<Verdict> {
        let any_status = self.any_status;
        let Work::Net {
            fd,
            stage,
            wire,
            request,
        } = &mut self.work
        else {
            return None;
        };
        let verdict = match stage {
            Stage::Connecting => match socket_error(fd) {
                Some(e) => Some(Verdict::Fail(format!("connect: {e}"))),
                None if *wire == Wire::Tcp => Some(Verdict::Pass),
                None => {
                    *stage = Stage::Sending { sent: 0 };
                    None
                }
            },
            Stage::Sending { sent } => match sys::write_some(fd, &request[*sent..]) {
                Ok(n) => {
                    *sent += n;
                    if *sent == request.len() {
                        *stage = Stage::Reading { got: Vec::new() };
                    }
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => Some(Verdict::Fail(format!("send: {e}"))),
            },
            Stage::Reading { got } => {
                let mut buf = [0u8; 4096];
                let ended = match sys::read_some(fd, &mut buf) {
                    Ok(0) => Ok(true),
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        Ok(false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Ok(revents & (libc::POLLHUP | libc::POLLERR) != 0)
                    }
                    Err(e) => Err(e),
                };
                match (ended, wire) {
                    (Err(e), _) => Some(Verdict::Fail(format!("read: {e}"))),
                    (Ok(ended), Wire::Grpc { acked }) => grpc_progress(fd, got, ended, acked),
                    (Ok(ended), _) => (ended || got.contains(&b'\n') || got.len() >= MAX_RESPONSE)
                        .then(|| http_verdict(got, ended, any_status)),
                }
            }
        };
        if verdict.is_some() {
            self.work = Work::Done;
        }
        verdict
    }

    /// Process `pid` ended: the result, if it was this attempt's.
    pub fn on_exit(&mut self, pid: libc::pid_t, status: ExitStatus) -> Option<Verdict> {
        match self.work {
            Work::Exec { pid: p } if p == pid => {
                self.work = Work::Done;
                Some(if status.success() {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("command {}", describe(status)))
                })
            }
            _ => None,
        }
    }

    /// Stop it (its process is killed; the init reaps it).
    fn stop(&mut self) {
        if let Work::Exec { pid } = std::mem::replace(&mut self.work, Work::Done) {
            sys::kill(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A probe of a running container.
pub struct Probe {
    pub spec: WireProbe,
    next: Instant,
    successes: u32,
    failures: u32,
    /// Passing, as far as the thresholds say: the others start passing,
    /// readiness undecided (not ready, and its first failures are said).
    healthy: Option<bool>,
    /// Why it failed, as last said.
    said: Option<String>,
    inflight: Option<Attempt>,
}

impl Probe {
    /// A probe of a container that started at `now`.
    pub fn new(spec: WireProbe, now: Instant) -> Probe {
        let healthy = (spec.kind != ProbeKind::Readiness).then_some(true);
        Probe {
            next: now + Duration::from_secs(spec.initial_delay_s.into()),
            spec,
            successes: 0,
            failures: 0,
            healthy,
            said: None,
            inflight: None,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.spec.kind
    }

    /// Start counting from `now` (a startup probe just passed).
    pub fn restart_clock(&mut self, now: Instant) {
        self.next = now + Duration::from_secs(self.spec.initial_delay_s.into());
    }

    /// When it needs the loop next: its next attempt, or its attempt's
    /// deadline.
    pub fn due(&self) -> Instant {
        match &self.inflight {
            Some(a) => a.due().unwrap_or(self.next),
            None => self.next,
        }
    }

    /// Start an attempt if one is due. A result at once (it could not
    /// start, or timed out) is returned.
    pub fn tick(&mut self, now: Instant, pod_ip: &str, target: Option<&Target>) -> Option<Verdict> {
        if let Some(attempt) = &mut self.inflight {
            let verdict = attempt
                .expired(now)
                .map(|_| Verdict::Fail(format!("timed out after {}s", self.spec.timeout_s)));
            if verdict.is_some() {
                self.inflight = None;
            }
            return verdict;
        }
        if now < self.next {
            return None;
        }
        self.next = now + Duration::from_secs(self.spec.period_s.into());
        let timeout = Duration::from_secs(self.spec.timeout_s.into());
        match Attempt::start(&self.spec.action, now, Some(timeout), pod_ip, target, false) {
            Ok(a) => {
                self.inflight = Some(a);
                None
            }
            Err(v) => Some(v),
        }
    }

    /// The descriptor to poll, and for what.
    pub fn poll_fd(&self) -> Option<libc::pollfd> {
        self.inflight.as_ref().and_then(Attempt::poll_fd)
    }

    /// Its connection is ready (`revents`): go on; the result once there is
    /// one.
    pub fn on_ready(&mut self, revents: libc::c_short) -> Option<Verdict> {
        let verdict = self.inflight.as_mut()?.on_ready(revents);
        if verdict.is_some() {
            self.inflight = None;
        }
        verdict
    }

    /// Process `pid` ended: the result, if it was this probe's.
    pub fn on_exit(&mut self, pid: libc::pid_t, status: ExitStatus) -> Option<Verdict> {
        let verdict = self.inflight.as_mut()?.on_exit(pid, status);
        if verdict.is_some() {
            self.inflight = None;
        }
        verdict
    }

    /// Count an attempt's result; a change of health comes back.
    pub fn record(&mut self, verdict: Verdict) -> Option<Transition> {
        match verdict {
            Verdict::Pass => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.healthy != Some(true) && self.successes >= self.spec.success_threshold {
                    self.healthy = Some(true);
                    self.said = None;
                    return Some(Transition::Healthy);
                }
                // A startup probe is done at its first pass.
                if self.spec.kind == ProbeKind::Startup && self.successes == 1 {
                    return Some(Transition::Healthy);
                }
                None
            }
            Verdict::Fail(why) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                // A readiness probe that keeps failing says so again only
                // when the reason changes.
                if self.failures >= self.spec.failure_threshold
                    && (self.healthy != Some(false)
                        || self.spec.kind != ProbeKind::Readiness
                        || self.said.as_deref() != Some(why.as_str()))
                {
                    self.healthy = Some(false);
                    self.said = Some(why.clone());
                    self.failures = 0;
                    return Some(Transition::Unhealthy(why));
                }
                None
            }
        }
    }

    /// Stop an attempt under way (its process is killed; the init reaps
    /// it).
    pub fn cancel(&mut self) {
        self.inflight = None;
    }
}

fn describe(s: ExitStatus) -> String {
    match s {
        ExitStatus::Code(c) => format!("exited with {c}"),
        ExitStatus::Signal(n) => format!("was killed by signal {n}"),
    }
}

/// A gRPC health check read `got` so far (`ended`: the server closed):
/// the result once there is one. The server's settings are acknowledged
/// once, as HTTP/2 asks.
fn grpc_progress(fd: &OwnedFd, got: &[u8], ended: bool, acked: &mut bool) -> Option<Verdict> {
    let answer = grpc::answer(got);
    if answer.settings && !*acked {
        *acked = true;
        match sys::write_some(fd, &grpc::SETTINGS_ACK) {
            Ok(n) if n == grpc::SETTINGS_ACK.len() => {}
            Ok(_) => return Some(Verdict::Fail("send: short write".into())),
            Err(e) => return Some(Verdict::Fail(format!("send: {e}"))),
        }
    }
    if let Some(v) = answer.verdict {
        return Some(v);
    }
    if ended {
        return Some(Verdict::Fail(
            "the server closed the connection without a health status".into(),
        ));
    }
    (got.len() > MAX_GRPC_RESPONSE).then(|| {
        Verdict::Fail(format!(
            "no health status in the first {MAX_GRPC_RESPONSE} bytes"
        ))
    })
}

fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("Host") {
        req.push_str(&format!("Host: {host_header}\r\n"));
    }
    if !has("User-Agent") {
        req.push_str("User-Agent: kube-probe/1.0 (peapod)\r\n");
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.into_bytes()
}

/// The result of an HTTP probe from the start of its response: a status
/// from 200 to 399 passes (any status, with `any_status`).
fn http_verdict(got: &[u8], ended: bool, any_status: bool) -> Verdict {
    let line = got.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    match status {
        Some(200..=399) => Verdict::Pass,
        Some(_) if any_status => Verdict::Pass,
        Some(code) => Verdict::Fail(format!("HTTP probe failed with statuscode: {code}")),
        None if ended && got.is_empty() => Verdict::Fail("the server closed the connection".into()),
        None => Verdict::Fail(format!("not an HTTP response: {:?}", text.trim_end())),
    }
}

/// A non-blocking TCP connection to `addr`, under way.
fn connect_nonblocking(addr: SocketAddr) -> io::Result<OwnedFd> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just made and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (storage, len) = sys::sockaddr(addr);
    // SAFETY: `storage` holds a valid address of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(fd)
}

/// The pending error of a connecting socket.
fn socket_error(fd: &OwnedFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes an int into `err`, its size in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Some(io::Error::last_os_error());
    }
    (err != 0).then(|| io::Error::from_raw_os_error(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(kind: ProbeKind, success: u32, failure: u32) -> Probe {
        Probe::new(
            WireProbe {
                kind,
                action: ProbeAction::Tcp {
                    host: None,
                    port: 1,
                },
                initial_delay_s: 0,
                period_s: 1,
                timeout_s: 1,
                success_threshold: success,
                failure_threshold: failure,
            },
            Instant::now(),
        )
    }

    #[test]
    fn test_thresholds_count_in_a_row() {
        let mut live = probe(ProbeKind::Liveness, 1, 3);
        let fail = || Verdict::Fail("no".into());
        assert_eq!(live.record(fail()), None);
        assert_eq!(live.record(fail()), None);
        assert_eq!(live.record(Verdict::Pass), None);
        assert_eq!(live.record(fail()), None);
        assert_eq!(live.record(fail()), None);
        assert_eq!(
            live.record(fail()),
            Some(Transition::Unhealthy("no".into()))
        );
        assert_eq!(live.record(Verdict::Pass), Some(Transition::Healthy));
        let mut ready = probe(ProbeKind::Readiness, 2, 1);
        // Failing before it was ever ready is said, once.
        assert_eq!(
            ready.record(fail()),
            Some(Transition::Unhealthy("no".into()))
        );
        assert_eq!(ready.record(fail()), None);
        assert_eq!(ready.record(Verdict::Pass), None);
        assert_eq!(ready.record(Verdict::Pass), Some(Transition::Healthy));
        assert_eq!(
            ready.record(fail()),
            Some(Transition::Unhealthy("no".into()))
        );
        // Failing while not ready says nothing new, unless why changed.
        assert_eq!(ready.record(fail()), None);
        assert_eq!(
            ready.record(Verdict::Fail("other".into())),
            Some(Transition::Unhealthy("other".into()))
        );
    }

    #[test]
    fn test_http_status_decides() {
        assert_eq!(
            http_verdict(b"HTTP/1.1 200 OK\r\n", false, false),
            Verdict::Pass
        );
        assert_eq!(
            http_verdict(b"HTTP/1.0 302 Found\r\n", false, false),
            Verdict::Pass
        );
        assert!(
            matches!(http_verdict(b"HTTP/1.1 503 x\r\n", false, false), Verdict::Fail(m) if m.contains("503"))
        );
        assert!(matches!(http_verdict(b"", true, false), Verdict::Fail(_)));
        // A hook takes any response.
        assert_eq!(
            http_verdict(b"HTTP/1.1 503 x\r\n", false, true),
            Verdict::Pass
        );
        assert!(matches!(http_verdict(b"", true, true), Verdict::Fail(_)));
        assert!(matches!(
            http_verdict(b"SSH-2.0\r\n", false, false),
            Verdict::Fail(_)
        ));
        let req = String::from_utf8(http_request(
            "10.0.2.15",
            8080,
            "/healthz",
            &[("X-Probe".into(), "1".into())],
        ))
        .unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.2.15:8080\r\n"));
        assert!(req.contains("X-Probe: 1\r\n") && req.ends_with("\r\n\r\n"));
    }
}
