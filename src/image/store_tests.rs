//! Tests of [`ImageStore`] on small images built in memory.

use std::fs;
use std::path::Path;

use super::*;
use crate::image::testutil::{gzip, scratch, TarBuilder};

/// A layer: its uncompressed tar and whether the blob is gzipped.
struct Layer {
    tar: Vec<u8>,
    gzip: bool,
}

impl Layer {
    fn blob(&self) -> Vec<u8> {
        if self.gzip {
            gzip(&self.tar)
        } else {
            self.tar.clone()
        }
    }
}

const CONFIG_CMD: &str =
    r#""config":{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/w","User":"65534"}"#;

fn config_json(layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", Digest::of(&l.tar)))
        .collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux",{CONFIG_CMD},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    )
    .into_bytes()
}

/// The files of an OCI layout holding `layers` tagged `tag`, as
/// (path, content); the manifest digest.
fn oci_files(layers: &[Layer], tag: &str) -> (Vec<(String, Vec<u8>)>, Digest) {
    let mut files = Vec::new();
    let mut blob = |bytes: Vec<u8>| {
        let digest = Digest::of(&bytes);
        let descriptor = format!(r#"{{"digest":"{digest}","size":{}}}"#, bytes.len());
        files.push((format!("blobs/sha256/{}", digest.hex()), bytes));
        (digest, descriptor)
    };
    let (_, config) = blob(config_json(layers));
    let layer_descriptors: Vec<String> = layers.iter().map(|l| blob(l.blob()).1).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{config},"layers":[{}]}}"#,
        layer_descriptors.join(",")
    );
    let (manifest_digest, _) = blob(manifest.clone().into_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
        manifest.len()
    );
    files.push(("index.json".to_owned(), index.into_bytes()));
    files.push((
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    (files, manifest_digest)
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn two_layers() -> Vec<Layer> {
    let mut base = TarBuilder::new();
    base.file("bin/busybox", b"elf", 0o755);
    base.symlink("bin/sh", "busybox");
    base.file("etc/motd", b"hello", 0o644);
    base.file("var/cache/old", b"old", 0o644);
    let mut top = TarBuilder::new();
    top.file("etc/.wh.motd", b"", 0o644);
    top.file("var/cache/.wh..wh..opq", b"", 0o644);
    top.file("var/cache/new", b"new", 0o644);
    vec![
        Layer {
            tar: base.finish(),
            gzip: false,
        },
        Layer {
            tar: top.finish(),
            gzip: true,
        },
    ]
}

fn oci_ref(dir: &Path, tag: &str) -> ImageRef {
    ImageRef::OciLayout {
        path: dir.to_owned(),
        tag: Some(tag.to_owned()),
    }
}

fn expected_config() -> ImageConfig {
    ImageConfig {
        entrypoint: vec![],
        cmd: vec!["sh".to_owned()],
        env: vec!["PATH=/bin".to_owned()],
        working_dir: "/w".to_owned(),
        user: "65534".to_owned(),
        stop_signal: String::new(),
    }
}

#[test]
fn test_store_resolve_oci_layout_applies_whiteouts() {
    let layout = scratch("store-layout");
    let cache = scratch("store-cache");
    let layers = two_layers();
    let (files, manifest) = oci_files(&layers, "v1");
    write_files(&layout.0, &files);
    let store = ImageStore::new(&cache.0);
    let got = store.resolve(&oci_ref(&layout.0, "v1")).unwrap();
    assert_eq!(got.digest, Some(manifest.to_string()));
    assert_eq!(got.config, expected_config());
    assert_eq!(
        got.rootfs,
        cache.0.join("rootfs/sha256").join(manifest.hex())
    );
    let r = &got.rootfs;
    assert_eq!(fs::read(r.join("bin/busybox")).unwrap(), b"elf");
    assert_eq!(
        fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(!r.join("etc/motd").exists());
    assert!(!r.join("var/cache/old").exists());
    assert_eq!(fs::read(r.join("var/cache/new")).unwrap(), b"new");
    for layer in &layers {
        let diff_id = Digest::of(&layer.tar);
        assert!(cache.0.join("layers/sha256").join(diff_id.hex()).is_dir());
    }
    // Cached: a second resolve finds the same rootfs, tmp/ is left empty.
    assert_eq!(store.resolve(&oci_ref(&layout.0, "v1")).unwrap(), got);
    assert_eq!(fs::read_dir(cache.0.join("tmp")).unwrap().count(), 0);
}

#[test]
fn test_store_resolve_missing_tag_lists_tags() {
    let layout = scratch("store-tag");
    write_files(&layout.0, &oci_files(&two_layers(), "v1").0);
    let store = ImageStore::new(scratch("store-tag-cache").0.clone());
    let err = store
        .resolve(&oci_ref(&layout.0, "v9"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no image tagged \"v9\"") && err.contains("available tags: v1"),
        "{err}"
    );
    let not_layout = store
        .resolve(&oci_ref(&layout.0.join("blobs"), "v1"))
        .unwrap_err()
        .to_string();
    assert!(
        not_layout.contains("not an OCI image layout"),
        "{not_layout}"
    );
}

#[test]
fn test_store_layer_digest_mismatch_is_rejected() {
    let layout = scratch("store-mismatch");
    let cache = scratch("store-mismatch-cache");
    let layers = two_layers();
    write_files(&layout.0, &oci_files(&layers, "v1").0);
    // Replace the top layer's blob with other (valid) content.
    let blob = Digest::of(&layers[1].blob());
    let mut other = TarBuilder::new();
    other.file("var/cache/new", b"evil", 0o644);
    fs::write(
        layout.0.join("blobs/sha256").join(blob.hex()),
        gzip(&other.finish()),
    )
    .unwrap();
    let store = ImageStore::new(&cache.0);
    let err = store.resolve(&oci_ref(&layout.0, "v1")).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    let diff_id = Digest::of(&layers[1].tar);
    assert!(!cache.0.join("layers/sha256").join(diff_id.hex()).exists());
    assert!(!cache.0.join("rootfs").exists(), "nothing published");
    assert_eq!(fs::read_dir(cache.0.join("tmp")).unwrap().count(), 0);
}

#[test]
fn test_store_hostile_layer_is_not_published() {
    let layout = scratch("store-hostile");
    let cache = scratch("store-hostile-cache");
    let mut evil = TarBuilder::new();
    evil.file("ok", b"", 0o644);
    evil.file("../escape", b"evil", 0o644);
    let layers = [Layer {
        tar: evil.finish(),
        gzip: false,
    }];
    write_files(&layout.0, &oci_files(&layers, "v1").0);
    let store = ImageStore::new(&cache.0);
    let err = store.resolve(&oci_ref(&layout.0, "v1")).unwrap_err();
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    assert!(!cache.0.join("escape").exists());
    assert!(!cache.0.join("layers/sha256").exists());
    assert_eq!(fs::read_dir(cache.0.join("tmp")).unwrap().count(), 0);
}

#[test]
fn test_store_oci_archive_blob_name_mismatch() {
    let dir = scratch("store-archive-mismatch");
    let (mut files, _) = oci_files(&two_layers(), "v1");
    let victim = files
        .iter_mut()
        .find(|(p, _)| p.starts_with("blobs/"))
        .unwrap();
    victim.1.push(b'x');
    let archive = dir.0.join("img.tar");
    fs::write(&archive, tar_of(&files)).unwrap();
    let store = ImageStore::new(dir.0.join("cache"));
    let err = store
        .resolve(&ImageRef::OciArchive {
            path: archive,
            tag: None,
        })
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
}

#[test]
fn test_store_oci_archive_resolves_from_blobs() {
    let dir = scratch("store-oci-archive");
    let (files, manifest) = oci_files(&two_layers(), "v1");
    let archive = dir.0.join("img.tar");
    fs::write(&archive, gzip(&tar_of(&files))).unwrap();
    let store = ImageStore::new(dir.0.join("cache"));
    let got = store
        .resolve(&ImageRef::OciArchive {
            path: archive,
            tag: None,
        })
        .unwrap();
    assert_eq!(got.digest, Some(manifest.to_string()));
    assert!(got.rootfs.join("bin/busybox").is_file());
}

/// A docker archive of `layers` (the second one gzipped, as some tools
/// write them), tagged `tags`.
fn docker_archive(layers: &[Layer], tags: &str) -> Vec<u8> {
    let config = config_json(layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut files = vec![(config_name.clone(), config)];
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        names.push(format!("\"{name}\""));
        files.push((name, layer.blob()));
    }
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":[{tags}],"Layers":[{}]}}]"#,
        names.join(",")
    );
    files.push(("manifest.json".to_owned(), manifest.into_bytes()));
    tar_of(&files)
}

#[test]
fn test_store_docker_archive_plain_and_gzip_layers() {
    let dir = scratch("store-docker");
    let archive = dir.0.join("img.tar");
    fs::write(
        &archive,
        docker_archive(&two_layers(), r#""busybox:latest""#),
    )
    .unwrap();
    let store = ImageStore::new(dir.0.join("cache"));
    let got = store
        .resolve(&ImageRef::DockerArchive { path: archive })
        .unwrap();
    assert_eq!(got.config, expected_config());
    assert!(got.rootfs.join("bin/busybox").is_file());
    assert!(!got.rootfs.join("etc/motd").exists());
    assert!(got.rootfs.join("var/cache/new").is_file());
}

#[test]
fn test_store_load_list_and_refs_round_trip() {
    let dir = scratch("store-load");
    let archive = dir.0.join("img.tar");
    let tags = r#""busybox:latest","registry.example.com/team/app:v2""#;
    fs::write(&archive, docker_archive(&two_layers(), tags)).unwrap();
    let store = ImageStore::new(dir.0.join("cache"));
    assert!(store.list().unwrap().is_empty());
    let loaded = store.load(&archive).unwrap();
    assert_eq!(
        loaded,
        ["busybox:latest", "registry.example.com/team/app:v2"]
    );
    let refs = fs::read_to_string(dir.0.join("cache/refs.json")).unwrap();
    assert!(refs.contains("docker.io/library/busybox:latest"), "{refs}");

    // A new store on the same root reads the refs back.
    let again = ImageStore::new(dir.0.join("cache"));
    let listed = again.list().unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["busybox:latest", "registry.example.com/team/app:v2"]
    );
    assert_eq!(listed[0].1, listed[1].1);
    for name in ["busybox", "docker.io/library/busybox:latest"] {
        let got = again.resolve(&name.parse().unwrap()).unwrap();
        assert_eq!(got.digest.as_deref(), Some(listed[0].1.as_str()), "{name}");
        assert_eq!(got.config, expected_config());
    }
    let by_digest = format!("busybox@{}", listed[0].1);
    assert!(again.resolve(&by_digest.parse().unwrap()).is_ok());
}

#[test]
fn test_store_load_oci_archive_names_bare_tags_after_file() {
    let dir = scratch("store-load-oci");
    let archive = dir.0.join("My_App.oci.tar");
    fs::write(&archive, tar_of(&oci_files(&two_layers(), "v3").0)).unwrap();
    let store = ImageStore::new(dir.0.join("cache"));
    assert_eq!(store.load(&archive).unwrap(), ["my-app:v3"]);
    assert!(store.resolve(&"my-app:v3".parse().unwrap()).is_ok());
}

#[test]
fn test_store_named_not_in_store() {
    let store = ImageStore::new(scratch("store-named").0.clone());
    let err = store
        .resolve(&"busybox:latest".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "image busybox:latest is not in peapod's local store; load it with \
         `peapod image load FILE` (see `peapod image ls`)"
    );
}

#[test]
fn test_store_rootfs_ref_checks_directory() {
    let dir = scratch("store-rootfs");
    let store = ImageStore::new(dir.0.join("cache"));
    let got = store
        .resolve(&ImageRef::Rootfs {
            path: dir.0.clone(),
        })
        .unwrap();
    assert_eq!(got.rootfs, dir.0);
    assert_eq!(got.config, ImageConfig::default());
    assert_eq!(got.digest, None);
    let missing = dir.0.join("nope");
    let err = store
        .resolve(&ImageRef::Rootfs { path: missing })
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a directory"), "{err}");
}
