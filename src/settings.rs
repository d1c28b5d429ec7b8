//! peapod's settings file: `$PEAPOD_CONFIG`, else
//! `$XDG_CONFIG_HOME/peapod/config.yaml` (`~/.config/peapod/config.yaml`),
//! all of it optional:
//!
//! ```yaml
//! capacity: {memory: 4Gi, cpus: 2} # what pods may reserve in all
//! allowHostPaths: [/srv/data]      # directories pod files may reach
//! containerLogMaxSize: 10Mi        # rotate a container's log past this
//! containerLogMaxFiles: 5          # log files kept per container
//! insecureRegistries: [registry.lan:5000] # pulls may use plain HTTP
//! ```
//!
//! The two log settings are the kubelet's, with its defaults. One reader
//! for every part: a key that is none of these is refused, naming them.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::Deserialize;

use crate::sandbox::crilog::{LogLimits, MIN_LOG_SIZE};

/// The keys, for error messages.
const KEYS: &str = "capacity: {memory: 4Gi, cpus: 2}, allowHostPaths: [DIR, ...], \
                    containerLogMaxSize: 10Mi, containerLogMaxFiles: 5, \
                    insecureRegistries: [HOST:PORT, ...]";

/// `capacity:` (see [`crate::admission::Capacity::resolve`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySettings {
    /// Memory, a quantity (`4Gi`).
    pub memory: Option<serde_yaml::Value>,
    /// CPUs, a quantity (`2`, `1500m`).
    pub cpus: Option<serde_yaml::Value>,
}

/// The settings file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// What pods may reserve in all.
    #[serde(default)]
    pub capacity: CapacitySettings,
    /// Directories pod files may reach (see [`crate::sandbox::host_paths`]).
    #[serde(default)]
    pub allow_host_paths: Vec<PathBuf>,
    /// A container's log file is rotated before it grows past this size.
    #[serde(default)]
    pub container_log_max_size: Option<String>,
    /// Log files kept per container.
    #[serde(default)]
    pub container_log_max_files: Option<u32>,
    /// Registries (`host[:port]`) pulls may reach over plain HTTP or
    /// without checking their certificate, with a warning (loopback ones
    /// always may).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

/// The settings file: `$PEAPOD_CONFIG`, else
/// `$XDG_CONFIG_HOME/peapod/config.yaml`, else
/// `~/.config/peapod/config.yaml`.
pub fn config_file() -> PathBuf {
    if let Some(p) = std::env::var_os("PEAPOD_CONFIG").filter(|p| !p.is_empty()) {
        return p.into();
    }
    match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join("peapod/config.yaml"),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            Path::new(&home).join(".config/peapod/config.yaml")
        }
    }
}

impl Settings {
    /// The settings file's settings; none when there is no file, or when
    /// it cannot be read for permissions (someone else's home kept across
    /// a user switch: failing closed, a pod may reach less).
    pub fn load() -> anyhow::Result<Settings> {
        let file = config_file();
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::parse(&text).map_err(|e| anyhow!("{}: {e}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                log::warn!("{}: {e}; its settings are not used", file.display());
                Ok(Settings::default())
            }
            Err(e) => Err(anyhow!("cannot read {}: {e}", file.display())),
        }
    }

    /// Settings from the file's text, checked.
    pub fn parse(text: &str) -> anyhow::Result<Settings> {
        let s: Settings = if text.trim().is_empty() {
            Settings::default()
        } else {
            serde_yaml::from_str(text)
                .map_err(|e| anyhow!("{e} (it holds peapod's settings: {KEYS})"))?
        };
        s.log_limits()?;
        Ok(s)
    }

    /// The container log limits: the kubelet's defaults (10Mi, 5) unless
    /// set.
    pub fn log_limits(&self) -> anyhow::Result<LogLimits> {
        let mut limits = LogLimits::default();
        if let Some(size) = &self.container_log_max_size {
            limits.max_size = crate::spec::quantity::parse_bytes(size)
                .ok()
                .filter(|&b| b >= MIN_LOG_SIZE)
                .ok_or_else(|| {
                    anyhow!(
                        "containerLogMaxSize: {size:?} is not a size of at least 1Mi (such as \
                         10Mi)"
                    )
                })?;
        }
        if let Some(files) = self.container_log_max_files {
            if files < 2 {
                return Err(anyhow!(
                    "containerLogMaxFiles: {files} keeps too few files; use 2 or more (the \
                     kubelet's default is 5)"
                ));
            }
            limits.max_files = files;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_settings_parse_and_check_the_log_limits() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s.log_limits().unwrap(), LogLimits::default());
        let s = Settings::parse("containerLogMaxSize: 2Mi\ncontainerLogMaxFiles: 3\n").unwrap();
        assert_eq!(
            s.log_limits().unwrap(),
            LogLimits {
                max_size: 2 << 20,
                max_files: 3
            }
        );
        let e = Settings::parse("containerLogMaxSize: 10Ki\n").unwrap_err();
        assert!(e.to_string().contains("at least 1Mi"), "{e}");
        let e = Settings::parse("containerLogMaxFiles: 1\n").unwrap_err();
        assert!(e.to_string().contains("2 or more"), "{e}");
        let e = Settings::parse("logs: 1\n").unwrap_err();
        assert!(e.to_string().contains("containerLogMaxFiles"), "{e}");
        // Every part in one file.
        let s = Settings::parse(
            "capacity: {memory: 4Gi}\nallowHostPaths: [/srv]\ncontainerLogMaxFiles: 4\n",
        )
        .unwrap();
        assert!(s.capacity.memory.is_some() && s.allow_host_paths.len() == 1);
    }
}
