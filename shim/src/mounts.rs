//! A container's root filesystem: containerd's snapshot mounts on
//! `bundle/rootfs`, bound into the pod directory's `containers/<name>`,
//! which the pod's VM shares with peapod-init from boot.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a path with a NUL byte", p.display()))
}

/// Mount the snapshot `mounts` on `target` (nothing when containerd gave
/// none: `ctr run --rootfs` fills `bundle/rootfs` itself).
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), String> {
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            target,
        )
        .map_err(|e| {
            format!(
                "rootfs: cannot mount {} ({}, options {}) on {}: {e}",
                m.source,
                m.type_,
                m.options.join(","),
                target.display()
            )
        })?;
    }
    Ok(())
}

/// Bind `source` on `target` (created, an empty directory).
pub fn bind(source: &Path, target: &Path) -> Result<(), String> {
    std::fs::create_dir_all(target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let (s, t) = (cstr(source)?, cstr(target)?);
    // SAFETY: valid NUL-terminated paths; a bind mount takes no data.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot bind {} on {}: {}",
            source.display(),
            target.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Whether something is mounted on `path` (or under it).
pub fn mounted_under(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|m| m.starts_with(path))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything on and under `path`, deepest first (lazily: a
/// file still open does not keep it), then remove `path` if it is an
/// empty directory left by [`bind`]. Errors name what stayed mounted.
pub fn unmount_all(path: &Path) -> Result<(), String> {
    let mut mounts = mounted_under(path);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in &mounts {
        let c = cstr(m)?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
                return Err(format!("cannot unmount {}: {e}", m.display()));
            }
        }
    }
    let left = mounted_under(path);
    if !left.is_empty() {
        return Err(format!("{} is still mounted", left[0].display()));
    }
    Ok(())
}

/// The process of a namespace-isolated pod that holds its mount namespace:
/// the monitor's child whose mount namespace is not the shim's.
pub fn pod_mount_ns_holder(monitor: u32) -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let tasks = std::fs::read_dir(format!("/proc/{monitor}/task")).ok()?;
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != ours))
}

/// Mount `mounts` (or bind `fallback` when there are none) on `target`
/// inside the mount namespace of process `pid` (a namespace-isolated pod
/// keeps its mounts private, so a mount made out here would not reach it).
pub fn mount_in_namespace_of(
    pid: u32,
    mounts: &[Mount],
    fallback: &Path,
    target: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let ns = format!("--mount=/proc/{pid}/ns/mnt");
    let run = |args: Vec<String>| -> Result<(), String> {
        let out = std::process::Command::new("nsenter")
            .arg(&ns)
            .arg("--")
            .arg("mount")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "rootfs: mount {} in the pod: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let target = target.to_string_lossy().into_owned();
    if mounts.is_empty() {
        return run(vec![
            "--rbind".into(),
            fallback.to_string_lossy().into_owned(),
            target,
        ]);
    }
    for m in mounts {
        let mut args = vec!["-t".to_owned(), m.type_.clone()];
        if !m.options.is_empty() {
            args.push("-o".into());
            args.push(m.options.join(","));
        }
        args.push(m.source.clone());
        args.push(target.clone());
        run(args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/a\040b/c\134d"), "/a b/c\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}
