//! `state.json`: what a pod's monitor says about the pod, for `ps`,
//! `inspect`, `logs -f` and attached `run`. Written whole (temp file and
//! rename) on every change, so readers never see half a file.

use std::path::{Path, PathBuf};

use peapod_proto::{ContainerState, ContainerStatus, PodPhase, Termination};
use serde::{Deserialize, Serialize};

use crate::admission::process_start_time;

/// The file's name in the pod directory.
pub const STATE_FILE: &str = "state.json";

/// A pod as its monitor last described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// The pod's name (`metadata.name`).
    pub name: String,
    /// The Pod YAML it came from.
    pub spec_file: PathBuf,
    /// `vm` or `namespace`.
    pub isolation: String,
    /// The monitor process.
    pub monitor_pid: u32,
    /// Its start time (clock ticks since boot), so a reused PID is not
    /// mistaken for it.
    pub monitor_start_time: u64,
    /// The PersistentVolumeClaims the pod mounts (named volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
    /// The VMM process, a child of the monitor (VM pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_pid: Option<u32>,
    /// Realtime nanoseconds.
    pub created_ns: u64,
    /// When the pod's containers were handed to peapod-init.
    pub started_ns: Option<u64>,
    /// When the pod ended.
    pub finished_ns: Option<u64>,
    /// Pending, Running, Succeeded or Failed.
    pub phase: PodPhase,
    /// Why it is in that phase (empty while all is well).
    pub reason: String,
    /// Memory reserved for the pod (the whole VM in VM mode), bytes.
    pub memory: u64,
    /// CPU reserved, millicores.
    pub millicpu: u64,
    /// vCPUs of the VM (0 in namespace mode).
    pub vcpus: u8,
    /// `terminationGracePeriodSeconds`.
    #[serde(default)]
    pub grace_period_s: u64,
    /// Init containers first, then app containers, in spec order.
    pub containers: Vec<ContainerInfo>,
    /// The last guest console lines, when the VM ended abnormally.
    #[serde(default)]
    pub console_tail: Vec<String>,
    /// Where the time went at start: (what, milliseconds since the CLI
    /// started).
    #[serde(default)]
    pub timings: Vec<(String, f64)>,
    /// The pod network (VM pods with passt); `None` with `--network none`
    /// and in namespace mode.
    #[serde(default)]
    pub network: Option<PodNetwork>,
    /// A VM pod's disk emptyDir volumes: where they are and what they use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeUsage>,
}

/// A disk emptyDir volume as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUsage {
    /// The volume's name.
    pub name: String,
    /// Its host directory.
    pub path: PathBuf,
    /// Disk it uses, bytes (as `du` counts: allocated blocks), as last
    /// measured.
    pub used_bytes: u64,
    /// `emptyDir.sizeLimit`, bytes: the pod is evicted past it.
    pub size_limit: Option<u64>,
}

/// The pod's network as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    /// The pod's address, `ADDRESS/PREFIX`.
    pub address: String,
    /// Its default gateway (the host, through passt).
    pub gateway: String,
    /// The resolvers in the containers' /etc/resolv.conf.
    pub dns: Vec<String>,
    /// Published ports, `[HOST_IP:]HOST_PORT->CONTAINER_PORT/PROTOCOL`.
    pub ports: Vec<String>,
    /// passt's process id.
    pub passt_pid: u32,
    /// Why the pod lost its network (passt exited), once it has.
    #[serde(default)]
    pub down: Option<String>,
}

/// One container in [`PodState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Its image reference, as the spec wrote it.
    pub image: String,
    /// Its image's manifest digest, for an image of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Name, state, restarts, last termination.
    pub status: ContainerStatus,
}

/// How `ps` shows a pod: the phase, or `Dead` when its monitor is gone
/// before the pod ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The monitor runs (or the pod ended properly).
    Phase(PodPhase),
    /// The monitor died (killed, crashed) while the pod ran.
    Dead,
}

impl PodState {
    /// A fresh pod that has not started yet.
    pub fn new(name: &str, spec_file: &Path, isolation: &str) -> PodState {
        let pid = std::process::id();
        PodState {
            name: name.to_owned(),
            spec_file: spec_file.to_owned(),
            isolation: isolation.to_owned(),
            monitor_pid: pid,
            monitor_start_time: process_start_time(pid).unwrap_or(0),
            vmm_pid: None,
            claims: Vec::new(),
            created_ns: now_ns(),
            started_ns: None,
            finished_ns: None,
            phase: PodPhase::Pending,
            reason: String::new(),
            memory: 0,
            millicpu: 0,
            vcpus: 0,
            grace_period_s: 30,
            containers: Vec::new(),
            console_tail: Vec::new(),
            timings: Vec::new(),
            network: None,
            volumes: Vec::new(),
        }
    }

    /// Whether the pod has ended (it will never run again).
    pub fn ended(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Whether the monitor process still runs.
    pub fn monitor_alive(&self) -> bool {
        process_start_time(self.monitor_pid) == Some(self.monitor_start_time)
    }

    /// The phase, or `Dead` when the monitor is gone before the end.
    pub fn liveness(&self) -> Liveness {
        if !self.ended() && !self.monitor_alive() {
            Liveness::Dead
        } else {
            Liveness::Phase(self.phase)
        }
    }

    /// The phase as `ps` prints it.
    pub fn status_word(&self) -> &'static str {
        match self.liveness() {
            Liveness::Dead => "Dead",
            Liveness::Phase(PodPhase::Pending) => "Pending",
            Liveness::Phase(PodPhase::Running) => "Running",
            Liveness::Phase(PodPhase::Succeeded) => "Succeeded",
            Liveness::Phase(PodPhase::Failed) => "Failed",
        }
    }

    /// The reason, with the monitor's death explained.
    pub fn status_reason(&self) -> String {
        match self.liveness() {
            Liveness::Dead => format!(
                "its monitor (pid {}) is gone (killed or crashed) before the pod ended; \
                 `peapod rm {}` cleans up",
                self.monitor_pid, self.name
            ),
            Liveness::Phase(PodPhase::Running | PodPhase::Pending) => {
                match self.network.as_ref().and_then(|n| n.down.as_deref()) {
                    Some(down) if self.reason.is_empty() => format!("network down: {down}"),
                    Some(down) => format!("{}; network down: {down}", self.reason),
                    None => self.reason.clone(),
                }
            }
            Liveness::Phase(_) => self.reason.clone(),
        }
    }

    /// A container by name.
    pub fn container(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.status.name == name)
    }

    /// A container by name, to change.
    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerInfo> {
        self.containers.iter_mut().find(|c| c.status.name == name)
    }

    /// The container `logs` and `exec` pick when none is named: the first
    /// app container (as kubectl does).
    pub fn default_container(&self) -> Option<&ContainerInfo> {
        self.containers
            .iter()
            .find(|c| !c.status.init)
            .or(self.containers.first())
    }

    /// Read `dir/state.json`.
    pub fn load(dir: &Path) -> std::io::Result<PodState> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Replace `dir/state.json` with this state, atomically.
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(STATE_FILE))
    }
}

impl ContainerInfo {
    /// A container that has not started.
    pub fn waiting(name: &str, init: bool, image: &str) -> ContainerInfo {
        ContainerInfo {
            image: image.to_owned(),
            image_digest: None,
            status: ContainerStatus {
                name: name.to_owned(),
                init,
                state: ContainerState::Waiting {
                    reason: "PodInitializing".into(),
                },
                restart_count: 0,
                last_termination: None,
                ready: false,
                probe_failure: None,
                hook_failure: None,
            },
        }
    }

    /// Whether its process runs now.
    pub fn running(&self) -> bool {
        matches!(self.status.state, ContainerState::Running { .. })
    }

    /// Its state in a word or two, for `ps` and errors.
    pub fn state_word(&self) -> String {
        match &self.status.state {
            ContainerState::Waiting { reason } => format!("waiting ({reason})"),
            ContainerState::Running { .. } => "running".into(),
            ContainerState::Terminated(t) => format!("terminated ({})", describe(t)),
        }
    }
}

/// `exit code 3`, `signal 9`, with the reason when it says more.
pub fn describe(t: &Termination) -> String {
    let how = match (t.code, t.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "ended".to_owned(),
    };
    if t.reason.is_empty() || t.reason == "Completed" || t.reason == "Error" {
        how
    } else {
        format!("{}, {how}", t.reason)
    }
}

/// The realtime clock in nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_state_round_trips_and_liveness() {
        let dir = std::env::temp_dir().join(format!("peapod-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = PodState::new("p", Path::new("/x/p.yaml"), "vm");
        s.containers
            .push(ContainerInfo::waiting("c", false, "busybox"));
        s.store(&dir).unwrap();
        let back = PodState::load(&dir).unwrap();
        assert_eq!(back, s);
        // This process is the monitor: alive, so its phase shows.
        assert_eq!(back.liveness(), Liveness::Phase(PodPhase::Pending));
        assert_eq!(back.default_container().unwrap().status.name, "c");
        // A monitor whose start time does not match is gone.
        let mut dead = back.clone();
        dead.monitor_start_time += 1;
        assert_eq!(dead.liveness(), Liveness::Dead);
        assert_eq!(dead.status_word(), "Dead");
        assert!(dead.status_reason().contains("peapod rm p"));
        // An ended pod stays ended, monitor or not.
        dead.phase = PodPhase::Succeeded;
        assert_eq!(dead.liveness(), Liveness::Phase(PodPhase::Succeeded));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_describe_termination() {
        let t = |code, signal, reason: &str| Termination {
            code,
            signal,
            reason: reason.into(),
            finished_at_ns: 0,
            message: None,
        };
        assert_eq!(describe(&t(Some(3), None, "Error")), "exit code 3");
        assert_eq!(
            describe(&t(None, Some(9), "OOMKilled")),
            "OOMKilled, signal 9"
        );
    }
}
