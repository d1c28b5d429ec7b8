//! `peapod image load|ls` and `peapod run --isolation=namespace`, end to
//! end through the CLI, with the busybox test image (scripts/build-test-image).
//!
//! Running pods in namespaces needs root; those tests say `skipped:`
//! otherwise. Every test uses its own image cache and runtime directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{init_binary, is_root, peapod, test_image, Run, TempDir};

/// Longest any test pod may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn skip_unless_root() -> bool {
    if !is_root() {
        common::skip("--isolation=namespace needs root (namespaces and mounts)");
        return true;
    }
    false
}

/// A scratch directory with a private image cache and runtime directory.
struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = TempDir::new("native-cli");
        std::fs::create_dir_all(dir.0.join("run")).unwrap();
        Env { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peapod());
        cmd.args(args)
            .current_dir(&self.dir.0)
            .env("PEAPOD_CACHE", self.dir.0.join("cache"))
            .env("XDG_RUNTIME_DIR", self.dir.0.join("run"))
            .env("PEAPOD_DATA", self.dir.0.join("data"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        if is_root() {
            cmd.env("PEAPOD_INIT", init_binary());
        }
        cmd
    }

    /// Run peapod to the end (killed after [`TIMEOUT`]).
    fn peapod(&self, args: &[&str]) -> Run {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run peapod");
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            let deadline = Instant::now() + TIMEOUT;
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return;
                }
            }
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        });
        let out: Run = child.wait_with_output().expect("wait for peapod").into();
        drop(watchdog);
        out
    }

    /// Run a pod file in namespaces.
    fn run_pod(&self, yaml: &str) -> Run {
        let pod = self.dir.write("pod.yaml", yaml);
        let out = self.peapod(&["run", "--isolation=namespace", pod.to_str().unwrap()]);
        self.assert_clean();
        out
    }

    /// Nothing of a finished pod is left: no runtime directory, no
    /// reservation.
    fn assert_clean(&self) {
        let runtime = self.dir.0.join("run/peapod");
        let pods: Vec<_> = std::fs::read_dir(&runtime)
            .map(|d| {
                d.map(|e| e.unwrap().file_name())
                    .filter(|n| !n.to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        assert!(pods.is_empty(), "pod directories left: {pods:?}");
        let ledger = std::fs::read_to_string(runtime.join(".ledger.json")).unwrap_or_default();
        assert!(
            ledger.trim().is_empty() || ledger.trim() == "[]",
            "reservations left: {ledger}"
        );
    }
}

/// A pod YAML: `name`, restartPolicy Never, the given containers (YAML
/// list items, indented by 2) and volumes.
fn pod_yaml(name: &str, containers: &str, volumes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: \
         Never\n  terminationGracePeriodSeconds: 5\n  containers:\n{containers}{volumes}"
    )
}

fn oci_image() -> String {
    format!("oci:{}/oci:latest", test_image().display())
}

fn rootfs_image() -> String {
    format!("rootfs:{}/rootfs", test_image().display())
}

#[test]
fn test_native_cli_image_load_then_ls() {
    let env = Env::new();
    let archive = test_image().join("busybox.tar");
    let load = env.peapod(&["image", "load", archive.to_str().unwrap()]);
    assert_eq!(load.code, 0, "{load:?}");
    assert_eq!(load.stdout.trim(), "busybox:latest", "{load:?}");
    let ls = env.peapod(&["image", "ls"]);
    assert_eq!(ls.code, 0, "{ls:?}");
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{ls:?}");
    assert!(
        lines[0].starts_with("NAME:TAG") && lines[0].contains("DIGEST"),
        "{ls:?}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "busybox:latest", "{ls:?}");
    assert!(
        row[1].starts_with("sha256:") && row[1].len() == 71,
        "{ls:?}"
    );
}

#[test]
fn test_native_cli_image_ls_empty_store() {
    let env = Env::new();
    let ls = env.peapod(&["image", "ls"]);
    assert_eq!(ls.code, 0, "{ls:?}");
    let head = ls.stdout.split_whitespace().collect::<Vec<_>>();
    assert_eq!(head, ["NAME:TAG", "DIGEST", "SIZE", "PULLED"], "{ls:?}");
}

#[test]
fn test_native_cli_image_load_errors() {
    let env = Env::new();
    let missing = env.dir.0.join("missing.tar");
    let out = env.peapod(&["image", "load", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("missing.tar") && out.stderr.contains("No such file"),
        "{out:?}"
    );
    let text = env.dir.write("pod.yaml", "apiVersion: v1\nkind: Pod\n");
    let out = env.peapod(&["image", "load", text.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pod.yaml is not an image archive"),
        "{out:?}"
    );
    let out = env.peapod(&["image", "load", env.dir.0.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is not a file"), "{out:?}");
}

#[test]
fn test_native_cli_run_shared_empty_dir_across_transports() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let containers = format!(
        "  - name: writer\n    image: {}\n    command: [sh, -c, 'echo shared-content > \
         /data/f.tmp && mv /data/f.tmp /data/f; echo to-stderr >&2']\n    volumeMounts: \
         [{{name: shared, mountPath: /data}}]\n  - name: reader\n    image: {}\n    command: \
         [sh, -c, 'while [ ! -f /in/f ]; do sleep 0.05; done; cat /in/f']\n    volumeMounts: \
         [{{name: shared, mountPath: /in, readOnly: true}}]\n",
        oci_image(),
        rootfs_image()
    );
    let out = env.run_pod(&pod_yaml(
        "shared",
        &containers,
        "  volumes:\n  - name: shared\n    emptyDir: {}\n",
    ));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.lines().any(|l| l == "[reader] shared-content"),
        "{out:?}"
    );
    assert!(
        out.stderr.lines().any(|l| l == "[writer] to-stderr"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("to-stderr"), "{out:?}");
}

#[test]
fn test_native_cli_run_failing_container_exits_1() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let containers = format!(
        "  - name: failer\n    image: {}\n    command: [sh, -c, 'echo about-to-fail; exit 3']\n",
        oci_image()
    );
    let out = env.run_pod(&pod_yaml("failing", &containers, ""));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.lines().any(|l| l == "[failer] about-to-fail"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("pod failing") && out.stderr.contains("Failed"),
        "{out:?}"
    );
}

#[test]
fn test_native_cli_run_merges_image_config() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    // A loaded image by name, run with its own Cmd (["sh"], stdin closed).
    let archive = test_image().join("busybox.tar");
    let load = env.peapod(&["image", "load", archive.to_str().unwrap()]);
    assert_eq!(load.code, 0, "{load:?}");
    let containers = format!(
        "  - name: merged\n    image: {}\n    command: [sh, -c]\n    args: ['echo \
         \"path=$PATH\"; echo \"foo=$FOO\"; pwd; id -u; id -g']\n    workingDir: /tmp\n    \
         env:\n    - {{name: PATH, value: '/bin:/custom'}}\n    - {{name: FOO, value: bar}}\n    \
         securityContext: {{runAsUser: 65534, runAsGroup: 65534}}\n  - name: defaults\n    \
         image: busybox:latest\n",
        oci_image()
    );
    let out = env.run_pod(&pod_yaml("merge", &containers, ""));
    assert_eq!(out.code, 0, "{out:?}");
    let merged: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[merged] "))
        .collect();
    assert_eq!(
        merged,
        ["path=/bin:/custom", "foo=bar", "/tmp", "65534", "65534"],
        "{out:?}"
    );
}

#[test]
fn test_native_cli_run_unknown_image_name() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let containers = "  - name: c\n    image: nosuch:1.0\n";
    let out = env.run_pod(&pod_yaml("unknown", containers, ""));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("spec.containers[0].image: image docker.io/library/nosuch:1.0")
            && out.stderr.contains("peapod image load"),
        "{out:?}"
    );
}

#[test]
fn test_native_cli_run_sigterm_stops_gracefully() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let containers = format!(
        "  - name: polite\n    image: {}\n    command: [sh, -c, \"trap 'echo got-term; exit \
         0' TERM; echo ready; sleep 1000 & wait\"]\n",
        oci_image()
    );
    let pod = env
        .dir
        .write("pod.yaml", &pod_yaml("sigterm", &containers, ""));
    let mut child: Child = env
        .command(&["run", "--isolation=namespace", pod.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run peapod");
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line == "[polite] ready" {
                // SAFETY: kill takes no pointers.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peapod did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        lines,
        ["[polite] ready", "[polite] got-term"],
        "stderr: {stderr}"
    );
    // Its only container exited 0 on SIGTERM: the pod Succeeded.
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("received SIGTERM"), "{stderr}");
    env.assert_clean();
}

#[test]
fn test_native_cli_run_needs_root() {
    let env = Env::new();
    let containers = format!("  - name: c\n    image: {}\n", rootfs_image());
    let pod = env
        .dir
        .write("pod.yaml", &pod_yaml("rootless", &containers, ""));
    let pod = pod.to_str().unwrap();
    let out: Run = if is_root() {
        // As nobody: the pod file and the binary must be readable to it.
        let setpriv = Path::new("/usr/bin/setpriv");
        if !setpriv.exists() {
            common::skip("running as root and setpriv is missing to drop privileges");
            return;
        }
        std::fs::set_permissions(
            &env.dir.0,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(peapod())
            .args(["run", "--isolation=namespace", pod])
            .env("XDG_RUNTIME_DIR", env.dir.0.join("run"))
            .output()
            .expect("run peapod as nobody")
            .into()
    } else {
        env.peapod(&["run", "--isolation=namespace", pod])
    };
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--isolation=namespace needs root for now; use the VM isolation"),
        "{out:?}"
    );
}

#[test]
fn test_native_cli_wait_logs_all_containers_and_ps_json() {
    // What a CI job scripts: run -d, wait until running, read `ps --output
    // json`, collect every container's log, wait for the end (its exit code
    // says how the pod ended), rm, wait for the deletion.
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let containers = format!(
        "  - name: app\n    image: {img}\n    command: [sh, -c, 'echo app-up; echo \
         app-err >&2; while [ ! -f /shared/done ]; do sleep 0.1; done; exit 4']\n    \
         volumeMounts: [{{name: shared, mountPath: /shared}}]\n  - name: side\n    image: \
         {img}\n    command: [sh, -c, 'echo side-up; sleep 1000 & wait']\n    volumeMounts: \
         [{{name: shared, mountPath: /shared}}]\n",
        img = oci_image()
    );
    let init = format!(
        "  initContainers:\n  - name: setup\n    image: {}\n    command: [sh, -c, 'echo \
         setup-ran']\n",
        oci_image()
    );
    let yaml = pod_yaml(
        "ci",
        &containers,
        "  volumes:\n  - name: shared\n    emptyDir: {}\n",
    )
    .replace("  containers:\n", &format!("{init}  containers:\n"));
    let pod = env.dir.write("pod.yaml", &yaml);

    let missing = env.peapod(&["wait", "nosuch", "--for=running"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("no pod named nosuch"),
        "{missing:?}"
    );
    let gone = env.peapod(&["wait", "nosuch", "--for=deleted"]);
    assert_eq!(gone.code, 0, "{gone:?}");
    let bad = env.peapod(&["wait", "ci", "--for=running", "--timeout", "5d"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("is not a duration"), "{bad:?}");

    let run = env.peapod(&["run", "-d", "--isolation=namespace", pod.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let wait = env.peapod(&["wait", "ci", "--for=running", "--timeout", "60s"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    assert_eq!(wait.stdout, "ci: Running\n", "{wait:?}");
    // Not completed yet: a zero timeout checks once and says where it is.
    let early = env.peapod(&["wait", "ci", "--for=completed", "--timeout=0"]);
    assert_eq!(early.code, 1, "{early:?}");
    assert!(
        early
            .stderr
            .contains("timed out after 0 s waiting for pod ci to be completed (it is Running"),
        "{early:?}"
    );

    let ps = env.peapod(&["ps", "--output", "json"]);
    assert_eq!(ps.code, 0, "{ps:?}");
    let rows: serde_json::Value = serde_json::from_str(&ps.stdout).expect("ps json");
    let row = &rows[0];
    assert_eq!(row["name"], "ci", "{ps:?}");
    assert_eq!(row["status"], "Running", "{ps:?}");
    assert_eq!(row["isolation"], "namespace", "{ps:?}");
    assert_eq!(
        (row["containers"].as_u64(), row["running"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(
        row["ip"].is_null(),
        "namespace pods have no pod network: {ps:?}"
    );
    assert!(row["created"].as_str().unwrap().ends_with('Z'), "{ps:?}");
    let statuses: Vec<(String, bool, String, String)> = row["container_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["init"].as_bool().unwrap(),
                c["state"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (
                "setup".into(),
                true,
                "terminated".into(),
                "Completed".into()
            ),
            ("app".into(), false, "running".into(), String::new()),
            ("side".into(), false, "running".into(), String::new()),
        ],
        "{ps:?}"
    );
    assert_eq!(row["container_statuses"][0]["exit_code"], 0, "{ps:?}");

    // Every container's log, init first, each line with its container.
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = env.peapod(&["logs", "ci", "--all-containers"]);
        assert_eq!(logs.code, 0, "{logs:?}");
        if logs.stdout.contains("[side] side-up") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        logs.stdout, "[setup] setup-ran\n[app] app-up\n[side] side-up\n",
        "{logs:?}"
    );
    assert_eq!(logs.stderr, "[app] app-err\n", "{logs:?}");
    let both = env.peapod(&["logs", "ci", "--all-containers", "-c", "app"]);
    assert_eq!(both.code, 2, "{both:?}");

    // The app exits 4; the pod Fails, and `wait --for=completed` says so.
    let exec = env.peapod(&["exec", "ci", "-c", "side", "--", "touch", "/shared/done"]);
    assert_eq!(exec.code, 0, "{exec:?}");
    let stop = env.peapod(&["stop", "ci", "--timeout", "1"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    let done = env.peapod(&["wait", "ci", "--for=completed", "--timeout", "60"]);
    assert_eq!(done.code, 1, "{done:?}");
    assert!(done.stdout.starts_with("ci: Failed ("), "{done:?}");
    let never = env.peapod(&["wait", "ci", "--for=running"]);
    assert_eq!(never.code, 1, "{never:?}");
    assert!(
        never.stderr.contains("ended before it was running"),
        "{never:?}"
    );

    // rm in the background; wait --for=deleted sees it go.
    let mut rm = env.command(&["rm", "ci"]).spawn().unwrap();
    let deleted = env.peapod(&["wait", "ci", "--for=deleted", "--timeout", "60"]);
    assert!(rm.wait().unwrap().success());
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(deleted.stdout, "ci: deleted\n", "{deleted:?}");
    env.assert_clean();
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Start pod `name`, one container `app` running `command` (a YAML list),
/// with peapod-nettool's hostile init as its peapod-init doing `attack`
/// (`PEAPOD_HOSTILE`), and `config_home` as `XDG_CONFIG_HOME` if given.
/// Returns the pod directory and its monitor's pid.
fn run_hostile(
    env: &Env,
    name: &str,
    command: &str,
    attack: &str,
    config_home: Option<&Path>,
) -> (PathBuf, u32) {
    let pod = env.dir.write(
        "pod.yaml",
        &pod_yaml(
            name,
            &format!(
                "  - name: app\n    image: {}\n    command: {command}\n",
                rootfs_image()
            ),
            "",
        ),
    );
    let mut run = env.command(&["run", "-d", "--isolation=namespace", pod.to_str().unwrap()]);
    run.env("PEAPOD_INIT", common::nettool_binary())
        .env("PEAPOD_HOSTILE", attack);
    if let Some(dir) = config_home {
        run.env("XDG_CONFIG_HOME", dir);
    }
    let out: Run = run.output().unwrap().into();
    assert_eq!(out.code, 0, "{out:?}");
    let dir = env.dir.0.join("run/peapod").join(name);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    (dir, state["monitor_pid"].as_u64().unwrap() as u32)
}

/// A guest that repeats `pod_exited` (2,000 times) gets one end and one
/// watchdog from its monitor, not a thread per message (threads count
/// against the user's process limit: every process of the user would then
/// fail to fork).
#[test]
fn test_native_hostile_guest_pod_exited_flood_makes_no_threads() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let (dir, monitor) = run_hostile(&env, "flood", "[\"true\"]", "pod-exited-flood", None);
    let state_file = dir.join("state.json");
    // The flood arrives; count the monitor's threads while its watchdogs
    // (15 s each) would still be alive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut most = 0;
    loop {
        most = most.max(threads(monitor));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap_or_default())
                .unwrap_or_default();
        if s["phase"] == "Failed" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    most = most.max(threads(monitor));
    assert!(most < 32, "the monitor ran {most} threads");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(s["reason"], "flood 0", "the first end counts: {s}");
    let rm = env.peapod(&["rm", "-f", "flood"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    env.assert_clean();
}

/// A DirectoryOrCreate hostPath is created by the pod's monitor, once the
/// pod passed every check (a refused pod makes none: tests/cli.rs), and
/// the container writes into it.
#[test]
fn test_native_host_path_directory_or_create_is_made_by_the_monitor() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let made = env.dir.0.join("created/sub");
    let pod = env.dir.write(
        "pod.yaml",
        &pod_yaml(
            "mkpath",
            &format!(
                "  - name: c\n    image: {}\n    command: [sh, -c, \"echo made > /d/x\"]\n    \
                 volumeMounts: [{{name: d, mountPath: /d}}]\n",
                rootfs_image()
            ),
            &format!(
                "  volumes: [{{name: d, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]\n",
                made.display()
            ),
        ),
    );
    let dir = env.dir.0.to_str().unwrap().to_owned();
    let out = env.peapod(&[
        "run",
        "--isolation=namespace",
        "--allow-host-path",
        &dir,
        pod.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(made.join("x")).unwrap(), "made\n");
    assert!(
        made.is_dir(),
        "a created hostPath stays, as the kubelet's do"
    );
}

/// `VmHWM` (peak resident memory) of process `pid`, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A guest that answers an exec with output faster than its client reads
/// (69 MiB at once) makes the monitor queue at most its byte bound for the
/// session, which is then dropped (the bound was 1,024 messages, of up to
/// 1 MiB each); data over the 64 KiB chunk limit is refused at decode.
#[test]
fn test_native_hostile_guest_exec_flood_is_bounded_in_bytes() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let (pod_dir, monitor) = run_hostile(&env, "execflood", "[sleep, \"600\"]", "exec-flood", None);
    let before = peak_rss_kib(monitor);
    // A client that does not read: its stdout is a pipe nobody drains yet.
    let exec = env
        .command(&["exec", "execflood", "-c", "app", "--", "cat"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = pod_dir.join("monitor.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("chunk limit")) {
        assert!(
            Instant::now() < deadline,
            "the oversized chunk was not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let grew = peak_rss_kib(monitor).saturating_sub(before);
    let done = exec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        grew < 32 << 10,
        "the monitor's peak memory grew {grew} KiB for one slow exec client"
    );
    assert_ne!(done.status.code(), Some(0), "{stderr}");
    // Dropped for its backlog, or ended with the guest's connection, which
    // the oversized chunk broke (whichever the monitor saw first).
    assert!(
        stderr.contains("not read fast enough") || stderr.contains("ended"),
        "{stderr}"
    );
    assert!(
        done.stdout.len() < 16 << 20,
        "the client got {} bytes",
        done.stdout.len()
    );
    let rm = env.peapod(&["rm", "-f", "execflood"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    env.assert_clean();
}

/// A guest that writes without end and says it restarted its container
/// billions of times fills no disk: each container keeps at most
/// `containerLogMaxFiles` files of `containerLogMaxSize` (here 3 x 1Mi,
/// from the settings file), and the restart count is the monitor's own.
#[test]
fn test_native_hostile_guest_log_flood_is_rotated_and_capped() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let config = env.dir.0.join("config");
    std::fs::create_dir_all(config.join("peapod")).unwrap();
    std::fs::write(
        config.join("peapod/config.yaml"),
        "containerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n",
    )
    .unwrap();
    let (pod_dir, _) = run_hostile(
        &env,
        "logflood",
        "[sleep, \"600\"]",
        "log-flood",
        Some(&config),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = env.peapod(&["logs", "logflood"]);
        if logs.stdout.contains("run 49") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood did not arrive: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let files: Vec<_> = std::fs::read_dir(pod_dir.join("logs/app"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let total: u64 = files.iter().map(|e| e.metadata().unwrap().len()).sum();
    let names: Vec<_> = files.iter().map(|e| e.file_name()).collect();
    assert!(files.len() <= 3, "{names:?}");
    assert!(total <= 3 << 20, "{total} bytes in {names:?}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pod_dir.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["containers"][0]["status"]["restart_count"], 50,
        "{state}"
    );
    let rm = env.peapod(&["rm", "-f", "logflood"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    env.assert_clean();
}

/// The monitor raises its soft open-file limit to the hard one: the VMM
/// holds a descriptor per inode a guest looks up, and the 1024 of an
/// ordinary session is soon reached (then `stop` and `exec` cannot
/// connect). Started here under a soft limit of 256.
#[test]
fn test_native_monitor_raises_its_open_file_limit() {
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    let pod = env.dir.write(
        "pod.yaml",
        &pod_yaml(
            "nofile",
            &format!(
                "  - name: app\n    image: {}\n    command: [sleep, \"600\"]\n",
                rootfs_image()
            ),
            "",
        ),
    );
    let script = format!(
        "ulimit -Sn 256 && exec \"$0\" run -d --isolation=namespace {}",
        pod.display()
    );
    let out: Run = Command::new("sh")
        .args(["-c", &script])
        .arg(peapod())
        .current_dir(&env.dir.0)
        .env("PEAPOD_CACHE", env.dir.0.join("cache"))
        .env("XDG_RUNTIME_DIR", env.dir.0.join("run"))
        .env("PEAPOD_INIT", init_binary())
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:?}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.0.join("run/peapod/nofile/state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["monitor_pid"].as_u64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{monitor}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let f: Vec<&str> = line.split_whitespace().collect();
    let rm = env.peapod(&["rm", "-f", "nofile"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    env.assert_clean();
    assert_eq!(f[3], f[4], "soft limit raised to the hard one: {line}");
    assert_ne!(f[3], "256", "{line}");
}

#[test]
fn test_native_cli_config_maps_secrets_downward_api_and_claims() {
    // A pod file with its ConfigMap, Secret and PersistentVolumeClaim, a
    // --configmap file: volumes (with a subPath and modes), env and envFrom,
    // the downward API; a second pod reads what the first left in the claim,
    // read-only; `peapod volume ls` and `rm`.
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    for (name, text) in common::config_scenario(&oci_image()) {
        env.dir.write(name, &text);
    }
    let first = env.peapod(&[
        "run",
        "--isolation=namespace",
        "--configmap",
        "extra.yaml",
        "config.yaml",
    ]);
    assert_eq!(first.code, 0, "{first:?}");
    let second = env.peapod(&["run", "--isolation=namespace", "claim.yaml"]);
    assert_eq!(second.code, 0, "{second:?}");
    env.assert_clean();
    let printed = format!("{}{}", first.stdout, second.stdout);
    for line in common::CONFIG_SCENARIO_OUTPUT {
        assert!(
            printed.lines().any(|l| l == *line),
            "{line:?} in {first:?} {second:?}"
        );
    }
    let ls = env.peapod(&["volume", "ls"]);
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with("store ") && l.contains(" 1Gi ")),
        "{ls:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.0.join("data/volumes/store/data/f")).unwrap(),
        "kept\n"
    );
    let rm = env.peapod(&["volume", "rm", "store"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert!(!env.dir.0.join("data/volumes/store").exists());
    let rm = env.peapod(&["volume", "rm", "store"]);
    assert_eq!(rm.code, 2, "{rm:?}");
    assert!(rm.stderr.contains("no volume named store"), "{rm:?}");
}

#[test]
fn test_native_cli_lifecycle_hooks_stop_signal_and_termination_messages() {
    // The postStart hook ran by the time the container counts as running;
    // `stop` runs the preStop hook before SIGTERM, sends `quits` its own
    // stop signal; inspect shows the termination messages (the file's, and
    // the output's under FallbackToLogsOnError).
    if skip_unless_root() {
        return;
    }
    let env = Env::new();
    for (name, text) in common::hooks_scenario(&oci_image()) {
        env.dir.write(name, &text);
    }
    let run = env.peapod(&["run", "-d", "--isolation=namespace", "hooks.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let wait = env.peapod(&["wait", "hooks", "--for=running", "--timeout", "60"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    let order = env.peapod(&["exec", "hooks", "-c", "app", "--", "cat", "/tmp/order"]);
    assert_eq!(order.stdout, "post-start\n", "{order:?}");
    let stop = env.peapod(&["stop", "hooks"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    let logs = env.peapod(&["logs", "hooks", "-c", "app"]);
    assert_eq!(logs.stdout, "post-start\npre-stop\n", "{logs:?}");
    // Attached, the failure shows what the container said.
    let fails = env.peapod(&["run", "--isolation=namespace", "fails.yaml"]);
    assert_eq!(fails.code, 1, "{fails:?}");
    assert!(
        fails.stderr.contains(
            "container app said (its termination message):\n  starting\n  config invalid: no port"
        ),
        "{fails:?}"
    );
    let fails = env.peapod(&["run", "-d", "--isolation=namespace", "fails.yaml"]);
    assert_eq!(fails.code, 0, "{fails:?}");
    let wait = env.peapod(&["wait", "fails", "--for=completed", "--timeout", "60"]);
    assert_eq!(wait.code, 1, "{wait:?}");
    let hooks = env.peapod(&["inspect", "hooks"]);
    let failed = env.peapod(&["inspect", "fails"]);
    assert_eq!((hooks.code, failed.code), (0, 0), "{hooks:?} {failed:?}");
    common::check_hooks_inspect(&hooks.stdout, &failed.stdout);
    for pod in ["hooks", "fails"] {
        let rm = env.peapod(&["rm", pod]);
        assert_eq!(rm.code, 0, "{rm:?}");
    }
    env.assert_clean();
}
