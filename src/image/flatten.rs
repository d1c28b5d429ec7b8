//! Flattening unpacked layers into one root filesystem, applying whiteouts
//! with overlayfs semantics: `.wh.NAME` deletes NAME from the layers below,
//! `.wh..wh..opq` hides everything the layers below put in its directory, a
//! directory over a non-directory (or the reverse) replaces it, and
//! directories over directories merge.
//!
//! Names come from `read_dir`, so they are single components; whiteouts
//! for `.`, `..` or the empty name are ignored. Nothing is followed: an
//! existing entry is checked with `symlink_metadata` and removed before a
//! different kind of entry takes its place.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::layer::{create_file, remove_any};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies the unpacked layer `layer` on top of the directory `rootfs`.
pub fn apply_layer(layer: &Path, rootfs: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    apply_dir(layer, rootfs, &mut links)
}

/// Applies the directory `src` of a layer onto the real directory `dst`.
/// `links` maps the (device, inode) of multiply-linked layer files to their
/// first copy, so that hard links stay hard links.
fn apply_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    let mut entries = fs::read_dir(src)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n == OPAQUE) {
        for child in fs::read_dir(dst)? {
            remove_any(&child?.path())?;
        }
    }
    for name in &names {
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if name != OPAQUE && !matches!(hidden, "" | "." | "..") {
                remove_any(&dst.join(hidden))?;
            }
        }
    }
    for (entry, name) in entries.iter().zip(&names) {
        if name.starts_with(WHITEOUT) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let existing = match fs::symlink_metadata(&to) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            if !existing.is_some_and(|m| m.is_dir()) {
                remove_any(&to)?;
                fs::create_dir(&to)?;
            }
            // `to` is a real directory, checked or made just now.
            fs::set_permissions(&to, meta.permissions())?;
            apply_dir(&from, &to, links)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&to)?;
        }
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if meta.is_file() {
            copy_file(&from, &to, &meta, links)?;
        }
    }
    Ok(())
}

fn copy_file(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let key = (meta.dev(), meta.ino());
    if meta.nlink() > 1 {
        if let Some(first) = links.get(&key) {
            if fs::hard_link(first, to).is_ok() {
                return Ok(());
            }
        }
    }
    let mut src = File::open(from)?;
    let mut out = create_file(to)?;
    io::copy(&mut src, &mut out)?;
    out.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))?;
    if let Ok(mtime) = meta.modified() {
        let _ = out.set_modified(mtime);
    }
    if meta.nlink() > 1 {
        links.insert(key, to.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::scratch;

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    #[test]
    fn test_flatten_whiteouts_and_opaque_dirs() {
        let base = scratch("flatten-base");
        write(&base.0, "etc/motd", "hello");
        write(&base.0, "etc/keep", "keep");
        write(&base.0, "var/cache/a", "a");
        write(&base.0, "var/cache/sub/b", "b");
        write(&base.0, "opt/tool/bin", "x");
        let top = scratch("flatten-top");
        write(&top.0, "etc/.wh.motd", "");
        write(&top.0, "var/cache/.wh..wh..opq", "");
        write(&top.0, "var/cache/new", "new");
        write(&top.0, ".wh.opt", "");
        write(&top.0, ".wh..", "");
        write(&top.0, "etc/.wh.", "");
        let root = scratch("flatten-root");
        apply_layer(&base.0, &root.0).unwrap();
        apply_layer(&top.0, &root.0).unwrap();
        let r = &root.0;
        assert!(!r.join("etc/motd").exists(), "whiteout deletes");
        assert_eq!(fs::read_to_string(r.join("etc/keep")).unwrap(), "keep");
        assert!(!r.join("var/cache/a").exists(), "opaque hides lower files");
        assert!(!r.join("var/cache/sub").exists(), "opaque hides lower dirs");
        assert_eq!(fs::read_to_string(r.join("var/cache/new")).unwrap(), "new");
        assert!(!r.join("opt").exists(), "whiteout deletes whole dirs");
        assert!(r.join("etc").is_dir() && r.join("var").is_dir());
        let markers = ["etc/.wh.motd", "var/cache/.wh..wh..opq", ".wh.opt"];
        for marker in markers {
            assert!(!r.join(marker).exists(), "{marker} is not copied");
        }
        assert!(base.0.join("etc/motd").exists(), "layers are not modified");
    }

    #[test]
    fn test_flatten_replaces_kinds_without_following() {
        let outside = scratch("flatten-outside");
        write(&outside.0, "victim", "safe");
        let base = scratch("flatten-kinds-base");
        std::os::unix::fs::symlink(&outside.0, base.0.join("d")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("victim"), base.0.join("f")).unwrap();
        write(&base.0, "was-dir/x", "x");
        let top = scratch("flatten-kinds-top");
        write(&top.0, "d/file", "in d");
        write(&top.0, "f", "new f");
        write(&top.0, "was-dir", "now a file");
        let root = scratch("flatten-kinds-root");
        apply_layer(&base.0, &root.0).unwrap();
        apply_layer(&top.0, &root.0).unwrap();
        assert_eq!(
            fs::read_to_string(outside.0.join("victim")).unwrap(),
            "safe"
        );
        assert!(!outside.0.join("file").exists());
        assert!(fs::symlink_metadata(root.0.join("d")).unwrap().is_dir());
        assert_eq!(fs::read_to_string(root.0.join("f")).unwrap(), "new f");
        assert_eq!(
            fs::read_to_string(root.0.join("was-dir")).unwrap(),
            "now a file"
        );
    }

    #[test]
    fn test_flatten_whiteout_of_symlink_removes_only_the_link() {
        let outside = scratch("flatten-wh-outside");
        write(&outside.0, "keep", "keep");
        let base = scratch("flatten-wh-base");
        std::os::unix::fs::symlink(&outside.0, base.0.join("link")).unwrap();
        let top = scratch("flatten-wh-top");
        write(&top.0, ".wh.link", "");
        let root = scratch("flatten-wh-root");
        apply_layer(&base.0, &root.0).unwrap();
        apply_layer(&top.0, &root.0).unwrap();
        assert!(fs::symlink_metadata(root.0.join("link")).is_err());
        assert!(outside.0.join("keep").exists());
    }

    #[test]
    fn test_flatten_keeps_hard_links() {
        let layer = scratch("flatten-links");
        write(&layer.0, "bin/busybox", "elf");
        fs::hard_link(layer.0.join("bin/busybox"), layer.0.join("bin/sh")).unwrap();
        let root = scratch("flatten-links-root");
        apply_layer(&layer.0, &root.0).unwrap();
        let ino = |p: &str| fs::metadata(root.0.join(p)).unwrap().ino();
        assert_eq!(ino("bin/busybox"), ino("bin/sh"));
    }
}
