//! The virtio-net device: the [`VirtioDevice`] face (features, config space)
//! and the rx/tx queue handlers (plain functions over guest memory, no fds).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use super::backend::NetBackend;
use super::{NetError, ETH_HLEN, HDR_LEN, MAX_FRAME, MIN_MTU};
use crate::vmm::devices::virtio::{
    device_type, ActivateError, Interrupt, LogLimit, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING,
};
use crate::vmm::vstate::memory::GuestMem;

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The guest-bound (receive) queue.
pub const RXQ: usize = 0;
/// The host-bound (transmit) queue.
pub const TXQ: usize = 1;
/// Size of `struct virtio_net_config` up to `mtu`.
pub const CONFIG_LEN: usize = 12;

/// Whether the pod's network backend is gone; shared with whoever watches
/// the pod (the monitor), readable without locking the device.
#[derive(Debug, Clone, Default)]
pub struct NetLinkState(Arc<AtomicBool>);

impl NetLinkState {
    /// The backend (passt) is gone: the guest has no network any more.
    pub fn is_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set_down(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Read the frame of one tx chain into `frame` (the virtio-net header, which
/// may span descriptors, is skipped). Every length is the chain's own and is
/// checked before memory is read.
pub fn read_tx_frame<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    frame: &mut Vec<u8>,
) -> Result<(), &'static str> {
    frame.clear();
    let mut total: u64 = 0;
    for desc in chain {
        if desc.is_write_only() {
            return Err("device-writable descriptor in a tx chain");
        }
        let len = u64::from(desc.len());
        if len == 0 {
            continue;
        }
        let hdr_left = (HDR_LEN as u64).saturating_sub(total);
        total += len;
        if total > (HDR_LEN + MAX_FRAME) as u64 {
            return Err("tx chain longer than a header and a 64 KiB frame");
        }
        let skip = hdr_left.min(len);
        let data = (len - skip) as usize;
        if data == 0 {
            continue;
        }
        let addr = desc
            .addr()
            .checked_add(skip)
            .ok_or("tx descriptor wraps the address space")?;
        let start = frame.len();
        frame.resize(start + data, 0);
        mem.read_slice(&mut frame[start..], addr)
            .map_err(|_| "tx descriptor outside guest memory")?;
    }
    if total < HDR_LEN as u64 {
        return Err("tx chain shorter than the virtio-net header");
    }
    if frame.len() < ETH_HLEN {
        return Err("tx frame shorter than an Ethernet header");
    }
    Ok(())
}

/// Why a frame was not written into an rx chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// The chain is unusable: returned to the guest with 0 bytes; the frame
    /// waits for the next chain.
    Malformed(&'static str),
    /// A well-formed chain of `capacity` bytes too small for the frame: the
    /// frame is dropped, the chain stays with the device for the next one.
    TooSmall {
        /// Writable bytes in the chain.
        capacity: u64,
    },
}

/// Write a zeroed virtio-net header (`num_buffers` = 1, as virtio 1.x wants
/// without mergeable buffers) and `frame` into an rx chain. Returns the
/// bytes written.
pub fn write_rx_frame<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    frame: &[u8],
    descs: &mut Vec<(GuestAddress, u32)>,
) -> Result<u32, RxError> {
    descs.clear();
    let mut capacity: u64 = 0;
    for desc in chain {
        if !desc.is_write_only() {
            return Err(RxError::Malformed(
                "device-readable descriptor in an rx chain",
            ));
        }
        if desc.len() > 0 {
            descs.push((desc.addr(), desc.len()));
            capacity += u64::from(desc.len());
        }
    }
    if capacity < HDR_LEN as u64 {
        return Err(RxError::Malformed(
            "rx chain shorter than the virtio-net header",
        ));
    }
    let need = HDR_LEN + frame.len();
    if capacity < need as u64 {
        return Err(RxError::TooSmall { capacity });
    }
    let mut hdr = [0u8; HDR_LEN];
    hdr[10..12].copy_from_slice(&1u16.to_le_bytes());
    let mut done = 0usize;
    for &(addr, len) in descs.iter() {
        if done == need {
            break;
        }
        let n = (len as usize).min(need - done);
        let mut off = 0usize;
        while off < n {
            let pos = done + off;
            let src = if pos < HDR_LEN {
                &hdr[pos..]
            } else {
                &frame[pos - HDR_LEN..]
            };
            let k = src.len().min(n - off);
            let at = addr
                .checked_add(off as u64)
                .ok_or(RxError::Malformed("rx descriptor wraps the address space"))?;
            mem.write_slice(&src[..k], at)
                .map_err(|_| RxError::Malformed("rx descriptor outside guest memory"))?;
            off += k;
        }
        done += n;
    }
    Ok(need as u32)
}

/// Take guest frames (while the backend accepts them) and hand them to the
/// backend. Malformed chains are dropped and returned with 0 bytes. Returns
/// whether the guest needs an interrupt.
pub fn process_tx<M: GuestMemory, B: NetBackend>(
    queue: &mut Queue,
    mem: &M,
    backend: &mut B,
    frame: &mut Vec<u8>,
    limit: &mut LogLimit,
) -> bool {
    let mut used_any = false;
    loop {
        if !backend.can_send() {
            backend.flush();
            if !backend.can_send() {
                break;
            }
        }
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        match read_tx_frame(chain, mem, frame) {
            Ok(()) => backend.send(frame),
            Err(why) => limit.warn(format_args!("tx: {why}; dropped")),
        }
        // The device writes nothing into tx buffers.
        if queue.add_used(mem, head, 0).is_err() {
            log::debug!("virtio-net: cannot add used tx entry");
        }
        used_any = true;
    }
    backend.flush();
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

/// Give the backend's frames to the guest while it has rx buffers. Returns
/// whether the guest needs an interrupt.
pub fn process_rx<M: GuestMemory, B: NetBackend>(
    queue: &mut Queue,
    mem: &M,
    backend: &mut B,
    descs: &mut Vec<(GuestAddress, u32)>,
    limit: &mut LogLimit,
) -> bool {
    let mut used_any = false;
    while let Some(frame) = backend.next_frame() {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            // No guest buffers: the frame waits, and the backend stops
            // reading until the guest posts some.
            break;
        };
        let head = chain.head_index();
        let len = frame.len();
        match write_rx_frame(chain, mem, frame, descs) {
            Ok(n) => {
                backend.pop_frame();
                if queue.add_used(mem, head, n).is_err() {
                    log::debug!("virtio-net: cannot add used rx entry");
                }
                used_any = true;
            }
            Err(RxError::Malformed(why)) => {
                limit.warn(format_args!("rx: {why}"));
                if queue.add_used(mem, head, 0).is_err() {
                    log::debug!("virtio-net: cannot add used rx entry");
                }
                used_any = true;
            }
            Err(RxError::TooSmall { capacity }) => {
                limit.warn(format_args!(
                    "rx: {len}-byte frame does not fit a {capacity}-byte guest buffer; dropped"
                ));
                backend.pop_frame();
                queue.go_to_previous_position();
            }
        }
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

struct Active {
    mem: GuestMem,
    rxq: Queue,
    txq: Queue,
    interrupt: Arc<Interrupt>,
}

/// The network device, generic over its host backend.
pub struct Net<B: NetBackend> {
    mac: [u8; 6],
    mtu: Option<u16>,
    backend: B,
    active: Option<Active>,
    link: NetLinkState,
    limit: LogLimit,
    tx_frame: Vec<u8>,
    rx_descs: Vec<(GuestAddress, u32)>,
}

impl<B: NetBackend> Net<B> {
    /// An inactive device with the unicast address `mac`; `mtu` (at least
    /// [`MIN_MTU`]) is offered to the guest when set.
    pub fn new(mac: [u8; 6], mtu: Option<u16>, backend: B) -> Result<Self, NetError> {
        if let Some(m) = mtu.filter(|m| *m < MIN_MTU) {
            return Err(NetError::InvalidMtu(m));
        }
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(NetError::InvalidMac(mac));
        }
        Ok(Net {
            mac,
            mtu,
            backend,
            active: None,
            link: NetLinkState::default(),
            limit: LogLimit::new("virtio-net"),
            tx_frame: Vec::with_capacity(MAX_FRAME),
            rx_descs: Vec::new(),
        })
    }

    /// Whether the driver started the device.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The backend state, for the pod's monitor.
    pub fn link_state(&self) -> NetLinkState {
        self.link.clone()
    }

    /// The host backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The host backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Run both queues (after a queue notification or a backend event),
    /// raise the interrupts the guest needs, and note a lost backend.
    pub fn process(&mut self) {
        if let Some(a) = self.active.as_mut() {
            let mut irq = process_tx(
                &mut a.txq,
                &a.mem,
                &mut self.backend,
                &mut self.tx_frame,
                &mut self.limit,
            );
            irq |= process_rx(
                &mut a.rxq,
                &a.mem,
                &mut self.backend,
                &mut self.rx_descs,
                &mut self.limit,
            );
            if irq {
                a.interrupt.signal(VIRTIO_MMIO_INT_VRING);
            }
        }
        if self.backend.is_down() && !self.link.is_down() {
            self.link.set_down();
            // The link-status bit changed.
            if let Some(a) = &self.active {
                a.interrupt.signal(VIRTIO_MMIO_INT_CONFIG);
            }
        }
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[..6].copy_from_slice(&self.mac);
        let status = if self.link.is_down() || self.backend.is_down() {
            0
        } else {
            VIRTIO_NET_S_LINK_UP as u16
        };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        // max_virtqueue_pairs (only meaningful with VIRTIO_NET_F_MQ).
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.unwrap_or(0).to_le_bytes());
        c
    }
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 2]
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS;
        if self.mtu.is_some() {
            f |= 1 << VIRTIO_NET_F_MTU;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::vmm::devices::virtio::read_config_bytes(&self.config(), offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMem,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let got = queues.len();
        let Ok([rxq, txq]) = <[Queue; 2]>::try_from(queues) else {
            return Err(ActivateError::QueueCount { expected: 2, got });
        };
        self.active = Some(Active {
            mem,
            rxq,
            txq,
            interrupt,
        });
        // Frames may have arrived before the driver came up.
        self.process();
        Ok(())
    }

    fn reset(&mut self) {
        // The backend keeps its stream: frames in flight stay in order.
        self.active = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vmm::devices::virtio::net::backend::PasstStream;
    use crate::vmm::devices::virtio::net::framing::{PREFIX_LEN, READ_BUF, WRITE_HIGH_WATER};
    use crate::vmm::vstate::memory::create_guest_memory;
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    const QSIZE: u16 = 64;
    const TX_BUFS: u64 = 0x10_0000;
    const RX_BUFS: u64 = 0x80_0000;
    /// Room for a header and the largest frame per slot.
    const SLOT: u64 = 0x1_1000;
    pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    pub(crate) fn rd(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
    }

    /// An Ethernet frame of `len` bytes whose payload encodes `seq`.
    pub(crate) fn eth_frame(len: usize, seq: u32) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7)).collect();
        f[..6].copy_from_slice(&MAC);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        if len >= 18 {
            f[14..18].copy_from_slice(&seq.to_be_bytes());
        }
        f
    }

    pub(crate) fn framed(frame: &[u8]) -> Vec<u8> {
        let mut v = (frame.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(frame);
        v
    }

    /// The next frame passt would read, or `None` when nothing is there.
    pub(crate) fn peer_frame(peer: &mut UnixStream) -> Option<Vec<u8>> {
        let mut p = [0u8; PREFIX_LEN];
        match peer.read_exact(&mut p) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("{e}"),
        }
        let mut f = vec![0u8; u32::from_be_bytes(p) as usize];
        peer.read_exact(&mut f).unwrap();
        Some(f)
    }

    /// Put one chain (descriptors from table index `at`) on the avail ring.
    /// Unlike `MockSplitQueue::add_desc_chains`, this wraps the ring, so a
    /// test can run more chains than the queue holds.
    fn push_chain(mem: &GuestMem, q: &MockSplitQueue<GuestMem>, descs: &[RawDescriptor], at: u16) {
        for (i, d) in descs.iter().enumerate() {
            q.desc_table().store(at + i as u16, *d).unwrap();
        }
        let avail = q.avail_addr().0;
        let idx: u16 = mem.read_obj(GuestAddress(avail + 2)).unwrap();
        mem.write_obj(at, GuestAddress(avail + 4 + u64::from(idx % QSIZE) * 2))
            .unwrap();
        mem.write_obj(idx.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
    }

    /// Move `q`'s used ring clear of the avail ring: the mock places it
    /// right after the first half of a ring's avail entries, so a test that
    /// wraps the ring would see the two overwrite each other.
    fn own_used_ring(q: &mut Queue, m: &MockSplitQueue<GuestMem>) -> u64 {
        let addr = m.desc_table_addr().0 + 0x1000;
        q.set_used_ring_address(Some(addr as u32), Some((addr >> 32) as u32));
        addr
    }

    /// Read what passt would and return the whole frames so far.
    fn peer_drain(peer: &mut UnixStream, acc: &mut Vec<u8>) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 65536];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => acc.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut frames = Vec::new();
        while acc.len() >= PREFIX_LEN {
            let len = u32::from_be_bytes([acc[0], acc[1], acc[2], acc[3]]) as usize;
            if acc.len() < PREFIX_LEN + len {
                break;
            }
            frames.push(acc[PREFIX_LEN..PREFIX_LEN + len].to_vec());
            acc.drain(..PREFIX_LEN + len);
        }
        frames
    }

    /// A received frame: its virtio-net header and the frame.
    type RxFrame = ([u8; HDR_LEN], Vec<u8>);

    struct Rig<'a> {
        mem: &'a GuestMem,
        txm: MockSplitQueue<'a, GuestMem>,
        rxm: MockSplitQueue<'a, GuestMem>,
        txq: Queue,
        rxq: Queue,
        tx_slot: u16,
        rx_slot: u16,
        tx_seen: u16,
        rx_seen: u16,
        tx_used: u64,
        rx_used: u64,
        backend: PasstStream,
        peer: UnixStream,
        limit: LogLimit,
        frame: Vec<u8>,
        descs: Vec<(GuestAddress, u32)>,
    }

    impl<'a> Rig<'a> {
        fn new(mem: &'a GuestMem) -> Self {
            let txm = MockSplitQueue::create(mem, GuestAddress(0x1_0000), QSIZE);
            let rxm = MockSplitQueue::create(mem, GuestAddress(0x3_0000), QSIZE);
            let mut txq = txm.create_queue().unwrap();
            let mut rxq = rxm.create_queue().unwrap();
            let tx_used = own_used_ring(&mut txq, &txm);
            let rx_used = own_used_ring(&mut rxq, &rxm);
            let (ours, peer) = UnixStream::pair().unwrap();
            peer.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            Rig {
                mem,
                txm,
                rxm,
                txq,
                rxq,
                tx_slot: 0,
                rx_slot: 0,
                tx_seen: 0,
                rx_seen: 0,
                tx_used,
                rx_used,
                backend: PasstStream::new(ours).unwrap(),
                peer,
                limit: LogLimit::new("virtio-net"),
                frame: Vec::new(),
                descs: Vec::new(),
            }
        }

        /// Put raw descriptors (indices from the current slot) on the tx
        /// queue and run it.
        fn tx_raw(&mut self, descs: &[RawDescriptor]) -> bool {
            let at = self.tx_slot;
            self.tx_slot = (self.tx_slot + descs.len() as u16) % (QSIZE - 8);
            push_chain(self.mem, &self.txm, descs, at);
            self.run_tx()
        }

        fn run_tx(&mut self) -> bool {
            process_tx(
                &mut self.txq,
                self.mem,
                &mut self.backend,
                &mut self.frame,
                &mut self.limit,
            )
        }

        /// Send `frame` as the guest does: header and frame in separate
        /// descriptors.
        fn send(&mut self, frame: &[u8]) -> bool {
            let at = self.tx_slot;
            let base = TX_BUFS + u64::from(at) * SLOT;
            self.mem
                .write_slice(&[0u8; HDR_LEN], GuestAddress(base))
                .unwrap();
            self.mem
                .write_slice(frame, GuestAddress(base + 0x100))
                .unwrap();
            self.tx_raw(&[
                rd(base, HDR_LEN as u32, VRING_DESC_F_NEXT, at + 1),
                rd(base + 0x100, frame.len() as u32, 0, 0),
            ])
        }

        /// Used entries of `q` added since the last call.
        fn used(&mut self, rx: bool) -> Vec<(u32, u32)> {
            let (used, seen) = if rx {
                (self.rx_used, &mut self.rx_seen)
            } else {
                (self.tx_used, &mut self.tx_seen)
            };
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            let mut out = Vec::new();
            while *seen != idx {
                let e = used + 4 + u64::from(*seen % QSIZE) * 8;
                out.push((
                    self.mem.read_obj(GuestAddress(e)).unwrap(),
                    self.mem.read_obj(GuestAddress(e + 4)).unwrap(),
                ));
                *seen = seen.wrapping_add(1);
            }
            out
        }

        /// Offer `count` single-descriptor rx buffers of `size` bytes.
        fn give_rx(&mut self, count: usize, size: u32) {
            for _ in 0..count {
                let at = self.rx_slot;
                self.rx_slot = (self.rx_slot + 1) % QSIZE;
                let addr = RX_BUFS + u64::from(at) * SLOT;
                push_chain(
                    self.mem,
                    &self.rxm,
                    &[rd(addr, size, VRING_DESC_F_WRITE, 0)],
                    at,
                );
            }
        }

        fn run_rx(&mut self) -> bool {
            process_rx(
                &mut self.rxq,
                self.mem,
                &mut self.backend,
                &mut self.descs,
                &mut self.limit,
            )
        }

        /// Run rx; the (header, frame) pairs written since the last call,
        /// and the lengths of empty (0-byte) entries.
        fn recv(&mut self) -> (Vec<RxFrame>, usize) {
            // What the event loop does when passt's socket is readable.
            if self.backend.interest().is_some_and(|i| i.readable) {
                self.backend.handle_event(true, false, false);
            }
            self.run_rx();
            let mut frames = Vec::new();
            let mut empty = 0;
            for (id, len) in self.used(true) {
                if len == 0 {
                    empty += 1;
                    continue;
                }
                let addr = RX_BUFS + u64::from(id) * SLOT;
                let mut hdr = [0u8; HDR_LEN];
                self.mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
                let mut f = vec![0u8; len as usize - HDR_LEN];
                self.mem
                    .read_slice(&mut f, GuestAddress(addr + HDR_LEN as u64))
                    .unwrap();
                frames.push((hdr, f));
            }
            (frames, empty)
        }
    }

    /// The header every rx frame gets: zero but `num_buffers` = 1.
    const RX_HDR: [u8; HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    #[test]
    fn test_net_tx_frame_arrives_length_prefixed() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        let frame = eth_frame(60, 1);
        assert!(rig.send(&frame), "the guest is told its buffer is free");
        assert_eq!(rig.used(false), vec![(0, 0)]);
        assert_eq!(peer_frame(&mut rig.peer), Some(frame));
        // Header split 5 + 7 and the frame split across descriptors, one of
        // them empty: no framing assumptions.
        let frame = eth_frame(100, 2);
        let mut bytes = vec![0u8; HDR_LEN];
        bytes.extend_from_slice(&frame);
        mem.write_slice(&bytes, GuestAddress(TX_BUFS)).unwrap();
        let at = rig.tx_slot;
        rig.tx_raw(&[
            rd(TX_BUFS, 5, VRING_DESC_F_NEXT, at + 1),
            rd(TX_BUFS + 5, 10, VRING_DESC_F_NEXT, at + 2),
            rd(0, 0, VRING_DESC_F_NEXT, at + 3),
            rd(TX_BUFS + 15, 97, 0, 0),
        ]);
        assert_eq!(peer_frame(&mut rig.peer), Some(frame));
        assert_eq!(rig.used(false), vec![(u32::from(at), 0)]);
    }

    #[test]
    fn test_net_tx_malformed_chains_are_dropped() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        let at = rig.tx_slot;
        // Longer than a header and a 64 KiB frame, by one byte and by 4 GiB.
        rig.tx_raw(&[
            rd(TX_BUFS, HDR_LEN as u32, VRING_DESC_F_NEXT, at + 1),
            rd(TX_BUFS + 0x100, MAX_FRAME as u32 + 1, 0, 0),
        ]);
        rig.tx_raw(&[rd(TX_BUFS, u32::MAX, 0, 0)]);
        // A device-writable descriptor; outside guest memory; wrapping the
        // address space; zero-length; a header without a frame; a frame
        // shorter than an Ethernet header.
        rig.tx_raw(&[rd(TX_BUFS, 100, VRING_DESC_F_WRITE, 0)]);
        rig.tx_raw(&[rd(0xffff_0000, 100, 0, 0)]);
        rig.tx_raw(&[rd(u64::MAX - 4, 100, 0, 0)]);
        rig.tx_raw(&[rd(TX_BUFS, 0, 0, 0)]);
        rig.tx_raw(&[rd(TX_BUFS, HDR_LEN as u32, 0, 0)]);
        rig.tx_raw(&[rd(TX_BUFS, HDR_LEN as u32 + 13, 0, 0)]);
        let used = rig.used(false);
        assert_eq!(used.len(), 8, "every chain is returned");
        assert!(used.iter().all(|&(_, len)| len == 0));
        rig.peer.set_nonblocking(true).unwrap();
        assert_eq!(peer_frame(&mut rig.peer), None, "nothing reached passt");
        // The device goes on.
        rig.peer.set_nonblocking(false).unwrap();
        let frame = eth_frame(64, 9);
        rig.send(&frame);
        assert_eq!(peer_frame(&mut rig.peer), Some(frame));
    }

    #[test]
    fn test_net_rx_split_frame_lands_with_zeroed_header() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        rig.give_rx(1, 2048);
        let frame = eth_frame(100, 3);
        let bytes = framed(&frame);
        for piece in [&bytes[..2], &bytes[2..4], &bytes[4..44]] {
            rig.peer.write_all(piece).unwrap();
            let (got, empty) = rig.recv();
            assert!(
                got.is_empty() && empty == 0,
                "nothing before the frame is whole"
            );
            let i = rig.backend.interest().unwrap();
            assert!(i.readable, "still reading");
        }
        rig.peer.write_all(&bytes[44..]).unwrap();
        let (got, _) = rig.recv();
        assert_eq!(got, vec![(RX_HDR, frame)]);
        assert_eq!(rig.backend.rx_buffered(), 0);
    }

    #[test]
    fn test_net_rx_without_buffers_loses_nothing() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        // About 1.5 MiB: more than the read-ahead holds.
        const N: u32 = 2000;
        let mut writer = rig.peer.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            for seq in 0..N {
                let len = 60 + (seq as usize * 37) % 1400;
                writer.write_all(&framed(&eth_frame(len, seq))).unwrap();
            }
        });
        // No guest buffers: frames are read ahead up to the bound, then
        // the socket is left alone (passt sees it full).
        for _ in 0..400 {
            let (got, _) = rig.recv();
            assert!(got.is_empty());
            assert!(rig.backend.rx_buffered() <= READ_BUF);
            if !rig.backend.interest().unwrap().readable {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!rig.backend.interest().unwrap().readable, "stopped reading");
        assert!(rig.backend.rx_buffered() > READ_BUF - PREFIX_LEN - MAX_FRAME);
        let mut seq = 0;
        while seq < N {
            rig.give_rx(16, 2048);
            let want = (seq + 16).min(N);
            for _ in 0..200 {
                let (got, empty) = rig.recv();
                assert_eq!(empty, 0);
                for (hdr, f) in got {
                    assert_eq!(hdr, RX_HDR);
                    let len = 60 + (seq as usize * 37) % 1400;
                    assert_eq!(f, eth_frame(len, seq), "frame {seq}");
                    seq += 1;
                }
                assert!(rig.backend.rx_buffered() <= READ_BUF);
                if seq == want {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(seq, want, "the guest's buffers were filled");
        }
        t.join().unwrap();
        assert_eq!(seq, N);
    }

    #[test]
    fn test_net_rx_malformed_buffers_are_returned_empty() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        let frame = eth_frame(200, 4);
        rig.peer.write_all(&framed(&frame)).unwrap();
        let s = rig.rx_slot;
        let base = RX_BUFS + u64::from(s) * SLOT;
        let chains: [&[RawDescriptor]; 5] = [
            &[rd(base, 2048, 0, 0)],
            &[rd(0xffff_0000, 2048, VRING_DESC_F_WRITE, 0)],
            &[rd(base, 0, VRING_DESC_F_WRITE, 0)],
            &[rd(base, 8, VRING_DESC_F_WRITE, 0)],
            &[
                rd(base, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, s + 5),
                rd(base + 0x100, 2048, 0, 0),
            ],
        ];
        let mut at = s;
        for c in chains {
            rig.rxm.add_desc_chains(c, at).unwrap();
            at += c.len() as u16;
        }
        // A good chain: header and frame in separate descriptors.
        let good = RX_BUFS + u64::from(at) * SLOT;
        rig.rxm
            .add_desc_chains(
                &[
                    rd(
                        good,
                        HDR_LEN as u32,
                        VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                        at + 1,
                    ),
                    rd(good + 0x1000, 2048, VRING_DESC_F_WRITE, 0),
                ],
                at,
            )
            .unwrap();
        rig.run_rx();
        let used = rig.used(true);
        assert_eq!(used.len(), 6);
        assert!(used[..5].iter().all(|&(_, len)| len == 0), "{used:?}");
        assert_eq!(used[5], (u32::from(at), (HDR_LEN + 200) as u32));
        let mut hdr = [0u8; HDR_LEN];
        mem.read_slice(&mut hdr, GuestAddress(good)).unwrap();
        assert_eq!(hdr, RX_HDR);
        let mut got = vec![0u8; 200];
        mem.read_slice(&mut got, GuestAddress(good + 0x1000))
            .unwrap();
        assert_eq!(got, frame);
    }

    #[test]
    fn test_net_rx_frame_too_big_for_buffer_is_dropped() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        let big = eth_frame(1000, 5);
        let small = eth_frame(100, 6);
        rig.peer.write_all(&framed(&big)).unwrap();
        rig.peer.write_all(&framed(&small)).unwrap();
        rig.give_rx(1, 512);
        let (got, empty) = rig.recv();
        assert_eq!(empty, 0, "the buffer is kept for the next frame");
        assert_eq!(got, vec![(RX_HDR, small)]);
    }

    #[test]
    fn test_net_rx_oversized_frame_closes_backend() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        rig.give_rx(1, 2048);
        rig.peer
            .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .unwrap();
        let (got, _) = rig.recv();
        assert!(got.is_empty());
        assert!(rig.backend.is_down());
        assert_eq!(rig.backend.interest(), None, "the socket is given up");
        rig.backend.release();
        let mut b = [0u8; 1];
        assert_eq!(rig.peer.read(&mut b).unwrap(), 0, "passt sees the close");
    }

    #[test]
    fn test_net_tx_backpressure_is_bounded() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem);
        let frame = eth_frame(60_000, 7);
        // passt reads nothing: the socket fills, then our bounded buffer,
        // then the guest's frames stay in its queue.
        let mut sent = 0;
        loop {
            rig.send(&frame);
            let used = rig.used(false).len();
            assert!(rig.backend.tx_pending() <= WRITE_HIGH_WATER + PREFIX_LEN + MAX_FRAME);
            if used == 0 {
                break;
            }
            sent += 1;
            assert!(sent < 100, "never pushed back");
        }
        let i = rig.backend.interest().unwrap();
        assert!(i.writable, "waits for the socket");
        // passt reads everything: the held frames go out, in order.
        let mut acc = Vec::new();
        let mut got = 0;
        for _ in 0..1000 {
            for f in peer_drain(&mut rig.peer, &mut acc) {
                assert_eq!(f, frame);
                got += 1;
            }
            if got == sent + 1 {
                break;
            }
            rig.backend.handle_event(false, true, false);
            rig.run_tx();
        }
        assert_eq!(got, sent + 1);
        assert_eq!(rig.used(false).len(), 1, "the held chain was consumed");
        assert_eq!(rig.backend.tx_pending(), 0);
    }

    fn active_net(mem: &GuestMem) -> (Net<PasstStream>, UnixStream, Arc<Interrupt>) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let mut net = Net::new(MAC, Some(1500), PasstStream::new(ours).unwrap()).unwrap();
        let rxm = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
        let txm = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
        let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        net.activate(
            mem.clone(),
            vec![rxm.create_queue().unwrap(), txm.create_queue().unwrap()],
            irq.clone(),
        )
        .unwrap();
        (net, peer, irq)
    }

    #[test]
    fn test_net_backend_eof_is_flagged_and_guest_goes_on() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let (mut net, peer, irq) = active_net(&mem);
        let link = net.link_state();
        let mut status = [0u8; 2];
        net.read_config(6, &mut status);
        assert_eq!(u16::from_le_bytes(status), VIRTIO_NET_S_LINK_UP as u16);
        assert!(!link.is_down());
        drop(peer);
        net.process();
        assert!(link.is_down(), "passt's exit is visible to the monitor");
        net.read_config(6, &mut status);
        assert_eq!(status, [0, 0], "the guest sees the link down");
        assert_ne!(irq.status() & VIRTIO_MMIO_INT_CONFIG, 0);
        // The guest's frames are still taken (and discarded).
        let txm = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let base = 0x10_0000;
        mem.write_slice(&eth_frame(HDR_LEN + 60, 0), GuestAddress(base))
            .unwrap();
        for i in 0..4u16 {
            txm.add_desc_chains(&[rd(base, (HDR_LEN + 60) as u32, 0, 0)], i)
                .unwrap();
        }
        // Rebuild the device's view of the same rings: the mock rewrote them.
        net.reset();
        net.activate(
            mem.clone(),
            vec![
                MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16)
                    .create_queue()
                    .unwrap(),
                txm.create_queue().unwrap(),
            ],
            irq,
        )
        .unwrap();
        net.process();
        let idx: u16 = mem.read_obj(GuestAddress(txm.used_addr().0 + 2)).unwrap();
        assert_eq!(idx, 4);
    }

    #[test]
    fn test_net_device_config_features_and_activation() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let mut net = Net::new(MAC, Some(1500), PasstStream::new(ours).unwrap()).unwrap();
        assert_eq!(net.device_type(), device_type::NET);
        assert_eq!(net.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE]);
        let f = net.features();
        for bit in [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MTU] {
            assert_ne!(f & (1 << bit), 0, "feature {bit}");
        }
        assert_ne!(f & VIRTIO_F_VERSION_1, 0);
        let mut c = [0xffu8; 16];
        net.read_config(0, &mut c);
        assert_eq!(&c[..6], &MAC);
        assert_eq!(&c[6..12], &[1, 0, 1, 0, 0xdc, 0x05]);
        assert_eq!(&c[12..], &[0; 4], "past the end reads as zero");
        let mut b = [0xffu8; 2];
        net.read_config(10, &mut b);
        assert_eq!(u16::from_le_bytes(b), 1500);
        net.read_config(u64::MAX, &mut b);
        assert_eq!(b, [0, 0]);
        let mem = create_guest_memory(1 << 20).unwrap();
        let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        assert!(net
            .activate(mem, vec![Queue::new(16).unwrap()], irq)
            .is_err());
        assert!(!net.is_active());

        let (ours, _peer) = UnixStream::pair().unwrap();
        let net = Net::new(MAC, None, PasstStream::new(ours).unwrap()).unwrap();
        assert_eq!(net.features() & (1 << VIRTIO_NET_F_MTU), 0);
        let (ours, _peer) = UnixStream::pair().unwrap();
        let bad = Net::new(MAC, Some(67), PasstStream::new(ours).unwrap());
        assert!(matches!(bad, Err(NetError::InvalidMtu(67))));
        let (ours, _peer) = UnixStream::pair().unwrap();
        let bad = Net::new([1, 0, 0, 0, 0, 1], None, PasstStream::new(ours).unwrap());
        assert!(matches!(bad, Err(NetError::InvalidMac(_))));
    }
}
