//! Resolving the busybox test image (scripts/build-test-image) through every
//! transport, and loading it into the local store.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo, TempDir};
use peapod::image::{ImageError, ImageRef, ImageStore, ResolvedImage};

/// Builds (or copies from the cache) the test image into `dir/img`.
fn test_image(dir: &TempDir) -> PathBuf {
    let out = dir.0.join("img");
    let run = Command::new(repo().join("scripts/build-test-image"))
        .arg(&out)
        .output()
        .expect("run scripts/build-test-image");
    assert!(
        run.status.success(),
        "scripts/build-test-image failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        out.to_str().unwrap()
    );
    out
}

fn resolve(store: &ImageStore, reference: &str) -> Result<ResolvedImage, ImageError> {
    let image: ImageRef = reference
        .parse()
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
    store.resolve(&image)
}

/// Checks an image resolved from the busybox test image.
fn check_busybox(got: &ResolvedImage) {
    let busybox = got.rootfs.join("bin/busybox");
    assert!(busybox.is_file(), "{} missing", busybox.display());
    assert_eq!(
        std::fs::read_link(got.rootfs.join("bin/sh")).unwrap(),
        Path::new("../bin/busybox")
    );
    assert!(got.rootfs.join("etc/passwd").is_file());
    assert!(got.rootfs.join("tmp").is_dir());
    assert_eq!(got.config.cmd, ["sh"]);
    assert!(
        got.config
            .env
            .iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/bin")),
        "{:?}",
        got.config.env
    );
    assert!(got.config.entrypoint.is_empty());
    let digest = got.digest.as_deref().expect("a manifest digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
}

#[test]
fn test_image_resolve_oci_layout() {
    let dir = TempDir::new("image-oci");
    let img = test_image(&dir);
    let store = ImageStore::new(dir.0.join("store"));
    let reference = format!("oci:{}:latest", img.join("oci").display());
    let got = resolve(&store, &reference).unwrap();
    check_busybox(&got);
    assert!(got.rootfs.starts_with(dir.0.join("store/rootfs/sha256")));
    // Resolving again reuses the unpacked rootfs.
    assert_eq!(resolve(&store, &reference).unwrap(), got);
    // Without a tag, the layout's only image.
    let untagged = format!("oci:{}", img.join("oci").display());
    assert_eq!(resolve(&store, &untagged).unwrap(), got);
}

#[test]
fn test_image_resolve_oci_archive() {
    let dir = TempDir::new("image-oci-archive");
    let img = test_image(&dir);
    let archive = dir.0.join("busybox-oci.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(img.join("oci"))
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(tar.success());
    let store = ImageStore::new(dir.0.join("store"));
    let got = resolve(&store, &format!("oci-archive:{}:latest", archive.display())).unwrap();
    check_busybox(&got);
    let layout = resolve(&store, &format!("oci:{}:latest", img.join("oci").display())).unwrap();
    assert_eq!(got.digest, layout.digest, "same manifest either way");
}

#[test]
fn test_image_resolve_docker_archive() {
    let dir = TempDir::new("image-docker");
    let img = test_image(&dir);
    let store = ImageStore::new(dir.0.join("store"));
    let reference = format!("docker-archive:{}", img.join("busybox.tar").display());
    check_busybox(&resolve(&store, &reference).unwrap());
}

#[test]
fn test_image_resolve_rootfs_dir() {
    let dir = TempDir::new("image-rootfs");
    let img = test_image(&dir);
    let store = ImageStore::new(dir.0.join("store"));
    let got = resolve(&store, &format!("rootfs:{}", img.join("rootfs").display())).unwrap();
    assert_eq!(got.rootfs, img.join("rootfs"));
    assert!(got.rootfs.join("bin/busybox").is_file());
    assert_eq!(got.config, Default::default());
    assert_eq!(got.digest, None);
    assert!(
        !dir.0.join("store").exists(),
        "rootfs: leaves the store alone"
    );
}

#[test]
fn test_image_load_then_resolve_by_name() {
    let dir = TempDir::new("image-load");
    let img = test_image(&dir);
    let store = ImageStore::new(dir.0.join("store"));
    let err = resolve(&store, "busybox:latest").unwrap_err().to_string();
    assert!(err.contains("peapod image load"), "{err}");
    let loaded = store.load(&img.join("busybox.tar")).unwrap();
    assert_eq!(loaded, ["busybox:latest"]);
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "busybox:latest");
    let got = resolve(&store, "busybox:latest").unwrap();
    check_busybox(&got);
    assert_eq!(got.digest.as_deref(), Some(listed[0].1.as_str()));
    assert_eq!(resolve(&store, "busybox").unwrap(), got);
}

#[test]
fn test_image_missing_tag_error() {
    let dir = TempDir::new("image-tag");
    let img = test_image(&dir);
    let store = ImageStore::new(dir.0.join("store"));
    let err = resolve(&store, &format!("oci:{}:v9", img.join("oci").display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no image tagged \"v9\""), "{err}");
    assert!(err.contains("available tags: latest"), "{err}");
}

/// The store is private and owner-checked: the test image's /tmp keeps its
/// tar's mode 1777 in the store, and another local user cannot reach it to
/// change a root filesystem pods run from; a store root that others can
/// write to, or another user's, is refused naming the fix.
#[test]
fn test_image_store_is_private_and_owner_checked() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TempDir::with_mode("image-private", 0o755);
    let img = test_image(&dir);
    let root = dir.0.join("cache/images");
    let store = ImageStore::new(&root);
    store.load(&img.join("busybox.tar")).unwrap();
    let got = resolve(&store, "busybox:latest").unwrap();
    let tmp = got.rootfs.join("tmp");
    assert_eq!(std::fs::metadata(&tmp).unwrap().mode() & 0o7777, 0o1777);
    for made in [&root, &dir.0.join("cache")] {
        let mode = std::fs::metadata(made).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", made.display());
    }
    if !common::is_root() || !common::ensure_test_user() {
        return common::skip("another user's access is tried as root, with the test user");
    }
    let touch = Command::new("setpriv")
        .args(["--reuid", common::TEST_USER, "--regid", common::TEST_USER])
        .args(["--init-groups", "--", "touch"])
        .arg(tmp.join("planted"))
        .output()
        .unwrap();
    assert!(!touch.status.success(), "another user wrote into the store");
    assert!(!tmp.join("planted").exists());
    // A root others can write to.
    std::fs::set_permissions(&root, PermissionsExt::from_mode(0o777)).unwrap();
    for err in [
        store.list().unwrap_err().to_string(),
        resolve(&store, "busybox:latest").unwrap_err().to_string(),
    ] {
        assert!(
            err.contains(root.to_str().unwrap())
                && err.contains("mode 0777")
                && err.contains("chmod go-w"),
            "{err}"
        );
    }
    // Another user's store.
    std::fs::set_permissions(&root, PermissionsExt::from_mode(0o700)).unwrap();
    let chown = Command::new("chown")
        .arg(common::TEST_USER)
        .arg(&root)
        .status()
        .unwrap();
    assert!(chown.success());
    let err = store.list().unwrap_err().to_string();
    assert!(
        err.contains("belongs to uid") && err.contains("PEAPOD_CACHE"),
        "{err}"
    );
}
