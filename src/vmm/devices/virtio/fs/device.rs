//! The virtio-fs device: config space, the [`VirtioDevice`] face, and the
//! queue handler (a plain function over guest memory: chain -> FUSE
//! request -> backend -> reply).

use crate::vmm::devices::virtio::LogLimit;
use std::path::Path;
use std::sync::Arc;

use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use virtio_queue::{DescriptorChain, Queue, QueueT};

use super::bounded::{Bounded, FdBudget};
use super::read_only::ReadOnlyFs;
use super::FsError;
use crate::vmm::devices::virtio::{
    device_type, ActivateError, Interrupt, VirtioDevice, VIRTIO_MMIO_INT_VRING,
};
use crate::vmm::vstate::memory::GuestMem;

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The high-priority queue (FORGET, INTERRUPT).
pub const HIPRIO_QUEUE: usize = 0;
/// The one request queue.
pub const REQUEST_QUEUE: usize = 1;
/// Bytes of the tag in config space.
pub const TAG_LEN: usize = 36;
/// Bytes of config space: the tag and `num_request_queues` (le32).
pub const CONFIG_LEN: usize = TAG_LEN + 4;

/// The host side of the device: a FUSE server answering one request.
/// Production: [`Server`] over a passthrough; tests: anything.
pub trait FsBackend: Send {
    /// Read one request from `r`, write the reply to `w`; the number of
    /// reply bytes written.
    fn handle(&self, r: Reader<'_>, w: Writer<'_>) -> fuse_backend_rs::Result<usize>;
}

impl<F: FileSystem + Send + Sync> FsBackend for Server<F> {
    fn handle(&self, r: Reader<'_>, w: Writer<'_>) -> fuse_backend_rs::Result<usize> {
        self.handle_message(r, w, None, None)
    }
}

/// The passthrough configuration that works as an ordinary user: no
/// xattrs (which also keeps SUID-clearing writes cheap), no `killpriv_v2`,
/// no DAX, no file handles (`open_by_handle_at` needs
/// `CAP_DAC_READ_SEARCH`), no writeback.
pub(super) fn passthrough_config(root: String) -> Config {
    Config {
        root_dir: root,
        xattr: false,
        killpriv_v2: false,
        dax_file_size: None,
        inode_file_handles: false,
        writeback: false,
        do_import: true,
        cache_policy: CachePolicy::Auto,
        ..Default::default()
    }
}

/// A FUSE server sharing `path`, read-write or read-only, holding host
/// descriptors for the guest within `budget` (shared by a VM's shares).
pub fn passthrough_backend(
    path: &Path,
    read_only: bool,
    budget: Arc<FdBudget>,
) -> Result<Box<dyn FsBackend>, FsError> {
    let root = path
        .canonicalize()
        .map_err(|e| FsError::ResolveShare(path.to_path_buf(), e))?;
    if !root.is_dir() {
        return Err(FsError::NotADirectory(root));
    }
    let root_str = root
        .to_str()
        .ok_or_else(|| FsError::NonUtf8Path(root.clone()))?
        .to_string();
    let fs: PassthroughFs = PassthroughFs::new(passthrough_config(root_str))
        .map_err(|e| FsError::OpenShare(root.clone(), e))?;
    // SAFETY: umask(2) only swaps the process umask; it cannot fail.
    let old_umask = unsafe { libc::umask(0o022) };
    let imported = fs.import();
    // `import` clears the umask for the whole process; give it back.
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    imported.map_err(|e| FsError::OpenShare(root, e))?;
    Ok(if read_only {
        Box::new(Server::new(Bounded::new(ReadOnlyFs::new(fs), budget)))
    } else {
        Box::new(Server::new(Bounded::new(fs, budget)))
    })
}

/// Why a chain got no reply.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// The chain does not describe guest memory (unmapped, overflowing).
    #[error("bad descriptor chain: {0}")]
    Chain(fuse_backend_rs::transport::Error),
    /// The server could not decode or answer the request.
    #[error("{0}")]
    Server(fuse_backend_rs::Error),
}

/// Serve one chain; the number of reply bytes.
fn serve(
    chain: DescriptorChain<&GuestMem>,
    mem: &GuestMem,
    backend: &dyn FsBackend,
) -> Result<u32, ServeError> {
    let reader = Reader::from_descriptor_chain(mem, chain.clone()).map_err(ServeError::Chain)?;
    let writer = VirtioFsWriter::new(mem, chain).map_err(ServeError::Chain)?;
    let room = writer.available_bytes();
    let written = backend
        .handle(reader, Writer::from(writer))
        .map_err(ServeError::Server)?;
    // Never report more than the guest gave us, whatever the server says.
    Ok(written.min(room).min(u32::MAX as usize) as u32)
}

/// Serve every pending request of `queue`. Returns whether the guest needs
/// an interrupt. A chain the server cannot parse or answer is logged
/// (rate-limited) and returned with 0 bytes used.
pub fn process_queue(
    queue: &mut Queue,
    mem: &GuestMem,
    backend: &dyn FsBackend,
    limit: &mut LogLimit,
) -> bool {
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let len = match serve(chain, mem, backend) {
            Ok(n) => n,
            Err(e) => {
                limit.warn(format_args!("request {head} failed: {e}"));
                0
            }
        };
        if queue.add_used(mem, head, len).is_err() {
            limit.warn(format_args!("cannot add used entry {head}"));
        }
        used_any = true;
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

struct Active {
    mem: GuestMem,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
}

/// The file system device.
pub struct Fs {
    config: [u8; CONFIG_LEN],
    backend: Box<dyn FsBackend>,
    active: Option<Active>,
    limit: LogLimit,
}

impl Fs {
    /// A device announcing `tag` (what the guest passes to `mount -t
    /// virtiofs`), serving requests with `backend`.
    pub fn new(tag: &str, backend: Box<dyn FsBackend>) -> Result<Fs, FsError> {
        let bytes = tag.as_bytes();
        if bytes.is_empty() || bytes.len() > TAG_LEN || bytes.contains(&0) {
            return Err(FsError::InvalidTag(tag.to_string()));
        }
        let mut config = [0u8; CONFIG_LEN];
        config[..bytes.len()].copy_from_slice(bytes);
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes());
        Ok(Fs {
            config,
            backend,
            active: None,
            limit: LogLimit::new("virtio-fs"),
        })
    }

    /// Whether the driver started the device.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Handle a notification on any queue: serve both.
    pub fn process(&mut self) {
        let Fs {
            backend,
            active,
            limit,
            ..
        } = self;
        if let Some(a) = active.as_mut() {
            let mut notify = false;
            for q in a.queues.iter_mut() {
                notify |= process_queue(q, &a.mem, backend.as_ref(), limit);
            }
            if notify {
                a.interrupt.signal(VIRTIO_MMIO_INT_VRING);
            }
        }
    }
}

impl crate::vmm::devices::virtio::ServeQueues for Fs {
    fn serve(&mut self) {
        self.process();
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        device_type::FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::vmm::devices::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMem,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        if queues.len() != 2 {
            return Err(ActivateError::QueueCount {
                expected: 2,
                got: queues.len(),
            });
        }
        self.active = Some(Active {
            mem,
            queues,
            interrupt,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::create_guest_memory;
    use fuse_backend_rs::abi::fuse_abi::{
        EntryOut, InHeader, InitIn, InitOut, Opcode, OpenIn, OutHeader, KERNEL_VERSION, ROOT_ID,
    };
    use std::os::unix::fs::MetadataExt;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{ByteValued, Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
    use vmm_sys_util::tempdir::TempDir;

    const REQ: u64 = 0x4_0000;
    const REPLY: u64 = 0x6_0000;
    const REPLY_LEN: u32 = 0x1000;

    fn rd(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
    }

    fn used(mem: &GuestMem, q: &MockSplitQueue<GuestMem>, i: u64) -> (u32, u32) {
        let base = q.used_addr().0 + 4 + i * 8;
        (
            mem.read_obj(GuestAddress(base)).unwrap(),
            mem.read_obj(GuestAddress(base + 4)).unwrap(),
        )
    }

    /// Write a FUSE request (header + body) at `REQ + slot * 0x1000`; its length.
    fn request(
        mem: &GuestMem,
        slot: u64,
        opcode: Opcode,
        nodeid: u64,
        unique: u64,
        body: &[u8],
    ) -> u32 {
        let len = (std::mem::size_of::<InHeader>() + body.len()) as u32;
        let hdr = InHeader {
            len,
            opcode: opcode as u32,
            unique,
            nodeid,
            ..Default::default()
        };
        let at = REQ + slot * 0x1000;
        mem.write_slice(hdr.as_slice(), GuestAddress(at)).unwrap();
        mem.write_slice(
            body,
            GuestAddress(at + std::mem::size_of::<InHeader>() as u64),
        )
        .unwrap();
        len
    }

    /// Queue request `slot` (readable) + a reply buffer (writable) at table index `2 * slot`.
    fn add_request(q: &MockSplitQueue<GuestMem>, slot: u64, len: u32) {
        let i = (2 * slot) as u16;
        q.add_desc_chains(
            &[
                rd(REQ + slot * 0x1000, len, VRING_DESC_F_NEXT, i + 1),
                rd(REPLY + slot * 0x1000, REPLY_LEN, VRING_DESC_F_WRITE, 0),
            ],
            i,
        )
        .unwrap();
    }

    fn reply<T: ByteValued>(mem: &GuestMem, slot: u64) -> (OutHeader, T) {
        let at = REPLY + slot * 0x1000;
        let hdr: OutHeader = mem.read_obj(GuestAddress(at)).unwrap();
        let body: T = mem
            .read_obj(GuestAddress(at + std::mem::size_of::<OutHeader>() as u64))
            .unwrap();
        (hdr, body)
    }

    fn init_body() -> Vec<u8> {
        InitIn {
            major: KERNEL_VERSION,
            minor: 31,
            max_readahead: 0x1_0000,
            flags: 0,
        }
        .as_slice()
        .to_vec()
    }

    fn name(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// parent/{outside, share/{hello, esc -> /etc}}
    fn share() -> (TempDir, std::path::PathBuf) {
        let parent = TempDir::new_with_prefix("/tmp/peapod-fs-").unwrap();
        let share = parent.as_path().join("share");
        std::fs::create_dir(&share).unwrap();
        std::fs::write(share.join("hello"), b"hi").unwrap();
        std::fs::write(parent.as_path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("/etc", share.join("esc")).unwrap();
        (parent, share)
    }

    /// Run `reqs` (opcode, nodeid, body) through a fresh queue; the used
    /// lengths, and the queue for reading replies.
    fn run(mem: &GuestMem, backend: &dyn FsBackend, reqs: &[(Opcode, u64, Vec<u8>)]) -> Vec<u32> {
        let q = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
        for (slot, (op, node, body)) in reqs.iter().enumerate() {
            let len = request(mem, slot as u64, *op, *node, 100 + slot as u64, body);
            add_request(&q, slot as u64, len);
        }
        let mut queue: Queue = q.create_queue().unwrap();
        assert!(process_queue(
            &mut queue,
            mem,
            backend,
            &mut LogLimit::new("virtio-fs")
        ));
        (0..reqs.len() as u64)
            .map(|i| {
                let (id, len) = used(mem, &q, i);
                assert_eq!(id, 2 * i as u32, "chains answered in order");
                len
            })
            .collect()
    }

    #[test]
    fn test_fs_config_space_has_tag_and_one_request_queue() {
        let (_t, dir) = share();
        let fs = Fs::new(
            "pod-volumes",
            passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap(),
        )
        .unwrap();
        assert_eq!(fs.device_type(), 26);
        assert_eq!(fs.queue_max_sizes().len(), 2);
        let mut cfg = [0xffu8; CONFIG_LEN];
        fs.read_config(0, &mut cfg);
        assert_eq!(&cfg[..11], b"pod-volumes");
        assert!(cfg[11..TAG_LEN].iter().all(|b| *b == 0), "NUL padded");
        assert_eq!(u32::from_le_bytes(cfg[TAG_LEN..].try_into().unwrap()), 1);
        let mut nq = [0u8; 4];
        fs.read_config(TAG_LEN as u64, &mut nq);
        assert_eq!(u32::from_le_bytes(nq), 1);
        let mut past = [0xffu8; 8];
        fs.read_config(CONFIG_LEN as u64 - 2, &mut past);
        assert_eq!(past, [0, 0, 0, 0, 0, 0, 0, 0], "past the end reads zeros");
        fs.read_config(u64::MAX, &mut past);
        assert_eq!(past, [0; 8]);
    }

    #[test]
    fn test_fs_new_rejects_bad_tags() {
        let (_t, dir) = share();
        for tag in ["", "a\0b", &"x".repeat(37)] {
            let b = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
            assert!(
                matches!(Fs::new(tag, b), Err(FsError::InvalidTag(_))),
                "{tag:?}"
            );
        }
        let b = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        assert!(Fs::new(&"x".repeat(36), b).is_ok());
        assert!(matches!(
            passthrough_backend(&dir.join("hello"), false, FdBudget::new(4096)),
            Err(FsError::NotADirectory(_))
        ));
        assert!(matches!(
            passthrough_backend(&dir.join("missing"), false, FdBudget::new(4096)),
            Err(FsError::ResolveShare(..))
        ));
    }

    #[test]
    fn test_fs_activate_needs_two_queues_and_reset_stops() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let mut fs = Fs::new(
            "t",
            passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap(),
        )
        .unwrap();
        let irq = || Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let one = vec![q.create_queue().unwrap()];
        assert!(matches!(
            fs.activate(mem.clone(), one, irq()),
            Err(ActivateError::QueueCount {
                expected: 2,
                got: 1
            })
        ));
        assert!(!fs.is_active());
        let q2 = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let two = vec![q.create_queue().unwrap(), q2.create_queue().unwrap()];
        fs.activate(mem.clone(), two, irq()).unwrap();
        assert!(fs.is_active());
        fs.reset();
        assert!(!fs.is_active());
    }

    #[test]
    fn test_fs_process_answers_init_and_raises_interrupt() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let mut fs = Fs::new(
            "t",
            passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap(),
        )
        .unwrap();
        let irqfd = EventFd::new(EFD_NONBLOCK).unwrap();
        let hq = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let rq = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let len = request(&mem, 0, Opcode::Init, 0, 0x1234_5678_9abc, &init_body());
        add_request(&rq, 0, len);
        let queues = vec![hq.create_queue().unwrap(), rq.create_queue().unwrap()];
        fs.activate(
            mem.clone(),
            queues,
            Arc::new(Interrupt::new(irqfd.try_clone().unwrap())),
        )
        .unwrap();
        fs.process();
        let (hdr, out): (OutHeader, InitOut) = reply(&mem, 0);
        assert_eq!(hdr.unique, 0x1234_5678_9abc);
        assert_eq!(hdr.error, 0);
        assert_eq!(out.major, KERNEL_VERSION);
        assert_eq!(used(&mem, &rq, 0), (0, hdr.len));
        assert!(irqfd.read().unwrap() > 0, "interrupt raised");
    }

    #[test]
    fn test_fs_init_reply_has_unique_and_major_version() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        let lens = run(&mem, backend.as_ref(), &[(Opcode::Init, 0, init_body())]);
        let (hdr, out): (OutHeader, InitOut) = reply(&mem, 0);
        assert_eq!(hdr.unique, 100);
        assert_eq!(hdr.error, 0);
        assert_eq!(out.major, 7);
        assert!(out.minor >= 27, "minor {}", out.minor);
        assert_eq!(lens[0], hdr.len, "used length is the reply length");
        assert!(hdr.len as usize >= std::mem::size_of::<OutHeader>());
    }

    #[test]
    fn test_fs_lookup_finds_file_in_share() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        let lens = run(
            &mem,
            backend.as_ref(),
            &[
                (Opcode::Init, 0, init_body()),
                (Opcode::Lookup, ROOT_ID, name("hello")),
                (Opcode::Lookup, ROOT_ID, name("missing")),
                (Opcode::Lookup, ROOT_ID, name("a/b")),
            ],
        );
        let (hdr, e): (OutHeader, EntryOut) = reply(&mem, 1);
        assert_eq!((hdr.unique, hdr.error), (101, 0));
        assert_eq!(lens[1], hdr.len);
        assert_ne!(e.nodeid, ROOT_ID);
        let meta = std::fs::metadata(dir.join("hello")).unwrap();
        assert_eq!(e.attr.ino, meta.ino());
        assert_eq!(e.attr.size, 2);
        let (hdr, _): (OutHeader, u64) = reply(&mem, 2);
        assert_eq!(hdr.error, -libc::ENOENT);
        let (hdr, _): (OutHeader, u64) = reply(&mem, 3);
        assert_eq!(hdr.error, -libc::EINVAL, "names with '/' are refused");
    }

    #[test]
    fn test_fs_lookup_dotdot_on_root_stays_in_share() {
        let (t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        run(
            &mem,
            backend.as_ref(),
            &[
                (Opcode::Init, 0, init_body()),
                (Opcode::Lookup, ROOT_ID, name("..")),
                (Opcode::Lookup, ROOT_ID, name("outside")),
            ],
        );
        let share_ino = std::fs::metadata(&dir).unwrap().ino();
        let parent_ino = std::fs::metadata(t.as_path()).unwrap().ino();
        let (hdr, e): (OutHeader, EntryOut) = reply(&mem, 1);
        // fuse-backend-rs answers with the root itself (an error would do too).
        assert_eq!(hdr.error, 0);
        assert_eq!(e.nodeid, ROOT_ID, "'..' of the root is the root");
        assert_eq!(e.attr.ino, share_ino);
        assert_ne!(e.attr.ino, parent_ino);
        let (hdr, _): (OutHeader, u64) = reply(&mem, 2);
        assert_eq!(
            hdr.error,
            -libc::ENOENT,
            "the parent's files are not visible"
        );
    }

    #[test]
    fn test_fs_absolute_symlink_is_not_followed_on_host() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        run(
            &mem,
            backend.as_ref(),
            &[
                (Opcode::Init, 0, init_body()),
                (Opcode::Lookup, ROOT_ID, name("esc")),
            ],
        );
        let (hdr, e): (OutHeader, EntryOut) = reply(&mem, 1);
        assert_eq!(hdr.error, 0);
        assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "the link itself");
        // OPEN on the link inode must not open the host's /etc.
        let open = OpenIn {
            flags: libc::O_RDONLY as u32,
            ..Default::default()
        };
        run(
            &mem,
            backend.as_ref(),
            &[(Opcode::Open, e.nodeid, open.as_slice().to_vec())],
        );
        let (hdr, _): (OutHeader, u64) = reply(&mem, 0);
        assert!(hdr.error < 0, "open of a symlink inode refused");
    }

    #[test]
    fn test_fs_read_only_share_refuses_changes() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, true, FdBudget::new(4096)).unwrap();
        let mut mkdir = vec![0u8; 8]; // MkdirIn { mode, umask }
        mkdir[..4].copy_from_slice(&0o755u32.to_le_bytes());
        mkdir.extend_from_slice(&name("newdir"));
        run(
            &mem,
            backend.as_ref(),
            &[
                (Opcode::Init, 0, init_body()),
                (Opcode::Mkdir, ROOT_ID, mkdir.clone()),
                (Opcode::Lookup, ROOT_ID, name("hello")),
            ],
        );
        let (hdr, _): (OutHeader, u64) = reply(&mem, 1);
        assert_eq!(hdr.error, -libc::EROFS);
        assert!(!dir.join("newdir").exists());
        let (hdr, e): (OutHeader, EntryOut) = reply(&mem, 2);
        assert_eq!(hdr.error, 0, "lookups still work");
        let wr = OpenIn {
            flags: libc::O_RDWR as u32,
            ..Default::default()
        };
        run(
            &mem,
            backend.as_ref(),
            &[(Opcode::Open, e.nodeid, wr.as_slice().to_vec())],
        );
        let (hdr, _): (OutHeader, u64) = reply(&mem, 0);
        assert_eq!(hdr.error, -libc::EROFS);

        // The same request on a read-write share succeeds.
        let rw = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        run(
            &mem,
            rw.as_ref(),
            &[
                (Opcode::Init, 0, init_body()),
                (Opcode::Mkdir, ROOT_ID, mkdir),
            ],
        );
        let (hdr, _): (OutHeader, EntryOut) = reply(&mem, 1);
        assert_eq!(hdr.error, 0);
        assert!(dir.join("newdir").is_dir());
    }

    #[test]
    fn test_fs_malformed_chains_get_zero_bytes() {
        let (_t, dir) = share();
        let mem = create_guest_memory(1 << 20).unwrap();
        let backend = passthrough_backend(&dir, false, FdBudget::new(4096)).unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        // 0: a request shorter than the FUSE header.
        mem.write_slice(&[1, 2, 3, 4], GuestAddress(REQ)).unwrap();
        q.add_desc_chains(
            &[
                rd(REQ, 4, VRING_DESC_F_NEXT, 1),
                rd(REPLY, REPLY_LEN, VRING_DESC_F_WRITE, 0),
            ],
            0,
        )
        .unwrap();
        // 1: a valid INIT but no writable reply buffer.
        let len = request(&mem, 1, Opcode::Init, 0, 7, &init_body());
        q.add_desc_chains(&[rd(REQ + 0x1000, len, 0, 0)], 2)
            .unwrap();
        // 2: a request outside guest memory.
        q.add_desc_chains(
            &[
                rd(0x4000_0000, 64, VRING_DESC_F_NEXT, 4),
                rd(REPLY, REPLY_LEN, VRING_DESC_F_WRITE, 0),
            ],
            3,
        )
        .unwrap();
        // 3: a reply buffer running off the end of guest memory.
        let len = request(&mem, 2, Opcode::Init, 0, 8, &init_body());
        q.add_desc_chains(
            &[
                rd(REQ + 0x2000, len, VRING_DESC_F_NEXT, 6),
                rd((1 << 20) - 8, u32::MAX, VRING_DESC_F_WRITE, 0),
            ],
            5,
        )
        .unwrap();
        // 4: a header that claims a huge length, body missing.
        let hdr = InHeader {
            len: u32::MAX,
            opcode: Opcode::Lookup as u32,
            unique: 9,
            nodeid: ROOT_ID,
            ..Default::default()
        };
        mem.write_slice(hdr.as_slice(), GuestAddress(REQ + 0x3000))
            .unwrap();
        q.add_desc_chains(
            &[
                rd(
                    REQ + 0x3000,
                    std::mem::size_of::<InHeader>() as u32,
                    VRING_DESC_F_NEXT,
                    8,
                ),
                rd(REPLY + 0x3000, REPLY_LEN, VRING_DESC_F_WRITE, 0),
            ],
            7,
        )
        .unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        process_queue(
            &mut queue,
            &mem,
            backend.as_ref(),
            &mut LogLimit::new("virtio-fs"),
        );
        assert_eq!(used(&mem, &q, 0), (0, 0), "too short");
        assert_eq!(used(&mem, &q, 1), (2, 0), "no reply buffer");
        assert_eq!(used(&mem, &q, 2), (3, 0), "unmapped request");
        assert_eq!(used(&mem, &q, 3), (5, 0), "reply buffer off the end");
        let (id, len) = used(&mem, &q, 4);
        assert_eq!(id, 7);
        // An error reply (ENOMEM) or nothing; never more than the header.
        assert!(len as usize <= std::mem::size_of::<OutHeader>(), "{len}");

        // The device goes on: a good request afterwards is answered.
        let lens = run(&mem, backend.as_ref(), &[(Opcode::Init, 0, init_body())]);
        assert!(lens[0] > 0);
    }
}
