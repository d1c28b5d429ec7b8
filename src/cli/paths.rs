//! Where peapod finds its guest kernel and guest init.

use std::path::{Path, PathBuf};

use super::GuestArgs;

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

/// Where a guest artifact came from, for messages.
#[derive(Debug, Clone)]
pub struct Located {
    /// The path.
    pub path: PathBuf,
    /// How it was chosen.
    pub origin: &'static str,
}

/// The guest kernel to use.
pub fn kernel(args: &GuestArgs) -> Located {
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
pub fn init(args: &GuestArgs) -> Located {
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
        if beside.is_file() {
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
    Ok(bytes)
}
