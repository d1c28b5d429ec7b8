//! A VM pod's disk emptyDir volumes, as the kubelet keeps them: on disk, in
//! peapod's data directory (not the runtime directory, a tmpfs whose host
//! memory no reservation counts), measured while the pod runs (`inspect`
//! shows what each uses), and the pod evicted when one grows past its
//! `sizeLimit`. `medium: Memory` volumes stay tmpfs in the guest, where
//! the guest kernel holds them to their size within the pod's memory.

use super::*;
use crate::sandbox::state::VolumeUsage;

/// How often the volumes are measured (the kubelet's housekeeping is 10 s).
const VOLUME_POLL: Duration = Duration::from_secs(5);
/// The most entries one measurement visits: a guest that makes millions
/// of files costs a bounded walk; what lies beyond counts as over.
const MAX_WALK: usize = 1_000_000;

/// The name of the pod directory's link to its volumes' directory.
pub(crate) const VOLUMES_LINK: &str = "volumes";

/// Make the pod's disk emptyDir volumes, each shared with the guest
/// (writable, tag `ed<N>`) like a hostPath, under
/// `<data dir>/pods/<pod>-<id>/`, which `<pod dir>/volumes` links to (and
/// `peapod rm` removes with the pod).
pub(super) fn disk_empty_dirs(
    launch: &Launch,
    dir: &Path,
) -> anyhow::Result<(Launch, Vec<VolumeUsage>)> {
    let mut launch = launch.clone();
    let mut usage = Vec::new();
    let Some(vm) = launch.vm.as_mut() else {
        return Ok((launch, usage));
    };
    let mut home = None;
    for v in &mut launch.pod.volumes {
        let VolumeKind::EmptyDir {
            medium_memory: false,
            size_limit,
        } = v.kind
        else {
            continue;
        };
        let home = match &home {
            Some(h) => h,
            None => home.insert(make_home(&launch.pod.name, dir)?),
        };
        let path = home.join(&v.name);
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        // Any container user may write, as in Kubernetes; the data
        // directory (0700) keeps other host users out.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let tag = format!(
            "ed{}",
            vm.shares.iter().filter(|s| s.tag.starts_with("ed")).count()
        );
        vm.shares.push(super::super::Share {
            tag: tag.clone(),
            path: path.clone(),
            read_only: false,
        });
        v.kind = VolumeKind::HostPath { path: tag };
        usage.push(VolumeUsage {
            name: v.name.clone(),
            path,
            used_bytes: 0,
            size_limit,
        });
    }
    Ok((launch, usage))
}

/// `<data dir>/pods/<pod>-<id>`, private, linked from the pod directory.
fn make_home(pod: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let pods = crate::sandbox::artifacts::data_dir().join("pods");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&pods)
        .with_context(|| format!("cannot create {}", pods.display()))?;
    let home = pods.join(format!("{pod}-{:x}", now_ns()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&home)
        .with_context(|| format!("cannot create {}", home.display()))?;
    std::os::unix::fs::symlink(&home, dir.join(VOLUMES_LINK))
        .with_context(|| format!("cannot link {} to the pod", home.display()))?;
    Ok(home)
}

/// Bytes `path` takes on disk (allocated blocks, symlinks not followed),
/// and whether the walk saw all of it within [`MAX_WALK`] entries.
fn disk_usage(path: &Path) -> (u64, bool) {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        seen += 1;
        if seen > MAX_WALK {
            return (total, false);
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
    }
    (total, true)
}

/// Measure the pod's disk emptyDir volumes until the guest ends; evict
/// the pod (stop it, Failed, reason `Evicted`) when one outgrows its
/// `sizeLimit`, as the kubelet does.
pub(super) fn watch_volumes(monitor: &Arc<Monitor>) -> anyhow::Result<()> {
    if lock(&monitor.state).volumes.is_empty() {
        return Ok(());
    }
    let m = monitor.clone();
    std::thread::Builder::new()
        .name("volume-watch".into())
        .spawn(move || {
            while !m.guest_ended.load(Ordering::SeqCst) {
                let mut volumes = lock(&m.state).volumes.clone();
                let mut over = None;
                for v in &mut volumes {
                    let (used, complete) = disk_usage(&v.path);
                    v.used_bytes = used;
                    if let Some(limit) = v.size_limit {
                        if used > limit || !complete {
                            over.get_or_insert(format!(
                                "Evicted: emptyDir volume {:?} uses {used} bytes{}, over its \
                                 sizeLimit of {limit}",
                                v.name,
                                if complete { "" } else { " or more" }
                            ));
                        }
                    }
                }
                m.update(|s| s.volumes = volumes);
                if let Some(why) = over {
                    log::warn!("{why}");
                    m.stop(&why, None);
                    return;
                }
                std::thread::sleep(VOLUME_POLL);
            }
        })
        .context("cannot start the volume watcher")?;
    Ok(())
}
