//! The JSON documents of OCI image layouts and docker archives, and picking
//! one image out of an index.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::ImageConfig;

/// The annotation holding an image's tag in an OCI index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd puts the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The media type of the manifests peapod writes for docker archives.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A content descriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Annotations, e.g. [`REF_NAME`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of an image in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where else the content is (foreign, non-distributable layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// The tag annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }
}

/// An image's platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Platform {
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
}

/// `index.json`, an image index, or an image manifest: the fields of both,
/// so that a blob can be told apart by its content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Document {
    /// Always 2.
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// The document's media type.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// An index's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
    /// A manifest's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    /// A manifest's layers, bottom first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
}

/// The image config file (OCI and docker share it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    /// How to run the image.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The uncompressed digests of the layers.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The `config` object of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `Env`, `NAME=value` each.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `User`.
    #[serde(default)]
    pub user: Option<String>,
    /// `StopSignal`.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// One `sha256:` digest per layer, of its uncompressed tar.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    /// The parts peapod uses.
    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            stop_signal: c.stop_signal.unwrap_or_default(),
        }
    }
}

/// One image of a docker archive's `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifest {
    /// Path of the config file in the archive.
    pub config: String,
    /// `name:tag`s, possibly none.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars in the archive, bottom first.
    pub layers: Vec<String>,
}

/// Parses JSON, naming the document on error.
pub fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    image: &str,
    what: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::ParseJson {
        image: image.to_owned(),
        what: what.to_owned(),
        source,
    })
}

/// Picks the image of `manifests` (the entries of `index`) named `tag`, or
/// the only one, or the linux/amd64 one of an untagged platform list.
pub fn select<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    image: &str,
    index: &Path,
) -> Result<&'a Descriptor, ImageError> {
    let available: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_owned))
        .collect();
    if let Some(tag) = tag {
        return manifests
            .iter()
            .find(|d| d.ref_name() == Some(tag))
            .ok_or_else(|| ImageError::TagNotFound {
                image: image.to_owned(),
                tag: tag.to_owned(),
                index: index.to_owned(),
                available,
            });
    }
    match manifests {
        [] => Err(ImageError::InvalidImage {
            image: image.to_owned(),
            problem: format!("{} lists no images", index.display()),
        }),
        [only] => Ok(only),
        _ if available.is_empty() => select_platform(manifests, image),
        _ => Err(ImageError::AmbiguousImage {
            image: image.to_owned(),
            index: index.to_owned(),
            count: manifests.len(),
            available,
        }),
    }
}

/// Picks the linux/amd64 image of a multi-platform index.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    image: &str,
) -> Result<&'a Descriptor, ImageError> {
    let is_amd64 = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    };
    if let Some(found) = manifests.iter().find(is_amd64) {
        return Ok(found);
    }
    if let [only] = manifests {
        if only.platform.is_none() {
            return Ok(only);
        }
    }
    Err(ImageError::NoPlatform {
        image: image.to_owned(),
        available: manifests
            .iter()
            .map(|d| match &d.platform {
                Some(p) => format!("{}/{}", p.os, p.architecture),
                None => format!("{} (no platform)", d.digest),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(digest: &str, tag: Option<&str>, platform: Option<(&str, &str)>) -> Descriptor {
        Descriptor {
            digest: digest.to_owned(),
            annotations: tag
                .map(|t| BTreeMap::from([(REF_NAME.to_owned(), t.to_owned())]))
                .unwrap_or_default(),
            platform: platform.map(|(os, arch)| Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
            }),
            ..Descriptor::default()
        }
    }

    #[test]
    fn test_select_by_tag_and_missing_tag_lists_tags() {
        let index = Path::new("/img/index.json");
        let list = [desc("a", Some("v1"), None), desc("b", Some("v2"), None)];
        assert_eq!(
            select(&list, Some("v2"), "oci:x", index).unwrap().digest,
            "b"
        );
        let err = select(&list, Some("v3"), "oci:x", index)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"v3\"") && err.contains("v1, v2"), "{err}");
        let err = select(&list, None, "oci:x", index).unwrap_err().to_string();
        assert!(
            err.contains("holds 2 images") && err.contains(":TAG"),
            "{err}"
        );
        assert_eq!(
            select(&list[..1], None, "oci:x", index).unwrap().digest,
            "a"
        );
    }

    #[test]
    fn test_select_platform_picks_linux_amd64() {
        let list = [
            desc("arm", None, Some(("linux", "arm64"))),
            desc("x86", None, Some(("linux", "amd64"))),
        ];
        let index = Path::new("index.json");
        assert_eq!(select(&list, None, "i", index).unwrap().digest, "x86");
        let err = select_platform(&list[..1], "i").unwrap_err().to_string();
        assert!(err.contains("linux/arm64"), "{err}");
    }

    #[test]
    fn test_config_file_parses_nulls_and_missing() {
        let c: ConfigFile = parse(
            br#"{"config":{"Cmd":["sh"],"Entrypoint":null,"Env":["A=1"],"WorkingDir":"/w"}}"#,
            "i",
            "config",
        )
        .unwrap();
        let ic = c.image_config();
        assert_eq!(ic.cmd, ["sh"]);
        assert!(ic.entrypoint.is_empty());
        assert_eq!(ic.working_dir, "/w");
        assert_eq!(ic.user, "");
        let empty: ConfigFile = parse(b"{}", "i", "config").unwrap();
        assert_eq!(empty.image_config(), ImageConfig::default());
    }
}
