//! Pod specs: a Kubernetes v1 Pod manifest in, a validated [`PodPlan`] out.
//!
//! peapod runs a Pod YAML as written for Kubernetes. The manifest is read
//! against the real Pod schema: every Kubernetes field is accepted, and a
//! field that is not in the schema is an error naming its path
//! (`spec.containers[1].imagee`). Then each field either
//!
//! - is honoured (containers, init and sidecar containers, env with
//!   `$(VAR)` expansion and downward-API `fieldRef`/`resourceFieldRef`,
//!   resources, ports, `emptyDir` and `hostPath` volumes, security context
//!   users, restart policy, ...),
//! - is ignored because it only matters in a cluster (scheduling, service
//!   accounts; logged at debug level) or is not implemented yet (probes,
//!   lifecycle hooks; logged as a warning), or
//! - is refused, when ignoring it would run the pod wrongly (`hostNetwork`,
//!   `hostPID`, `hostIPC`, `privileged`, ConfigMap and Secret references,
//!   unsupported volume sources, ...).
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
mod names;
pub(crate) use names::dns_label_problem;
mod plan;
mod pod;
pub mod quantity;
mod validate;

#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;

use serde::Deserialize;

pub use error::SpecError;
pub use plan::{
    Capabilities, ContainerPlan, HostPathType, PodDns, PodPlan, PortPlan, Protocol, RestartPolicy,
    VolumeMountPlan, VolumePlan, VolumeSource, DEFAULT_CONTAINER_MEMORY,
    DEFAULT_CONTAINER_MILLICPU, MIN_CONTAINER_MEMORY,
};

/// Reads and validates the pod file at `path`.
///
/// Relative image paths (`oci:./images/app`) are resolved against the
/// file's directory, made absolute, so the plan does not depend on the
/// current directory later.
pub fn load(path: &Path) -> Result<PodPlan, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
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
    })?;
    let mut plan = parse(&text, &path.display().to_string())?;
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

/// Validates a pod manifest given as text; `source` names it in messages
/// (normally the file name). Image paths stay as written.
///
/// The text must hold exactly one YAML document; a leading `---` and empty
/// documents are fine.
pub fn parse(text: &str, source: &str) -> Result<PodPlan, SpecError> {
    let index = find_document(text, source)?;
    let document = serde_yaml::Deserializer::from_str(text)
        .nth(index)
        .ok_or_else(|| SpecError::Empty {
            file: source.to_owned(),
        })?;
    let pod: pod::Pod = serde_path_to_error::deserialize(document)
        .map_err(|err| error::decode_error(source, err))?;
    validate::pod_plan(pod, source)
}

/// Finds the one non-empty YAML document and checks its kind, before the
/// schema is applied. Returns its index in the stream.
fn find_document(text: &str, source: &str) -> Result<usize, SpecError> {
    let mut found: Vec<(usize, serde_yaml::Value)> = Vec::new();
    let mut count = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        // Stop at the first error: serde_yaml repeats it forever (and may
        // panic) if iteration goes on.
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|err| error::syntax_error(source, &err))?;
        if value.is_null() {
            continue;
        }
        count += 1;
        if found.is_empty() {
            found.push((index, value));
        }
    }
    if count > 1 {
        return Err(SpecError::MultipleDocuments {
            file: source.to_owned(),
            count,
        });
    }
    let Some((index, value)) = found.pop() else {
        return Err(SpecError::Empty {
            file: source.to_owned(),
        });
    };
    validate::check_kind(source, &value)?;
    Ok(index)
}
