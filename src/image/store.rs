//! peapod's local image store and the resolution of image references to
//! unpacked root filesystems.
//!
//! Layout under the store root (the CLI uses `<cache>/images`):
//!
//! - `blobs/sha256/<hex>`: content-addressed blobs (manifests, configs,
//!   layers) imported from archives, checked against their digest;
//! - `layers/sha256/<hex>/`: unpacked layer trees, keyed by the layer's
//!   uncompressed digest (diff ID) when the config gives one, else by the
//!   blob digest; whiteout markers are kept;
//! - `rootfs/sha256/<hex>/`: the flattened root filesystem of the manifest
//!   with that digest, whiteouts applied. (Not `rootfs/sha256:<hex>`: a `:`
//!   in the path would break `rootfs:DIR` references to it.)
//! - `refs.json`: `name:tag` -> manifest digest, for `peapod image load`
//!   and `peapod image ls`; names are stored normalised
//!   (`docker.io/library/busybox:latest`) and shown short (`busybox:latest`);
//! - `tmp/`: work directories, renamed into place only when complete, so a
//!   layer or rootfs that exists is whole.
//!
//! Docker archives have no OCI manifest: peapod writes one (config and
//! layers by digest) into `blobs/`, so that every image is a manifest digest.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::archive::{self, Imported};
use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::flatten;
use super::layer::{self, LayerName};
use super::oci::{self, ConfigFile, Descriptor, DockerManifest, Document};
use super::reference::ImageRef;

/// The largest manifest, index or config accepted.
const MAX_DOCUMENT: u64 = 64 << 20;

/// How a container runs by default, from the image config's `config`
/// object. Absent fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value` each.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User`.
    pub user: String,
    /// `StopSignal` (`SIGQUIT`, `3`, ...), as written.
    #[serde(default)]
    pub stop_signal: String,
}

/// An image ready to boot: its unpacked root filesystem and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The root filesystem directory; treat it as read-only (it is shared
    /// by every pod using the image).
    pub rootfs: PathBuf,
    /// The image config; empty for `rootfs:` references.
    pub config: ImageConfig,
    /// The manifest digest, `sha256:<hex>`; `None` for `rootfs:`.
    pub digest: Option<String>,
}

/// `refs.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Refs {
    /// Normalised `name:tag` -> manifest digest.
    refs: BTreeMap<String, String>,
    /// Where a ref's image came from: normalised `name:tag` (or
    /// `name@digest`) -> its origin.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    origins: BTreeMap<String, Origin>,
}

/// Where an image of the store came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Pulled from its registry (else loaded from an archive).
    #[serde(default)]
    pub pulled: bool,
    /// When (realtime, ns since the epoch).
    #[serde(default)]
    pub at_ns: u64,
    /// Its size: the manifest's config and layers, as stored (compressed).
    #[serde(default)]
    pub size: u64,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs, layers and root filesystems.
    pub items: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// What some image name reaches (hex digests).
#[derive(Debug, Default)]
struct Live {
    blobs: std::collections::HashSet<String>,
    layers: std::collections::HashSet<String>,
    rootfs: std::collections::HashSet<String>,
}

/// Bytes under `path` (not following links).
fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|es| es.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// One image of `peapod image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Short `name:tag` (`busybox:latest`), or `name@digest` for an image
    /// pulled by digest.
    pub name: String,
    /// Its manifest (or index) digest.
    pub digest: String,
    /// Where it came from, when known.
    pub origin: Option<Origin>,
}

/// A blob being written into the store (a registry's stream): hashed as it
/// comes, published under its digest only once whole and checked.
pub(super) struct BlobSink<'a> {
    store: &'a ImageStore,
    image: String,
    tmp: PathBuf,
    file: Option<File>,
    hasher: sha2::Sha256,
    size: u64,
}

impl BlobSink<'_> {
    /// Append `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        use sha2::Digest as _;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let file = self
            .file
            .as_mut()
            .expect("a sink is written until finished");
        file.write_all(chunk)
            .map_err(|e| self.store.write_err(&self.image, &self.tmp, e))
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content is whole: check it is `expected` (else it is discarded)
    /// and publish it.
    pub fn finish(mut self, expected: &Digest, what: &str) -> Result<(), ImageError> {
        use sha2::Digest as _;
        let file = self.file.take().expect("finished once");
        file.sync_all()
            .map_err(|e| self.store.write_err(&self.image, &self.tmp, e))?;
        drop(file);
        let hasher = std::mem::take(&mut self.hasher);
        let actual = Digest::from_hex(&super::digest::to_hex(&hasher.finalize()))
            .expect("a sha256 is 64 hex digits");
        expected.check(&actual, &self.image, what)?;
        self.store.publish(
            &self.tmp,
            &ImageStore::blob_path(&self.store.root, expected),
            &self.image,
        )
    }
}

impl Drop for BlobSink<'_> {
    fn drop(&mut self) {
        // Not finished, or finished and published (then tmp is gone).
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The local image store and layer cache, rooted at a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// A store rooted at `root`; directories are made when first needed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore { root: root.into() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `image` to an unpacked root filesystem and its config,
    /// unpacking layers into the cache the first time.
    pub fn resolve(&self, image: &ImageRef) -> Result<ResolvedImage, ImageError> {
        let name = image.to_string();
        if !matches!(image, ImageRef::Rootfs { .. }) {
            self.open_root(&name)?;
        }
        match image {
            ImageRef::Rootfs { path } => {
                if !path.is_dir() {
                    return Err(ImageError::RootfsNotDir {
                        image: name,
                        path: path.clone(),
                    });
                }
                Ok(ResolvedImage {
                    rootfs: path.clone(),
                    config: ImageConfig::default(),
                    digest: None,
                })
            }
            ImageRef::OciLayout { path, tag } => {
                let index_path = path.join("index.json");
                let bytes = read_small(&index_path, &name).map_err(|e| match e {
                    ImageError::ReadFile { source, .. }
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        ImageError::InvalidImage {
                            image: name.clone(),
                            problem: format!(
                                "{} is not an OCI image layout (it has no index.json); for a \
                                 plain root filesystem use rootfs:DIR",
                                path.display()
                            ),
                        }
                    }
                    e => e,
                })?;
                let index: Document = oci::parse(&bytes, &name, "index.json")?;
                let manifests = index.manifests.unwrap_or_default();
                let found = oci::select(&manifests, tag.as_deref(), &name, &index_path)?;
                let digest = Digest::parse(&found.digest, &name)?;
                self.resolve_manifest(path, &digest, &name)
            }
            ImageRef::OciArchive { path, tag } => {
                let imported = archive::import(self, path, &name)?;
                let Some(bytes) = &imported.index_json else {
                    return Err(ImageError::InvalidImage {
                        image: name,
                        problem: format!(
                            "{} is not an OCI archive (it has no index.json); for `docker \
                             save` output use docker-archive:FILE",
                            path.display()
                        ),
                    });
                };
                let index: Document = oci::parse(bytes, &name, "index.json")?;
                let manifests = index.manifests.unwrap_or_default();
                let found = oci::select(&manifests, tag.as_deref(), &name, path)?;
                let digest = Digest::parse(&found.digest, &name)?;
                self.resolve_manifest(&self.root, &digest, &name)
            }
            ImageRef::DockerArchive { path } => {
                let imported = archive::import(self, path, &name)?;
                let entries = docker_manifests(&imported, path, &name)?;
                let [entry] = entries.as_slice() else {
                    let tags: Vec<String> = entries
                        .iter()
                        .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                        .collect();
                    return Err(ImageError::InvalidImage {
                        image: name,
                        problem: format!(
                            "the archive holds {} images ({}); docker-archive: reads \
                             archives of one image: load it with `peapod image load {}` and \
                             use a NAME:TAG instead",
                            entries.len(),
                            tags.join(", "),
                            path.display()
                        ),
                    });
                };
                let digest = self.docker_manifest(&imported, entry, &name)?;
                self.resolve_manifest(&self.root, &digest, &name)
            }
            ImageRef::Named { name, tag, digest } => {
                let shown = familiar(&image.to_string());
                let not_found = || ImageError::NotInStore {
                    name: shown.clone(),
                };
                let manifest = if let Some(digest) = digest {
                    let digest = Digest::parse(digest, &shown)?;
                    if !self.has_blob(&digest) {
                        return Err(not_found());
                    }
                    digest
                } else {
                    let tag = tag.as_deref().unwrap_or("latest");
                    let refs = self.read_refs()?;
                    let found = refs
                        .refs
                        .get(&format!("{name}:{tag}"))
                        .ok_or_else(not_found)?;
                    Digest::parse(found, &shown)?
                };
                self.resolve_manifest(&self.root, &manifest, &shown)
            }
        }
    }

    /// Imports a docker or OCI archive into the store, unpacks its images,
    /// records their tags and returns them (short form, `busybox:latest`).
    ///
    /// Tags come from `RepoTags` (docker archives) or the OCI
    /// `io.containerd.image.name` / `org.opencontainers.image.ref.name`
    /// annotations; a bare OCI tag (`latest`) or an untagged image is named
    /// after the archive file (`busybox-oci.tar` -> `busybox-oci:latest`).
    pub fn load(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        let image = archive.display().to_string();
        self.open_root(&image)?;
        let imported = archive::import(self, archive, &image)?;
        let stem = file_stem_name(archive);
        let mut loaded: Vec<(String, Digest)> = Vec::new();
        if imported.manifest_json.is_some() {
            for entry in docker_manifests(&imported, archive, &image)? {
                let digest = self.docker_manifest(&imported, &entry, &image)?;
                let resolved = self.resolve_manifest(&self.root, &digest, &image)?;
                let digest = Digest::parse(resolved.digest.as_deref().unwrap_or(""), &image)?;
                let tags = entry.repo_tags.clone().unwrap_or_default();
                let mut keys = Vec::new();
                for tag in &tags {
                    keys.push(normalise_name(tag).ok_or_else(|| ImageError::InvalidImage {
                        image: image.clone(),
                        problem: format!("RepoTags entry {tag:?} is not a NAME:TAG"),
                    })?);
                }
                if keys.is_empty() {
                    keys.push(fallback_name(&stem, "latest", &image)?);
                }
                loaded.extend(keys.into_iter().map(|k| (k, digest.clone())));
            }
        } else if let Some(bytes) = &imported.index_json {
            let index: Document = oci::parse(bytes, &image, "index.json")?;
            for found in index.manifests.unwrap_or_default() {
                let key = oci_name(&found, &stem, &image)?;
                let digest = Digest::parse(&found.digest, &image)?;
                let resolved = self.resolve_manifest(&self.root, &digest, &image)?;
                let digest = Digest::parse(resolved.digest.as_deref().unwrap_or(""), &image)?;
                loaded.push((key, digest));
            }
        } else {
            return Err(ImageError::InvalidImage {
                image,
                problem: "the archive has neither manifest.json (docker archive) nor \
                          index.json (OCI archive); make it with `docker save`, `podman save` \
                          or `skopeo copy`"
                    .to_owned(),
            });
        }
        self.update_refs(&image, |refs| {
            for (key, digest) in &loaded {
                refs.refs.insert(key.clone(), digest.to_string());
            }
        })?;
        Ok(loaded.into_iter().map(|(k, _)| familiar(&k)).collect())
    }

    /// The tagged images of the store: (`name:tag` in short form, manifest
    /// digest), sorted by name.
    pub fn list(&self) -> Result<Vec<(String, String)>, ImageError> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|e| (e.name, e.digest))
            .collect())
    }

    /// The images of the store with their origins, sorted by name.
    pub fn entries(&self) -> Result<Vec<ImageEntry>, ImageError> {
        if self.root.exists() {
            self.check_root()?;
        }
        let refs = self.read_refs()?;
        let mut out: Vec<ImageEntry> = refs
            .refs
            .iter()
            .map(|(k, d)| ImageEntry {
                name: familiar(k),
                digest: d.clone(),
                origin: refs.origins.get(k).cloned().or_else(|| {
                    // Loaded from an archive: its size from its manifest.
                    Some(Origin {
                        pulled: false,
                        at_ns: 0,
                        size: self.image_size(d)?,
                    })
                }),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether the store has the registry image `image` (a name, or a
    /// manifest by digest).
    pub fn has_image(&self, image: &ImageRef) -> bool {
        match image {
            ImageRef::Named {
                digest: Some(d), ..
            } => {
                Digest::from_hex(d.trim_start_matches("sha256:")).is_some_and(|d| self.has_blob(&d))
            }
            _ => image.store_key().and_then(|k| self.lookup(&k)).is_some(),
        }
    }

    /// Where the registry image `image` came from, if the store has it.
    pub fn image_origin(&self, image: &ImageRef) -> Option<Origin> {
        self.origin(&image.store_key()?)
    }

    /// The stored size of the image `digest` (its platform's config and
    /// layers).
    fn image_size(&self, digest: &str) -> Option<u64> {
        let mut d = Digest::parse(digest, "store").ok()?;
        for _ in 0..4 {
            let doc: Document = oci::parse(
                &self.read_blob(&self.root, &d, "store").ok()?,
                "store",
                "manifest",
            )
            .ok()?;
            match &doc.manifests {
                Some(m) => {
                    d = Digest::parse(&oci::select_platform(m, "store").ok()?.digest, "store")
                        .ok()?
                }
                None => {
                    let layers: u64 = doc.layers.iter().flatten().map(|l| l.size).sum();
                    return Some(layers + doc.config.map_or(0, |c| c.size));
                }
            }
        }
        None
    }

    /// Where the image `key` (normalised `name:tag` or `name@digest`) came
    /// from, if the store has it.
    pub fn origin(&self, key: &str) -> Option<Origin> {
        self.read_refs().ok()?.origins.get(key).cloned()
    }

    /// The manifest digest `key` (normalised `name:tag`) names, if any.
    pub fn lookup(&self, key: &str) -> Option<String> {
        self.read_refs().ok()?.refs.get(key).cloned()
    }

    /// Record `key` (normalised `name:tag`, or `name@digest`: no tag) as the
    /// image `digest`, pulled now.
    pub(super) fn record_pull(
        &self,
        key: &str,
        digest: &Digest,
        size: u64,
        image: &str,
    ) -> Result<(), ImageError> {
        let origin = Origin {
            pulled: true,
            at_ns: now_ns(),
            size,
        };
        self.update_refs(image, |refs| {
            refs.refs.insert(key.to_owned(), digest.to_string());
            refs.origins.insert(key.to_owned(), origin);
        })
    }

    /// Forget the image `key` (normalised); its content stays until
    /// [`Self::prune`]. Whether there was one.
    pub fn remove_ref(&self, key: &str) -> Result<bool, ImageError> {
        let mut found = false;
        self.update_refs(key, |refs| {
            found = refs.refs.remove(key).is_some();
            refs.origins.remove(key);
        })?;
        Ok(found)
    }

    /// Hold the store against [`Self::prune`] while a pull writes blobs
    /// that no name reaches yet (a shared lock; prune takes it exclusively).
    pub(super) fn hold(&self, image: &str) -> Result<File, ImageError> {
        self.gc_lock(image, libc::LOCK_SH)
    }

    fn gc_lock(&self, image: &str, how: libc::c_int) -> Result<File, ImageError> {
        self.open_root(image)?;
        self.lock_file("gc.lock", image, how)
    }

    /// Take `how` (a `flock` operation) on the store's lock file `name`;
    /// held while the returned file is open.
    fn lock_file(&self, name: &str, image: &str, how: libc::c_int) -> Result<File, ImageError> {
        let path = self.root.join(name);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.write_err(image, &path, e))?;
        // SAFETY: flock takes the descriptor `lock` keeps open; the caller
        // holds the file as long as it needs the lock.
        if unsafe { libc::flock(lock.as_raw_fd(), how) } != 0 {
            return Err(self.write_err(image, &path, io::Error::last_os_error()));
        }
        Ok(lock)
    }

    /// Remove what no image name of the store reaches, nor the manifests in
    /// `keep` (those pods use): blobs, unpacked layers, root filesystems,
    /// and temporary files older than an hour. What went, in bytes.
    pub fn prune(&self, keep: &[String]) -> Result<Pruned, ImageError> {
        let mut pruned = Pruned::default();
        if !self.root.exists() {
            return Ok(pruned);
        }
        let _lock = self.gc_lock("store", libc::LOCK_EX)?;
        let refs = self.read_refs()?;
        let mut live = Live::default();
        for d in refs.refs.values().chain(keep) {
            if let Some(d) = Digest::from_hex(d.trim_start_matches("sha256:")) {
                self.mark(&d, &mut live, 0);
            }
        }
        let sweep = |dir: &str, keep: &std::collections::HashSet<String>, pruned: &mut Pruned| {
            let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
                return;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let size = tree_size(&e.path());
                if layer::remove_any(&e.path()).is_ok() {
                    pruned.items += 1;
                    pruned.bytes += size;
                }
            }
        };
        sweep("blobs/sha256", &live.blobs, &mut pruned);
        sweep("layers/sha256", &live.layers, &mut pruned);
        sweep("rootfs/sha256", &live.rootfs, &mut pruned);
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < hour_ago);
                if old {
                    let _ = layer::remove_any(&e.path());
                }
            }
        }
        Ok(pruned)
    }

    /// Mark what manifest (or index) `digest` reaches.
    fn mark(&self, digest: &Digest, live: &mut Live, depth: u32) {
        if depth > 4 || !live.blobs.insert(digest.hex().to_owned()) {
            return;
        }
        let Ok(bytes) = self.read_blob(&self.root, digest, "store") else {
            return;
        };
        let Ok(doc) = oci::parse::<Document>(&bytes, "store", "manifest") else {
            return;
        };
        for m in doc.manifests.iter().flatten() {
            if let Ok(d) = Digest::parse(&m.digest, "store") {
                self.mark(&d, live, depth + 1);
            }
        }
        if doc.manifests.is_some() {
            return;
        }
        live.rootfs.insert(digest.hex().to_owned());
        for l in doc.layers.iter().flatten() {
            if let Ok(d) = Digest::parse(&l.digest, "store") {
                live.blobs.insert(d.hex().to_owned());
                live.layers.insert(d.hex().to_owned());
            }
        }
        let Some(config) = &doc.config else {
            return;
        };
        let Ok(cd) = Digest::parse(&config.digest, "store") else {
            return;
        };
        live.blobs.insert(cd.hex().to_owned());
        let Ok(bytes) = self.read_blob(&self.root, &cd, "store") else {
            return;
        };
        if let Ok(config) = oci::parse::<ConfigFile>(&bytes, "store", "config") {
            for id in config.rootfs.map(|r| r.diff_ids).unwrap_or_default() {
                live.layers
                    .insert(id.trim_start_matches("sha256:").to_owned());
            }
        }
    }

    /// A sink for the blob of `image` about to be fetched.
    pub(super) fn blob_sink(&self, image: &str) -> Result<BlobSink<'_>, ImageError> {
        self.open_root(image)?;
        let tmp = self.tmp_path("pull", image)?;
        let file = layer::create_file(&tmp).map_err(|e| self.write_err(image, &tmp, e))?;
        Ok(BlobSink {
            store: self,
            image: image.to_owned(),
            tmp,
            file: Some(file),
            hasher: Default::default(),
            size: 0,
        })
    }

    /// Makes the store's root if it is missing, mode 0700 (as are the
    /// parents it makes): unpacked trees keep the modes of their tars,
    /// world-writable directories included, so no other user may reach
    /// them. Then [`Self::check_root`].
    fn open_root(&self, image: &str) -> Result<(), ImageError> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(|e| self.write_err(image, &self.root, e))?;
        }
        self.check_root()
    }

    /// The store's root must be a directory of this user or root that no
    /// one else can write to: anyone who could would change the root
    /// filesystems pods run from.
    fn check_root(&self) -> Result<(), ImageError> {
        use std::os::unix::fs::MetadataExt;
        let untrusted = |why: String, fix: String| ImageError::UntrustedStore {
            path: self.root.clone(),
            why,
            fix,
        };
        let meta = fs::metadata(&self.root).map_err(|e| {
            untrusted(
                format!("cannot inspect it ({e})"),
                "set PEAPOD_CACHE to a directory of yours".to_owned(),
            )
        })?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            return Err(untrusted(
                "it is not a directory".to_owned(),
                "remove it or set PEAPOD_CACHE to a directory of yours".to_owned(),
            ));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(untrusted(
                format!(
                    "it belongs to uid {}, not to you (uid {me}) or root",
                    meta.uid()
                ),
                "remove it or set PEAPOD_CACHE to a directory of yours".to_owned(),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(
                format!(
                    "other users can write to it (mode {:04o})",
                    meta.mode() & 0o7777
                ),
                format!("chmod go-w {} (peapod makes it 0700)", self.root.display()),
            ));
        }
        Ok(())
    }

    fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
        root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store holds the blob `digest`.
    pub(super) fn has_blob(&self, digest: &Digest) -> bool {
        Self::blob_path(&self.root, digest).is_file()
    }

    /// A fresh path under `tmp/`, its parent made.
    fn tmp_path(&self, kind: &str, image: &str) -> Result<PathBuf, ImageError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(|source| self.write_err(image, &dir, source))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(dir.join(format!(
            "{kind}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }

    fn write_err(&self, image: &str, path: &Path, source: io::Error) -> ImageError {
        ImageError::WriteStore {
            image: image.to_owned(),
            path: path.to_owned(),
            source,
        }
    }

    /// Moves the finished `tmp` to `dest`; if another process got there
    /// first, keeps theirs.
    fn publish(&self, tmp: &Path, dest: &Path, image: &str) -> Result<(), ImageError> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| self.write_err(image, parent, e))?;
        }
        match fs::rename(tmp, dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.exists() => {
                let _ = layer::remove_any(tmp);
                Ok(())
            }
            Err(e) => {
                let _ = layer::remove_any(tmp);
                Err(self.write_err(image, dest, e))
            }
        }
    }

    /// Copies `r` into `blobs/sha256/<its digest>`; read errors go through
    /// `read_err`.
    pub(super) fn write_blob(
        &self,
        r: impl Read,
        image: &str,
        read_err: impl Fn(io::Error) -> ImageError,
    ) -> Result<(Digest, u64), ImageError> {
        let tmp = self.tmp_path("blob", image)?;
        let result = (|| {
            let mut out = layer::create_file(&tmp).map_err(|e| self.write_err(image, &tmp, e))?;
            let mut hashing = HashingReader::new(r);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = hashing.read(&mut buf).map_err(&read_err)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|e| self.write_err(image, &tmp, e))?;
            }
            hashing.finish().map_err(&read_err)
        })();
        let (digest, size) = match result {
            Ok(found) => found,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        self.publish(&tmp, &Self::blob_path(&self.root, &digest), image)?;
        Ok((digest, size))
    }

    /// Writes `bytes` as a blob and returns its digest.
    pub(super) fn write_blob_bytes(&self, bytes: &[u8], image: &str) -> Result<Digest, ImageError> {
        let (digest, _) = self.write_blob(bytes, image, |source| ImageError::ReadFile {
            image: image.to_owned(),
            path: PathBuf::from("<memory>"),
            source,
        })?;
        Ok(digest)
    }

    /// Writes the OCI manifest of a docker archive's image; returns its
    /// digest. Layer media types are nominal: compression is detected
    /// from the content.
    fn docker_manifest(
        &self,
        imported: &Imported,
        entry: &DockerManifest,
        image: &str,
    ) -> Result<Digest, ImageError> {
        let descriptor = |path: &str, media_type: &str| {
            let (digest, size) = imported.blob(path, image)?;
            Ok::<_, ImageError>(Descriptor {
                media_type: media_type.to_owned(),
                digest: digest.to_string(),
                size,
                ..Descriptor::default()
            })
        };
        let manifest = Document {
            schema_version: 2,
            media_type: oci::MANIFEST_MEDIA_TYPE.to_owned(),
            manifests: None,
            config: Some(descriptor(
                &entry.config,
                "application/vnd.oci.image.config.v1+json",
            )?),
            layers: Some(
                entry
                    .layers
                    .iter()
                    .map(|l| descriptor(l, "application/vnd.oci.image.layer.v1.tar"))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
        self.write_blob_bytes(&bytes, image)
    }

    /// Reads the JSON blob `digest` under `root` and checks its digest.
    fn read_blob(&self, root: &Path, digest: &Digest, image: &str) -> Result<Vec<u8>, ImageError> {
        let path = Self::blob_path(root, digest);
        let bytes = read_small(&path, image).map_err(|e| match e {
            ImageError::ReadFile { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ImageError::MissingBlob {
                    image: image.to_owned(),
                    digest: digest.to_string(),
                    path: path.clone(),
                }
            }
            e => e,
        })?;
        digest.check(
            &Digest::of(&bytes),
            image,
            &format!("blob {}", path.display()),
        )?;
        Ok(bytes)
    }

    /// Resolves the manifest (or index: its linux/amd64 image) `digest`,
    /// whose blobs are under `root` (the store, or an OCI layout).
    fn resolve_manifest(
        &self,
        root: &Path,
        digest: &Digest,
        image: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let mut digest = digest.clone();
        let mut manifest: Document;
        let mut depth = 0;
        loop {
            let bytes = self.read_blob(root, &digest, image)?;
            manifest = oci::parse(&bytes, image, &format!("manifest {digest}"))?;
            let Some(manifests) = &manifest.manifests else {
                break;
            };
            depth += 1;
            if depth > 4 {
                return Err(ImageError::InvalidImage {
                    image: image.to_owned(),
                    problem: "image indexes are nested more than 4 deep".to_owned(),
                });
            }
            let found = oci::select_platform(manifests, image)?;
            digest = Digest::parse(&found.digest, image)?;
        }
        let config = manifest.config.ok_or_else(|| ImageError::InvalidImage {
            image: image.to_owned(),
            problem: format!("manifest {digest} has no config"),
        })?;
        let config_digest = Digest::parse(&config.digest, image)?;
        let config_bytes = self.read_blob(root, &config_digest, image)?;
        let config: ConfigFile =
            oci::parse(&config_bytes, image, &format!("config {config_digest}"))?;
        let rootfs = self.root.join("rootfs/sha256").join(digest.hex());
        if !rootfs.is_dir() {
            let layers = manifest.layers.unwrap_or_default();
            let diff_ids = config
                .rootfs
                .as_ref()
                .map(|r| r.diff_ids.clone())
                .unwrap_or_default();
            if !diff_ids.is_empty() && diff_ids.len() != layers.len() {
                return Err(ImageError::InvalidImage {
                    image: image.to_owned(),
                    problem: format!(
                        "manifest {digest} has {} layers but its config lists {} diff_ids",
                        layers.len(),
                        diff_ids.len()
                    ),
                });
            }
            let mut dirs = Vec::new();
            for (i, l) in layers.iter().enumerate() {
                let blob = Digest::parse(&l.digest, image)?;
                let diff_id = match diff_ids.get(i) {
                    Some(d) => Some(Digest::parse(d, image)?),
                    None => None,
                };
                dirs.push(self.ensure_layer(root, &blob, diff_id.as_ref(), image)?);
            }
            let tmp = self.tmp_path("rootfs", image)?;
            let result = fs::create_dir(&tmp).and_then(|()| {
                dirs.iter()
                    .try_for_each(|dir| flatten::apply_layer(dir, &tmp))
            });
            if let Err(e) = result {
                let _ = layer::remove_any(&tmp);
                return Err(self.write_err(image, &rootfs, e));
            }
            self.publish(&tmp, &rootfs, image)?;
        }
        Ok(ResolvedImage {
            rootfs,
            config: config.image_config(),
            digest: Some(digest.to_string()),
        })
    }

    /// The unpacked tree of the layer blob `blob` (under `root`), unpacking
    /// and checking it (blob digest and diff ID) the first time.
    fn ensure_layer(
        &self,
        root: &Path,
        blob: &Digest,
        diff_id: Option<&Digest>,
        image: &str,
    ) -> Result<PathBuf, ImageError> {
        let key = diff_id.unwrap_or(blob);
        let dir = self.root.join("layers/sha256").join(key.hex());
        if dir.is_dir() {
            return Ok(dir);
        }
        let path = Self::blob_path(root, blob);
        let file = File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ImageError::MissingBlob {
                    image: image.to_owned(),
                    digest: blob.to_string(),
                    path: path.clone(),
                }
            } else {
                ImageError::ReadFile {
                    image: image.to_owned(),
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let tmp = self.tmp_path("layer", image)?;
        fs::create_dir(&tmp).map_err(|e| self.write_err(image, &tmp, e))?;
        let blob_name = blob.to_string();
        let name = LayerName {
            image,
            digest: &blob_name,
        };
        let read_err = |source| ImageError::ReadLayer {
            image: image.to_owned(),
            digest: blob_name.clone(),
            source,
        };
        let result = (|| {
            let mut compressed = HashingReader::new(file);
            {
                let stream = layer::decompress(BufReader::new(&mut compressed), name)?;
                let mut tar = HashingReader::new(stream);
                layer::unpack(&mut tar, &tmp, name)?;
                let (actual, _) = tar.finish().map_err(read_err)?;
                if let Some(diff_id) = diff_id {
                    diff_id.check(&actual, image, &format!("uncompressed layer {blob}"))?;
                }
            }
            let (actual, _) = compressed.finish().map_err(read_err)?;
            blob.check(&actual, image, &format!("layer {}", path.display()))
        })();
        if let Err(e) = result {
            let _ = layer::remove_any(&tmp);
            return Err(e);
        }
        self.publish(&tmp, &dir, image)?;
        Ok(dir)
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn read_refs(&self) -> Result<Refs, ImageError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => oci::parse(&bytes, "store", &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(source) => Err(ImageError::ReadFile {
                image: "store".to_owned(),
                path,
                source,
            }),
        }
    }

    /// Changes `refs.json` under an exclusive lock, replacing it atomically.
    fn update_refs(&self, image: &str, change: impl FnOnce(&mut Refs)) -> Result<(), ImageError> {
        fs::create_dir_all(&self.root).map_err(|e| self.write_err(image, &self.root, e))?;
        let _lock = self.lock_file("refs.lock", image, libc::LOCK_EX)?;
        let mut refs = self.read_refs()?;
        change(&mut refs);
        let tmp = self.tmp_path("refs", image)?;
        let bytes = serde_json::to_vec_pretty(&refs).expect("refs serialise");
        fs::write(&tmp, bytes).map_err(|e| self.write_err(image, &tmp, e))?;
        let path = self.refs_path();
        fs::rename(&tmp, &path).map_err(|e| self.write_err(image, &path, e))
    }
}

/// Reads a document of at most [`MAX_DOCUMENT`] bytes.
fn read_small(path: &Path, image: &str) -> Result<Vec<u8>, ImageError> {
    let read_err = |source| ImageError::ReadFile {
        image: image.to_owned(),
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(read_err)?
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::InvalidImage {
            image: image.to_owned(),
            problem: format!("{} is larger than 64 MiB", path.display()),
        });
    }
    Ok(bytes)
}

/// The images of a docker archive's `manifest.json`.
fn docker_manifests(
    imported: &Imported,
    archive: &Path,
    image: &str,
) -> Result<Vec<DockerManifest>, ImageError> {
    let Some(bytes) = &imported.manifest_json else {
        return Err(ImageError::InvalidImage {
            image: image.to_owned(),
            problem: format!(
                "{} is not a docker archive (it has no manifest.json); for an OCI archive use \
                 oci-archive:FILE",
                archive.display()
            ),
        });
    };
    oci::parse(bytes, image, "manifest.json")
}

/// A `name:tag` as written in RepoTags or an annotation, normalised
/// (`busybox:latest` -> `docker.io/library/busybox:latest`); `None` if it
/// is not a tagged name.
fn normalise_name(text: &str) -> Option<String> {
    match text.parse::<ImageRef>() {
        Ok(ImageRef::Named {
            name,
            tag: Some(tag),
            digest: None,
        }) => Some(format!("{name}:{tag}")),
        _ => None,
    }
}

/// A normalised name as users write it: without `docker.io/library/`.
fn familiar(name: &str) -> String {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_owned()
}

/// A repository name made of an archive's file name.
fn file_stem_name(archive: &Path) -> String {
    let stem = archive
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let cleaned: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_owned();
    if cleaned.is_empty() {
        "image".to_owned()
    } else {
        cleaned
    }
}

fn fallback_name(stem: &str, tag: &str, image: &str) -> Result<String, ImageError> {
    normalise_name(&format!("{stem}:{tag}")).ok_or_else(|| ImageError::InvalidImage {
        image: image.to_owned(),
        problem: format!("cannot name the image {stem}:{tag}; rename the archive"),
    })
}

/// The normalised name of an image of an OCI index.
fn oci_name(found: &Descriptor, stem: &str, image: &str) -> Result<String, ImageError> {
    if let Some(full) = found.annotations.get(oci::CONTAINERD_NAME) {
        if let Some(key) = normalise_name(full) {
            return Ok(key);
        }
    }
    match found.ref_name() {
        Some(name) if name.contains(['/', ':']) => {
            normalise_name(name).ok_or_else(|| ImageError::InvalidImage {
                image: image.to_owned(),
                problem: format!("{} {name:?} is not a NAME:TAG", oci::REF_NAME),
            })
        }
        Some(tag) => fallback_name(stem, tag, image),
        None => fallback_name(stem, "latest", image),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

/// The realtime clock in nanoseconds since the epoch.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
