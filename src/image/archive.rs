//! Reading image archives (`docker save`, `podman save`, `skopeo copy` to
//! `oci-archive:`/`docker-archive:`) into the store's blobs in one pass.
//!
//! Every regular file of the archive is copied into `blobs/sha256/` under
//! the digest of its content; files an OCI archive names
//! `blobs/sha256/<hex>` must hash to that name. The small top-level
//! documents (`index.json`, `manifest.json`, …) are kept in memory. Symlinks
//! and hard links between files (older `docker save` output links identical
//! layers) are remembered and followed by name, inside the archive only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use tar::EntryType;

use super::digest::Digest;
use super::error::ImageError;
use super::layer::Compression;
use super::store::ImageStore;

/// Top-level documents read into memory rather than stored as blobs.
const DOCUMENTS: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];

/// The largest top-level document accepted.
const MAX_DOCUMENT: u64 = 64 << 20;

/// An archive whose files are now blobs of the store.
#[derive(Debug, Default)]
pub struct Imported {
    /// Archive path -> digest and size of the stored blob.
    files: HashMap<String, (Digest, u64)>,
    /// Archive path -> the archive path it links to.
    links: HashMap<String, String>,
    /// `index.json`, if the archive has one (an OCI layout).
    pub index_json: Option<Vec<u8>>,
    /// `manifest.json`, if the archive has one (a docker archive).
    pub manifest_json: Option<Vec<u8>>,
}

impl Imported {
    /// The blob stored for the archive file `path` (as written in a
    /// manifest), following links.
    pub fn blob(&self, path: &str, image: &str) -> Result<(Digest, u64), ImageError> {
        let mut key = normalise(path).unwrap_or_default();
        for _ in 0..16 {
            if let Some(found) = self.files.get(&key) {
                return Ok(found.clone());
            }
            match self.links.get(&key) {
                Some(next) => key = next.clone(),
                None => break,
            }
        }
        Err(ImageError::InvalidImage {
            image: image.to_owned(),
            problem: format!(
                "the archive has no file {path:?}, which its manifest names; the archive is \
                 incomplete: export it again"
            ),
        })
    }
}

/// `a/./b` -> `a/b`; `None` for paths with `..` or nothing in them.
fn normalise(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where a symlink at `from` pointing to `target` leads, inside the
/// archive; `None` if it leaves it.
fn link_destination(from: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Reads the archive at `path` into `store`'s blobs.
pub fn import(store: &ImageStore, path: &Path, image: &str) -> Result<Imported, ImageError> {
    let read_err = |source| ImageError::ReadFile {
        image: image.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut reader = BufReader::new(file);
    let stream: Box<dyn Read> = match Compression::detect(&mut reader).map_err(read_err)? {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(GzDecoder::new(reader)),
        Compression::Zstd => Box::new(super::layer::zstd(reader)),
        Compression::Unsupported(format) => {
            return Err(ImageError::InvalidImage {
                image: image.to_owned(),
                problem: format!(
                    "{} is compressed with {format}; decompress it first, or save the image \
                     as a plain or gzip-compressed tar",
                    path.display()
                ),
            })
        }
    };
    let mut archive = tar::Archive::new(stream);
    let mut imported = Imported::default();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry
            .path()
            .map_err(read_err)?
            .to_string_lossy()
            .into_owned();
        let Some(key) = normalise(&raw) else {
            if raw.contains("..") {
                return Err(ImageError::InvalidImage {
                    image: image.to_owned(),
                    problem: format!("archive entry {raw:?} leaves the archive; it is malformed"),
                });
            }
            continue;
        };
        match entry.header().entry_type() {
            EntryType::Symlink => {
                let target = entry.link_name().map_err(read_err)?.unwrap_or_default();
                if let Some(dest) = link_destination(&key, &target.to_string_lossy()) {
                    imported.links.insert(key, dest);
                }
            }
            EntryType::Link => {
                let target = entry.link_name().map_err(read_err)?.unwrap_or_default();
                if let Some(dest) = normalise(&target.to_string_lossy()) {
                    imported.links.insert(key, dest);
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                if DOCUMENTS.contains(&key.as_str()) {
                    let mut bytes = Vec::new();
                    entry
                        .by_ref()
                        .take(MAX_DOCUMENT)
                        .read_to_end(&mut bytes)
                        .map_err(read_err)?;
                    match key.as_str() {
                        "index.json" => imported.index_json = Some(bytes),
                        "manifest.json" => imported.manifest_json = Some(bytes),
                        _ => {}
                    }
                    continue;
                }
                let named = key.strip_prefix("blobs/sha256/").and_then(Digest::from_hex);
                if let Some(named) = &named {
                    if store.has_blob(named) {
                        let size = entry.header().size().map_err(read_err)?;
                        imported.files.insert(key, (named.clone(), size));
                        continue;
                    }
                }
                let (digest, size) = store.write_blob(&mut entry, image, read_err)?;
                if let Some(named) = named {
                    named.check(&digest, image, &format!("{key} in {}", path.display()))?;
                }
                imported.files.insert(key, (digest, size));
            }
            _ => {}
        }
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_archive_paths_normalise_and_links_stay_inside() {
        assert_eq!(normalise("./a/./b").as_deref(), Some("a/b"));
        assert_eq!(
            normalise("/manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalise("a/../b"), None);
        assert_eq!(normalise("./"), None);
        assert_eq!(
            link_destination("abc/layer.tar", "../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(link_destination("abc/layer.tar", "../../x"), None);
        assert_eq!(link_destination("abc/layer.tar", "/etc/passwd"), None);
    }
}
