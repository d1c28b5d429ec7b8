//! The shim's own settings: a JSON file the administrator writes beside
//! containerd's configuration (containerd passes a runtime's options only
//! as runc's protobuf type, so the file is named by an environment variable
//! or found at its default place).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the settings are read from when `PEAPOD_SHIM_CONFIG` is not set.
pub const DEFAULT_PATH: &str = "/etc/peapod/containerd-shim.json";

/// The environment variable naming the settings file.
pub const PATH_ENV: &str = "PEAPOD_SHIM_CONFIG";

/// Settings; every field has a default, so `{}` is a valid file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShimConfig {
    /// `vm` (a KVM microVM per pod) or `namespace` (Linux namespaces on
    /// the host, for hosts without KVM; root only).
    pub isolation: String,
    /// Memory of a pod whose sandbox does not say (no CRI
    /// `io.kubernetes.cri.sandbox-memory`, no container limit), MiB; the
    /// guest overhead comes on top.
    pub default_memory_mib: u64,
    /// CPU of such a pod, millicores.
    pub default_millicpu: u64,
    /// `passt` (the pod reaches the host's network through passt, as
    /// `peapod run` pods do) or `none` (loopback only).
    pub network: String,
    /// The peapod executable whose `__monitor` runs each pod; default: the
    /// `peapod` beside this shim, else on `PATH`.
    pub peapod: Option<PathBuf>,
    /// The guest kernel; default: peapod's cache (as `peapod run`).
    pub kernel: Option<PathBuf>,
    /// peapod-init; default: peapod's cache.
    pub init: Option<PathBuf>,
    /// Give up on a pod whose peapod-init is not ready after this long.
    pub boot_timeout_s: u64,
}

impl Default for ShimConfig {
    fn default() -> Self {
        ShimConfig {
            isolation: "vm".into(),
            default_memory_mib: 256,
            default_millicpu: 1000,
            network: "passt".into(),
            peapod: None,
            kernel: None,
            init: None,
            boot_timeout_s: 120,
        }
    }
}

impl ShimConfig {
    /// Read the settings: `$PEAPOD_SHIM_CONFIG` (which must exist), else
    /// [`DEFAULT_PATH`] if it exists, else the defaults.
    pub fn load() -> Result<ShimConfig, String> {
        let (path, required) = match std::env::var_os(PATH_ENV) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        if !required && !path.exists() {
            return Ok(ShimConfig::default());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the shim settings {}: {e}", path.display()))?;
        Self::parse(&path, &text)
    }

    /// Parse and check the settings text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ShimConfig, String> {
        let at = path.display();
        let c: ShimConfig = serde_json::from_str(text).map_err(|e| format!("{at}: {e}"))?;
        if !matches!(c.isolation.as_str(), "vm" | "namespace") {
            return Err(format!(
                "{at}: isolation: {:?} is not `vm` or `namespace`",
                c.isolation
            ));
        }
        if !matches!(c.network.as_str(), "passt" | "none") {
            return Err(format!(
                "{at}: network: {:?} is not `passt` or `none`",
                c.network
            ));
        }
        if c.default_memory_mib < 16 {
            return Err(format!(
                "{at}: default_memory_mib: {} MiB is too little for a pod (16 at least)",
                c.default_memory_mib
            ));
        }
        if c.default_millicpu == 0 {
            return Err(format!("{at}: default_millicpu: must be at least 1"));
        }
        Ok(c)
    }

    /// The peapod executable to run monitors with.
    pub fn peapod_exe(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.peapod {
            return Ok(p.clone());
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("peapod")))
            .filter(|p| p.is_file());
        if let Some(p) = beside {
            return Ok(p);
        }
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("peapod"))
                .find(|p| p.is_file())
        });
        on_path.ok_or_else(|| {
            format!(
                "no peapod executable beside this shim or on PATH: install it there, \
                 or name it in {DEFAULT_PATH} (\"peapod\": \"/path/to/peapod\")"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_shim_config_defaults_and_errors() {
        let p = Path::new("/etc/peapod/containerd-shim.json");
        assert_eq!(ShimConfig::parse(p, "{}").unwrap(), ShimConfig::default());
        let c = ShimConfig::parse(p, r#"{"isolation": "namespace", "network": "none"}"#).unwrap();
        assert_eq!(
            (c.isolation.as_str(), c.network.as_str()),
            ("namespace", "none")
        );
        let e = ShimConfig::parse(p, r#"{"isolation": "gvisor"}"#).unwrap_err();
        assert!(e.contains("isolation: \"gvisor\""), "{e}");
        let e = ShimConfig::parse(p, r#"{"memory": 5}"#).unwrap_err();
        assert!(e.contains("unknown field `memory`"), "{e}");
        let e = ShimConfig::parse(p, r#"{"default_memory_mib": 1}"#).unwrap_err();
        assert!(e.contains("default_memory_mib"), "{e}");
    }
}
