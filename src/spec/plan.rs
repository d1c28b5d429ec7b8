//! The validated pod: what peapod will run, with every default applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::reference::ImageRef;

/// Memory counted for a container that sets neither a memory limit nor a
/// memory request: 128 MiB.
pub const DEFAULT_CONTAINER_MEMORY: u64 = 128 * 1024 * 1024;

/// CPU counted for a container that sets neither a CPU limit nor a CPU
/// request: one core, in millicores.
pub const DEFAULT_CONTAINER_MILLICPU: u64 = 1000;

/// Smallest memory limit a container may set: 6 MiB. runc and Docker refuse
/// less, and no real process starts in it.
pub const MIN_CONTAINER_MEMORY: u64 = 6 * 1024 * 1024;

/// A validated pod, ready to be turned into one microVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `"default"` when absent.
    pub namespace: String,
    /// `metadata.uid`, when the manifest sets one.
    pub uid: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// The guest hostname: `spec.hostnameOverride`, else `spec.hostname`,
    /// else the pod name (as in Kubernetes).
    pub hostname: String,
    /// `spec.initContainers`, in order. Sidecars (`restartPolicy: Always`)
    /// have [`ContainerPlan::sidecar`] set.
    pub init_containers: Vec<ContainerPlan>,
    /// `spec.containers`, in order; never empty.
    pub containers: Vec<ContainerPlan>,
    /// `spec.volumes`, in order.
    pub volumes: Vec<VolumePlan>,
    /// `spec.restartPolicy`, [`RestartPolicy::Always`] when absent.
    pub restart_policy: RestartPolicy,
    /// `spec.terminationGracePeriodSeconds`, 30 when absent.
    pub termination_grace_period_seconds: u64,
    /// `spec.activeDeadlineSeconds`: stop the pod after this long.
    pub active_deadline_seconds: Option<u64>,
    /// `spec.shareProcessNamespace`: containers see each other's processes.
    pub share_process_namespace: bool,
    /// `spec.hostAliases`: extra /etc/hosts lines, (ip, hostnames).
    pub host_aliases: Vec<(std::net::IpAddr, Vec<String>)>,
    /// `spec.dnsPolicy` and `spec.dnsConfig`.
    pub dns: PodDns,
    /// `spec.resources` (pod-level resources): when set, they size the VM.
    #[serde(default)]
    pub resources: PodResources,
    /// `spec.securityContext.fsGroup`: the group of the pod's volumes, and
    /// a supplementary group of every container.
    #[serde(default)]
    pub fs_group: Option<u32>,
    /// `spec.securityContext.supplementalGroups`: of every container.
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// `spec.securityContext.sysctls` (namespaced ones; the pod's kernel is
    /// its own), `a.b.c` names.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

/// Pod-level resources (`spec.resources`): the whole pod's memory (bytes)
/// and CPU (millicores).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    /// `limits.memory`.
    pub memory_limit: Option<u64>,
    /// `requests.memory`.
    pub memory_request: Option<u64>,
    /// `limits.cpu`.
    pub cpu_limit: Option<u64>,
    /// `requests.cpu`.
    pub cpu_request: Option<u64>,
}

/// What the pod's /etc/resolv.conf takes from `spec.dnsPolicy` and
/// `spec.dnsConfig`. peapod has no cluster DNS: every policy but `None`
/// starts from the host's resolvers (as `Default` does), and `dnsConfig`
/// is added to them, as the kubelet adds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDns {
    /// `dnsPolicy: None`: `dnsConfig` alone, not the host's resolvers.
    pub config_only: bool,
    /// `dnsConfig.nameservers`.
    pub nameservers: Vec<std::net::IpAddr>,
    /// `dnsConfig.searches`.
    pub searches: Vec<String>,
    /// `dnsConfig.options`, as resolv.conf writes them: `name` or
    /// `name:value`.
    pub options: Vec<String>,
}

/// One container of the pod, app or init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// Container name, unique in the pod (a DNS-1123 label).
    pub name: String,
    /// The parsed `image`. Relative paths are resolved against the pod
    /// file's directory by [`super::load`].
    pub image: ImageRef,
    /// `command` (replaces the image's entrypoint when not empty), with
    /// `$(VAR)` references already expanded.
    pub command: Vec<String>,
    /// `args` (replace the image's cmd when not empty), expanded likewise.
    pub args: Vec<String>,
    /// `workingDir`, an absolute path; `None` means the image's default.
    pub working_dir: Option<String>,
    /// Environment in definition order, values resolved (`valueFrom`) and
    /// expanded. A name defined twice appears once, at its first position,
    /// with the last value, as in Kubernetes.
    pub env: Vec<(String, String)>,
    /// `ports`.
    pub ports: Vec<PortPlan>,
    /// `volumeMounts`; every name refers to an entry of [`PodPlan::volumes`].
    pub volume_mounts: Vec<VolumeMountPlan>,
    /// `resources.limits.memory` in bytes; at least [`MIN_CONTAINER_MEMORY`].
    pub memory_limit: Option<u64>,
    /// `resources.requests.memory` in bytes; never above the limit.
    pub memory_request: Option<u64>,
    /// `resources.limits.cpu` in millicores.
    pub cpu_limit: Option<u64>,
    /// `resources.requests.cpu` in millicores; never above the limit.
    pub cpu_request: Option<u64>,
    /// `securityContext.runAsUser`, else the pod's; `None` means the image's.
    pub run_as_user: Option<u32>,
    /// `securityContext.runAsGroup`, else the pod's.
    pub run_as_group: Option<u32>,
    /// `runAsNonRoot` (container's, else pod's): the runtime must refuse to
    /// start the container if the user it resolves to is root.
    pub run_as_non_root: bool,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `securityContext.capabilities`.
    pub capabilities: Capabilities,
    /// `securityContext.allowPrivilegeEscalation: false`: no_new_privs.
    #[serde(default)]
    pub no_new_privs: bool,
    /// `startupProbe`, `livenessProbe` and `readinessProbe`, named ports
    /// resolved.
    #[serde(default)]
    pub probes: Vec<peapod_proto::WireProbe>,
    /// `lifecycle`: hooks and stop signal.
    #[serde(default)]
    pub lifecycle: LifecyclePlan,
    /// `imagePullPolicy`; `None`: the kubelet's default for the image.
    #[serde(default)]
    pub image_pull_policy: Option<PullPolicy>,
    /// `terminationMessagePath` (`/dev/termination-log` by default).
    #[serde(default = "default_termination_message_path")]
    pub termination_message_path: String,
    /// `terminationMessagePolicy: FallbackToLogsOnError`.
    #[serde(default)]
    pub termination_message_fallback: bool,
    /// `tty`.
    pub tty: bool,
    /// `stdin`.
    pub stdin: bool,
    /// `stdinOnce`: close stdin after the first attach disconnects.
    pub stdin_once: bool,
    /// An init container with `restartPolicy: Always` (a Kubernetes 1.28+
    /// sidecar): started in order with the init containers, then kept
    /// running for the life of the pod.
    pub sidecar: bool,
}

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Pull every time.
    Always,
    /// Pull when the store does not have it.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Where a container's termination message is, unless it says.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

fn default_termination_message_path() -> String {
    DEFAULT_TERMINATION_MESSAGE_PATH.to_owned()
}

/// A container's `lifecycle`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePlan {
    /// `postStart`: runs as the container starts; it counts as running once
    /// the hook passed, and is stopped if it failed.
    pub post_start: Option<peapod_proto::ProbeAction>,
    /// `preStop`: runs before the stop signal when the container is
    /// stopped, within the grace period.
    pub pre_stop: Option<peapod_proto::ProbeAction>,
    /// `stopSignal`, as a number; `None`: the image's, else SIGTERM.
    pub stop_signal: Option<i32>,
}

/// Capabilities added to or dropped from the default set, as written
/// (`NET_ADMIN`, `ALL`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `capabilities.add`.
    pub add: Vec<String>,
    /// `capabilities.drop`.
    pub drop: Vec<String>,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    /// `name`, an IANA service name, unique in the container.
    pub name: Option<String>,
    /// `containerPort`, 1-65535.
    pub container_port: u16,
    /// `hostPort`, 1-65535, when the port should be published on the host.
    pub host_port: Option<u16>,
    /// `hostIP` to publish on.
    pub host_ip: Option<String>,
    /// `protocol`, TCP when absent.
    pub protocol: Protocol,
}

/// A port's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl std::fmt::Display for Protocol {
    /// The Kubernetes spelling: `TCP`, `UDP`, `SCTP`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// A volume mount in one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMountPlan {
    /// The volume's name.
    pub name: String,
    /// Absolute path in the container.
    pub mount_path: String,
    /// Mount read-only.
    pub read_only: bool,
    /// Relative path inside the volume to mount instead of its root; never
    /// absolute, never containing `..`.
    pub sub_path: Option<String>,
}

/// A pod volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    /// The volume's name, unique in the pod.
    pub name: String,
    /// Where its content comes from.
    pub source: VolumeSource,
}

/// The volume sources peapod implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A fresh empty directory shared by the pod's containers (also what a
    /// volume with no source means in Kubernetes).
    EmptyDir {
        /// `medium: Memory`: back it with RAM (tmpfs).
        medium_memory: bool,
        /// `sizeLimit` in bytes.
        size_limit: Option<u64>,
    },
    /// Files made from ConfigMaps, Secrets and the downward API
    /// (`configMap`, `secret`, `downwardAPI` and `projected` volumes),
    /// mounted read-only from memory in the guest.
    Files {
        /// The files, by path beneath the volume.
        files: Vec<FilePlan>,
    },
    /// A PersistentVolumeClaim: a named volume in the user's data
    /// directory that outlives the pod.
    Claim {
        /// `claimName`.
        claim: String,
        /// `readOnly`: every mount of it is read-only.
        read_only: bool,
        /// The claim's `resources.requests.storage`, when the pod's files
        /// define the claim.
        storage: Option<u64>,
    },
    /// A file or directory of the host.
    HostPath {
        /// Absolute host path.
        path: PathBuf,
        /// What must (or will be made to) exist at `path`.
        kind: HostPathType,
    },
}

/// One file of a [`VolumeSource::Files`] volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePlan {
    /// Relative path beneath the volume (no `..`).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Content.
    pub data: Vec<u8>,
}

/// `hostPath.type`: the check made on the host path before mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    /// `""` (the default): no check.
    Unchecked,
    /// Create an empty directory (mode 0755) if nothing exists.
    DirectoryOrCreate,
    /// A directory must exist.
    Directory,
    /// Create an empty file (mode 0644) if nothing exists.
    FileOrCreate,
    /// A file must exist.
    File,
    /// A Unix socket must exist.
    Socket,
    /// A character device must exist.
    CharDevice,
    /// A block device must exist.
    BlockDevice,
}

/// `spec.restartPolicy`: what happens when an app container exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Always restart (the Kubernetes default).
    #[default]
    Always,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl ContainerPlan {
    /// The memory this container counts for: its limit, else its request,
    /// else [`DEFAULT_CONTAINER_MEMORY`].
    pub fn counted_memory(&self) -> u64 {
        self.memory_limit
            .or(self.memory_request)
            .unwrap_or(DEFAULT_CONTAINER_MEMORY)
    }

    /// The CPU this container counts for, in millicores: its limit, else its
    /// request, else [`DEFAULT_CONTAINER_MILLICPU`].
    pub fn counted_millicpu(&self) -> u64 {
        self.cpu_limit
            .or(self.cpu_request)
            .unwrap_or(DEFAULT_CONTAINER_MILLICPU)
    }
}

impl PodPlan {
    /// The memory the pod needs, in bytes: the guest RAM for its containers.
    ///
    /// This is Kubernetes' effective-request rule applied to the counted
    /// memory of each container ([`ContainerPlan::counted_memory`]: limit,
    /// else request, else [`DEFAULT_CONTAINER_MEMORY`]):
    ///
    /// `max(max over init containers, sum over app containers)`
    ///
    /// because init containers run one at a time before the app containers,
    /// which then run together. Sidecar init containers (`restartPolicy:
    /// Always`, Kubernetes 1.28+) keep running for the pod's life, so they
    /// are added to the app sum, and to every init container started after
    /// them. Example: app 1Gi + log collector 512Mi with a 256Mi init
    /// container needs 1.5Gi.
    ///
    /// Pod-level resources decide when set: the pod's limit, else the
    /// larger of its request and the containers' rule.
    pub fn effective_memory(&self) -> u64 {
        let r = &self.resources;
        let containers = || self.effective(ContainerPlan::counted_memory);
        r.memory_limit
            .unwrap_or_else(|| r.memory_request.unwrap_or(0).max(containers()))
    }

    /// The CPU the pod needs, in millicores, by the same rule as
    /// [`PodPlan::effective_memory`] over [`ContainerPlan::counted_millicpu`]
    /// (limit, else request, else [`DEFAULT_CONTAINER_MILLICPU`]).
    pub fn effective_millicpu(&self) -> u64 {
        let r = &self.resources;
        let containers = || self.effective(ContainerPlan::counted_millicpu);
        r.cpu_limit
            .unwrap_or_else(|| r.cpu_request.unwrap_or(0).max(containers()))
    }

    /// The number of vCPUs for the guest: the effective millicores rounded
    /// up to whole cores, at least 1.
    pub fn vcpus(&self) -> u32 {
        let cores = self.effective_millicpu().div_ceil(1000).max(1);
        u32::try_from(cores).unwrap_or(u32::MAX)
    }

    /// Makes every relative image path (`oci:`, `oci-archive:`,
    /// `docker-archive:`, `rootfs:`) relative to `base`, normally the pod
    /// file's directory. Absolute paths and registry names are unchanged.
    pub fn resolve_image_paths(&mut self, base: &Path) {
        for container in self.init_containers.iter_mut().chain(&mut self.containers) {
            container.image.resolve_relative(base);
        }
    }

    fn effective(&self, counted: impl Fn(&ContainerPlan) -> u64) -> u64 {
        let mut sidecars = 0u64;
        let mut init_peak = 0u64;
        for container in &self.init_containers {
            if container.sidecar {
                sidecars = sidecars.saturating_add(counted(container));
                init_peak = init_peak.max(sidecars);
            } else {
                init_peak = init_peak.max(sidecars.saturating_add(counted(container)));
            }
        }
        let app = self
            .containers
            .iter()
            .map(&counted)
            .fold(sidecars, u64::saturating_add);
        init_peak.max(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * MI;

    fn container(name: &str, memory_limit: Option<u64>, cpu_limit: Option<u64>) -> ContainerPlan {
        ContainerPlan {
            name: name.to_owned(),
            image: "busybox".parse().expect("valid image"),
            command: Vec::new(),
            args: Vec::new(),
            working_dir: None,
            env: Vec::new(),
            ports: Vec::new(),
            volume_mounts: Vec::new(),
            memory_limit,
            memory_request: None,
            cpu_limit,
            cpu_request: None,
            run_as_user: None,
            run_as_group: None,
            run_as_non_root: false,
            read_only_root_filesystem: false,
            capabilities: Capabilities::default(),
            no_new_privs: false,
            probes: Vec::new(),
            lifecycle: LifecyclePlan::default(),
            image_pull_policy: None,
            termination_message_path: DEFAULT_TERMINATION_MESSAGE_PATH.to_owned(),
            termination_message_fallback: false,
            tty: false,
            stdin: false,
            stdin_once: false,
            sidecar: false,
        }
    }

    fn pod(init: Vec<ContainerPlan>, app: Vec<ContainerPlan>) -> PodPlan {
        PodPlan {
            name: "p".to_owned(),
            namespace: "default".to_owned(),
            uid: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            hostname: "p".to_owned(),
            init_containers: init,
            containers: app,
            volumes: Vec::new(),
            restart_policy: RestartPolicy::Always,
            termination_grace_period_seconds: 30,
            active_deadline_seconds: None,
            share_process_namespace: false,
            host_aliases: Vec::new(),
            dns: PodDns::default(),
            resources: PodResources::default(),
            fs_group: None,
            supplemental_groups: Vec::new(),
            sysctls: Vec::new(),
        }
    }

    #[test]
    fn test_effective_memory_sums_app_containers() {
        // The seed example: App 1Gi + LogCollector 512Mi = 1.5Gi.
        let plan = pod(
            vec![],
            vec![
                container("app", Some(GI), None),
                container("logs", Some(512 * MI), None),
            ],
        );
        assert_eq!(plan.effective_memory(), 3 * GI / 2);
    }

    #[test]
    fn test_effective_memory_init_container_bigger_than_app_sum() {
        let plan = pod(
            vec![
                container("migrate", Some(4 * GI), None),
                container("small", Some(64 * MI), None),
            ],
            vec![
                container("app", Some(GI), None),
                container("logs", Some(512 * MI), None),
            ],
        );
        assert_eq!(plan.effective_memory(), 4 * GI);
    }

    #[test]
    fn test_effective_memory_init_container_smaller_than_app_sum() {
        let plan = pod(
            vec![container("init", Some(256 * MI), None)],
            vec![
                container("app", Some(GI), None),
                container("logs", Some(512 * MI), None),
            ],
        );
        assert_eq!(plan.effective_memory(), 3 * GI / 2);
    }

    #[test]
    fn test_effective_memory_limit_then_request_then_default() {
        let mut with_request = container("req", None, None);
        with_request.memory_request = Some(300 * MI);
        let mut with_both = container("both", Some(GI), None);
        with_both.memory_request = Some(100 * MI);
        let plan = pod(
            vec![],
            vec![with_request, with_both, container("none", None, None)],
        );
        assert_eq!(
            plan.effective_memory(),
            300 * MI + GI + DEFAULT_CONTAINER_MEMORY
        );
    }

    #[test]
    fn test_effective_memory_counts_sidecars_with_app_containers() {
        let mut sidecar = container("proxy", Some(256 * MI), None);
        sidecar.sidecar = true;
        let plan = pod(
            vec![sidecar, container("init", Some(GI), None)],
            vec![container("app", Some(512 * MI), None)],
        );
        // Init phase: the sidecar runs while "init" does: 256Mi + 1Gi.
        // App phase: 256Mi + 512Mi.
        assert_eq!(plan.effective_memory(), GI + 256 * MI);

        let mut sidecar = container("proxy", Some(256 * MI), None);
        sidecar.sidecar = true;
        let plan = pod(vec![sidecar], vec![container("app", Some(GI), None)]);
        assert_eq!(plan.effective_memory(), GI + 256 * MI);
    }

    #[test]
    fn test_effective_memory_init_before_sidecar_does_not_add_it() {
        let mut sidecar = container("proxy", Some(256 * MI), None);
        sidecar.sidecar = true;
        let plan = pod(
            vec![container("init", Some(2 * GI), None), sidecar],
            vec![container("app", Some(512 * MI), None)],
        );
        assert_eq!(plan.effective_memory(), 2 * GI);
    }

    #[test]
    fn test_effective_millicpu_and_vcpus() {
        let plan = pod(
            vec![],
            vec![
                container("a", None, Some(500)),
                container("b", None, Some(250)),
            ],
        );
        assert_eq!(plan.effective_millicpu(), 750);
        assert_eq!(plan.vcpus(), 1);

        let plan = pod(
            vec![container("init", None, Some(3500))],
            vec![container("a", None, Some(1500)), container("b", None, None)],
        );
        assert_eq!(plan.effective_millicpu(), 3500);
        assert_eq!(plan.vcpus(), 4);
    }

    #[test]
    fn test_vcpus_at_least_one() {
        let mut tiny = container("a", None, None);
        tiny.cpu_request = Some(0);
        let plan = pod(vec![], vec![tiny]);
        assert_eq!(plan.effective_millicpu(), 0);
        assert_eq!(plan.vcpus(), 1);
    }

    #[test]
    fn test_vcpus_default_one_core_per_container() {
        let plan = pod(
            vec![],
            vec![container("a", None, None), container("b", None, None)],
        );
        assert_eq!(plan.effective_millicpu(), 2 * DEFAULT_CONTAINER_MILLICPU);
        assert_eq!(plan.vcpus(), 2);
    }

    #[test]
    fn test_effective_memory_saturates() {
        let plan = pod(
            vec![],
            vec![
                container("a", Some(u64::MAX), None),
                container("b", Some(u64::MAX), None),
            ],
        );
        assert_eq!(plan.effective_memory(), u64::MAX);
    }

    #[test]
    fn test_pod_plan_resolve_image_paths() {
        let mut app = container("a", None, None);
        app.image = "oci:images/app:v1".parse().expect("valid image");
        let mut plan = pod(vec![], vec![app, container("b", None, None)]);
        plan.resolve_image_paths(Path::new("/srv/pods"));
        assert_eq!(
            plan.containers[0].image.to_string(),
            "oci:/srv/pods/images/app:v1"
        );
        assert_eq!(
            plan.containers[1].image.to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn test_pod_plan_json_round_trip() {
        let plan = pod(vec![], vec![container("a", Some(GI), Some(500))]);
        let json = serde_json::to_string(&plan).expect("serialize");
        let back: PodPlan = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, plan);
    }
}
