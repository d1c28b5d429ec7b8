//! `peapod image load|ls` and `peapod run --isolation=namespace`, end to
//! end through the CLI, with the busybox test image (scripts/build-test-image).
//!
//! Running pods in namespaces needs root; those tests say `skipped:`
//! otherwise. Every test uses its own image cache and runtime directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{init_binary, is_root, peapod, test_image, Run, TempDir};

/// Longest any test pod may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn skip_unless_root() -> bool {
    if !is_root() {
        println!("skipped: --isolation=namespace needs root (namespaces and mounts)");
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
    assert_eq!(ls.stdout, "NAME:TAG  DIGEST\n", "{ls:?}");
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
        out.stderr.contains("spec.containers[0] (c)") && out.stderr.contains("peapod image load"),
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
            println!("skipped: running as root and setpriv is missing to drop privileges");
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
