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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    init_binary, is_root, peapod, rerun_on_guest_capable_kvm_as, skip, test_image, Run, TempDir,
};

const RUNTIME: &str = "io.containerd.peapod.v2";
const IMAGE: &str = "docker.io/library/busybox:latest";

fn shim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-peapod-v2"))
}

/// containerd on its own socket, root and state (a tmpfs: the overlayfs
/// snapshotter cannot put its layers on an overlay such as the runner's
/// /tmp), stopped and unmounted when dropped.
struct Containerd {
    dir: PathBuf,
    child: Child,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs on {}", root.display());
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.peapod]
  runtime_type = "{RUNTIME}"
"#,
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let settings = serde_json::json!({
            "init": init_binary(),
            "default_memory_mib": 128,
            "boot_timeout_s": 300,
        });
        std::fs::write(dir.join("shim.json"), settings.to_string()).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let bin_dir = shim().parent().unwrap().to_owned();
        assert_eq!(
            peapod().parent().unwrap(),
            bin_dir,
            "the shim finds peapod beside itself"
        );
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("PEAPOD_SHIM_CONFIG", dir.join("shim.json"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let c = Containerd {
            dir: dir.to_owned(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.ctr(&["version"]).code != 0 {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let import = c.ctr(&[
            "images",
            "import",
            test_image().join("busybox.tar").to_str().unwrap(),
        ]);
        assert_eq!(import.code, 0, "{import:?}");
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Run {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
            .into()
    }

    /// `ctr run` of the test image with the peapod runtime.
    fn run(&self, flags: &[&str], id: &str, script: &str) -> Run {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, id, "sh", "-c", script]);
        self.ctr(&args)
    }

    /// `peapod ps` as the shim's pods see it.
    fn ps(&self) -> serde_json::Value {
        let out: Run = Command::new(peapod())
            .args(["ps", "--output", "json"])
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .output()
            .unwrap()
            .into();
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// The task's status word in `ctr task ls` (none when it has no task).
    fn task_status(&self, id: &str) -> Option<(u32, String)> {
        let ls = self.ctr(&["task", "ls"]);
        ls.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap_or(0), f[2].to_owned()))
        })
    }

    fn until_stopped(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.task_status(id).is_some_and(|(_, s)| s != "STOPPED") {
            assert!(
                Instant::now() < deadline,
                "task {id} did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Nothing of any pod is left: no pod, shim, monitor or passt process,
    /// no mount under the pods' directory.
    fn assert_nothing_left(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pods = self.ps();
            let procs = processes(&["containerd-shim-peapod-v2", "__monitor", "passt"]);
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let run = self.dir.join("run").display().to_string();
            let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&run)).collect();
            if pods.as_array().is_some_and(|a| a.is_empty()) && procs.is_empty() && ours.is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {after}: left behind: pods {pods}, processes {procs:?}, mounts {ours:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes(&["containerd-shim-peapod-v2", "__monitor"]) {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("root"))
            .status();
    }
}

/// Live (not zombie) processes whose command line contains one of `names`.
fn processes(names: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie && names.iter().any(|n| cmd.contains(n)) {
            found.push(pid);
        }
    }
    found
}

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
    if !is_root() {
        skip("containerd runs as root");
        return;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("containerd is not installed (apt-get install containerd)");
        return;
    }
    if rerun_on_guest_capable_kvm_as(true, "test_containerd_runs_tasks_in_peapod_pods") {
        return;
    }
    let dir = TempDir::new("containerd");
    let c = Containerd::start(&dir.0);

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
        monitor.contains("__monitor"),
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
