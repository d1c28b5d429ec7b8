//! `peapod doctor`: what this host can and cannot do, and how to fix it.

use std::process::ExitCode;

use super::{Failure, GuestArgs};
use crate::sandbox::artifacts;
use crate::vmm::boot;
use crate::vmm::vstate::kvm::{self, KvmFlavour};

/// Arguments of `peapod doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// Report on the host. Exits 0 when pods can run here directly, 1 otherwise.
pub fn doctor(args: DoctorArgs) -> Result<ExitCode, Failure> {
    let mut ok = true;
    let mut line = |good: bool, what: &str, detail: String| {
        ok &= good;
        println!("{} {what:<14} {detail}", if good { "ok  " } else { "FAIL" });
    };

    match kvm::open_kvm() {
        Ok(k) => {
            line(true, "/dev/kvm", "accessible".into());
            match kvm::detect_flavour(&k) {
                Ok(KvmFlavour::Hardware) => {
                    line(true, "KVM flavour", KvmFlavour::Hardware.to_string())
                }
                Ok(KvmFlavour::Pvm) => line(
                    false,
                    "KVM flavour",
                    format!("{}: {}", KvmFlavour::Pvm, kvm::PVM_ADVICE),
                ),
                Err(e) => line(
                    false,
                    "KVM flavour",
                    format!("cannot read KVM's MSR list: {e}"),
                ),
            }
        }
        Err(e) => line(false, "/dev/kvm", e.to_string()),
    }

    let kernel = artifacts::kernel(&args.guest.paths());
    match boot::check_kernel(&kernel.path) {
        Ok(format) => line(
            true,
            "guest kernel",
            format!(
                "{} ({format:?}, from {})",
                kernel.path.display(),
                kernel.origin
            ),
        ),
        Err(e) => line(false, "guest kernel", e.to_string()),
    }
    let init = artifacts::init(&args.guest.paths());
    match artifacts::read_init(&init) {
        Ok(_) => line(
            true,
            "peapod-init",
            format!("{} (from {})", init.path.display(), init.origin),
        ),
        Err(e) => line(false, "peapod-init", e.to_string()),
    }
    // Not fatal: pods still run with --network none.
    match which("passt") {
        Some(p) => println!(
            "ok   {:<14} {} (the pod network: virtio-net backed by passt, rootless)",
            "passt",
            p.display()
        ),
        None => println!(
            "warn {:<14} not installed: pods have no network (only --network none works); \
             install it: apt install passt",
            "passt"
        ),
    }
    // Not fatal: the VMM's threads are confined by seccomp either way.
    match crate::vmm::jail::landlock_abi() {
        Some(abi) => println!(
            "ok   {:<14} ABI {abi}: the VMM's guest-facing threads are kept to the pod's files",
            "Landlock"
        ),
        None => println!(
            "warn {:<14} not available in this kernel (5.13+, with landlock in its lsm= list): \
             the VMM's threads run without it (seccomp still applies)",
            "Landlock"
        ),
    }
    let runner_ok = which("qemu-system-x86_64").is_some();
    println!(
        "info {:<14} {}",
        "kvm-runner",
        if runner_ok {
            "qemu-system-x86_64 found: scripts/kvm-runner can run pods in an emulated KVM host"
                .to_string()
        } else {
            "qemu-system-x86_64 missing (scripts/kvm-runner installs it: apt-get install qemu-system-x86)".to_string()
        }
    );
    println!(
        "{}",
        if ok {
            "pods can run on this host"
        } else {
            "pods cannot run directly on this host (see FAIL lines)"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
