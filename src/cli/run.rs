//! `peapod run POD.yaml`: validate the pod, size and boot its microVM, wait
//! for peapod-init, report, and exit with the pod's status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use linux_loader::loader::Cmdline;

use super::{paths, Failure, GuestArgs};
use crate::admission::{pod_cpu_request, Capacity, Ledger};
use crate::vmm::boot::{self, initramfs};
use crate::vmm::vstate::kvm::{self, KvmFlavour, PVM_ADVICE};
use crate::vmm::{RunOutcome, Vm, VmConfig, GUEST_MEMORY_OVERHEAD};

/// Arguments of `peapod run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pod: a Kubernetes Pod YAML file (apiVersion v1, kind Pod).
    pub pod: PathBuf,
    /// How the pod is isolated from the host. `vm` (the default): a KVM
    /// microVM. `namespace`: the containers run on the host's kernel in
    /// Linux namespaces, for development and hosts without KVM; this is NOT
    /// a VM boundary, and it needs root for now.
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Isolation::Vm)]
    pub isolation: Isolation,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Show the guest console on the terminal (stderr).
    #[arg(long)]
    pub console: bool,
    /// Also write the guest console to this file.
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
    /// Print where the time went, from process start to peapod-init ready.
    #[arg(long)]
    pub timings: bool,
    /// Give up if peapod-init is not ready after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub boot_timeout: u64,
    /// Try to boot even where the host's KVM cannot run a guest kernel (PVM):
    /// for diagnosing the VMM, not for running pods.
    #[arg(long, hide = true)]
    pub force_boot: bool,
}

/// How a pod is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// A KVM microVM per pod.
    Vm,
    /// Linux namespaces on the host (no VM boundary; root only for now).
    Namespace,
}

/// The kernel command line of a pod's guest.
pub fn kernel_cmdline(pod: &str, verbose: bool) -> Result<Cmdline, linux_loader::cmdline::Error> {
    let mut c = Cmdline::new(boot::CMDLINE_MAX_SIZE)?;
    // reboot=k: peapod-init's reboot pulses the i8042 reset line (a clean
    // exit); panic=-1: a panicking guest resets at once instead of hanging.
    c.insert_str("console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 nomodule")?;
    if !verbose {
        c.insert_str("quiet")?;
    }
    c.insert(peapod_proto::CMDLINE_POD_NAME, pod)?;
    Ok(c)
}

struct Timings {
    rows: Vec<(&'static str, Duration)>,
    started: Instant,
}

impl Timings {
    fn mark(&mut self, what: &'static str) {
        self.rows.push((what, self.started.elapsed()));
    }
    fn print(&self, guest_uptime_ms: Option<u64>) {
        eprintln!("timings (since process start):");
        for (what, at) in &self.rows {
            eprintln!("  {what:<24} {:>9.1} ms", at.as_secs_f64() * 1e3);
        }
        if let Some(ms) = guest_uptime_ms {
            eprintln!("  {:<24} {ms:>9} ms", "guest uptime at ready");
        }
    }
}

/// Run the pod.
pub fn run(args: RunArgs, started: Instant) -> Result<ExitCode, Failure> {
    if args.isolation == Isolation::Namespace {
        return super::run_native::run(args);
    }
    let mut t = Timings {
        rows: Vec::new(),
        started,
    };
    // 1. The spec (and its images) first: a bad file gets the same answer on
    //    every machine, before any look at the host.
    let plan = crate::spec::load(&args.pod).map_err(|e| Failure::Usage(e.into()))?;
    t.mark("spec validated");

    // 2. Guest artifacts.
    let kernel = paths::kernel(&args.guest);
    boot::check_kernel(&kernel.path).map_err(|e| {
        Failure::Usage(anyhow!(e).context(format!("kernel from {}", kernel.origin)))
    })?;
    let init = paths::read_init(&paths::init(&args.guest)).map_err(Failure::Usage)?;

    // 3. Admission: the whole VM's memory and the pod's CPU request,
    //    reserved at once or not at all; released on every way out (drop),
    //    and reclaimed by the next peapod if this process dies.
    let mem_bytes = plan.effective_memory() + GUEST_MEMORY_OVERHEAD;
    let capacity = Capacity::resolve().map_err(|e| Failure::Usage(e.into()))?;
    let _reservation = Ledger::new(Ledger::default_dir())
        .reserve(&plan.name, mem_bytes, pod_cpu_request(&plan), &capacity)
        .map_err(|e| Failure::Usage(e.into()))?;
    t.mark("admitted");

    // 4. The host's KVM.
    let kvm = kvm::open_kvm().map_err(|e| Failure::Usage(e.into()))?;
    let flavour = kvm::detect_flavour(&kvm)
        .map_err(|e| Failure::Usage(anyhow!(e).context("cannot query KVM's MSR list")))?;
    if !flavour.can_boot_linux() && !args.force_boot {
        return Err(Failure::Usage(anyhow!("{PVM_ADVICE}")));
    }

    // 5. Size and build the VM.
    let vcpus = plan.vcpus().min(u32::from(boot::mptable::MAX_VCPUS)) as u8;
    let cfg = VmConfig {
        mem_bytes,
        vcpus,
        console_log: args.console_log.clone(),
        console_echo: args.console,
        vsock_uds: None,
        fs_share: None,
    };
    let initrd = initramfs::build(init)
        .map_err(|e| Failure::Runtime(anyhow!(e).context("cannot build the initramfs")))?;
    let mut vm = Vm::new(&kvm, &cfg).map_err(|e| Failure::Runtime(e.into()))?;
    t.mark("VM created");
    let cmdline = kernel_cmdline(&plan.name, args.console)
        .map_err(|e| Failure::Runtime(anyhow!("kernel command line: {e}")))?;
    vm.load_linux(&kernel.path, &initrd, cmdline)
        .map_err(|e| Failure::Runtime(e.into()))?;
    t.mark("kernel loaded");
    log::info!(
        "pod {}: {} MiB, {} vCPU(s), kernel {}",
        plan.name,
        mem_bytes >> 20,
        vcpus,
        kernel.path.display()
    );

    // 6. Boot and wait (run() starts the vCPU threads at once).
    t.mark("first KVM_RUN");
    let outcome: RunOutcome = vm
        .run(Some(Duration::from_secs(args.boot_timeout)))
        .map_err(|e| Failure::Runtime(e.into()))?;
    if let Some((at, uptime)) = outcome.ready {
        t.rows.push((
            "peapod-init ready",
            t.rows.last().map(|r| r.1).unwrap_or_default() + at,
        ));
        println!(
            "{}: peapod-init ready (guest uptime {uptime} ms)",
            plan.name
        );
    }
    if args.timings {
        t.print(outcome.ready.map(|r| r.1));
        eprintln!(
            "  {:<24} {:>9.1} ms",
            "VM ran for",
            outcome.ran_for.as_secs_f64() * 1e3
        );
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        if let Some(rss) = outcome.process_rss {
            eprintln!(
                "  {:<24} {:>9.1} MiB",
                "VMM RSS excl. guest",
                mib(rss.saturating_sub(outcome.guest_resident))
            );
        }
        eprintln!(
            "  {:<24} {:>9.1} MiB of {}",
            "guest memory touched",
            mib(outcome.guest_resident),
            mib(mem_bytes)
        );
    }
    if let Some(msg) = outcome.explain(flavour) {
        return Err(Failure::Runtime(anyhow!("pod {}: {msg}", plan.name)));
    }
    let status = outcome.exit_status.unwrap_or(1);
    println!("{}: exited with status {status}", plan.name);
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

/// Whether a flavour of KVM can run pods here (used by doctor).
pub fn can_run_here(flavour: KvmFlavour) -> bool {
    flavour.can_boot_linux()
}
