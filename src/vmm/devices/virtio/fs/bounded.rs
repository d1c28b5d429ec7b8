//! A bound on the host descriptors a guest makes a FUSE file system hold.
//!
//! The passthrough keeps an `O_PATH` descriptor for every inode the guest
//! looked up until the guest FORGETs it, and one for every open file or
//! directory until it is released; nothing in FUSE limits either. A guest
//! running `find /` over a large image, or holding files open on purpose,
//! would take the VMM to its open-file limit, and then vsock, the API
//! socket and the other shares fail too. [`Bounded`] counts both against
//! an [`FdBudget`] shared by every share of the VM and answers `ENFILE`
//! ("too many open files in the system", which is what the guest sees)
//! beyond it; the guest's kernel frees inodes as it forgets them.
//!
//! Everything else passes through to the inner file system unchanged.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    stat64, statvfs64, CreateIn, FsOptions, OpenOptions, SetattrValid,
};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, ZeroCopyReader, ZeroCopyWriter,
};

fn enfile() -> io::Error {
    io::Error::from_raw_os_error(libc::ENFILE)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Host descriptors the shares of one VM may hold for its guest.
#[derive(Debug)]
pub struct FdBudget {
    used: AtomicUsize,
    max: usize,
}

impl FdBudget {
    /// A budget of `max` descriptors.
    pub fn new(max: usize) -> Arc<FdBudget> {
        Arc::new(FdBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// What the VMM process can spare: its open-file limit less
    /// `reserve` for everything else it holds (devices, sockets, logs).
    pub fn for_this_process(reserve: usize) -> Arc<FdBudget> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        let soft = if ok { lim.rlim_cur } else { 1024 };
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        FdBudget::new(soft.saturating_sub(reserve).max(64))
    }

    /// Descriptors taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u < self.max).then_some(u + 1)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// `F`, holding at most its share of an [`FdBudget`].
pub struct Bounded<F> {
    inner: F,
    budget: Arc<FdBudget>,
    /// Lookup count of each inode the guest holds.
    inodes: Mutex<HashMap<u64, u64>>,
    /// Open handles.
    handles: Mutex<HashSet<u64>>,
}

impl<F: FileSystem<Inode = u64, Handle = u64>> Bounded<F> {
    /// Wrap `inner`, counting against `budget`.
    pub fn new(inner: F, budget: Arc<FdBudget>) -> Self {
        Bounded {
            inner,
            budget,
            inodes: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashSet::new()),
        }
    }

    /// Only regular files and directories are opened for the guest. Its
    /// kernel serves FIFOs, sockets and device nodes itself (special
    /// inodes, never opened through FUSE), so an OPEN of one comes from a
    /// hostile guest: to block the device thread on a FIFO with no writer,
    /// or to reach a host device through a node in the share.
    fn openable(&self, ctx: &Context, inode: u64) -> io::Result<()> {
        let (st, _) = self.inner.getattr(ctx, inode, None)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG | libc::S_IFDIR => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::ENXIO)),
        }
    }

    /// Count one more lookup of `inode` (0: a negative entry, no inode);
    /// `false` when it is new and the budget is spent.
    fn hold(&self, inode: u64) -> bool {
        if inode == 0 {
            return true;
        }
        let mut inodes = lock(&self.inodes);
        if let Some(n) = inodes.get_mut(&inode) {
            *n = n.saturating_add(1);
            return true;
        }
        if !self.budget.take() {
            return false;
        }
        inodes.insert(inode, 1);
        true
    }

    /// Count `count` fewer lookups of `inode`.
    fn drop_lookups(&self, inode: u64, count: u64) {
        let mut inodes = lock(&self.inodes);
        if let Some(n) = inodes.get_mut(&inode) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                inodes.remove(&inode);
                self.budget.give(1);
            }
        }
    }

    /// An entry the inner file system just looked up: counted, or given
    /// back to it and refused.
    fn entry(&self, ctx: &Context, entry: Entry) -> io::Result<Entry> {
        if self.hold(entry.inode) {
            Ok(entry)
        } else {
            self.inner.forget(ctx, entry.inode, 1);
            Err(enfile())
        }
    }

    /// A handle the inner file system just opened: counted, or released
    /// and refused.
    fn handle(&self, handle: Option<u64>, release: impl FnOnce(u64)) -> io::Result<Option<u64>> {
        let Some(h) = handle else {
            return Ok(None);
        };
        if self.budget.take() {
            lock(&self.handles).insert(h);
            Ok(Some(h))
        } else {
            release(h);
            Err(enfile())
        }
    }

    fn closed(&self, handle: u64) {
        if lock(&self.handles).remove(&handle) {
            self.budget.give(1);
        }
    }
}

impl<F: FileSystem<Inode = u64, Handle = u64>> FileSystem for Bounded<F> {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        self.inner.init(capable)
    }

    fn destroy(&self) {
        self.inner.destroy();
        let inodes = std::mem::take(&mut *lock(&self.inodes)).len();
        let handles = std::mem::take(&mut *lock(&self.handles)).len();
        self.budget.give(inodes + handles);
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let e = self.inner.lookup(ctx, parent, name)?;
        self.entry(ctx, e)
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        self.drop_lookups(inode, count);
        self.inner.forget(ctx, inode, count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        for &(inode, count) in &requests {
            self.drop_lookups(inode, count);
        }
        self.inner.batch_forget(ctx, requests)
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.getattr(ctx, inode, handle)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.setattr(ctx, inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, inode)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let e = self.inner.symlink(ctx, linkname, parent, name)?;
        self.entry(ctx, e)
    }

    fn mknod(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        // No device nodes: as on a `nodev` mount, and as an unprivileged
        // VMM could not make them anyway.
        if matches!(mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let e = self.inner.mknod(ctx, inode, name, mode, rdev, umask)?;
        self.entry(ctx, e)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let e = self.inner.mkdir(ctx, parent, name, mode, umask)?;
        self.entry(ctx, e)
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.unlink(ctx, parent, name)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.rmdir(ctx, parent, name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .rename(ctx, olddir, oldname, newdir, newname, flags)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let e = self.inner.link(ctx, inode, newparent, newname)?;
        self.entry(ctx, e)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        self.openable(ctx, inode)?;
        let (h, opts, passthrough) = self.inner.open(ctx, inode, flags, fuse_flags)?;
        let h = self.handle(h, |h| {
            let _ = self.inner.release(ctx, inode, flags, h, false, false, None);
        })?;
        Ok((h, opts, passthrough))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let flags = args.flags;
        let (e, h, opts, passthrough) = self.inner.create(ctx, parent, name, args)?;
        let h = match self.handle(h, |h| {
            let _ = self
                .inner
                .release(ctx, e.inode, flags, h, false, false, None);
        }) {
            Ok(h) => h,
            Err(err) => {
                self.inner.forget(ctx, e.inode, 1);
                return Err(err);
            }
        };
        if !self.hold(e.inode) {
            if let Some(h) = h {
                let _ = self
                    .inner
                    .release(ctx, e.inode, flags, h, false, false, None);
                self.closed(h);
            }
            self.inner.forget(ctx, e.inode, 1);
            return Err(enfile());
        }
        Ok((e, h, opts, passthrough))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        self.inner
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.inner.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        self.inner.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.inner
            .fallocate(ctx, inode, handle, mode, offset, length)
    }

    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.closed(handle);
        self.inner
            .release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, inode)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.inner.setxattr(ctx, inode, name, value, flags)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.inner.removexattr(ctx, inode, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let (h, opts) = self.inner.opendir(ctx, inode, flags)?;
        let h = self.handle(h, |h| {
            let _ = self.inner.releasedir(ctx, inode, flags, h);
        })?;
        Ok((h, opts))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
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
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        // Each entry comes looked up; one the budget cannot take is handed
        // back (answering 0, "no room", makes the passthrough forget it and
        // stop), and the guest reads the rest with a later request.
        let mut added = 0usize;
        let mut refused = false;
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, &mut |d, e| {
                let ino = e.inode;
                if !self.hold(ino) {
                    refused = true;
                    return Ok(0);
                }
                let r = add_entry(d, e);
                match r {
                    Ok(0) => self.drop_lookups(ino, 1),
                    Ok(_) => added += 1,
                    Err(_) => {}
                }
                r
            })?;
        if refused && added == 0 {
            return Err(enfile());
        }
        Ok(())
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        self.closed(handle);
        self.inner.releasedir(ctx, inode, flags, handle)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        self.inner.access(ctx, inode, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
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
    use fuse_backend_rs::passthrough::PassthroughFs;

    fn cstr(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    /// This process's descriptors on files beneath `dir` (other tests
    /// running alongside open and close their own).
    fn open_fds(dir: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    /// A guest that looks up every file of a large tree (`find /`) and
    /// opens files without closing them: the VMM holds at most the budget,
    /// ENFILE beyond; forgetting and releasing give it back.
    #[test]
    fn test_bounded_caps_inodes_and_handles_at_the_budget() {
        let dir = std::env::temp_dir().join(format!("peapod-bounded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..600 {
            std::fs::write(dir.join(format!("f{i}")), b"x").unwrap();
        }
        let fs: PassthroughFs = PassthroughFs::new(super::super::device::passthrough_config(
            dir.to_str().unwrap().to_owned(),
        ))
        .unwrap();
        fs.import().unwrap();
        let budget = FdBudget::new(200);
        let b = Bounded::new(fs, budget.clone());
        let ctx = Context::default();
        let before = open_fds(&dir);
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..600 {
            match b.lookup(&ctx, 1, &cstr(&format!("f{i}"))) {
                Ok(e) => held.push(e.inode),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENFILE));
                    refused += 1;
                }
            }
        }
        assert_eq!((held.len(), refused), (200, 400));
        let opened = open_fds(&dir) - before;
        assert!(opened <= 200, "{opened} fds");
        // A second lookup of a held inode is no new descriptor.
        assert!(b.lookup(&ctx, 1, &cstr("f0")).is_ok());
        b.forget(&ctx, held[0], 2);
        b.batch_forget(&ctx, held[1..10].iter().map(|&i| (i, 1)).collect());
        assert_eq!(budget.used(), 190);
        // Open handles count too.
        let mut handles = Vec::new();
        for &ino in &held[10..20] {
            let (h, ..) = b.open(&ctx, ino, libc::O_RDONLY as u32, 0).unwrap();
            handles.push((ino, h.unwrap()));
        }
        let err = b
            .open(&ctx, held[20], libc::O_RDONLY as u32, 0)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENFILE));
        for (ino, h) in handles {
            b.release(&ctx, ino, 0, h, false, false, None).unwrap();
        }
        assert_eq!(budget.used(), 190);
        // A release of a handle never opened gives nothing back.
        let _ = b.release(&ctx, held[20], 0, 9999, false, false, None);
        assert_eq!(budget.used(), 190);
        assert!(b.lookup(&ctx, 1, &cstr("f599")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A guest that sends OPEN for a FIFO it made (which would block the
    /// device thread until a writer came) or makes a device node gets an
    /// error at once.
    #[test]
    fn test_bounded_opens_no_fifo_and_makes_no_device_node() {
        let dir = std::env::temp_dir().join(format!("peapod-bounded-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        let fs: PassthroughFs = PassthroughFs::new(super::super::device::passthrough_config(
            dir.to_str().unwrap().to_owned(),
        ))
        .unwrap();
        fs.import().unwrap();
        let b = Bounded::new(fs, FdBudget::new(100));
        let ctx = Context::default();
        let fifo = b
            .mknod(&ctx, 1, &cstr("fifo"), libc::S_IFIFO | 0o600, 0, 0)
            .unwrap();
        let err = b
            .open(&ctx, fifo.inode, libc::O_RDONLY as u32, 0)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENXIO));
        let dev = libc::makedev(1, 3) as u32;
        for kind in [libc::S_IFCHR, libc::S_IFBLK] {
            let err = b
                .mknod(&ctx, 1, &cstr("null"), kind | 0o666, dev, 0)
                .unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        }
        assert!(!dir.join("null").exists());
        let file = b.lookup(&ctx, 1, &cstr("file")).unwrap();
        assert!(b.open(&ctx, file.inode, libc::O_RDONLY as u32, 0).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
