//! VM tests: the real VMM boots the real guest kernel (scripts/build-kernel)
//! to peapod-init, as an unprivileged user. Directly on VT-x/AMD-V hosts,
//! through scripts/kvm-runner elsewhere; never skipped.

mod common;

use common::*;

#[test]
fn test_vm_boots_hello_pod_to_peapod_init_rootless() {
    let peapod = peapod();
    let script = format!(
        "echo uid=$(id -u); exec {} run --timings examples/hello.yaml",
        peapod.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("hello: peapod-init ready (guest uptime"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("hello: exited with status 0"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("peapod-init ready"),
        "timings are printed: {out:?}"
    );
    let uid: u32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .and_then(|u| u.trim().parse().ok())
        .expect("uid line");
    if host_boots_guests() && is_root() {
        eprintln!("note: ran as root on this host (rootless is proven through the runner)");
    } else {
        assert_ne!(uid, 0, "the pod must run as an unprivileged user: {out:?}");
    }
}

#[test]
fn test_vm_guest_without_working_init_fails_with_console_tail() {
    // An /init that exits at once: the kernel panics ("Attempted to kill
    // init"), resets (panic=-1), and peapod must say so, with the console.
    let dir = TempDir::new("vm-init");
    let init = dir.0.join("exit-7");
    std::fs::write(&init, exit_elf(7)).unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "exec {} run --init {} --boot-timeout 120 examples/hello.yaml",
        peapod().display(),
        init.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("before peapod-init reported an exit status"),
        "{out:?}"
    );
    assert!(out.stderr.contains("last console lines"), "{out:?}");
    assert!(out.stderr.contains("Attempted to kill init"), "{out:?}");
}

#[test]
fn test_vm_seed_pod_runs_with_enough_capacity() {
    // The same App + LogCollector pod that a 1.25 GiB node refuses (see
    // tests/cli.rs) is admitted and boots with 2 GiB.
    let script = format!(
        "PEAPOD_CAPACITY_MEMORY=2Gi exec {} run examples/seed-app-logcollector.yaml",
        peapod().display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("seed: peapod-init ready"), "{out:?}");
}

/// Set (to anything) when this test binary runs inside the emulated KVM
/// host on behalf of a test outside it.
const INNER: &str = "PEAPOD_TEST_INNER";

#[test]
fn test_vm_guest_mounts_virtio_fs_share() {
    // The VMM's in-process virtio-fs device serves a host directory that
    // the real guest kernel mounts: peapod-init lists it on the console.
    if std::env::var_os(INNER).is_none() && !host_boots_guests() {
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "PEAPOD_INIT={} {INNER}=1 exec {} --exact test_vm_guest_mounts_virtio_fs_share --nocapture",
            init_binary().display(),
            exe.display()
        );
        let out = on_guest_capable_kvm(&["sh", "-c", &script]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("1 passed"), "{out:?}");
        return;
    }
    let kvm = peapod::vmm::vstate::kvm::open_kvm().unwrap();
    let share = TempDir::new("vm-share");
    std::fs::write(share.0.join("from-the-host.txt"), "hello").unwrap();
    std::fs::create_dir(share.0.join("volumes")).unwrap();
    let cfg = peapod::vmm::VmConfig {
        mem_bytes: 128 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: false,
        vsock_uds: None,
        fs_share: Some(peapod::vmm::FsShare {
            tag: "podshare".into(),
            path: share.0.clone(),
            read_only: true,
        }),
    };
    let mut vm = peapod::vmm::Vm::new(&kvm, &cfg).unwrap();
    let init = std::fs::read(init_binary()).unwrap();
    let initrd = peapod::vmm::boot::initramfs::build(init).unwrap();
    let mut cmdline = peapod::cli::run::kernel_cmdline("share-test", false).unwrap();
    cmdline
        .insert(peapod_proto::CMDLINE_SHARE_TAG, "podshare")
        .unwrap();
    vm.load_linux(&guest_kernel(), &initrd, cmdline).unwrap();
    let out = vm.run(Some(std::time::Duration::from_secs(120))).unwrap();
    let tail = out.console_tail.join("\n");
    assert_eq!(out.exit_status, Some(0), "{tail}");
    assert!(
        tail.contains("peapod-init: share podshare mounted: from-the-host.txt volumes"),
        "{tail}"
    );
}

#[test]
fn test_vm_pod_runs_in_guest_over_vsock_and_virtio_fs() {
    // The whole path inside a real guest, rootless: peapod-init leaves the
    // initramfs, mounts the pod share (the busybox image, served by the
    // VMM's virtio-fs device), connects to the host over the VMM's vsock
    // device, takes a pod, runs its container (overlay on the share,
    // pivot_root, its own PID namespace), and streams the container's output
    // and the pod's end back over vsock.
    use peapod_proto::{
        Backoff, Connection, ContainerEvent, GuestMsg, HostMsg, PodPhase, RestartPolicy, Stream,
        WirePod,
    };
    if std::env::var_os(INNER).is_none() && !host_boots_guests() {
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "PEAPOD_INIT={} PEAPOD_TEST_IMAGE={} {INNER}=1 exec {} --exact test_vm_pod_runs_in_guest_over_vsock_and_virtio_fs --nocapture",
            init_binary().display(),
            test_image().display(),
            exe.display()
        );
        let out = on_guest_capable_kvm(&["sh", "-c", &script]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("1 passed"), "{out:?}");
        return;
    }
    const PORT: u32 = 1024;
    let kvm = peapod::vmm::vstate::kvm::open_kvm().unwrap();
    let dir = TempDir::new("vm-agent");
    let uds = dir.0.join("vsock.sock");
    let listener =
        std::os::unix::net::UnixListener::bind(format!("{}_{PORT}", uds.display())).unwrap();
    let cfg = peapod::vmm::VmConfig {
        mem_bytes: 192 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: std::env::var_os("PEAPOD_TEST_CONSOLE").is_some(),
        vsock_uds: Some(uds.clone()),
        fs_share: Some(peapod::vmm::FsShare {
            tag: "podshare".into(),
            path: test_image().to_path_buf(),
            read_only: true,
        }),
    };
    let mut vm = peapod::vmm::Vm::new(&kvm, &cfg).unwrap();
    let initrd =
        peapod::vmm::boot::initramfs::build(std::fs::read(init_binary()).unwrap()).unwrap();
    let mut cmdline = peapod::cli::run::kernel_cmdline("agent-test", false).unwrap();
    cmdline
        .insert(peapod_proto::CMDLINE_SHARE_TAG, "podshare")
        .unwrap();
    cmdline.insert("peapod.agent", &PORT.to_string()).unwrap();
    vm.load_linux(&guest_kernel(), &initrd, cmdline).unwrap();
    let vm_thread =
        std::thread::spawn(move || vm.run(Some(std::time::Duration::from_secs(120))).unwrap());

    // Accept the guest's connection, unless the VM ends first.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if vm_thread.is_finished() || std::time::Instant::now() > deadline {
                    let outcome = vm_thread.join().unwrap();
                    panic!(
                        "the guest never connected over vsock:\n{}",
                        outcome.console_tail.join("\n")
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let mut conn = Connection::new(stream);
    let hello = conn.handshake_host("vm test").unwrap();
    assert!(hello.agent.contains("peapod-init"), "{hello:?}");
    let ready: GuestMsg = conn.recv().unwrap().unwrap();
    assert!(matches!(ready, GuestMsg::Ready { .. }), "{ready:?}");
    let container = sh("hello", "echo hello-from-$(hostname); cat /proc/1/comm");
    let pod = WirePod {
        name: "agent-test".into(),
        hostname: "agent-test".into(),
        init_containers: vec![],
        containers: vec![container],
        volumes: vec![],
        restart_policy: RestartPolicy::Never,
        grace_period_s: 5,
        backoff: Backoff {
            initial_ms: 100,
            max_ms: 1000,
        },
        share_process_namespace: false,
    };
    conn.send(&HostMsg::RunPod(Box::new(pod))).unwrap();
    let mut stdout = Vec::new();
    let mut started = false;
    let end = loop {
        match conn.recv::<GuestMsg>().unwrap() {
            Some(GuestMsg::Log {
                stream: Stream::Stdout,
                data,
                ..
            }) => stdout.extend_from_slice(&data),
            Some(GuestMsg::ContainerEvent {
                event: ContainerEvent::Started { .. },
                ..
            }) => started = true,
            Some(GuestMsg::PodExited { phase, reason }) => break (phase, reason),
            Some(other) => eprintln!("guest: {other:?}"),
            None => panic!("the guest closed the connection before the pod ended"),
        }
    };
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let outcome = vm_thread.join().unwrap();
    let tail = outcome.console_tail.join("\n");
    assert!(started, "{tail}");
    assert_eq!(end.0, PodPhase::Succeeded, "{end:?}\n{stdout}\n{tail}");
    assert!(
        stdout.contains("hello-from-agent-test"),
        "runs with the pod's hostname: {stdout}\n{tail}"
    );
    // sh runs its last command in place, so `cat` itself is PID 1 of the
    // container's own PID namespace.
    assert!(
        stdout.lines().any(|l| l == "cat"),
        "the container is PID 1 of its own namespace: {stdout}"
    );
    assert_eq!(
        outcome.exit_status,
        Some(0),
        "peapod-init reported the pod's success: {tail}"
    );
    assert!(
        tail.contains("peapod-init: share podshare mounted: busybox.tar oci rootfs"),
        "{tail}"
    );
}
