//! Pod specs: a Kubernetes v1 Pod manifest in, a validated [`PodPlan`] out.
//!
//! peapod runs a Pod YAML as written for Kubernetes. The manifest is read
//! against the real Pod schema: every Kubernetes field is accepted, and a
//! field that is not in the schema is an error naming its path
//! (`spec.containers[1].imagee`). Then each field either
//!
//! - is honoured (containers, init and sidecar containers, env with
//!   `$(VAR)` expansion, `envFrom`, ConfigMap and Secret keys and the
//!   downward API, resources, ports, `emptyDir`, `hostPath`, `configMap`,
//!   `secret`, `downwardAPI`, `projected` and `persistentVolumeClaim`
//!   volumes, security context users, restart policy, ...),
//! - is ignored because it only matters in a cluster (scheduling, service
//!   accounts; logged at debug level) or is not implemented yet (probes,
//!   lifecycle hooks; logged as a warning), or
//! - is refused, when ignoring it would run the pod wrongly (`hostNetwork`,
//!   `hostPID`, `hostIPC`, `privileged`, cluster storage, ...).
//!
//! The file may hold, beside its one Pod, the ConfigMaps, Secrets and
//! PersistentVolumeClaims it uses (`objects.rs`); volumes of files are made
//! in `files.rs`.
//!
//! Errors say which file, which field, what is wrong and how to fix it:
//!
//! ```text
//! pod.yaml: spec.containers[1].resources.limits.memory: "1.5Gx" is not a quantity (use e.g. 512Mi, 1Gi, 1.5G)
//! ```

mod container;
mod env;
mod error;
mod expand;
mod files;
mod names;
pub mod objects;
pub(crate) use names::dns_label_problem;
mod plan;
mod pod;
mod probes;
pub mod quantity;
pub mod signals;
mod validate;

#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;

use serde::Deserialize;

pub use error::SpecError;
pub use objects::{ClaimPlan, ConfigData, Objects};
pub use plan::{
    Capabilities, ContainerPlan, HostPathType, LifecyclePlan, PodDns, PodPlan, PortPlan, Protocol,
    PullPolicy, RestartPolicy, VolumeMountPlan, VolumePlan, VolumeSource, DEFAULT_CONTAINER_MEMORY,
    DEFAULT_CONTAINER_MILLICPU, MIN_CONTAINER_MEMORY,
};

/// Reads and validates the pod file at `path`.
///
/// Relative image paths (`oci:./images/app`) are resolved against the
/// file's directory, made absolute, so the plan does not depend on the
/// current directory later.
pub fn load(path: &Path) -> Result<PodPlan, SpecError> {
    load_with(path, &[])
}

/// [`load`], with the ConfigMaps, Secrets and PersistentVolumeClaims of
/// `object_files` (`peapod run --configmap FILE`) beside those of the pod
/// file.
pub fn load_with(path: &Path, object_files: &[std::path::PathBuf]) -> Result<PodPlan, SpecError> {
    let text = read(path)?;
    let mut extra = Objects::default();
    for file in object_files {
        let source = file.display().to_string();
        let objects = parse_objects(&read(file)?, &source)?;
        let c = validate::Checker {
            file: &source,
            objects: &validate::NO_OBJECTS,
        };
        extra.merge(&c, objects)?;
    }
    let mut plan = parse_with(&text, &path.display().to_string(), extra)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let base = if dir.is_absolute() {
        dir.to_owned()
    } else {
        // A failing current_dir leaves paths relative to the process's
        // directory, which is what they meant anyway.
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_owned())
    };
    plan.resolve_image_paths(&base);
    Ok(plan)
}

fn read(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            SpecError::NotFound {
                path: path.to_owned(),
            }
        } else {
            SpecError::ReadFile {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Validates a pod manifest given as text; `source` names it in messages
/// (normally the file name). Image paths stay as written.
///
/// The text holds one Pod, and any ConfigMaps, Secrets and
/// PersistentVolumeClaims it uses, in YAML documents separated by `---`
/// (empty documents are fine).
pub fn parse(text: &str, source: &str) -> Result<PodPlan, SpecError> {
    parse_with(text, source, Objects::default())
}

/// [`parse`], with `extra` objects from other files.
pub fn parse_with(text: &str, source: &str, extra: Objects) -> Result<PodPlan, SpecError> {
    let (pod, mut objects) = documents(text, source, true)?;
    let c = validate::Checker {
        file: source,
        objects: &validate::NO_OBJECTS,
    };
    objects.merge(&c, extra)?;
    let Some(document) = pod.and_then(|index| serde_yaml::Deserializer::from_str(text).nth(index))
    else {
        return Err(SpecError::Empty {
            file: source.to_owned(),
        });
    };
    let pod: pod::Pod = serde_path_to_error::deserialize(document)
        .map_err(|err| error::decode_error(source, err))?;
    validate::pod_plan(pod, source, &objects)
}

/// The ConfigMaps, Secrets and PersistentVolumeClaims of a file that
/// holds no Pod (`--configmap FILE`).
pub fn parse_objects(text: &str, source: &str) -> Result<Objects, SpecError> {
    documents(text, source, false).map(|(_, objects)| objects)
}

/// The index of the Pod document (when `want_pod`) and the other objects
/// of a file.
fn documents(
    text: &str,
    source: &str,
    want_pod: bool,
) -> Result<(Option<usize>, Objects), SpecError> {
    let mut pods: Vec<usize> = Vec::new();
    let mut objects = Objects::default();
    let c = validate::Checker {
        file: source,
        objects: &validate::NO_OBJECTS,
    };
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        // Stop at the first error: serde_yaml repeats it forever (and may
        // panic) if iteration goes on.
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|err| error::syntax_error(source, &err))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "ConfigMap" | "Secret" | "PersistentVolumeClaim" => {
                validate::check_api_version(source, &value, &kind)?;
                let document = serde_yaml::Deserializer::from_str(text)
                    .nth(index)
                    .ok_or_else(|| SpecError::Empty {
                        file: source.to_owned(),
                    })?;
                objects.add(&c, &kind, document)?;
            }
            _ if want_pod => {
                validate::check_kind(source, &value)?;
                pods.push(index);
            }
            "Pod" => {
                return Err(c.invalid(
                    "",
                    format!(
                        "holds a Pod; a --configmap file holds only {}s (give the Pod as the \
                         file to run)",
                        objects::OBJECT_KINDS
                    ),
                ))
            }
            other => {
                return Err(c.invalid(
                    "",
                    format!(
                        "kind {other:?} is not supported here; a --configmap file holds only {}s",
                        objects::OBJECT_KINDS
                    ),
                ))
            }
        }
    }
    if pods.len() > 1 {
        return Err(SpecError::MultiplePods {
            file: source.to_owned(),
            count: pods.len(),
        });
    }
    Ok((pods.pop(), objects))
}
