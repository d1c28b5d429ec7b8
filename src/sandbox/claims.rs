//! Named volumes: what a PersistentVolumeClaim is on one host, as in
//! `podman kube play`. A claim's volume is a directory in the user's data
//! directory (`volumes/<claim>/data`, beside `volume.json`), made on first
//! use by the monitor of the pod that mounts it, shared into the VM over
//! virtio-fs like a hostPath, and kept until `peapod volume rm`.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::artifacts::data_dir;

/// A claim a pod mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `claimName`.
    pub name: String,
    /// `resources.requests.storage`, when the pod's files define the claim.
    pub storage: Option<u64>,
}

/// What `volume.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The claim's name.
    pub name: String,
    /// Where its data is.
    pub path: PathBuf,
    /// When it was made (realtime ns).
    pub created_ns: u64,
    /// The storage the claim requested (recorded, not enforced).
    pub storage: Option<u64>,
}

/// The directory of all named volumes.
pub fn root() -> PathBuf {
    data_dir().join("volumes")
}

/// Make claim `c`'s volume unless it exists (a later pod with a larger
/// request records it).
pub fn create(c: &Claim) -> io::Result<()> {
    let root = root();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)?;
    let dir = root.join(&c.name);
    let data = dir.join("data");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    match std::fs::DirBuilder::new().mode(0o755).create(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut info = inspect(&c.name).unwrap_or(VolumeInfo {
        name: c.name.clone(),
        path: data,
        created_ns: super::state::now_ns(),
        storage: None,
    });
    if c.storage.is_some() && c.storage != info.storage {
        info.storage = c.storage;
    }
    let tmp = dir.join(".volume.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
    std::fs::rename(&tmp, dir.join("volume.json"))
}

/// Claim `name`'s volume, if it exists.
pub fn inspect(name: &str) -> Option<VolumeInfo> {
    let text = std::fs::read(root().join(name).join("volume.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every named volume, by name.
pub fn list() -> Vec<VolumeInfo> {
    let mut out: Vec<VolumeInfo> = std::fs::read_dir(root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| inspect(&e.file_name().to_string_lossy()))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The pods (running or ended, until `peapod rm`) that mount claim
/// `name`.
pub fn users(name: &str) -> Vec<String> {
    super::list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, state)| state.ok())
        .filter(|s| s.claims.iter().any(|c| c == name))
        .map(|s| s.name)
        .collect()
}

/// Remove claim `name`'s volume and its data; refused while a pod uses it.
pub fn remove(name: &str) -> Result<(), String> {
    if super::super::spec::objects::key_problem(name).is_some() || name.starts_with('.') {
        return Err(format!("{name:?} is not a volume name"));
    }
    if inspect(name).is_none() {
        return Err(format!(
            "no volume named {name} (`peapod volume ls` lists them)"
        ));
    }
    let users = users(name);
    if !users.is_empty() {
        return Err(format!(
            "volume {name} is used by pod {}; remove the pod first (`peapod rm {}`)",
            users.join(", "),
            users[0]
        ));
    }
    let dir = root().join(name);
    make_removable(&dir);
    std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

/// Directories a container left without write or search permission, made
/// removable again (as `rm` does for emptyDirs).
fn make_removable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            make_removable(&e.path());
        }
    }
}
