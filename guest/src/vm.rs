//! PID 1 of a VM guest as the pod's agent: talks to the host over vsock,
//! takes the pod from it and runs it from the pod share (virtio-fs).

use std::io;
use std::path::Path;

use peapod_proto::{Connection, GUEST_SHARE_DIR};

use crate::runtime;
use crate::sys;
use crate::transport::Transport;

/// Set in the environment once PID 1 has left the initramfs.
const SWITCHED: &str = "PEAPOD_INIT_SWITCHED";

/// Leave the initramfs for a tmpfs root, then re-execute from it.
///
/// The kernel's initial rootfs cannot be pivoted away from, so containers
/// could not `pivot_root` out of it; on a tmpfs mounted over it they can.
/// Like switch_root(8): copy ourselves into a fresh tmpfs, move it over
/// `/`, chroot into it and exec. Returns only on failure (or when done).
pub fn leave_initramfs() -> io::Result<()> {
    if std::env::var_os(SWITCHED).is_some() {
        return Ok(());
    }
    let new_root = Path::new("/newroot");
    std::fs::create_dir_all(new_root)?;
    sys::mount(
        Some("rootfs"),
        new_root,
        Some("tmpfs"),
        libc::MS_NOSUID,
        Some("mode=0755"),
    )?;
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(new_root.join(dir))?;
    }
    std::fs::copy("/init", new_root.join("init"))?;
    std::env::set_current_dir(new_root)?;
    sys::mount(Some("."), Path::new("/"), None, libc::MS_MOVE, None)?;
    // SAFETY: chroot with a valid NUL-terminated path.
    if unsafe { libc::chroot(c".".as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("/init").env(SWITCHED, "1"),
    );
    Err(err)
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
