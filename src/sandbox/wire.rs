//! The pod as peapod-init receives it ([`WirePod`]): every container's image
//! resolved through the local image store, and the image config merged with
//! the pod spec the way Kubernetes does.
//!
//! Paths are first relative to the host's `/` (the pod share in namespace
//! mode: peapod-init runs on the host, so an image's root filesystem is its
//! absolute path without the leading `/`; an overlay lower directory cannot
//! be a bind mount or symlink farm). For a VM, `launch::vm_shares` then
//! turns each distinct directory into a virtio-fs share of its own.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Context};
use peapod_proto::{
    Backoff, RestartPolicy as WireRestart, VolumeKind, WireContainer, WireFile, WireMount, WirePod,
    WireVolume,
};

use crate::image::{ImageConfig, ImageStore};
use crate::spec::{ContainerPlan, HostPathType, PodPlan, RestartPolicy, VolumeSource};

/// The root of the pod share in native mode.
pub const SHARE_ROOT: &str = "/";

/// How a container runs once its image config and the pod spec are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The full argv.
    pub command: Vec<String>,
    /// The environment: the image's `Env`, then the pod's, a pod variable
    /// replacing the image's of the same name in place.
    pub env: Vec<(String, String)>,
    /// Absolute working directory.
    pub working_dir: String,
    /// User.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Users and groups of an image (`/etc/passwd`, `/etc/group`), to resolve
/// a named image `User`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// (name, uid, primary gid).
    pub users: Vec<(String, u32, u32)>,
    /// (name, gid).
    pub groups: Vec<(String, u32)>,
}

impl Accounts {
    /// Parse `/etc/passwd` and `/etc/group` text; malformed lines are
    /// skipped.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
            })
            .collect();
        Accounts { users, groups }
    }

    /// The accounts of the root filesystem at `rootfs`: only regular files
    /// reached without symlinks are read (a hostile image must not make us
    /// read host files), anything else counts as empty.
    pub fn read(rootfs: &Path) -> Accounts {
        let read = |name: &str| {
            let etc = rootfs.join("etc");
            let file = etc.join(name);
            let plain = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_symlink());
            if plain(&etc) && plain(&file) {
                std::fs::read_to_string(&file).unwrap_or_default()
            } else {
                String::new()
            }
        };
        Accounts::parse(&read("passwd"), &read("group"))
    }

    fn uid(&self, name: &str) -> Option<u32> {
        self.users.iter().find(|u| u.0 == name).map(|u| u.1)
    }

    fn primary_gid(&self, uid: u32) -> Option<u32> {
        self.users.iter().find(|u| u.1 == uid).map(|u| u.2)
    }

    fn gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }
}

/// Merge a container of the pod spec with its image config, as Kubernetes
/// does:
///
/// - `command` set: it replaces the image's `Entrypoint`, and the image's
///   `Cmd` is dropped; `args` follow it;
/// - only `args` set: the image's `Entrypoint`, then `args`;
/// - neither: the image's `Entrypoint`, then its `Cmd`;
/// - env: the image's `Env`, then the pod's, overriding by name;
/// - working dir: `workingDir`, else the image's `WorkingDir`, else `/`;
/// - user: `runAsUser`/`runAsGroup`, else the image's `User` (`uid[:gid]`,
///   or names looked up in the image's `/etc/passwd` and `/etc/group`),
///   else root; a group not given is the user's primary group in the image,
///   else 0.
///
/// Errors are the problem only; the caller names the container.
pub fn merge(
    c: &ContainerPlan,
    image: &ImageConfig,
    accounts: &Accounts,
) -> Result<Merged, String> {
    let command: Vec<String> = if !c.command.is_empty() {
        c.command.iter().chain(&c.args).cloned().collect()
    } else if !c.args.is_empty() {
        image.entrypoint.iter().chain(&c.args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if command.is_empty() {
        return Err(
            "nothing to run: the pod sets no command and the image has neither \
                    Entrypoint nor Cmd; set `command`"
                .to_owned(),
        );
    }

    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_owned(),
        None => env.push((name.to_owned(), value.to_owned())),
    };
    for entry in &image.env {
        // `Env` entries are NAME=value; a bare NAME carries no value.
        if let Some((name, value)) = entry.split_once('=') {
            if !name.is_empty() {
                set(name, value);
            }
        }
    }
    for (name, value) in &c.env {
        set(name, value);
    }

    let working_dir = match (&c.working_dir, image.working_dir.as_str()) {
        (Some(dir), _) => dir.clone(),
        (None, "") => "/".to_owned(),
        (None, dir) if dir.starts_with('/') => dir.to_owned(),
        (None, dir) => format!("/{dir}"),
    };

    let (uid, gid) = user(c, &image.user, accounts)?;
    if c.run_as_non_root && uid == 0 {
        return Err(
            "runAsNonRoot is set, but the container would run as root (uid 0): set \
                    securityContext.runAsUser, or use an image whose User is not root"
                .to_owned(),
        );
    }
    Ok(Merged {
        command,
        env,
        working_dir,
        uid,
        gid,
    })
}

/// The (uid, gid) a container runs as; see [`merge`].
fn user(c: &ContainerPlan, image_user: &str, accounts: &Accounts) -> Result<(u32, u32), String> {
    let (image_uid, image_gid) = match image_user.split_once(':') {
        _ if image_user.is_empty() => (None, None),
        Some((u, g)) => (Some(u), Some(g)),
        None => (Some(image_user), None),
    };
    let uid = match (c.run_as_user, image_uid) {
        (Some(uid), _) => uid,
        (None, None) => 0,
        (None, Some(u)) => u.parse().ok().or_else(|| accounts.uid(u)).ok_or_else(|| {
            format!(
                "the image's User {image_user:?} names user {u:?}, which is not in the image's \
                 /etc/passwd; set securityContext.runAsUser"
            )
        })?,
    };
    let gid = match (c.run_as_group, c.run_as_user, image_gid) {
        (Some(gid), _, _) => gid,
        (None, None, Some(g)) => g.parse().ok().or_else(|| accounts.gid(g)).ok_or_else(|| {
            format!(
                "the image's User {image_user:?} names group {g:?}, which is not in the image's \
                 /etc/group; set securityContext.runAsGroup"
            )
        })?,
        _ => accounts.primary_gid(uid).unwrap_or(0),
    };
    Ok((uid, gid))
}

/// The share path (relative to [`SHARE_ROOT`]) of a host directory, which
/// must be usable as an overlay lower directory.
pub fn share_path(dir: &Path) -> Result<String, String> {
    let real = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let text = real
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", real.display()))?;
    if text.contains([',', ':', '\\']) {
        return Err(format!(
            "{text} cannot be an overlay lower directory (it contains ',', ':' or '\\'); move \
             the image elsewhere"
        ));
    }
    let rel = text.trim_start_matches('/');
    if rel.is_empty() || real.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{text} cannot be an image root filesystem"));
    }
    Ok(rel.to_owned())
}

/// Whether hostPath `path` of type `kind` is missing and is to be created
/// (`DirectoryOrCreate`, `FileOrCreate`, and the default type, which
/// containerd makes a directory).
pub fn host_path_to_create(path: &Path, kind: HostPathType) -> bool {
    matches!(
        kind,
        HostPathType::DirectoryOrCreate | HostPathType::Unchecked | HostPathType::FileOrCreate
    ) && path.symlink_metadata().is_err()
}

/// Create the missing hostPath `path` as its type says, as the kubelet
/// does: only once the whole pod passed its checks (the pod's monitor,
/// after its reservation), so a pod refused leaves nothing behind.
pub fn create_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    if kind == HostPathType::FileOrCreate {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot create {shown}: {e}"))
    } else {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create {shown}: {e}"))
    }
}

/// `path` with its deepest existing ancestor's symlinks resolved and the
/// rest appended; that ancestor must be a directory.
fn resolve_missing(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path;
    let mut rest = Vec::new();
    while existing.symlink_metadata().is_err() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return Err(format!("{} cannot be created", path.display()));
        };
        rest.push(name);
        existing = parent;
    }
    let real = existing
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", existing.display()))?;
    if !real.is_dir() {
        return Err(format!(
            "cannot create {}: {} is not a directory",
            path.display(),
            existing.display()
        ));
    }
    Ok(rest.iter().rev().fold(real, |p, n| p.join(n)))
}

/// The share path (relative to [`SHARE_ROOT`]) of a hostPath volume, once
/// the check its `type` asks for passed, or, for one that is to be created
/// ([`host_path_to_create`]), of where it will be; nothing is created
/// here. Symlinks are resolved here, by the host; peapod-init then refuses
/// any symlink on the way, so none swapped in later can lead elsewhere.
pub fn host_path_share(path: &Path, kind: HostPathType) -> Result<String, String> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let real = if host_path_to_create(path, kind) {
        resolve_missing(path)?
    } else {
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        let t = meta.file_type();
        let (ok, want) = match kind {
            HostPathType::Unchecked => (true, ""),
            HostPathType::Directory | HostPathType::DirectoryOrCreate => {
                (t.is_dir(), "a directory")
            }
            HostPathType::File | HostPathType::FileOrCreate => (t.is_file(), "a regular file"),
            HostPathType::Socket => (t.is_socket(), "a socket"),
            HostPathType::CharDevice => (t.is_char_device(), "a character device"),
            HostPathType::BlockDevice => (t.is_block_device(), "a block device"),
        };
        if !ok {
            return Err(format!(
                "{shown} is not {want}, as its hostPath type {kind:?} requires"
            ));
        }
        path.canonicalize()
            .map_err(|e| format!("cannot resolve {shown}: {e}"))?
    };
    let text = real
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", real.display()))?;
    match text.trim_start_matches('/') {
        "" => Ok(".".to_owned()),
        rel => Ok(rel.to_owned()),
    }
}

/// One container as peapod-init takes it, and its image's manifest digest.
fn container(
    c: &ContainerPlan,
    field: &str,
    store: &ImageStore,
) -> anyhow::Result<(WireContainer, Option<String>)> {
    let at = || format!("{field} ({})", c.name);
    let image = store.resolve(&c.image).with_context(at)?;
    let accounts = Accounts::read(&image.rootfs);
    let merged = merge(c, &image.config, &accounts).map_err(|p| anyhow!("{}: {p}", at()))?;
    let rootfs =
        share_path(&image.rootfs).map_err(|p| anyhow!("{}: image {}: {p}", at(), c.image))?;
    let wired = WireContainer {
        name: c.name.clone(),
        rootfs,
        command: merged.command,
        env: merged.env,
        working_dir: merged.working_dir,
        uid: merged.uid,
        gid: merged.gid,
        volume_mounts: c
            .volume_mounts
            .iter()
            .map(|m| WireMount {
                volume: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
                sub_path: m.sub_path.clone(),
            })
            .collect(),
        memory_limit: c.memory_limit,
        cpu_limit_millis: c.cpu_limit,
        pids_limit: None,
        read_only_rootfs: c.read_only_root_filesystem,
        cap_add: c.capabilities.add.clone(),
        cap_drop: c.capabilities.drop.clone(),
        tty: c.tty,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        sidecar: c.sidecar,
        binds: vec![],
        supplemental_groups: Vec::new(),
        no_new_privs: c.no_new_privs,
        probes: c.probes.clone(),
        post_start: c.lifecycle.post_start.clone(),
        pre_stop: c.lifecycle.pre_stop.clone(),
        stop_signal: c
            .lifecycle
            .stop_signal
            .or_else(|| image_stop_signal(&image.config.stop_signal)),
        termination_message_path: Some(c.termination_message_path.clone()),
        termination_message_fallback: c.termination_message_fallback,
    };
    Ok((wired, image.digest))
}

/// The image's `StopSignal`; one that names no signal (the image comes
/// from anywhere) leaves SIGTERM, with a warning.
fn image_stop_signal(name: &str) -> Option<i32> {
    if name.is_empty() {
        return None;
    }
    let n = crate::spec::signals::signal_number(name);
    if n.is_none() {
        log::warn!("the image's StopSignal {name:?} names no signal; SIGTERM stops it");
    }
    n
}

/// Where PersistentVolumeClaim `claim` keeps its data
/// ([`super::claims`]), as a share path (from `/`, the data directory's
/// symlinks resolved: the guest follows none).
fn claim_share(claim: &str) -> String {
    let data = super::artifacts::data_dir();
    let data = data.canonicalize().unwrap_or(data);
    let dir = data.join("volumes").join(claim).join("data");
    dir.to_string_lossy().trim_start_matches('/').to_owned()
}

/// The pod as peapod-init takes it, images resolved (and unpacked into the
/// store the first time), with the manifest digest of each container's
/// image (store images only), by container name. Errors name the field
/// and the container.
pub fn wire_pod(
    plan: &PodPlan,
    store: &ImageStore,
) -> anyhow::Result<(WirePod, Vec<(String, String)>)> {
    let digests = std::cell::RefCell::new(Vec::new());
    let mut volumes = Vec::new();
    for (i, v) in plan.volumes.iter().enumerate() {
        let kind = match &v.source {
            VolumeSource::EmptyDir {
                medium_memory,
                size_limit,
            } => VolumeKind::EmptyDir {
                medium_memory: *medium_memory,
                size_limit: *size_limit,
            },
            VolumeSource::HostPath { path, kind } => VolumeKind::HostPath {
                path: host_path_share(path, *kind)
                    .map_err(|p| anyhow!("spec.volumes[{i}].hostPath.path ({}): {p}", v.name))?,
            },
            VolumeSource::Claim { claim, .. } => VolumeKind::HostPath {
                path: claim_share(claim),
            },
            VolumeSource::Files { files } => VolumeKind::Files {
                files: files
                    .iter()
                    .map(|f| WireFile {
                        path: f.path.clone(),
                        mode: f.mode,
                        data: f.data.clone(),
                    })
                    .collect(),
            },
        };
        volumes.push(WireVolume {
            name: v.name.clone(),
            kind,
        });
    }
    let list = |cs: &[ContainerPlan], field: &str| -> anyhow::Result<Vec<WireContainer>> {
        cs.iter()
            .enumerate()
            .map(|(i, c)| {
                let (wired, digest) = container(c, &format!("spec.{field}[{i}]"), store)?;
                if let Some(d) = digest {
                    digests.borrow_mut().push((c.name.clone(), d));
                }
                Ok(wired)
            })
            .collect()
    };
    let mut pod = WirePod {
        name: plan.name.clone(),
        hostname: plan.hostname.clone(),
        init_containers: list(&plan.init_containers, "initContainers")?,
        containers: list(&plan.containers, "containers")?,
        volumes,
        restart_policy: match plan.restart_policy {
            RestartPolicy::Always => WireRestart::Always,
            RestartPolicy::OnFailure => WireRestart::OnFailure,
            RestartPolicy::Never => WireRestart::Never,
        },
        grace_period_s: plan.termination_grace_period_seconds,
        backoff: Backoff::default(),
        share_process_namespace: plan.share_process_namespace,
        network: None,
        sandbox: false,
        fs_group: plan.fs_group,
        sysctls: plan.sysctls.clone(),
    };
    // fsGroup and supplementalGroups are every container's groups.
    let mut groups: Vec<u32> = plan.supplemental_groups.clone();
    groups.extend(plan.fs_group);
    groups.sort_unstable();
    groups.dedup();
    for c in pod
        .init_containers
        .iter_mut()
        .chain(pod.containers.iter_mut())
    {
        c.supplemental_groups = groups.clone();
    }
    // A claim mounted readOnly is read-only in every mount of it.
    let read_only: Vec<&str> = plan
        .volumes
        .iter()
        .filter(|v| {
            matches!(
                v.source,
                VolumeSource::Claim {
                    read_only: true,
                    ..
                }
            )
        })
        .map(|v| v.name.as_str())
        .collect();
    for m in pod
        .init_containers
        .iter_mut()
        .chain(pod.containers.iter_mut())
        .flat_map(|c| c.volume_mounts.iter_mut())
    {
        if read_only.contains(&m.volume.as_str()) {
            m.read_only = true;
        }
    }
    pod.validate()
        .context("internal error: the pod peapod built is not valid")?;
    Ok((pod, digests.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_container(yaml: &str) -> ContainerPlan {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - \
             name: c\n    image: busybox\n{yaml}"
        );
        let plan = crate::spec::parse(&pod, "pod.yaml").unwrap_or_else(|e| panic!("{e}"));
        plan.containers[0].clone()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..ImageConfig::default()
        }
    }

    fn argv(spec: &str, config: &ImageConfig) -> Result<Vec<String>, String> {
        merge(&plan_container(spec), config, &Accounts::default()).map(|m| m.command)
    }

    #[test]
    fn test_merge_command_kubernetes_table() {
        let both = image(&["/ep", "-x"], &["cmd", "1"]);
        let only_cmd = image(&[], &["sh"]);
        let cases: Vec<(&str, &ImageConfig, &[&str])> = vec![
            // Neither: Entrypoint + Cmd.
            ("", &both, &["/ep", "-x", "cmd", "1"]),
            ("", &only_cmd, &["sh"]),
            // command: replaces Entrypoint, drops Cmd.
            ("    command: [/bin/true]\n", &both, &["/bin/true"]),
            // args only: Entrypoint + args.
            ("    args: [a, b]\n", &both, &["/ep", "-x", "a", "b"]),
            ("    args: [echo, hi]\n", &only_cmd, &["echo", "hi"]),
            // both: command + args.
            (
                "    command: [sh, -c]\n    args: [echo hi]\n",
                &both,
                &["sh", "-c", "echo hi"],
            ),
        ];
        for (spec, config, want) in cases {
            assert_eq!(argv(spec, config).unwrap(), want, "{spec:?}");
        }
        let err = argv("", &ImageConfig::default()).unwrap_err();
        assert!(err.contains("set `command`"), "{err}");
    }

    #[test]
    fn test_merge_env_pod_overrides_image_by_name() {
        let config = ImageConfig {
            env: vec![
                "PATH=/usr/bin:/bin".into(),
                "HOME=/root".into(),
                "EMPTY=".into(),
                "BARE".into(),
                "EQ=a=b".into(),
            ],
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        };
        let c = plan_container(
            "    env:\n    - {name: NEW, value: n}\n    - {name: PATH, value: /custom}\n",
        );
        let m = merge(&c, &config, &Accounts::default()).unwrap();
        let want: Vec<(String, String)> = [
            ("PATH", "/custom"),
            ("HOME", "/root"),
            ("EMPTY", ""),
            ("EQ", "a=b"),
            ("NEW", "n"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(m.env, want);
    }

    #[test]
    fn test_merge_working_dir() {
        let mut config = image(&[], &["sh"]);
        let wd = |spec: &str, config: &ImageConfig| {
            merge(&plan_container(spec), config, &Accounts::default())
                .unwrap()
                .working_dir
        };
        assert_eq!(wd("", &config), "/");
        config.working_dir = "/srv".into();
        assert_eq!(wd("", &config), "/srv");
        assert_eq!(wd("    workingDir: /tmp\n", &config), "/tmp");
        config.working_dir = "app".into();
        assert_eq!(wd("", &config), "/app");
    }

    #[test]
    fn test_merge_user_table() {
        let accounts = Accounts::parse(
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/:/bin/sh\nbad line\n",
            "root:x:0:\nstaff:x:50:\n",
        );
        let sc = |u: &str| format!("    securityContext: {{{u}}}\n");
        type Want = Result<(u32, u32), &'static str>;
        let cases: Vec<(String, &str, Want)> = vec![
            (String::new(), "", Ok((0, 0))),
            (String::new(), "123", Ok((123, 0))),
            (String::new(), "123:456", Ok((123, 456))),
            (String::new(), "1000", Ok((1000, 1001))),
            (String::new(), "web", Ok((1000, 1001))),
            (String::new(), "web:staff", Ok((1000, 50))),
            (
                String::new(),
                "nobody",
                Err("not in the image's /etc/passwd"),
            ),
            (
                String::new(),
                "web:nogroup",
                Err("not in the image's /etc/group"),
            ),
            (sc("runAsUser: 7"), "123:456", Ok((7, 0))),
            (sc("runAsUser: 1000"), "", Ok((1000, 1001))),
            (sc("runAsUser: 7, runAsGroup: 8"), "web", Ok((7, 8))),
            (sc("runAsGroup: 8"), "123:456", Ok((123, 8))),
            (sc("runAsNonRoot: true"), "", Err("runAsNonRoot")),
            (sc("runAsNonRoot: true"), "web", Ok((1000, 1001))),
        ];
        for (spec, image_user, want) in cases {
            let config = ImageConfig {
                user: image_user.into(),
                cmd: vec!["sh".into()],
                ..ImageConfig::default()
            };
            let got = merge(&plan_container(&spec), &config, &accounts).map(|m| (m.uid, m.gid));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{spec:?} {image_user:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{spec:?} {image_user:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn test_share_path_of_rootfs() {
        let dir = std::env::temp_dir().join(format!("peapod-share-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let got = share_path(&dir.join("root/../root")).unwrap();
        assert_eq!(
            Path::new("/").join(&got),
            dir.join("root").canonicalize().unwrap()
        );
        assert!(!got.starts_with('/'));
        std::fs::create_dir_all(dir.join("a:b")).unwrap();
        assert!(share_path(&dir.join("a:b"))
            .unwrap_err()
            .contains("overlay"));
        assert!(share_path(&dir.join("missing")).is_err());
        assert!(share_path(Path::new("/")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_host_path_share_checks_creates_and_resolves() {
        let dir = std::env::temp_dir().join(format!("peapod-hostpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.canonicalize().unwrap();
        let share = |p: &Path, k| host_path_share(p, k);
        let under = |rel: String| Path::new(SHARE_ROOT).join(rel);

        // To be created when the type says so (and, by default, as a
        // directory): the share is where it will be; nothing is made yet.
        let made = dir.join("a/b");
        assert!(host_path_to_create(&made, HostPathType::DirectoryOrCreate));
        let got = share(&made, HostPathType::DirectoryOrCreate).unwrap();
        assert_eq!(under(got), real.join("a/b"));
        assert!(!dir.join("a").exists(), "nothing created while checking");
        create_host_path(&made, HostPathType::DirectoryOrCreate).unwrap();
        assert!(made.is_dir());
        assert!(!host_path_to_create(&made, HostPathType::DirectoryOrCreate));
        let unchecked = dir.join("u");
        assert!(host_path_to_create(&unchecked, HostPathType::Unchecked));
        create_host_path(&unchecked, HostPathType::Unchecked).unwrap();
        assert!(unchecked.is_dir());
        let file = dir.join("f");
        share(&file, HostPathType::FileOrCreate).unwrap();
        create_host_path(&file, HostPathType::FileOrCreate).unwrap();
        assert!(file.is_file());
        assert!(share(&file, HostPathType::File).is_ok());
        // Not under a file.
        let err = share(&file.join("x"), HostPathType::DirectoryOrCreate).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");

        // The type is checked, and a missing path is not created otherwise.
        let err = share(&file, HostPathType::Directory).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        let err = share(&made, HostPathType::Socket).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        assert!(share(&dir.join("missing"), HostPathType::Directory).is_err());
        assert!(!dir.join("missing").exists());

        // Symlinks are resolved on the host; `/` is the share itself.
        std::os::unix::fs::symlink(&made, dir.join("link")).unwrap();
        let got = share(&dir.join("link"), HostPathType::Directory).unwrap();
        assert_eq!(under(got), real.join("a/b"));
        assert_eq!(share(Path::new("/"), HostPathType::Directory).unwrap(), ".");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
