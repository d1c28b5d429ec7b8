//! A read-only view of any FUSE file system, by allow-list: only operations
//! that cannot change the share reach the inner file system; the mutating
//! ones answer `EROFS`, and everything not listed keeps the trait's default
//! (`ENOSYS`), so an operation added to the trait later is refused until
//! someone decides it is safe.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    stat64, statvfs64, CreateIn, FsOptions, OpenOptions, SetattrValid,
};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, ZeroCopyReader, ZeroCopyWriter,
};

fn erofs() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}

/// Whether `open(2)` flags ask for anything beyond reading.
/// The flags passed on to the host's open: without `O_NOATIME`, which the
/// guest's overlayfs adds to every lower-layer open and which the host
/// refuses (EPERM) for files the VMM's user does not own, as in a rootless
/// VMM serving root-owned image files. It is only a hint; dropping it is safe.
fn host_open_flags(flags: u32) -> u32 {
    flags & !(libc::O_NOATIME as u32)
}

fn open_writes(flags: u32) -> bool {
    let flags = flags as i32;
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_TRUNC | libc::O_CREAT) != 0
}

/// `F`, refusing every change.
pub struct ReadOnlyFs<F> {
    inner: F,
}

impl<F> ReadOnlyFs<F> {
    /// Wrap `inner`.
    pub fn new(inner: F) -> Self {
        ReadOnlyFs { inner }
    }
}

impl<F: FileSystem> FileSystem for ReadOnlyFs<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        // Writeback caching only makes sense for writes.
        Ok(self.inner.init(capable)? - FsOptions::WRITEBACK_CACHE)
    }

    fn destroy(&self) {
        self.inner.destroy()
    }

    fn lookup(&self, ctx: &Context, parent: Self::Inode, name: &CStr) -> io::Result<Entry> {
        self.inner.lookup(ctx, parent, name)
    }

    fn forget(&self, ctx: &Context, inode: Self::Inode, count: u64) {
        self.inner.forget(ctx, inode, count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(Self::Inode, u64)>) {
        self.inner.batch_forget(ctx, requests)
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Option<Self::Handle>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.getattr(ctx, inode, handle)
    }

    fn setattr(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _attr: stat64,
        _handle: Option<Self::Handle>,
        _valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        Err(erofs())
    }

    fn readlink(&self, ctx: &Context, inode: Self::Inode) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, inode)
    }

    fn symlink(
        &self,
        _ctx: &Context,
        _linkname: &CStr,
        _parent: Self::Inode,
        _name: &CStr,
    ) -> io::Result<Entry> {
        Err(erofs())
    }

    fn mknod(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _name: &CStr,
        _mode: u32,
        _rdev: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        Err(erofs())
    }

    fn mkdir(
        &self,
        _ctx: &Context,
        _parent: Self::Inode,
        _name: &CStr,
        _mode: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        Err(erofs())
    }

    fn unlink(&self, _ctx: &Context, _parent: Self::Inode, _name: &CStr) -> io::Result<()> {
        Err(erofs())
    }

    fn rmdir(&self, _ctx: &Context, _parent: Self::Inode, _name: &CStr) -> io::Result<()> {
        Err(erofs())
    }

    fn rename(
        &self,
        _ctx: &Context,
        _olddir: Self::Inode,
        _oldname: &CStr,
        _newdir: Self::Inode,
        _newname: &CStr,
        _flags: u32,
    ) -> io::Result<()> {
        Err(erofs())
    }

    fn link(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _newparent: Self::Inode,
        _newname: &CStr,
    ) -> io::Result<Entry> {
        Err(erofs())
    }

    fn open(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Self::Handle>, OpenOptions, Option<u32>)> {
        if open_writes(flags) {
            return Err(erofs());
        }
        self.inner
            .open(ctx, inode, host_open_flags(flags), fuse_flags)
    }

    fn create(
        &self,
        _ctx: &Context,
        _parent: Self::Inode,
        _name: &CStr,
        _args: CreateIn,
    ) -> io::Result<(Entry, Option<Self::Handle>, OpenOptions, Option<u32>)> {
        Err(erofs())
    }

    fn read(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        // The passthrough re-applies a request's flags to the open file with
        // fcntl(F_SETFL) and, if that fails, closes the handle's fd by
        // mistake (fuse-backend-rs 0.14 drops its borrowed File on the error
        // path). O_NOATIME is what fails for files we do not own: strip it
        // here too, so reads never take that path.
        self.inner.read(
            ctx,
            inode,
            handle,
            w,
            size,
            offset,
            lock_owner,
            host_open_flags(flags),
        )
    }

    fn write(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _handle: Self::Handle,
        _r: &mut dyn ZeroCopyReader,
        _size: u32,
        _offset: u64,
        _lock_owner: Option<u64>,
        _delayed_write: bool,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<usize> {
        Err(erofs())
    }

    fn flush(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        self.inner.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        datasync: bool,
        handle: Self::Handle,
    ) -> io::Result<()> {
        self.inner.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _handle: Self::Handle,
        _mode: u32,
        _offset: u64,
        _length: u64,
    ) -> io::Result<()> {
        Err(erofs())
    }

    fn release(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
        handle: Self::Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.inner
            .release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
    }

    fn statfs(&self, ctx: &Context, inode: Self::Inode) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, inode)
    }

    fn setxattr(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _name: &CStr,
        _value: &[u8],
        _flags: u32,
    ) -> io::Result<()> {
        Err(erofs())
    }

    fn removexattr(&self, _ctx: &Context, _inode: Self::Inode, _name: &CStr) -> io::Result<()> {
        Err(erofs())
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
    ) -> io::Result<(Option<Self::Handle>, OpenOptions)> {
        if open_writes(flags) {
            return Err(erofs());
        }
        self.inner.opendir(ctx, inode, host_open_flags(flags))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdir(ctx, inode, handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, add_entry)
    }

    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        datasync: bool,
        handle: Self::Handle,
    ) -> io::Result<()> {
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
        handle: Self::Handle,
    ) -> io::Result<()> {
        self.inner.releasedir(ctx, inode, flags, handle)
    }

    fn access(&self, ctx: &Context, inode: Self::Inode, mask: u32) -> io::Result<()> {
        if mask as i32 & libc::W_OK != 0 {
            return Err(erofs());
        }
        self.inner.access(ctx, inode, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        self.inner.getlk(ctx, inode, handle, owner, lock, flags)
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        self.inner.id_remap(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_only_open_writes_detects_write_access() {
        assert!(!open_writes(libc::O_RDONLY as u32));
        assert!(!open_writes((libc::O_RDONLY | libc::O_DIRECTORY) as u32));
        assert!(open_writes(libc::O_WRONLY as u32));
        assert!(open_writes(libc::O_RDWR as u32));
        assert!(open_writes((libc::O_RDONLY | libc::O_TRUNC) as u32));
        assert!(open_writes((libc::O_RDONLY | libc::O_CREAT) as u32));
    }
}
