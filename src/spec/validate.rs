//! From the deserialized manifest to a [`PodPlan`]: required fields,
//! defaults, Kubernetes' validation rules, and the line between what peapod
//! implements, what it can safely ignore (logged) and what it must refuse.
//!
//! Container-level checks live in `container.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use serde_yaml::Value;

use super::container::Resources;
use super::error::SpecError;
use super::files::Pending;
use super::names;
use super::objects::Objects;
use super::plan::{
    ContainerPlan, HostPathType, PodDns, PodPlan, PodResources, RestartPolicy, VolumePlan,
    VolumeSource,
};
use super::pod::{ObjectMeta, Pod, PodSpec, RawQuantity, Volume};
use super::quantity::{self, QuantityError};

/// Default `terminationGracePeriodSeconds`, as in Kubernetes.
const DEFAULT_GRACE_PERIOD: u64 = 30;

/// Largest uid or gid Kubernetes accepts.
const MAX_ID: i64 = i32::MAX as i64;

/// Example quantities quoted in memory errors.
pub(crate) const MEMORY_HINT: &str = "use e.g. 512Mi, 1Gi, 1.5G";
/// Example quantities quoted in CPU errors.
pub(crate) const CPU_HINT: &str = "use e.g. 500m, 1, 2.5";

/// Workload kinds whose pod template can be copied into a Pod.
const WORKLOAD_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
];

/// Builds errors and log lines that name the file.
pub(crate) struct Checker<'a> {
    pub file: &'a str,
    /// The ConfigMaps, Secrets and PersistentVolumeClaims the pod may use.
    pub objects: &'a Objects,
}

/// No objects (for checks that need none).
pub(crate) static NO_OBJECTS: std::sync::LazyLock<Objects> =
    std::sync::LazyLock::new(Objects::default);

/// Pod-level settings containers inherit.
#[derive(Debug, Default, Clone)]
pub(crate) struct PodSecurity {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub fs_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
}

impl Checker<'_> {
    /// `spec.hostAliases`: `[{ip, hostnames: [...]}]`, written to every
    /// container's /etc/hosts (with the pod network).
    fn host_aliases(
        &self,
        raw: Option<&serde_yaml::Value>,
    ) -> Result<Vec<(std::net::IpAddr, Vec<String>)>, SpecError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let list = raw
            .as_sequence()
            .ok_or_else(|| self.invalid("spec.hostAliases", "must be a list of {ip, hostnames}"))?;
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let at = |f: &str| format!("spec.hostAliases[{i}].{f}");
            let map = item.as_mapping().ok_or_else(|| {
                self.invalid(format!("spec.hostAliases[{i}]"), "must be {ip, hostnames}")
            })?;
            for key in map.keys() {
                let k = key.as_str().unwrap_or("");
                if k != "ip" && k != "hostnames" {
                    return Err(self.invalid(
                        format!("spec.hostAliases[{i}].{k}"),
                        "unknown field; a host alias has `ip` and `hostnames`",
                    ));
                }
            }
            let ip = map
                .get("ip")
                .and_then(|v| v.as_str())
                .ok_or_else(|| self.invalid(at("ip"), "is required (an IP address)"))?;
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|_| self.invalid(at("ip"), format!("{ip:?} is not an IP address")))?;
            let names: Vec<String> = map
                .get("hostnames")
                .and_then(|v| v.as_sequence())
                .map(|s| {
                    s.iter()
                        .map(|n| n.as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() {
                return Err(self.invalid(at("hostnames"), "must list at least one host name"));
            }
            for (j, n) in names.iter().enumerate() {
                if !peapod_proto::network::is_dns_name(n) {
                    return Err(self.invalid(
                        format!("spec.hostAliases[{i}].hostnames[{j}]"),
                        format!("{n:?} is not a host name (letters, digits, '-', '.')"),
                    ));
                }
            }
            out.push((ip, names));
        }
        Ok(out)
    }

    /// `spec.dnsConfig` (`nameservers`, `searches`, `options`), checked
    /// as the API server checks it, with `spec.dnsPolicy`.
    fn dns(
        &self,
        policy: Option<&str>,
        raw: Option<&serde_yaml::Value>,
    ) -> Result<PodDns, SpecError> {
        use peapod_proto::network::{is_dns_name, MAX_DNS_SEARCH, MAX_DNS_SERVERS};
        let mut dns = PodDns {
            config_only: policy == Some("None"),
            ..PodDns::default()
        };
        let map = match raw {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => Some(v.as_mapping().ok_or_else(|| {
                self.invalid(
                    "spec.dnsConfig",
                    "must be a map of nameservers, searches and options",
                )
            })?),
        };
        let strings = |key: &str| -> Result<Vec<String>, SpecError> {
            let Some(v) = map.and_then(|m| m.get(key)) else {
                return Ok(Vec::new());
            };
            let list = v.as_sequence().ok_or_else(|| {
                self.invalid(format!("spec.dnsConfig.{key}"), "must be a list of strings")
            })?;
            list.iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        self.invalid(format!("spec.dnsConfig.{key}[{i}]"), "must be a string")
                    })
                })
                .collect()
        };
        if let Some(m) = map {
            for key in m.keys() {
                let k = key.as_str().unwrap_or("");
                if !["nameservers", "searches", "options"].contains(&k) {
                    return Err(self.invalid(
                        format!("spec.dnsConfig.{k}"),
                        "unknown field; dnsConfig has nameservers, searches and options",
                    ));
                }
            }
        }
        for (i, n) in strings("nameservers")?.iter().enumerate() {
            let ip = n.parse().map_err(|_| {
                self.invalid(
                    format!("spec.dnsConfig.nameservers[{i}]"),
                    format!("{n:?} is not an IP address"),
                )
            })?;
            dns.nameservers.push(ip);
        }
        if dns.nameservers.len() > MAX_DNS_SERVERS {
            return Err(self.invalid(
                "spec.dnsConfig.nameservers",
                format!("at most {MAX_DNS_SERVERS} nameservers"),
            ));
        }
        dns.searches = strings("searches")?;
        for (i, d) in dns.searches.iter().enumerate() {
            if !is_dns_name(d) {
                return Err(self.invalid(
                    format!("spec.dnsConfig.searches[{i}]"),
                    format!("{d:?} is not a DNS name"),
                ));
            }
        }
        if dns.searches.len() > MAX_DNS_SEARCH {
            return Err(self.invalid(
                "spec.dnsConfig.searches",
                format!("at most {MAX_DNS_SEARCH} search domains"),
            ));
        }
        let options = map.and_then(|m| m.get("options"));
        if let Some(options) = options {
            let list = options.as_sequence().ok_or_else(|| {
                self.invalid("spec.dnsConfig.options", "must be a list of {name, value}")
            })?;
            for (i, o) in list.iter().enumerate() {
                let at = |f: &str| format!("spec.dnsConfig.options[{i}]{f}");
                let o = o
                    .as_mapping()
                    .ok_or_else(|| self.invalid(at(""), "must be {name, value}"))?;
                if let Some(k) = o
                    .keys()
                    .filter_map(|k| k.as_str())
                    .find(|k| *k != "name" && *k != "value")
                {
                    return Err(self.invalid(
                        at(&format!(".{k}")),
                        "unknown field; an option has `name` and `value`",
                    ));
                }
                let word = |v: &str| {
                    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic())
                };
                let name = o.get("name").and_then(|v| v.as_str()).unwrap_or("");
                if !word(name) {
                    return Err(self.invalid(
                        at(".name"),
                        "is required: a resolver option such as ndots, edns0 or timeout",
                    ));
                }
                let value = o.get("value").map(|v| match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    _ => String::new(),
                });
                match value {
                    Some(v) if !word(&v) => {
                        return Err(self.invalid(
                            at(".value"),
                            format!("{v:?} is not an option value (a word, such as \"5\")"),
                        ))
                    }
                    Some(v) => dns.options.push(format!("{name}:{v}")),
                    None => dns.options.push(name.to_owned()),
                }
            }
        }
        if dns.config_only && dns.nameservers.is_empty() {
            return Err(self.invalid(
                "spec.dnsConfig.nameservers",
                "must list at least one nameserver when spec.dnsPolicy is None",
            ));
        }
        Ok(dns)
    }

    pub fn invalid(&self, path: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.to_owned(),
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// Logs a field that is accepted but has no effect, when that may
    /// change how the workload behaves.
    pub fn warn_ignored(&self, path: &str, why: &str) {
        log::warn!("{}: {path} is ignored: {why}", self.file);
    }

    /// Logs a field that is accepted but means nothing on a single host.
    pub fn note_ignored(&self, path: &str, why: &str) {
        log::debug!("{}: {path} is ignored: {why}", self.file);
    }

    /// Refuses `field: true` for a feature peapod cannot provide.
    pub fn refuse_true(&self, path: &str, value: Option<bool>, why: &str) -> Result<(), SpecError> {
        if value == Some(true) {
            return Err(self.invalid(path, format!("true is not supported by peapod: {why}")));
        }
        Ok(())
    }

    /// Refuses a non-empty list for a feature peapod cannot provide.
    pub fn refuse_non_empty<T>(
        &self,
        path: &str,
        value: &Option<Vec<T>>,
        why: &str,
    ) -> Result<(), SpecError> {
        if value.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(self.invalid(path, format!("is not supported by peapod: {why}")));
        }
        Ok(())
    }

    /// Checks a DNS-1123 label name (pods, containers, volumes, ...).
    pub fn dns_label(&self, path: &str, value: &str, what: &str) -> Result<(), SpecError> {
        let Some(problem) = names::dns_label_problem(value) else {
            return Ok(());
        };
        let suggestion = names::suggest_dns_label(value)
            .filter(|s| s != value)
            .map(|s| format!(", e.g. {s:?}"))
            .unwrap_or_default();
        Err(self.invalid(
            path,
            format!(
                "{value:?} is not a valid {what}: it {problem}; use at most 63 lowercase letters, \
                 digits and '-', starting and ending with a letter or digit{suggestion}"
            ),
        ))
    }

    /// Parses a memory quantity into bytes.
    pub fn bytes(&self, path: &str, raw: &RawQuantity) -> Result<u64, SpecError> {
        quantity::parse_bytes(&raw.0).map_err(|e| self.quantity_error(path, raw, e, MEMORY_HINT))
    }

    /// Parses a CPU quantity into millicores.
    pub fn millicores(&self, path: &str, raw: &RawQuantity) -> Result<u64, SpecError> {
        quantity::parse_millicores(&raw.0).map_err(|e| self.quantity_error(path, raw, e, CPU_HINT))
    }

    fn quantity_error(
        &self,
        path: &str,
        raw: &RawQuantity,
        err: QuantityError,
        hint: &str,
    ) -> SpecError {
        self.invalid(path, format!("{:?} {err} ({hint})", raw.0))
    }

    /// Checks a uid or gid.
    pub fn id(&self, path: &str, value: Option<i64>) -> Result<Option<u32>, SpecError> {
        match value {
            None => Ok(None),
            Some(id) if (0..=MAX_ID).contains(&id) => Ok(u32::try_from(id).ok()),
            Some(id) => Err(self.invalid(
                path,
                format!("{id} is not a valid id; use a number from 0 to {MAX_ID}"),
            )),
        }
    }
}

/// Checks `kind` and `apiVersion` on the raw document, before the schema,
/// so that a Deployment is reported as such rather than as unknown fields.
pub(crate) fn check_kind(file: &str, document: &Value) -> Result<(), SpecError> {
    let checker = Checker {
        file,
        objects: &NO_OBJECTS,
    };
    let Value::Mapping(map) = document else {
        return Err(checker.invalid(
            "",
            format!(
                "the document is {}, not a mapping; a pod file holds one Kubernetes Pod manifest \
                 (apiVersion: v1, kind: Pod, metadata, spec)",
                describe(document)
            ),
        ));
    };
    match map.get("kind") {
        None => {
            return Err(checker.invalid("", "kind is missing; add `kind: Pod`"));
        }
        Some(Value::String(kind)) if kind == "Pod" => {}
        Some(Value::String(kind)) => {
            let advice = if WORKLOAD_KINDS.contains(&kind.as_str()) {
                format!(
                    "peapod runs a single Pod: copy the {kind}'s spec.template (its metadata and \
                     spec) into a manifest with apiVersion: v1 and kind: Pod"
                )
            } else if kind == "CronJob" {
                "peapod runs a single Pod: copy the CronJob's spec.jobTemplate.spec.template into \
                 a manifest with apiVersion: v1 and kind: Pod"
                    .to_owned()
            } else if kind == "List" || kind == "PodList" {
                "put the Pod on its own in the file".to_owned()
            } else {
                format!(
                    "a pod file holds one Pod and the {}s it uses",
                    super::objects::OBJECT_KINDS
                )
            };
            return Err(checker.invalid("", format!("kind must be Pod, got {kind}; {advice}")));
        }
        Some(other) => {
            return Err(checker.invalid(
                "",
                format!("kind must be Pod, got {}; set kind: Pod", describe(other)),
            ));
        }
    }
    match map.get("apiVersion") {
        None => Err(checker.invalid("", "apiVersion is missing; add `apiVersion: v1`")),
        Some(Value::String(version)) if version == "v1" => Ok(()),
        Some(Value::String(version)) => Err(checker.invalid(
            "",
            format!("apiVersion must be v1 for a Pod, got {version}; set apiVersion: v1"),
        )),
        Some(other) => Err(checker.invalid(
            "",
            format!(
                "apiVersion must be v1 for a Pod, got {}; set apiVersion: v1",
                describe(other)
            ),
        )),
    }
}

/// A ConfigMap, Secret or PersistentVolumeClaim document is `v1`.
pub(crate) fn check_api_version(file: &str, document: &Value, kind: &str) -> Result<(), SpecError> {
    let checker = Checker {
        file,
        objects: &NO_OBJECTS,
    };
    match document.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => Ok(()),
        None => Err(checker.invalid(kind, "apiVersion is missing; add `apiVersion: v1`")),
        Some(other) => Err(checker.invalid(
            kind,
            format!(
                "apiVersion must be v1 for a {kind}, got {}; set apiVersion: v1",
                describe(other)
            ),
        )),
    }
}

/// A short description of a YAML value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "empty".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Validates the whole pod and applies defaults.
pub(crate) fn pod_plan(pod: Pod, file: &str, objects: &Objects) -> Result<PodPlan, SpecError> {
    let c = Checker { file, objects };
    let meta = pod.metadata.unwrap_or_default();
    let (name, namespace) = c.names(&meta)?;
    let labels = c.labels(meta.labels.unwrap_or_default())?;
    let annotations = c.annotations(meta.annotations.unwrap_or_default())?;
    let spec = pod.spec.ok_or_else(|| {
        c.invalid(
            "spec",
            "is missing; add a spec with at least one container (spec.containers[].name and .image)",
        )
    })?;

    c.refuse_unsupported_pod_features(&spec)?;
    c.log_ignored_pod_fields(&spec);

    let restart_policy = match spec.restart_policy.as_deref() {
        None => RestartPolicy::Always,
        Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(other) => {
            return Err(c.invalid(
                "spec.restartPolicy",
                format!("{other:?} is not a restart policy; use Always, OnFailure or Never"),
            ))
        }
    };
    let termination_grace_period_seconds = match spec.termination_grace_period_seconds {
        None => DEFAULT_GRACE_PERIOD,
        Some(seconds) => u64::try_from(seconds).map_err(|_| {
            c.invalid(
                "spec.terminationGracePeriodSeconds",
                format!("{seconds} is negative; use 0 or more seconds (the default is 30)"),
            )
        })?,
    };
    let active_deadline_seconds = match spec.active_deadline_seconds {
        None => None,
        Some(seconds) if seconds > 0 => u64::try_from(seconds).ok(),
        Some(seconds) => {
            return Err(c.invalid(
                "spec.activeDeadlineSeconds",
                format!("{seconds} is not positive; use a number of seconds above 0, or remove it"),
            ))
        }
    };
    let hostname = c.hostname(&spec, &name)?;
    let security = c.pod_security(&spec)?;
    let (volumes, pending) = c.volumes(spec.volumes.as_deref().unwrap_or_default())?;

    let raw_init = spec.init_containers.as_deref().unwrap_or_default();
    let raw_app = spec.containers.as_deref().unwrap_or_default();
    if raw_app.is_empty() {
        return Err(c.invalid(
            "spec.containers",
            "no containers: a pod needs at least one; add a container with a name and an image",
        ));
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut init_containers = Vec::with_capacity(raw_init.len());
    for (i, raw) in raw_init.iter().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        let container = c.container(raw, &path, true, &volumes, security.clone())?;
        c.unique_container_name(&mut seen, &container.name, &path)?;
        init_containers.push(container);
    }
    let mut containers = Vec::with_capacity(raw_app.len());
    for (i, raw) in raw_app.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        let container = c.container(raw, &path, false, &volumes, security.clone())?;
        c.unique_container_name(&mut seen, &container.name, &path)?;
        containers.push(container);
    }

    let pod_resources = c.resources(spec.resources.as_ref(), "spec")?;
    c.pod_resources_fit(&pod_resources, &init_containers, &containers)?;
    let mut plan = PodPlan {
        name,
        namespace,
        uid: meta.uid.filter(|uid| !uid.is_empty()),
        labels,
        annotations,
        hostname,
        init_containers,
        containers,
        volumes,
        restart_policy,
        termination_grace_period_seconds,
        active_deadline_seconds,
        share_process_namespace: spec.share_process_namespace.unwrap_or(false),
        host_aliases: c.host_aliases(spec.host_aliases.as_ref())?,
        dns: c.dns(spec.dns_policy.as_deref(), spec.dns_config.as_ref())?,
        resources: PodResources {
            memory_limit: pod_resources.memory_limit,
            memory_request: pod_resources.memory_request,
            cpu_limit: pod_resources.cpu_limit,
            cpu_request: pod_resources.cpu_request,
        },
        fs_group: security.fs_group,
        supplemental_groups: security.supplemental_groups.clone(),
        sysctls: c.sysctls(spec.security_context.as_ref())?,
    };
    c.unique_host_ports(&plan)?;

    // Environment values may refer to the pod's metadata and resources, so
    // they are resolved once the rest of the plan is known.
    let service_account = spec
        .service_account_name
        .clone()
        .or_else(|| spec.service_account.clone())
        .unwrap_or_else(|| "default".to_owned());
    for (i, raw) in raw_init.iter().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        let resolved = c.environment(
            raw,
            &path,
            &plan.init_containers[i],
            &plan,
            &service_account,
        )?;
        resolved.apply_to(&mut plan.init_containers[i]);
    }
    for (i, raw) in raw_app.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        let resolved = c.environment(raw, &path, &plan.containers[i], &plan, &service_account)?;
        resolved.apply_to(&mut plan.containers[i]);
    }
    c.downward(&mut plan, &pending, &service_account)?;
    c.data_within_limit(&plan)?;
    Ok(plan)
}

impl Checker<'_> {
    /// Pod-level resources hold the containers', as Kubernetes requires:
    /// no container's limit above the pod's, the app containers' requests
    /// (sidecars among them) within the pod's request.
    fn pod_resources_fit(
        &self,
        pod: &Resources,
        init: &[ContainerPlan],
        app: &[ContainerPlan],
    ) -> Result<(), SpecError> {
        type Get = fn(&ContainerPlan) -> Option<u64>;
        /// A resource's name, the pod's limit and request, and a
        /// container's limit and request.
        type Check<'n> = (&'n str, Option<u64>, Option<u64>, Get, Get);
        let checks: [Check; 2] = [
            (
                "memory",
                pod.memory_limit,
                pod.memory_request,
                |c| c.memory_limit,
                |c| c.memory_request.or(c.memory_limit),
            ),
            (
                "cpu",
                pod.cpu_limit,
                pod.cpu_request,
                |c| c.cpu_limit,
                |c| c.cpu_request.or(c.cpu_limit),
            ),
        ];
        for (name, limit, request, container_limit, container_request) in checks {
            if let Some(limit) = limit {
                for (list, cs) in [("initContainers", init), ("containers", app)] {
                    for (i, c) in cs.iter().enumerate() {
                        if container_limit(c).is_some_and(|l| l > limit) {
                            return Err(self.invalid(
                                format!("spec.{list}[{i}].resources.limits.{name}"),
                                format!(
                                    "is above the pod's spec.resources.limits.{name}; a \
                                     container cannot have more than its pod: lower it or raise \
                                     the pod's"
                                ),
                            ));
                        }
                    }
                }
            }
            if let Some(request) = request {
                let sum: u64 = app
                    .iter()
                    .chain(init.iter().filter(|c| c.sidecar))
                    .filter_map(container_request)
                    .fold(0, u64::saturating_add);
                if sum > request {
                    return Err(self.invalid(
                        format!("spec.resources.requests.{name}"),
                        "is below what the containers request together; raise it to at least \
                         their sum, or lower theirs",
                    ));
                }
            }
        }
        Ok(())
    }

    fn names(&self, meta: &ObjectMeta) -> Result<(String, String), SpecError> {
        let name = match meta.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ if meta.generate_name.is_some() => {
                return Err(self.invalid(
                    "metadata.name",
                    "is required: peapod does not support metadata.generateName; set \
                     metadata.name, e.g. name: my-pod",
                ))
            }
            _ => {
                return Err(self.invalid(
                    "metadata.name",
                    "is required; add it, e.g. `metadata: {name: my-pod}`",
                ))
            }
        };
        // A DNS subdomain, as Kubernetes allows (`web.v1`).
        if let Some(problem) = names::dns_subdomain_problem(&name, 253) {
            let suggestion = names::suggest_dns_label(&name)
                .filter(|s| *s != name)
                .map(|s| format!(", e.g. {s:?}"))
                .unwrap_or_default();
            return Err(self.invalid(
                "metadata.name",
                format!(
                    "{name:?} is not a valid pod name: it {problem}; use at most 253 lowercase \
                     letters, digits, '-' and '.', each dot-separated part starting and ending \
                     with a letter or digit{suggestion}"
                ),
            ));
        }
        let namespace = match meta.namespace.as_deref() {
            None | Some("") => "default".to_owned(),
            Some(namespace) => {
                self.dns_label("metadata.namespace", namespace, "namespace")?;
                namespace.to_owned()
            }
        };
        Ok((name, namespace))
    }

    fn labels(
        &self,
        labels: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        for (key, value) in &labels {
            if let Some(problem) = names::qualified_name_problem(key) {
                return Err(self.invalid(
                    format!("metadata.labels.{key}"),
                    format!(
                        "{key:?} is not a valid label key: it {problem}; use [PREFIX/]NAME with \
                         NAME at most 63 letters, digits, '-', '_' or '.', e.g. app.kubernetes.io/name"
                    ),
                ));
            }
            if let Some(problem) = names::label_value_problem(value) {
                return Err(self.invalid(
                    format!("metadata.labels.{key}"),
                    format!(
                        "{value:?} is not a valid label value: it {problem}; use at most 63 \
                         letters, digits, '-', '_' or '.', starting and ending with a letter or \
                         digit (put free text in metadata.annotations)"
                    ),
                ));
            }
        }
        Ok(labels)
    }

    fn annotations(
        &self,
        annotations: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        for key in annotations.keys() {
            if let Some(problem) = names::qualified_name_problem(key) {
                return Err(self.invalid(
                    format!("metadata.annotations.{key}"),
                    format!(
                        "{key:?} is not a valid annotation key: it {problem}; use [PREFIX/]NAME, \
                         e.g. example.com/note"
                    ),
                ));
            }
        }
        Ok(annotations)
    }

    fn refuse_unsupported_pod_features(&self, spec: &PodSpec) -> Result<(), SpecError> {
        self.refuse_true(
            "spec.hostNetwork",
            spec.host_network,
            "the pod runs in its own VM with its own network; remove it and publish ports with \
             containers[].ports[].hostPort",
        )?;
        self.refuse_true(
            "spec.hostPID",
            spec.host_pid,
            "the pod runs its own kernel and cannot see host processes; remove it",
        )?;
        self.refuse_true(
            "spec.hostIPC",
            spec.host_ipc,
            "the pod runs its own kernel and cannot share host IPC; remove it",
        )?;
        self.refuse_non_empty(
            "spec.ephemeralContainers",
            &spec.ephemeral_containers,
            "ephemeral (debug) containers cannot be declared in a manifest; remove them",
        )?;
        self.refuse_non_empty(
            "spec.resourceClaims",
            &spec.resource_claims,
            "dynamic resource allocation needs a cluster; remove spec.resourceClaims",
        )?;
        if let Some(os) = spec.os.as_ref().and_then(|os| os.name.as_deref()) {
            match os {
                "linux" => {}
                "windows" => {
                    return Err(self.invalid(
                        "spec.os.name",
                        "windows is not supported by peapod, which runs Linux guests; set \
                         spec.os.name: linux or remove it",
                    ))
                }
                other => {
                    return Err(self.invalid(
                        "spec.os.name",
                        format!("{other:?} is not an OS name; use linux, or remove spec.os"),
                    ))
                }
            }
        }
        if let Some(policy) = spec.dns_policy.as_deref() {
            if !["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"].contains(&policy) {
                return Err(self.invalid(
                    "spec.dnsPolicy",
                    format!(
                        "{policy:?} is not a DNS policy; use ClusterFirst, ClusterFirstWithHostNet, \
                         Default or None"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn log_ignored_pod_fields(&self, spec: &PodSpec) {
        let scheduling = [
            ("nodeSelector", spec.node_selector.is_some()),
            ("nodeName", spec.node_name.is_some()),
            ("affinity", spec.affinity.is_some()),
            ("tolerations", spec.tolerations.is_some()),
            (
                "topologySpreadConstraints",
                spec.topology_spread_constraints.is_some(),
            ),
            ("schedulerName", spec.scheduler_name.is_some()),
            ("schedulingGates", spec.scheduling_gates.is_some()),
            ("schedulingGroup", spec.scheduling_group.is_some()),
            ("priority", spec.priority.is_some()),
            ("priorityClassName", spec.priority_class_name.is_some()),
            ("preemptionPolicy", spec.preemption_policy.is_some()),
            ("readinessGates", spec.readiness_gates.is_some()),
            ("runtimeClassName", spec.runtime_class_name.is_some()),
            ("overhead", spec.overhead.is_some()),
            ("serviceAccount", spec.service_account.is_some()),
            ("serviceAccountName", spec.service_account_name.is_some()),
            (
                "automountServiceAccountToken",
                spec.automount_service_account_token.is_some(),
            ),
            ("enableServiceLinks", spec.enable_service_links.is_some()),
            ("imagePullSecrets", spec.image_pull_secrets.is_some()),
            ("hostUsers", spec.host_users.is_some()),
            ("workloadRef", spec.workload_ref.is_some()),
            ("evictionResponders", spec.eviction_responders.is_some()),
            ("setHostnameAsFQDN", spec.set_hostname_as_fqdn.is_some()),
        ];
        for (field, _) in scheduling.iter().filter(|(_, set)| *set) {
            self.note_ignored(&format!("spec.{field}"), "it only matters in a cluster");
        }
        if let Some(sc) = &spec.security_context {
            let quiet = [
                ("fsGroupChangePolicy", sc.fs_group_change_policy.is_some()),
                (
                    "supplementalGroupsPolicy",
                    sc.supplemental_groups_policy.is_some(),
                ),
            ];
            for (field, _) in quiet.iter().filter(|(_, set)| *set) {
                self.note_ignored(
                    &format!("spec.securityContext.{field}"),
                    "peapod sets the volumes' group once, at the start, and merges the groups",
                );
            }
            let confinement = [
                ("seLinuxOptions", sc.se_linux_options.is_some()),
                ("seLinuxChangePolicy", sc.se_linux_change_policy.is_some()),
                ("seccompProfile", sc.seccomp_profile.is_some()),
                ("appArmorProfile", sc.app_armor_profile.is_some()),
                ("windowsOptions", sc.windows_options.is_some()),
            ];
            for (field, _) in confinement.iter().filter(|(_, set)| *set) {
                self.note_ignored(
                    &format!("spec.securityContext.{field}"),
                    "the VM is the isolation boundary",
                );
            }
        }
    }

    fn hostname(&self, spec: &PodSpec, pod_name: &str) -> Result<String, SpecError> {
        if let Some(subdomain) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            self.dns_label("spec.subdomain", subdomain, "subdomain")?;
        }
        if let Some(host) = spec.hostname_override.as_deref().filter(|s| !s.is_empty()) {
            if let Some(problem) = names::dns_subdomain_problem(host, 64) {
                return Err(self.invalid(
                    "spec.hostnameOverride",
                    format!(
                        "{host:?} is not a valid hostname: it {problem}; use lowercase letters, \
                         digits, '-' and '.', at most 64 characters"
                    ),
                ));
            }
            return Ok(host.to_owned());
        }
        match spec.hostname.as_deref().filter(|s| !s.is_empty()) {
            Some(host) => {
                self.dns_label("spec.hostname", host, "hostname")?;
                Ok(host.to_owned())
            }
            // The pod name, cut to a hostname's 63 characters as the
            // kubelet cuts it.
            None => Ok(pod_name
                .get(..63)
                .unwrap_or(pod_name)
                .trim_end_matches(['-', '.'])
                .to_owned()),
        }
    }

    fn pod_security(&self, spec: &PodSpec) -> Result<PodSecurity, SpecError> {
        let Some(sc) = &spec.security_context else {
            return Ok(PodSecurity::default());
        };
        let mut supplemental_groups = Vec::new();
        for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
            let field = format!("spec.securityContext.supplementalGroups[{i}]");
            if let Some(g) = self.id(&field, Some(*g))? {
                supplemental_groups.push(g);
            }
        }
        let security = PodSecurity {
            run_as_user: self.id("spec.securityContext.runAsUser", sc.run_as_user)?,
            run_as_group: self.id("spec.securityContext.runAsGroup", sc.run_as_group)?,
            run_as_non_root: sc.run_as_non_root,
            fs_group: self.id("spec.securityContext.fsGroup", sc.fs_group)?,
            supplemental_groups,
        };
        Ok(security)
    }

    /// `spec.securityContext.sysctls`: namespaced ones only (every pod has
    /// a kernel of its own, so Kubernetes' safe and unsafe namespaced
    /// sysctls are all safe here); a node-wide one is refused by name.
    fn sysctls(
        &self,
        sc: Option<&super::pod::PodSecurityContext>,
    ) -> Result<Vec<(String, String)>, SpecError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, s) in sc
            .and_then(|sc| sc.sysctls.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let field = format!("spec.securityContext.sysctls[{i}]");
            let raw = s.name.as_deref().unwrap_or_default();
            if raw.is_empty() {
                return Err(self.invalid(
                    format!("{field}.name"),
                    "is required, e.g. net.ipv4.tcp_syncookies",
                ));
            }
            // Kubernetes takes `/` as the separator too.
            let name = raw.replace('/', ".");
            let well_formed = name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            });
            if !well_formed || name.len() > 253 {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!("{raw:?} is not a sysctl name; write it as in sysctl -a, e.g. net.core.somaxconn"),
                ));
            }
            let namespaced = name.starts_with("net.")
                || name.starts_with("fs.mqueue.")
                || name.starts_with("kernel.shm")
                || name.starts_with("kernel.msg")
                || name == "kernel.sem";
            if !namespaced {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!(
                        "{raw} is not a namespaced sysctl: it would change the whole host in \
                         Kubernetes, so it is refused; peapod sets net.*, kernel.shm*, \
                         kernel.msg*, kernel.sem and fs.mqueue.*"
                    ),
                ));
            }
            let value = s.value.clone().unwrap_or_default();
            if value.contains('\n') {
                return Err(self.invalid(format!("{field}.value"), "must be one line"));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!("{raw} is set twice; keep one"),
                ));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    fn unique_container_name(
        &self,
        seen: &mut HashMap<String, String>,
        name: &str,
        path: &str,
    ) -> Result<(), SpecError> {
        if let Some(first) = seen.get(name) {
            return Err(self.invalid(
                format!("{path}.name"),
                format!(
                    "{name:?} is already the name of {first}; container names must be unique \
                     across containers and initContainers, so rename one of them"
                ),
            ));
        }
        seen.insert(name.to_owned(), path.to_owned());
        Ok(())
    }

    fn unique_host_ports(&self, plan: &PodPlan) -> Result<(), SpecError> {
        let mut seen = HashMap::new();
        let groups = [
            ("initContainers", &plan.init_containers),
            ("containers", &plan.containers),
        ];
        for (group, containers) in groups {
            for (i, container) in containers.iter().enumerate() {
                for (j, port) in container.ports.iter().enumerate() {
                    let Some(host_port) = port.host_port else {
                        continue;
                    };
                    let path = format!("spec.{group}[{i}].ports[{j}].hostPort");
                    let key = (host_port, port.protocol, port.host_ip.clone());
                    if let Some(first) = seen.insert(key, path.clone()) {
                        return Err(self.invalid(
                            path,
                            format!(
                                "host port {host_port}/{} is already published by {first}; \
                                 use a different hostPort",
                                port.protocol
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn volumes<'r>(
        &self,
        raw: &'r [Volume],
    ) -> Result<(Vec<VolumePlan>, Vec<Pending<'r>>), SpecError> {
        let mut volumes: Vec<VolumePlan> = Vec::with_capacity(raw.len());
        let mut pending = Vec::new();
        for (i, volume) in raw.iter().enumerate() {
            let path = format!("spec.volumes[{i}]");
            let name = match volume.name.as_deref() {
                Some(name) if !name.is_empty() => name,
                _ => {
                    return Err(self.invalid(
                        format!("{path}.name"),
                        "is required; give the volume a name that volumeMounts can refer to",
                    ))
                }
            };
            self.dns_label(&format!("{path}.name"), name, "volume name")?;
            if let Some(first) = volumes.iter().position(|v| v.name == name) {
                return Err(self.invalid(
                    format!("{path}.name"),
                    format!(
                        "duplicate volume name {name:?}: spec.volumes[{first}] already uses it; \
                         volume names must be unique, so rename one"
                    ),
                ));
            }
            let source = self.volume_source(volume, &path, i, &mut pending)?;
            volumes.push(VolumePlan {
                name: name.to_owned(),
                source,
            });
        }
        Ok((volumes, pending))
    }

    fn volume_source<'r>(
        &self,
        volume: &'r Volume,
        path: &str,
        index: usize,
        pending: &mut Vec<Pending<'r>>,
    ) -> Result<VolumeSource, SpecError> {
        let unsupported = volume.unsupported_sources();
        let mut sources: Vec<&str> = Vec::new();
        for (name, set) in [
            ("emptyDir", volume.empty_dir.is_some()),
            ("hostPath", volume.host_path.is_some()),
            ("configMap", volume.config_map.is_some()),
            ("secret", volume.secret.is_some()),
            ("downwardAPI", volume.downward_api.is_some()),
            ("projected", volume.projected.is_some()),
            (
                "persistentVolumeClaim",
                volume.persistent_volume_claim.is_some(),
            ),
        ] {
            if set {
                sources.push(name);
            }
        }
        sources.extend(&unsupported);
        if sources.len() > 1 {
            return Err(self.invalid(
                path,
                format!(
                    "sets more than one volume source ({}); a volume has exactly one, so keep one",
                    sources.join(", ")
                ),
            ));
        }
        if let Some(source) = unsupported.first() {
            return Err(self.invalid(
                format!("{path}.{source}"),
                format!(
                    "volume source {source} is not supported by peapod (it needs a cluster's \
                     storage); use emptyDir, hostPath, configMap, secret, downwardAPI, projected \
                     or persistentVolumeClaim (a named volume on this host)"
                ),
            ));
        }
        if let Some(files) = self.files_volume(volume, path, index, pending)? {
            return Ok(files);
        }
        if let Some(pvc) = &volume.persistent_volume_claim {
            let field = format!("{path}.persistentVolumeClaim.claimName");
            let claim = pvc.claim_name.as_deref().unwrap_or_default();
            if claim.is_empty() {
                return Err(self.invalid(
                    field,
                    "is required; name the claim (peapod keeps a named volume of that name)",
                ));
            }
            if let Some(problem) = names::dns_subdomain_problem(claim, 253) {
                return Err(self.invalid(
                    field,
                    format!(
                        "{claim:?} is not a valid claim name: it {problem}; use lowercase \
                         letters, digits, '-' and '.'"
                    ),
                ));
            }
            return Ok(VolumeSource::Claim {
                claim: claim.to_owned(),
                read_only: pvc.read_only.unwrap_or(false),
                storage: self.objects.claims.get(claim).and_then(|c| c.storage),
            });
        }
        if let Some(host_path) = &volume.host_path {
            let field = format!("{path}.hostPath");
            let host = match host_path.path.as_deref() {
                Some(p) if !p.is_empty() => p,
                _ => {
                    return Err(self.invalid(
                        format!("{field}.path"),
                        "is required; set the absolute host path to mount, e.g. /srv/data",
                    ))
                }
            };
            if !host.starts_with('/') {
                return Err(self.invalid(
                    format!("{field}.path"),
                    format!(
                        "{host:?} is not an absolute path; write it from the root, e.g. /srv/data"
                    ),
                ));
            }
            if Path::new(host)
                .components()
                .any(|c| c == Component::ParentDir)
            {
                return Err(self.invalid(
                    format!("{field}.path"),
                    format!("{host:?} must not contain '..'; write the path without it"),
                ));
            }
            let kind = match host_path.kind.as_deref() {
                None | Some("") => HostPathType::Unchecked,
                Some("DirectoryOrCreate") => HostPathType::DirectoryOrCreate,
                Some("Directory") => HostPathType::Directory,
                Some("FileOrCreate") => HostPathType::FileOrCreate,
                Some("File") => HostPathType::File,
                Some("Socket") => HostPathType::Socket,
                Some("CharDevice") => HostPathType::CharDevice,
                Some("BlockDevice") => HostPathType::BlockDevice,
                Some(other) => {
                    return Err(self.invalid(
                        format!("{field}.type"),
                        format!(
                            "{other:?} is not a hostPath type; use \"\", DirectoryOrCreate, \
                             Directory, FileOrCreate, File, Socket, CharDevice or BlockDevice"
                        ),
                    ))
                }
            };
            return Ok(VolumeSource::HostPath {
                path: host.into(),
                kind,
            });
        }
        // emptyDir, or no source at all, which Kubernetes defaults to emptyDir.
        let empty_dir = volume.empty_dir.as_ref();
        let medium_memory = match empty_dir.and_then(|e| e.medium.as_deref()) {
            None | Some("") => false,
            Some("Memory") => true,
            Some(medium) if medium.starts_with("HugePages") => {
                return Err(self.invalid(
                    format!("{path}.emptyDir.medium"),
                    format!("{medium} is not supported by peapod; use \"\" (disk) or Memory"),
                ))
            }
            Some(other) => {
                return Err(self.invalid(
                    format!("{path}.emptyDir.medium"),
                    format!("{other:?} is not a storage medium; use \"\" (disk) or Memory"),
                ))
            }
        };
        let size_limit = match empty_dir.and_then(|e| e.size_limit.as_ref()) {
            Some(raw) => Some(self.bytes(&format!("{path}.emptyDir.sizeLimit"), raw)?),
            None => None,
        };
        Ok(VolumeSource::EmptyDir {
            medium_memory,
            size_limit,
        })
    }
}
