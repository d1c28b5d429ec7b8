//! A container's root filesystem: containerd's snapshot mounts on
//! `bundle/rootfs`, bound into the pod directory's `containers/<name>`,
//! which the pod's VM shares with peapod-init from boot.

use std::ffi::CString;
use std::path::Path;

use containerd_shim::protos::api::Mount;

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a path with a NUL byte", p.display()))
}

/// Mount the snapshot `mounts` on `target` (nothing when containerd gave
/// none: `ctr run --rootfs` fills `bundle/rootfs` itself). mount(2) from
/// this process (no fork: the shim has threads, and waits for no child
/// it did not start itself).
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), String> {
    for m in mounts {
        let (flags, data) = mount_options(&m.options);
        let describe = || {
            format!(
                "rootfs: cannot mount {} ({}, options {}) on {}",
                m.source,
                m.type_,
                m.options.join(","),
                target.display()
            )
        };
        // The kernel takes one page of options (a long overlay lowerdir
        // list is longer); say so rather than fail obscurely.
        if data.len() >= 4000 {
            return Err(format!(
                "{}: {} bytes of options, more than a page (an image with very many layers)",
                describe(),
                data.len()
            ));
        }
        let source = CString::new(m.source.as_str()).map_err(|_| describe())?;
        let fstype = CString::new(m.type_.as_str()).map_err(|_| describe())?;
        let data_c = CString::new(data).map_err(|_| describe())?;
        let target_c = cstr(target)?;
        // SAFETY: valid NUL-terminated strings; data is the file system's
        // option string.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target_c.as_ptr(),
                if m.type_.is_empty() || flags & libc::MS_BIND != 0 {
                    std::ptr::null()
                } else {
                    fstype.as_ptr()
                },
                flags,
                data_c.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "{}: {}",
                describe(),
                std::io::Error::last_os_error()
            ));
        }
        // A read-only bind takes a remount to be read-only.
        if flags & libc::MS_BIND != 0 && flags & libc::MS_RDONLY != 0 {
            // SAFETY: as above.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    target_c.as_ptr(),
                    std::ptr::null(),
                    flags | libc::MS_REMOUNT,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(format!(
                    "{}: {}",
                    describe(),
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

/// mount(8)-style options split into mount flags and the file system's
/// own options.
fn mount_options(options: &[String]) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "noatime" => (libc::MS_NOATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "defaults" | "async" | "atime" | "diratime" => (0, 0),
            other => {
                data.push(other.to_owned());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// Create `target` as a mount point for `source`: an empty directory, or
/// an empty file for a file.
pub fn mount_point_for(source: &Path, target: &Path) -> Result<(), String> {
    let made = if source.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(target).map(drop))
    };
    made.map_err(|e| format!("cannot create {}: {e}", target.display()))
}

/// Bind `source` (a directory or a file) on `target` (created).
pub fn bind(source: &Path, target: &Path) -> Result<(), String> {
    if !source.exists() {
        return Err(format!("{}: no such file or directory", source.display()));
    }
    mount_point_for(source, target)?;
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

/// Unmount everything on and under `path`, deepest first (lazily: a
/// file still open does not keep it), then remove `path` if it is an
/// empty directory left by [`bind`]. Errors name what stayed mounted.
pub fn unmount_all(path: &Path) -> Result<(), String> {
    let mut mounts = peapod::sandbox::mounted_under(path);
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
    let left = peapod::sandbox::mounted_under(path);
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
    mount_point_for(fallback, target)?;
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
    fn test_mount_options_split_into_flags_and_data() {
        let o = |v: &[&str]| mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            o(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]),
            (0, "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b".into())
        );
        assert_eq!(
            o(&["rbind", "ro"]),
            (
                libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
                String::new()
            )
        );
        assert_eq!(o(&["ro", "rw", "nosuid"]), (libc::MS_NOSUID, String::new()));
    }
}
