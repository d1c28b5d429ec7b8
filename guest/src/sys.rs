//! The few system calls PID 1 needs, as safe functions.

use std::ffi::CString;
use std::io;

/// A file system PID 1 mounts at boot.
pub struct MountSpec {
    /// Source (device or pseudo name).
    pub source: &'static str,
    /// Where it goes.
    pub target: &'static str,
    /// File system type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: libc::c_ulong,
    /// File-system specific options.
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The kernel file systems every guest gets.
pub const BASE_MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
];

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

/// Mount one file system, creating the mount point if needed.
pub fn mount_fs(m: &MountSpec) -> io::Result<()> {
    std::fs::create_dir_all(m.target)?;
    let (source, target, fstype, data) = (
        cstr(m.source)?,
        cstr(m.target)?,
        cstr(m.fstype)?,
        cstr(m.data)?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Ok(());
        }
        return Err(io::Error::new(
            e.kind(),
            format!("mount {} on {}: {e}", m.fstype, m.target),
        ));
    }
    Ok(())
}

/// Milliseconds since the guest kernel booted.
pub fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Set the UTS host name.
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Flush file systems and reset the VM (the kernel runs with `reboot=k`, so
/// this pulses the i8042 reset line, which the VMM turns into a clean exit).
pub fn reset_machine() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot only returns on error.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
    }
    // Without CAP_SYS_BOOT (never in a guest) there is nothing left to do.
    std::process::exit(1)
}
