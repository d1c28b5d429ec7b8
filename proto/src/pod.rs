//! The pod as the guest needs it: the host's validated `PodPlan`, with
//! images resolved to root filesystems in the pod share and commands and
//! users resolved against the image config.
//!
//! Defined here because `proto` depends on neither side; the host converts
//! its `PodPlan` to a [`WirePod`]. Paths called "share paths" are relative
//! to the root of the pod share (virtio-fs in a VM, a directory in native
//! mode) as the guest mounts it.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Result};
use crate::network::WireNetwork;

/// The pod to run: sent once, in `HostMsg::RunPod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WirePod {
    /// `metadata.name`.
    pub name: String,
    /// The guest (UTS namespace) hostname.
    pub hostname: String,
    /// Init containers, run one by one in order before the app containers;
    /// sidecars among them keep running.
    pub init_containers: Vec<WireContainer>,
    /// App containers, started together; never empty, except in a
    /// sandbox.
    pub containers: Vec<WireContainer>,
    /// Pod volumes, referenced by [`WireMount::volume`].
    pub volumes: Vec<WireVolume>,
    /// What happens when an app container exits.
    pub restart_policy: RestartPolicy,
    /// Seconds between SIGTERM and SIGKILL when the pod is stopped.
    pub grace_period_s: u64,
    /// Delay between restarts of a crashing container.
    pub backoff: Backoff,
    /// Containers share one PID namespace.
    pub share_process_namespace: bool,
    /// The pod's network interface and name resolution; `None`: loopback
    /// only. Left out of the message when `None`, so a guest that predates
    /// the field still takes a pod without a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<WireNetwork>,
    /// A sandbox (a CRI pod sandbox): it may start without containers,
    /// containers join and leave it while it runs
    /// ([`crate::HostMsg::AddContainer`], [`crate::HostMsg::RemoveContainer`]),
    /// and it runs until it is stopped, not until its containers end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox: bool,
    /// `fsGroup`: the group that owns the pod's emptyDir and files
    /// volumes (group-readable, directories setgid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<u32>,
    /// Namespaced sysctls (`net.ipv4.ip_local_port_range`), set before
    /// any container starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<(String, String)>,
}

/// What stands for the pod's IP address in a container's environment,
/// command and args (`fieldRef: status.podIP`, and `$(VAR)` references to
/// it): only peapod-init knows the address, and puts it in before the
/// container starts ([`WireContainer::with_pod_ip`]).
pub const POD_IP_TOKEN: &str = "\u{1}peapod:status.podIP\u{1}";

impl WireContainer {
    /// This container with [`POD_IP_TOKEN`] replaced by `ip`.
    pub fn with_pod_ip(mut self, ip: &str) -> WireContainer {
        let put = |s: &mut String| {
            if s.contains(POD_IP_TOKEN) {
                *s = s.replace(POD_IP_TOKEN, ip);
            }
        };
        for (_, v) in &mut self.env {
            put(v);
        }
        self.command.iter_mut().for_each(put);
        self
    }
}

/// One container, app or init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireContainer {
    /// Name, unique in the pod.
    pub name: String,
    /// Share path of the container's (read-only) image root filesystem.
    pub rootfs: String,
    /// The full argv: entrypoint/command and args already resolved.
    pub command: Vec<String>,
    /// Environment, in order, image defaults merged in.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the container.
    pub working_dir: String,
    /// User to run as.
    pub uid: u32,
    /// Group to run as.
    pub gid: u32,
    /// Volume mounts.
    pub volume_mounts: Vec<WireMount>,
    /// Memory limit in bytes (cgroup `memory.max`).
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores (cgroup `cpu.max`).
    pub cpu_limit_millis: Option<u64>,
    /// Process limit (cgroup `pids.max`).
    pub pids_limit: Option<u64>,
    /// Mount the root filesystem read-only (else a writable overlay).
    pub read_only_rootfs: bool,
    /// Capabilities added to the default set (`NET_ADMIN`, `ALL`, ...).
    pub cap_add: Vec<String>,
    /// Capabilities dropped from the default set.
    pub cap_drop: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open for attach.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// An init container with `restartPolicy: Always`: started in order with
    /// the init containers, then kept running for the life of the pod.
    pub sidecar: bool,
    /// Files and directories of the host bound into the container (a
    /// container that joined a sandbox pod: the shim's CRI mounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<WireBind>,
    /// Supplementary groups besides `gid` (`supplementalGroups`, `fsGroup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<u32>,
    /// `allowPrivilegeEscalation: false`: `PR_SET_NO_NEW_PRIVS` before exec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privs: bool,
    /// Startup, liveness and readiness probes, run by peapod-init.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<WireProbe>,
    /// `lifecycle.postStart`: runs as the container starts; it counts as
    /// running once the hook succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<ProbeAction>,
    /// `lifecycle.preStop`: runs before the stop signal when the container
    /// is stopped (not when it exits on its own), within the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<ProbeAction>,
    /// `lifecycle.stopSignal`, else the image's `StopSignal`; `None`:
    /// SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// `terminationMessagePath`: a file the container may write; what it
    /// holds when the container ends is its termination message. `None`:
    /// no such file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// `terminationMessagePolicy: FallbackToLogsOnError`: a container that
    /// failed and left the file empty gets the tail of its output instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub termination_message_fallback: bool,
}

/// Which lifecycle hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// `lifecycle.postStart`.
    PostStart,
    /// `lifecycle.preStop`.
    PreStop,
}

impl HookKind {
    /// As Kubernetes names its failure (`FailedPostStartHook`).
    pub fn failure(self) -> &'static str {
        match self {
            HookKind::PostStart => "FailedPostStartHook",
            HookKind::PreStop => "FailedPreStopHook",
        }
    }
}

/// Which probe: Kubernetes' three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Gates the others; failing, it restarts the container.
    Startup,
    /// Failing, it restarts the container.
    Liveness,
    /// Decides whether the container is ready.
    Readiness,
}

impl ProbeKind {
    /// As Kubernetes names it in messages (`Liveness probe failed: ...`).
    pub fn word(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeAction {
    /// Run a command in the container: exit 0 passes.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// Open a TCP connection: connecting passes.
    Tcp {
        /// Where; `None`: the pod's address.
        host: Option<String>,
        /// The port.
        port: u16,
    },
    /// An HTTP GET: a status from 200 to 399 passes.
    Http {
        /// Where; `None`: the pod's address.
        host: Option<String>,
        /// The port.
        port: u16,
        /// The path, from `/`.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// A gRPC health check (`grpc.health.v1.Health/Check`, plaintext
    /// HTTP/2): SERVING passes.
    Grpc {
        /// The port, on the pod's address.
        port: u16,
        /// The service to ask about; empty: the server as a whole.
        service: String,
    },
    /// Wait (lifecycle hooks only): always passes.
    Sleep {
        /// How long.
        seconds: u32,
    },
}

impl ProbeAction {
    /// A command to run is not empty; headers are one line each.
    fn validate(&self, at: &str) -> Result<()> {
        match self {
            ProbeAction::Exec { command } if command.is_empty() => {
                Err(invalid(format!("{at}.command"), "must not be empty"))
            }
            ProbeAction::Grpc { service, .. } if service.len() > 127 => Err(invalid(
                format!("{at}.service"),
                "must be at most 127 bytes",
            )),
            ProbeAction::Http { path, headers, .. } => {
                let line = |t: &str| !t.contains(['\r', '\n']);
                if !path.starts_with('/') || !line(path) {
                    return Err(invalid(format!("{at}.path"), "must be one line from `/`"));
                }
                if !headers
                    .iter()
                    .all(|(n, v)| line(n) && line(v) && !n.contains(':'))
                {
                    return Err(invalid(format!("{at}.headers"), "must be one line each"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// One probe of a container, as the kubelet runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireProbe {
    /// Which.
    pub kind: ProbeKind,
    /// What it does.
    pub action: ProbeAction,
    /// `initialDelaySeconds`.
    pub initial_delay_s: u32,
    /// `periodSeconds` (at least 1).
    pub period_s: u32,
    /// `timeoutSeconds` (at least 1).
    pub timeout_s: u32,
    /// `successThreshold` (at least 1; 1 for startup and liveness).
    pub success_threshold: u32,
    /// `failureThreshold` (at least 1).
    pub failure_threshold: u32,
}

/// A host file or directory, shared with the pod, bound into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBind {
    /// Share path of the file or directory.
    pub source: String,
    /// Absolute path in the container.
    pub destination: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMount {
    /// Name of an entry of [`WirePod::volumes`].
    pub volume: String,
    /// Absolute path in the container.
    pub mount_path: String,
    /// Mount read-only.
    pub read_only: bool,
    /// Relative path inside the volume to mount instead of its root.
    pub sub_path: Option<String>,
}

/// A pod volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireVolume {
    /// Name, unique in the pod.
    pub name: String,
    /// Where its content comes from.
    pub kind: VolumeKind,
}

/// Volume sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VolumeKind {
    /// A fresh directory the guest creates.
    EmptyDir {
        /// Back it with RAM (tmpfs) rather than the pod share.
        medium_memory: bool,
        /// Size limit in bytes.
        size_limit: Option<u64>,
    },
    /// A host path, exported by the host; checked and created there.
    HostPath {
        /// Share path where the host exposes it.
        path: String,
    },
    /// Files the guest writes into a read-only tmpfs, laid out as the
    /// kubelet lays out ConfigMap, Secret and downward API volumes.
    Files {
        /// The files, by path beneath the volume.
        files: Vec<WireFile>,
    },
}

/// One file of a [`VolumeKind::Files`] volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFile {
    /// Relative path beneath the volume, without `..` (the guest checks).
    pub path: String,
    /// Permission bits (0 to 0o777).
    pub mode: u32,
    /// Content.
    #[serde(with = "crate::bytes")]
    pub data: Vec<u8>,
}

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always restart (the Kubernetes default).
    #[default]
    Always,
    /// Restart only after a failure (non-zero code or a signal).
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Whether an app container that exited this way is restarted.
    pub fn restarts(self, succeeded: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !succeeded,
            RestartPolicy::Never => false,
        }
    }
}

/// Exponential restart backoff: `initial_ms`, doubled after every restart,
/// capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial_ms: u64,
    /// Upper bound of any delay.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 1000,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// Delay before the next restart of a container restarted `restarts`
    /// times so far: `initial * 2^restarts`, at most `max`.
    pub fn delay(&self, restarts: u32) -> Duration {
        let factor = 1u64.checked_shl(restarts).unwrap_or(u64::MAX);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }
}

fn invalid(field: String, problem: &str) -> ProtoError {
    ProtoError::InvalidPod {
        field,
        problem: problem.to_owned(),
    }
}

/// A share path must stay inside the share: relative, no `..`, not empty.
fn check_share_path(field: String, path: &str) -> Result<()> {
    if path.is_empty() || path.starts_with('/') {
        return Err(invalid(field, "must be a non-empty relative path"));
    }
    check_no_dotdot(field, path)
}

fn check_no_dotdot(field: String, path: &str) -> Result<()> {
    if path.split('/').any(|c| c == "..") {
        return Err(invalid(field, "must not contain `..`"));
    }
    Ok(())
}

fn check_absolute(field: String, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(invalid(field, "must be an absolute path"));
    }
    check_no_dotdot(field, path)
}

impl WirePod {
    /// Check the structural invariants the guest relies on. The host has
    /// validated the pod spec already; this guards the guest against a
    /// buggy or mismatched host, and runs before anything is created.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(invalid("name".into(), "must not be empty"));
        }
        if self.containers.is_empty() && !self.sandbox {
            return Err(invalid("containers".into(), "must not be empty"));
        }
        if let Some(network) = &self.network {
            network.validate("network")?;
        }
        for (i, (name, value)) in self.sysctls.iter().enumerate() {
            let ok = !name.is_empty()
                && name.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
                && !value.contains('\n');
            if !ok {
                return Err(invalid(
                    format!("sysctls[{i}]"),
                    "must be a dotted name and one line",
                ));
            }
        }
        let mut volumes = HashSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name.is_empty() || !volumes.insert(v.name.as_str()) {
                return Err(invalid(
                    format!("volumes[{i}].name"),
                    "must be non-empty and unique",
                ));
            }
            match &v.kind {
                VolumeKind::HostPath { path } => {
                    check_share_path(format!("volumes[{i}].kind.path"), path)?;
                }
                VolumeKind::Files { files } => {
                    let mut paths = HashSet::new();
                    for (j, f) in files.iter().enumerate() {
                        let field = format!("volumes[{i}].kind.files[{j}]");
                        check_share_path(format!("{field}.path"), &f.path)?;
                        if f.path.split('/').any(|c| c.is_empty() || c == ".")
                            || f.path.starts_with("..")
                        {
                            return Err(invalid(
                                format!("{field}.path"),
                                "must be plain names joined by `/`, not starting with `..`",
                            ));
                        }
                        if f.mode > 0o777 {
                            return Err(invalid(format!("{field}.mode"), "must be at most 0o777"));
                        }
                        if !paths.insert(f.path.as_str()) {
                            return Err(invalid(format!("{field}.path"), "must be unique"));
                        }
                    }
                }
                VolumeKind::EmptyDir { .. } => {}
            }
        }
        let mut names = HashSet::new();
        let all = [
            ("init_containers", &self.init_containers),
            ("containers", &self.containers),
        ];
        for (list, containers) in all {
            for (i, c) in containers.iter().enumerate() {
                if !names.insert(c.name.as_str()) {
                    return Err(invalid(format!("{list}[{i}].name"), "must be unique"));
                }
                if c.sidecar && list == "containers" {
                    let at = format!("{list}[{i}].sidecar");
                    return Err(invalid(at, "only init containers are sidecars"));
                }
                c.validate(&format!("{list}[{i}]"), &volumes)?;
            }
        }
        Ok(())
    }
}

impl WireContainer {
    /// Check one container on its own (`at` names it in errors, e.g.
    /// `containers[1]`): everything but its name's uniqueness in the pod.
    /// `volumes` are the pod's volume names.
    pub fn validate(&self, at: &str, volumes: &HashSet<&str>) -> Result<()> {
        let at = |field: &str| format!("{at}.{field}");
        if self.name.is_empty() {
            return Err(invalid(at("name"), "must not be empty"));
        }
        if self.command.is_empty() {
            return Err(invalid(at("command"), "must not be empty"));
        }
        check_share_path(at("rootfs"), &self.rootfs)?;
        check_absolute(at("working_dir"), &self.working_dir)?;
        for (j, m) in self.volume_mounts.iter().enumerate() {
            let at = |field: &str| at(&format!("volume_mounts[{j}].{field}"));
            if !volumes.contains(m.volume.as_str()) {
                return Err(invalid(at("volume"), "names no volume of the pod"));
            }
            check_absolute(at("mount_path"), &m.mount_path)?;
            if let Some(sub) = &m.sub_path {
                check_share_path(at("sub_path"), sub)?;
            }
        }
        for (j, b) in self.binds.iter().enumerate() {
            let at = |field: &str| at(&format!("binds[{j}].{field}"));
            check_share_path(at("source"), &b.source)?;
            check_absolute(at("destination"), &b.destination)?;
        }
        for (j, p) in self.probes.iter().enumerate() {
            if matches!(p.action, ProbeAction::Sleep { .. }) {
                return Err(invalid(at(&format!("probes[{j}]")), "cannot sleep"));
            }
            p.action.validate(&at(&format!("probes[{j}].action")))?;
        }
        for (field, hook) in [
            ("post_start", &self.post_start),
            ("pre_stop", &self.pre_stop),
        ] {
            if let Some(action) = hook {
                action.validate(&at(field))?;
            }
        }
        if let Some(path) = &self.termination_message_path {
            check_absolute(at("termination_message_path"), path)?;
            if path.split('/').any(|c| c == "..") || path == "/" {
                return Err(invalid(
                    at("termination_message_path"),
                    "must name a file, without `..`",
                ));
            }
        }
        if self.stop_signal.is_some_and(|s| !(1..=64).contains(&s)) {
            return Err(invalid(at("stop_signal"), "must be a signal from 1 to 64"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_pod() -> WirePod {
        WirePod {
            name: "web".into(),
            hostname: "web".into(),
            init_containers: vec![WireContainer {
                sidecar: true,
                ..sample_container("proxy")
            }],
            containers: vec![WireContainer {
                memory_limit: Some(64 << 20),
                cpu_limit_millis: Some(500),
                pids_limit: Some(128),
                volume_mounts: vec![
                    WireMount {
                        volume: "data".into(),
                        mount_path: "/data".into(),
                        read_only: false,
                        sub_path: Some("app/v1".into()),
                    },
                    WireMount {
                        volume: "host".into(),
                        mount_path: "/etc/config".into(),
                        read_only: true,
                        sub_path: None,
                    },
                ],
                cap_add: vec!["NET_ADMIN".into()],
                cap_drop: vec!["ALL".into()],
                ..sample_container("app")
            }],
            volumes: vec![
                WireVolume {
                    name: "data".into(),
                    kind: VolumeKind::EmptyDir {
                        medium_memory: true,
                        size_limit: Some(1 << 20),
                    },
                },
                WireVolume {
                    name: "host".into(),
                    kind: VolumeKind::HostPath {
                        path: "volumes/host".into(),
                    },
                },
            ],
            restart_policy: RestartPolicy::OnFailure,
            grace_period_s: 30,
            backoff: Backoff::default(),
            share_process_namespace: false,
            network: Some(crate::network::tests::sample_network()),
            sandbox: false,
            fs_group: None,
            sysctls: Vec::new(),
        }
    }

    pub(crate) fn sample_container(name: &str) -> WireContainer {
        WireContainer {
            name: name.into(),
            rootfs: format!("images/{name}/rootfs"),
            command: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            working_dir: "/".into(),
            uid: 1000,
            gid: 1000,
            volume_mounts: vec![],
            memory_limit: None,
            cpu_limit_millis: None,
            pids_limit: None,
            read_only_rootfs: false,
            cap_add: vec![],
            cap_drop: vec![],
            tty: false,
            stdin: false,
            stdin_once: false,
            sidecar: false,
            binds: vec![],
            supplemental_groups: Vec::new(),
            no_new_privs: false,
            probes: Vec::new(),
            post_start: None,
            pre_stop: None,
            stop_signal: None,
            termination_message_path: None,
            termination_message_fallback: false,
        }
    }

    #[test]
    fn test_backoff_delay_doubles_and_caps() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..12).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        // Huge restart counts saturate instead of overflowing.
        assert_eq!(b.delay(63), Duration::from_secs(300));
        assert_eq!(b.delay(64), Duration::from_secs(300));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn test_backoff_delay_configurable() {
        let b = Backoff {
            initial_ms: 10,
            max_ms: 50,
        };
        let ms: Vec<u128> = (0..5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 50, 50]);
        let zero = Backoff {
            initial_ms: 0,
            max_ms: 50,
        };
        assert_eq!(zero.delay(10), Duration::ZERO);
        let inverted = Backoff {
            initial_ms: 100,
            max_ms: 50,
        };
        assert_eq!(inverted.delay(0), Duration::from_millis(50));
    }

    #[test]
    fn test_restart_policy_restarts() {
        assert!(RestartPolicy::Always.restarts(true));
        assert!(RestartPolicy::Always.restarts(false));
        assert!(!RestartPolicy::OnFailure.restarts(true));
        assert!(RestartPolicy::OnFailure.restarts(false));
        assert!(!RestartPolicy::Never.restarts(false));
    }

    #[test]
    fn test_wire_pod_validate_accepts_sample() {
        sample_pod().validate().unwrap();
    }

    #[test]
    fn test_wire_pod_validate_names_the_field() {
        type Breaker = fn(&mut WirePod);
        let cases: Vec<(Breaker, &str)> = vec![
            (|p| p.containers.clear(), "containers"),
            (|p| p.name.clear(), "name"),
            (
                |p| p.containers[0].name = "proxy".into(),
                "containers[0].name",
            ),
            (|p| p.containers[0].command.clear(), "containers[0].command"),
            (|p| p.containers[0].sidecar = true, "containers[0].sidecar"),
            (
                |p| p.init_containers[0].rootfs = "/images/x".into(),
                "init_containers[0].rootfs",
            ),
            (
                |p| p.containers[0].rootfs = "images/../../etc".into(),
                "containers[0].rootfs",
            ),
            (
                |p| p.containers[0].working_dir = "tmp".into(),
                "containers[0].working_dir",
            ),
            (
                |p| p.containers[0].volume_mounts[0].volume = "nope".into(),
                "containers[0].volume_mounts[0].volume",
            ),
            (
                |p| p.containers[0].volume_mounts[1].mount_path = "etc".into(),
                "containers[0].volume_mounts[1].mount_path",
            ),
            (
                |p| p.containers[0].volume_mounts[0].sub_path = Some("../x".into()),
                "containers[0].volume_mounts[0].sub_path",
            ),
            (|p| p.volumes[1].name = "data".into(), "volumes[1].name"),
            (
                |p| {
                    if let Some(n) = &mut p.network {
                        n.mtu = 10;
                    }
                },
                "network.mtu",
            ),
            (
                |p| {
                    p.volumes[1].kind = VolumeKind::HostPath {
                        path: "/etc".into(),
                    }
                },
                "volumes[1].kind.path",
            ),
        ];
        for (break_it, field) in cases {
            let mut pod = sample_pod();
            break_it(&mut pod);
            match pod.validate() {
                Err(ProtoError::InvalidPod { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn test_wire_pod_network_round_trips_and_is_optional() {
        let pod = sample_pod();
        let json = serde_json::to_value(&pod).unwrap();
        // Addresses are plain strings on the wire.
        assert_eq!(json["network"]["address"], "192.0.2.2");
        assert_eq!(json["network"]["gateway"], "192.0.2.1");
        assert_eq!(json["network"]["dns_servers"][0], "192.0.2.1");
        assert_eq!(json["network"]["hosts"][0]["ip"], "2001:db8::1");
        let back: WirePod = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, pod);

        // Without a network the field is left out (a guest that predates
        // it decodes the pod), and a pod without the field has none.
        let none = WirePod {
            network: None,
            ..sample_pod()
        };
        let json = serde_json::to_value(&none).unwrap();
        assert!(json.get("network").is_none(), "{json}");
        let back: WirePod = serde_json::from_value(json).unwrap();
        assert_eq!(back.network, None);
        none.validate().unwrap();
    }

    #[test]
    fn test_wire_pod_sandbox_may_start_empty() {
        let empty = WirePod {
            containers: vec![],
            init_containers: vec![],
            ..sample_pod()
        };
        let err = empty.validate().unwrap_err().to_string();
        assert!(
            err.contains("containers") && err.contains("must not be empty"),
            "{err}"
        );
        let sandbox = WirePod {
            sandbox: true,
            fs_group: None,
            sysctls: Vec::new(),
            ..empty
        };
        sandbox.validate().unwrap();
        // Left out when false, so an ordinary pod's wire form is unchanged.
        let json = serde_json::to_value(sample_pod()).unwrap();
        assert!(json.get("sandbox").is_none(), "{json}");
        let json = serde_json::to_value(&sandbox).unwrap();
        assert_eq!(json["sandbox"], true);
        assert_eq!(serde_json::from_value::<WirePod>(json).unwrap(), sandbox);
    }

    #[test]
    fn test_wire_container_validate_names_the_field() {
        let volumes: HashSet<&str> = ["data"].into_iter().collect();
        let ok = sample_container("late");
        ok.validate("container", &volumes).unwrap();
        type Spoil = fn(&mut WireContainer);
        let cases: [(Spoil, &str); 5] = [
            (|c| c.name.clear(), "container.name"),
            (|c| c.command.clear(), "container.command"),
            (|c| c.rootfs = "../etc".into(), "container.rootfs"),
            (|c| c.working_dir = "tmp".into(), "container.working_dir"),
            (
                |c| {
                    c.volume_mounts.push(WireMount {
                        volume: "nope".into(),
                        mount_path: "/x".into(),
                        read_only: false,
                        sub_path: None,
                    })
                },
                "volume_mounts[",
            ),
        ];
        for (spoil, field) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            let err = c.validate("container", &volumes).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn test_wire_pod_network_rejects_malformed_values() {
        let good = serde_json::to_value(sample_pod()).unwrap();
        type Breaker = fn(&mut serde_json::Value);
        let cases: Vec<(Breaker, &str)> = vec![
            (|j| j["network"]["address"] = "192.0.2.300".into(), "IP"),
            (|j| j["network"]["gateway"] = "gw".into(), "IP"),
            (|j| j["network"]["dns_servers"][0] = "::g".into(), "IP"),
            (|j| j["network"]["prefix_len"] = 300.into(), "u8"),
            (|j| j["network"]["mtu"] = (-1).into(), "u32"),
            (|j| j["network"]["bridge"] = "br0".into(), "unknown field"),
            (
                |j| j["network"]["hosts"][0]["aliases"] = "x".into(),
                "unknown field",
            ),
        ];
        for (break_it, want) in cases {
            let mut json = good.clone();
            break_it(&mut json);
            let err = serde_json::from_value::<WirePod>(json).unwrap_err();
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }
}
