//! PID 1 of a VM guest as the pod's agent: talks to the host over vsock,
//! takes the pod from it and runs it from the pod share (virtio-fs).

use std::io;
use std::path::Path;

use peapod_proto::{Connection, GUEST_SHARE_DIR};

use crate::runtime;
use crate::sys;
use crate::transport::Transport;

/// Leave the initramfs for a mount of its own.
///
/// The kernel's initial rootfs has no parent mount, so containers could
/// not `pivot_root` out of it. Like switch_root(8), but without copying
/// anything: bind the rootfs onto a directory of itself, move that bind
/// over `/` and chroot into it. The same files, so the init (1.6 MB) is
/// in guest memory once, and PID 1 goes on without a re-exec.
pub fn leave_initramfs() -> io::Result<()> {
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(Path::new("/").join(dir))?;
    }
    let new_root = Path::new("/newroot");
    std::fs::create_dir_all(new_root)?;
    sys::mount(Some("/"), new_root, None, libc::MS_BIND, None)?;
    sys::mount(
        None,
        new_root,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID,
        None,
    )?;
    std::env::set_current_dir(new_root)?;
    sys::mount(Some("."), Path::new("/"), None, libc::MS_MOVE, None)?;
    // SAFETY: chroot with a valid NUL-terminated path.
    if unsafe { libc::chroot(c".".as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    // The bind's own mount point, seen again from inside it.
    let _ = std::fs::remove_dir(new_root);
    Ok(())
}

/// Kernel command line key: the host's vsock port the agent connects to.
pub const CMDLINE_AGENT_PORT: &str = "peapod.agent";

/// Connect to the host on vsock `port`, receive the pod, run it. Returns
/// the pod's exit status: 0 when it Succeeded.
pub fn agent(port: u32) -> i32 {
    let transport = match Transport::connect_vsock(port) {
        Ok(t) => t,
        Err(e) => {
            println!("peapod-init: error: {e}");
            return 2;
        }
    };
    runtime::serve(
        Connection::new(transport),
        Ok(()),
        Path::new(GUEST_SHARE_DIR),
    )
}
