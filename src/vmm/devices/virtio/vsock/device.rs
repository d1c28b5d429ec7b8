//! The virtio-vsock device: the [`VirtioDevice`] face and the rx/tx queue
//! handlers (plain functions over guest memory, no fds).

use crate::vmm::devices::virtio::LogLimit;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;

use super::muxer::VsockBackend;
use super::packet::{read_tx_packet, RxBuffer, TxError, HOST_CID};
use crate::vmm::devices::virtio::{
    device_type, ActivateError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_MMIO_INT_VRING,
};
use crate::vmm::vstate::memory::GuestMem;

/// Size of each of the three queues.
pub const QUEUE_SIZE: u16 = 256;
/// Queue indices.
pub const RXQ: usize = 0;
/// The guest→host queue.
pub const TXQ: usize = 1;
/// The event queue (unused: no transport-reset events are sent).
pub const EVQ: usize = 2;
/// The CID peapod gives its guests.
pub const GUEST_CID: u64 = 3;

/// Take every tx packet (until the backend's rx backlog is full) and hand
/// it to the backend. Returns whether the guest needs an interrupt.
pub fn process_tx<M: GuestMemory, B: VsockBackend>(
    queue: &mut Queue,
    mem: &M,
    backend: &mut B,
    guest_cid: u64,
    limit: &mut LogLimit,
) -> bool {
    let mut used_any = false;
    while !backend.rx_backlog_full() {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        match read_tx_packet(chain, mem) {
            Ok(pkt) if pkt.hdr.src_cid != guest_cid || pkt.hdr.dst_cid != HOST_CID => {
                limit.warn(format_args!(
                    "packet from CID {} to CID {} dropped",
                    pkt.hdr.src_cid, pkt.hdr.dst_cid
                ));
            }
            Ok(pkt) => backend.send_to_host(pkt),
            Err(TxError::Malformed(why)) => limit.warn(format_args!("tx: {why}")),
            Err(TxError::Reset(hdr, why)) => {
                limit.warn(format_args!("tx: {why}; resetting the connection"));
                if hdr.src_cid == guest_cid && hdr.dst_cid == HOST_CID {
                    backend.reset_connection(hdr.dst_port, hdr.src_port);
                }
            }
        }
        // The device writes nothing into tx buffers.
        if queue.add_used(mem, head, 0).is_err() {
            log::debug!("virtio-vsock: cannot add used tx entry");
        }
        used_any = true;
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

/// Fill rx buffers with what the backend has for the guest. Malformed
/// buffers are returned with 0 bytes. Returns whether the guest needs an
/// interrupt.
pub fn process_rx<M: GuestMemory, B: VsockBackend>(
    queue: &mut Queue,
    mem: &M,
    backend: &mut B,
    limit: &mut LogLimit,
) -> bool {
    let mut used_any = false;
    while backend.has_pending_rx() {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        let written = match RxBuffer::from_chain(chain, mem) {
            Err(why) => {
                limit.warn(format_args!("rx: {why}"));
                0
            }
            Ok(buf) => match backend.pending_rx(buf.max_payload()) {
                None => {
                    // Nothing after all: the buffer stays with the device.
                    queue.go_to_previous_position();
                    break;
                }
                Some(pkt) => match buf.write(mem, &pkt) {
                    Ok(n) => n,
                    Err(why) => {
                        limit.warn(format_args!("rx: {why}"));
                        backend.reset_connection(pkt.hdr.src_port, pkt.hdr.dst_port);
                        0
                    }
                },
            },
        };
        if queue.add_used(mem, head, written).is_err() {
            log::debug!("virtio-vsock: cannot add used rx entry");
        }
        used_any = true;
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

struct Active {
    mem: GuestMem,
    rxq: Queue,
    txq: Queue,
    _evq: Queue,
    interrupt: Arc<Interrupt>,
}

/// The socket device, generic over its host backend.
pub struct Vsock<B: VsockBackend> {
    cid: u64,
    backend: B,
    active: Option<Active>,
    limit: LogLimit,
}

impl<B: VsockBackend> Vsock<B> {
    /// An inactive device for a guest with CID `cid`.
    pub fn new(cid: u64, backend: B) -> Self {
        Vsock {
            cid,
            backend,
            active: None,
            limit: LogLimit::new("virtio-vsock"),
        }
    }

    /// The guest's CID.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// Whether the driver started the device.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The host backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The host backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Run both queues (after a queue notification or a backend event) and
    /// raise the interrupt if the guest needs it.
    pub fn process(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let mut irq = false;
        // Each round fills rx buffers, so it ends when tx is not held back
        // by the rx backlog or rx makes no room.
        for _ in 0..usize::from(QUEUE_SIZE) {
            irq |= process_rx(&mut a.rxq, &a.mem, &mut self.backend, &mut self.limit);
            irq |= process_tx(
                &mut a.txq,
                &a.mem,
                &mut self.backend,
                self.cid,
                &mut self.limit,
            );
            let stalled = self.backend.rx_backlog_full();
            irq |= process_rx(&mut a.rxq, &a.mem, &mut self.backend, &mut self.limit);
            if !stalled || self.backend.rx_backlog_full() {
                break;
            }
        }
        if irq {
            a.interrupt.signal(VIRTIO_MMIO_INT_VRING);
        }
    }
}

impl<B: VsockBackend> VirtioDevice for Vsock<B> {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::vmm::devices::virtio::read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMem,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let got = queues.len();
        let Ok([rxq, txq, evq]) = <[Queue; 3]>::try_from(queues) else {
            return Err(ActivateError::QueueCount { expected: 3, got });
        };
        self.active = Some(Active {
            mem,
            rxq,
            txq,
            _evq: evq,
            interrupt,
        });
        // Host connections may have queued requests before the driver came up.
        self.process();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.backend.reset();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vmm::devices::virtio::vsock::muxer::{Muxer, BUF_ALLOC};
    use crate::vmm::devices::virtio::vsock::packet::{
        op, Header, Packet, HDR_SIZE, MAX_PAYLOAD, TYPE_STREAM,
    };
    use crate::vmm::vstate::memory::create_guest_memory;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const QSIZE: u16 = 64;
    const TX_BUFS: u64 = 0x10_0000;
    const RX_BUFS: u64 = 0x40_0000;
    const SLOT: u64 = 0x1_1000;

    /// A temp dir removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "peapod-vsock-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn guest_hdr(src_port: u32, dst_port: u32, op: u16) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: BUF_ALLOC,
            ..Header::default()
        }
    }

    pub(crate) fn rd(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
    }

    struct Rig<'a> {
        mem: &'a GuestMem,
        txm: MockSplitQueue<'a, GuestMem>,
        rxm: MockSplitQueue<'a, GuestMem>,
        txq: Queue,
        rxq: Queue,
        tx_slot: u16,
        rx_slot: u16,
        rx_seen: u16,
        muxer: Muxer,
        limit: LogLimit,
    }

    impl<'a> Rig<'a> {
        fn new(mem: &'a GuestMem, uds: &std::path::Path) -> Self {
            let txm = MockSplitQueue::create(mem, GuestAddress(0x1_0000), QSIZE);
            let rxm = MockSplitQueue::create(mem, GuestAddress(0x3_0000), QSIZE);
            let txq = txm.create_queue().unwrap();
            let rxq = rxm.create_queue().unwrap();
            Rig {
                mem,
                txm,
                rxm,
                txq,
                rxq,
                tx_slot: 0,
                rx_slot: 0,
                rx_seen: 0,
                muxer: Muxer::new(uds, GUEST_CID).unwrap(),
                limit: LogLimit::new("virtio-vsock"),
            }
        }

        /// Put raw descriptors on the tx queue and run it.
        fn tx_raw(&mut self, descs: &[RawDescriptor]) -> bool {
            let at = self.tx_slot;
            self.tx_slot = (self.tx_slot + descs.len() as u16) % (QSIZE - 8);
            self.txm.add_desc_chains(descs, at).unwrap();
            process_tx(
                &mut self.txq,
                self.mem,
                &mut self.muxer,
                GUEST_CID,
                &mut self.limit,
            )
        }

        /// Send one packet (header and payload in separate descriptors).
        fn send(&mut self, hdr: Header, data: &[u8]) {
            let hdr = Header {
                len: data.len() as u32,
                ..hdr
            };
            let at = self.tx_slot;
            let base = TX_BUFS + u64::from(at) * SLOT;
            self.mem
                .write_slice(&hdr.to_bytes(), GuestAddress(base))
                .unwrap();
            self.mem
                .write_slice(data, GuestAddress(base + 0x100))
                .unwrap();
            let n = at + 1;
            let descs = [
                rd(base, HDR_SIZE as u32, VRING_DESC_F_NEXT, n),
                rd(base + 0x100, data.len() as u32, 0, 0),
            ];
            self.tx_raw(&descs);
        }

        /// Offer `count` writable rx buffers of `size` bytes.
        fn give_rx(&mut self, count: usize, size: u32) {
            for _ in 0..count {
                let at = self.rx_slot;
                self.rx_slot = (self.rx_slot + 1) % QSIZE;
                let addr = RX_BUFS + u64::from(at) * SLOT;
                self.rxm
                    .add_desc_chains(&[rd(addr, size, VRING_DESC_F_WRITE, 0)], at)
                    .unwrap();
            }
        }

        /// Let the backend notice socket readiness (spurious wakeups are fine).
        fn pump(&mut self) {
            for i in self.muxer.interests() {
                self.muxer.handle_event(i.fd, true, true);
            }
            self.muxer.release_closed();
        }

        /// Run rx and return the packets written since the last call.
        fn recv(&mut self) -> Vec<(u32, Option<Packet>)> {
            self.pump();
            process_rx(&mut self.rxq, self.mem, &mut self.muxer, &mut self.limit);
            let used = self.rxm.used_addr().0;
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            let mut out = Vec::new();
            while self.rx_seen != idx {
                let e = used + 4 + u64::from(self.rx_seen % QSIZE) * 8;
                let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
                self.rx_seen = self.rx_seen.wrapping_add(1);
                let pkt = (len as usize >= HDR_SIZE).then(|| {
                    let addr = RX_BUFS + u64::from(id) * SLOT;
                    let mut hb = [0u8; HDR_SIZE];
                    self.mem.read_slice(&mut hb, GuestAddress(addr)).unwrap();
                    let mut data = vec![0u8; len as usize - HDR_SIZE];
                    self.mem
                        .read_slice(&mut data, GuestAddress(addr + HDR_SIZE as u64))
                        .unwrap();
                    Packet {
                        hdr: Header::from_bytes(&hb),
                        data,
                    }
                });
                out.push((len, pkt));
            }
            out
        }

        fn recv_packets(&mut self) -> Vec<Packet> {
            self.recv().into_iter().filter_map(|(_, p)| p).collect()
        }
    }

    fn ops(pkts: &[Packet]) -> Vec<u16> {
        pkts.iter().map(|p| p.hdr.op).collect()
    }

    /// A connected guest port 1000 ↔ host listener `<uds>_52`; returns the
    /// host's accepted stream.
    fn connect(rig: &mut Rig, uds: &std::path::Path, buf_alloc: u32) -> UnixStream {
        let mut p = uds.as_os_str().to_owned();
        p.push("_52");
        let listener = UnixListener::bind(PathBuf::from(p)).unwrap();
        rig.send(
            Header {
                buf_alloc,
                ..guest_hdr(1000, 52, op::REQUEST)
            },
            &[],
        );
        let (stream, _) = listener.accept().unwrap();
        rig.give_rx(1, 4096);
        let got = rig.recv_packets();
        assert_eq!(ops(&got), vec![op::RESPONSE]);
        let h = got[0].hdr;
        assert_eq!((h.src_cid, h.dst_cid), (HOST_CID, GUEST_CID));
        assert_eq!((h.src_port, h.dst_port), (52, 1000));
        assert_eq!(h.buf_alloc, BUF_ALLOC);
        stream
    }

    #[test]
    fn test_vsock_request_connects_and_responds() {
        let dir = TempDir::new("req");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        let _host = connect(&mut rig, &uds, BUF_ALLOC);
        assert_eq!(rig.muxer.connection_count(), 1);
    }

    #[test]
    fn test_vsock_request_without_listener_resets() {
        let dir = TempDir::new("nolisten");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        rig.send(guest_hdr(1000, 99, op::REQUEST), &[]);
        rig.give_rx(1, 4096);
        assert_eq!(ops(&rig.recv_packets()), vec![op::RST]);
        assert_eq!(rig.muxer.connection_count(), 0);
    }

    #[test]
    fn test_vsock_guest_data_reaches_host_socket() {
        let dir = TempDir::new("rw");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        let mut host = connect(&mut rig, &uds, BUF_ALLOC);
        rig.send(guest_hdr(1000, 52, op::RW), b"hello host");
        let mut buf = [0u8; 10];
        host.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello host");
        // The guest asks for credit and learns what was forwarded.
        rig.send(guest_hdr(1000, 52, op::CREDIT_REQUEST), &[]);
        rig.give_rx(1, 4096);
        let got = rig.recv_packets();
        assert_eq!(ops(&got), vec![op::CREDIT_UPDATE]);
        assert_eq!(got[0].hdr.fwd_cnt, 10);
    }

    #[test]
    fn test_vsock_host_data_respects_guest_credit() {
        let dir = TempDir::new("credit");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        let mut host = connect(&mut rig, &uds, 100);
        host.write_all(&[7u8; 300]).unwrap();
        rig.give_rx(1, 4096);
        let got = rig.recv_packets();
        assert!(got.iter().all(|p| p.hdr.op == op::RW));
        assert_eq!(got.iter().map(|p| p.data.len()).sum::<usize>(), 100);
        assert!(rig.recv_packets().is_empty(), "no credit, nothing more");
        // The guest consumed 100 bytes: 100 more may come.
        rig.send(
            Header {
                buf_alloc: 100,
                fwd_cnt: 100,
                ..guest_hdr(1000, 52, op::CREDIT_UPDATE)
            },
            &[],
        );
        assert!(rig.recv_packets().is_empty(), "no rx buffer yet");
        rig.give_rx(1, 4096);
        let got = rig.recv_packets();
        assert_eq!(got.iter().map(|p| p.data.len()).sum::<usize>(), 100);
        assert!(got.iter().all(|p| p.data.iter().all(|&b| b == 7)));
        // Small rx buffers split the data; never over their size.
        rig.send(
            Header {
                buf_alloc: 100,
                fwd_cnt: 200,
                ..guest_hdr(1000, 52, op::CREDIT_UPDATE)
            },
            &[],
        );
        rig.give_rx(4, HDR_SIZE as u32 + 30);
        let got = rig.recv();
        assert!(got.iter().all(|(len, _)| *len <= HDR_SIZE as u32 + 30));
        let sizes: Vec<usize> = got.iter().map(|(l, _)| *l as usize - HDR_SIZE).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 100, "{sizes:?}");
    }

    #[test]
    fn test_vsock_host_eof_sends_shutdown_and_guest_close_resets() {
        let dir = TempDir::new("eof");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        let host = connect(&mut rig, &uds, BUF_ALLOC);
        host.shutdown(std::net::Shutdown::Write).unwrap();
        rig.give_rx(2, 4096);
        let got = rig.recv_packets();
        assert_eq!(ops(&got), vec![op::SHUTDOWN]);
        assert_eq!(got[0].hdr.flags, super::super::packet::SHUTDOWN_SEND);
        rig.send(
            Header {
                flags: 3,
                ..guest_hdr(1000, 52, op::SHUTDOWN)
            },
            &[],
        );
        assert_eq!(ops(&rig.recv_packets()), vec![op::RST]);
        assert_eq!(rig.muxer.connection_count(), 0);
    }

    #[test]
    fn test_vsock_unknown_connection_gets_rst() {
        let dir = TempDir::new("unknown");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        rig.send(guest_hdr(1000, 77, op::RW), b"stray");
        // An RST itself is never answered.
        rig.send(guest_hdr(1000, 78, op::RST), &[]);
        rig.give_rx(2, 4096);
        let got = rig.recv_packets();
        assert_eq!(ops(&got), vec![op::RST]);
        assert_eq!((got[0].hdr.src_port, got[0].hdr.dst_port), (77, 1000));
    }

    #[test]
    fn test_vsock_wrong_cid_is_dropped() {
        let dir = TempDir::new("cid");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        rig.send(
            Header {
                src_cid: 42,
                ..guest_hdr(1000, 52, op::REQUEST)
            },
            &[],
        );
        rig.give_rx(1, 4096);
        assert!(rig.recv_packets().is_empty());
    }

    #[test]
    fn test_vsock_malformed_chains_are_survived() {
        let dir = TempDir::new("malformed");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        // tx: too short for a header; a writable descriptor; outside memory.
        assert!(rig.tx_raw(&[rd(TX_BUFS, 10, 0, 0)]));
        rig.tx_raw(&[rd(TX_BUFS, 64, VRING_DESC_F_WRITE, 0)]);
        rig.tx_raw(&[rd(0xffff_0000, 64, 0, 0)]);
        // tx: a header claiming 4 GiB of payload in a 4 GiB descriptor.
        let h = Header {
            len: u32::MAX,
            ..guest_hdr(1000, 52, op::RW)
        };
        mem.write_slice(&h.to_bytes(), GuestAddress(TX_BUFS))
            .unwrap();
        let at = rig.tx_slot;
        rig.tx_raw(&[
            rd(TX_BUFS, HDR_SIZE as u32, VRING_DESC_F_NEXT, at + 1),
            rd(TX_BUFS + 0x100, u32::MAX, 0, 0),
        ]);
        // tx: a header split across two descriptors is fine (no framing
        // assumptions): this REQUEST gets its RST (no listener).
        let b = guest_hdr(1000, 53, op::REQUEST).to_bytes();
        mem.write_slice(&b[..7], GuestAddress(TX_BUFS)).unwrap();
        mem.write_slice(&b[7..], GuestAddress(TX_BUFS + 0x100))
            .unwrap();
        let at = rig.tx_slot;
        rig.tx_raw(&[
            rd(TX_BUFS, 7, VRING_DESC_F_NEXT, at + 1),
            rd(TX_BUFS + 0x100, 37, 0, 0),
        ]);
        // rx: a device-readable buffer, a tiny one, one outside memory, then
        // good ones.
        let readonly = rig.rx_slot;
        rig.rxm
            .add_desc_chains(&[rd(RX_BUFS, 4096, 0, 0)], readonly)
            .unwrap();
        rig.rxm
            .add_desc_chains(&[rd(RX_BUFS, 8, VRING_DESC_F_WRITE, 0)], readonly + 1)
            .unwrap();
        rig.rxm
            .add_desc_chains(
                &[rd(0xffff_0000, 4096, VRING_DESC_F_WRITE, 0)],
                readonly + 2,
            )
            .unwrap();
        rig.rx_slot += 3;
        rig.give_rx(2, 4096);
        let got = rig.recv();
        let lens: Vec<u32> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(&lens[..3], &[0, 0, 0], "malformed rx buffers get 0 bytes");
        let pkts: Vec<Packet> = got.into_iter().filter_map(|(_, p)| p).collect();
        assert_eq!(ops(&pkts), vec![op::RST, op::RST]);
        assert_eq!(pkts[0].hdr.src_port, 52, "the 4 GiB packet's connection");
        assert_eq!(pkts[1].hdr.src_port, 53, "the split-header REQUEST");
        // The device goes on.
        let _host = connect(&mut rig, &uds, BUF_ALLOC);
    }

    #[test]
    fn test_vsock_flood_past_credit_resets_connection() {
        let dir = TempDir::new("flood");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let mut rig = Rig::new(&mem, &uds);
        // The host never reads: its socket buffer fills, then ours.
        let _host = connect(&mut rig, &uds, BUF_ALLOC);
        let chunk = vec![1u8; MAX_PAYLOAD];
        let mut sent = 0usize;
        while rig.muxer.connection_count() == 1 {
            rig.send(guest_hdr(1000, 52, op::RW), &chunk);
            sent += chunk.len();
            assert!(sent <= 64 << 20, "never reset");
        }
        assert!(sent > BUF_ALLOC as usize, "sent {sent}");
        rig.give_rx(8, 4096);
        let got = rig.recv_packets();
        assert_eq!(ops(&got).last(), Some(&op::RST), "{:?}", ops(&got));
    }

    #[test]
    fn test_vsock_device_config_and_activation() {
        let dir = TempDir::new("dev");
        let uds = dir.0.join("v.sock");
        let dev = Vsock::new(GUEST_CID, Muxer::new(&uds, GUEST_CID).unwrap());
        assert_eq!(dev.device_type(), device_type::VSOCK);
        assert_eq!(dev.queue_max_sizes().len(), 3);
        let mut b = [0xffu8; 8];
        dev.read_config(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 3);
        let mut b = [0xffu8; 4];
        dev.read_config(4, &mut b);
        assert_eq!(b, [0; 4]);
        dev.read_config(u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
        let mut dev = dev;
        let mem = create_guest_memory(1 << 20).unwrap();
        let irq = Arc::new(Interrupt::new(
            vmm_sys_util::eventfd::EventFd::new(0).unwrap(),
        ));
        let r = dev.activate(mem, vec![Queue::new(16).unwrap()], irq);
        assert!(r.is_err());
        assert!(!dev.is_active());
    }
}
