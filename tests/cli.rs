//! The `peapod` command line, end to end, without booting a VM: every bad
//! input gets a clear error naming file, field and fix, exit code 2, and
//! nothing is left behind; spec errors come before any look at the host.

mod common;

use std::process::Command;

use common::*;

const GOOD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: app
      image: busybox:latest
      resources:
        limits:
          memory: 64Mi
";

/// Run `peapod run` on `yaml` with a kernel path that does not exist: a spec
/// error must win over it.
fn run_spec(yaml: &str) -> (Run, String) {
    let dir = TempDir::new("cli");
    let pod = dir.write("pod.yaml", yaml);
    let out = peapod_run(
        &[
            "run",
            "--kernel",
            "/nonexistent/vmlinux",
            pod.to_str().unwrap(),
        ],
        &dir.0,
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "nothing but the pod file is left: {leftovers:?}"
    );
    (out, pod.display().to_string())
}

fn assert_bad(yaml: &str, needles: &[&str]) {
    let (out, file) = run_spec(yaml);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&file) || out.stderr.contains("pod.yaml"),
        "names the file: {out:?}"
    );
    for n in needles {
        assert!(out.stderr.contains(n), "expected {n:?} in: {out:?}");
    }
    assert!(
        !out.stderr.contains("/nonexistent/vmlinux"),
        "spec errors come before kernel checks: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn test_cli_missing_pod_file() {
    let dir = TempDir::new("cli");
    let out = peapod_run(&["run", "no-such-pod.yaml"], &dir.0);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no-such-pod.yaml"), "{out:?}");
}

#[test]
fn test_cli_yaml_syntax_error_names_line() {
    assert_bad(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: [\n",
        &["line"],
    );
}

#[test]
fn test_cli_kind_not_pod() {
    assert_bad(
        &GOOD.replace("kind: Pod", "kind: Deployment"),
        &["kind", "Deployment"],
    );
}

#[test]
fn test_cli_no_containers() {
    assert_bad(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers: []\n",
        &["spec.containers"],
    );
}

#[test]
fn test_cli_duplicate_container_names() {
    let yaml = format!("{GOOD}    - name: app\n      image: busybox\n");
    assert_bad(&yaml, &["spec.containers[1].name", "app"]);
}

#[test]
fn test_cli_bad_quantity() {
    assert_bad(
        &GOOD.replace("64Mi", "1.5Gx"),
        &["spec.containers[0].resources.limits.memory", "1.5Gx"],
    );
}

#[test]
fn test_cli_memory_too_small() {
    assert_bad(
        &GOOD.replace("64Mi", "1Mi"),
        &["spec.containers[0].resources.limits.memory", "6Mi"],
    );
}

#[test]
fn test_cli_empty_image() {
    assert_bad(
        &GOOD.replace("busybox:latest", "\"\""),
        &["spec.containers[0].image"],
    );
}

#[test]
fn test_cli_unknown_field_names_path() {
    assert_bad(
        &GOOD.replace("      image:", "      imagee: x\n      image:"),
        &["spec.containers[0]", "imagee"],
    );
}

#[test]
fn test_cli_kernel_missing_or_not_a_kernel() {
    // A good pod with a missing kernel: the kernel error, and nothing left.
    let (out, _) = run_spec(GOOD);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("/nonexistent/vmlinux") && out.stderr.contains("scripts/build-kernel"),
        "{out:?}"
    );

    let dir = TempDir::new("cli");
    let pod = dir.write("pod.yaml", GOOD);
    let not_kernel = dir.write("vmlinux", "#!/bin/sh\necho not a kernel\n");
    let out = peapod_run(
        &[
            "run",
            "--kernel",
            not_kernel.to_str().unwrap(),
            pod.to_str().unwrap(),
        ],
        &dir.0,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not an ELF vmlinux or a bzImage"),
        "{out:?}"
    );
}

/// A fake kernel and init that pass the format checks, for tests that stop
/// at the host checks.
fn fake_guest(dir: &TempDir) -> (String, String) {
    let kernel = dir.write("fake-vmlinux", "\x7fELF fake");
    let init = dir.0.join("fake-init");
    std::fs::write(&init, minimal_static_elf()).unwrap();
    (kernel.display().to_string(), init.display().to_string())
}

#[test]
fn test_cli_kvm_not_accessible_says_how_to_get_access() {
    if !is_root() || !ensure_test_user() {
        common::skip(&format!(
            "needs root to run peapod as the unprivileged {TEST_USER} without /dev/kvm access"
        ));
        return;
    }
    let dir = TempDir::new("cli");
    let pod = dir.write("pod.yaml", GOOD);
    let (kernel, init) = fake_guest(&dir);
    // Whatever this host's /dev/kvm allows (hosted CI runners open it to
    // everyone), the test user meets a root-only one: a private mount
    // namespace covers it with a 0600 node.
    let fence = dir.0.join("kvm-root-only");
    std::fs::write(&fence, "").unwrap();
    std::fs::set_permissions(&fence, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out: Run = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /dev/kvm && exec "$@""#)
        .arg(&fence)
        .arg("setpriv")
        .args([
            "--reuid",
            TEST_USER,
            "--regid",
            TEST_USER,
            "--clear-groups",
            "--",
        ])
        .arg(peapod())
        .args([
            "run",
            "--kernel",
            &kernel,
            "--init",
            &init,
            pod.to_str().unwrap(),
        ])
        .current_dir(&dir.0)
        .env("HOME", &dir.0)
        .env("PEAPOD_CACHE", image_cache())
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("/dev/kvm") && out.stderr.contains("not accessible"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("usermod") || out.stderr.contains("setfacl"),
        "says how: {out:?}"
    );
}

#[test]
fn test_cli_refuses_to_boot_on_pvm_with_advice() {
    // On PVM, `run` refuses with advice and `doctor` says why; on a KVM that
    // boots guests, `doctor` says so instead.
    let Ok(kvm) = peapod::vmm::vstate::kvm::open_kvm() else {
        common::skip("no accessible /dev/kvm here");
        return;
    };
    if peapod::vmm::vstate::kvm::detect_flavour(&kvm)
        .unwrap()
        .can_boot_linux()
    {
        let dir = TempDir::new("cli");
        let out = peapod_run(&["doctor"], &dir.0);
        assert!(
            out.stdout.contains("ok   KVM flavour") && !out.stdout.contains("PVM"),
            "{out:?}"
        );
        return;
    }
    let dir = TempDir::new("cli");
    let pod = dir.write("pod.yaml", GOOD);
    let (kernel, init) = fake_guest(&dir);
    let out = peapod_run(
        &[
            "run",
            "--kernel",
            &kernel,
            "--init",
            &init,
            pod.to_str().unwrap(),
        ],
        &dir.0,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("PVM") && out.stderr.contains("scripts/kvm-runner"),
        "{out:?}"
    );

    let out = peapod_run(&["doctor", "--kernel", &kernel, "--init", &init], &dir.0);
    assert_eq!(out.code, 1, "doctor says pods cannot run here: {out:?}");
    assert!(
        out.stdout.contains("PVM") && out.stdout.contains("scripts/kvm-runner"),
        "{out:?}"
    );
}

#[test]
fn test_cli_initramfs_writes_newc_archive_with_init() {
    let dir = TempDir::new("cli");
    let init = dir.0.join("init");
    std::fs::write(&init, minimal_static_elf()).unwrap();
    let out_path = dir.0.join("initramfs.cpio");
    let out = peapod_run(
        &[
            "initramfs",
            "--init",
            init.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
        ],
        &dir.0,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let entries =
        peapod::vmm::boot::initramfs::read_newc(&std::fs::read(&out_path).unwrap()).unwrap();
    let e = entries
        .iter()
        .find(|e| e.path == "init")
        .expect("init entry");
    assert_eq!(e.data, minimal_static_elf());
}

#[test]
fn test_cli_admission_refuses_seed_pod_whole_on_small_node() {
    // The seed's App (1 GiB) + LogCollector (0.5 GiB) on a 1.25 GiB node:
    // refused before any VM exists, naming what was asked and what is free.
    let dir = TempDir::new("cli");
    let (kernel, init) = fake_guest(&dir);
    let runtime = dir.0.join("runtime");
    let out: Run = Command::new(peapod())
        .args(["run", "--kernel", &kernel, "--init", &init])
        .arg(repo().join("examples/seed-app-logcollector.yaml"))
        .env("PEAPOD_CAPACITY_MEMORY", "1.25Gi")
        .env("PEAPOD_CACHE", image_cache())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("pod seed does not fit"), "{out:?}");
    assert!(
        out.stderr.contains("1600 MiB") && out.stderr.contains("free: 1280 MiB"),
        "{out:?}"
    );
    let ledger = std::fs::read_to_string(runtime.join("peapod/.ledger.json")).unwrap_or_default();
    assert!(!ledger.contains("seed"), "no reservation is left: {ledger}");
}

#[test]
fn test_cli_refuses_dynamically_linked_init() {
    // The guest has no shared libraries: a dynamic peapod-init is refused
    // before anything starts, with the fix.
    let dir = TempDir::new("cli");
    let pod = dir.write("pod.yaml", GOOD);
    let kernel = dir.write("fake-vmlinux", "\x7fELF fake");
    let out = peapod_run(
        &[
            "run",
            "--kernel",
            kernel.to_str().unwrap(),
            "--init",
            "/bin/true",
            pod.to_str().unwrap(),
        ],
        &dir.0,
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("dynamically linked") && out.stderr.contains("scripts/build-init"),
        "{out:?}"
    );
}

#[test]
fn test_cli_host_port_in_use_or_without_network_is_refused() {
    // A hostPort the host already uses, and a hostPort on a pod without a
    // network: refused before anything starts, naming the port.
    let dir = TempDir::new("cli");
    let (kernel, init) = fake_guest(&dir);
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let pod = dir.write(
        "pod.yaml",
        &format!("{GOOD}      ports: [{{containerPort: 80, hostPort: {port}}}]\n"),
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--kernel", &kernel, "--init", &init];
        args.extend_from_slice(extra);
        args.push(pod.to_str().unwrap());
        let runtime = dir.0.join("runtime");
        let out: Run = Command::new(peapod())
            .args(&args)
            .env("PEAPOD_CACHE", image_cache())
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap()
            .into();
        out
    };
    let out = run(&[]);
    if !peapod::sandbox::launch::passt_installed() {
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("apt install passt"), "{out:?}");
        return;
    }
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("host port {port}")) && out.stderr.contains("already in use"),
        "{out:?}"
    );
    let out = run(&["--network", "none"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("host port {port}")) && out.stderr.contains("no network"),
        "{out:?}"
    );
    let out = run(&["-p", "80"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("-p 80"), "{out:?}");
    // The host-loopback annotation takes "true" or "false", nothing else.
    std::fs::write(
        &pod,
        GOOD.replace(
            "  name: web\n",
            "  name: web\n  annotations: {peapod.io/host-loopback: \"yes\"}\n",
        ),
    )
    .unwrap();
    let out = run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pod.yaml")
            && out
                .stderr
                .contains("metadata.annotations[\"peapod.io/host-loopback\"]")
            && out.stderr.contains("\"true\""),
        "{out:?}"
    );
}

/// A refused pod creates no host path: its DirectoryOrCreate hostPath is
/// made only by its monitor, once every check passed (here a taken host
/// port refuses it after its volumes were checked).
#[test]
fn test_cli_refused_pod_creates_no_host_path() {
    let dir = TempDir::new("cli-nocreate");
    let (kernel, init) = fake_guest(&dir);
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let made = dir.0.join("data/made");
    let pod = dir.write(
        "pod.yaml",
        &format!(
            "{}  volumes: [{{name: d, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]\n",
            GOOD.replace(
                "      image: busybox:latest\n",
                &format!(
                    "      image: busybox:latest\n      ports: [{{containerPort: 80, hostPort: \
                     {port}}}]\n      volumeMounts: [{{name: d, mountPath: /d}}]\n"
                ),
            ),
            made.display()
        ),
    );
    let out: Run = Command::new(peapod())
        .args([
            "run",
            "--kernel",
            &kernel,
            "--init",
            &init,
            "--allow-host-path",
        ])
        .arg(&dir.0)
        .arg(&pod)
        .env("PEAPOD_CACHE", image_cache())
        .env("XDG_RUNTIME_DIR", dir.0.join("runtime"))
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("passt") || out.stderr.contains(&format!("host port {port}")),
        "{out:?}"
    );
    assert!(
        !dir.0.join("data").exists(),
        "the refused pod created a host path"
    );
}

/// A runtime directory another user could have made (here: one open to
/// everyone, as a shared /tmp/peapod-UID made first by someone else would
/// be): no command trusts its pods or sockets, not only `run`.
#[test]
fn test_cli_every_command_refuses_a_runtime_directory_that_is_not_private() {
    let dir = TempDir::new("untrusted-runtime");
    let runtime = dir.0.join("peapod");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // A pod planted there: a command that trusted the directory would act on it.
    std::fs::create_dir(runtime.join("planted")).unwrap();
    for args in [
        vec!["ps"],
        vec!["logs", "planted"],
        vec!["exec", "planted", "--", "true"],
        vec!["inspect", "planted"],
        vec!["stop", "planted"],
        vec!["rm", "planted"],
        vec!["wait", "planted", "--for=running", "--timeout", "1s"],
    ] {
        let out: Run = Command::new(peapod())
            .args(&args)
            .env("XDG_RUNTIME_DIR", &dir.0)
            .output()
            .unwrap()
            .into();
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("not a private directory of this user"),
            "{args:?}: {out:?}"
        );
    }
    assert!(runtime.join("planted").is_dir(), "nothing touched");
}

/// A pod whose container wrote terminal escape sequences and a long line
/// without a newline (its log fabricated as the monitor writes it).
fn hostile_log_pod(dir: &TempDir) {
    use peapod::sandbox::crilog::Writer;
    use peapod::sandbox::state::{ContainerInfo, PodState};
    use std::os::unix::fs::DirBuilderExt;
    let runtime = dir.0.join("peapod");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&runtime)
        .unwrap();
    let pod = runtime.join("evil");
    std::fs::create_dir(&pod).unwrap();
    let mut state = PodState::new("evil", std::path::Path::new("evil.yaml"), "namespace");
    state.phase = peapod_proto::PodPhase::Succeeded;
    state.containers = vec![ContainerInfo::waiting("app", false, "busybox")];
    state.store(&pod).unwrap();
    let mut w = Writer::default();
    w.start(&pod, "app", 0).unwrap();
    let evil = b"\x1b]0;pwned\x07title\x1b[2J\xc2\x9bdone\n";
    w.write(&pod, "app", 1, peapod_proto::Stream::Stdout, evil, false)
        .unwrap();
    let chunk = vec![b'y'; 16 << 10];
    for i in 0..64 {
        w.write(
            &pod,
            "app",
            2 + i,
            peapod_proto::Stream::Stdout,
            &chunk,
            true,
        )
        .unwrap();
    }
    w.write(
        &pod,
        "app",
        99,
        peapod_proto::Stream::Stdout,
        b"tail\n",
        false,
    )
    .unwrap();
}

/// On a terminal, `logs` shows a container's control characters escaped
/// (it cannot retitle the window or clear the screen); into a pipe every
/// byte is kept, and a 1 MiB line comes whole.
#[test]
fn test_cli_logs_escape_control_characters_on_a_terminal_only() {
    let dir = TempDir::new("hostile-log");
    hostile_log_pod(&dir);
    let piped = Command::new(peapod())
        .args(["logs", "evil"])
        .env("XDG_RUNTIME_DIR", &dir.0)
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    let mut want = b"\x1b]0;pwned\x07title\x1b[2J\xc2\x9bdone\n".to_vec();
    want.extend(std::iter::repeat_n(b'y', 64 << 14));
    want.extend_from_slice(b"tail\n");
    assert!(
        piped.stdout == want,
        "the bytes as written, the long line whole"
    );
    // A terminal: `script` gives the command a pty.
    let cmd = format!("{} logs evil", peapod().display());
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("XDG_RUNTIME_DIR", &dir.0)
        .output()
        .expect("script (bsdutils)");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(
        shown.contains(r"\x1b]0;pwned\x07title\x1b[2J\xc2\x9bdone"),
        "{:?}",
        &shown[..shown.len().min(200)]
    );
    assert!(
        !tty.stdout.contains(&0x1b),
        "no raw escape reaches the terminal"
    );
}

/// A pod file from the internet reaches no host path the user did not
/// allow: hostPath volumes and path-based images are refused, naming the
/// field, the path and the three ways to allow a directory, and nothing
/// is created; an allowed directory (flag, environment, settings file)
/// passes.
#[test]
fn test_cli_pod_file_reaches_no_host_path_the_user_did_not_allow() {
    let dir = TempDir::new("host-paths");
    let home = dir.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let made = dir.0.join("data/made-by-pod");
    let pod = |name: &str, volumes: &str, image: &str| {
        dir.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - \
                 name: c\n    image: {image}\n{volumes}"
            ),
        )
    };
    let run = |file: &std::path::Path, extra: &[&str], env: &[(&str, &std::path::Path)]| -> Run {
        let mut c = Command::new(peapod());
        c.arg("run")
            .args(extra)
            .args(["--kernel", "/nonexistent/vmlinux"])
            .arg(file)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_RUNTIME_DIR", &dir.0)
            .env_remove("PEAPOD_ALLOW_HOST_PATHS");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap().into()
    };
    let root_volume = "  volumes: [{name: v, hostPath: {path: /, type: Directory}}]\n";
    let create = format!(
        "  volumes: [{{name: v, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]\n",
        made.display()
    );
    let cases = [
        (
            pod("root", root_volume, "busybox"),
            "spec.volumes[0].hostPath.path: / is outside",
        ),
        (
            pod("create", &create, "busybox"),
            "spec.volumes[0].hostPath.path: ",
        ),
        (
            pod("homedir", "", &format!("rootfs:{}", home.display())),
            "spec.containers[0].image: ",
        ),
        (
            pod("passwd", "", "docker-archive:/etc/passwd"),
            "spec.containers[0].image: /etc/passwd is outside",
        ),
    ];
    for (file, needle) in &cases {
        let out = run(file, &[], &[]);
        assert_eq!(out.code, 2, "{out:?}");
        for n in [
            needle,
            "--allow-host-path",
            "PEAPOD_ALLOW_HOST_PATHS",
            "allowHostPaths",
            file.to_str().unwrap(),
        ] {
            assert!(out.stderr.contains(n), "{n:?} not in {out:?}");
        }
    }
    assert!(
        !made.exists() && !dir.0.join("data").exists(),
        "nothing created"
    );

    // Allowed: the check passes (this run then stops at the kernel).
    let data = dir.0.join("data");
    let passes = |out: Run| {
        assert!(
            !out.stderr.contains("is outside the directories"),
            "{out:?}"
        );
    };
    let file = &cases[1].0;
    passes(run(
        file,
        &["--allow-host-path", data.to_str().unwrap()],
        &[],
    ));
    passes(run(file, &[], &[("PEAPOD_ALLOW_HOST_PATHS", &dir.0)]));
    std::fs::create_dir_all(home.join(".config/peapod")).unwrap();
    std::fs::write(
        home.join(".config/peapod/config.yaml"),
        format!("allowHostPaths: [{}]\n", data.display()),
    )
    .unwrap();
    passes(run(file, &[], &[]));
    std::fs::write(
        home.join(".config/peapod/config.yaml"),
        "allowHostPath: [/]\n",
    )
    .unwrap();
    let out = run(file, &[], &[]);
    assert!(
        out.code == 2 && out.stderr.contains("config.yaml") && out.stderr.contains("allowHostPath"),
        "{out:?}"
    );
}
