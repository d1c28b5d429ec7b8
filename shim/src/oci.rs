//! What containerd hands the shim, read into what peapod runs: the bundle's
//! OCI runtime spec (`config.json`), the CRI annotations, and names that
//! fit peapod's (DNS labels).

use std::collections::HashMap;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use peapod_proto::WireContainer;

/// The CRI annotation that says what a container is.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The CRI sandbox a container belongs to.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The Kubernetes pod name of a sandbox.
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
/// The container's name in its Kubernetes pod.
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
/// The image a CRI container was created from.
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// The pod's memory limit, bytes (sum of its containers' limits).
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
/// The pod's CPU quota and period (µs).
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// What a task is to the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CRI pod sandbox (the pause container): the pod itself.
    Sandbox,
    /// A CRI container joining the sandbox `SANDBOX_ID`.
    Container,
    /// A plain container (`ctr run`): a pod of one container.
    Solo,
}

/// The task's kind from its annotations.
pub fn kind(annotations: &HashMap<String, String>) -> Result<Kind, String> {
    match annotations.get(CONTAINER_TYPE).map(String::as_str) {
        Some("sandbox") => Ok(Kind::Sandbox),
        Some("container") if annotations.contains_key(SANDBOX_ID) => Ok(Kind::Container),
        Some("container") => Err(format!(
            "annotation {CONTAINER_TYPE} is `container` but {SANDBOX_ID} is missing"
        )),
        Some(other) => Err(format!(
            "annotation {CONTAINER_TYPE}: {other:?} is not `sandbox` or `container`"
        )),
        None => Ok(Kind::Solo),
    }
}

/// The grouping of a task: one shim (and one VM) per CRI sandbox, else per
/// container.
pub fn group(annotations: &HashMap<String, String>, id: &str) -> String {
    annotations
        .get(SANDBOX_ID)
        .cloned()
        .unwrap_or_else(|| id.to_owned())
}

/// A DNS label made of `text` (lowercase letters, digits and `-`, at most
/// `max` long, starting and ending alphanumeric); empty when nothing of
/// `text` fits.
fn label_of(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(max);
    s.trim_matches('-').to_owned()
}

/// Whether `s` is a DNS label (what peapod's pod and container names are).
fn is_label(s: &str) -> bool {
    peapod::sandbox::crilog::is_container_name(s)
}

/// A short stable tag of `id`: its first 8 characters when it is a
/// lowercase hex id (as containerd's CRI makes them), else a hash.
fn short_id(id: &str) -> String {
    if id.len() >= 8
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return id[..8].to_owned();
    }
    // FNV-1a: stable across runs and versions (unlike std's hasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The peapod pod name of a sandbox (or solo container) `id`: the
/// Kubernetes pod name and a short id (`web-5c4f2a1b`), the id itself when
/// it is already a short DNS label (`ctr run ... my-task`), else a label
/// made of it and a short id.
pub fn pod_name(annotations: &HashMap<String, String>, id: &str) -> String {
    if let Some(name) = annotations.get(SANDBOX_NAME) {
        let base = label_of(name, 54);
        if !base.is_empty() {
            return format!("{base}-{}", short_id(id));
        }
    }
    if is_label(id) && id.len() <= 40 {
        return id.to_owned();
    }
    let base = label_of(id, 54);
    if base.is_empty() {
        format!("ctr-{}", short_id(id))
    } else {
        format!("{base}-{}", short_id(id))
    }
}

/// The container's name in the pod: its Kubernetes name, else a label of
/// its id; `taken` names get the short id appended.
pub fn container_name(
    annotations: &HashMap<String, String>,
    id: &str,
    taken: &dyn Fn(&str) -> bool,
) -> String {
    let wanted = annotations
        .get(CONTAINER_NAME)
        .map(|n| label_of(n, 54))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            if is_label(id) && id.len() <= 54 {
                id.to_owned()
            } else {
                let base = label_of(id, 40);
                if base.is_empty() {
                    format!("ctr-{}", short_id(id))
                } else {
                    base
                }
            }
        });
    if taken(&wanted) {
        format!("{wanted}-{}", short_id(id))
    } else {
        wanted
    }
}

/// Memory and CPU of a new pod from the sandbox's CRI annotations or, for
/// a solo container, its own limits; `None` where nothing says.
pub fn pod_size(spec: &Spec, kind: Kind) -> Result<(Option<u64>, Option<u64>), String> {
    let ann = spec.annotations().clone().unwrap_or_default();
    let num = |key: &str| -> Result<Option<i64>, String> {
        ann.get(key)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("annotation {key}: {v:?} is not a number"))
            })
            .transpose()
    };
    if kind == Kind::Sandbox {
        let memory = num(SANDBOX_MEMORY)?.filter(|&m| m > 0).map(|m| m as u64);
        let cpu = match (num(SANDBOX_CPU_QUOTA)?, num(SANDBOX_CPU_PERIOD)?) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(millicores(q as u64, p as u64)),
            _ => None,
        };
        return Ok((memory, cpu));
    }
    let limits = limits(spec);
    Ok((limits.0, limits.1))
}

fn millicores(quota: u64, period: u64) -> u64 {
    (quota.saturating_mul(1000) / period).max(1)
}

/// A container's memory (bytes), CPU (millicores) and pids limits.
fn limits(spec: &Spec) -> (Option<u64>, Option<u64>, Option<u64>) {
    let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().clone()) else {
        return (None, None, None);
    };
    let memory = res
        .memory()
        .as_ref()
        .and_then(|m| m.limit())
        .filter(|&l| l > 0)
        .map(|l| l as u64);
    let cpu = res
        .cpu()
        .as_ref()
        .and_then(|c| match (c.quota(), c.period()) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(millicores(q as u64, p)),
            _ => None,
        });
    let pids = res
        .pids()
        .as_ref()
        .map(|p| p.limit())
        .filter(|&l| l > 0)
        .map(|l| l as u64);
    (memory, cpu, pids)
}

/// Devices every container has (the guest's own); any other device in
/// `linux.devices` is the host's and cannot reach a VM.
const STANDARD_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
];

/// Mount destinations the guest provides itself (kernel file systems, and
/// the files CRI binds from the host that peapod-init writes for the pod).
fn provided_by_guest(destination: &str, typ: &str) -> bool {
    matches!(
        typ,
        "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2"
    ) || matches!(
        destination,
        "/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf" | "/dev/shm" | "/dev/termination-log"
    )
}

/// Refuse what a peapod pod cannot give a container, naming the
/// `config.json` field.
pub fn check(spec: &Spec) -> Result<(), String> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or("config.json: linux: missing (a Linux container spec is needed)")?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for (wanted, what) in [
        (LinuxNamespaceType::Network, "network (hostNetwork)"),
        (LinuxNamespaceType::Ipc, "IPC (hostIPC)"),
        (LinuxNamespaceType::Pid, "PID (hostPID)"),
        (LinuxNamespaceType::Mount, "mount"),
    ] {
        if !namespaces.iter().any(|n| n.typ() == wanted) {
            return Err(format!(
                "config.json: linux.namespaces: no {what} namespace, so the container would \
                 share the host's; a peapod pod runs in its own VM and cannot give it the host's"
            ));
        }
    }
    if let Some(devices) = linux.devices() {
        for (i, d) in devices.iter().enumerate() {
            let path = d.path().to_string_lossy();
            if !STANDARD_DEVICES.contains(&path.as_ref()) {
                return Err(format!(
                    "config.json: linux.devices[{i}] ({path}): host devices cannot be passed \
                     into a peapod VM (a privileged container asks for all of them)"
                ));
            }
        }
    }
    for (i, m) in spec.mounts().clone().unwrap_or_default().iter().enumerate() {
        let dest = m.destination().to_string_lossy();
        let typ = m.typ().clone().unwrap_or_default();
        if provided_by_guest(&dest, &typ) {
            continue;
        }
        let source = m
            .source()
            .as_ref()
            .map(|s| s.display().to_string())
            .unwrap_or_default();
        if !is_bind(m) {
            return Err(format!(
                "config.json: mounts[{i}] ({source} on {dest}, type {typ:?}): only bind \
                 mounts of host files and directories reach a peapod pod"
            ));
        }
        if !source.starts_with('/') || !dest.starts_with('/') {
            return Err(format!(
                "config.json: mounts[{i}] ({source} on {dest}): source and destination \
                 must be absolute paths"
            ));
        }
    }
    Ok(())
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// A host file or directory to bind into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    pub source: std::path::PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// The host binds of a spec that passed [`check`] (CRI's volumes: an
/// emptyDir, a configMap, a service account token ...).
pub fn host_binds(spec: &Spec) -> Vec<HostBind> {
    spec.mounts()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            let typ = m.typ().clone().unwrap_or_default();
            !provided_by_guest(&m.destination().to_string_lossy(), &typ) && is_bind(m)
        })
        .filter_map(|m| {
            Some(HostBind {
                source: m.source().clone()?,
                destination: m.destination().to_string_lossy().into_owned(),
                read_only: m
                    .options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "ro")),
            })
        })
        .collect()
}

/// The process part of a spec as peapod runs it.
/// A process's argv, environment and working directory.
type ProcessParts = (Vec<String>, Vec<(String, String)>, String);

fn process_of(p: &Process) -> Result<ProcessParts, String> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err("process.args: empty; the container needs a command".into());
    }
    let env = p
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv, String::new()),
        })
        .collect();
    let cwd = p.cwd().to_string_lossy().into_owned();
    let cwd = if cwd.is_empty() { "/".to_owned() } else { cwd };
    Ok((args, env, cwd))
}

/// The container `name` of `spec`, its root filesystem at share path
/// `rootfs`.
pub fn container(spec: &Spec, name: &str, rootfs: String) -> Result<WireContainer, String> {
    let process = spec
        .process()
        .as_ref()
        .ok_or("config.json: process: missing")?;
    let (command, env, working_dir) =
        process_of(process).map_err(|e| format!("config.json: {e}"))?;
    let (memory_limit, cpu_limit_millis, pids_limit) = limits(spec);
    let c = WireContainer {
        name: name.to_owned(),
        rootfs,
        command,
        env,
        working_dir,
        uid: process.user().uid(),
        gid: process.user().gid(),
        volume_mounts: vec![],
        memory_limit,
        cpu_limit_millis,
        pids_limit,
        read_only_rootfs: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        cap_add: vec![],
        cap_drop: vec![],
        tty: process.terminal().unwrap_or(false),
        stdin: false,
        stdin_once: false,
        sidecar: false,
        binds: vec![],
        supplemental_groups: Vec::new(),
        no_new_privs: false,
        probes: Vec::new(),
        post_start: None,
        pre_stop: None,
        stop_signal: None,
        termination_message_path: None,
        termination_message_fallback: false,
    };
    c.validate("config.json", &Default::default())
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// An exec's process (the JSON of an OCI `Process` in the exec request).
pub fn exec_process(json: &[u8]) -> Result<(Vec<String>, bool), String> {
    let p: Process = serde_json::from_slice(json).map_err(|e| format!("exec process spec: {e}"))?;
    let (args, _, _) = process_of(&p).map_err(|e| format!("exec {e}"))?;
    Ok((args, p.terminal().unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn test_names_are_dns_labels_that_keep_what_they_can() {
        let id = "5c4f2a1b9d0e".repeat(5) + "abcd";
        assert_eq!(id.len(), 64);
        let a = ann(&[(SANDBOX_NAME, "Web_Server")]);
        assert_eq!(pod_name(&a, &id), "web-server-5c4f2a1b");
        assert_eq!(pod_name(&ann(&[]), "my-task"), "my-task");
        assert_eq!(pod_name(&ann(&[]), &id), format!("{}-5c4f2a1b", &id[..54]));
        let odd = pod_name(&ann(&[]), "Task_1");
        assert!(odd.starts_with("task-1-") && is_label(&odd), "{odd}");
        assert!(is_label(&pod_name(&ann(&[]), "___")));
        let free = |_: &str| false;
        let a = ann(&[(CONTAINER_NAME, "app")]);
        assert_eq!(container_name(&a, &id, &free), "app");
        assert_eq!(container_name(&a, &id, &|n| n == "app"), "app-5c4f2a1b");
        assert_eq!(container_name(&ann(&[]), "sidecar", &free), "sidecar");
    }

    #[test]
    fn test_kind_and_group_from_cri_annotations() {
        let sbx = ann(&[(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "s1")]);
        assert_eq!(kind(&sbx), Ok(Kind::Sandbox));
        let c = ann(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "s1")]);
        assert_eq!(kind(&c), Ok(Kind::Container));
        assert_eq!(group(&c, "c1"), "s1");
        assert_eq!(kind(&ann(&[])), Ok(Kind::Solo));
        assert_eq!(group(&ann(&[]), "c1"), "c1");
        assert!(kind(&ann(&[(CONTAINER_TYPE, "container")])).is_err());
    }

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 1000, "gid": 100}, "args": ["sh", "-c", "exit 3"],
                        "env": ["PATH=/bin", "EMPTY"], "cwd": "/work", "terminal": false},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/x/hosts", "options": ["rbind"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                               {"type": "mount"}, {"type": "network", "path": "/var/run/netns/cni-1"}],
                "resources": {"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000},
                              "pids": {"limit": 100}}
            }
        })
    }

    #[test]
    fn test_container_from_an_oci_spec() {
        let s = spec(base());
        check(&s).unwrap();
        let c = container(&s, "app", "ctr/app".into()).unwrap();
        assert_eq!(c.command, ["sh", "-c", "exit 3"]);
        assert_eq!(
            c.env,
            [
                ("PATH".into(), "/bin".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        assert_eq!((c.working_dir.as_str(), c.uid, c.gid), ("/work", 1000, 100));
        assert_eq!(c.memory_limit, Some(64 << 20));
        assert_eq!(c.cpu_limit_millis, Some(500));
        assert_eq!(c.pids_limit, Some(100));
        assert!(c.read_only_rootfs);
        assert_eq!(
            pod_size(&s, Kind::Solo).unwrap(),
            (Some(64 << 20), Some(500))
        );
    }

    #[test]
    fn test_what_a_pod_cannot_give_is_refused_by_field() {
        let mut j = base();
        j["linux"]["namespaces"] =
            serde_json::json!([{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]);
        let e = check(&spec(j)).unwrap_err();
        assert!(
            e.contains("linux.namespaces: no network (hostNetwork)"),
            "{e}"
        );
        let mut j = base();
        j["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]);
        let e = check(&spec(j)).unwrap_err();
        assert!(e.contains("linux.devices[1] (/dev/sda)"), "{e}");
        let mut j = base();
        j["mounts"][1]["destination"] = "/data".into();
        j["mounts"][1]["options"] = serde_json::json!(["rbind", "ro"]);
        check(&spec(j.clone())).unwrap();
        assert_eq!(
            host_binds(&spec(j.clone())),
            [HostBind {
                source: "/var/lib/x/hosts".into(),
                destination: "/data".into(),
                read_only: true
            }]
        );
        j["mounts"][1]["type"] = "nfs".into();
        j["mounts"][1]["options"] = serde_json::json!([]);
        let e = check(&spec(j)).unwrap_err();
        assert!(
            e.contains("mounts[1] (/var/lib/x/hosts on /data, type \"nfs\")"),
            "{e}"
        );
        let mut j = base();
        j["process"]["args"] = serde_json::json!([]);
        let e = container(&spec(j), "app", "r".into()).unwrap_err();
        assert!(e.contains("process.args: empty"), "{e}");
        let mut sbx = base();
        sbx["annotations"] = serde_json::json!({SANDBOX_MEMORY: "134217728",
            SANDBOX_CPU_QUOTA: "200000", SANDBOX_CPU_PERIOD: "100000"});
        assert_eq!(
            pod_size(&spec(sbx), Kind::Sandbox).unwrap(),
            (Some(128 << 20), Some(2000))
        );
        let mut bad = base();
        bad["annotations"] = serde_json::json!({SANDBOX_MEMORY: "lots"});
        let e = pod_size(&spec(bad), Kind::Sandbox).unwrap_err();
        assert!(e.contains(SANDBOX_MEMORY), "{e}");
    }
}
