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
        common::skip("the native pod runtime needs root (namespaces and mounts)");
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
        network: None,
        sandbox: false,
        fs_group: None,
        sysctls: Vec::new(),
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
    /// When each of `msgs` arrived.
    times: Vec<Instant>,
    _dir: TempDir,
}

impl Pod {
    fn start(pod: &WirePod) -> Pod {
        Pod::start_in(pod, share())
    }

    /// Like [`Pod::start`], with another pod share.
    fn start_in(pod: &WirePod, share: &Path) -> Pod {
        Pod::start_with(pod, share, |_| {})
    }

    /// Like [`Pod::start_in`], calling `before_run` with the host PID of
    /// the pod's PID 1 once it is ready, before it gets the pod.
    fn start_with(pod: &WirePod, share: &Path, before_run: impl FnOnce(u32)) -> Pod {
        let dir = TempDir::new("runtime");
        let sock = dir.0.join("pod.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut launcher = Command::new(init_binary())
            .arg("--native")
            .arg("--socket")
            .arg(&sock)
            .arg("--share")
            .arg(share)
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
            times: vec![],
            _dir: dir,
        };
        assert_ne!(p.init_pid, 0, "the launcher has no child");
        p.conn.handshake_host("runtime test").unwrap();
        let ready = p.recv().expect("ready");
        assert!(matches!(ready, GuestMsg::Ready { .. }), "{ready:?}");
        before_run(p.init_pid);
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
            self.times.push(Instant::now());
        }
        msg
    }

    /// When a container's first event of the kind `pred` picks arrived.
    fn event_time(&self, container: &str, pred: impl Fn(&ContainerEvent) -> bool) -> Instant {
        let i = self
            .msgs
            .iter()
            .position(|m| matches!(m, GuestMsg::ContainerEvent { container: c, event, .. } if c == container && pred(event)))
            .unwrap_or_else(|| panic!("no such event of {container}: {:#?}", self.msgs));
        self.times[i]
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
            // SIGKILL the pod's PID 1 (which takes its namespace down), give
            // the launcher a moment to remove the pod's cgroups, then kill it.
            for pid in children(launcher.id()) {
                // SAFETY: kill takes no pointers.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(launcher.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
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
        p.log("talker", Stream::Stdout),
        "out-1\nout-2\nnative-pod\nnative-pod\ntail"
    );
    // Whole lines in each chunk; the unfinished last line comes alone at
    // the end of the stream, partial (no newline ended it).
    let chunks = p.chunks("talker", Stream::Stdout);
    let (last, lines) = chunks.split_last().unwrap();
    assert_eq!(last, &("tail".to_string(), true));
    assert!(
        lines.iter().all(|(d, p)| !p && d.ends_with('\n')),
        "{chunks:?}"
    );
    assert_eq!(p.log("talker", Stream::Stderr), "err-1\nerr-2\n");
    let events = p.events("talker");
    assert!(
        matches!(events[0], ContainerEvent::Started { .. }),
        "{events:?}"
    );
    // Without probes a container is ready as soon as it runs.
    assert_eq!(
        events[1],
        ContainerEvent::Ready { ready: true },
        "{events:?}"
    );
    assert_eq!(exited_code(&events[2]), Some(0), "{events:?}");
    assert_eq!(events.len(), 3, "{events:?}");
}

#[test]
fn test_runtime_localhost_between_containers() {
    if skip() {
        return;
    }
    let mut p = Pod::start(&pod(vec![
        // The server's stdin stays open (a FIFO the shell holds), or nc
        // would half-close the connection before the client sent anything.
        sh(
            "server",
            "mkfifo /tmp/in; nc -l -p 7001 < /tmp/in & exec 3> /tmp/in; wait $!",
        ),
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
    assert_eq!(exited_code(&p.events("setup")[2]), Some(3));
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

#[test]
fn test_runtime_restart_always_restarts_successes_too() {
    // restartPolicy Always: a container that exits 0 is started again (with
    // backoff and a growing restart count) until the pod is stopped.
    if skip() {
        return;
    }
    let mut spec = pod(vec![sh("loop", "echo pass")]);
    spec.restart_policy = RestartPolicy::Always;
    let mut p = Pod::start(&spec);
    p.wait_for("the third restart", |m| {
        matches!(
            m,
            GuestMsg::ContainerEvent {
                event: ContainerEvent::Restarting {
                    restart_count: 3,
                    ..
                },
                ..
            }
        )
    });
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    let (phase, _) = p.finish();
    // Every run succeeded: stopping it does not make the pod fail.
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert!(p
        .log("loop", Stream::Stdout)
        .starts_with("pass\npass\npass\n"));
    let codes: Vec<_> = exits(&p, "loop");
    assert!(codes.len() >= 3, "{codes:?}");
}

#[test]
fn test_runtime_rejects_bad_pods_before_starting_anything() {
    // A volumeMount naming no volume, a subPath escaping its volume, a
    // container name used twice, a root filesystem path out of the share:
    // peapod-init refuses the pod with a clear error and starts nothing.
    if skip() {
        return;
    }
    let bad: Vec<(&str, WirePod)> = vec![
        (
            "no volume",
            pod(vec![with_mount(sh("a", "true"), "ghost", "/g", false)]),
        ),
        ("subPath", {
            let mut c = with_mount(sh("a", "true"), "v", "/v", false);
            c.volume_mounts[0].sub_path = Some("../../etc".into());
            let mut p = pod(vec![c]);
            p.volumes.push(empty_dir("v"));
            p
        }),
        ("twice", pod(vec![sh("a", "true"), sh("a", "true")])),
        ("rootfs", {
            let mut c = sh("a", "true");
            c.rootfs = "../..".into();
            pod(vec![c])
        }),
    ];
    for (what, spec) in bad {
        let mut p = Pod::start(&spec);
        let mut error = None;
        while let Some(m) = p.recv() {
            if let GuestMsg::Error { message } = &m {
                error = Some(message.clone());
            }
        }
        let error = error.unwrap_or_else(|| panic!("{what}: no error: {:#?}", p.msgs));
        assert!(
            p.msgs
                .iter()
                .all(|m| !matches!(m, GuestMsg::ContainerEvent { .. })),
            "{what}: something started: {:#?}",
            p.msgs
        );
        // The error names the field.
        let needle = match what {
            "no volume" => "containers[0].volume_mounts[0].volume",
            "subPath" => "containers[0].volume_mounts[0].sub_path",
            "twice" => "containers[1].name",
            _ => "containers[0].rootfs",
        };
        assert!(error.contains(needle), "{what}: {error}");
    }
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
    assert_eq!(exited_code(&p.events("polite")[2]), Some(0));
    assert!(
        matches!(
            p.events("stubborn")[2],
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
fn test_runtime_lifecycle_hooks_stop_signal_and_termination_messages() {
    if skip() {
        return;
    }
    use peapod_proto::{HookKind, ProbeAction};
    let exec = |script: &str| ProbeAction::Exec {
        command: vec!["sh".into(), "-c".into(), script.into()],
    };
    let term = Some("/dev/termination-log".to_string());
    // postStart runs first (the container counts as running after it),
    // preStop before the stop signal; what the container leaves in its
    // termination message file is its message.
    let hooked = WireContainer {
        post_start: Some(exec("sleep 1; echo post-start > /tmp/order")),
        pre_stop: Some(exec("echo pre-stop >> /tmp/order")),
        termination_message_path: term.clone(),
        ..sh(
            "hooked",
            "trap 'cat /tmp/order; echo bye > /dev/termination-log; exit 0' TERM; \
             while :; do sleep 0.1; done",
        )
    };
    // Stopped with its own signal; the message file may be anywhere.
    let quitter = WireContainer {
        stop_signal: Some(libc::SIGQUIT),
        termination_message_path: Some("/var/run/why".into()),
        ..sh(
            "quitter",
            "trap 'echo got-term; exit 1' TERM; trap 'echo quit > /var/run/why; exit 0' QUIT; \
             while :; do sleep 0.1; done",
        )
    };
    // Failed and said nothing: its output's last lines are its message.
    let fails = WireContainer {
        termination_message_path: term.clone(),
        termination_message_fallback: true,
        ..sh("fails", "seq 1 100 >&2; exit 3")
    };
    // A failed postStart hook stops the container; it never runs.
    let bad_hook = WireContainer {
        post_start: Some(exec("exit 7")),
        ..sh("bad-hook", "sleep 1000")
    };
    // A preStop hook that outlives the grace period is cut short.
    let slow_stop = WireContainer {
        pre_stop: Some(ProbeAction::Sleep { seconds: 600 }),
        ..sh(
            "slow-stop",
            "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done",
        )
    };
    let mut spec = pod(vec![hooked, quitter, fails, bad_hook, slow_stop]);
    spec.grace_period_s = 2;
    let mut p = Pod::start(&spec);
    while p.started_at("hooked").is_none()
        || p.started_at("slow-stop").is_none()
        || !p
            .events("fails")
            .iter()
            .any(|e| matches!(e, ContainerEvent::Exited { .. }))
        || !p
            .events("bad-hook")
            .iter()
            .any(|e| matches!(e, ContainerEvent::Exited { .. }))
    {
        p.recv().expect("a message before the containers are up");
    }
    let created = p.event_time("hooked", |e| matches!(e, ContainerEvent::Created { .. }));
    let started = p.event_time("hooked", |e| matches!(e, ContainerEvent::Started { .. }));
    assert!(
        started.duration_since(created) >= Duration::from_millis(900),
        "started {:?} after it was created, before its postStart hook ended",
        started.duration_since(created)
    );
    let stop_sent = Instant::now();
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 2 })
        .unwrap();
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);

    let events = p.events("hooked");
    assert!(
        matches!(events[0], ContainerEvent::Created { .. }),
        "{events:?}"
    );
    assert!(
        matches!(events[1], ContainerEvent::Started { .. }),
        "{events:?}"
    );
    assert_eq!(p.log("hooked", Stream::Stdout), "post-start\npre-stop\n");
    let message = |name: &str| {
        p.events(name).iter().find_map(|e| match e {
            ContainerEvent::Exited { message, .. } => Some(message.clone()),
            _ => None,
        })
    };
    assert_eq!(message("hooked"), Some(Some("bye\n".into())));

    assert_eq!(p.log("quitter", Stream::Stdout), "");
    assert_eq!(message("quitter"), Some(Some("quit\n".into())));
    assert_eq!(exited_code(p.events("quitter").last().unwrap()), Some(0));

    let tail: Vec<String> = (21..=100).map(|n| n.to_string()).collect();
    assert_eq!(message("fails"), Some(Some(tail.join("\n"))));

    let events = p.events("bad-hook");
    assert!(
        matches!(events[0], ContainerEvent::Created { .. }),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], ContainerEvent::HookFailed { hook: HookKind::PostStart, message } if message.contains("exited with 7")),
        "{events:?}"
    );
    // (sleep is its PID namespace's init: SIGTERM does not end it,
    // SIGKILL does, after the grace period.)
    assert!(
        matches!(
            events[2],
            ContainerEvent::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{events:?}"
    );
    assert_eq!(p.started_at("bad-hook"), None);

    let events = p.events("slow-stop");
    assert!(
        events.iter().any(|e| matches!(e, ContainerEvent::HookFailed { hook: HookKind::PreStop, message } if message.contains("grace period"))),
        "{events:?}"
    );
    assert_eq!(p.log("slow-stop", Stream::Stdout), "got-term\n");
    let ended = p.event_time("slow-stop", |e| matches!(e, ContainerEvent::Exited { .. }));
    let took = ended.duration_since(stop_sent);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "slow-stop ended {took:?} after the stop"
    );
}

#[test]
fn test_runtime_grpc_probes_against_a_real_grpc_server() {
    // etcd serves grpc.health.v1.Health on its client port: started in the
    // pod's network namespace, it makes the readiness probe of the whole
    // server pass, while a probe of a service it does not know fails; once
    // it is gone, the first fails too.
    if skip() {
        return;
    }
    use peapod_proto::{ProbeAction, ProbeKind, WireProbe};
    let grpc = |service: &str| WireProbe {
        kind: ProbeKind::Readiness,
        action: ProbeAction::Grpc {
            port: 2379,
            service: service.into(),
        },
        initial_delay_s: 0,
        period_s: 1,
        timeout_s: 2,
        success_threshold: 1,
        failure_threshold: 1,
    };
    let probed = |name: &str, service: &str| WireContainer {
        probes: vec![grpc(service)],
        ..sh(name, "sleep 1000")
    };
    let mut p = Pod::start(&pod(vec![
        probed("whole", ""),
        probed("unknown", "no.such.Service"),
    ]));
    while p.started_at("whole").is_none() || p.started_at("unknown").is_none() {
        p.recv().expect("a message before the containers start");
    }
    let data = TempDir::new("etcd");
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let mut etcd = Command::new("nsenter")
        .arg("-t")
        .arg(p.init_pid.to_string())
        .arg("-n")
        .arg("etcd")
        .args(["--name", "probe", "--data-dir"])
        .arg(data.0.join("etcd"))
        .args(["--listen-client-urls", &url(2379)])
        .args(["--advertise-client-urls", &url(2379)])
        .args(["--listen-peer-urls", &url(2380)])
        .args(["--initial-advertise-peer-urls", &url(2380)])
        .args(["--initial-cluster", &format!("probe={}", url(2380))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start etcd (Debian's etcd-server) in the pod's network namespace");
    let became = |p: &Pod, name: &str, ready: bool| {
        p.events(name).contains(&ContainerEvent::Ready { ready })
    };
    let unhealthy = |p: &Pod, name: &str| -> Vec<String> {
        p.events(name)
            .iter()
            .filter_map(|e| match e {
                ContainerEvent::Unhealthy { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    };
    while !became(&p, "whole", true)
        || !unhealthy(&p, "unknown")
            .iter()
            .any(|m| m.contains("grpc.health.v1"))
    {
        p.recv().expect("a message before the probes pass and fail");
    }
    assert!(!became(&p, "unknown", true), "{:#?}", p.msgs);
    etcd.kill().unwrap();
    etcd.wait().unwrap();
    while !became(&p, "whole", false) {
        p.recv().expect("a message before the probe fails");
    }
    assert!(
        unhealthy(&p, "whole")
            .iter()
            .any(|m| m.contains("connect") || m.contains("dial")),
        "{:#?}",
        p.msgs
    );
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    p.finish();
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

// --- cgroups, OOM, sidecars, hostPath ---

/// A mounted cgroup hierarchy, from this process's mountinfo.
struct CgroupMount {
    /// The mount's root inside the hierarchy.
    root: String,
    point: PathBuf,
    v2: bool,
    /// v1 super options (`rw,memory`), or v2's `cgroup.controllers`.
    controllers: Vec<String>,
}

fn cgroup_mounts() -> Vec<CgroupMount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let v2 = match *f.get(sep + 1)? {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let point = PathBuf::from(f[4]);
            let controllers = if v2 {
                std::fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default()
            } else {
                f.get(sep + 3)?.replace(',', " ")
            };
            Some(CgroupMount {
                root: f[3].to_string(),
                point,
                v2,
                controllers: controllers.split_whitespace().map(String::from).collect(),
            })
        })
        .collect()
}

/// Whether a hierarchy with `controller` is mounted here; says `skipped:`
/// if not.
fn have_controller(controller: &str) -> bool {
    let have = cgroup_mounts()
        .iter()
        .any(|m| m.controllers.iter().any(|c| c == controller));
    if !have {
        common::skip(&format!(
            "no mounted cgroup hierarchy has the {controller} controller"
        ));
    }
    have
}

/// The host directory of `controller`'s cgroup, from `/proc/self/cgroup`
/// text printed inside a container.
fn host_cgroup_dir(printed: &str, controller: &str) -> Option<PathBuf> {
    let mounts = cgroup_mounts();
    let m = mounts
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == controller))?;
    let path = printed.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if m.v2 {
            ctls.is_empty()
        } else {
            ctls.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })?;
    let rel = path.strip_prefix(m.root.trim_end_matches('/'))?;
    Some(m.point.join(rel.trim_start_matches('/')))
}

/// Every host directory of the pod's cgroups named in `/proc/self/cgroup`
/// text printed inside a container.
fn pod_cgroup_dirs(printed: &str) -> Vec<PathBuf> {
    ["memory", "cpu", "pids"]
        .iter()
        .filter_map(|c| host_cgroup_dir(printed, c))
        .filter(|d| d.to_string_lossy().contains("/peapod/"))
        .collect()
}

/// Read a cgroup interface file.
fn cgroup_value(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn is_v2(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// Read messages until a container's stdout contains `marker`.
fn wait_output(p: &mut Pod, container: &str, marker: &str) -> String {
    loop {
        let out = p.log(container, Stream::Stdout);
        if out.contains(marker) {
            return out;
        }
        if p.recv().is_none() {
            panic!(
                "closed before {container} printed {marker:?}: {:#?}",
                p.msgs
            );
        }
    }
}

fn warnings(p: &Pod) -> Vec<String> {
    p.msgs
        .iter()
        .filter_map(|m| match m {
            GuestMsg::Error { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn exits(p: &Pod, container: &str) -> Vec<ContainerEvent> {
    p.events(container)
        .into_iter()
        .filter(|e| matches!(e, ContainerEvent::Exited { .. }))
        .collect()
}

/// Prints its cgroups, then waits to be stopped.
const SHOW_CGROUPS: &str = "cat /proc/self/cgroup; echo end-of-cgroups; sleep 1000 & wait";

#[test]
fn test_runtime_memory_limit_applied() {
    if skip() || !have_controller("memory") {
        return;
    }
    let mut c = sh("limited", SHOW_CGROUPS);
    c.memory_limit = Some(48 << 20);
    let mut p = Pod::start(&pod(vec![c]));
    let printed = wait_output(&mut p, "limited", "end-of-cgroups");
    let dir = host_cgroup_dir(&printed, "memory").expect("memory cgroup");
    assert!(
        dir.ends_with("limited") && dir.to_string_lossy().contains("/peapod/native-test-"),
        "{}",
        dir.display()
    );
    let file = if is_v2(&dir) {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(cgroup_value(&dir, file), (48u64 << 20).to_string());
    assert!(warnings(&p).is_empty(), "{:#?}", p.msgs);
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    p.finish();
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn test_runtime_pids_and_cpu_limits_applied() {
    if skip() || !have_controller("pids") || !have_controller("cpu") {
        return;
    }
    let mut limited = sh("limited", SHOW_CGROUPS);
    limited.pids_limit = Some(50);
    limited.cpu_limit_millis = Some(250);
    let default = sh("default", SHOW_CGROUPS);
    // Ten background sleeps cannot all start under a limit of 5 processes.
    let mut forker = sh(
        "forker",
        "i=0; while [ $i -lt 10 ]; do sleep 10 & i=$((i+1)); done; echo all-forked",
    );
    forker.pids_limit = Some(5);
    let mut p = Pod::start(&pod(vec![limited, default, forker]));
    let printed = wait_output(&mut p, "limited", "end-of-cgroups");
    let pids = host_cgroup_dir(&printed, "pids").expect("pids cgroup");
    assert_eq!(cgroup_value(&pids, "pids.max"), "50");
    let cpu = host_cgroup_dir(&printed, "cpu").expect("cpu cgroup");
    if is_v2(&cpu) {
        assert_eq!(cgroup_value(&cpu, "cpu.max"), "25000 100000");
    } else {
        assert_eq!(cgroup_value(&cpu, "cpu.cfs_quota_us"), "25000");
        assert_eq!(cgroup_value(&cpu, "cpu.cfs_period_us"), "100000");
    }
    let printed = wait_output(&mut p, "default", "end-of-cgroups");
    let pids = host_cgroup_dir(&printed, "pids").expect("pids cgroup");
    assert_eq!(cgroup_value(&pids, "pids.max"), "4096");
    // It may have ended while we waited for the others.
    while exits(&p, "forker").is_empty() {
        p.recv().expect("a message before forker's exit");
    }
    assert_eq!(p.log("forker", Stream::Stdout), "", "{:#?}", p.msgs);
    let err = p.log("forker", Stream::Stderr);
    assert!(err.contains("fork"), "{err}");
    p.conn
        .send(&HostMsg::StopPod { grace_period_s: 1 })
        .unwrap();
    p.finish();
}

/// Builds a 64 MiB string in the shell: far over a 16 MiB limit.
const HOG: &str = "x=$(head -c 64m /dev/zero | tr '\\000' a); echo survived ${#x}";

#[test]
fn test_runtime_oom_kill_reported() {
    if skip() || !have_controller("memory") {
        return;
    }
    let mut hog = sh("hog", HOG);
    hog.memory_limit = Some(16 << 20);
    let mut p = Pod::start(&pod(vec![hog]));
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(p.log("hog", Stream::Stdout), "");
    let exited = exits(&p, "hog");
    assert!(
        matches!(
            exited[..],
            [ContainerEvent::Exited {
                oom_killed: true,
                ..
            }]
        ),
        "{exited:?}"
    );
    let reason = p.msgs.iter().find_map(|m| match m {
        GuestMsg::PodExited { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason.as_ref().is_some_and(|r| r.contains("OOMKilled")),
        "{reason:?}"
    );
}

#[test]
fn test_runtime_oom_then_clean_restart() {
    if skip() || !have_controller("memory") {
        return;
    }
    // The first run is OOM-killed, the second ends well: its exit must not
    // count the first run's kill.
    let mut c = with_mount(
        sh(
            "retry",
            &format!(
                "n=$(cat /c/n 2>/dev/null || echo 0); echo $((n+1)) > /c/n; \
                 if [ $n -eq 0 ]; then {HOG}; else echo second-run; fi"
            ),
        ),
        "counter",
        "/c",
        false,
    );
    c.memory_limit = Some(16 << 20);
    let mut spec = pod(vec![c]);
    spec.volumes.push(empty_dir("counter"));
    spec.restart_policy = RestartPolicy::OnFailure;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(p.log("retry", Stream::Stdout), "second-run\n");
    let oom: Vec<(bool, Option<i32>)> = exits(&p, "retry")
        .iter()
        .map(|e| match e {
            ContainerEvent::Exited {
                oom_killed, code, ..
            } => (*oom_killed, *code),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(oom.len(), 2, "{oom:?}");
    assert!(oom[0].0, "{oom:?}");
    assert_eq!(oom[1], (false, Some(0)));
}

#[test]
fn test_runtime_cgroups_removed_after_pod() {
    if skip() {
        return;
    }
    // One container restarts once; both print their cgroups each run.
    let show = "cat /proc/self/cgroup; echo end-of-cgroups";
    let mut spec = pod(vec![
        with_mount(
            sh(
                "again",
                &format!("{show}; n=$(cat /c/n 2>/dev/null || echo 0); echo 1 > /c/n; [ $n = 1 ]"),
            ),
            "counter",
            "/c",
            false,
        ),
        sh("once", show),
    ]);
    spec.volumes.push(empty_dir("counter"));
    spec.restart_policy = RestartPolicy::OnFailure;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    let mut dirs = pod_cgroup_dirs(&p.log("again", Stream::Stdout));
    dirs.extend(pod_cgroup_dirs(&p.log("once", Stream::Stdout)));
    if dirs.is_empty() {
        common::skip("no cgroup controller here, so the pod made no cgroups");
        return;
    }
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
        let pod_dir = d.parent().unwrap();
        assert!(!pod_dir.exists(), "{} left behind", pod_dir.display());
    }
}

#[test]
fn test_runtime_cgroups_removed_when_init_dies() {
    if skip() {
        return;
    }
    let mut p = Pod::start(&pod(vec![sh("victim", SHOW_CGROUPS)]));
    let dirs = pod_cgroup_dirs(&wait_output(&mut p, "victim", "end-of-cgroups"));
    if dirs.is_empty() {
        common::skip("no cgroup controller here, so the pod made no cgroups");
        return;
    }
    assert!(dirs.iter().all(|d| d.exists()), "{dirs:?}");
    // The pod's PID 1 dies without cleaning up: its launcher does.
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(p.init_pid as libc::pid_t, libc::SIGKILL) };
    let mut launcher = p.launcher.take().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while launcher.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the launcher did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    for d in &dirs {
        assert!(!d.parent().unwrap().exists(), "{} left behind", d.display());
    }
}

#[test]
fn test_runtime_sidecar_runs_for_the_pod() {
    if skip() {
        return;
    }
    // The sidecar crashes once (restarted although the pod's policy is
    // Never), then serves until the app is done; the init container after
    // it only starts once it has started, and waits for its second run.
    let mut side = with_mount(
        sh(
            "side",
            "n=$(cat /v/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /v/n; \
             echo side-run-$n; [ $n -ge 2 ] || exit 1; \
             trap 'echo got-term; exit 7' TERM; touch /v/up; sleep 1000 & wait",
        ),
        "v",
        "/v",
        false,
    );
    side.sidecar = true;
    let after = with_mount(
        sh(
            "after",
            "until [ -f /v/up ]; do sleep 0.05; done; echo side-is-up",
        ),
        "v",
        "/v",
        false,
    );
    let mut spec = pod(vec![with_mount(
        sh("app", "sleep 0.2; cat /v/n"),
        "v",
        "/v",
        false,
    )]);
    spec.init_containers = vec![side, after];
    spec.volumes.push(empty_dir("v"));
    let mut p = Pod::start(&spec);
    let (phase, status) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(status.code(), Some(0));
    assert_eq!(p.log("after", Stream::Stdout), "side-is-up\n");
    assert_eq!(p.log("app", Stream::Stdout), "2\n");
    assert_eq!(
        p.log("side", Stream::Stdout),
        "side-run-1\nside-run-2\ngot-term\n"
    );
    let codes: Vec<Option<i32>> = exits(&p, "side").iter().map(exited_code).collect();
    assert_eq!(codes, [Some(1), Some(7)]);
    let at = |container: &str, exited: bool| {
        p.msgs
            .iter()
            .rposition(|m| match m {
                GuestMsg::ContainerEvent {
                    container: c,
                    event,
                    ..
                } => {
                    c == container
                        && matches!(event, ContainerEvent::Exited { .. }) == exited
                        && !matches!(event, ContainerEvent::Restarting { .. })
                }
                _ => false,
            })
            .unwrap()
    };
    // `after` started while the sidecar ran (before its last exit), and the
    // sidecar's last exit (SIGTERM) came after the app had ended.
    assert!(p.started_at("side").unwrap() < p.started_at("after").unwrap());
    assert!(p.started_at("after").unwrap() < at("side", true));
    assert!(at("app", true) < at("side", true));
}

/// As the kubelet: the init container after a sidecar starts once the
/// sidecar has started, which with a startup probe is once the probe
/// passed (here, once the sidecar made /v/up, a second in).
#[test]
fn test_runtime_sidecar_startup_probe_gates_the_next_init_container() {
    if skip() {
        return;
    }
    use peapod_proto::{ProbeAction, ProbeKind, WireProbe};
    let mut side = with_mount(
        sh("side", "sleep 1; touch /v/up; exec sleep 1000"),
        "v",
        "/v",
        false,
    );
    side.sidecar = true;
    side.probes = vec![WireProbe {
        kind: ProbeKind::Startup,
        action: ProbeAction::Exec {
            command: vec!["test".into(), "-f".into(), "/v/up".into()],
        },
        initial_delay_s: 0,
        period_s: 1,
        timeout_s: 5,
        success_threshold: 1,
        failure_threshold: 30,
    }];
    let after = with_mount(
        sh("after", "test -f /v/up && echo up-before-me"),
        "v",
        "/v",
        false,
    );
    let mut spec = pod(vec![sh("app", "true")]);
    spec.init_containers = vec![side, after];
    spec.volumes.push(empty_dir("v"));
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(p.log("after", Stream::Stdout), "up-before-me\n");
}

/// A sidecar whose command cannot be exec'd never started: the init
/// container after it waits (the sidecar restarts meanwhile), and is never
/// run.
#[test]
fn test_runtime_sidecar_that_cannot_exec_holds_the_next_init_container() {
    if skip() {
        return;
    }
    let mut side = sh("side", "unused");
    side.command = vec!["/no/such/command".into()];
    side.sidecar = true;
    let mut spec = pod(vec![sh("app", "true")]);
    spec.init_containers = vec![side, sh("after", "echo ran")];
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    // Backoff is 50-100 ms here: a second lets it fail several times.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        p.wait_for(
            "an event of side",
            |m| matches!(m, GuestMsg::ContainerEvent { container, .. } if container == "side"),
        );
    }
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.finish();
    assert!(exits(&p, "side").len() >= 2, "{:#?}", p.msgs);
    assert!(p.events("after").is_empty(), "{:#?}", p.msgs);
    assert!(p.events("app").is_empty(), "{:#?}", p.msgs);
}

#[test]
fn test_runtime_host_path_volume() {
    if skip() {
        return;
    }
    let host = TempDir::new("hostpath");
    host.write("greeting", "hello-from-host\n");
    // Native mode's share is the host's `/`, as `peapod run` passes it.
    let rel = |p: &Path| {
        p.canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string()
    };
    let rootfs = rel(&share().join("rootfs"));
    let in_root = |mut c: WireContainer| {
        c.rootfs = rootfs.clone();
        c
    };
    let reader = with_mount(
        with_mount(
            sh(
                "reader",
                "cat /h/greeting /g; touch /h/new 2>/dev/null && echo writable || echo read-only",
            ),
            "dir",
            "/h",
            true,
        ),
        "file",
        "/g",
        true,
    );
    let writer = with_mount(
        sh("writer", "echo from-pod > /h/written"),
        "dir",
        "/h",
        false,
    );
    let mut spec = pod(vec![in_root(reader), in_root(writer)]);
    spec.volumes = vec![
        WireVolume {
            name: "dir".into(),
            kind: VolumeKind::HostPath { path: rel(&host.0) },
        },
        WireVolume {
            name: "file".into(),
            kind: VolumeKind::HostPath {
                path: rel(&host.0.join("greeting")),
            },
        },
    ];
    let mut p = Pod::start_in(&spec, Path::new("/"));
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    assert_eq!(
        p.log("reader", Stream::Stdout),
        "hello-from-host\nhello-from-host\nread-only\n"
    );
    assert!(!host.0.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(host.0.join("written")).unwrap(),
        "from-pod\n"
    );
}

#[test]
fn test_runtime_host_path_refuses_symlinks() {
    if skip() {
        return;
    }
    let host = TempDir::new("hostpath-link");
    std::os::unix::fs::symlink("/etc", host.0.join("link")).unwrap();
    let real = host.0.canonicalize().unwrap();
    let mut spec = pod(vec![with_mount(sh("c", "ls /h"), "h", "/h", true)]);
    let rootfs = share().join("rootfs").canonicalize().unwrap();
    spec.containers[0].rootfs = rootfs.to_str().unwrap().trim_start_matches('/').into();
    spec.volumes.push(WireVolume {
        name: "h".into(),
        kind: VolumeKind::HostPath {
            path: format!("{}/link", real.to_str().unwrap().trim_start_matches('/')),
        },
    });
    let mut p = Pod::start_in(&spec, Path::new("/"));
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    let reason = p.msgs.iter().find_map(|m| match m {
        GuestMsg::PodExited { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason.as_ref().is_some_and(|r| r.contains("symlink")),
        "{reason:?}"
    );
    assert!(p.events("c").is_empty(), "{:#?}", p.msgs);
}

/// What an exec session sent.
#[derive(Debug, Default)]
struct ExecResult {
    started: bool,
    stdout: String,
    stderr: String,
    code: Option<i32>,
    signal: Option<i32>,
}

impl ExecResult {
    fn ended(&self) -> bool {
        self.code.is_some() || self.signal.is_some()
    }

    /// Add a message if it is of exec session `id`.
    fn add(&mut self, id: u64, msg: GuestMsg) {
        match msg {
            GuestMsg::ExecStarted { exec_id } if exec_id == id => {
                assert!(!self.started, "exec {id} started twice");
                self.started = true;
            }
            GuestMsg::ExecOutput {
                exec_id,
                stream,
                data,
            } if exec_id == id => {
                assert!(self.started, "exec {id}: output before exec_started");
                assert!(!self.ended(), "exec {id}: output after exec_exited");
                let text = String::from_utf8_lossy(&data);
                match stream {
                    Stream::Stdout => self.stdout.push_str(&text),
                    Stream::Stderr => self.stderr.push_str(&text),
                }
            }
            GuestMsg::ExecExited {
                exec_id,
                code,
                signal,
            } if exec_id == id => {
                assert!(!self.ended(), "exec {id} exited twice");
                assert!(code.is_some() != signal.is_some(), "{code:?} {signal:?}");
                self.code = code;
                self.signal = signal;
            }
            _ => {}
        }
    }
}

/// An exec request running `sh -c script`, without tty or stdin, as the
/// container's user, in its working directory.
fn exec_sh(exec_id: u64, container: &str, script: &str) -> HostMsg {
    HostMsg::Exec {
        exec_id,
        container: container.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        tty: false,
        stdin: false,
        env: vec![],
        working_dir: None,
        user: None,
    }
}

/// `exec_sh` with a tty and/or stdin.
fn exec_sh_with(exec_id: u64, container: &str, script: &str, tty: bool, stdin: bool) -> HostMsg {
    match exec_sh(exec_id, container, script) {
        HostMsg::Exec {
            exec_id,
            container,
            command,
            env,
            working_dir,
            user,
            ..
        } => HostMsg::Exec {
            exec_id,
            container,
            command,
            tty,
            stdin,
            env,
            working_dir,
            user,
        },
        _ => unreachable!(),
    }
}

impl Pod {
    fn send(&mut self, msg: HostMsg) {
        self.conn.send(&msg).unwrap();
    }

    /// Wait until a container's stdout ends with `line`.
    fn wait_for_line(&mut self, container: &str, line: &str) {
        while !self.log(container, Stream::Stdout).ends_with(line) {
            self.recv()
                .unwrap_or_else(|| panic!("connection closed waiting for {container}'s {line:?}"));
        }
    }

    /// Read to the end of exec session `id`.
    fn exec_result(&mut self, id: u64) -> ExecResult {
        let mut r = ExecResult::default();
        // What came while waiting for something else counts too.
        for m in self.msgs.clone() {
            r.add(id, m);
        }
        self.exec_read(id, &mut r, |_| false);
        r
    }

    /// Add what exec session `id` sends next to `r` until `done(r)` or its
    /// end.
    fn exec_read(&mut self, id: u64, r: &mut ExecResult, done: impl Fn(&ExecResult) -> bool) {
        while !done(r) && !r.ended() {
            match self.recv() {
                Some(m) => r.add(id, m),
                None => panic!("connection closed during exec {id}: {:#?}", self.msgs),
            }
        }
    }

    /// The `error` messages received so far.
    fn errors(&self) -> Vec<String> {
        self.msgs
            .iter()
            .filter_map(|m| match m {
                GuestMsg::Error { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A container that prints `ready` and then sleeps as its own PID 1.
fn sleeper(name: &str) -> WireContainer {
    sh(
        name,
        "echo marker-of-the-container > /tmp/marker; \
         for ns in mnt pid; do readlink /proc/self/ns/$ns; done; cat /proc/self/cgroup; \
         echo ready; exec sleep 1000",
    )
}

#[test]
fn test_runtime_exec_without_tty() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sleeper("app")]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    let ctr_view = p
        .log("app", Stream::Stdout)
        .strip_suffix("ready\n")
        .unwrap()
        .to_string();
    let init_cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", p.init_pid)).unwrap();
    if ctr_view.ends_with(&init_cgroups) {
        println!("note: the container has no cgroups of its own here: joining them is not tested");
    }
    p.send(exec_sh_with(
        1,
        "app",
        "echo out; echo err >&2; cat; \
         for ns in mnt pid; do readlink /proc/self/ns/$ns; done; cat /proc/self/cgroup; \
         cat /tmp/marker; tr '\\0' ' ' < /proc/1/cmdline; echo; exit 3",
        false,
        true,
    ));
    p.send(HostMsg::ExecStdin {
        exec_id: 1,
        data: b"line one\nline ".to_vec(),
        eof: false,
    });
    p.send(HostMsg::ExecStdin {
        exec_id: 1,
        data: b"two\n".to_vec(),
        eof: false,
    });
    p.send(HostMsg::ExecStdin {
        exec_id: 1,
        data: vec![],
        eof: true,
    });
    let r = p.exec_result(1);
    assert!(r.started, "{r:?}");
    assert_eq!((r.code, r.signal), (Some(3), None), "{r:?}");
    assert_eq!(r.stderr, "err\n");
    // Stdin came through; the exec saw the container's mount and PID
    // namespaces, cgroups, files, and its PID 1 (the sleep).
    assert_eq!(
        r.stdout,
        format!("out\nline one\nline two\n{ctr_view}marker-of-the-container\nsleep 1000 \n")
    );
    // The process was a child of the init, reaped: no zombie left.
    assert!(children(p.init_pid)
        .iter()
        .all(|k| proc_state(*k) != Some('Z')));
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
}

/// A container counts as started once its process exec'd its command:
/// an exec sent the moment `started` arrives runs in the container's root
/// (before, `started` came at the clone, and such an exec could land in
/// the init's root while the container still set its up).
#[test]
fn test_runtime_exec_right_after_started_runs_in_the_container() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![with_mount(
        sh("app", "exec sleep 1000"),
        "scratch",
        "/scratch",
        false,
    )]);
    spec.volumes.push(empty_dir("scratch"));
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for("app started", |m| {
        matches!(m, GuestMsg::ContainerEvent { container, event: ContainerEvent::Started { .. }, .. } if container == "app")
    });
    p.send(exec_sh(
        1,
        "app",
        "cat /etc/hostname; test -d /scratch && echo has-volume",
    ));
    let r = p.exec_result(1);
    assert_eq!((r.code, r.signal), (Some(0), None), "{r:?}");
    assert_eq!(r.stdout, "native-pod\nhas-volume\n", "{r:?}");
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.finish();
}

#[test]
fn test_runtime_exec_with_tty() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sleeper("app")]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    p.send(exec_sh_with(
        1,
        "app",
        "tty; echo to-stderr >&2; read line; stty size; echo \"got $line\"; exit 5",
        true,
        true,
    ));
    // Input is echoed when it arrives: send it once the first lines are out.
    let mut r = ExecResult::default();
    p.exec_read(1, &mut r, |r| r.stdout.contains("to-stderr\r\n"));
    p.send(HostMsg::ExecResize {
        exec_id: 1,
        rows: 33,
        cols: 101,
    });
    p.send(HostMsg::ExecStdin {
        exec_id: 1,
        data: b"go\n".to_vec(),
        eof: false,
    });
    p.exec_read(1, &mut r, |_| false);
    assert_eq!((r.code, r.signal), (Some(5), None), "{r:?}");
    // One stream from the terminal, with its line discipline: `\r\n`
    // endings, and the input echoed.
    assert_eq!(r.stderr, "", "{r:?}");
    let lines: Vec<&str> = r.stdout.split("\r\n").collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{r:?}");
    assert_eq!(
        lines[1..],
        ["to-stderr", "go", "33 101", "got go", ""],
        "{r:?}"
    );
    // The end of input on a terminal is ^D: `cat` ends.
    p.send(exec_sh_with(2, "app", "cat; echo cat-done", true, true));
    p.send(HostMsg::ExecStdin {
        exec_id: 2,
        data: b"typed\n".to_vec(),
        eof: true,
    });
    let r = p.exec_result(2);
    assert_eq!((r.code, r.signal), (Some(0), None), "{r:?}");
    assert!(r.stdout.ends_with("cat-done\r\n"), "{r:?}");
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.finish();
}

#[test]
fn test_runtime_exec_as_container_user_env_cwd() {
    if skip() {
        return;
    }
    let mut app = sh("app", "echo ready; exec sleep 1000");
    app.uid = 1000;
    app.gid = 1000;
    app.env.push(("FOO".into(), "from-spec".into()));
    app.working_dir = "/home/app".into();
    let mut spec = pod(vec![app]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    let script = "id -u; id -g; id -G; echo \"$FOO\"; echo \"$BAR\"; pwd";
    p.send(exec_sh(1, "app", script));
    let r = p.exec_result(1);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "1000\n1000\n1000\nfrom-spec\n\n/home/app\n");
    // Every default overridden.
    p.send(HostMsg::Exec {
        exec_id: 2,
        container: "app".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        tty: false,
        stdin: false,
        env: vec![
            ("FOO".into(), "override".into()),
            ("BAR".into(), "new".into()),
        ],
        working_dir: Some("/tmp".into()),
        user: Some((2000, 3000)),
    });
    let r = p.exec_result(2);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "2000\n3000\n3000\noverride\nnew\n/tmp\n");
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.finish();
}

#[test]
fn test_runtime_exec_unknown_container_is_an_error() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sleeper("app"), sh("done", "exit 0")]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    while !p
        .events("done")
        .iter()
        .any(|e| matches!(e, ContainerEvent::Exited { .. }))
    {
        p.recv().expect("done's exit");
    }
    // Requests that cannot start: `error`, then `exec_exited` 126 without
    // `exec_started`.
    for (id, name, why) in [
        (
            1,
            "nope",
            "exec 1: no container \"nope\" in pod \"native-test\"",
        ),
        (2, "done", "exec 2: container \"done\" has exited"),
    ] {
        p.send(exec_sh(id, name, "echo must-not-run"));
        let r = p.exec_result(id);
        assert!(!r.started, "{r:?}");
        assert_eq!((r.code, r.signal), (Some(126), None), "{r:?}");
        assert_eq!(p.errors().last().map(String::as_str), Some(why));
    }
    let mut empty = exec_sh(3, "app", "");
    if let HostMsg::Exec { command, .. } = &mut empty {
        command.clear();
    }
    p.send(empty);
    let r = p.exec_result(3);
    assert!(!r.started && r.code == Some(126), "{r:?}");
    assert_eq!(
        p.errors().last().map(String::as_str),
        Some("exec 3: the command is empty")
    );
    // A command that is not there: the process started, then 127.
    p.send(HostMsg::Exec {
        exec_id: 4,
        container: "app".into(),
        command: vec!["no-such-command".into()],
        tty: false,
        stdin: false,
        env: vec![],
        working_dir: None,
        user: None,
    });
    let r = p.exec_result(4);
    assert!(r.started, "{r:?}");
    assert_eq!(r.code, Some(127), "{r:?}");
    assert!(r.stderr.contains("\"no-such-command\" not found"), "{r:?}");
    // An exec id that is running: `error` only, the session goes on.
    p.send(exec_sh(5, "app", "echo running; exec sleep 1000"));
    let mut r = ExecResult::default();
    p.exec_read(5, &mut r, |r| r.stdout == "running\n");
    p.send(exec_sh(5, "app", "echo must-not-run"));
    p.wait_for("the duplicate's error", |m| {
        matches!(m, GuestMsg::Error { message } if message.contains("exec id 5 is already running"))
    });
    // The pod ends: the session is killed and reported before pod_exited.
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.exec_read(5, &mut r, |_| false);
    assert_eq!((r.code, r.signal), (None, Some(9)), "{r:?}");
    assert_eq!(r.stdout, "running\n");
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
}

#[test]
fn test_runtime_exec_killed_by_signal() {
    if skip() {
        return;
    }
    // One PID namespace for the pod: exec processes do not die with the
    // container's PID namespace, the init ends them.
    let mut spec = pod(vec![sh("app", "echo ready; sleep 1000 & wait")]);
    spec.share_process_namespace = true;
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    p.send(exec_sh(1, "app", "echo before; kill -9 $$; echo after"));
    let r = p.exec_result(1);
    assert_eq!((r.code, r.signal), (None, Some(9)), "{r:?}");
    assert_eq!(r.stdout, "before\n");
    // A session outlives neither its container nor the pod.
    p.send(exec_sh(2, "app", "echo long; exec sleep 1000"));
    let mut r = ExecResult::default();
    p.exec_read(2, &mut r, |r| r.stdout == "long\n");
    p.send(HostMsg::Signal {
        container: Some("app".into()),
        signal: libc::SIGKILL,
    });
    p.exec_read(2, &mut r, |_| false);
    assert_eq!((r.stdout.as_str(), r.signal), ("long\n", Some(9)), "{r:?}");
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
}

#[test]
fn test_runtime_logs_10mib_two_containers_complete_and_in_order() {
    if skip() {
        return;
    }
    // Each container: 800000 numbered lines (5.4 MiB) on stdout with one
    // line longer than a chunk among them, 1000 lines on stderr, and a last
    // line without a newline.
    let script = "seq 1 400000; head -c 100000 /dev/zero | tr '\\0' x; echo; \
                  seq 1 1000 >&2; seq 400001 800000; printf last";
    let mut spec = pod(vec![sh("a", script), sh("b", script)]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:?}", p.errors());
    let numbers =
        |r: std::ops::RangeInclusive<u32>| -> String { r.map(|n| format!("{n}\n")).collect() };
    let long = "x".repeat(100_000);
    let want = format!(
        "{}{long}\n{}last",
        numbers(1..=400_000),
        numbers(400_001..=800_000)
    );
    for c in ["a", "b"] {
        let chunks = p.chunks(c, Stream::Stdout);
        let got: String = chunks.iter().map(|(d, _)| d.as_str()).collect();
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "{c}: stdout differs from byte {at} on ({} bytes, {} wanted): {:?}",
                got.len(),
                want.len(),
                &got[at.saturating_sub(20)..(at + 20).min(got.len())]
            );
        }
        // A chunk that is not partial ends a line. A line longer than a
        // chunk is split: its first chunk is partial. The last line,
        // unfinished at the end of the stream, comes whole, partial (no
        // newline ended it).
        for (i, (data, partial)) in chunks.iter().enumerate() {
            assert!(*partial || data.ends_with('\n'), "{c}: chunk {i}");
        }
        let split = chunks.iter().position(|(d, _)| d.starts_with('x')).unwrap();
        assert_eq!(
            (chunks[split].0.len(), chunks[split].1),
            (peapod_proto::MAX_CHUNK, true),
            "{c}"
        );
        let rest_of_line = "x".repeat(100_000 - peapod_proto::MAX_CHUNK) + "\n";
        assert!(chunks[split + 1].0.starts_with(&rest_of_line), "{c}");
        let partial = chunks.iter().filter(|(_, p)| *p).count();
        assert_eq!(partial, 2, "{c}");
        assert_eq!(chunks.last().unwrap(), &("last".to_string(), true), "{c}");
        assert_eq!(p.log(c, Stream::Stderr), numbers(1..=1000), "{c}");
    }
}

#[test]
fn test_runtime_exec_sessions_run_at_once_with_large_io() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sleeper("app")]);
    spec.grace_period_s = 0;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    // Two sessions at once; the first gets 2 MiB of input, far more than a
    // pipe holds, while its output comes back.
    p.send(exec_sh_with(1, "app", "cat; echo one-done", false, true));
    p.send(exec_sh_with(2, "app", "cat; echo two-done", false, true));
    let big: Vec<u8> = (0..2u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    // Fed from a thread: the guest's output must be read meanwhile.
    let mut writer = Connection::new(p.conn.get_ref().try_clone().unwrap());
    let input = big.clone();
    let feeder = std::thread::spawn(move || {
        let stdin = |exec_id, data: &[u8], eof| HostMsg::ExecStdin {
            exec_id,
            data: data.to_vec(),
            eof,
        };
        for (i, chunk) in input.chunks(peapod_proto::MAX_CHUNK).enumerate() {
            writer.send(&stdin(1, chunk, false)).unwrap();
            if i == 3 {
                // The second session finishes while the first is busy.
                writer.send(&stdin(2, b"small\n", true)).unwrap();
            }
        }
        writer.send(&stdin(1, b"", true)).unwrap();
    });
    let r2 = p.exec_result(2);
    assert_eq!(
        (r2.code, r2.stdout.as_str()),
        (Some(0), "small\ntwo-done\n")
    );
    let r1 = p.exec_result(1);
    feeder.join().unwrap();
    assert_eq!(r1.code, Some(0));
    assert_eq!(r1.stdout.len(), big.len() + "one-done\n".len());
    assert!(
        r1.stdout.as_bytes().starts_with(&big),
        "exec 1's output differs"
    );
    // Output never exceeds a chunk.
    assert!(p.msgs.iter().all(|m| !matches!(m,
        GuestMsg::ExecOutput { data, .. } if data.len() > peapod_proto::MAX_CHUNK)));
    p.send(HostMsg::StopPod { grace_period_s: 0 });
    p.finish();
}

#[test]
fn test_runtime_exec_killed_when_the_host_goes_away() {
    if skip() {
        return;
    }
    let mut spec = pod(vec![sleeper("app")]);
    // The container outlives the check: only the exec must end at once.
    spec.grace_period_s = 30;
    let mut p = Pod::start(&spec);
    p.wait_for_line("app", "ready\n");
    let before = children(p.init_pid);
    p.send(exec_sh(1, "app", "echo running; exec sleep 1000"));
    let mut r = ExecResult::default();
    p.exec_read(1, &mut r, |r| r.stdout == "running\n");
    let exec_pid = children(p.init_pid)
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("the exec process is a child of the init");
    p.conn.get_ref().shutdown(std::net::Shutdown::Both).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(exec_pid).is_some() {
        assert!(Instant::now() < deadline, "the exec process still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killed and reaped while the container still runs (grace period).
    assert!(
        before.iter().all(|k| proc_state(*k).is_some()),
        "the container ended too"
    );
}

#[test]
fn test_runtime_sidecar_stopped_when_init_fails() {
    if skip() {
        return;
    }
    let mut side = sh(
        "side",
        "trap 'echo got-term; exit 0' TERM; echo serving; sleep 1000 & wait",
    );
    side.sidecar = true;
    let mut spec = pod(vec![sh("app", "echo must-not-run")]);
    spec.init_containers = vec![
        side,
        // Fails once the sidecar serves (its trap is set before its sleep).
        sh("bad", "until pidof sleep; do sleep 0.05; done; exit 3"),
    ];
    spec.share_process_namespace = true;
    let mut p = Pod::start(&spec);
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "{:#?}", p.msgs);
    assert_eq!(p.log("side", Stream::Stdout), "serving\ngot-term\n");
    assert!(p.events("app").is_empty(), "{:#?}", p.msgs);
    let reason = p.msgs.iter().find_map(|m| match m {
        GuestMsg::PodExited { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason
            .as_ref()
            .is_some_and(|r| r.contains("init container bad failed")),
        "{reason:?}"
    );
}

/// A pod network on 10.9.8.0/24, for an interface with MAC
/// 52:54:00:12:34:56.
fn test_network() -> peapod_proto::WireNetwork {
    peapod_proto::WireNetwork {
        mac: Some("52:54:00:12:34:56".into()),
        address: "10.9.8.7".parse().unwrap(),
        prefix_len: 24,
        gateway: "10.9.8.1".parse().unwrap(),
        mtu: 1400,
        dns_servers: vec!["10.9.8.1".parse().unwrap()],
        dns_search: vec!["svc.example".into(), "example".into()],
        dns_options: vec!["ndots:2".into(), "edns0".into()],
        hosts: vec![peapod_proto::WireHostEntry {
            ip: "10.1.1.1".parse().unwrap(),
            names: vec!["db".into(), "db.internal".into()],
        }],
    }
}

#[test]
fn test_runtime_network_configures_the_interface_and_etc_files() {
    // The host gives the pod an interface (here one end of a veth pair the
    // test creates in the pod's network namespace, as virtio-net would
    // appear in a VM); peapod-init configures it before any container
    // starts, and every container's /etc/hosts and /etc/resolv.conf come
    // from the pod's network.
    if skip() {
        return;
    }
    let has_ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ip {
        common::skip("needs iproute2's `ip` to give the pod an interface");
        return;
    }
    let mut spec = pod(vec![sh(
        "net",
        "busybox ip -4 addr show dev eth0; busybox ip link show dev eth0; \
         busybox ip -4 route; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf",
    )]);
    spec.network = Some(test_network());
    let mut p = Pod::start_with(&spec, share(), |init| {
        // Both ends in the pod's network namespace: nothing on the host.
        let out = Command::new("ip")
            .args(["link", "add", "eth0", "netns", &init.to_string()])
            .args(["address", "52:54:00:12:34:56", "type", "veth"])
            .args(["peer", "name", "peer0", "netns", &init.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip link add: {out:?}");
    });
    let (phase, _) = p.finish();
    assert_eq!(phase, PodPhase::Succeeded, "{:#?}", p.msgs);
    let out = p.log("net", Stream::Stdout);
    for want in [
        "inet 10.9.8.7/24",
        "mtu 1400",
        "default via 10.9.8.1 dev eth0",
        "10.9.8.0/24 dev eth0",
        "127.0.0.1\tlocalhost\n",
        "\n10.9.8.7\tnative-pod\n",
        "\n10.1.1.1\tdb\tdb.internal\n",
        "---\nnameserver 10.9.8.1\nsearch svc.example example\noptions ndots:2 edns0\n",
    ] {
        assert!(out.contains(want), "expected {want:?} in:\n{out}");
    }
    assert!(!out.contains("127.0.1.1"), "{out}");
}

#[test]
fn test_runtime_network_without_the_interface_fails_the_pod() {
    // The pod names an interface the guest does not have: the pod fails
    // before any container starts, saying which interface it looked for.
    if skip() {
        return;
    }
    let mut spec = pod(vec![sh("never", "echo started")]);
    spec.network = Some(test_network());
    let mut p = Pod::start(&spec);
    let mut reason = None;
    while let Some(m) = p.recv() {
        if let GuestMsg::PodExited { phase, reason: r } = &m {
            assert_eq!(*phase, PodPhase::Failed, "{:#?}", p.msgs);
            reason = Some(r.clone());
        }
    }
    let reason = reason.unwrap_or_else(|| panic!("no pod_exited: {:#?}", p.msgs));
    assert!(
        reason.contains("cannot configure eth0: no Ethernet interface has MAC 52:54:00:12:34:56"),
        "{reason}"
    );
    assert!(
        p.msgs
            .iter()
            .all(|m| !matches!(m, GuestMsg::ContainerEvent { .. })),
        "something started: {:#?}",
        p.msgs
    );
}

#[test]
fn test_runtime_sandbox_containers_join_and_leave() {
    // A sandbox (a CRI pod) starts without containers and runs until it is
    // stopped. Containers join it one by one while it runs, share its
    // localhost and volumes, and leave it once they ended; bad requests
    // are refused with the field or the reason.
    if skip() {
        return;
    }
    let mut spec = pod(vec![]);
    spec.sandbox = true;
    spec.volumes = vec![empty_dir("shared")];
    let mut p = Pod::start(&spec);

    let server = with_mount(
        sh(
            "server",
            "echo from-the-volume > /data/page; echo listening; \
             mkfifo /tmp/in; nc -l -p 7070 < /tmp/in & exec 3> /tmp/in; wait $!",
        ),
        "shared",
        "/data",
        false,
    );
    p.send(HostMsg::AddContainer {
        container: Box::new(server),
    });
    p.wait_for_line("server", "listening\n");
    let client = with_mount(
        sh(
            "client",
            "cat /in/page; until echo hello-over-localhost | nc 127.0.0.1 7070; do sleep 0.1; done",
        ),
        "shared",
        "/in",
        true,
    );
    p.send(HostMsg::AddContainer {
        container: Box::new(client),
    });
    p.wait_for("the client's exit", |m| {
        matches!(m, GuestMsg::ContainerEvent { container, event: ContainerEvent::Exited { code: Some(0), .. }, .. } if container == "client")
    });
    assert_eq!(p.log("client", Stream::Stdout), "from-the-volume\n");
    p.wait_for_line("server", "listening\nhello-over-localhost\n");

    // Refused: a name taken, a volume the pod does not have, a running
    // container's removal, an unknown container.
    p.send(HostMsg::AddContainer {
        container: Box::new(sh("client", "true")),
    });
    let mut stray = sh("stray", "true");
    stray.volume_mounts.push(WireMount {
        volume: "nope".into(),
        mount_path: "/x".into(),
        read_only: false,
        sub_path: None,
    });
    p.send(HostMsg::AddContainer {
        container: Box::new(stray),
    });
    p.send(HostMsg::AddContainer {
        container: Box::new(sleeper("idle")),
    });
    p.wait_for_line("idle", "ready\n");
    p.send(HostMsg::RemoveContainer {
        container: "idle".into(),
    });
    p.send(HostMsg::RemoveContainer {
        container: "ghost".into(),
    });
    // The sandbox outlives its ended containers: it still answers.
    p.send(HostMsg::StatusQuery {});
    p.wait_for("status", |m| matches!(m, GuestMsg::Status(_)));
    let refused: Vec<(String, String)> = p
        .msgs
        .iter()
        .filter_map(|m| match m {
            GuestMsg::ContainerEvent {
                container,
                event: ContainerEvent::Refused { message },
                ..
            } => Some((container.clone(), message.clone())),
            _ => None,
        })
        .collect();
    let expect = [
        ("client", "the pod already has a container of that name"),
        (
            "stray",
            "container.volume_mounts[0].volume: names no volume of the pod",
        ),
        ("idle", "the container has not ended; stop it first"),
        ("ghost", "pod \"native-test\" has no container of that name"),
    ];
    for (name, want) in expect {
        assert!(
            refused.iter().any(|(n, m)| n == name && m.contains(want)),
            "{name}: {want}: {refused:#?}"
        );
    }
    assert!(p.errors().is_empty(), "{:#?}", p.errors());
    let Some(GuestMsg::Status(status)) = p.msgs.last().cloned() else {
        unreachable!()
    };
    let names: Vec<&str> = status.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["server", "client", "idle"]);
    assert_eq!(status.phase, PodPhase::Running);

    // An ended container leaves; its name can come back.
    p.send(HostMsg::RemoveContainer {
        container: "client".into(),
    });
    p.wait_for("the client's removal", |m| {
        matches!(m, GuestMsg::ContainerEvent { container, event: ContainerEvent::Removed {}, .. } if container == "client")
    });
    p.send(HostMsg::AddContainer {
        container: Box::new(sh("client", "echo back-again")),
    });
    p.wait_for_line("client", "back-again\n");
    p.send(HostMsg::StatusQuery {});
    p.wait_for("status", |m| matches!(m, GuestMsg::Status(_)));
    let Some(GuestMsg::Status(status)) = p.msgs.last().cloned() else {
        unreachable!()
    };
    let names: Vec<&str> = status.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["server", "idle", "client"]);

    // Only a stop ends a sandbox.
    p.send(HostMsg::StopPod { grace_period_s: 1 });
    let (phase, status) = p.finish();
    assert_eq!(phase, PodPhase::Failed, "idle was killed: {:#?}", p.msgs);
    assert_eq!(status.code(), Some(1));
}
