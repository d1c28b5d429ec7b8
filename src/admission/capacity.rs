//! How much memory and CPU this host gives to pods.

use std::fmt;

use super::AdmissionError;
use crate::spec::quantity::{parse_bytes, parse_millicores};

/// Memory kept back for the host when the capacity comes from MemAvailable.
pub const HOST_RESERVE: u64 = 256 << 20;

/// Where a capacity figure came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacitySource {
    /// Measured: MemAvailable minus the host reserve, and the online CPUs.
    Host,
    /// Set by environment variables and/or the config file.
    Configured(String),
}

impl fmt::Display for CapacitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapacitySource::Host => write!(
                f,
                "capacity measured from this host: MemAvailable minus {} MiB, online CPUs",
                HOST_RESERVE >> 20
            ),
            CapacitySource::Configured(s) => write!(f, "capacity set by {s}"),
        }
    }
}

/// The host's capacity for pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes of memory.
    pub memory: u64,
    /// CPU in millicores.
    pub millicpu: u64,
    /// Where the figures came from.
    pub source: CapacitySource,
}

fn value_text(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// peapod's config file (see [`crate::settings`]).
pub use crate::settings::config_file as config_path;

fn mem_available() -> Option<u64> {
    crate::hostinfo::proc_kib_field("/proc/meminfo", "MemAvailable")
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

impl Capacity {
    /// Resolve the capacity: environment (`PEAPOD_CAPACITY_MEMORY`, a
    /// quantity such as `2Gi`; `PEAPOD_CAPACITY_CPUS`, e.g. `2` or `1500m`)
    /// over the config file over what the host measures.
    pub fn resolve() -> Result<Capacity, AdmissionError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let path = config_path();
        let file: crate::settings::Settings = match std::fs::read_to_string(&path) {
            Ok(text) => {
                crate::settings::Settings::parse(&text).map_err(|e| AdmissionError::Config {
                    origin: path.display().to_string(),
                    problem: format!("{e:#}"),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(AdmissionError::ReadConfig { path, source: e }),
        };
        let file_origin = format!("{} capacity", path.display());
        let memory_setting = env("PEAPOD_CAPACITY_MEMORY")
            .map(|v| (v, "PEAPOD_CAPACITY_MEMORY".to_string()))
            .or_else(|| {
                file.capacity
                    .memory
                    .as_ref()
                    .map(|v| (value_text(v), format!("{file_origin}.memory")))
            });
        let cpu_setting = env("PEAPOD_CAPACITY_CPUS")
            .map(|v| (v, "PEAPOD_CAPACITY_CPUS".to_string()))
            .or_else(|| {
                file.capacity
                    .cpus
                    .as_ref()
                    .map(|v| (value_text(v), format!("{file_origin}.cpus")))
            });

        let mut origins = Vec::new();
        let memory = match memory_setting {
            Some((text, origin)) => {
                let m = parse_bytes(&text).map_err(|e| AdmissionError::Config {
                    origin: origin.clone(),
                    problem: format!("{text:?}: {e}"),
                })?;
                origins.push(origin);
                m
            }
            None => mem_available().unwrap_or(0).saturating_sub(HOST_RESERVE),
        };
        let millicpu = match cpu_setting {
            Some((text, origin)) => {
                let c = parse_millicores(&text).map_err(|e| AdmissionError::Config {
                    origin: origin.clone(),
                    problem: format!("{text:?}: {e}"),
                })?;
                origins.push(origin);
                c
            }
            None => online_cpus() * 1000,
        };
        let source = if origins.is_empty() {
            CapacitySource::Host
        } else {
            CapacitySource::Configured(origins.join(" and "))
        };
        Ok(Capacity {
            memory,
            millicpu,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_capacity_config_file_schema() {
        use crate::settings::Settings;
        let c = Settings::parse("capacity:\n  memory: 1.25Gi\n  cpus: 2\n").unwrap();
        assert_eq!(value_text(c.capacity.memory.as_ref().unwrap()), "1.25Gi");
        assert_eq!(value_text(c.capacity.cpus.as_ref().unwrap()), "2");
        assert!(Settings::parse("capacity:\n  mem: 1Gi\n").is_err());
    }

    #[test]
    fn test_capacity_source_display_names_origin() {
        let s = CapacitySource::Configured("PEAPOD_CAPACITY_MEMORY".into()).to_string();
        assert!(s.contains("PEAPOD_CAPACITY_MEMORY"));
        assert!(CapacitySource::Host.to_string().contains("MemAvailable"));
    }
}
