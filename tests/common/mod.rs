//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (also for the tests of a workspace member).
pub fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("scripts/kvm-runner").is_file())
        .unwrap_or(here)
        .to_owned()
}

/// The peapod binary under test: cargo's for peapod's own tests, else the
/// one `cargo test --workspace` built beside this test binary.
pub fn peapod() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_peapod") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("peapod"))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build it (cargo build --bin peapod, or cargo test --workspace)",
        bin.display()
    );
    bin
}

/// The unprivileged user tests run pods as. Created when the tests run as
/// root and it does not exist yet.
pub const TEST_USER: &str = "peapod-test";

/// Whether this run is CI's (`CI=true`), where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run here, for `why`. Under CI (`CI=true`) that is a
/// failure: this panics. Elsewhere it prints `skipped: why` and adds a line
/// to `$PEAPOD_SKIP_LOG` (scripts/test counts them, since cargo counts a
/// test that returns early as passed). The caller returns right after.
pub fn skip(why: &str) {
    assert!(!in_ci(), "this test cannot run here, and CI=true: {why}");
    println!("skipped: {why}");
    if let Some(log) = std::env::var_os("PEAPOD_SKIP_LOG") {
        use std::io::Write;
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("?");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| writeln!(f, "{test}: {why}"));
    }
}

/// Whether we are root.
pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Make sure the test user exists (root only); returns whether it does.
pub fn ensure_test_user() -> bool {
    let exists = || {
        Command::new("id")
            .arg(TEST_USER)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !exists() && is_root() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .status();
    }
    exists()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory, readable by the test user.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "peapod-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// A new empty directory with `mode` (0o755: the unprivileged user the
    /// VM tests run as reads it; 0o777: it writes there too).
    pub fn with_mode(tag: &str, mode: u32) -> Self {
        let dir = Self::new(tag);
        std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        dir
    }

    /// Write a file in it.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Output of a command, as strings.
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Assert that stdout holds each of `wants`, naming the first missing.
    pub fn expect_stdout(&self, wants: &[&str]) {
        for want in wants {
            assert!(self.stdout.contains(want), "expected {want:?}: {self:?}");
        }
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run peapod with `args` on this host.
pub fn peapod_run(args: &[&str], cwd: &Path) -> Run {
    Command::new(peapod())
        .args(args)
        .current_dir(cwd)
        .env("PEAPOD_CACHE", image_cache())
        .output()
        .expect("run peapod")
        .into()
}

/// Whether this host's own KVM can boot a guest kernel.
pub fn host_boots_guests() -> bool {
    match peapod::vmm::vstate::kvm::open_kvm() {
        Ok(kvm) => peapod::vmm::vstate::kvm::detect_flavour(&kvm)
            .map(|f| f.can_boot_linux())
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The guest kernel the VM tests boot: $PEAPOD_KERNEL or peapod's default.
/// A missing kernel fails the test, with the fix.
pub fn guest_kernel() -> PathBuf {
    let k = std::env::var_os("PEAPOD_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| peapod::sandbox::artifacts::kernel(&Default::default()).path);
    assert!(
        k.is_file(),
        "no guest kernel at {}: run scripts/build-kernel (scripts/test does)",
        k.display()
    );
    k
}

/// Run `cmd` on a KVM that can boot guests, as the unprivileged test user
/// where possible: directly on VT-x/AMD-V hosts, else inside
/// scripts/kvm-runner. The runner detects a frozen emulated host within a
/// minute (its heartbeat stops) and exits 75; the whole command then starts
/// again in a fresh one, twice at most, and every restart is reported (and
/// counted by scripts/test through `$PEAPOD_RUNNER_FREEZES`).
pub fn on_guest_capable_kvm(cmd: &[&str]) -> Run {
    on_guest_capable_kvm_as(false, cmd)
}

/// [`on_guest_capable_kvm`], as root when `as_root` (for what needs root
/// beside KVM: containerd); the caller is root then.
pub fn on_guest_capable_kvm_as(as_root: bool, cmd: &[&str]) -> Run {
    let kernel = guest_kernel();
    if host_boots_guests() {
        // As root, drop to the test user when it may open /dev/kvm (CI
        // opens it to everyone), with a home of its own, as the runner does.
        let kvm_for_all = std::fs::metadata("/dev/kvm").is_ok_and(|m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006
        });
        let home = (!as_root && is_root() && kvm_for_all && ensure_test_user())
            .then(|| TempDir::with_mode("home", 0o777));
        let mut command = match &home {
            Some(home) => {
                eprintln!("running directly on this host's KVM as {TEST_USER}: {cmd:?}");
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid",
                    TEST_USER,
                    "--regid",
                    TEST_USER,
                    "--init-groups",
                    "--",
                ])
                .args(cmd)
                .env("HOME", &home.0)
                .env_remove("XDG_RUNTIME_DIR");
                c
            }
            None => {
                eprintln!("running directly on this host's KVM: {cmd:?}");
                let mut c = Command::new(cmd[0]);
                c.args(&cmd[1..]);
                c
            }
        };
        return command
            .current_dir(repo())
            .env("PEAPOD_KERNEL", &kernel)
            .output()
            .expect("run command")
            .into();
    }
    let user = if as_root {
        "root".to_string()
    } else if ensure_test_user() {
        TEST_USER.to_string()
    } else {
        whoami()
    };
    for attempt in 1..=3 {
        let out: Run = Command::new(repo().join("scripts/kvm-runner"))
            .args(["--user", &user, "--timeout", "900", "--retries", "0", "--"])
            .args(cmd)
            .current_dir(repo())
            .env("PEAPOD_KERNEL", &kernel)
            .output()
            .expect("run scripts/kvm-runner")
            .into();
        if out.code != 75 || !out.stderr.contains("the emulated host froze") {
            return out;
        }
        eprintln!(
            "kvm-runner: the emulated host froze (try {attempt} of 3): starting again\n{out:?}"
        );
    }
    panic!("the emulated KVM host froze three times running {cmd:?}");
}

/// Set when a test binary runs inside the emulated KVM host on behalf of
/// a test outside it.
const INNER: &str = "PEAPOD_TEST_INNER";

/// For a test that drives a VM from its own process: where this host's KVM
/// cannot boot guests, run the test itself (this test binary, `--exact
/// test`) on a guest-capable KVM (inside scripts/kvm-runner, as the
/// unprivileged test user), check that it passed there, and return true:
/// the caller is done. Returns false where the test is to run here.
pub fn rerun_on_guest_capable_kvm(test: &str) -> bool {
    rerun_on_guest_capable_kvm_as(false, test)
}

/// [`rerun_on_guest_capable_kvm`], as root when `as_root`.
pub fn rerun_on_guest_capable_kvm_as(as_root: bool, test: &str) -> bool {
    if std::env::var_os(INNER).is_some() || host_boots_guests() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "PEAPOD_INIT={} PEAPOD_TEST_IMAGE={} {INNER}=1 exec {} --exact {test} --nocapture",
        init_binary().display(),
        test_image().display(),
        exe.display()
    );
    let out = on_guest_capable_kvm_as(as_root, &["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("1 passed"), "{out:?}");
    true
}

fn whoami() -> String {
    let o = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The smallest file peapod accepts as a static ELF executable: an ELF64
/// header and one PT_LOAD program header (it would not run; tests that use
/// it stop before a guest boots).
pub fn minimal_static_elf() -> Vec<u8> {
    let mut elf = vec![0u8; 64 + 56];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    elf[64..68].copy_from_slice(&1u32.to_le_bytes());
    elf
}

/// A complete static x86-64 ELF executable that only calls `exit(code)`.
pub fn exit_elf(code: u8) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let text = [0xbf, code, 0, 0, 0, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]; // mov edi, code; mov eax, 60; syscall
    let mut elf = minimal_static_elf();
    let len = (elf.len() + text.len()) as u64;
    elf[6] = 1; // EI_VERSION
    elf[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[0x12..0x14].copy_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    let entry = BASE + elf.len() as u64; // the code follows the headers
    elf[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    let ph = 64;
    elf[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    elf[ph + 16..ph + 24].copy_from_slice(&BASE.to_le_bytes());
    elf[ph + 24..ph + 32].copy_from_slice(&BASE.to_le_bytes());
    elf[ph + 32..ph + 40].copy_from_slice(&len.to_le_bytes());
    elf[ph + 40..ph + 48].copy_from_slice(&len.to_le_bytes());
    elf[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&text);
    elf
}

/// Run one of the repo's scripts and return the path it prints.
pub fn script_output(script: &str) -> PathBuf {
    let out = Command::new(repo().join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The busybox test image from scripts/build-test-image: `rootfs/`, `oci/`,
/// `busybox.tar` (`$PEAPOD_TEST_IMAGE` when a test passes it on).
pub fn test_image() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("PEAPOD_TEST_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => script_output("scripts/build-test-image"),
    })
}

/// A peapod cache directory whose image store holds the busybox test image
/// as `busybox:latest` (loaded with `peapod image load`); for `PEAPOD_CACHE`.
pub fn image_cache() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-cache");
        let out = Command::new(peapod())
            .args(["image", "load"])
            .arg(test_image().join("busybox.tar"))
            .env("PEAPOD_CACHE", &dir)
            .output()
            .expect("run peapod image load");
        assert!(
            out.status.success(),
            "peapod image load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // VM tests read it as the unprivileged test user.
        let ok = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chmod -R a+rX {}", dir.display());
        dir
    })
}

/// The peapod-init under test: `$PEAPOD_INIT`, or scripts/build-init's.
pub fn init_binary() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("PEAPOD_INIT") {
        Some(p) => PathBuf::from(p),
        None => script_output("scripts/build-init"),
    })
}

/// peapod-nettool (tests/nettool): UDP echo, a tiny DNS server and TCP
/// measurements, static, so the same binary runs on the host and in a pod.
pub fn nettool_binary() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| script_output("scripts/build-nettool"))
}

/// A container of the busybox test image (`rootfs` in the share) running
/// `sh -c script` as root.
pub fn sh(name: &str, script: &str) -> peapod_proto::WireContainer {
    peapod_proto::WireContainer {
        name: name.into(),
        rootfs: "rootfs".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        working_dir: "/".into(),
        uid: 0,
        gid: 0,
        volume_mounts: vec![],
        memory_limit: None,
        cpu_limit_millis: None,
        pids_limit: None,
        read_only_rootfs: false,
        cap_add: vec![],
        cap_drop: vec![],
        tty: false,
        stdin: false,
        stdin_once: false,
        sidecar: false,
        binds: vec![],
        supplemental_groups: Vec::new(),
        no_new_privs: false,
        probes: Vec::new(),
        post_start: None,
        pre_stop: None,
        stop_signal: None,
        termination_message_path: None,
        termination_message_fallback: false,
    }
}

/// A pod file with the objects its pod uses (a ConfigMap, a Secret, a
/// PersistentVolumeClaim) and a security context (fsGroup,
/// supplementalGroups, a sysctl, a container that may not gain
/// privileges), a `--configmap` file with another ConfigMap, and a second
/// pod that reads what the first left in the claim: the real-world Pod
/// YAML scenario, for the native and the VM tests. `image`
/// is the containers' image; run `config.yaml` (with `--configmap
/// extra.yaml`), then `claim.yaml`.
pub fn config_scenario(image: &str) -> Vec<(&'static str, String)> {
    let config = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data:
  mode: fast
  app.conf: "listen 8080\n"
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
data: {{password: aHVudGVyMg==}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: store}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: cfg, labels: {{app: demo}}}}
spec:
  restartPolicy: Never
  securityContext:
    fsGroup: 2000
    supplementalGroups: [3000]
    sysctls: [{{name: net.ipv4.ip_local_port_range, value: "20000 30000"}}]
  volumes:
  - {{name: cfg, configMap: {{name: settings}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 0400}}}}
  - name: info
    downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
  - {{name: store, persistentVolumeClaim: {{claimName: store}}}}
  containers:
  - name: c
    image: {image}
    command:
    - sh
    - -c
    - |
      echo "env mode=$MODE pass=$PASS extra=$EXTRA_greeting"
      echo "conf $(cat /etc/app/app.conf)"
      echo "subpath $(cat /etc/one.conf)"
      echo "secret $(cat /etc/sec/password) $(stat -L -c %a /etc/sec/password)"
      echo "labels $(cat /etc/info/labels)"
      ip -4 addr | grep -q "inet $POD_IP/" && echo "pod-ip-ok $URL" | sed "s/$POD_IP/IP/"
      touch /etc/app/new 2>/dev/null || echo config-read-only
      echo kept > /store/f && echo stored
    env:
    - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}}}
    - {{name: PASS, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: URL, value: "http://$(POD_IP):8080/"}}
    envFrom:
    - {{configMapRef: {{name: extra}}, prefix: EXTRA_}}
    volumeMounts:
    - {{name: cfg, mountPath: /etc/app}}
    - {{name: cfg, mountPath: /etc/one.conf, subPath: app.conf}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: store, mountPath: /store}}
  - name: u
    image: {image}
    securityContext: {{runAsUser: 1000, runAsGroup: 1000, allowPrivilegeEscalation: false}}
    command:
    - sh
    - -c
    - |
      echo groups $(sed -n 's/^Groups://p' /proc/self/status)
      echo "by-group $(cat /etc/sec/password) $(stat -L -c %a-%g /etc/sec/password)"
      echo no-new-privs $(sed -n 's/^NoNewPrivs://p' /proc/self/status)
      echo sysctl $(cat /proc/sys/net/ipv4/ip_local_port_range)
    volumeMounts:
    - {{name: sec, mountPath: /etc/sec}}
"#
    );
    let extra = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {greeting: hi}\n"
        .to_owned();
    let claim = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: reader}}\nspec:\n  restartPolicy: Never\n  \
         volumes: [{{name: store, persistentVolumeClaim: {{claimName: store, readOnly: true}}}}]\n  \
         containers:\n  - name: r\n    image: {image}\n    command: [sh, -c, 'echo \"claim $(cat \
         /store/f)\"; touch /store/g 2>/dev/null || echo claim-read-only']\n    volumeMounts: \
         [{{name: store, mountPath: /store}}]\n"
    );
    vec![
        ("config.yaml", config),
        ("extra.yaml", extra),
        ("claim.yaml", claim),
    ]
}

/// What [`config_scenario`]'s pods print.
pub const CONFIG_SCENARIO_OUTPUT: &[&str] = &[
    "[c] env mode=fast pass=hunter2 extra=hi",
    "[c] conf listen 8080",
    "[c] subpath listen 8080",
    "[c] secret hunter2 440",
    "[u] groups 1000 2000 3000",
    "[u] by-group hunter2 440-2000",
    "[u] no-new-privs 1",
    "[u] sysctl 20000 30000",
    "[c] labels app=\"demo\"",
    "[c] pod-ip-ok http://IP:8080/",
    "[c] config-read-only",
    "[c] stored",
    "[r] claim kept",
    "[r] claim-read-only",
];

/// Lifecycle hooks, a stop signal and termination messages, for the native
/// CLI and the VM: `hooks.yaml` runs until stopped; `fails.yaml` fails at
/// once and says why only in its output.
pub fn hooks_scenario(image: &str) -> Vec<(&'static str, String)> {
    let hooks = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: {image}
    command: [sh, -c, 'trap "cat /tmp/order; echo drained > /dev/termination-log; exit 0" TERM; while :; do sleep 1; done']
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'sleep 1; echo post-start > /tmp/order']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo pre-stop >> /tmp/order']}}}}
  - name: quits
    image: {image}
    command: [sh, -c, 'trap "exit 0" QUIT; trap "exit 9" TERM; while :; do sleep 1; done']
    lifecycle: {{stopSignal: SIGQUIT}}
"#
    );
    let fails = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: fails}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {image}
    command: [sh, -c, 'echo starting; echo "config invalid: no port" >&2; exit 4']
    terminationMessagePolicy: FallbackToLogsOnError
"#
    );
    vec![("hooks.yaml", hooks), ("fails.yaml", fails)]
}

/// Check `peapod inspect` of [`hooks_scenario`]'s pods once both ended:
/// `hooks` (stopped) and `fails`.
pub fn check_hooks_inspect(hooks: &str, fails: &str) {
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let terminated = |pod: &serde_json::Value, name: &str| -> serde_json::Value {
        let c = pod["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["status"]["name"] == name))
            .unwrap_or_else(|| panic!("no container {name}: {pod}"));
        c["status"]["state"].clone()
    };
    let hooks = parse(hooks);
    let app = terminated(&hooks, "app");
    assert_eq!(app["state"], "terminated", "{hooks}");
    assert_eq!(app["code"], 0, "{hooks}");
    assert_eq!(app["message"], "drained\n", "{hooks}");
    // SIGQUIT, not SIGTERM, stopped it.
    assert_eq!(terminated(&hooks, "quits")["code"], 0, "{hooks}");
    let fails = parse(fails);
    let app = terminated(&fails, "app");
    assert_eq!(app["code"], 4, "{fails}");
    assert_eq!(
        app["message"], "starting\nconfig invalid: no port",
        "{fails}"
    );
}
