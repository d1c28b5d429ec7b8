//! Serde model of the Kubernetes v1 Pod manifest, as written by users.
//!
//! The model follows the real Kubernetes schema field by field so that any
//! valid Kubernetes field is accepted, and every struct denies unknown fields
//! so that a typo is reported with its path. Fields that peapod never looks
//! into (scheduling hints, probes, ...) are kept as raw [`Value`]s: they are
//! accepted, and validation decides whether to ignore them or refuse them.
//!
//! Everything is optional here; required fields are checked in validation so
//! that the error message can name the field and suggest a fix.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_yaml::Value;

/// A Kubernetes resource quantity exactly as written ("512Mi", 2, 0.5).
///
/// YAML numbers are accepted too and turned back into text; the text is
/// parsed during validation so that errors can name the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawQuantity(pub String);

impl<'de> Deserialize<'de> for RawQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = RawQuantity;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity such as 512Mi, 1Gi, 500m or 2")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawQuantity, E> {
                Ok(RawQuantity(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawQuantity, E> {
                Ok(RawQuantity(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawQuantity, E> {
                Ok(RawQuantity(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawQuantity, E> {
                // Rust prints floats without an exponent, which the quantity
                // parser reads back.
                Ok(RawQuantity(v.to_string()))
            }
        }

        // serde_yaml hands any scalar to deserialize_str as written, so
        // `1e3` or `0.5` reach the quantity parser unchanged; the number
        // visits are for other formats (JSON).
        deserializer.deserialize_str(QuantityVisitor)
    }
}

/// A file mode exactly as written (`0644`, `420`, `0o644`): YAML 1.1,
/// which kubectl reads, takes a leading 0 as octal, and so does peapod
/// ([`RawMode::value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawMode(pub String);

impl RawMode {
    /// The mode's value; `None` when it is not a number.
    pub fn value(&self) -> Option<i64> {
        let s = self.0.trim();
        if let Some(oct) = s.strip_prefix("0o") {
            return i64::from_str_radix(oct, 8).ok();
        }
        if s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()) {
            return i64::from_str_radix(&s[1..], 8).ok();
        }
        s.parse().ok()
    }
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;

        impl Visitor<'_> for ModeVisitor {
            type Value = RawMode;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file mode such as 0644 (octal) or 420 (decimal)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMode, E> {
                Ok(RawMode(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode(v.to_string()))
            }
        }

        // As for quantities: serde_yaml hands the scalar as written.
        deserializer.deserialize_str(ModeVisitor)
    }
}

/// Resource names to quantities, as in `limits` and `requests`.
pub(crate) type ResourceList = BTreeMap<String, RawQuantity>;

/// Deserializes a field that, once present, counts as set even when its
/// value is `null` (`secret:` with nothing under it is still a secret volume).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Like [`present`] for a typed field: `null` becomes the default value.
fn present_or_default<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(|v| Some(v.unwrap_or_default()))
}

/// The top-level Pod object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
pub(crate) struct Pod {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<PodSpec>,
    /// Present in `kubectl get -o yaml` output; ignored.
    pub status: Option<Value>,
}

/// `metadata` (ObjectMeta).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
pub(crate) struct ObjectMeta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub uid: Option<String>,
    // Server-managed or controller fields: accepted and ignored.
    pub self_link: Option<Value>,
    pub resource_version: Option<Value>,
    pub generation: Option<Value>,
    pub creation_timestamp: Option<Value>,
    pub deletion_timestamp: Option<Value>,
    pub deletion_grace_period_seconds: Option<Value>,
    pub owner_references: Option<Value>,
    pub finalizers: Option<Value>,
    pub managed_fields: Option<Value>,
}

/// `spec` (PodSpec).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub containers: Option<Vec<Container>>,
    pub init_containers: Option<Vec<Container>>,
    pub ephemeral_containers: Option<Vec<Value>>,
    pub volumes: Option<Vec<Volume>>,
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
    pub active_deadline_seconds: Option<i64>,
    pub hostname: Option<String>,
    pub hostname_override: Option<String>,
    pub subdomain: Option<String>,
    pub set_hostname_as_fqdn: Option<bool>,
    pub host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<bool>,
    pub host_users: Option<bool>,
    pub share_process_namespace: Option<bool>,
    pub dns_policy: Option<String>,
    pub dns_config: Option<Value>,
    pub host_aliases: Option<Value>,
    pub security_context: Option<PodSecurityContext>,
    pub os: Option<PodOs>,
    pub resources: Option<ResourceRequirements>,
    pub resource_claims: Option<Vec<Value>>,
    // Scheduling and cluster-only fields: meaningless on one host.
    pub node_selector: Option<Value>,
    pub node_name: Option<Value>,
    pub affinity: Option<Value>,
    pub tolerations: Option<Value>,
    pub topology_spread_constraints: Option<Value>,
    pub scheduler_name: Option<Value>,
    pub scheduling_gates: Option<Value>,
    pub scheduling_group: Option<Value>,
    pub priority: Option<Value>,
    pub priority_class_name: Option<Value>,
    pub preemption_policy: Option<Value>,
    pub readiness_gates: Option<Value>,
    pub runtime_class_name: Option<Value>,
    pub overhead: Option<Value>,
    pub service_account: Option<String>,
    pub service_account_name: Option<String>,
    pub automount_service_account_token: Option<Value>,
    pub enable_service_links: Option<Value>,
    pub image_pull_secrets: Option<Value>,
    pub workload_ref: Option<Value>,
    pub eviction_responders: Option<Value>,
}

/// `spec.securityContext` (PodSecurityContext).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub fs_group: Option<i64>,
    pub fs_group_change_policy: Option<Value>,
    pub supplemental_groups: Option<Vec<i64>>,
    pub supplemental_groups_policy: Option<Value>,
    pub sysctls: Option<Vec<Sysctl>>,
    pub se_linux_options: Option<Value>,
    pub se_linux_change_policy: Option<Value>,
    pub seccomp_profile: Option<Value>,
    pub app_armor_profile: Option<Value>,
    pub windows_options: Option<Value>,
}

/// An entry of `spec.securityContext.sysctls` (Sysctl).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Sysctl {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// `spec.os` (PodOS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodOs {
    pub name: Option<String>,
}

/// An entry of `containers` or `initContainers` (Container).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Container {
    pub name: Option<String>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub env: Option<Vec<EnvVar>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub resources: Option<ResourceRequirements>,
    pub resize_policy: Option<Value>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub volume_devices: Option<Vec<Value>>,
    pub image_pull_policy: Option<String>,
    pub security_context: Option<SecurityContext>,
    pub stdin: Option<bool>,
    pub stdin_once: Option<bool>,
    pub tty: Option<bool>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub lifecycle: Option<Lifecycle>,
    pub termination_message_path: Option<String>,
    pub termination_message_policy: Option<String>,
    pub restart_policy: Option<String>,
    pub restart_policy_rules: Option<Vec<Value>>,
}

/// An entry of `env` (EnvVar).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvVar {
    pub name: Option<String>,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

/// `env[].valueFrom` (EnvVarSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvVarSource {
    pub field_ref: Option<ObjectFieldSelector>,
    pub resource_field_ref: Option<ResourceFieldSelector>,
    pub config_map_key_ref: Option<KeySelector>,
    pub secret_key_ref: Option<KeySelector>,
    pub file_key_ref: Option<Value>,
}

/// `valueFrom.configMapKeyRef` and `valueFrom.secretKeyRef`
/// (ConfigMapKeySelector, SecretKeySelector).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeySelector {
    pub name: Option<String>,
    pub key: Option<String>,
    pub optional: Option<bool>,
}

/// `envFrom[].configMapRef` and `envFrom[].secretRef` (ConfigMapEnvSource,
/// SecretEnvSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvSourceRef {
    pub name: Option<String>,
    pub optional: Option<bool>,
}

/// `valueFrom.fieldRef` (ObjectFieldSelector).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectFieldSelector {
    pub api_version: Option<String>,
    pub field_path: Option<String>,
}

/// `valueFrom.resourceFieldRef` (ResourceFieldSelector).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceFieldSelector {
    pub container_name: Option<String>,
    pub resource: Option<String>,
    pub divisor: Option<RawQuantity>,
}

/// An entry of `envFrom` (EnvFromSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvFromSource {
    pub prefix: Option<String>,
    pub config_map_ref: Option<EnvSourceRef>,
    pub secret_ref: Option<EnvSourceRef>,
}

/// An entry of `ports` (ContainerPort).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ContainerPort {
    pub name: Option<String>,
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub protocol: Option<String>,
}

/// `resources` (ResourceRequirements).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceRequirements {
    pub limits: Option<ResourceList>,
    pub requests: Option<ResourceList>,
    pub claims: Option<Vec<Value>>,
}

/// An entry of `volumeMounts` (VolumeMount).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VolumeMount {
    pub name: Option<String>,
    pub mount_path: Option<String>,
    pub read_only: Option<bool>,
    pub recursive_read_only: Option<String>,
    pub sub_path: Option<String>,
    pub sub_path_expr: Option<String>,
    pub mount_propagation: Option<String>,
}

/// A container's `securityContext` (SecurityContext).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub privileged: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub proc_mount: Option<String>,
    pub se_linux_options: Option<Value>,
    pub seccomp_profile: Option<Value>,
    pub app_armor_profile: Option<Value>,
    pub windows_options: Option<Value>,
}

/// `securityContext.capabilities`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Capabilities {
    pub add: Option<Vec<String>>,
    pub drop: Option<Vec<String>>,
}

/// An entry of `volumes` (Volume): a name and exactly one source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Volume {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub empty_dir: Option<EmptyDirSource>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub host_path: Option<HostPathSource>,
    // Sources peapod does not implement: accepted by the schema, refused by
    // validation with a clear message.
    #[serde(default, deserialize_with = "present")]
    pub aws_elastic_block_store: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub azure_disk: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub azure_file: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub cephfs: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub cinder: Option<Value>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(default, deserialize_with = "present")]
    pub csi: Option<Value>,
    #[serde(default, deserialize_with = "present_or_default")]
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardApiVolumeSource>,
    #[serde(default, deserialize_with = "present")]
    pub ephemeral: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub fc: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub flex_volume: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub flocker: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub gce_persistent_disk: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub git_repo: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub glusterfs: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub image: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub iscsi: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub nfs: Option<Value>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub persistent_volume_claim: Option<ClaimVolumeSource>,
    #[serde(default, deserialize_with = "present")]
    pub photon_persistent_disk: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub portworx_volume: Option<Value>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub projected: Option<ProjectedVolumeSource>,
    #[serde(default, deserialize_with = "present")]
    pub quobyte: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub rbd: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[serde(rename = "scaleIO")]
    pub scale_io: Option<Value>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, deserialize_with = "present")]
    pub storageos: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub vsphere_volume: Option<Value>,
}

impl Volume {
    /// The Kubernetes names of the unsupported sources that are set.
    pub fn unsupported_sources(&self) -> Vec<&'static str> {
        let all: [(&'static str, &Option<Value>); 23] = [
            ("awsElasticBlockStore", &self.aws_elastic_block_store),
            ("azureDisk", &self.azure_disk),
            ("azureFile", &self.azure_file),
            ("cephfs", &self.cephfs),
            ("cinder", &self.cinder),
            ("csi", &self.csi),
            ("ephemeral", &self.ephemeral),
            ("fc", &self.fc),
            ("flexVolume", &self.flex_volume),
            ("flocker", &self.flocker),
            ("gcePersistentDisk", &self.gce_persistent_disk),
            ("gitRepo", &self.git_repo),
            ("glusterfs", &self.glusterfs),
            ("image", &self.image),
            ("iscsi", &self.iscsi),
            ("nfs", &self.nfs),
            ("photonPersistentDisk", &self.photon_persistent_disk),
            ("portworxVolume", &self.portworx_volume),
            ("quobyte", &self.quobyte),
            ("rbd", &self.rbd),
            ("scaleIO", &self.scale_io),
            ("storageos", &self.storageos),
            ("vsphereVolume", &self.vsphere_volume),
        ];
        all.iter()
            .filter(|(_, v)| v.is_some())
            .map(|(name, _)| *name)
            .collect()
    }
}

/// `volumes[].emptyDir` (EmptyDirVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EmptyDirSource {
    pub medium: Option<String>,
    pub size_limit: Option<RawQuantity>,
}

/// `volumes[].hostPath` (HostPathVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HostPathSource {
    pub path: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `items[]` of a configMap or secret volume (KeyToPath).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeyToPath {
    pub key: Option<String>,
    pub path: Option<String>,
    pub mode: Option<RawMode>,
}

/// `volumes[].configMap` (ConfigMapVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConfigMapVolumeSource {
    pub name: Option<String>,
    pub items: Option<Vec<KeyToPath>>,
    pub default_mode: Option<RawMode>,
    pub optional: Option<bool>,
}

/// A projected volume's `configMap` (ConfigMapProjection).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConfigMapProjection {
    pub name: Option<String>,
    pub items: Option<Vec<KeyToPath>>,
    pub optional: Option<bool>,
}

/// `volumes[].secret` (SecretVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecretVolumeSource {
    pub secret_name: Option<String>,
    pub items: Option<Vec<KeyToPath>>,
    pub default_mode: Option<RawMode>,
    pub optional: Option<bool>,
}

/// A projected volume's `secret` (SecretProjection: `name`, not
/// `secretName`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecretProjection {
    pub name: Option<String>,
    pub items: Option<Vec<KeyToPath>>,
    pub optional: Option<bool>,
}

/// `items[]` of a downwardAPI volume (DownwardAPIVolumeFile).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DownwardApiFile {
    pub path: Option<String>,
    pub field_ref: Option<ObjectFieldSelector>,
    pub resource_field_ref: Option<ResourceFieldSelector>,
    pub mode: Option<RawMode>,
}

/// `volumes[].downwardAPI` (DownwardAPIVolumeSource), and a projected
/// volume's `downwardAPI` (without `defaultMode`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DownwardApiVolumeSource {
    pub items: Option<Vec<DownwardApiFile>>,
    pub default_mode: Option<RawMode>,
}

/// `volumes[].projected` (ProjectedVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProjectedVolumeSource {
    pub sources: Option<Vec<VolumeProjection>>,
    pub default_mode: Option<RawMode>,
}

/// One of `projected.sources` (VolumeProjection).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VolumeProjection {
    pub config_map: Option<ConfigMapProjection>,
    pub secret: Option<SecretProjection>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardApiVolumeSource>,
    pub service_account_token: Option<Value>,
    pub cluster_trust_bundle: Option<Value>,
    pub pod_certificate: Option<Value>,
}

/// `volumes[].persistentVolumeClaim` (PersistentVolumeClaimVolumeSource).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ClaimVolumeSource {
    pub claim_name: Option<String>,
    pub read_only: Option<bool>,
}

/// `livenessProbe`, `readinessProbe`, `startupProbe` (Probe).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Probe {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub grpc: Option<GrpcAction>,
    pub initial_delay_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub success_threshold: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub termination_grace_period_seconds: Option<i64>,
}

/// `lifecycle` (Lifecycle).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Lifecycle {
    pub post_start: Option<LifecycleHandler>,
    pub pre_stop: Option<LifecycleHandler>,
    pub stop_signal: Option<String>,
}

/// `lifecycle.postStart`, `lifecycle.preStop` (LifecycleHandler).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LifecycleHandler {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub sleep: Option<SleepAction>,
}

/// A lifecycle handler's `sleep` (SleepAction).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SleepAction {
    pub seconds: Option<i64>,
}

/// A probe's `exec` (ExecAction).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExecAction {
    pub command: Option<Vec<String>>,
}

/// A probe's `httpGet` (HTTPGetAction).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpGetAction {
    pub path: Option<String>,
    /// A number, or the name of a container port.
    pub port: Option<Value>,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub http_headers: Option<Vec<HttpHeader>>,
}

/// An entry of `httpGet.httpHeaders` (HTTPHeader).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpHeader {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// A probe's `tcpSocket` (TCPSocketAction).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TcpSocketAction {
    pub port: Option<Value>,
    pub host: Option<String>,
}

/// A probe's `grpc` (GRPCAction).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GrpcAction {
    pub port: Option<i64>,
    pub service: Option<String>,
}
