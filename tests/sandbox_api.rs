//! The pod API as a second client (the containerd shim) uses it: a sandbox
//! pod started through the library, containers joining and leaving it
//! through its monitor, `peapod ps` seeing them; in namespaces (root) and
//! in a VM (as the unprivileged test user, inside scripts/kvm-runner where
//! this host's KVM cannot boot guests).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    guest_kernel, init_binary, is_root, peapod, rerun_on_guest_capable_kvm, sh, test_image, Run,
    TempDir,
};
use peapod::sandbox::api::{self, Request};
use peapod::sandbox::launch::{self, PodOptions, SandboxSize};
use peapod::sandbox::{self, artifacts::GuestPaths, Isolation, PodState};
use peapod_proto::{ContainerState, WireContainer};

/// A busybox container joining the sandbox in `dir`: a copy of the test
/// image's root filesystem where the pod API says it goes.
fn container(
    dir: &std::path::Path,
    isolation: Isolation,
    name: &str,
    script: &str,
) -> WireContainer {
    let (host, rootfs) = launch::joining_rootfs(dir, isolation, name);
    if !host.exists() {
        // As the unprivileged test user, the image's root-only /root stays
        // behind (cp says so); the rest is what the container needs.
        let _ = Command::new("cp")
            .arg("-a")
            .arg(test_image().join("rootfs"))
            .arg(&host)
            .status();
        let busybox = host.join("bin/busybox");
        assert!(busybox.is_file(), "no {} after cp -a", busybox.display());
    }
    WireContainer {
        rootfs,
        ..sh(name, script)
    }
}

/// The sandbox's monitor, killed (and with it the pod) if the test fails
/// before it stopped the pod.
struct Monitor(std::process::Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn add(dir: &std::path::Path, c: WireContainer) -> Result<(), api::AskError> {
    let req = Request::AddContainer {
        container: Box::new(c),
        image: "busybox:test".into(),
    };
    api::ask(dir, "sbx", &req)
}

/// Poll the pod's state until `done` holds (60 s at most).
fn until(dir: &std::path::Path, what: &str, done: impl Fn(&PodState) -> bool) -> PodState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = PodState::load(dir).unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminated_with(s: &PodState, name: &str, code: i32) -> bool {
    s.container(name).is_some_and(
        |c| matches!(&c.status.state, ContainerState::Terminated(t) if t.code == Some(code)),
    )
}

/// The scenario sets the environment the library reads (its runtime
/// directory and cache): one test at a time, each putting it back.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sets environment variables, and puts back what was there when dropped
/// (also when the test fails).
struct Env(Vec<(&'static str, Option<std::ffi::OsString>)>);

impl Env {
    fn set(vars: &[(&'static str, &std::path::Path)]) -> Env {
        let saved = vars
            .iter()
            .map(|(k, v)| {
                let old = std::env::var_os(k);
                std::env::set_var(k, v);
                (*k, old)
            })
            .collect();
        Env(saved)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, old) in &self.0 {
            match old {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

#[test]
fn test_sandbox_api_containers_join_and_leave_a_running_pod() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        common::skip("sandbox pods in namespaces need root");
        return;
    }
    scenario(Isolation::Namespace);
}

#[test]
fn test_sandbox_api_containers_join_a_running_vm() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if rerun_on_guest_capable_kvm("test_sandbox_api_containers_join_a_running_vm") {
        return;
    }
    guest_kernel();
    scenario(Isolation::Vm);
}

/// Two containers join a running sandbox one after the other and talk
/// over localhost; refusals, a removal, `peapod ps`, and a stop that ends
/// it and leaves nothing.
fn scenario(isolation: Isolation) {
    test_image(); // built (or found) before PEAPOD_CACHE changes below
    let env = TempDir::new("sandbox-api");
    let run = env.0.join("run");
    std::fs::create_dir_all(&run).unwrap();
    // The library and the monitor it starts read these, as the CLI's do.
    let cache = env.0.join("cache");
    let _env = Env::set(&[("XDG_RUNTIME_DIR", &run), ("PEAPOD_CACHE", &cache)]);
    let opts = PodOptions {
        isolation,
        guest: GuestPaths {
            kernel: None,
            init: Some(init_binary().to_owned()),
        },
        no_network: true,
        publish: vec![],
        verbose_console: false,
        console_log: None,
        boot_timeout_s: 120,
        force_boot: false,
        started_ns: 0,
        allow_host_paths: vec![],
        configmaps: vec![],
        pull: Default::default(),
    };
    let size = SandboxSize {
        memory: 256 << 20,
        millicpu: 500,
    };
    let bad = launch::prepare_sandbox("Not_A_Label", size, &opts).unwrap_err();
    assert!(
        bad.to_string().contains("sandbox name \"Not_A_Label\""),
        "{bad}"
    );

    let mut launch = launch::prepare_sandbox("sbx", size, &opts).unwrap();
    launch.monitor_exe = Some(peapod());
    let started = sandbox::start(&launch, |_| {}).unwrap_or_else(|(e, _)| panic!("{e:?}"));
    let dir = started.dir.clone();
    let mut monitor = Monitor(started.monitor);

    // Two containers join, one after the other, and talk over localhost.
    add(
        &dir,
        container(
            &dir,
            isolation,
            "server",
            "mkfifo /tmp/in; nc -l -p 7071 < /tmp/in & exec 3> /tmp/in; wait $!",
        ),
    )
    .unwrap();
    add(
        &dir,
        container(
            &dir,
            isolation,
            "client",
            "until echo hello-over-localhost | nc 127.0.0.1 7071; do sleep 0.1; done",
        ),
    )
    .unwrap();
    let state = until(&dir, "both containers to end", |s| {
        terminated_with(s, "client", 0) && terminated_with(s, "server", 0)
    });
    assert_eq!(state.phase, peapod_proto::PodPhase::Running, "{state:#?}");
    let log = std::fs::read_to_string(sandbox::crilog::log_path(&dir, "server", 0)).unwrap();
    assert!(log.ends_with(" stdout F hello-over-localhost\n"), "{log}");

    // `peapod ps` sees the sandbox and what joined it.
    let ps: Run = Command::new(peapod())
        .args(["ps", "--output", "json"])
        .output()
        .unwrap()
        .into();
    let rows: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    assert_eq!(rows[0]["name"], "sbx", "{ps:?}");
    assert_eq!(rows[0]["status"], "Running", "{ps:?}");
    assert_eq!(rows[0]["container_statuses"][1]["name"], "client", "{ps:?}");
    assert_eq!(
        rows[0]["container_statuses"][1]["image"], "busybox:test",
        "{ps:?}"
    );

    // Refused, with the reason and nothing changed: a taken name, a
    // container that runs, one that is not there.
    let taken = add(&dir, container(&dir, isolation, "client", "true")).unwrap_err();
    assert!(
        taken.usage && taken.message.contains("already has a container"),
        "{taken}"
    );
    add(&dir, container(&dir, isolation, "idle", "exec sleep 1000")).unwrap();
    let remove = |name: &str| {
        let req = Request::RemoveContainer {
            container: name.into(),
        };
        api::ask(&dir, "sbx", &req)
    };
    let running = remove("idle").unwrap_err();
    assert!(running.message.contains("has not ended"), "{running}");
    let ghost = remove("ghost").unwrap_err();
    assert_eq!(
        ghost.message,
        "pod sbx: container ghost: the pod has no container of that name"
    );

    // An ended container leaves the pod.
    remove("client").unwrap();
    let names = |s: &PodState| -> Vec<String> {
        s.containers.iter().map(|c| c.status.name.clone()).collect()
    };
    assert_eq!(names(&PodState::load(&dir).unwrap()), ["server", "idle"]);

    // Only a stop ends it.
    api::ask(
        &dir,
        "sbx",
        &Request::Stop {
            grace_period_s: Some(1),
        },
    )
    .unwrap();
    let status = monitor.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let state = PodState::load(&dir).unwrap();
    assert!(state.ended(), "{state:#?}");
    sandbox::remove(&dir).unwrap();
    let ledger = std::fs::read_to_string(run.join("peapod/.ledger.json")).unwrap_or_default();
    assert!(!ledger.contains("sbx"), "reservation left: {ledger}");
}
