//! A containerd of the test's own, with the peapod shim on its PATH.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    init_binary, is_root, peapod, rerun_on_guest_capable_kvm_as, skip, test_image, Run,
};

/// Whether containerd test `test` runs here: it needs root and containerd
/// (else it is skipped, a failure under CI), and where this host's KVM
/// cannot boot guests it runs inside the emulated KVM host instead (as
/// root there), and the caller is done.
pub fn runs_here(test: &str) -> bool {
    if !is_root() {
        skip("containerd runs as root");
        return false;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("containerd is not installed (apt-get install containerd)");
        return false;
    }
    !rerun_on_guest_capable_kvm_as(true, test)
}

pub const RUNTIME: &str = "io.containerd.peapod.v2";
pub const IMAGE: &str = "docker.io/library/busybox:latest";

pub fn shim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-peapod-v2"))
}

/// containerd on its own socket, root and state (a tmpfs: the overlayfs
/// snapshotter cannot put its layers on an overlay such as the runner's
/// /tmp), stopped and unmounted when dropped.
pub struct Containerd {
    pub dir: PathBuf,
    child: Child,
}

impl Containerd {
    /// Start it in `dir`; `extra` is appended to its config.toml.
    pub fn start(dir: &Path, extra: &str) -> Containerd {
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
  pod_annotations = ["peapod.io/*"]
{extra}"#,
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut settings = serde_json::json!({
            "init": init_binary(),
            "default_memory_mib": 128,
            "boot_timeout_s": 300,
        });
        // For a quick look on a host without guest-capable KVM (root):
        // PEAPOD_TEST_INNER=1 PEAPOD_TEST_SHIM_ISOLATION=namespace.
        if let Ok(i) = std::env::var("PEAPOD_TEST_SHIM_ISOLATION") {
            settings["isolation"] = i.into();
        }
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
        // Its own mount namespace, where CNI's result cache
        // (/var/lib/cni, fixed) is a tmpfs: the runner's /var/lib is
        // read-only, and a test leaves nothing on the host's.
        let setup =
            "mount -t tmpfs tmpfs /var/lib/cni 2>/dev/null || mount -t tmpfs tmpfs /var/lib \
                     || exit 1; exec containerd --config \"$1\"";
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                setup,
                "sh",
            ])
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
        // ctr's namespace, and the CRI plugin's.
        let tar = test_image().join("busybox.tar");
        for ns in ["default", "k8s.io"] {
            let import = c.ctr(&["-n", ns, "images", "import", tar.to_str().unwrap()]);
            assert_eq!(import.code, 0, "{import:?}");
        }
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` with `args` (two minutes at most: a hang fails the test with
    /// containerd's log instead of stalling it).
    pub fn ctr(&self, args: &[&str]) -> Run {
        eprintln!("ctr {}", args.join(" "));
        let run: Run = Command::new("timeout")
            .args(["120", "ctr", "--address"])
            .arg(self.dir.join("containerd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
            .into();
        assert_ne!(run.code, 124, "ctr {args:?} hung\n{}", self.log());
        run
    }

    /// `ctr run` of the test image with the peapod runtime.
    pub fn run(&self, flags: &[&str], id: &str, script: &str) -> Run {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, id, "sh", "-c", script]);
        self.ctr(&args)
    }

    /// `peapod ps` as the shim's pods see it.
    pub fn ps(&self) -> serde_json::Value {
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
    pub fn task_status(&self, id: &str) -> Option<(u32, String)> {
        let ls = self.ctr(&["task", "ls"]);
        ls.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap_or(0), f[2].to_owned()))
        })
    }

    pub fn until_stopped(&self, id: &str) {
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

    /// Nothing of any pod is left: no pod, shim, monitor, VMM or passt process,
    /// no mount under the pods' directory.
    pub fn assert_nothing_left(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pods = self.ps();
            let procs = processes(&[
                "containerd-shim-peapod-v2",
                "peapod-monitor",
                "__monitor",
                "peapod-vmm",
                "__vmm",
                "passt",
            ]);
            // The shims mount in containerd's namespace.
            let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.child.id()))
                .unwrap_or_default();
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
        for pid in processes(&["containerd-shim-peapod-v2", "peapod-monitor", "__monitor"]) {
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
pub fn processes(names: &[&str]) -> Vec<u32> {
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
