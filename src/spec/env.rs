//! A container's environment: `envFrom` (ConfigMaps and Secrets, with a
//! prefix), `env` values, `valueFrom` (ConfigMap and Secret keys, and the
//! downward API: `fieldRef` and `resourceFieldRef`), and `$(VAR)`
//! expansion in values, `command` and `args`.

use super::error::SpecError;
use super::expand::expand;
use super::files::Source;
use super::plan::{ContainerPlan, PodPlan};
use super::pod::{
    Container, EnvVarSource, KeySelector, ObjectFieldSelector, RawQuantity, ResourceFieldSelector,
};
use super::validate::Checker;

/// The fieldRef paths peapod can resolve, for messages.
const SUPPORTED_FIELD_PATHS: &str = "metadata.name, metadata.namespace, metadata.uid, \
    metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, \
    spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP and status.hostIPs";
/// The same in a downwardAPI volume.
const VOLUME_FIELD_PATHS: &str = "metadata.name, metadata.namespace, metadata.uid, \
    metadata.labels, metadata.annotations, metadata.labels['KEY'] and \
    metadata.annotations['KEY']";

/// A container's resolved environment, command and args.
pub(crate) struct Resolved {
    env: Vec<(String, String)>,
    command: Vec<String>,
    args: Vec<String>,
    /// Expanded `subPathExpr`s, by mount index.
    sub_paths: Vec<(usize, String)>,
}

impl Resolved {
    pub fn apply_to(self, container: &mut ContainerPlan) {
        container.env = self.env;
        container.command = self.command;
        container.args = self.args;
        for (j, sub) in self.sub_paths {
            if let Some(m) = container.volume_mounts.get_mut(j) {
                m.sub_path = Some(sub);
            }
        }
    }
}

impl Checker<'_> {
    /// Resolves a container's `env` (with `valueFrom` and `$(VAR)`
    /// references) and expands `command` and `args` with it.
    pub(crate) fn environment(
        &self,
        raw: &Container,
        path: &str,
        container: &ContainerPlan,
        plan: &PodPlan,
        service_account: &str,
    ) -> Result<Resolved, SpecError> {
        let mut env: Vec<(String, String)> = Vec::new();
        // envFrom first, in order; env then overrides what it set.
        for (j, from) in raw
            .env_from
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let field = format!("{path}.envFrom[{j}]");
            let (source, r, sub) = match (&from.config_map_ref, &from.secret_ref) {
                (Some(r), None) => (Source::ConfigMap, r, "configMapRef"),
                (None, Some(r)) => (Source::Secret, r, "secretRef"),
                _ => {
                    return Err(
                        self.invalid(field, "must set exactly one of configMapRef and secretRef")
                    )
                }
            };
            let name_field = format!("{field}.{sub}.name");
            let name = r.name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
                self.invalid(
                    name_field.clone(),
                    format!(
                        "is required; name the {} to take variables from",
                        source.kind()
                    ),
                )
            })?;
            let prefix = from.prefix.as_deref().unwrap_or_default();
            let Some(data) = self.object(source, name, r.optional.unwrap_or(false), &name_field)?
            else {
                continue;
            };
            for (key, value) in &data.data {
                let var = format!("{prefix}{key}");
                // As the kubelet: a ConfigMap's binaryData is not
                // environment; a value that is not text is left out.
                let Ok(value) = String::from_utf8(value.clone()) else {
                    log::warn!(
                        "{}: {field}.{sub}: {} {name:?} key {key:?} is not UTF-8 text: left out \
                         of the environment",
                        self.file,
                        source.kind()
                    );
                    continue;
                };
                match env.iter_mut().find(|(existing, _)| *existing == var) {
                    Some(slot) => slot.1 = value,
                    None => env.push((var, value)),
                }
            }
        }
        for (j, var) in raw.env.as_deref().unwrap_or_default().iter().enumerate() {
            let field = format!("{path}.env[{j}]");
            let name = match var.name.as_deref() {
                Some(name) if !name.is_empty() => name,
                _ => {
                    return Err(self.invalid(
                        format!("{field}.name"),
                        "is required; name the variable, e.g. name: LOG_LEVEL",
                    ))
                }
            };
            if let Some(bad) = name
                .chars()
                .find(|&c| c == '=' || !(' '..='~').contains(&c))
            {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!(
                        "{name:?} is not a valid variable name: it contains {bad:?}; use printable \
                         ASCII without '=', e.g. LOG_LEVEL"
                    ),
                ));
            }
            let inline = var.value.as_deref().filter(|v| !v.is_empty());
            let value = match (&var.value_from, inline) {
                (Some(_), Some(_)) => {
                    return Err(self.invalid(field, "sets both value and valueFrom; keep only one"))
                }
                (Some(source), None) => self.value_from(
                    source,
                    &format!("{field}.valueFrom"),
                    container,
                    plan,
                    service_account,
                )?,
                (None, _) => {
                    let text = var.value.as_deref().unwrap_or_default();
                    expand(text, |key| lookup(&env, key))
                }
            };
            match env.iter_mut().find(|(existing, _)| existing == name) {
                Some(slot) => slot.1 = value,
                None => env.push((name.to_owned(), value)),
            }
        }
        let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
            list.iter()
                .flatten()
                .map(|item| expand(item, |key| lookup(&env, key)))
                .collect()
        };
        let command = expand_all(&raw.command);
        let args = expand_all(&raw.args);
        let mut sub_paths = Vec::new();
        for (j, m) in raw.volume_mounts.iter().flatten().enumerate() {
            if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                let sub = expand(expr, |key| lookup(&env, key));
                let field = format!("{path}.volumeMounts[{j}].subPathExpr");
                if sub.contains(peapod_proto::POD_IP_TOKEN) {
                    return Err(self.invalid(
                        field,
                        "cannot use status.podIP (known only once the pod runs)",
                    ));
                }
                self.check_sub_path(&field, &sub)?;
                sub_paths.push((j, sub));
            }
        }
        Ok(Resolved {
            env,
            command,
            args,
            sub_paths,
        })
    }

    fn value_from(
        &self,
        source: &EnvVarSource,
        field: &str,
        container: &ContainerPlan,
        plan: &PodPlan,
        service_account: &str,
    ) -> Result<String, SpecError> {
        let count = [
            source.config_map_key_ref.is_some(),
            source.secret_key_ref.is_some(),
            source.file_key_ref.is_some(),
            source.field_ref.is_some(),
            source.resource_field_ref.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if count > 1 {
            return Err(self.invalid(field, "sets more than one source; keep only one"));
        }
        if source.file_key_ref.is_some() {
            return Err(self.invalid(
                format!("{field}.fileKeyRef"),
                "environment from files in volumes is not supported by peapod; write the value \
                 inline with value:, or use a ConfigMap (configMapKeyRef)",
            ));
        }
        if let Some(selector) = &source.config_map_key_ref {
            return self.key_ref(
                Source::ConfigMap,
                selector,
                &format!("{field}.configMapKeyRef"),
            );
        }
        if let Some(selector) = &source.secret_key_ref {
            return self.key_ref(Source::Secret, selector, &format!("{field}.secretKeyRef"));
        }
        if let Some(selector) = &source.field_ref {
            return self.field_ref(
                selector,
                &format!("{field}.fieldRef"),
                plan,
                service_account,
                false,
            );
        }
        if let Some(selector) = &source.resource_field_ref {
            return self.resource_field_ref(
                selector,
                &format!("{field}.resourceFieldRef"),
                container,
                plan,
            );
        }
        Err(self.invalid(
            field,
            "is empty; set configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef, or use \
             value: instead",
        ))
    }

    /// A `configMapKeyRef` or `secretKeyRef`: the key's value; empty when
    /// optional and missing.
    fn key_ref(
        &self,
        source: Source,
        selector: &KeySelector,
        field: &str,
    ) -> Result<String, SpecError> {
        let kind = source.kind();
        let name = selector
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                self.invalid(
                    format!("{field}.name"),
                    format!("is required; name the {kind}"),
                )
            })?;
        let key = selector
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                self.invalid(
                    format!("{field}.key"),
                    format!("is required; name the key of {kind} {name}"),
                )
            })?;
        let optional = selector.optional.unwrap_or(false);
        let Some(data) = self.object(source, name, optional, &format!("{field}.name"))? else {
            return Ok(String::new());
        };
        match data.data.get(key) {
            Some(value) => String::from_utf8(value.clone()).map_err(|_| {
                self.invalid(
                    format!("{field}.key"),
                    format!(
                        "{kind} {name:?} key {key:?} is not UTF-8 text, which an environment \
                         variable must be; mount it as a file instead"
                    ),
                )
            }),
            None if optional => Ok(String::new()),
            None => {
                let keys: Vec<&str> = data.data.keys().map(String::as_str).collect();
                Err(self.invalid(
                    format!("{field}.key"),
                    format!(
                        "{kind} {name:?} has no key {key:?} (it has: {}); fix the key, or set \
                         optional: true",
                        keys.join(", ")
                    ),
                ))
            }
        }
    }

    /// A `fieldRef`'s value; `volume`: in a downwardAPI volume, where only
    /// metadata is offered.
    pub(crate) fn field_ref(
        &self,
        selector: &ObjectFieldSelector,
        field: &str,
        plan: &PodPlan,
        service_account: &str,
        volume: bool,
    ) -> Result<String, SpecError> {
        let supported = if volume {
            VOLUME_FIELD_PATHS
        } else {
            SUPPORTED_FIELD_PATHS
        };
        if let Some(version) = selector.api_version.as_deref().filter(|v| !v.is_empty()) {
            if version != "v1" {
                return Err(self.invalid(
                    format!("{field}.apiVersion"),
                    format!("{version:?} is not supported; use v1 or remove it"),
                ));
            }
        }
        let path_field = format!("{field}.fieldPath");
        let Some(field_path) = selector.field_path.as_deref().filter(|p| !p.is_empty()) else {
            return Err(self.invalid(path_field, format!("is required; use one of {supported}")));
        };
        let subscript = |prefix: &str| {
            field_path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix("['"))
                .and_then(|rest| rest.strip_suffix("']"))
        };
        let value = match field_path {
            "metadata.name" => plan.name.clone(),
            "metadata.namespace" => plan.namespace.clone(),
            "metadata.uid" => plan.uid.clone().ok_or_else(|| {
                self.invalid(
                    path_field.clone(),
                    "metadata.uid is not set in this manifest; set metadata.uid or drop this \
                     variable",
                )
            })?,
            "spec.serviceAccountName" if !volume => service_account.to_owned(),
            // The node is this host.
            "spec.nodeName" if !volume => crate::hostinfo::hostname(),
            _ if subscript("metadata.labels").is_some() => subscript("metadata.labels")
                .and_then(|key| plan.labels.get(key).cloned())
                .unwrap_or_default(),
            _ if subscript("metadata.annotations").is_some() => subscript("metadata.annotations")
                .and_then(|key| plan.annotations.get(key).cloned())
                .unwrap_or_default(),
            // peapod-init puts the address in (it alone knows it).
            "status.podIP" | "status.podIPs" if !volume => peapod_proto::POD_IP_TOKEN.to_owned(),
            // The node is this host: its address.
            "status.hostIP" | "status.hostIPs" if !volume => crate::hostinfo::host_ip().to_string(),
            other => {
                return Err(self.invalid(
                    path_field,
                    format!("{other:?} is not a supported field path here; use one of {supported}"),
                ))
            }
        };
        Ok(value)
    }

    pub(crate) fn resource_field_ref(
        &self,
        selector: &ResourceFieldSelector,
        field: &str,
        container: &ContainerPlan,
        plan: &PodPlan,
    ) -> Result<String, SpecError> {
        let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
            None => container,
            Some(name) => plan
                .init_containers
                .iter()
                .chain(&plan.containers)
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    self.invalid(
                        format!("{field}.containerName"),
                        format!(
                            "no container named {name:?} in this pod; fix the name or remove it"
                        ),
                    )
                })?,
        };
        let resource_field = format!("{field}.resource");
        let Some(resource) = selector.resource.as_deref().filter(|r| !r.is_empty()) else {
            return Err(self.invalid(
                resource_field,
                "is required; use limits.cpu, limits.memory, requests.cpu or requests.memory",
            ));
        };
        let divisor_field = format!("{field}.divisor");
        let one = RawQuantity("1".to_owned());
        let divisor = selector.divisor.as_ref().unwrap_or(&one);
        let zero_divisor = |example: &str| {
            self.invalid(
                divisor_field.clone(),
                format!(
                    "{:?} is zero; use a positive divisor, e.g. {example}",
                    divisor.0
                ),
            )
        };
        let (amount, unit) = match resource {
            "limits.cpu" => (
                target
                    .cpu_limit
                    .unwrap_or_else(|| u64::from(plan.vcpus()) * 1000),
                self.millicores(&divisor_field, divisor)?,
            ),
            "requests.cpu" => (
                target.cpu_request.or(target.cpu_limit).unwrap_or(0),
                self.millicores(&divisor_field, divisor)?,
            ),
            "limits.memory" => (
                target
                    .memory_limit
                    .unwrap_or_else(|| plan.effective_memory()),
                self.bytes(&divisor_field, divisor)?,
            ),
            "requests.memory" => (
                target.memory_request.or(target.memory_limit).unwrap_or(0),
                self.bytes(&divisor_field, divisor)?,
            ),
            other => {
                return Err(self.invalid(
                    resource_field,
                    format!(
                        "{other:?} is not supported by peapod; use limits.cpu, limits.memory, \
                         requests.cpu or requests.memory"
                    ),
                ))
            }
        };
        if unit == 0 {
            let example = if resource.ends_with("cpu") {
                "1m or 1"
            } else {
                "1 or 1Mi"
            };
            return Err(zero_divisor(example));
        }
        Ok(amount.div_ceil(unit).to_string())
    }
}

/// The value defined so far for `key`.
fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}
