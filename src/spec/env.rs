//! A container's environment: `env` values, `valueFrom` (the downward API
//! parts peapod can answer: `fieldRef` and `resourceFieldRef`), and
//! `$(VAR)` expansion in values, `command` and `args`.

use super::error::SpecError;
use super::expand::expand;
use super::plan::{ContainerPlan, PodPlan};
use super::pod::{
    Container, EnvVarSource, ObjectFieldSelector, RawQuantity, ResourceFieldSelector,
};
use super::validate::Checker;

/// The fieldRef paths peapod can resolve, for messages.
const SUPPORTED_FIELD_PATHS: &str = "metadata.name, metadata.namespace, metadata.uid, \
    metadata.labels['KEY'], metadata.annotations['KEY'] and spec.serviceAccountName";

/// A container's resolved environment, command and args.
pub(crate) struct Resolved {
    env: Vec<(String, String)>,
    command: Vec<String>,
    args: Vec<String>,
}

impl Resolved {
    pub fn apply_to(self, container: &mut ContainerPlan) {
        container.env = self.env;
        container.command = self.command;
        container.args = self.args;
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
        Ok(Resolved { env, command, args })
    }

    fn value_from(
        &self,
        source: &EnvVarSource,
        field: &str,
        container: &ContainerPlan,
        plan: &PodPlan,
        service_account: &str,
    ) -> Result<String, SpecError> {
        let unsupported = [
            (
                "configMapKeyRef",
                source.config_map_key_ref.is_some(),
                "ConfigMaps",
            ),
            ("secretKeyRef", source.secret_key_ref.is_some(), "Secrets"),
            (
                "fileKeyRef",
                source.file_key_ref.is_some(),
                "files in volumes",
            ),
        ];
        let count = unsupported.iter().filter(|(_, set, _)| *set).count()
            + usize::from(source.field_ref.is_some())
            + usize::from(source.resource_field_ref.is_some());
        if count > 1 {
            return Err(self.invalid(field, "sets more than one source; keep only one"));
        }
        if let Some((name, _, what)) = unsupported.iter().find(|(_, set, _)| *set) {
            return Err(self.invalid(
                format!("{field}.{name}"),
                format!(
                    "environment from {what} is not supported by peapod (there is no cluster to \
                     read them from); write the value inline with value: instead of valueFrom"
                ),
            ));
        }
        if let Some(selector) = &source.field_ref {
            return self.field_ref(
                selector,
                &format!("{field}.fieldRef"),
                plan,
                service_account,
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
            "is empty; set fieldRef or resourceFieldRef, or use value: instead",
        ))
    }

    fn field_ref(
        &self,
        selector: &ObjectFieldSelector,
        field: &str,
        plan: &PodPlan,
        service_account: &str,
    ) -> Result<String, SpecError> {
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
            return Err(self.invalid(
                path_field,
                format!("is required; use one of {SUPPORTED_FIELD_PATHS}"),
            ));
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
            "spec.serviceAccountName" => service_account.to_owned(),
            _ if subscript("metadata.labels").is_some() => subscript("metadata.labels")
                .and_then(|key| plan.labels.get(key).cloned())
                .unwrap_or_default(),
            _ if subscript("metadata.annotations").is_some() => subscript("metadata.annotations")
                .and_then(|key| plan.annotations.get(key).cloned())
                .unwrap_or_default(),
            "spec.nodeName" | "status.hostIP" | "status.hostIPs" | "status.podIP"
            | "status.podIPs" => {
                return Err(self.invalid(
                    path_field,
                    format!(
                        "{field_path} is not supported by peapod yet; use one of \
                         {SUPPORTED_FIELD_PATHS}"
                    ),
                ))
            }
            other => {
                return Err(self.invalid(
                    path_field,
                    format!(
                    "{other:?} is not a supported field path; use one of {SUPPORTED_FIELD_PATHS}"
                ),
                ))
            }
        };
        Ok(value)
    }

    fn resource_field_ref(
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
