//! Pod runtime tests without a VM: peapod-init runs natively as PID 1 of
//! fresh PID/mount/net/IPC/UTS namespaces (its `--native` launcher creates
//! them), and the test drives it over a Unix socket with the real protocol,
//! running containers from the real busybox test image.
//!
//! Needs root (namespaces, mounts); otherwise each test says `skipped:`.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{init_binary, is_root, sh, test_image, TempDir};
use peapod_proto::{
    Backoff, Connection, ContainerEvent, GuestMsg, HostMsg, PodPhase, RestartPolicy, Stream,
    VolumeKind, WireContainer, WireMount, WirePod, WireVolume,
};

/// Longest any test pod may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The pod share: the busybox image directory (its `rootfs/` is the image).
fn share() -> &'static Path {
    test_image()
}

fn skip() -> bool {
    if !is_root() {
        println!("skipped: the native pod runtime needs root (namespaces and mounts)");
        return true;
    }
    false
}

fn with_mount(mut c: WireContainer, volume: &str, path: &str, read_only: bool) -> WireContainer {
    c.volume_mounts.push(WireMount {
        volume: volume.into(),
        mount_path: path.into(),
        read_only,
        sub_path: None,
    });
    c
}

fn pod(containers: Vec<WireContainer>) -> WirePod {
    WirePod {
        name: "native-test".into(),
        hostname: "native-pod".into(),
        init_containers: vec![],
        containers,
        volumes: vec![],
        restart_policy: RestartPolicy::Never,
        grace_period_s: 5,
        backoff: Backoff {
            initial_ms: 50,
            max_ms: 100,
        },
        share_process_namespace: false,
    }
}

fn empty_dir(name: &str) -> WireVolume {
    WireVolume {
        name: name.into(),
        kind: VolumeKind::EmptyDir {
            medium_memory: false,
            size_limit: None,
        },
    }
}

/// Host PIDs of a process's children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The state letter of a process (`R`, `S`, `Z`, ...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// A pod being run by a native peapod-init; killed on drop if still there.
struct Pod {
    launcher: Option<Child>,
    /// Host PID of the pod's PID 1.
    init_pid: u32,
    conn: Connection<UnixStream>,
    deadline: Instant,
    msgs: Vec<GuestMsg>,
    _dir: TempDir,
}

impl Pod {
    fn start(pod: &WirePod) -> Pod {
        let dir = TempDir::new("runtime");
        let sock = dir.0.join("pod.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut launcher = Command::new(init_binary())
            .arg("--native")
            .arg("--socket")
            .arg(&sock)
            .arg("--share")
            .arg(share())
            .spawn()
            .expect("start peapod-init --native");
        let deadline = Instant::now() + TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Some(status) = launcher.try_wait().unwrap() {
                        panic!("peapod-init exited before connecting: {status}");
                    }
                    assert!(Instant::now() < deadline, "peapod-init never connected");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let init_pid = children(launcher.id()).first().copied().unwrap_or(0);
        let mut p = Pod {
            launcher: Some(launcher),
            init_pid,
            conn: Connection::new(stream),
            deadline,
            msgs: vec![],
            _dir: dir,
        };
        assert_ne!(p.init_pid, 0, "the launcher has no child");
        p.conn.handshake_host("runtime test").unwrap();
        let ready = p.recv().expect("ready");
        assert!(matches!(ready, GuestMsg::Ready { .. }), "{ready:?}");
        p.conn
            .send(&HostMsg::RunPod(Box::new(pod.clone())))
            .unwrap();
        p
    }

    /// The next message (also recorded), `None` once the guest closed.
    fn recv(&mut self) -> Option<GuestMsg> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; so far: {:#?}", self.msgs);
        self.conn.get_ref().set_read_timeout(Some(left)).unwrap();
        let msg: Option<GuestMsg> = self.conn.recv().expect("receive from peapod-init");
        if let Some(m) = &msg {
            self.msgs.push(m.clone());
        }
        msg
    }

    /// Read until a message matches.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&GuestMsg) -> bool) {
        loop {
            match self.recv() {
                Some(m) if pred(&m) => return,
                Some(_) => {}
                None => panic!("connection closed waiting for {what}: {:#?}", self.msgs),
            }
        }
    }

    /// Read to `pod_exited` and the end of the stream, then reap the
    /// launcher. Returns the phase and the launcher's exit status.
    fn finish(&mut self) -> (PodPhase, ExitStatus) {
        let mut phase = None;
        while let Some(m) = self.recv() {
            if let GuestMsg::PodExited { phase: p, .. } = m {
                phase = Some(p);
            }
        }
        let phase = phase.unwrap_or_else(|| panic!("no pod_exited: {:#?}", self.msgs));
        let mut launcher = self.launcher.take().unwrap();
        let status = loop {
            if let Some(s) = launcher.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < self.deadline, "peapod-init did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        (phase, status)
    }

    /// Concatenated output of one container's stream.
    fn log(&self, container: &str, stream: Stream) -> String {
        self.chunks(container, stream)
            .iter()
            .map(|(d, _)| d.as_str())
            .collect()
    }

    /// One container's log chunks, with their `partial` flags.
    fn chunks(&self, container: &str, want: Stream) -> Vec<(String, bool)> {
        self.msgs
            .iter()
            .filter_map(|m| match m {
                GuestMsg::Log {
                    container: c,
                    stream,
                    partial,
                    data,
                    ..
                } if c == container && *stream == want => {
                    Some((String::from_utf8_lossy(data).into_owned(), *partial))
                }
                _ => None,
            })
            .collect()
    }

    fn events(&self, container: &str) -> Vec<ContainerEvent> {
        self.msgs
            .iter()
            .filter_map(|m| match m {
                GuestMsg::ContainerEvent {
                    container: c,
                    event,
                    ..
                } if c == container => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// Index in the message list of a container's first `started` event.
    fn started_at(&self, container: &str) -> Option<usize> {
        self.msgs.iter().position(|m| {
            matches!(m, GuestMsg::ContainerEvent { container: c, event: ContainerEvent::Started { .. }, .. } if c == container)
        })
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut launcher) = self.launcher.take() {
            // SIGKILL the pod's PID 1 (which takes its namespace down), then
            // the launcher.
            for pid in children(launcher.id()) {
                // SAFETY: kill takes no pointers.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = launcher.kill();
            let _ = launcher.wait();
        }
    }
}

fn exited_code(e: &ContainerEvent) -> Option<i32> {
    match e {
        ContainerEvent::Exited { code, .. } => *code,
        _ => None,
    }
}

#[test]
fn test_runtime_logs_in_order_and_pod_succeeds() {
    if skip() {
        return;
    }
    let mut p = Pod::start(&pod(vec![sh(
        "talker",
        "echo out-1; echo err-1 >&2; echo out-2; hostname; cat /etc/hostname; echo err-2 >&2; printf tail",
    )]));
    let (phase, status) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        p.chunks("talker", Stream::Stdout),
        [
            ("out-1\n", false),
            ("out-2\n", false),
            ("native-pod\n", false),
            ("native-pod\n", false),
            ("tail", true)
        ]
        .map(|(s, b)| (s.to_string(), b))
    );
    assert_eq!(p.log("talker", Stream::Stderr), "err-1\nerr-2\n");
    let events = p.events("talker");
    assert!(
        matches!(events[0], ContainerEvent::Started { .. }),
        "{events:?}"
    );
    assert_eq!(exited_code(&events[1]), Some(0), "{events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn test_runtime_localhost_between_containers() {
    if skip() {
        return;
    }
    let mut p = Pod::start(&pod(vec![
        sh("server", "nc -l -p 7001"),
        sh(
            "client",
            "until echo hello-over-lo | nc 127.0.0.1 7001; do sleep 0.1; done",
        ),
    ]));
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(p.log("server", Stream::Stdout), "hello-over-lo\n");
}

#[test]
fn test_runtime_shared_empty_dir() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![
        with_mount(
            sh(
                "writer",
                "echo shared-content > /data/f.tmp && mv /data/f.tmp /data/f",
            ),
            "shared",
            "/data",
            false,
        ),
        with_mount(
            sh(
                "reader",
                "while [ ! -f /in/f ]; do sleep 0.05; done; cat /in/f; \
                 touch /in/g 2>/dev/null && echo writable || echo read-only",
            ),
            "shared",
            "/in",
            true,
        ),
    ]);
    spec.volumes.push(empty_dir("shared"));
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(
        p.log("reader", Stream::Stdout),
        "shared-content\nread-only\n"
    );
}

#[test]
fn test_runtime_sub_path_stays_inside_the_volume() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![
        with_mount(
            sh(
                "linker",
                "mkdir -p /v/dir && ln -s / /v/escape && echo ok > /v/dir/x",
            ),
            "vol",
            "/v",
            false,
        ),
        sh("user", "exit 0"),
    ]);
    spec.volumes.push(empty_dir("vol"));
    // Runs after the first container made the symlink: a sub_path through it
    // must fail, a plain one must work.
    spec.init_containers.push(spec.containers.remove(0));
    let mut good = with_mount(sh("good", "cat /m/x"), "vol", "/m", true);
    good.volume_mounts[0].sub_path = Some("dir".into());
    let mut bad = with_mount(sh("bad", "ls /m/etc/passwd"), "vol", "/m", false);
    bad.volume_mounts[0].sub_path = Some("escape/etc".into());
    spec.containers = vec![good, bad];
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(p.log("good", Stream::Stdout), "ok\n");
    let bad_err = p.log("bad", Stream::Stderr);
    assert!(bad_err.contains("symlink"), "{bad_err}");
    assert_eq!(p.log("bad", Stream::Stdout), "");
}

#[test]
fn test_runtime_init_containers_in_order() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![with_mount(
        sh("app", "cat /work/order"),
        "work",
        "/work",
        false,
    )]);
    spec.volumes.push(empty_dir("work"));
    for name in ["init-1", "init-2"] {
        spec.init_containers.push(with_mount(
            sh(name, &format!("sleep 0.1; echo {name} >> /work/order")),
            "work",
            "/work",
            false,
        ));
    }
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(p.log("app", Stream::Stdout), "init-1\ninit-2\n");
    let exited_1 = p
        .msgs
        .iter()
        .position(|m| matches!(m, GuestMsg::ContainerEvent { container, event: ContainerEvent::Exited { .. }, .. } if container == "init-1"))
        .unwrap();
    assert!(exited_1 < p.started_at("init-2").unwrap());
    assert!(p.started_at("init-2").unwrap() < p.started_at("app").unwrap());
}

#[test]
fn test_runtime_failing_init_container_fails_pod() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sh("app", "echo must-not-run")]);
    spec.init_containers
        .push(sh("setup", "echo setting-up; exit 3"));
    let mut p = Pod::start(&spec);
    let (phase, status) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(status.code(), Some(1));
    assert_eq!(p.log("setup", Stream::Stdout), "setting-up\n");
    assert_eq!(exited_code(&p.events("setup")[1]), Some(3));
    assert!(p.events("app").is_empty(), "{:#?}", p.msgs);
}

#[test]
fn test_runtime_restart_on_failure_with_backoff() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![with_mount(
        sh(
            "flaky",
            "n=$(cat /c/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /c/n; \
             echo run-$n; [ $n -ge 3 ]",
        ),
        "counter",
        "/c",
        false,
    )]);
    spec.volumes.push(empty_dir("counter"));
    spec.restart_policy = RestartPolicy::OnFailure;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(p.log("flaky", Stream::Stdout), "run-1\nrun-2\nrun-3\n");
    let restarts: Vec<(u32, u64)> = p
        .events("flaky")
        .iter()
        .filter_map(|e| match e {
            ContainerEvent::Restarting {
                restart_count,
                backoff_ms,
            } => Some((*restart_count, *backoff_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(restarts, [(1, 50), (2, 100)]);
    let codes: Vec<Option<i32>> = p
        .events("flaky")
        .iter()
        .filter_map(|e| match e {
            ContainerEvent::Exited { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [Some(1), Some(1), Some(0)]);
}

/// The PID namespace of a process, as `pid:[inode]`.
fn pid_ns(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

#[test]
fn test_runtime_stop_terminates_then_kills() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![
        sh(
            "polite",
            "trap 'echo got-term; exit 0' TERM; echo ready; sleep 1000 & wait",
        ),
        sh("stubborn", "trap '' TERM; echo ready; sleep 1000"),
    ]);
    spec.grace_period_s = 30;
    let mut p = Pod::start(&spec);
    // Both print `ready` once their TERM traps are set, in either order.
    while ["polite", "stubborn"]
        .iter()
        .any(|name| p.log(name, Stream::Stdout) != "ready\n")
    {
        p.recv()
            .expect("a message before both containers are ready");
    }
    // The pod's processes, by PID namespace: the init's and the containers'.
    let init_ns = pid_ns(p.init_pid).unwrap();
    let mut namespaces = vec![init_ns];
    namespaces.extend(children(p.init_pid).into_iter().filter_map(pid_ns));
    assert_eq!(namespaces.len(), 3, "{namespaces:?}");
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    let (phase, status) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(status.code(), Some(1));
    assert_eq!(p.log("polite", Stream::Stdout), "ready\ngot-term\n");
    assert_eq!(exited_code(&p.events("polite")[1]), Some(0));
    assert!(
        matches!(
            p.events("stubborn")[1],
            ContainerEvent::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{:#?}",
        p.events("stubborn")
    );
    // No process of the pod is left anywhere on the host.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| pid_ns(*pid).is_some_and(|ns| namespaces.contains(&ns)))
        .map(|pid| pid.to_string())
        .collect();
    assert!(left.is_empty(), "pod processes left: {left:?}");
}

#[test]
fn test_runtime_reaps_orphans() {
    if skip() {
        return;
    }
    // One PID namespace for the pod: the orphan is re-parented to the init.
    let mut spec = pod(vec![
        sh("parent", "sleep 0.3 & echo forked; exit 0"),
        sh("keeper", "echo keeping; exec sleep 1000"),
    ]);
    spec.share_process_namespace = true;
    spec.grace_period_s = 1;
    let mut p = Pod::start(&spec);
    p.wait_for("parent's exit", |m| {
        matches!(m, GuestMsg::ContainerEvent { container, event: ContainerEvent::Exited { .. }, .. } if container == "parent")
    });
    // The orphaned sleep ends 0.3 s later; the init must reap it, leaving
    // only the keeper as its child and no zombie.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kids = children(p.init_pid);
        let zombies = kids.iter().filter(|k| proc_state(**k) == Some('Z')).count();
        if kids.len() == 1 && zombies == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the init's children: {kids:?}, {zombies} zombies"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(p.log("parent", Stream::Stdout), "forked\n");
    assert_eq!(p.log("keeper", Stream::Stdout), "keeping\n");
}
