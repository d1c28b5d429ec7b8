//! Tests of `scripts/kvm-runner`, the emulated KVM host that VM tests use
//! where the local KVM cannot boot a guest kernel. Each test boots the
//! runner (QEMU TCG, ~10-20 s), so they are few and run one at a time.
//!
//! Each run gets its own TMPDIR, so the runner's results dir (and with it
//! QEMU's command line) carries a marker that no other run shares: after a
//! run, no process may still mention it and the directory must be empty.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Two TCG hosts at once would only slow each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A scratch dir used as the runner's TMPDIR, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("kvm-runner-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's TMPDIR");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kvm-runner")
}

/// Runs the runner with `args`, then checks it left nothing behind.
fn run(tag: &str, args: &[&str]) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new(tag);
    let out = Command::new(runner())
        .args(["--timeout", "900"])
        .args(args)
        .env("TMPDIR", &scratch.0)
        .output()
        .expect("start scripts/kvm-runner");
    eprintln!(
        "kvm-runner {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let marker = scratch.0.to_string_lossy().into_owned();
    let left = processes_mentioning(&marker);
    assert!(
        left.is_empty(),
        "processes left behind by the runner: {left:?}"
    );
    let files: Vec<_> = fs::read_dir(&scratch.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        files.is_empty(),
        "the runner left files in its TMPDIR: {files:?}"
    );
    out
}

/// Command lines of the processes whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit while we look: skip what cannot be read.
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{}: {cmdline}", name.to_string_lossy()));
            }
        }
    }
    found
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn test_kvm_runner_returns_exit_code_and_output() {
    let out = run(
        "exit-code",
        &[
            "--",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exit 3",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code of the command");
    assert!(stdout.contains("to-stdout"), "stdout: {stdout}");
    assert!(
        !stdout.contains("to-stderr"),
        "stderr leaked into stdout: {stdout}"
    );
    assert!(stderr.contains("to-stderr"), "stderr: {stderr}");
}

#[test]
fn test_kvm_runner_runs_as_unprivileged_user() {
    const USER: &str = "peapod-test";
    if !user_exists(USER) {
        if !running_as_root() {
            common::skip(&format!(
                "no user {USER} (the scripts create it; run as root to create it here)"
            ));
            return;
        }
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", USER])
            .status()
            .expect("run useradd");
        assert!(
            status.success() || user_exists(USER),
            "useradd {USER} failed"
        );
    }
    let out = run(
        "user",
        &[
            "--user",
            USER,
            "--",
            "sh",
            "-c",
            "id -u; test -w /dev/kvm && echo kvm-ok",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}");
    let uid: u32 = stdout
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("a uid on the first line");
    assert_ne!(uid, 0, "the command ran as root");
    assert!(
        stdout.lines().any(|l| l == "kvm-ok"),
        "/dev/kvm is not writable by {USER}: {stdout}"
    );
}

#[test]
fn test_kvm_runner_detects_a_frozen_host_and_starts_again() {
    // A frozen emulated host, made for real: QEMU is stopped (SIGSTOP) once
    // the command has started. The runner must notice the missing heartbeat
    // (here after 10 s), kill that QEMU, report and count the freeze, and run
    // the command again from scratch in a fresh emulated host.
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("freeze");
    let freezes = std::env::temp_dir().join(format!("kvm-runner-freezes-{}", std::process::id()));
    let _ = fs::remove_file(&freezes);
    let mut child = Command::new(runner())
        .args(["--timeout", "600", "--retries", "1", "--"])
        .args(["sh", "-c", "echo started; sleep 15; echo finished"])
        .env("TMPDIR", &scratch.0)
        .env("PEAPOD_RUNNER_FREEZE_S", "10")
        .env("PEAPOD_RUNNER_FREEZES", &freezes)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scripts/kvm-runner");
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let marker = scratch.0.to_string_lossy().into_owned();
    let mut stdout = Vec::new();
    let mut stopped = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "started" && stopped.is_empty() {
            for p in processes_mentioning(&marker)
                .iter()
                .filter(|p| p.contains(": qemu-system-x86_64 -name kvm-runner"))
            {
                let pid: i32 = p.split(':').next().unwrap().parse().unwrap();
                // SAFETY: kill takes no pointers.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                stopped.push(pid);
            }
        }
        stdout.push(line);
    }
    let status = child.wait().unwrap();
    let stderr = err_reader.join().unwrap();
    let log = fs::read_to_string(&freezes).unwrap_or_default();
    let _ = fs::remove_file(&freezes);
    eprintln!("{status}\n--- stdout\n{stdout:?}\n--- stderr\n{stderr}\n--- freezes\n{log}");
    assert_eq!(stopped.len(), 1, "one QEMU to stop");
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, ["started", "started", "finished"]);
    assert!(
        stderr.contains("the emulated host froze")
            && stderr.contains("try 1 of 2: no heartbeat for")
            && stderr.contains("starting the command again"),
        "{stderr}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        processes_mentioning(&marker).is_empty(),
        "processes left behind"
    );
}
