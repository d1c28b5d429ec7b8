//! A real containerd (Debian's 1.6) runs its containers through
//! `containerd-shim-peapod-v2` in peapod microVMs: `ctr run` output and
//! exit codes, detached tasks with exec, kill and delete, two containers
//! grouped into one pod, a spec refused by field, and the monitor or the
//! shim killed under a running task. After each, nothing is left: no
//! shim, monitor, passt, mount or pod.
//!
//! containerd needs root; on this host's KVM (PVM) the whole scenario runs
//! in one boot of scripts/kvm-runner, as root there.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{peapod, test_image, TempDir};
use support::{processes, Containerd, RUNTIME};

/// A spec for `ctr run --config`: the test image's root filesystem (read
/// only), `script`, and these annotations.
fn spec_file(dir: &Path, name: &str, script: &str, extra: serde_json::Value) -> PathBuf {
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", script],
                    "env": ["PATH=/bin:/usr/bin"], "cwd": "/"},
        "root": {"path": test_image().join("rootfs"), "readonly": true},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                 {"type": "mount"}, {"type": "network"}]}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, spec.to_string()).unwrap();
    path
}

#[test]
fn test_containerd_runs_tasks_in_peapod_pods() {
    if !support::runs_here("test_containerd_runs_tasks_in_peapod_pods") {
        return;
    }
    let dir = TempDir::new("containerd");
    let c = Containerd::start(&dir.0, "");

    // Output and exit codes come back.
    let hello = c.run(
        &["--rm"],
        "hello",
        "echo hello from peapod; echo to stderr >&2",
    );
    assert_eq!(hello.code, 0, "{hello:?}\n{}", c.log());
    assert_eq!(hello.stdout, "hello from peapod\n", "{hello:?}");
    assert!(hello.stderr.contains("to stderr"), "{hello:?}");
    let three = c.run(&["--rm"], "three", "exit 3");
    assert_eq!(three.code, 3, "{three:?}");
    c.assert_nothing_left("ctr run --rm");

    // A detached task: in `peapod ps`, exec into it, kill it, delete it.
    let d = c.run(&["-d"], "detached", "echo ready; exec sleep 1000");
    assert_eq!(d.code, 0, "{d:?}");
    let ps = c.ps();
    assert_eq!(ps[0]["name"], "detached", "{ps}");
    assert_eq!(ps[0]["status"], "Running", "{ps}");
    let (pid, status) = c.task_status("detached").unwrap();
    assert_eq!(status, "RUNNING");
    let monitor = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        monitor.starts_with(&format!(
            "{}\0",
            peapod().with_file_name("peapod-monitor").display()
        )),
        "task pid {pid} is the monitor: {monitor}"
    );
    let exec = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "detached",
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(
        (exec.code, exec.stdout.as_str()),
        (5, "in-exec\n"),
        "{exec:?}"
    );
    let kill = c.ctr(&["task", "kill", "-s", "SIGKILL", "detached"]);
    assert_eq!(kill.code, 0, "{kill:?}");
    c.until_stopped("detached");
    let rm = c.ctr(&["task", "rm", "detached"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert_eq!(c.ctr(&["c", "rm", "detached"]).code, 0);
    c.assert_nothing_left("ctr run -d, exec, kill, rm");

    // Two containers with one sandbox id: one shim, one pod, localhost.
    let group = serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": "group-1"}});
    let server = spec_file(
        &dir.0,
        "server",
        "echo hi-from-server | nc -l -p 7071; exec sleep 1000",
        group.clone(),
    );
    let client = spec_file(
        &dir.0,
        "client",
        "until nc 127.0.0.1 7071; do sleep 0.1; done",
        group,
    );
    let s = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "-d",
        "--config",
        server.to_str().unwrap(),
        "server",
    ]);
    assert_eq!(s.code, 0, "{s:?}");
    let cl = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "-d",
        "--config",
        client.to_str().unwrap(),
        "client",
    ]);
    assert_eq!(cl.code, 0, "{cl:?}");
    c.until_stopped("client");
    let ps = c.ps();
    assert_eq!(ps.as_array().unwrap().len(), 1, "one pod: {ps}");
    let names: Vec<&str> = ps[0]["container_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["server", "client"], "{ps}");
    assert_eq!(
        processes(&["containerd-shim-peapod-v2"]).len(),
        1,
        "one shim"
    );
    let log = std::fs::read_to_string(dir.0.join("run/peapod/server/logs/client/0.log")).unwrap();
    assert!(log.contains(" stdout F hi-from-server"), "{log}");
    for id in ["client", "server"] {
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        c.until_stopped(id);
        assert_eq!(c.ctr(&["task", "rm", id]).code, 0, "task rm {id}");
        assert_eq!(c.ctr(&["c", "rm", id]).code, 0, "c rm {id}");
    }
    c.assert_nothing_left("two containers in one pod");

    // A spec asking for a host device fails, naming the field.
    let bad = spec_file(
        &dir.0,
        "bad",
        "true",
        serde_json::json!({"linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "devices": [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]}}),
    );
    let refused = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "--rm",
        "--config",
        bad.to_str().unwrap(),
        "bad",
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("linux.devices[0] (/dev/sda)"),
        "{refused:?}"
    );
    let _ = c.ctr(&["c", "rm", "bad"]);
    c.assert_nothing_left("a refused spec");

    // The monitor killed under a running task: the task stops, and
    // deleting it cleans up.
    let k = c.run(&["-d"], "orphan", "exec sleep 1000");
    assert_eq!(k.code, 0, "{k:?}");
    let (monitor, _) = c.task_status("orphan").unwrap();
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    c.until_stopped("orphan");
    assert_eq!(c.ctr(&["task", "rm", "orphan"]).code, 0);
    assert_eq!(c.ctr(&["c", "rm", "orphan"]).code, 0);
    c.assert_nothing_left("the monitor killed");

    // The shim killed: containerd's `delete` call ends the pod.
    let s = c.run(&["-d"], "shimless", "exec sleep 1000");
    assert_eq!(s.code, 0, "{s:?}");
    for pid in processes(&["containerd-shim-peapod-v2"]) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .task_status("shimless")
        .is_some_and(|(_, s)| s == "RUNNING")
    {
        assert!(Instant::now() < deadline, "{}", c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.ctr(&["task", "rm", "shimless"]);
    assert_eq!(c.ctr(&["c", "rm", "shimless"]).code, 0);
    c.assert_nothing_left("the shim killed");
}
