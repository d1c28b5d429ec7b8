//! Which host paths a pod file may reach: a hostPath volume or a
//! path-based image reference (`oci:`, `oci-archive:`, `docker-archive:`,
//! `rootfs:`) only under a directory the user allowed. A Pod YAML from the
//! internet must not be able to write `~/.bashrc` or read `~/.ssh`.
//!
//! Allowed are: `peapod run --allow-host-path DIR` (repeatable),
//! `$PEAPOD_ALLOW_HOST_PATHS` (colon-separated), `allowHostPaths:` in
//! `$XDG_CONFIG_HOME/peapod/config.yaml` (`~/.config/...`), and peapod's
//! own caches. Paths are compared once symlinks are resolved (a link under
//! an allowed directory to `/` reaches nothing); a path that does not exist
//! yet (hostPath `DirectoryOrCreate`) is judged by its deepest existing
//! ancestor, and nothing is created before the whole pod passed.

use std::path::{Component, Path, PathBuf};

use super::artifacts;

/// The environment variable of allowed directories.
pub const ENV: &str = "PEAPOD_ALLOW_HOST_PATHS";

/// How to allow a directory, for error messages.
const HOW: &str = "allow a directory with `peapod run --allow-host-path DIR`, \
                   PEAPOD_ALLOW_HOST_PATHS=DIR[:DIR...], or `allowHostPaths: [DIR]` in \
                   ~/.config/peapod/config.yaml";

pub use crate::settings::config_file;

/// The directories pods may reach.
#[derive(Debug, Clone, Default)]
pub struct AllowedPaths {
    /// Each as resolved (symlinks followed).
    dirs: Vec<PathBuf>,
}

/// `path` with symlinks resolved as far as it exists, the rest appended
/// (the caller refused `..` already).
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl AllowedPaths {
    /// The directories of `flags` (`--allow-host-path`), the environment,
    /// the settings file's `allowHostPaths` (`settings`), and peapod's
    /// caches. Relative directories are taken from the current directory.
    pub fn load(
        flags: &[PathBuf],
        settings: &crate::settings::Settings,
    ) -> anyhow::Result<AllowedPaths> {
        let mut dirs: Vec<PathBuf> = flags.to_vec();
        if let Some(v) = std::env::var_os(ENV) {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(settings.allow_host_paths.iter().cloned());
        // peapod's caches: this run's, the user's default, the system's.
        dirs.push(artifacts::cache_dir());
        let user_cache = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => {
                Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".cache")
            }
        };
        dirs.push(user_cache.join("peapod"));
        dirs.push(PathBuf::from(artifacts::SYSTEM_CACHE));
        Ok(AllowedPaths::new(dirs))
    }

    /// Exactly `dirs` (relative ones from the current directory).
    pub fn new(dirs: Vec<PathBuf>) -> AllowedPaths {
        let dirs = dirs
            .into_iter()
            .map(|d| resolved(&super::launch::absolute(&d)))
            .collect();
        AllowedPaths { dirs }
    }

    /// Whether `path` (absolute) may be reached; the error names `field`,
    /// the path, and how to allow it.
    pub fn check(&self, field: &str, path: &Path) -> Result<(), String> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{field}: {} must not contain '..'; write the path without it",
                path.display()
            ));
        }
        let real = resolved(path);
        if self.dirs.iter().any(|d| real.starts_with(d)) {
            return Ok(());
        }
        let shown = if real == path {
            format!("{}", path.display())
        } else {
            format!("{} (that is {})", path.display(), real.display())
        };
        Err(format!(
            "{field}: {shown} is outside the directories this user allowed pods to reach; \
             a pod file must not reach any host path you did not allow: {HOW}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_allowed_directories_are_reached_symlinks_resolved() {
        let base = std::env::temp_dir().join(format!("peapod-allowed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("data/sub")).unwrap();
        std::os::unix::fs::symlink("/", base.join("data/root-link")).unwrap();
        let allowed = AllowedPaths::new(vec![base.join("data")]);
        allowed.check("f", &base.join("data/sub")).unwrap();
        // Not there yet (DirectoryOrCreate): judged by what exists.
        allowed.check("f", &base.join("data/new/deeper")).unwrap();
        for bad in [
            PathBuf::from("/"),
            PathBuf::from("/etc"),
            base.join("other"),
            base.join("data/root-link/etc"),
            base.join("data/../other"),
            base.join("database"),
        ] {
            let e = allowed
                .check("spec.volumes[0].hostPath.path", &bad)
                .unwrap_err();
            assert!(e.starts_with("spec.volumes[0].hostPath.path: "), "{e}");
            assert!(e.contains("--allow-host-path") || e.contains("'..'"), "{e}");
        }
        let e = allowed
            .check("f", &base.join("data/root-link/etc"))
            .unwrap_err();
        assert!(e.contains("(that is /etc)"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
