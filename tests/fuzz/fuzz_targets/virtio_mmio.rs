//! The virtio devices as a hostile guest driver sees them: sequences of
//! MMIO register reads and writes (any offset, any width, status and
//! feature negotiation in any order, queues anywhere in guest memory),
//! guest memory written between them (descriptor tables, rings and
//! buffers of its choosing: loops, overlaps, out-of-range addresses) and
//! the device's queue handlers run when it notifies. One device per input:
//! virtio-rng, virtio-balloon (its free page reports drop pages of guest
//! memory), virtio-vsock (its real muxer, on a temporary directory),
//! virtio-net (its real passt stream backend, over a socket pair whose host
//! end sends fuzzer-chosen frames) or virtio-fs (the bounded passthrough on
//! a temporary tree, with a canary beside it). Nothing may panic, and the
//! canary may not change.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use peapod::vmm::devices::bus::BusDevice;
use peapod::vmm::devices::virtio::fs::bounded::FdBudget;
use peapod::vmm::devices::virtio::fs::device::{passthrough_backend, Fs};
use peapod::vmm::devices::virtio::mmio::MmioTransport;
use peapod::vmm::devices::virtio::net::backend::PasstStream;
use peapod::vmm::devices::virtio::net::Net;
use peapod::vmm::devices::virtio::balloon::Balloon;
use peapod::vmm::devices::virtio::rng::Rng;
use peapod::vmm::devices::virtio::vsock::device::{Vsock, GUEST_CID};
use peapod::vmm::devices::virtio::vsock::muxer::Muxer;
use peapod::vmm::devices::virtio::VirtioDevice;
use peapod::vmm::vstate::memory::{create_guest_memory, GuestMem};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM: u64 = 1 << 20;
const MAX_OPS: usize = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    /// A register write of 1, 2, 4 or 8 bytes.
    Write { offset: u16, width: u8, value: u64 },
    /// A register read.
    Read { offset: u16, width: u8 },
    /// What a well-behaved driver writes to bring the device up, with
    /// queues where the fuzzer puts them (sizes a power of two, rings
    /// aligned and in memory, as the transport checks before it activates
    /// the device; the rings' contents are the fuzzer's).
    Handshake {
        features: u32,
        queues: [(u8, u32, u32, u32); 3],
    },
    /// Guest memory written (descriptors, rings, buffers).
    Memory { at: u32, bytes: Vec<u8> },
    /// A 16-byte descriptor written at `table + 16 * index`.
    Descriptor {
        table: u32,
        index: u8,
        addr: u32,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// The device's queue handlers run (its ioeventfd fired).
    Process,
    /// The host side sends data (net: passt's stream).
    Host(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    device: u8,
    ops: Vec<Op>,
}

/// The device under test, its concrete handle for running its queues.
enum Dev {
    Rng(Arc<Mutex<Rng>>),
    Vsock(Arc<Mutex<Vsock<Muxer>>>),
    Net(Arc<Mutex<Net<PasstStream>>>, UnixStream),
    Fs(Arc<Mutex<Fs>>),
    Balloon(Arc<Mutex<Balloon>>),
}

impl Dev {
    fn process(&mut self) {
        match self {
            Dev::Rng(d) => d.lock().unwrap().process(),
            Dev::Vsock(d) => d.lock().unwrap().process(),
            Dev::Net(d, peer) => {
                d.lock().unwrap().process();
                // Drain what the guest sent, so the stream never stalls.
                let mut buf = [0u8; 65536];
                while matches!(peer.read(&mut buf), Ok(n) if n > 0) {}
            }
            Dev::Fs(d) => d.lock().unwrap().process(),
            Dev::Balloon(d) => d.lock().unwrap().process(),
        }
    }

    fn host(&mut self, data: &[u8]) {
        if let Dev::Net(_, peer) = self {
            let _ = peer.write(data);
        }
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peapod-fuzz-mmio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(t: &mut MmioTransport, offset: u64, v: u32) {
    t.write(offset, &v.to_le_bytes());
}

fn handshake(t: &mut MmioTransport, features: u32, queues: &[(u8, u32, u32, u32); 3]) {
    write(t, 0x070, 0);
    write(t, 0x070, 1);
    write(t, 0x070, 3);
    write(t, 0x024, 1);
    write(t, 0x020, 1); // VIRTIO_F_VERSION_1
    write(t, 0x024, 0);
    write(t, 0x020, features);
    write(t, 0x070, 0xb);
    let mem = MEM as u32;
    for (i, &(size, desc, avail, used)) in queues.iter().enumerate() {
        let (desc, avail, used) = ((desc % mem) & !15, (avail % mem) & !1, (used % mem) & !3);
        write(t, 0x030, i as u32);
        write(t, 0x038, 1 << (size % 9));
        write(t, 0x080, desc);
        write(t, 0x084, 0);
        write(t, 0x090, avail);
        write(t, 0x094, 0);
        write(t, 0x0a0, used);
        write(t, 0x0a4, 0);
        write(t, 0x044, 1);
    }
    write(t, 0x070, 0xf);
}

fn canary_intact(dir: &std::path::Path) {
    assert_eq!(
        std::fs::read(dir.join("canary")).unwrap(),
        b"canary",
        "the guest changed a file outside its share"
    );
}

fuzz_target!(|input: Input| {
    let mem: GuestMem = create_guest_memory(MEM).unwrap();
    let dir = scratch();
    std::fs::write(dir.join("canary"), b"canary").unwrap();
    let (mut dev, shared): (Dev, Arc<Mutex<dyn VirtioDevice>>) = match input.device % 5 {
        0 => {
            let d = Arc::new(Mutex::new(Rng::new()));
            (Dev::Rng(d.clone()), d)
        }
        1 => {
            let uds = dir.join("vsock.sock");
            let _ = std::fs::remove_file(&uds);
            let muxer = Muxer::new(&uds, GUEST_CID).unwrap();
            let d = Arc::new(Mutex::new(Vsock::new(GUEST_CID, muxer)));
            (Dev::Vsock(d.clone()), d)
        }
        2 => {
            let (ours, peer) = UnixStream::pair().unwrap();
            peer.set_nonblocking(true).unwrap();
            let backend = PasstStream::new(ours).unwrap();
            let d = Arc::new(Mutex::new(
                Net::new([2, 0, 0, 0, 0, 1], Some(65520), backend).unwrap(),
            ));
            (Dev::Net(d.clone(), peer), d)
        }
        4 => {
            let d = Arc::new(Mutex::new(Balloon::new()));
            (Dev::Balloon(d.clone()), d)
        }
        _ => {
            let share = dir.join("share");
            let _ = std::fs::remove_dir_all(&share);
            std::fs::create_dir_all(&share).unwrap();
            std::fs::write(share.join("hello"), b"hello").unwrap();
            std::os::unix::fs::symlink("../canary", share.join("esc")).unwrap();
            let backend = passthrough_backend(&share, false, FdBudget::new(64)).unwrap();
            let d = Arc::new(Mutex::new(Fs::new("fuzz", backend).unwrap()));
            (Dev::Fs(d.clone()), d)
        }
    };
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut t = MmioTransport::new(mem.clone(), shared, irq).unwrap();
    for op in input.ops.into_iter().take(MAX_OPS) {
        match op {
            Op::Write {
                offset,
                width,
                value,
            } => {
                let bytes = value.to_le_bytes();
                t.write(u64::from(offset % 0x200), &bytes[..1 << (width % 4)]);
            }
            Op::Read { offset, width } => {
                let mut buf = [0u8; 8];
                t.read(u64::from(offset % 0x200), &mut buf[..1 << (width % 4)]);
            }
            Op::Handshake { features, queues } => handshake(&mut t, features, &queues),
            Op::Memory { at, bytes } => {
                let _ = mem.write_slice(&bytes, GuestAddress(u64::from(at) % MEM));
            }
            Op::Descriptor {
                table,
                index,
                addr,
                len,
                flags,
                next,
            } => {
                let at = (u64::from(table) % MEM) + 16 * u64::from(index);
                let mut d = [0u8; 16];
                d[..8].copy_from_slice(&u64::from(addr).to_le_bytes());
                d[8..12].copy_from_slice(&len.to_le_bytes());
                d[12..14].copy_from_slice(&flags.to_le_bytes());
                d[14..16].copy_from_slice(&next.to_le_bytes());
                let _ = mem.write_slice(&d, GuestAddress(at));
            }
            Op::Process => dev.process(),
            Op::Host(data) => dev.host(&data),
        }
    }
    drop(t);
    drop(dev);
    canary_intact(&dir);
});
