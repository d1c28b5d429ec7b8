//! Volumes of files: `configMap`, `secret`, `downwardAPI` and `projected`.
//! Their files are made here, from the pod file's ConfigMaps and Secrets
//! and the pod's own metadata and resources, as the kubelet makes them
//! (keys as file names unless `items` maps them, `defaultMode` 0644, a
//! missing object or key an error unless `optional`), and travel to the
//! guest with the pod.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::error::SpecError;
use super::objects::{ConfigData, MAX_POD_DATA};
use super::plan::{FilePlan, PodPlan, VolumeSource};
use super::pod::{
    ConfigMapVolumeSource, DownwardApiFile, DownwardApiVolumeSource, KeyToPath,
    ProjectedVolumeSource, RawMode, SecretVolumeSource, Volume,
};
use super::validate::Checker;

/// The kubelet's `defaultMode`.
const DEFAULT_MODE: u32 = 0o644;

/// A downward API file whose content waits for the containers' plans
/// (`resourceFieldRef` names a container).
pub(crate) struct Pending<'r> {
    pub volume: usize,
    pub file: usize,
    pub item: &'r DownwardApiFile,
    pub field: String,
}

/// Which object a volume or variable refers to.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    pub fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "ConfigMap",
            Source::Secret => "Secret",
        }
    }
}

impl<'a> Checker<'a> {
    /// The ConfigMap or Secret `name`, or `None` when it is optional and
    /// absent.
    pub(crate) fn object(
        &self,
        source: Source,
        name: &str,
        optional: bool,
        field: &str,
    ) -> Result<Option<&'a ConfigData>, SpecError> {
        let map = match source {
            Source::ConfigMap => &self.objects.config_maps,
            Source::Secret => &self.objects.secrets,
        };
        match map.get(name) {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => {
                let kind = source.kind();
                let known: Vec<&str> = map.keys().map(String::as_str).collect();
                let have = if known.is_empty() {
                    format!("no {kind} is defined")
                } else {
                    format!("the {kind}s defined are: {}", known.join(", "))
                };
                Err(self.invalid(
                    field,
                    format!(
                        "{kind} {name:?} is not in the pod file or a --configmap file ({have}); \
                         add it in a document of its own (kind: {kind}, metadata.name: {name}) \
                         or set optional: true"
                    ),
                ))
            }
        }
    }

    fn mode(&self, field: &str, mode: Option<&RawMode>, default: u32) -> Result<u32, SpecError> {
        let Some(raw) = mode else {
            return Ok(default);
        };
        match raw.value() {
            Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
            _ => Err(self.invalid(
                field,
                format!(
                    "{:?} is not a file mode; use 0 to 0777 in octal (0644) or 0 to 511 in \
                     decimal (420)",
                    raw.0
                ),
            )),
        }
    }

    fn file_path(&self, field: &str, path: Option<&str>) -> Result<String, SpecError> {
        let path = path.unwrap_or_default();
        if path.is_empty() {
            return Err(self.invalid(field, "is required; name the file, e.g. path: app.conf"));
        }
        let bad = Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
            || path.starts_with("..")
            || path.len() > 4096;
        if bad {
            return Err(self.invalid(
                field,
                format!(
                    "{path:?} is not a relative path inside the volume; write it without a \
                     leading '/', '..' or a leading \"..\" (kept for the volume's own use)"
                ),
            ));
        }
        Ok(path.to_owned())
    }

    /// The files of a ConfigMap or Secret: every key, or `items`;
    /// `name_field` is the field naming it (`name`, or a secret volume's
    /// `secretName`).
    #[allow(clippy::too_many_arguments, reason = "the fields of one source")]
    fn object_files(
        &self,
        source: Source,
        field: &str,
        name_field: &str,
        name: Option<&str>,
        items: Option<&[KeyToPath]>,
        default_mode: u32,
        optional: bool,
    ) -> Result<Vec<FilePlan>, SpecError> {
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| {
            self.invalid(
                format!("{field}.{name_field}"),
                format!("is required; name the {} to mount", source.kind()),
            )
        })?;
        let Some(data) = self.object(source, name, optional, &format!("{field}.{name_field}"))?
        else {
            return Ok(Vec::new());
        };
        let Some(items) = items else {
            return Ok(data
                .data
                .iter()
                .map(|(key, value)| FilePlan {
                    path: key.clone(),
                    mode: default_mode,
                    data: value.clone(),
                })
                .collect());
        };
        let mut files = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}.items[{i}]");
            let key = item
                .key
                .as_deref()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    self.invalid(format!("{at}.key"), "is required; name the key to mount")
                })?;
            let path = self.file_path(&format!("{at}.path"), item.path.as_deref())?;
            let mode = self.mode(&format!("{at}.mode"), item.mode.as_ref(), default_mode)?;
            match data.data.get(key) {
                Some(value) => files.push(FilePlan {
                    path,
                    mode,
                    data: value.clone(),
                }),
                None if optional => {}
                None => {
                    let keys: Vec<&str> = data.data.keys().map(String::as_str).collect();
                    return Err(self.invalid(
                        format!("{at}.key"),
                        format!(
                            "{} {name:?} has no key {key:?} (it has: {}); fix the key, or set \
                             optional: true",
                            source.kind(),
                            keys.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(files)
    }

    /// Downward API files, their content left for [`Checker::downward`].
    fn downward_files<'r>(
        &self,
        field: &str,
        raw: &'r DownwardApiVolumeSource,
        default_mode: u32,
        volume: usize,
        first: usize,
        pending: &mut Vec<Pending<'r>>,
    ) -> Result<Vec<FilePlan>, SpecError> {
        let mut files = Vec::new();
        for (i, item) in raw.items.as_deref().unwrap_or_default().iter().enumerate() {
            let at = format!("{field}.items[{i}]");
            let path = self.file_path(&format!("{at}.path"), item.path.as_deref())?;
            let mode = self.mode(&format!("{at}.mode"), item.mode.as_ref(), default_mode)?;
            match (&item.field_ref, &item.resource_field_ref) {
                (Some(_), Some(_)) => {
                    return Err(
                        self.invalid(at, "sets both fieldRef and resourceFieldRef; keep only one")
                    )
                }
                (None, None) => {
                    return Err(self.invalid(at, "sets neither fieldRef nor resourceFieldRef"))
                }
                (_, Some(r)) if r.container_name.as_deref().unwrap_or_default().is_empty() => {
                    return Err(self.invalid(
                        format!("{at}.resourceFieldRef.containerName"),
                        "is required in a volume; name the container whose resources to show",
                    ))
                }
                _ => {}
            }
            pending.push(Pending {
                volume,
                file: first + files.len(),
                item,
                field: at,
            });
            files.push(FilePlan {
                path,
                mode,
                data: Vec::new(),
            });
        }
        Ok(files)
    }

    /// The source of a `configMap`, `secret`, `downwardAPI` or `projected`
    /// volume; `None` for other volumes.
    pub(crate) fn files_volume<'r>(
        &self,
        volume: &'r Volume,
        path: &str,
        index: usize,
        pending: &mut Vec<Pending<'r>>,
    ) -> Result<Option<VolumeSource>, SpecError> {
        let files = if let Some(cm) = &volume.config_map {
            let ConfigMapVolumeSource {
                name,
                items,
                default_mode,
                optional,
            } = cm;
            let field = format!("{path}.configMap");
            let mode = self.mode(
                &format!("{field}.defaultMode"),
                default_mode.as_ref(),
                DEFAULT_MODE,
            )?;
            self.object_files(
                Source::ConfigMap,
                &field,
                "name",
                name.as_deref(),
                items.as_deref(),
                mode,
                optional.unwrap_or(false),
            )?
        } else if let Some(secret) = &volume.secret {
            let SecretVolumeSource {
                secret_name,
                items,
                default_mode,
                optional,
            } = secret;
            let field = format!("{path}.secret");
            let mode = self.mode(
                &format!("{field}.defaultMode"),
                default_mode.as_ref(),
                DEFAULT_MODE,
            )?;
            self.object_files(
                Source::Secret,
                &field,
                "secretName",
                secret_name.as_deref(),
                items.as_deref(),
                mode,
                optional.unwrap_or(false),
            )?
        } else if let Some(dapi) = &volume.downward_api {
            let field = format!("{path}.downwardAPI");
            let mode = self.mode(
                &format!("{field}.defaultMode"),
                dapi.default_mode.as_ref(),
                DEFAULT_MODE,
            )?;
            self.downward_files(&field, dapi, mode, index, 0, pending)?
        } else if let Some(projected) = &volume.projected {
            self.projected(projected, &format!("{path}.projected"), index, pending)?
        } else {
            return Ok(None);
        };
        let mut seen = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            if let Some(first) = seen.insert(f.path.as_str(), i) {
                return Err(self.invalid(
                    path,
                    format!(
                        "makes the file {:?} twice (entries {first} and {i}); give each its own \
                         path",
                        f.path
                    ),
                ));
            }
        }
        Ok(Some(VolumeSource::Files { files }))
    }

    fn projected<'r>(
        &self,
        raw: &'r ProjectedVolumeSource,
        field: &str,
        volume: usize,
        pending: &mut Vec<Pending<'r>>,
    ) -> Result<Vec<FilePlan>, SpecError> {
        let mode = self.mode(
            &format!("{field}.defaultMode"),
            raw.default_mode.as_ref(),
            DEFAULT_MODE,
        )?;
        let mut files = Vec::new();
        for (i, source) in raw
            .sources
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let at = format!("{field}.sources[{i}]");
            let set = [
                source.config_map.is_some(),
                source.secret.is_some(),
                source.downward_api.is_some(),
                source.service_account_token.is_some(),
                source.cluster_trust_bundle.is_some(),
                source.pod_certificate.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if set != 1 {
                return Err(self.invalid(
                    at,
                    "must set exactly one of configMap, secret and downwardAPI",
                ));
            }
            let refused = [
                (
                    "serviceAccountToken",
                    source.service_account_token.is_some(),
                ),
                ("clusterTrustBundle", source.cluster_trust_bundle.is_some()),
                ("podCertificate", source.pod_certificate.is_some()),
            ];
            if let Some((name, _)) = refused.iter().find(|(_, s)| *s) {
                return Err(self.invalid(
                    format!("{at}.{name}"),
                    "is not supported by peapod: there is no cluster API server to issue it; \
                     put what the pod needs in a Secret instead",
                ));
            }
            if let Some(cm) = &source.config_map {
                files.extend(self.object_files(
                    Source::ConfigMap,
                    &format!("{at}.configMap"),
                    "name",
                    cm.name.as_deref(),
                    cm.items.as_deref(),
                    mode,
                    cm.optional.unwrap_or(false),
                )?);
            } else if let Some(secret) = &source.secret {
                files.extend(self.object_files(
                    Source::Secret,
                    &format!("{at}.secret"),
                    "name",
                    secret.name.as_deref(),
                    secret.items.as_deref(),
                    mode,
                    secret.optional.unwrap_or(false),
                )?);
            } else if let Some(dapi) = &source.downward_api {
                let first = files.len();
                files.extend(self.downward_files(
                    &format!("{at}.downwardAPI"),
                    dapi,
                    mode,
                    volume,
                    first,
                    pending,
                )?);
            }
        }
        Ok(files)
    }

    /// Fill in the downward API files once the plan is known.
    pub(crate) fn downward(
        &self,
        plan: &mut PodPlan,
        pending: &[Pending<'_>],
        service_account: &str,
    ) -> Result<(), SpecError> {
        for p in pending {
            let text = if let Some(selector) = &p.item.field_ref {
                let field = format!("{}.fieldRef", p.field);
                match selector.field_path.as_deref() {
                    Some("metadata.labels") => key_values(&plan.labels),
                    Some("metadata.annotations") => key_values(&plan.annotations),
                    _ => self.field_ref(selector, &field, plan, service_account, true)?,
                }
            } else if let Some(selector) = &p.item.resource_field_ref {
                let field = format!("{}.resourceFieldRef", p.field);
                let first = &plan.containers[0];
                self.resource_field_ref(selector, &field, first, plan)?
            } else {
                String::new()
            };
            if let VolumeSource::Files { files } = &mut plan.volumes[p.volume].source {
                files[p.file].data = text.into_bytes();
            }
        }
        Ok(())
    }

    /// The pod carries its files and the environment they feed within
    /// [`MAX_POD_DATA`].
    pub(crate) fn data_within_limit(&self, plan: &PodPlan) -> Result<(), SpecError> {
        let files: usize = plan
            .volumes
            .iter()
            .map(|v| match &v.source {
                VolumeSource::Files { files } => files.iter().map(|f| f.data.len()).sum(),
                _ => 0,
            })
            .sum();
        let env: usize = plan
            .init_containers
            .iter()
            .chain(&plan.containers)
            .flat_map(|c| &c.env)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if files + env > MAX_POD_DATA {
            return Err(self.invalid(
                "spec",
                format!(
                    "the pod's ConfigMap, Secret and downward API files and its environment come \
                     to {} bytes, more than peapod passes to a pod ({} KiB); mount large data \
                     with hostPath or a persistentVolumeClaim instead",
                    files + env,
                    MAX_POD_DATA >> 10
                ),
            ));
        }
        Ok(())
    }
}

/// `metadata.labels` or `metadata.annotations` as a downward API file:
/// `key="value"` lines, sorted, values quoted as the kubelet quotes them.
fn key_values(map: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in map {
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_labels_file_is_sorted_quoted_lines() {
        let map: BTreeMap<String, String> = [
            ("b".to_owned(), "two \"2\"".to_owned()),
            ("a".to_owned(), "x\\y\nz".to_owned()),
        ]
        .into();
        assert_eq!(key_values(&map), "a=\"x\\\\y\\nz\"\nb=\"two \\\"2\\\"\"");
    }
}
