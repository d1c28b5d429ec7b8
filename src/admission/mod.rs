//! Host capacity ledger: a pod reserves its whole VM memory and its CPU
//! request before anything is created, all at once or not at all.
//!
//! The ledger is a JSON file next to a lock file in peapod's runtime
//! directory, shared by every peapod process of the user. An entry names
//! its pod, its owner pid and the owner's start time, so entries of dead
//! processes (a crashed VMM, `kill -9`) are reclaimed by the next reader.
//! The pod's name is unique among live entries.

mod capacity;
mod ledger;

pub use capacity::{Capacity, CapacitySource};
pub use ledger::{check_private, process_start_time, Entry, Ledger, Reservation};

use std::path::PathBuf;

/// Why a pod could not be admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The pod does not fit next to the pods already admitted.
    #[error("{}", insufficient_message(.pod, .asked_memory, .asked_millicpu, .capacity, .holders))]
    Insufficient {
        /// The refused pod.
        pod: String,
        /// VM memory it asked for.
        asked_memory: u64,
        /// CPU it requested, in millicores.
        asked_millicpu: u64,
        /// The host's capacity.
        capacity: Capacity,
        /// The live reservations.
        holders: Vec<Entry>,
    },
    /// A live pod already has this name.
    #[error("a pod named {pod} is already running (pid {pid}); pick another metadata.name or stop that pod first")]
    NameTaken {
        /// The name.
        pod: String,
        /// Its owner.
        pid: u32,
    },
    /// The ledger could not be read, locked or written.
    #[error("cannot {action} the capacity ledger {}", .path.display())]
    Ledger {
        /// What failed.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file exists but cannot be read.
    #[error("cannot read peapod's config file {}: fix its permissions, or point PEAPOD_CONFIG elsewhere", .path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The capacity setting is invalid.
    #[error("invalid capacity setting {origin}: {problem}")]
    Config {
        /// Where the setting came from.
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
}

fn insufficient_message(
    pod: &str,
    asked_memory: &u64,
    asked_millicpu: &u64,
    capacity: &Capacity,
    holders: &[Entry],
) -> String {
    let used_mem: u64 = holders.iter().map(|e| e.memory).sum();
    let used_cpu: u64 = holders.iter().map(|e| e.millicpu).sum();
    let free_mem = capacity.memory.saturating_sub(used_mem);
    let free_cpu = capacity.millicpu.saturating_sub(used_cpu);
    let mut msg = format!(
        "pod {pod} does not fit on this host, so nothing was started: it needs {} of memory (the whole pod, guest included) and {}m CPU; \
         free: {} of {} memory, {}m of {}m CPU ({})",
        mib(*asked_memory),
        asked_millicpu,
        mib(free_mem),
        mib(capacity.memory),
        free_cpu,
        capacity.millicpu,
        capacity.source,
    );
    if holders.is_empty() {
        msg.push_str("; no other pod holds any; lower the pod's resources or raise the capacity (PEAPOD_CAPACITY_MEMORY, PEAPOD_CAPACITY_CPUS)");
    } else {
        msg.push_str("; held by: ");
        let list: Vec<String> = holders
            .iter()
            .map(|e| {
                format!(
                    "{} ({}, {}m CPU, pid {})",
                    e.pod,
                    mib(e.memory),
                    e.millicpu,
                    e.pid
                )
            })
            .collect();
        msg.push_str(&list.join(", "));
        msg.push_str("; stop one of them, lower the pod's resources, or raise the capacity");
    }
    msg
}

/// The CPU a pod requests, in millicores, the way Kubernetes' scheduler
/// counts it: each container's request, else its limit, else nothing (best
/// effort); the larger of the biggest init container and the sum of the app
/// containers and sidecars.
pub fn pod_cpu_request(plan: &crate::spec::PodPlan) -> u64 {
    let of = |c: &crate::spec::ContainerPlan| c.cpu_request.or(c.cpu_limit).unwrap_or(0);
    let apps: u64 = plan
        .containers
        .iter()
        .chain(plan.init_containers.iter().filter(|c| c.sidecar))
        .map(of)
        .sum();
    let init = plan
        .init_containers
        .iter()
        .filter(|c| !c.sidecar)
        .map(of)
        .max()
        .unwrap_or(0);
    apps.max(init)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pod_cpu_request_uses_requests_then_limits() {
        let plan = crate::spec::parse(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - {name: i, image: busybox, resources: {requests: {cpu: 3}}}\n  containers:\n  - {name: a, image: busybox, resources: {requests: {cpu: 500m}, limits: {cpu: 2}}}\n  - {name: b, image: busybox, resources: {limits: {cpu: 250m}}}\n  - {name: c, image: busybox}\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(
            pod_cpu_request(&plan),
            3000,
            "the init container's request dominates"
        );
    }
}
