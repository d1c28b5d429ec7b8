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
