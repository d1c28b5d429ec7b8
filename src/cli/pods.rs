//! `peapod ps`, `logs`, `stop`, `rm`, `inspect`: the pods of this user,
//! read from their directories and asked through their monitors.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use super::attach::print_line;
use super::Failure;
use crate::sandbox::api::{self, Request};
use crate::sandbox::crilog::Follower;
use crate::sandbox::state::now_ns;
use crate::sandbox::state::ContainerInfo;
use crate::sandbox::{self, PodState};
use peapod_proto::ContainerState;

/// Arguments of `peapod ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// `table` (the default) or `json`.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How `ps` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns for people.
    Table,
    /// One JSON array, for programs.
    Json,
}

/// Arguments of `peapod logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's first app container).
    #[arg(short, long, value_name = "NAME", conflicts_with = "all_containers")]
    pub container: Option<String>,
    /// Every container's log (init containers first, in spec order), each
    /// line prefixed with `[container] `.
    #[arg(long)]
    pub all_containers: bool,
    /// Keep printing output as it comes, until the pod ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Start each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// Arguments of `peapod stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The pod.
    pub pod: String,
    /// Seconds between SIGTERM and SIGKILL (default: the pod's
    /// terminationGracePeriodSeconds).
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Arguments of `peapod rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The pods.
    #[arg(required = true)]
    pub pods: Vec<String>,
    /// Kill a running pod first.
    #[arg(short, long)]
    pub force: bool,
}

/// Arguments of `peapod inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The pod.
    pub pod: String,
}

fn usage(e: anyhow::Error) -> Failure {
    Failure::Usage(e)
}

/// One pod in `ps --output json`. A stable interface for scripts (the
/// README lists the fields): fields are added, never renamed or removed.
#[derive(Debug, Serialize)]
struct PsRow<'a> {
    /// `metadata.name`.
    name: &'a str,
    /// Pending, Running, Succeeded, Failed, or Dead (its monitor is gone).
    status: &'a str,
    /// Why, when it says more than the status (empty when all is well).
    reason: String,
    /// `vm` or `namespace`.
    isolation: &'a str,
    /// App containers, how many of them run, and how many are ready (run
    /// and pass their readiness probes).
    containers: usize,
    running: usize,
    ready: usize,
    /// Restarts of all containers.
    restarts: u32,
    /// Reserved memory (bytes) and CPU (millicores).
    memory: u64,
    millicpu: u64,
    /// When it was created: Unix nanoseconds, and RFC 3339 (UTC).
    created_ns: u64,
    created: String,
    /// The monitor process (the VMM in VM mode).
    monitor_pid: u32,
    /// The pod's IPv4 address; null without a pod network.
    ip: Option<&'a str>,
    /// Published ports, `[HOST_IP:]HOST_PORT->CONTAINER_PORT/PROTOCOL`.
    ports: &'a [String],
    /// Every container, init containers first, in spec order.
    container_statuses: Vec<PsContainer<'a>>,
}

/// One container in [`PsRow`].
#[derive(Debug, Serialize)]
struct PsContainer<'a> {
    name: &'a str,
    init: bool,
    image: &'a str,
    /// `waiting`, `running` or `terminated`.
    state: &'static str,
    /// Why it waits or ended (`PodInitializing`, `Completed`, `OOMKilled`).
    reason: &'a str,
    /// The exit code of an ended container; null otherwise (or when a
    /// signal ended it).
    exit_code: Option<i32>,
    restarts: u32,
}

impl<'a> PsRow<'a> {
    fn new(p: &'a PodState) -> PsRow<'a> {
        let apps = || p.containers.iter().filter(|c| !c.status.init);
        PsRow {
            name: &p.name,
            status: p.status_word(),
            reason: p.status_reason(),
            isolation: &p.isolation,
            containers: apps().count(),
            running: apps().filter(|c| c.running()).count(),
            ready: apps().filter(|c| c.running() && c.status.ready).count(),
            restarts: p.containers.iter().map(|c| c.status.restart_count).sum(),
            memory: p.memory,
            millicpu: p.millicpu,
            created_ns: p.created_ns,
            created: sandbox::crilog::rfc3339_nano(p.created_ns),
            monitor_pid: p.monitor_pid,
            ip: p
                .network
                .as_ref()
                .map(|n| n.address.split('/').next().unwrap_or(&n.address)),
            ports: p.network.as_ref().map_or(&[], |n| &n.ports),
            container_statuses: p.containers.iter().map(PsContainer::new).collect(),
        }
    }
}

impl<'a> PsContainer<'a> {
    fn new(c: &'a ContainerInfo) -> PsContainer<'a> {
        let (state, reason, exit_code) = match &c.status.state {
            ContainerState::Waiting { reason } => ("waiting", reason.as_str(), None),
            ContainerState::Running { .. } => ("running", "", None),
            ContainerState::Terminated(t) => ("terminated", t.reason.as_str(), t.code),
        };
        PsContainer {
            name: &c.status.name,
            init: c.status.init,
            image: &c.image,
            state,
            reason,
            exit_code,
            restarts: c.status.restart_count,
        }
    }
}

pub(crate) fn age(ns: u64) -> String {
    let s = now_ns().saturating_sub(ns) / 1_000_000_000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `peapod ps`.
pub fn ps(args: PsArgs) -> Result<ExitCode, Failure> {
    let pods: Vec<PodState> = sandbox::list()
        .map_err(Failure::Usage)?
        .into_iter()
        .filter_map(|(dir, s)| match s {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("{}: {e}", dir.display());
                None
            }
        })
        .collect();
    let rows: Vec<PsRow> = pods.iter().map(PsRow::new).collect();
    if args.output == Output::Json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Failure::Runtime(e.into()))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<10} {:<6} {:<8} {:<9} {:<8} {:<6}",
        "NAME", "STATUS", "READY", "RESTARTS", "ISOLATION", "MEMORY", "AGE"
    );
    for r in &rows {
        println!(
            "{:<24} {:<10} {:<6} {:<8} {:<9} {:<8} {:<6}",
            r.name,
            r.status,
            format!("{}/{}", r.ready, r.containers),
            r.restarts,
            r.isolation,
            format!("{}Mi", r.memory >> 20),
            age(r.created_ns)
        );
    }
    let network_down = |r: &&PsRow| r.status == "Running" && r.reason.contains("network down");
    for r in rows
        .iter()
        .filter(|r| r.status == "Dead" || network_down(r))
    {
        eprintln!("{}: {}", r.name, r.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// `peapod logs`.
pub fn logs(args: LogsArgs) -> Result<ExitCode, Failure> {
    let (dir, state) = sandbox::find(&args.pod).map_err(usage)?;
    let containers: Vec<String> = if args.all_containers {
        state
            .containers
            .iter()
            .map(|c| c.status.name.clone())
            .collect()
    } else {
        vec![chosen_container(&args, &state)?]
    };
    let mut followers: Vec<Follower> = containers
        .iter()
        .map(|c| Follower::new(&dir, c, true))
        .collect();
    loop {
        let ended =
            !args.follow || PodState::load(&dir).map_or(true, |s| s.ended() || !s.monitor_alive());
        for follower in &mut followers {
            let lines = follower.poll(ended);
            let prefix = args.all_containers.then(|| follower.container());
            for line in &lines {
                print_line(prefix, args.timestamps, line);
            }
        }
        if ended {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The container `logs` shows: `-c`'s, which must exist, else the first
/// app container (saying so when there are others).
fn chosen_container(args: &LogsArgs, state: &PodState) -> Result<String, Failure> {
    if let Some(c) = &args.container {
        if state.container(c).is_none() {
            let names: Vec<&str> = state
                .containers
                .iter()
                .map(|c| c.status.name.as_str())
                .collect();
            return Err(usage(anyhow!(
                "pod {} has no container {c} (it has: {})",
                args.pod,
                names.join(", ")
            )));
        }
        return Ok(c.clone());
    }
    let c = state
        .default_container()
        .ok_or_else(|| usage(anyhow!("pod {} has no containers", args.pod)))?;
    if state.containers.len() > 1 {
        eprintln!(
            "peapod: showing container {} of pod {} (choose another with -c, or --all-containers)",
            c.status.name, args.pod
        );
    }
    Ok(c.status.name.clone())
}

/// Wait until the pod's monitor is gone; false after `limit`.
fn wait_monitor_gone(dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match PodState::load(dir) {
            Ok(s) if s.monitor_alive() => {}
            _ => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ask(dir: &Path, name: &str, req: &Request) -> Result<(), Failure> {
    api::ask(dir, name, req).map_err(|e| {
        if e.usage {
            Failure::Usage(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    })
}

/// `peapod stop`.
pub fn stop(args: StopArgs) -> Result<ExitCode, Failure> {
    let (dir, state) = sandbox::find(&args.pod).map_err(usage)?;
    if state.ended() || !state.monitor_alive() {
        eprintln!(
            "peapod: pod {} is not running ({})",
            args.pod,
            state.status_word()
        );
        return Ok(ExitCode::SUCCESS);
    }
    ask(
        &dir,
        &args.pod,
        &Request::Stop {
            grace_period_s: args.timeout,
        },
    )?;
    // The monitor kills the pod itself if the grace period is not enough.
    let grace = args.timeout.unwrap_or(state.grace_period_s);
    if !wait_monitor_gone(
        &dir,
        Duration::from_secs(grace.saturating_add(60).min(86_400)),
    ) {
        return Err(Failure::Runtime(anyhow!(
            "pod {} did not stop; `peapod rm -f {}` kills it",
            args.pod,
            args.pod
        )));
    }
    let state = PodState::load(&dir).map_err(|e| Failure::Runtime(e.into()))?;
    println!("{}: {}", args.pod, state.status_word());
    Ok(ExitCode::SUCCESS)
}

/// `peapod rm`.
pub fn rm(args: RmArgs) -> Result<ExitCode, Failure> {
    let mut failure = None;
    for name in &args.pods {
        if let Err(e) = rm_one(name, args.force) {
            eprintln!("peapod: error: {}", e.message());
            failure = Some(e);
        } else {
            println!("{name}");
        }
    }
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(f) => Ok(ExitCode::from(f.exit_code())),
    }
}

fn rm_one(name: &str, force: bool) -> Result<(), Failure> {
    let (dir, state) = sandbox::find(name).map_err(usage)?;
    // An ended pod's monitor is finishing (last state, reservation): give
    // it a moment before counting it as running.
    if state.ended() && state.monitor_alive() {
        wait_monitor_gone(&dir, Duration::from_secs(20));
    }
    let state = PodState::load(&dir).unwrap_or(state);
    if state.monitor_alive() {
        if !force {
            return Err(usage(anyhow!(
                "pod {name} is {}; stop it first (`peapod stop {name}`) or use `peapod rm -f`",
                state.status_word()
            )));
        }
        ask(&dir, name, &Request::Kill {})?;
        if !wait_monitor_gone(&dir, Duration::from_secs(30)) {
            return Err(Failure::Runtime(anyhow!(
                "pod {name}: its monitor (pid {}) did not exit",
                state.monitor_pid
            )));
        }
    }
    sandbox::remove(&dir).map_err(Failure::Runtime)
}

/// `peapod inspect`: the state, with liveness and the log files.
pub fn inspect(args: InspectArgs) -> Result<ExitCode, Failure> {
    let (dir, state) = sandbox::find(&args.pod).map_err(usage)?;
    #[derive(Serialize)]
    struct Inspect<'a> {
        status: &'a str,
        status_reason: String,
        directory: &'a Path,
        #[serde(flatten)]
        state: &'a PodState,
        logs: Vec<(String, Vec<String>)>,
    }
    let logs = state
        .containers
        .iter()
        .map(|c| {
            let name = &c.status.name;
            let files = sandbox::crilog::log_files(&dir, name)
                .into_iter()
                .map(|k| k.path(&dir, name).display().to_string())
                .collect();
            (name.clone(), files)
        })
        .collect();
    let out = Inspect {
        status: state.status_word(),
        status_reason: state.status_reason(),
        directory: &dir,
        state: &state,
        logs,
    };
    let text = serde_json::to_string_pretty(&out).map_err(|e| Failure::Runtime(e.into()))?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
