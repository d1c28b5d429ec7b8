//! virtio-fs: FUSE requests a hostile guest sends, through the device's
//! queue into the FUSE server over the bounded passthrough, read-write or
//! read-only, on a temporary tree rebuilt for every input. Nothing may
//! panic; nothing outside the shared tree may change (a canary beside it,
//! reachable through symlinks inside it), and nothing in the read-only
//! share may change at all.
#![no_main]

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fuse_backend_rs::abi::fuse_abi::InHeader;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use peapod::vmm::devices::virtio::fs::bounded::FdBudget;
use peapod::vmm::devices::virtio::fs::device::{passthrough_backend, process_queue};
use peapod::vmm::devices::virtio::LogLimit;
use peapod::vmm::vstate::memory::{create_guest_memory, GuestMem};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{ByteValued, Bytes, GuestAddress};

const QUEUE: u64 = 0x1000;
const QUEUE_SIZE: u16 = 256;
const REQS: u64 = 0x2_0000;
const REPLIES: u64 = 0x8_0000;
const SLOT: u64 = 0x2000;
const MAX_REQUESTS: usize = 24;

#[derive(Arbitrary, Debug)]
struct Request {
    opcode: u8,
    nodeid: u8,
    unique: u8,
    body: Vec<u8>,
    /// Added to the header's length: a guest that lies about it.
    len_delta: i8,
    /// Where the readable part is cut into two descriptors.
    split: u16,
    reply_len: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    read_only: bool,
    requests: Vec<Request>,
}

struct Tree {
    base: PathBuf,
    ro_before: Vec<String>,
    mem: GuestMem,
}

thread_local! {
    static TREE: RefCell<Option<Tree>> = const { RefCell::new(None) };
}

/// base/{outside/canary, rw/{hello, sub/x, esc -> ../outside, root -> /},
/// ro/{a, d/b, esc -> ../outside}}
fn build(base: &Path, fresh_rw: bool) {
    let rw = base.join("rw");
    if fresh_rw {
        let _ = make_writable(&rw);
        let _ = std::fs::remove_dir_all(&rw);
    }
    if !rw.exists() {
        std::fs::create_dir_all(rw.join("sub")).unwrap();
        std::fs::write(rw.join("hello"), b"hello").unwrap();
        std::fs::write(rw.join("sub/x"), b"x").unwrap();
        std::os::unix::fs::symlink("../outside", rw.join("esc")).unwrap();
        std::os::unix::fs::symlink("/", rw.join("root")).unwrap();
    }
    let ro = base.join("ro");
    if !ro.exists() {
        std::fs::create_dir_all(ro.join("d")).unwrap();
        std::fs::write(ro.join("a"), b"a").unwrap();
        std::fs::write(ro.join("d/b"), b"b").unwrap();
        std::os::unix::fs::symlink("../outside", ro.join("esc")).unwrap();
    }
    let outside = base.join("outside");
    if !outside.exists() {
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("canary"), b"canary").unwrap();
    }
}

/// Directories the guest made unreadable, made removable again.
fn make_writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for e in std::fs::read_dir(dir)? {
            let _ = make_writable(&e?.path());
        }
    }
    Ok(())
}

/// Every entry beneath `dir` with its type, size, mode and times.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            out.push(format!("{}: unreadable", d.display()));
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.push(format!(
                "{} {:o} {} {} {}",
                p.display(),
                m.mode(),
                m.len(),
                m.mtime_nsec(),
                m.ctime_nsec()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn check_outside(base: &Path) {
    let mut top: Vec<String> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["outside", "ro", "rw"],
        "something appeared beside the shares"
    );
    let outside: Vec<_> = std::fs::read_dir(base.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        ["canary"],
        "the guest changed a directory outside its share"
    );
    assert_eq!(
        std::fs::read(base.join("outside/canary")).unwrap(),
        b"canary",
        "the guest changed a file outside its share"
    );
}

fn rd(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
}

fuzz_target!(|input: Input| {
    TREE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let tree = cell.get_or_insert_with(|| {
            let base = std::env::temp_dir().join(format!("peapod-fuzz-fs-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            build(&base, true);
            Tree {
                ro_before: snapshot(&base.join("ro")),
                base,
                mem: create_guest_memory(1 << 20).unwrap(),
            }
        });
        build(&tree.base, true);
        let share = tree.base.join(if input.read_only { "ro" } else { "rw" });
        let backend = passthrough_backend(&share, input.read_only, FdBudget::new(64)).unwrap();
        let mem = &tree.mem;
        let q = MockSplitQueue::create(mem, GuestAddress(QUEUE), QUEUE_SIZE);
        let mut next_desc: u16 = 0;
        for (i, r) in input.requests.iter().take(MAX_REQUESTS).enumerate() {
            let at = REQS + i as u64 * SLOT;
            let body = &r.body[..r.body.len().min(SLOT as usize - 64)];
            let len = std::mem::size_of::<InHeader>() + body.len();
            let hdr = InHeader {
                len: (len as i64 + i64::from(r.len_delta)).max(0) as u32,
                opcode: u32::from(r.opcode),
                unique: u64::from(r.unique),
                nodeid: u64::from(r.nodeid),
                ..Default::default()
            };
            mem.write_slice(hdr.as_slice(), GuestAddress(at)).unwrap();
            mem.write_slice(
                body,
                GuestAddress(at + std::mem::size_of::<InHeader>() as u64),
            )
            .unwrap();
            let reply = REPLIES + i as u64 * SLOT;
            let reply_len = u32::from(r.reply_len).min(SLOT as u32);
            let split = u32::from(r.split);
            let head = next_desc;
            let mut descs = Vec::new();
            if split > 0 && (split as usize) < len {
                descs.push(rd(at, split, VRING_DESC_F_NEXT, head + 1));
                descs.push(rd(
                    at + u64::from(split),
                    len as u32 - split,
                    VRING_DESC_F_NEXT,
                    head + 2,
                ));
            } else {
                descs.push(rd(at, len as u32, VRING_DESC_F_NEXT, head + 1));
            }
            descs.push(rd(reply, reply_len, VRING_DESC_F_WRITE, 0));
            next_desc += descs.len() as u16;
            q.add_desc_chains(&descs, head).unwrap();
        }
        let mut queue: Queue = q.create_queue().unwrap();
        process_queue(
            &mut queue,
            mem,
            backend.as_ref(),
            &mut LogLimit::new("virtio-fs"),
        );
        drop(backend);
        check_outside(&tree.base);
        assert_eq!(
            snapshot(&tree.base.join("ro")),
            tree.ro_before,
            "the read-only share changed"
        );
    });
});
