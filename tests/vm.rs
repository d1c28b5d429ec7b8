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
