//! virtio-fs (virtio spec 5.11, device type 26): one host directory shared
//! with the guest, served by a FUSE server inside the VMM process (no
//! separate virtiofsd, no root).
//!
//! Layers: [`device`] (the `VirtioDevice`, config space and the queue
//! handler, a plain function over guest memory; the event-manager glue is
//! the shared `virtio::QueueHandler`), the backend ([`FsBackend`]: a FUSE server; in
//! production `fuse_backend_rs::api::server::Server` over
//! `fuse_backend_rs::passthrough::PassthroughFs`, in tests anything), and
//! [`read_only`] (an allow-list wrapper that turns a passthrough into a
//! read-only share).
//!
//! # Security (the guest is hostile)
//!
//! What fuse-backend-rs 0.14's passthrough does, checked in its source and
//! in our tests:
//! - **`..` on the root inode**: `LOOKUP(ROOT, "..")` is rewritten to `"."`,
//!   so it returns the share root itself (tested by comparing attributes).
//! - **Path components**: LOOKUP refuses names containing `/`; the
//!   name-creating operations (mkdir, create, mknod, symlink, link, rename)
//!   also refuse `.` and `..`. Every host lookup is one `openat(dirfd, name,
//!   O_PATH | O_NOFOLLOW)` relative to an already-known directory fd, so the
//!   host never walks a multi-component path.
//! - **Symlinks**: the host never follows one. The final component is opened
//!   `O_NOFOLLOW`, so an absolute or `../..` link is just an inode whose
//!   READLINK returns the target bytes; the *guest's* VFS resolves it in the
//!   guest's namespace. OPEN/CREATE on a non-regular, non-directory inode is
//!   refused (`is_safe_inode`), so an `O_PATH` fd of a symlink is never
//!   re-opened through `/proc/self/fd` (which would follow it on the host).
//! - **`O_PATH` / `/proc/self/fd`**: inodes are held as `O_PATH` fds and
//!   opened for I/O by re-opening `/proc/self/fd/N` (needs `/proc` in the
//!   VMM's mount namespace). This resolves to the inode, not a path.
//! - **`open_by_handle_at`**: only used with `inode_file_handles = true`
//!   (needs `CAP_DAC_READ_SEARCH`); we leave it off.
//!
//! What it does **not** guarantee (virtiofsd adds a mount-namespace/chroot
//! sandbox for these; we have none):
//! - `..` is only special-cased on the root inode. If a host process moves
//!   a directory the guest holds out of the share, `..` from it reaches
//!   outside. The shared directory must not be rearranged by untrusted host
//!   parties while the VM runs.
//! - Mount points and hard links placed inside the share by the host are
//!   served like any other entry.
//! - Resource use is not bounded by it: every looked-up inode keeps an
//!   `O_PATH` fd in the VMM process until the guest FORGETs it, and every
//!   open file one until it is released. [`bounded`] caps both at a budget
//!   shared by the VM's shares (`ENFILE` beyond), under the VMM's open-file
//!   limit. A read-write share can still fill the host file system (a disk
//!   emptyDir's `sizeLimit` is enforced by eviction, as the kubelet does).
//! - Requests are served synchronously on the event-loop thread; a slow host
//!   file system stalls the other devices.
//!
//! # Running as an ordinary user
//! The passthrough is configured without xattrs, `killpriv_v2`, DAX, file
//! handles or writeback. Its per-request credential switch
//! (`setresuid/setresgid` to the guest caller, for mkdir/create/mknod/
//! symlink/link) is a no-op for guest uid/gid 0 (peapod-init and root
//! containers); for other guest users it fails with `EPERM` unless the id is
//! the VMM's own. Files the guest creates are owned by the host user;
//! `chown`/`chgrp` to other ids, `mknod` of devices, and setting setuid bits
//! on foreign files fail with `EPERM`. `PassthroughFs::import` sets the
//! process umask to 0; we restore the previous umask afterwards, so
//! guest-created modes are additionally masked by the VMM's umask.

pub mod bounded;
pub mod device;
pub mod read_only;

use std::path::PathBuf;

pub use bounded::{Bounded, FdBudget};
pub use device::{passthrough_backend, Fs, FsBackend, TAG_LEN};

/// Why a virtio-fs device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty, longer than 36 bytes, or contains NUL.
    #[error("virtio-fs tag {0:?} must be 1 to 36 bytes without NUL")]
    InvalidTag(String),
    /// The shared directory could not be resolved.
    #[error("cannot resolve shared directory {}", .0.display())]
    ResolveShare(PathBuf, #[source] std::io::Error),
    /// The shared path is not a directory.
    #[error("shared path {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The shared path is not valid UTF-8 (the passthrough takes a `String`).
    #[error("shared path {} is not valid UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
    /// The passthrough file system could not be created or opened.
    #[error("cannot open shared directory {} for passthrough", .0.display())]
    OpenShare(PathBuf, #[source] std::io::Error),
}
