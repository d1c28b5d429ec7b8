//! `peapod run POD.yaml`: validate the pod, size and boot its microVM, wait
//! for peapod-init, report, and exit with the pod's status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use linux_loader::loader::Cmdline;
use peapod_proto::{VolumeKind, WirePod};

use super::{attach, image, native_pod, paths, Failure, GuestArgs};
use crate::admission::{pod_cpu_request, Capacity, Ledger};
use crate::sandbox::state::now_ns;
use crate::sandbox::{self, Launch, NetLaunch, PodState, Publish, Share, VmLaunch};
use crate::vmm::boot;
use crate::vmm::vstate::kvm::{self, KvmFlavour, PVM_ADVICE};
use crate::vmm::GUEST_MEMORY_OVERHEAD;

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
    /// Print where the time went, from process start to peapod-init ready,
    /// and the VMM's memory use, when the pod ends.
    #[arg(long)]
    pub timings: bool,
    /// Give up if peapod-init is not ready after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub boot_timeout: u64,
    /// The pod's network: `passt` (the default: a virtio-net device backed
    /// by passt, the host's address and routes, hostPorts published) or
    /// `none` (loopback only; also the annotation `peapod.io/network: none`).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Network::Passt)]
    pub network: Network,
    /// Publish a container port on the host, as `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]`
    /// (in addition to the spec's hostPorts).
    #[arg(short, long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Start the pod and return: it keeps running (`peapod ps`, `logs`,
    /// `exec`, `stop`, `rm`).
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the pod (its state and logs) after an attached run ends, for
    /// `peapod logs` and `inspect`; `peapod rm` removes it.
    #[arg(long, conflicts_with = "detach")]
    pub keep: bool,
    /// Try to boot even where the host's KVM cannot run a guest kernel (PVM):
    /// for diagnosing the VMM, not for running pods.
    #[arg(long, hide = true)]
    pub force_boot: bool,
}

/// The pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// virtio-net with passt (rootless, no TAP device).
    Passt,
    /// Loopback only.
    None,
}

/// The annotation that turns the network off (`none`).
pub const NETWORK_ANNOTATION: &str = "peapod.io/network";

/// Parse `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp|/tcp]`.
pub fn parse_publish(text: &str) -> Result<Publish, String> {
    let bad = |why: &str| {
        format!("-p {text}: {why}; write [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp], e.g. -p 8080:80")
    };
    let (ports, udp) = match text.rsplit_once('/') {
        Some((p, "udp")) => (p, true),
        Some((p, "tcp")) => (p, false),
        Some(_) => return Err(bad("the protocol is tcp or udp")),
        None => (text, false),
    };
    let (ip, host, container) = match ports.rsplitn(3, ':').collect::<Vec<_>>()[..] {
        [c, h] => (None, h, c),
        [c, h, ip] => (Some(ip.trim_matches(['[', ']'])), h, c),
        _ => return Err(bad("missing the container port")),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| bad("the host IP is not an address"))?,
        ),
    };
    Ok(Publish {
        host_ip,
        host_port: port(host).ok_or_else(|| bad("the host port is not 1-65535"))?,
        container_port: port(container).ok_or_else(|| bad("the container port is not 1-65535"))?,
        udp,
    })
}

/// The pod's network from the flags and the spec: `None` for loopback
/// only. Checks what can be checked before anything starts: passt is
/// installed, every host port is free.
fn pod_network(args: &RunArgs, plan: &crate::spec::PodPlan) -> anyhow::Result<Option<NetLaunch>> {
    let mut publish = Vec::new();
    for c in plan.init_containers.iter().chain(&plan.containers) {
        for (j, p) in c.ports.iter().enumerate() {
            let Some(host_port) = p.host_port else {
                continue;
            };
            let field = format!("container {} ports[{j}]", c.name);
            let host_ip = match p.host_ip.as_deref() {
                None | Some("") | Some("0.0.0.0") => None,
                Some(ip) => Some(ip.parse().map_err(|_| {
                    anyhow!(
                        "{}: {field}.hostIP: {ip:?} is not an IP address",
                        args.pod.display()
                    )
                })?),
            };
            publish.push(Publish {
                host_ip,
                host_port,
                container_port: p.container_port,
                udp: p.protocol == crate::spec::Protocol::Udp,
            });
        }
    }
    for p in &args.publish {
        publish.push(parse_publish(p).map_err(|e| anyhow!(e))?);
    }
    let off = match plan.annotations.get(NETWORK_ANNOTATION).map(String::as_str) {
        None | Some("passt") => args.network == Network::None,
        Some("none") => true,
        Some(other) => {
            return Err(anyhow!(
                "{}: metadata.annotations[\"{NETWORK_ANNOTATION}\"]: {other:?} is not a network \
                 mode; use \"none\" (loopback only) or \"passt\" (the default)",
                args.pod.display()
            ))
        }
    };
    if off {
        if let Some(p) = publish.first() {
            return Err(anyhow!(
                "{}: host port {} is published but the pod has no network (--network none or the {NETWORK_ANNOTATION} annotation); drop one of them",
                args.pod.display(),
                p.host_port
            ));
        }
        return Ok(None);
    }
    if !passt_installed() {
        return Err(anyhow!(
            "the pod network needs passt, which is not installed: apt install passt (or run the pod with --network none)"
        ));
    }
    let forwards: Vec<_> = publish.iter().map(Publish::forward).collect();
    crate::vmm::net::passt::check_forwards(&forwards)
        .map_err(|e| anyhow!(e).context(format!("{}", args.pod.display())))?;
    Ok(Some(NetLaunch {
        publish,
        host_aliases: plan.host_aliases.clone(),
        dns: plan.dns.clone(),
    }))
}

/// Whether `passt` is on the `PATH`.
pub fn passt_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| std::fs::metadata(d.join("passt")).is_ok_and(|m| m.is_file()))
    })
}

/// What `--isolation=namespace` says when not root.
pub const NEEDS_ROOT: &str =
    "--isolation=namespace needs root for now; use the VM isolation (the default)";

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
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

/// Run the pod: check everything that can be checked here, start its
/// monitor, then attach to it (or, with `-d`, leave it running).
pub fn run(args: RunArgs, started: Instant) -> Result<ExitCode, Failure> {
    let cli_started_ns = now_ns().saturating_sub(started.elapsed().as_nanos() as u64);
    let usage = |e: anyhow::Error| Failure::Usage(e);
    // 1. The spec and its images first: a bad file gets the same answer on
    //    every machine, before any look at the host.
    let plan = crate::spec::load(&args.pod).map_err(|e| Failure::Usage(e.into()))?;
    if args.isolation == Isolation::Namespace && !is_root() {
        return Err(usage(anyhow!("{}", NEEDS_ROOT)));
    }
    let mut pod: WirePod = native_pod::wire_pod(&plan, &image::store())
        .map_err(|e| usage(e.context(format!("{}", args.pod.display()))))?;

    // 2. Guest artifacts.
    let init = paths::init(&args.guest);
    // The monitor reads it again for the initramfs; this checks it first.
    paths::read_init(&init).map_err(usage)?;
    let kernel = if args.isolation == Isolation::Vm {
        let kernel = paths::kernel(&args.guest);
        boot::check_kernel(&kernel.path)
            .map_err(|e| usage(anyhow!(e).context(format!("kernel from {}", kernel.origin))))?;
        Some(absolute(&kernel.path))
    } else {
        None
    };

    // 3. Admission, as a check: the monitor reserves for real (atomically,
    //    under the ledger's lock) and would refuse the same way.
    let (memory, vm) = match kernel {
        Some(kernel) => {
            let mem_bytes = plan.effective_memory() + GUEST_MEMORY_OVERHEAD;
            let vcpus = plan.vcpus().min(u32::from(boot::mptable::MAX_VCPUS)) as u8;
            let shares = vm_shares(&mut pod);
            let net = pod_network(&args, &plan).map_err(usage)?;
            let vm = VmLaunch {
                kernel,
                mem_bytes,
                vcpus,
                shares,
                console_log: args.console_log.as_deref().map(absolute),
                verbose_console: args.console,
                net,
            };
            (mem_bytes, Some(vm))
        }
        // No guest kernel to add in namespace mode.
        None => (plan.effective_memory(), None),
    };
    let millicpu = pod_cpu_request(&plan);
    let capacity = Capacity::resolve().map_err(|e| usage(e.into()))?;
    Ledger::new(sandbox::runtime_dir())
        .check(&plan.name, memory, millicpu, &capacity)
        .map_err(|e| usage(e.into()))?;

    // 4. The host's KVM.
    if vm.is_some() {
        let kvm = kvm::open_kvm().map_err(|e| usage(e.into()))?;
        let flavour = kvm::detect_flavour(&kvm)
            .map_err(|e| usage(anyhow!(e).context("cannot query KVM's MSR list")))?;
        if !flavour.can_boot_linux() && !args.force_boot {
            return Err(usage(anyhow!("{PVM_ADVICE}")));
        }
    }

    // 5. The monitor.
    let images = plan
        .init_containers
        .iter()
        .chain(&plan.containers)
        .map(|c| (c.name.clone(), c.image.to_string()))
        .collect();
    let launch = Launch {
        spec_file: absolute(&args.pod),
        pod,
        images,
        isolation: match args.isolation {
            Isolation::Vm => sandbox::Isolation::Vm,
            Isolation::Namespace => sandbox::Isolation::Namespace,
        },
        memory,
        millicpu,
        init: absolute(&init.path),
        vm,
        boot_timeout_s: args.boot_timeout,
        deadline_s: plan.active_deadline_seconds,
        cli_started_ns,
    };
    let name = plan.name.clone();
    // Attached, a Ctrl-C from now on ends the pod, also while it starts.
    let mut signals = None;
    let started = sandbox::start(&launch, |monitor| {
        if !args.detach {
            match attach::Signals::install(monitor) {
                Ok(s) => signals = Some(s),
                Err(e) => log::warn!("cannot handle signals: {e}"),
            }
        }
    });
    match started {
        Ok(started) if args.detach => {
            drop(started.monitor);
            println!("{name}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(started) => attach::attach(&name, started, signals.as_ref(), &args),
        Err((e, monitor_pid)) => {
            let dir = sandbox::pod_dir(&name);
            let ours = PodState::load(&dir)
                .ok()
                .filter(|s| s.monitor_pid == monitor_pid);
            if let (Some(state), true) = (&ours, args.timings) {
                attach::print_timings(state);
            }
            let interrupted = signals.as_ref().is_some_and(attach::Signals::interrupted);
            let mut message = if interrupted {
                format!("pod {name}: interrupted before it started, so it was ended")
            } else {
                e.message
            };
            if ours.is_some() {
                if args.detach || args.keep {
                    message.push_str(&format!(
                        "\n`peapod inspect {name}` shows the pod; `peapod rm {name}` removes it"
                    ));
                } else {
                    let _ = sandbox::remove(&dir);
                }
            }
            Err(if interrupted {
                Failure::Interrupted(anyhow!(message))
            } else if e.usage {
                Failure::Usage(anyhow!(message))
            } else {
                Failure::Runtime(anyhow!(message))
            })
        }
    }
}

/// `path` made absolute (the monitor works in the pod directory).
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Give each distinct image root filesystem and hostPath directory of a VM
/// pod its own virtio-fs share, and point the pod at them (`img<N>`,
/// `vol<N>` under the guest's share directory).
pub fn vm_shares(pod: &mut WirePod) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    let tag_of = |path: &str, prefix: &str, read_only: bool, shares: &mut Vec<Share>| {
        let host = std::path::Path::new(native_pod::SHARE_ROOT).join(path);
        if let Some(s) = shares
            .iter()
            .find(|s| s.path == host && s.read_only == read_only)
        {
            return s.tag.clone();
        }
        let n = shares.iter().filter(|s| s.tag.starts_with(prefix)).count();
        let tag = format!("{prefix}{n}");
        shares.push(Share {
            tag: tag.clone(),
            path: host,
            read_only,
        });
        tag
    };
    for c in pod
        .init_containers
        .iter_mut()
        .chain(pod.containers.iter_mut())
    {
        c.rootfs = tag_of(&c.rootfs, "img", true, &mut shares);
    }
    let mounts: Vec<_> = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .flat_map(|c| c.volume_mounts.clone())
        .collect();
    for v in &mut pod.volumes {
        if let VolumeKind::HostPath { path } = &mut v.kind {
            // Writable unless every mount of it is read-only.
            let read_only = mounts
                .iter()
                .filter(|m| m.volume == v.name)
                .all(|m| m.read_only);
            *path = tag_of(path, "vol", read_only, &mut shares);
        }
    }
    shares
}

/// Whether a flavour of KVM can run pods here (used by doctor).
pub fn can_run_here(flavour: KvmFlavour) -> bool {
    flavour.can_boot_linux()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_publish_forms_and_errors() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.udp),
            (None, 8080, 80, false)
        );
        let p = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert!(p.udp);
        let p = parse_publish("[::1]:8443:443/tcp").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in [
            "80",
            "0:80",
            "8080:70000",
            "x:80",
            "1.2.3:8080:80",
            "8080:80/sctp",
        ] {
            let e = parse_publish(bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("HOST_PORT:CONTAINER_PORT"),
                "{e}"
            );
        }
    }
}
