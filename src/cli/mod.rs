//! Subcommands, one file each.

pub mod attach;
pub mod doctor;
pub mod exec;
pub mod image;
pub mod initramfs;
pub mod pods;
pub mod pull;
pub mod run;
pub mod volume;
pub mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

/// Rootless Kubernetes pods in KVM microVMs.
#[derive(Debug, Parser)]
#[command(name = "peapod", version, about, long_about = None)]
pub struct Cli {
    /// More log detail (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// What peapod can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pod (Kubernetes Pod YAML) in a microVM (or, with
    /// --isolation=namespace, in host namespaces: no VM boundary, root only).
    Run(run::RunArgs),
    /// Load and list images of peapod's local image store.
    Image(image::ImageArgs),
    /// Pull an image from its registry into the local store.
    Pull(pull::PullArgs),
    /// Log in to a registry: check the credentials and store them (in the
    /// file podman and docker read).
    Login(pull::LoginArgs),
    /// Remove a registry's stored credentials.
    Logout(pull::LogoutArgs),
    /// Check this host: /dev/kvm access, KVM flavour, guest kernel, guest init.
    Doctor(doctor::DoctorArgs),
    /// List pods (running, ended, and dead ones whose monitor is gone).
    Ps(pods::PsArgs),
    /// Print a container's output (CRI log of its current run).
    Logs(pods::LogsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Wait until a pod is running, has completed, or is deleted.
    Wait(wait::WaitArgs),
    /// Stop a pod: SIGTERM to its containers, SIGKILL after the grace period.
    Stop(pods::StopArgs),
    /// Remove an ended pod (its state and logs); -f stops it first.
    Rm(pods::RmArgs),
    /// Show everything peapod knows about a pod, as JSON.
    Inspect(pods::InspectArgs),
    /// Write the guest initramfs (peapod-init) to a file, for other VMMs.
    Initramfs(initramfs::InitramfsArgs),
    /// List, inspect and remove named volumes (PersistentVolumeClaims).
    Volume(volume::VolumeArgs),
    /// The per-pod monitor (started by `peapod run`).
    #[command(name = "__monitor", hide = true)]
    Monitor,
    /// A VM pod's VMM (started by its monitor).
    #[command(name = "__vmm", hide = true)]
    Vmm,
}

/// A command failure and its exit code: 2 for bad input or a host that
/// cannot run pods (nothing was started), 1 for a pod that failed at run time.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or unusable host: nothing was created.
    Usage(anyhow::Error),
    /// The pod started and failed.
    Runtime(anyhow::Error),
    /// A signal (Ctrl-C) ended the pod before it started.
    Interrupted(anyhow::Error),
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
            Failure::Interrupted(_) => 130,
        }
    }

    /// The whole cause chain, once.
    pub fn message(&self) -> String {
        let (Failure::Usage(e) | Failure::Runtime(e) | Failure::Interrupted(e)) = self;
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
        }
        msg
    }
}

/// Run the parsed command.
pub fn dispatch(cli: Cli, started: Instant) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Run(args) => run::run(args, started),
        Command::Image(args) => image::image(args),
        Command::Pull(args) => pull::pull(args),
        Command::Login(args) => pull::login(args),
        Command::Logout(args) => pull::logout(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Ps(args) => pods::ps(args),
        Command::Logs(args) => pods::logs(args),
        Command::Exec(args) => exec::exec(args),
        Command::Wait(args) => wait::wait(args),
        Command::Stop(args) => pods::stop(args),
        Command::Rm(args) => pods::rm(args),
        Command::Inspect(args) => pods::inspect(args),
        Command::Initramfs(args) => initramfs::initramfs(args),
        Command::Volume(args) => volume::volume(args),
        Command::Monitor => Ok(crate::sandbox::monitor::main()),
        Command::Vmm => Ok(crate::sandbox::vmm_process::main()),
    }
}

/// Options shared by commands that need a guest kernel and init.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    /// Guest kernel (ELF vmlinux or bzImage). Default: $PEAPOD_KERNEL, then
    /// the kernel scripts/build-kernel cached.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The statically linked peapod-init binary. Default: $PEAPOD_INIT, then
    /// next to this peapod binary.
    #[arg(long, value_name = "PATH")]
    pub init: Option<PathBuf>,
}

impl GuestArgs {
    /// What the pod API takes.
    pub fn paths(&self) -> crate::sandbox::artifacts::GuestPaths {
        crate::sandbox::artifacts::GuestPaths {
            kernel: self.kernel.clone(),
            init: self.init.clone(),
        }
    }
}
