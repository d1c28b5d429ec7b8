//! Helpers for the image unit tests: scratch directories and raw tars.

use std::io::Write;
use std::path::PathBuf;

use tar::{EntryType, Header};

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty scratch directory.
pub fn scratch(tag: &str) -> Scratch {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "peapod-unit-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    Scratch(path)
}

/// gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Builds tars with names written verbatim, so that hostile paths
/// (`../x`, `/etc/passwd`) can be made.
pub struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        TarBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn append(&mut self, path: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) {
        let mut header = Header::new_old();
        {
            let old = header.as_old_mut();
            assert!(path.len() < 100 && link.len() < 100);
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_000_000);
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.append(path, EntryType::Regular, mode, "", data);
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.append(path, EntryType::Directory, mode, "", b"");
    }

    /// A symlink to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.append(path, EntryType::Symlink, 0o777, target, b"");
    }

    /// A hard link to `target`.
    pub fn hardlink(&mut self, path: &str, target: &str) {
        self.append(path, EntryType::Link, 0o644, target, b"");
    }

    /// A device node, FIFO or other data-less entry.
    pub fn special(&mut self, path: &str, kind: EntryType) {
        self.append(path, kind, 0o644, "", b"");
    }

    /// The finished archive.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}
