//! Where peapod finds its cache, its image store, its guest kernel and its
//! guest init.

use std::path::{Path, PathBuf};

use crate::image::ImageStore;

/// The guest kernel and init a pod asks for; `None` picks the default (see
/// [`kernel`] and [`init`]).
#[derive(Debug, Clone, Default)]
pub struct GuestPaths {
    /// The guest kernel (ELF vmlinux or bzImage).
    pub kernel: Option<PathBuf>,
    /// The statically linked peapod-init.
    pub init: Option<PathBuf>,
}

/// The local image store every pod and command uses: `<cache>/images`.
pub fn image_store() -> ImageStore {
    ImageStore::new(cache_dir().join("images"))
}

/// peapod's cache directory: `$PEAPOD_CACHE`, `/var/cache/peapod` for root,
/// else `$XDG_CACHE_HOME/peapod` or `~/.cache/peapod` (what scripts/lib.sh uses).
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PEAPOD_CACHE") {
        return p.into();
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        return SYSTEM_CACHE.into();
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Path::new(&p).join("peapod");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    Path::new(&home).join(".cache/peapod")
}

/// peapod's data directory, for what takes disk and is not a cache (a VM
/// pod's disk emptyDir volumes): `$PEAPOD_DATA`, `/var/lib/peapod` for
/// root, else `$XDG_DATA_HOME/peapod` or `~/.local/share/peapod`. Never the
/// runtime directory, which is a tmpfs: host memory no reservation counts.
pub fn data_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PEAPOD_DATA").filter(|p| !p.is_empty()) {
        return p.into();
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        return PathBuf::from("/var/lib/peapod");
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
        return Path::new(&p).join("peapod");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    Path::new(&home).join(".local/share/peapod")
}

/// Where a guest artifact came from, for messages.
#[derive(Debug, Clone)]
pub struct Located {
    /// The path.
    pub path: PathBuf,
    /// How it was chosen.
    pub origin: &'static str,
}

/// The guest kernel to use.
pub fn kernel(args: &GuestPaths) -> Located {
    if let Some(p) = &args.kernel {
        return Located {
            path: p.clone(),
            origin: "--kernel",
        };
    }
    if let Some(p) = std::env::var_os("PEAPOD_KERNEL") {
        return Located {
            path: p.into(),
            origin: "$PEAPOD_KERNEL",
        };
    }
    // The user's own cache first, then the system-wide one that
    // scripts/build-kernel fills when run as root.
    let candidates = [cache_dir(), PathBuf::from(SYSTEM_CACHE)];
    let path = candidates
        .iter()
        .map(|c| c.join("kernel/default/vmlinux"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| cache_dir().join("kernel/default/vmlinux"));
    Located {
        path,
        origin: "scripts/build-kernel's cache",
    }
}

/// The cache scripts/build-kernel uses when run as root.
pub const SYSTEM_CACHE: &str = "/var/cache/peapod";

/// The guest init to use.
pub fn init(args: &GuestPaths) -> Located {
    if let Some(p) = &args.init {
        return Located {
            path: p.clone(),
            origin: "--init",
        };
    }
    if let Some(p) = std::env::var_os("PEAPOD_INIT") {
        return Located {
            path: p.into(),
            origin: "$PEAPOD_INIT",
        };
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    if let Some(dir) = exe_dir {
        // An installed peapod ships peapod-init beside it; a cargo build puts
        // the static guest build under target/x86_64-unknown-linux-gnu/.
        let beside = dir.join("peapod-init");
        // A plain `cargo build` also leaves a dynamically linked peapod-init
        // here, which cannot run in the guest: only a static one counts.
        if std::fs::read(&beside)
            .map(|b| is_static_elf(&b))
            .unwrap_or(false)
        {
            return Located {
                path: beside,
                origin: "next to peapod",
            };
        }
        if let Some(target) = dir.parent() {
            let static_build = target.join("x86_64-unknown-linux-gnu/guest/peapod-init");
            if static_build.is_file() {
                return Located {
                    path: static_build,
                    origin: "scripts/build-init's build",
                };
            }
        }
    }
    Located {
        path: cache_dir().join("peapod-init"),
        origin: "peapod's cache",
    }
}

/// Whether `bytes` is an ELF64 executable without a program interpreter
/// (statically linked). Malformed headers count as not static.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let field = |o: usize, n: usize| bytes.get(o..o.checked_add(n)?);
    let u16_at = |o| field(o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o| field(o, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o| field(o, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    if !bytes.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    if phentsize < 56 {
        return false;
    }
    (0..phnum as usize).all(|i| {
        let off = (phoff as usize).saturating_add(i.saturating_mul(phentsize as usize));
        matches!(u32_at(off), Some(t) if t != PT_INTERP)
    })
}

/// Read the init binary and check it is a static ELF executable.
pub fn read_init(loc: &Located) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(&loc.path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read peapod-init {} (from {}): {e}; build it with scripts/build-init or pass --init",
            loc.path.display(),
            loc.origin
        )
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        anyhow::bail!(
            "peapod-init {} is not an ELF executable; build it with scripts/build-init",
            loc.path.display()
        );
    }
    if !is_static_elf(&bytes) {
        anyhow::bail!(
            "peapod-init {} (from {}) is dynamically linked, and the guest has no shared libraries; build the static one with scripts/build-init",
            loc.path.display(),
            loc.origin
        );
    }
    Ok(bytes)
}

/// Check the init, and for a VM give the initramfs that holds it, from
/// the cache (`<cache>/initramfs/`), built there on first use. The entry
/// is named after the init file's identity (device, inode, size, mtime),
/// so a rebuilt init gets a new one; a hit reads nothing. `None` for a
/// namespace pod, or when the cache cannot be written (the VMM then builds
/// the archive itself).
pub fn initramfs(loc: &Located, vm: bool) -> anyhow::Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let cached = std::fs::metadata(&loc.path).ok().map(|m| {
        cache_dir().join("initramfs").join(format!(
            "init-{:x}-{:x}-{}-{}.{:09}.cpio",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ))
    });
    if let Some(path) = cached.as_ref().filter(|p| vm && p.is_file()) {
        return Ok(Some(path.clone()));
    }
    let bytes = read_init(loc)?;
    let Some(path) = cached.filter(|_| vm) else {
        return Ok(None);
    };
    let archive = crate::vmm::boot::initramfs::build(bytes)?;
    match write_cache_entry(&path, &archive) {
        Ok(()) => Ok(Some(path)),
        Err(e) => {
            log::debug!("cannot cache the initramfs at {}: {e}", path.display());
            Ok(None)
        }
    }
}

/// Write `path` atomically; entries of other inits over a day old go.
fn write_cache_entry(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    let day = std::time::Duration::from_secs(24 * 3600);
    for entry in std::fs::read_dir(dir)?.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old && entry.path() != path {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_static_elf_reads_program_headers() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(
            !is_static_elf(&me),
            "cargo test binaries are dynamically linked"
        );
        assert!(!is_static_elf(b"\x7fELF\x02\x01 truncated"));
        assert!(!is_static_elf(b"#!/bin/sh"));
        // A minimal ELF64 header with one PT_LOAD program header.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert!(is_static_elf(&elf));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert!(!is_static_elf(&elf), "PT_INTERP means dynamic");
        // A program header table pointing past the end is not trusted.
        elf[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!is_static_elf(&elf));
    }
}
