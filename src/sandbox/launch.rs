//! The start sequence of a pod, below any client (`peapod run`, the
//! containerd shim): the spec and its images, the guest kernel and init,
//! the pod network's host side, an admission check and the host's KVM,
//! everything checked before anything is created. [`prepare`] turns a Pod
//! YAML and [`PodOptions`] into the [`Launch`] that [`super::start`] hands to
//! a new monitor.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use linux_loader::loader::Cmdline;
use peapod_proto::{VolumeKind, WirePod};

use super::artifacts::{self, GuestPaths};
use super::{wire, Isolation, Launch, NetLaunch, Publish, Share, VmLaunch};
use crate::admission::{pod_cpu_request, Capacity, Ledger};
use crate::spec::PodPlan;
use crate::vmm::boot;
use crate::vmm::vstate::kvm::{self, PVM_ADVICE};
use crate::vmm::GUEST_MEMORY_OVERHEAD;

/// The annotation that turns the network off (`none`).
pub const NETWORK_ANNOTATION: &str = "peapod.io/network";

/// The annotation by which a pod asks to reach the host's loopback through
/// its gateway address (`"true"`); without it the pod reaches no service
/// that listens only on the host's 127.0.0.1.
pub const HOST_LOOPBACK_ANNOTATION: &str = "peapod.io/host-loopback";

/// What `--isolation=namespace` says when not root.
pub const NEEDS_ROOT: &str =
    "--isolation=namespace needs root for now; use the VM isolation (the default)";

/// How a pod is to be started, beyond its spec.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// VM or namespaces.
    pub isolation: Isolation,
    /// Guest kernel and init (VM pods boot the kernel; both run the init).
    pub guest: GuestPaths,
    /// Loopback only (`--network none`), whatever the spec says.
    pub no_network: bool,
    /// Ports published in addition to the spec's hostPorts.
    pub publish: Vec<Publish>,
    /// Copy the guest console to the monitor's stderr.
    pub verbose_console: bool,
    /// Also write the guest console to this file.
    pub console_log: Option<PathBuf>,
    /// Give up when peapod-init is not ready after this many seconds.
    pub boot_timeout_s: u64,
    /// Boot even where this host's KVM cannot run a guest kernel (PVM).
    pub force_boot: bool,
    /// When the client started (realtime ns), for `--timings`.
    pub started_ns: u64,
    /// Directories the pod file may reach besides those of the
    /// environment and the settings file (`--allow-host-path`).
    pub allow_host_paths: Vec<PathBuf>,
    /// Files of ConfigMaps, Secrets and PersistentVolumeClaims
    /// (`--configmap`).
    pub configmaps: Vec<PathBuf>,
    /// How registries are reached when an image is pulled.
    pub pull: crate::image::registry::PullOptions,
}

/// Check everything that can be checked before a pod starts, and describe
/// the pod's monitor. Every error is one of the caller's input or of this
/// host (nothing was created): it names the file, the field and the fix.
pub fn prepare(spec_file: &Path, opts: &PodOptions) -> anyhow::Result<(PodPlan, Launch)> {
    // 1. The spec and its images first: a bad file gets the same answer on
    //    every machine, before any look at the host.
    let plan = crate::spec::load_with(spec_file, &opts.configmaps)?;
    // Before anything reads or creates a host path the pod file names.
    let settings = crate::settings::Settings::load()?;
    let allowed = super::host_paths::AllowedPaths::load(&opts.allow_host_paths, &settings)?;
    check_host_paths(&plan, &allowed).map_err(|e| anyhow!("{}: {e}", spec_file.display()))?;
    if opts.isolation == Isolation::Namespace && !is_root() {
        return Err(anyhow!("{NEEDS_ROOT}"));
    }
    // Images from registries, as each container's imagePullPolicy says.
    let store = artifacts::image_store();
    super::pull_policy::ensure_images(&plan, &store, &opts.pull)
        .map_err(|e| anyhow!("{}: {e}", spec_file.display()))?;
    // With the manifests the pod runs, so `image rm` and `prune` know them.
    let (mut pod, image_digests) =
        wire::wire_pod(&plan, &store).map_err(|e| e.context(format!("{}", spec_file.display())))?;

    // 2. Guest artifacts.
    let init = artifacts::init(&opts.guest);
    // Checked here; a VM boots the initramfs cached for it.
    let initrd = artifacts::initramfs(&init, opts.isolation == Isolation::Vm)?;

    // 3. Admission, as a check: the monitor reserves for real (atomically,
    //    under the ledger's lock) and would refuse the same way.
    let (memory, vm) = match opts.isolation {
        Isolation::Vm => {
            let kernel = guest_kernel(opts)?;
            let mem_bytes = plan.effective_memory() + GUEST_MEMORY_OVERHEAD;
            let vcpus = plan.vcpus().min(u32::from(boot::mptable::MAX_VCPUS)) as u8;
            let shares = vm_shares(&mut pod);
            let net = pod_network(spec_file, opts, &plan)?;
            let vm = VmLaunch {
                kernel,
                initrd,
                mem_bytes,
                vcpus,
                shares,
                console_log: opts.console_log.as_deref().map(absolute),
                verbose_console: opts.verbose_console,
                net,
            };
            (mem_bytes, Some(vm))
        }
        // No guest kernel to add in namespace mode.
        Isolation::Namespace => (plan.effective_memory(), None),
    };
    let millicpu = pod_cpu_request(&plan);
    let capacity = Capacity::resolve()?;
    Ledger::new(super::runtime_dir()).check(&plan.name, memory, millicpu, &capacity)?;

    // 4. The host's KVM.
    if vm.is_some() {
        check_kvm(opts)?;
    }

    let images = plan
        .init_containers
        .iter()
        .chain(&plan.containers)
        .map(|c| (c.name.clone(), c.image.to_string()))
        .collect();
    let launch = Launch {
        spec_file: absolute(spec_file),
        pod,
        images,
        image_digests,
        isolation: opts.isolation,
        memory,
        millicpu,
        init: absolute(&init.path),
        vm,
        boot_timeout_s: opts.boot_timeout_s,
        deadline_s: plan.active_deadline_seconds,
        cli_started_ns: opts.started_ns,
        monitor_exe: None,
        log_limits: crate::settings::Settings::load()?.log_limits()?,
        create_host_paths: plan
            .volumes
            .iter()
            .filter_map(|v| match &v.source {
                crate::spec::VolumeSource::HostPath { path, kind }
                    if wire::host_path_to_create(path, *kind) =>
                {
                    Some((path.clone(), *kind))
                }
                _ => None,
            })
            .collect(),
        claims: plan
            .volumes
            .iter()
            .filter_map(|v| match &v.source {
                crate::spec::VolumeSource::Claim { claim, storage, .. } => {
                    Some(super::claims::Claim {
                        name: claim.clone(),
                        storage: *storage,
                    })
                }
                _ => None,
            })
            .collect(),
    };
    Ok((plan, launch))
}

/// Every host path of the pod file (hostPath volumes, path-based image
/// references) must lie under an allowed directory.
fn check_host_paths(
    plan: &PodPlan,
    allowed: &super::host_paths::AllowedPaths,
) -> Result<(), String> {
    for (i, v) in plan.volumes.iter().enumerate() {
        if let crate::spec::VolumeSource::HostPath { path, .. } = &v.source {
            allowed.check(&format!("spec.volumes[{i}].hostPath.path"), path)?;
        }
    }
    for (field, list) in [
        ("initContainers", &plan.init_containers),
        ("containers", &plan.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            if let Some(path) = c.image.path() {
                allowed.check(&format!("spec.{field}[{i}].image"), path)?;
            }
        }
    }
    Ok(())
}

/// The resources of a sandbox pod, which has no spec to size it from (a
/// CRI sandbox: its size comes from the runtime's annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSize {
    /// Memory for its containers, bytes (a VM adds its guest overhead).
    pub memory: u64,
    /// CPU, millicores.
    pub millicpu: u64,
}

/// Describe a sandbox pod named `name`: it starts without containers and
/// runs until it is stopped; containers join it (`add_container`) and
/// leave it while it runs. A joining container's root filesystem is
/// [`joining_rootfs`]: in a VM, the pod directory's `containers/<name>`,
/// shared with the guest from boot, where the client puts it (the shim
/// mounts containerd's snapshot there).
pub fn prepare_sandbox(name: &str, size: SandboxSize, opts: &PodOptions) -> anyhow::Result<Launch> {
    if let Some(why) = crate::spec::dns_label_problem(name) {
        return Err(anyhow!("sandbox name {name:?}: {why}"));
    }
    if opts.isolation == Isolation::Namespace && !is_root() {
        return Err(anyhow!("{NEEDS_ROOT}"));
    }
    let init = artifacts::init(&opts.guest);
    let initrd = artifacts::initramfs(&init, opts.isolation == Isolation::Vm)?;
    let vm = match opts.isolation {
        Isolation::Namespace => None,
        Isolation::Vm => {
            let kernel = guest_kernel(opts)?;
            let net = (!opts.no_network).then(|| NetLaunch {
                publish: opts.publish.clone(),
                host_aliases: vec![],
                dns: Default::default(),
                host_loopback: false,
            });
            if net.is_some() && !passt_installed() {
                return Err(anyhow!(
                    "the pod network needs passt, which is not installed: apt install passt"
                ));
            }
            Some(VmLaunch {
                kernel,
                initrd,
                mem_bytes: size.memory + GUEST_MEMORY_OVERHEAD,
                vcpus: size
                    .millicpu
                    .div_ceil(1000)
                    .clamp(1, u64::from(boot::mptable::MAX_VCPUS)) as u8,
                // The monitor adds the joining containers' share.
                shares: vec![],
                console_log: opts.console_log.as_deref().map(absolute),
                verbose_console: opts.verbose_console,
                net,
            })
        }
    };
    let memory = vm.as_ref().map_or(size.memory, |v| v.mem_bytes);
    let capacity = Capacity::resolve()?;
    Ledger::new(super::runtime_dir()).check(name, memory, size.millicpu, &capacity)?;
    if vm.is_some() {
        check_kvm(opts)?;
    }
    let pod = WirePod {
        name: name.to_owned(),
        hostname: name.to_owned(),
        init_containers: vec![],
        containers: vec![],
        volumes: vec![],
        // Restarts are the kubelet's business for CRI pods.
        restart_policy: peapod_proto::RestartPolicy::Never,
        grace_period_s: 30,
        backoff: peapod_proto::Backoff {
            initial_ms: 10_000,
            max_ms: 300_000,
        },
        share_process_namespace: false,
        network: None,
        sandbox: true,
        fs_group: None,
        sysctls: Vec::new(),
    };
    Ok(Launch {
        spec_file: PathBuf::new(),
        pod,
        images: vec![],
        image_digests: vec![],
        isolation: opts.isolation,
        memory,
        millicpu: size.millicpu,
        init: absolute(&init.path),
        vm,
        boot_timeout_s: opts.boot_timeout_s,
        deadline_s: None,
        cli_started_ns: opts.started_ns,
        monitor_exe: None,
        log_limits: crate::settings::Settings::load()?.log_limits()?,
        create_host_paths: Vec::new(),
        claims: Vec::new(),
    })
}

/// The guest kernel the options pick, checked (absolute: the monitor works
/// in the pod directory).
fn guest_kernel(opts: &PodOptions) -> anyhow::Result<PathBuf> {
    let kernel = artifacts::kernel(&opts.guest);
    boot::check_kernel(&kernel.path)
        .map_err(|e| anyhow!(e).context(format!("kernel from {}", kernel.origin)))?;
    Ok(absolute(&kernel.path))
}

/// This host's KVM is usable and boots guest kernels (not PVM), unless
/// `force_boot`.
fn check_kvm(opts: &PodOptions) -> anyhow::Result<()> {
    let kvm = kvm::open_kvm()?;
    let flavour =
        kvm::detect_flavour(&kvm).map_err(|e| anyhow!(e).context("cannot query KVM's MSR list"))?;
    if !flavour.can_boot_linux() && !opts.force_boot {
        return Err(anyhow!("{PVM_ADVICE}"));
    }
    Ok(())
}

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

/// The pod's network from the options and the spec: `None` for loopback
/// only. Checks what can be checked before anything starts: passt is
/// installed, every host port is free.
fn pod_network(
    spec_file: &Path,
    opts: &PodOptions,
    plan: &PodPlan,
) -> anyhow::Result<Option<NetLaunch>> {
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
                        spec_file.display()
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
    publish.extend(opts.publish.iter().cloned());
    let off = match plan.annotations.get(NETWORK_ANNOTATION).map(String::as_str) {
        None | Some("passt") => opts.no_network,
        Some("none") => true,
        Some(other) => {
            return Err(anyhow!(
                "{}: metadata.annotations[\"{NETWORK_ANNOTATION}\"]: {other:?} is not a network \
                 mode; use \"none\" (loopback only) or \"passt\" (the default)",
                spec_file.display()
            ))
        }
    };
    let host_loopback = match plan
        .annotations
        .get(HOST_LOOPBACK_ANNOTATION)
        .map(String::as_str)
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(anyhow!(
                "{}: metadata.annotations[\"{HOST_LOOPBACK_ANNOTATION}\"]: {other:?} is neither \
                 \"true\" (the gateway address reaches the host's 127.0.0.1) nor \"false\" (the \
                 default)",
                spec_file.display()
            ))
        }
    };
    if off {
        if let Some(p) = publish.first() {
            return Err(anyhow!(
                "{}: host port {} is published but the pod has no network (--network none or the {NETWORK_ANNOTATION} annotation); drop one of them",
                spec_file.display(),
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
        .map_err(|e| anyhow!(e).context(format!("{}", spec_file.display())))?;
    Ok(Some(NetLaunch {
        publish,
        host_aliases: plan.host_aliases.clone(),
        dns: plan.dns.clone(),
        host_loopback,
    }))
}

/// Whether `passt` is on the `PATH`.
pub fn passt_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| std::fs::metadata(d.join("passt")).is_ok_and(|m| m.is_file()))
    })
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
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

/// `path` made absolute (the monitor works in the pod directory).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Give each distinct image root filesystem and hostPath directory of a VM
/// pod its own virtio-fs share, and point the pod at them (`img<N>`,
/// `vol<N>` under the guest's share directory).
pub fn vm_shares(pod: &mut WirePod) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    let tag_of = |path: &str, prefix: &str, read_only: bool, shares: &mut Vec<Share>| {
        let host = Path::new(wire::SHARE_ROOT).join(path);
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

/// Where a container joining sandbox `pod_dir` keeps its root filesystem,
/// as the host sees it and as the pod names it
/// ([`peapod_proto::WireContainer::rootfs`]). In a VM: the pod directory's
/// `containers/<container>`, which the guest sees through the `ctr` share
/// (read-only; peapod-init puts the container's writable overlay on top).
/// In namespaces the same host directory, named from `/`.
pub fn joining_rootfs(pod_dir: &Path, isolation: Isolation, container: &str) -> (PathBuf, String) {
    let host = pod_dir.join(super::CONTAINERS_DIR).join(container);
    let named = match isolation {
        Isolation::Vm => format!("{}/{container}", super::CONTAINERS_SHARE),
        Isolation::Namespace => host.to_string_lossy().trim_start_matches('/').to_owned(),
    };
    (host, named)
}

/// Where the `index`th host file or directory bound into a container
/// joining sandbox `pod_dir` is bound in the pod directory, as the host
/// sees it and as the pod names it ([`peapod_proto::WireBind::source`]):
/// `binds/<container>/<index>`, the guest's `bnd` share in a VM.
pub fn joining_bind(
    pod_dir: &Path,
    isolation: Isolation,
    container: &str,
    index: usize,
) -> (PathBuf, String) {
    let host = pod_dir
        .join(super::BINDS_DIR)
        .join(container)
        .join(index.to_string());
    let named = match isolation {
        Isolation::Vm => format!("{}/{container}/{index}", super::BINDS_SHARE),
        Isolation::Namespace => host.to_string_lossy().trim_start_matches('/').to_owned(),
    };
    (host, named)
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
