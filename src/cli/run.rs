//! `peapod run POD.yaml`: validate the pod, size and boot its microVM, wait
//! for peapod-init, report, and exit with the pod's status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;

use super::{attach, Failure, GuestArgs};
use crate::sandbox::launch::{self, PodOptions};
use crate::sandbox::state::now_ns;
use crate::sandbox::{self, PodState};

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
    /// Let the pod file reach host paths under DIR (hostPath volumes,
    /// `oci:`/`oci-archive:`/`docker-archive:`/`rootfs:` images); also
    /// PEAPOD_ALLOW_HOST_PATHS and `allowHostPaths` in
    /// ~/.config/peapod/config.yaml. Repeatable.
    #[arg(long = "allow-host-path", value_name = "DIR")]
    pub allow_host_paths: Vec<std::path::PathBuf>,
    /// A YAML file of ConfigMaps, Secrets and PersistentVolumeClaims the
    /// pod uses (as `podman kube play --configmap`); they may also be
    /// documents of the pod file itself. Repeatable.
    #[arg(long = "configmap", value_name = "FILE")]
    pub configmaps: Vec<std::path::PathBuf>,
    /// How images are pulled from registries.
    #[command(flatten)]
    pub registry: super::pull::RegistryArgs,
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

/// How a pod is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// A KVM microVM per pod.
    Vm,
    /// Linux namespaces on the host (no VM boundary; root only for now).
    Namespace,
}

/// Run the pod: check everything that can be checked here, start its
/// monitor, then attach to it (or, with `-d`, leave it running).
pub fn run(args: RunArgs, started: Instant) -> Result<ExitCode, Failure> {
    let started_ns = now_ns().saturating_sub(started.elapsed().as_nanos() as u64);
    let publish = args
        .publish
        .iter()
        .map(|p| launch::parse_publish(p).map_err(|e| Failure::Usage(anyhow!(e))))
        .collect::<Result<_, _>>()?;
    let opts = PodOptions {
        isolation: match args.isolation {
            Isolation::Vm => sandbox::Isolation::Vm,
            Isolation::Namespace => sandbox::Isolation::Namespace,
        },
        guest: args.guest.paths(),
        no_network: args.network == Network::None,
        publish,
        verbose_console: args.console,
        console_log: args.console_log.clone(),
        boot_timeout_s: args.boot_timeout,
        force_boot: args.force_boot,
        started_ns,
        allow_host_paths: args.allow_host_paths.clone(),
        configmaps: args.configmaps.clone(),
        pull: args.registry.options().map_err(Failure::Usage)?,
    };
    let (plan, launch) = launch::prepare(&args.pod, &opts).map_err(Failure::Usage)?;
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
