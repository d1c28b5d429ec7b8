//! Unpacking one layer tar into a directory, treating every entry as hostile.
//!
//! Nothing here follows a symlink: every parent directory of an entry is
//! checked with `symlink_metadata` (the tree being built is private to this
//! process, so nothing can swap a checked directory for a symlink behind our
//! back), files are created with `O_NOFOLLOW | O_EXCL`, and modes are set on
//! the open file. Paths lose a leading `/` and `./` as tar tools do; `..`
//! components are refused, and hard links must point at an earlier entry of
//! the same layer. Device nodes and FIFOs are skipped (a rootless process
//! cannot make device nodes), ownership is not applied, and setuid/setgid
//! bits are dropped. Directories are always owner-writable and files
//! owner-readable so that the cache can be flattened and removed by the user
//! who made it. Whiteout entries (`.wh.*`) are kept as empty files; they are
//! applied when layers are flattened (see `flatten`).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tar::EntryType;

use super::error::ImageError;

/// Names one layer in error messages.
#[derive(Debug, Clone, Copy)]
pub struct LayerName<'a> {
    /// The image reference.
    pub image: &'a str,
    /// The layer's digest.
    pub digest: &'a str,
}

impl LayerName<'_> {
    fn unsafe_entry(&self, entry: &Path, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            image: self.image.to_owned(),
            digest: self.digest.to_owned(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn read(&self, source: io::Error) -> ImageError {
        ImageError::ReadLayer {
            image: self.image.to_owned(),
            digest: self.digest.to_owned(),
            source,
        }
    }

    fn write(&self, path: &Path, source: io::Error) -> ImageError {
        ImageError::WriteStore {
            image: self.image.to_owned(),
            path: path.to_owned(),
            source,
        }
    }
}

/// A layer's compression, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// A format peapod cannot read yet, by name.
    Unsupported(&'static str),
}

impl Compression {
    /// Looks at the first bytes of `r` without consuming them.
    pub fn detect(r: &mut impl BufRead) -> io::Result<Compression> {
        let head = r.fill_buf()?;
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Unsupported("bzip2"),
            [0xfd, b'7', b'z', b'X', b'Z', ..] => Compression::Unsupported("xz"),
            _ => Compression::None,
        })
    }
}

/// Decompresses `r` as detected, for [`unpack`].
pub fn decompress<'a>(
    mut r: impl BufRead + 'a,
    layer: LayerName<'_>,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    match Compression::detect(&mut r).map_err(|e| layer.read(e))? {
        Compression::None => Ok(Box::new(r)),
        Compression::Gzip => Ok(Box::new(GzDecoder::new(r))),
        Compression::Zstd => Ok(Box::new(zstd(r))),
        Compression::Unsupported(format) => Err(ImageError::UnsupportedCompression {
            image: layer.image.to_owned(),
            digest: layer.digest.to_owned(),
            format,
        }),
    }
}

/// A reader of the zstd stream `r`, decoded.
pub(super) fn zstd<R: BufRead>(r: R) -> impl Read {
    Zstd {
        src: r,
        frame: FrameDecoder::new(),
        in_frame: false,
    }
}

/// A zstd stream of one or more frames (skippable ones skipped), decoded
/// block by block: memory stays within a frame's window (which the decoder
/// bounds).
struct Zstd<R> {
    src: R,
    frame: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        let bad =
            |e: FrameDecoderError| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"));
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.frame.can_collect() > 0 {
                    return self.frame.read(buf);
                }
                if self.frame.is_finished() {
                    self.in_frame = false;
                    continue;
                }
                self.frame
                    .decode_blocks(
                        &mut self.src,
                        BlockDecodingStrategy::UptoBytes(buf.len().max(64 << 10)),
                    )
                    .map_err(bad)?;
                continue;
            }
            // Between frames: the end, or the next one.
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.frame.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: a cut skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(bad(e)),
            }
        }
    }
}

/// The components of an entry path, with a leading `/` and `.` parts
/// dropped; `..` and other non-normal parts are refused.
fn clean_components(path: &Path) -> Result<Vec<OsString>, &'static str> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part.to_owned()),
            Component::ParentDir => return Err("contains a `..` component"),
            Component::Prefix(_) => return Err("has a path prefix"),
        }
    }
    Ok(out)
}

/// Removes whatever is at `path` without following it.
pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Directory mode kept in the cache: no setuid/setgid, always `u+rwx`.
pub(super) fn dir_mode(mode: u32) -> u32 {
    (mode & 0o1777) | 0o700
}

/// File mode kept in the cache: no setuid/setgid/sticky, always `u+r`.
pub(super) fn file_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o400
}

/// Creates a new file at `path`, never following a symlink there.
pub(super) fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Unpacks the (decompressed) tar stream `tar` into the empty directory
/// `dest`.
pub fn unpack(tar: impl Read, dest: &Path, layer: LayerName<'_>) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| layer.read(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| layer.read(e))?;
        let raw_path = entry.path().map_err(|e| layer.read(e))?.into_owned();
        let parts =
            clean_components(&raw_path).map_err(|reason| layer.unsafe_entry(&raw_path, reason))?;
        let Some((name, parents)) = parts.split_last() else {
            // The layer root itself (`./`): nothing to create.
            continue;
        };
        let kind = entry.header().entry_type();
        if !matches!(
            kind,
            EntryType::Regular
                | EntryType::Continuous
                | EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
        ) {
            log::debug!(
                "layer {}: skipping {:?} entry {}",
                layer.digest,
                kind,
                raw_path.display()
            );
            continue;
        }
        let parent = make_parents(dest, parents, &raw_path, layer)?;
        let path = parent.join(name);
        let existing = match fs::symlink_metadata(&path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(layer.write(&path, e)),
        };
        let mode = entry.header().mode().map_err(|e| layer.read(e))?;
        if kind == EntryType::Directory {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                remove_any(&path).map_err(|e| layer.write(&path, e))?;
                fs::create_dir(&path).map_err(|e| layer.write(&path, e))?;
            }
            // `path` was just checked to be a real directory.
            fs::set_permissions(&path, fs::Permissions::from_mode(dir_mode(mode)))
                .map_err(|e| layer.write(&path, e))?;
            continue;
        }
        if kind == EntryType::Link {
            let target = entry
                .link_name()
                .map_err(|e| layer.read(e))?
                .ok_or_else(|| layer.unsafe_entry(&raw_path, "is a hard link without a target"))?
                .into_owned();
            let target = link_target(dest, &target, &raw_path, layer)?;
            if target == path {
                continue;
            }
            remove_any(&path).map_err(|e| layer.write(&path, e))?;
            // link(2) does not follow a symlink at `target`.
            fs::hard_link(&target, &path).map_err(|e| layer.write(&path, e))?;
            continue;
        }
        if existing.is_some() {
            remove_any(&path).map_err(|e| layer.write(&path, e))?;
        }
        if name.to_string_lossy().starts_with(".wh.") {
            // A whiteout marker: only its name matters.
            create_file(&path).map_err(|e| layer.write(&path, e))?;
            continue;
        }
        if kind == EntryType::Symlink {
            let target = entry
                .link_name()
                .map_err(|e| layer.read(e))?
                .ok_or_else(|| layer.unsafe_entry(&raw_path, "is a symlink without a target"))?;
            std::os::unix::fs::symlink(&*target, &path).map_err(|e| layer.write(&path, e))?;
            continue;
        }
        let mut file = create_file(&path).map_err(|e| layer.write(&path, e))?;
        io::copy(&mut entry, &mut file).map_err(|e| layer.read(e))?;
        file.set_permissions(fs::Permissions::from_mode(file_mode(mode)))
            .map_err(|e| layer.write(&path, e))?;
        if let Ok(mtime) = entry.header().mtime() {
            let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
        }
    }
    Ok(())
}

/// Makes sure `dest/parents…` is a chain of real directories, creating
/// missing ones; refuses to pass through a symlink or a file.
fn make_parents(
    dest: &Path,
    parents: &[OsString],
    entry: &Path,
    layer: LayerName<'_>,
) -> Result<PathBuf, ImageError> {
    let mut path = dest.to_path_buf();
    for part in parents {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(layer.unsafe_entry(
                    entry,
                    format!(
                        "goes through the symlink {}",
                        path.strip_prefix(dest).unwrap_or(&path).display()
                    ),
                ))
            }
            Ok(_) => {
                return Err(layer.unsafe_entry(
                    entry,
                    format!(
                        "goes through {}, which is not a directory",
                        path.strip_prefix(dest).unwrap_or(&path).display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|e| layer.write(&path, e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| layer.write(&path, e))?;
            }
            Err(e) => return Err(layer.write(&path, e)),
        }
    }
    Ok(path)
}

/// Where a hard link points: an existing non-directory of this layer,
/// reached without passing through a symlink.
fn link_target(
    dest: &Path,
    target: &Path,
    entry: &Path,
    layer: LayerName<'_>,
) -> Result<PathBuf, ImageError> {
    let bad = |reason: String| layer.unsafe_entry(entry, reason);
    let parts = clean_components(target)
        .map_err(|reason| bad(format!("links to {}, which {reason}", target.display())))?;
    if parts.is_empty() {
        return Err(bad("links to the layer root".to_owned()));
    }
    let mut path = dest.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = fs::symlink_metadata(&path).map_err(|_| {
            bad(format!(
                "links to {}, which is not an earlier entry of this layer",
                target.display()
            ))
        })?;
        let last = i + 1 == parts.len();
        if last && meta.is_dir() {
            return Err(bad(format!(
                "links to {}, which is a directory",
                target.display()
            )));
        }
        if !last && !meta.is_dir() {
            return Err(bad(format!(
                "links to {}, which goes through a symlink or file",
                target.display()
            )));
        }
    }
    Ok(path)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::image::testutil::{scratch, TarBuilder};

    const LAYER: LayerName<'static> = LayerName {
        image: "test-image",
        digest: "sha256:test",
    };

    fn unpack_bytes(tar: &[u8], dest: &Path) -> Result<(), ImageError> {
        let reader = decompress(io::BufReader::new(tar), LAYER)?;
        unpack(reader, dest, LAYER)
    }

    #[test]
    fn test_zstd_layers_of_several_frames() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let mut t = TarBuilder::new();
        t.file("big", &vec![7u8; 300 << 10], 0o644);
        t.file("hello", b"hi", 0o644);
        let tar = t.finish();
        // Two frames, a skippable frame between them (as zstd:chunked
        // writes), split anywhere in the tar.
        let (a, b) = tar.split_at(1000);
        let mut z = compress_to_vec(a, CompressionLevel::Fastest);
        z.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        z.extend(compress_to_vec(b, CompressionLevel::Fastest));
        let dir = scratch("zstd-frames");
        unpack_bytes(&z, &dir.0).unwrap();
        assert_eq!(fs::read(dir.0.join("hello")).unwrap(), b"hi");
        assert_eq!(fs::metadata(dir.0.join("big")).unwrap().len(), 300 << 10);
        // A cut stream is an error, not a short layer.
        let cut = &z[..z.len() - 5];
        assert!(unpack_bytes(cut, &scratch("zstd-cut").0).is_err());
    }

    #[test]
    fn test_unpack_files_dirs_symlinks_hardlinks() {
        let dir = scratch("unpack-basic");
        let mut t = TarBuilder::new();
        t.dir("./bin", 0o755);
        t.file("./bin/busybox", b"ELF", 0o4755);
        t.symlink("bin/sh", "busybox");
        t.hardlink("bin/ash", "bin/busybox");
        t.file("/etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644);
        t.file("deep/a/b/c", b"c", 0o600);
        unpack_bytes(&t.finish(), &dir.0).unwrap();
        let busybox = dir.0.join("bin/busybox");
        assert_eq!(fs::read(&busybox).unwrap(), b"ELF");
        let mode = fs::metadata(&busybox).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid dropped");
        assert_eq!(
            fs::read_link(dir.0.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| fs::metadata(dir.0.join(p)).unwrap().ino();
        assert_eq!(ino("bin/ash"), ino("bin/busybox"));
        assert!(dir.0.join("etc/passwd").is_file());
        assert_eq!(fs::read(dir.0.join("deep/a/b/c")).unwrap(), b"c");
    }

    #[test]
    fn test_unpack_gzip_and_plain_detected() {
        let mut t = TarBuilder::new();
        t.file("hello", b"hi", 0o644);
        let plain = t.finish();
        let gz = crate::image::testutil::gzip(&plain);
        assert_eq!(
            Compression::detect(&mut &plain[..]).unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::detect(&mut &gz[..]).unwrap(),
            Compression::Gzip
        );
        for (name, bytes) in [("plain", &plain), ("gzip", &gz)] {
            let dir = scratch(name);
            unpack_bytes(bytes, &dir.0).unwrap();
            assert_eq!(fs::read(dir.0.join("hello")).unwrap(), b"hi", "{name}");
        }
        // A broken zstd frame: the cause says so.
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
        let err = unpack_bytes(&zstd, &scratch("zstd").0).unwrap_err();
        let cause = std::error::Error::source(&err).map(|e| e.to_string());
        assert!(cause.is_some_and(|c| c.contains("zstd")), "{err:?}");
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0];
        let err = unpack_bytes(&xz, &scratch("xz").0).unwrap_err();
        assert!(err.to_string().contains("xz"), "{err}");
    }

    #[test]
    fn test_unpack_rejects_parent_dir_escape() {
        let outer = scratch("escape-dotdot");
        let dest = outer.0.join("root");
        fs::create_dir(&dest).unwrap();
        for path in ["../x", "a/../../x", "./../x"] {
            let mut t = TarBuilder::new();
            t.file(path, b"evil", 0o644);
            let err = unpack_bytes(&t.finish(), &dest).unwrap_err().to_string();
            assert!(err.contains("`..`"), "{path}: {err}");
        }
        assert!(!outer.0.join("x").exists());
    }

    #[test]
    fn test_unpack_absolute_path_stays_inside() {
        let dir = scratch("escape-abs");
        let mut t = TarBuilder::new();
        t.file("/etc/passwd", b"evil", 0o644);
        unpack_bytes(&t.finish(), &dir.0).unwrap();
        assert_eq!(fs::read(dir.0.join("etc/passwd")).unwrap(), b"evil");
    }

    #[test]
    fn test_unpack_refuses_write_through_symlink() {
        let outside = scratch("outside");
        let dir = scratch("escape-symlink");
        let mut t = TarBuilder::new();
        t.symlink("a", outside.0.to_str().unwrap());
        t.file("a/evil", b"evil", 0o644);
        let err = unpack_bytes(&t.finish(), &dir.0).unwrap_err().to_string();
        assert!(err.contains("goes through the symlink a"), "{err}");
        assert!(!outside.0.join("evil").exists());
    }

    #[test]
    fn test_unpack_replaces_symlink_with_file_without_following() {
        let outside = scratch("outside-file");
        let victim = outside.0.join("victim");
        fs::write(&victim, b"safe").unwrap();
        let dir = scratch("replace-symlink");
        let mut t = TarBuilder::new();
        t.symlink("f", victim.to_str().unwrap());
        t.file("f", b"evil", 0o644);
        t.symlink("d", outside.0.to_str().unwrap());
        t.dir("d", 0o755);
        unpack_bytes(&t.finish(), &dir.0).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"safe");
        assert_eq!(fs::read(dir.0.join("f")).unwrap(), b"evil");
        assert!(fs::symlink_metadata(dir.0.join("d")).unwrap().is_dir());
        let outside_mode = fs::metadata(&outside.0).unwrap().permissions().mode();
        assert_eq!(outside_mode & 0o777, 0o755, "outside dir untouched");
    }

    #[test]
    fn test_unpack_rejects_hardlink_escape() {
        let cases = [
            ("../../etc/passwd", "`..`"),
            ("/etc/passwd", "not an earlier entry"),
            ("missing", "not an earlier entry"),
            ("link/passwd", "goes through a symlink"),
        ];
        for (target, want) in cases {
            let dir = scratch("escape-hardlink");
            let mut t = TarBuilder::new();
            t.symlink("link", "/etc");
            t.hardlink("h", target);
            let err = unpack_bytes(&t.finish(), &dir.0).unwrap_err().to_string();
            assert!(err.contains(want), "{target}: {err}");
            assert!(!dir.0.join("h").exists());
        }
    }

    #[test]
    fn test_unpack_skips_device_nodes() {
        let dir = scratch("devices");
        let mut t = TarBuilder::new();
        t.special("dev/null", EntryType::Char);
        t.special("dev/fifo", EntryType::Fifo);
        t.file("ok", b"", 0o644);
        unpack_bytes(&t.finish(), &dir.0).unwrap();
        assert!(!dir.0.join("dev/null").exists());
        assert!(dir.0.join("ok").exists());
    }

    #[test]
    fn test_unpack_keeps_whiteouts_as_markers() {
        let dir = scratch("whiteout-markers");
        let mut t = TarBuilder::new();
        t.file("etc/.wh.motd", b"", 0o644);
        t.file("var/.wh..wh..opq", b"", 0o644);
        unpack_bytes(&t.finish(), &dir.0).unwrap();
        assert!(dir.0.join("etc/.wh.motd").is_file());
        assert!(dir.0.join("var/.wh..wh..opq").is_file());
    }
}
