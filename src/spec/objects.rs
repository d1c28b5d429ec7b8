//! The objects a pod file may hold beside its Pod, as `kubectl apply -f`
//! and `podman kube play` take them: ConfigMaps, Secrets and
//! PersistentVolumeClaims, in documents separated by `---`, in the pod file
//! itself or in files given with `peapod run --configmap FILE`.
//!
//! Each is read against its Kubernetes schema (unknown fields are errors
//! naming their path), its keys checked as the API server checks them and
//! its base64 decoded, so that a pod referring to it gets exactly the bytes
//! a cluster would give it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::error::SpecError;
use super::pod::{ObjectMeta, RawQuantity};
use super::validate::Checker;

/// The most bytes of ConfigMap, Secret and downward API files and
/// environment a pod may carry: they travel to the guest in the pod's one
/// message (frames of 1 MiB, data base64-encoded), and never through a
/// file on the host.
pub const MAX_POD_DATA: usize = 512 << 10;

/// A ConfigMap's or Secret's keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigData {
    /// Key to bytes.
    pub data: BTreeMap<String, Vec<u8>>,
}

/// A PersistentVolumeClaim: a named volume that outlives the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimPlan {
    /// `spec.resources.requests.storage`, bytes.
    pub storage: Option<u64>,
    /// `spec.accessModes`.
    pub access_modes: Vec<String>,
}

/// Everything besides the Pod that a pod's files define, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    /// ConfigMaps.
    pub config_maps: BTreeMap<String, ConfigData>,
    /// Secrets.
    pub secrets: BTreeMap<String, ConfigData>,
    /// PersistentVolumeClaims.
    pub claims: BTreeMap<String, ClaimPlan>,
}

/// The kinds a pod file may hold, for messages.
pub(crate) const OBJECT_KINDS: &str = "ConfigMap, Secret and PersistentVolumeClaim";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
struct ConfigMap {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<ObjectMeta>,
    data: Option<BTreeMap<String, String>>,
    binary_data: Option<BTreeMap<String, String>>,
    immutable: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
struct Secret {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<ObjectMeta>,
    data: Option<BTreeMap<String, String>>,
    string_data: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    secret_type: Option<String>,
    immutable: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
struct PersistentVolumeClaim {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<ObjectMeta>,
    spec: Option<ClaimSpec>,
    status: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
struct ClaimSpec {
    access_modes: Option<Vec<String>>,
    resources: Option<ClaimResources>,
    storage_class_name: Option<Value>,
    volume_mode: Option<String>,
    volume_name: Option<Value>,
    selector: Option<Value>,
    data_source: Option<Value>,
    data_source_ref: Option<Value>,
    volume_attributes_class_name: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code, reason = "fields kept so the schema accepts them")]
struct ClaimResources {
    limits: Option<BTreeMap<String, RawQuantity>>,
    requests: Option<BTreeMap<String, RawQuantity>>,
}

/// Whether `key` is a valid ConfigMap or Secret key: at most 253
/// characters of letters, digits, `-`, `_` and `.`, not `.` or `..`; the
/// problem otherwise.
pub(crate) fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("is empty".into());
    }
    if key.len() > 253 {
        return Some(format!("is {} characters long (at most 253)", key.len()));
    }
    if key == "." || key == ".." {
        return Some(format!("is {key:?}"));
    }
    key.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .map(|c| format!("contains {c:?}"))
}

impl Objects {
    /// Add the object in YAML document `value` of kind `kind`.
    pub(crate) fn add(
        &mut self,
        c: &Checker,
        kind: &str,
        value: serde_yaml::Deserializer<'_>,
    ) -> Result<(), SpecError> {
        match kind {
            "ConfigMap" => {
                let raw: ConfigMap = decode(c, value)?;
                let name = object_name(c, kind, raw.metadata.as_ref())?;
                let at = format!("ConfigMap {name}");
                let mut data = ConfigData::default();
                for (key, text) in raw.data.unwrap_or_default() {
                    check_key(c, &format!("{at}: data"), &key)?;
                    data.data.insert(key, text.into_bytes());
                }
                for (key, b64) in raw.binary_data.unwrap_or_default() {
                    let field = format!("{at}: binaryData");
                    check_key(c, &field, &key)?;
                    if data.data.contains_key(&key) {
                        return Err(c.invalid(
                            format!("{field}.{key}"),
                            "is also in data; a key is in data or binaryData, not both",
                        ));
                    }
                    let bytes = base64(c, &format!("{field}.{key}"), &b64)?;
                    data.data.insert(key, bytes);
                }
                insert(c, &mut self.config_maps, kind, name, data)
            }
            "Secret" => {
                let raw: Secret = decode(c, value)?;
                let name = object_name(c, kind, raw.metadata.as_ref())?;
                let at = format!("Secret {name}");
                let mut data = ConfigData::default();
                for (key, b64) in raw.data.unwrap_or_default() {
                    let field = format!("{at}: data");
                    check_key(c, &field, &key)?;
                    let bytes = base64(c, &format!("{field}.{key}"), &b64)?;
                    data.data.insert(key, bytes);
                }
                // stringData is merged over data, as the API server does.
                for (key, text) in raw.string_data.unwrap_or_default() {
                    check_key(c, &format!("{at}: stringData"), &key)?;
                    data.data.insert(key, text.into_bytes());
                }
                insert(c, &mut self.secrets, kind, name, data)
            }
            "PersistentVolumeClaim" => {
                let raw: PersistentVolumeClaim = decode(c, value)?;
                let name = object_name(c, kind, raw.metadata.as_ref())?;
                let at = format!("PersistentVolumeClaim {name}");
                let spec = raw.spec.unwrap_or_default();
                if let Some(mode) = spec.volume_mode.as_deref().filter(|m| *m != "Filesystem") {
                    return Err(c.invalid(
                        format!("{at}: spec.volumeMode"),
                        format!("{mode:?} is not supported by peapod; use Filesystem"),
                    ));
                }
                let storage = match spec
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                {
                    Some(q) => Some(c.bytes(&format!("{at}: spec.resources.requests.storage"), q)?),
                    None => None,
                };
                let claim = ClaimPlan {
                    storage,
                    access_modes: spec.access_modes.unwrap_or_default(),
                };
                insert(c, &mut self.claims, kind, name, claim)
            }
            other => Err(c.invalid(
                "",
                format!(
                    "kind {other} is not supported in a pod file; it holds one Pod and the \
                     {OBJECT_KINDS}s the Pod uses"
                ),
            )),
        }
    }

    /// Add every object of `other` (from another file); a name defined in
    /// both is an error.
    pub(crate) fn merge(&mut self, c: &Checker, other: Objects) -> Result<(), SpecError> {
        for (name, v) in other.config_maps {
            insert(c, &mut self.config_maps, "ConfigMap", name, v)?;
        }
        for (name, v) in other.secrets {
            insert(c, &mut self.secrets, "Secret", name, v)?;
        }
        for (name, v) in other.claims {
            insert(c, &mut self.claims, "PersistentVolumeClaim", name, v)?;
        }
        Ok(())
    }
}

/// Deserialize from the document itself (not a `Value`): scalars reach
/// quantities and modes as written, and errors have lines.
fn decode<T: for<'de> Deserialize<'de>>(
    c: &Checker,
    document: serde_yaml::Deserializer<'_>,
) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(document)
        .map_err(|err| super::error::decode_error(c.file, err))
}

fn object_name(c: &Checker, kind: &str, meta: Option<&ObjectMeta>) -> Result<String, SpecError> {
    let name = meta.and_then(|m| m.name.as_deref()).unwrap_or_default();
    if name.is_empty() {
        return Err(c.invalid(
            format!("{kind}: metadata.name"),
            "is required; name it so the pod can refer to it",
        ));
    }
    if let Some(problem) = super::names::dns_subdomain_problem(name, 253) {
        return Err(c.invalid(
            format!("{kind}: metadata.name"),
            format!(
                "{name:?} is not a valid name: it {problem}; use lowercase letters, digits, '-' \
                 and '.'"
            ),
        ));
    }
    Ok(name.to_owned())
}

fn check_key(c: &Checker, field: &str, key: &str) -> Result<(), SpecError> {
    match key_problem(key) {
        None => Ok(()),
        Some(problem) => Err(c.invalid(
            format!("{field}.{key}"),
            format!(
                "{key:?} is not a valid key: it {problem}; use letters, digits, '-', '_' and '.'"
            ),
        )),
    }
}

fn base64(c: &Checker, field: &str, text: &str) -> Result<Vec<u8>, SpecError> {
    // YAML folds long values across lines; base64 itself has no spaces.
    let joined: String = text.split_ascii_whitespace().collect();
    peapod_proto::bytes::decode(&joined).map_err(|e| {
        c.invalid(
            field,
            format!(
                "is not base64 ({e}); encode the value with `base64 -w0`, or put the text under \
                 stringData (Secret) or data (ConfigMap)"
            ),
        )
    })
}

fn insert<T>(
    c: &Checker,
    map: &mut BTreeMap<String, T>,
    kind: &str,
    name: String,
    value: T,
) -> Result<(), SpecError> {
    if map.contains_key(&name) {
        return Err(c.invalid(
            format!("{kind} {name}"),
            format!("is defined twice; keep one {kind} of each name"),
        ));
    }
    map.insert(name, value);
    Ok(())
}
