//! virtio-vsock packets (virtio spec 5.10.6): the 44-byte little-endian
//! `virtio_vsock_hdr` and its payload, read from and written to descriptor
//! chains with every length checked against what the chain really holds.

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// Size of `struct virtio_vsock_hdr`.
pub const HDR_SIZE: usize = 44;
/// Largest payload accepted from or sent to the guest in one packet.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The host's CID (well-known).
pub const HOST_CID: u64 = 2;

/// Socket type: stream (the only one supported).
pub const TYPE_STREAM: u16 = 1;

/// Packet operations.
pub mod op {
    /// Connection request.
    pub const REQUEST: u16 = 1;
    /// Connection accepted.
    pub const RESPONSE: u16 = 2;
    /// Connection reset.
    pub const RST: u16 = 3;
    /// Shutdown of one or both directions (`flags`).
    pub const SHUTDOWN: u16 = 4;
    /// Payload.
    pub const RW: u16 = 5;
    /// Unsolicited credit information.
    pub const CREDIT_UPDATE: u16 = 6;
    /// Ask the peer for its credit.
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// The packet header, host-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation (`op::*`).
    pub op: u16,
    /// Operation flags (SHUTDOWN).
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer.
    pub fwd_cnt: u32,
}

impl Header {
    /// Parse the wire layout.
    pub fn from_bytes(b: &[u8; HDR_SIZE]) -> Self {
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(a)
        };
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// The wire layout.
    pub fn to_bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// The RST answering this header (ports and CIDs swapped, no payload).
    pub fn rst_reply(&self) -> Header {
        Header {
            src_cid: self.dst_cid,
            dst_cid: self.src_cid,
            src_port: self.dst_port,
            dst_port: self.src_port,
            type_: TYPE_STREAM,
            op: op::RST,
            ..Header::default()
        }
    }
}

/// A header and its payload (`hdr.len == data.len()` for packets built here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The header.
    pub hdr: Header,
    /// The payload.
    pub data: Vec<u8>,
}

impl Packet {
    /// A payload-less packet.
    pub fn control(hdr: Header) -> Self {
        Packet {
            hdr: Header { len: 0, ..hdr },
            data: Vec::new(),
        }
    }
}

/// Why a tx chain was not turned into a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxError {
    /// Unusable (too short, writable descriptors, outside memory): dropped.
    Malformed(&'static str),
    /// The header is readable but the packet is not acceptable; the
    /// connection it names must be reset.
    Reset(Header, &'static str),
}

/// Read one guest→host packet from a tx chain. The header may span
/// descriptors (the spec forbids assuming any framing); `len` is trusted only
/// up to the bytes the chain really holds and [`MAX_PAYLOAD`].
pub fn read_tx_packet<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
) -> Result<Packet, TxError> {
    let mut hdr_buf = [0u8; HDR_SIZE];
    let mut hdr_got = 0usize;
    let mut hdr: Option<Header> = None;
    let mut data: Vec<u8> = Vec::new();
    let mut want = 0usize;
    for desc in chain {
        if desc.is_write_only() {
            return Err(TxError::Malformed(
                "device-writable descriptor in a tx chain",
            ));
        }
        let mut addr = desc.addr();
        let mut left = desc.len() as usize;
        if hdr.is_none() {
            let n = left.min(HDR_SIZE - hdr_got);
            mem.read_slice(&mut hdr_buf[hdr_got..hdr_got + n], addr)
                .map_err(|_| TxError::Malformed("tx header outside guest memory"))?;
            hdr_got += n;
            left -= n;
            addr = addr
                .checked_add(n as u64)
                .ok_or(TxError::Malformed("descriptor wraps the address space"))?;
            if hdr_got < HDR_SIZE {
                continue;
            }
            let h = Header::from_bytes(&hdr_buf);
            if h.type_ != TYPE_STREAM {
                return Err(reset_unless_rst(h, "unsupported socket type"));
            }
            if h.len as usize > MAX_PAYLOAD {
                return Err(reset_unless_rst(h, "payload length over 64 KiB"));
            }
            want = h.len as usize;
            data.reserve_exact(want);
            hdr = Some(h);
        }
        let n = left.min(want - data.len());
        if n > 0 {
            let start = data.len();
            data.resize(start + n, 0);
            if mem.read_slice(&mut data[start..], addr).is_err() {
                return Err(TxError::Malformed("tx payload outside guest memory"));
            }
        }
        if data.len() == want {
            break;
        }
    }
    let Some(hdr) = hdr else {
        return Err(TxError::Malformed("tx chain shorter than the header"));
    };
    if data.len() < want {
        return Err(reset_unless_rst(
            hdr,
            "payload length larger than the buffer",
        ));
    }
    Ok(Packet { hdr, data })
}

fn reset_unless_rst(h: Header, why: &'static str) -> TxError {
    if h.op == op::RST {
        TxError::Malformed(why)
    } else {
        TxError::Reset(h, why)
    }
}

/// A validated rx chain: the device-writable regions, at most
/// `HDR_SIZE + MAX_PAYLOAD` bytes in all, all inside guest memory.
#[derive(Debug)]
pub struct RxBuffer {
    regions: Vec<(GuestAddress, usize)>,
    capacity: usize,
}

impl RxBuffer {
    /// Check an rx chain before anything is taken from the backend: every
    /// descriptor must be writable and the usable part inside guest memory.
    pub fn from_chain<M: GuestMemory>(
        chain: DescriptorChain<&M>,
        mem: &M,
    ) -> Result<RxBuffer, &'static str> {
        let limit = HDR_SIZE + MAX_PAYLOAD;
        let mut regions = Vec::new();
        let mut capacity = 0usize;
        for desc in chain {
            if !desc.is_write_only() {
                return Err("device-readable descriptor in an rx chain");
            }
            let n = (desc.len() as usize).min(limit - capacity);
            if n == 0 {
                continue;
            }
            if !mem.check_range(desc.addr(), n) {
                return Err("rx buffer outside guest memory");
            }
            regions.push((desc.addr(), n));
            capacity += n;
            if capacity == limit {
                break;
            }
        }
        if capacity < HDR_SIZE {
            return Err("rx chain shorter than the header");
        }
        Ok(RxBuffer { regions, capacity })
    }

    /// Payload bytes that fit after the header.
    pub fn max_payload(&self) -> usize {
        self.capacity - HDR_SIZE
    }

    /// Write `pkt` (its payload truncated to fit, which callers avoid by
    /// asking for at most [`Self::max_payload`]); returns the bytes written.
    pub fn write<M: GuestMemory>(&self, mem: &M, pkt: &Packet) -> Result<u32, &'static str> {
        let take = pkt.data.len().min(self.max_payload());
        let mut hdr = pkt.hdr;
        hdr.len = take as u32;
        let hdr_bytes = hdr.to_bytes();
        let mut sources: [&[u8]; 2] = [&hdr_bytes, &pkt.data[..take]];
        let mut written = 0usize;
        for &(addr, len) in &self.regions {
            let mut addr = addr;
            let mut room = len;
            for src in sources.iter_mut() {
                if room == 0 {
                    break;
                }
                let n = room.min(src.len());
                if n == 0 {
                    continue;
                }
                mem.write_slice(&src[..n], addr)
                    .map_err(|_| "rx buffer outside guest memory")?;
                *src = &src[n..];
                room -= n;
                written += n;
                addr = addr.checked_add(n as u64).ok_or("rx buffer wraps")?;
            }
        }
        Ok(written as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::{create_guest_memory, GuestMem};
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    fn sample() -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1234,
            dst_port: 52,
            len: 5,
            type_: TYPE_STREAM,
            op: op::RW,
            flags: 0,
            buf_alloc: 0x4_0000,
            fwd_cnt: 77,
        }
    }

    fn desc(addr: u64, len: u32, flags: u32) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, 0))
    }

    fn read(mem: &GuestMem, descs: &[RawDescriptor]) -> Result<Packet, TxError> {
        let q = MockSplitQueue::create(mem, GuestAddress(0x10000), 16);
        let chain = q.build_desc_chain(descs).unwrap();
        read_tx_packet(chain, mem)
    }

    #[test]
    fn test_header_round_trip() {
        let h = sample();
        let b = h.to_bytes();
        assert_eq!(b.len(), 44);
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[30..32], &op::RW.to_le_bytes());
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn test_header_rst_reply_swaps_ends() {
        let r = sample().rst_reply();
        assert_eq!((r.src_cid, r.dst_cid), (HOST_CID, 3));
        assert_eq!((r.src_port, r.dst_port), (52, 1234));
        assert_eq!((r.op, r.len), (op::RST, 0));
    }

    #[test]
    fn test_packet_reads_header_and_payload() {
        let mem = create_guest_memory(1 << 20).unwrap();
        mem.write_slice(&sample().to_bytes(), GuestAddress(0x40000))
            .unwrap();
        mem.write_slice(b"hello", GuestAddress(0x41000)).unwrap();
        let p = read(&mem, &[desc(0x40000, 44, 0), desc(0x41000, 5, 0)]).unwrap();
        assert_eq!(p.hdr, sample());
        assert_eq!(p.data, b"hello");
    }

    #[test]
    fn test_packet_header_split_across_descriptors() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let b = sample().to_bytes();
        mem.write_slice(&b[..10], GuestAddress(0x40000)).unwrap();
        mem.write_slice(&b[10..], GuestAddress(0x42000)).unwrap();
        mem.write_slice(b"hello", GuestAddress(0x42000 + 34))
            .unwrap();
        let p = read(&mem, &[desc(0x40000, 10, 0), desc(0x42000, 39, 0)]).unwrap();
        assert_eq!(p.hdr, sample());
        assert_eq!(p.data, b"hello");
    }

    #[test]
    fn test_packet_short_chain_is_malformed() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let r = read(&mem, &[desc(0x40000, 20, 0)]);
        assert!(matches!(r, Err(TxError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn test_packet_len_larger_than_buffer_resets() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let h = Header {
            len: 100,
            ..sample()
        };
        mem.write_slice(&h.to_bytes(), GuestAddress(0x40000))
            .unwrap();
        let r = read(&mem, &[desc(0x40000, 44, 0), desc(0x41000, 10, 0)]);
        assert!(
            matches!(r, Err(TxError::Reset(got, _)) if got == h),
            "{r:?}"
        );
        // A 4 GiB length is refused before anything is allocated.
        let h = Header {
            len: u32::MAX,
            ..sample()
        };
        mem.write_slice(&h.to_bytes(), GuestAddress(0x40000))
            .unwrap();
        let r = read(&mem, &[desc(0x40000, 44, 0), desc(0x41000, u32::MAX, 0)]);
        assert!(matches!(r, Err(TxError::Reset(..))), "{r:?}");
    }

    #[test]
    fn test_packet_wrong_type_resets() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let h = Header {
            type_: 2,
            len: 0,
            ..sample()
        };
        mem.write_slice(&h.to_bytes(), GuestAddress(0x40000))
            .unwrap();
        let r = read(&mem, &[desc(0x40000, 44, 0)]);
        assert!(
            matches!(r, Err(TxError::Reset(got, _)) if got == h),
            "{r:?}"
        );
        // ...but an RST is never answered with an RST.
        let h = Header { op: op::RST, ..h };
        mem.write_slice(&h.to_bytes(), GuestAddress(0x40000))
            .unwrap();
        let r = read(&mem, &[desc(0x40000, 44, 0)]);
        assert!(matches!(r, Err(TxError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn test_packet_writable_tx_descriptor_is_malformed() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let r = read(&mem, &[desc(0x40000, 64, VRING_DESC_F_WRITE)]);
        assert!(matches!(r, Err(TxError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn test_packet_rx_buffer_checks_and_split_write() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let ro = q.build_desc_chain(&[desc(0x40000, 64, 0)]).unwrap();
        assert!(RxBuffer::from_chain(ro, &mem).is_err());
        let out = q
            .build_desc_chain(&[desc(0x4000_0000, 64, VRING_DESC_F_WRITE)])
            .unwrap();
        assert!(RxBuffer::from_chain(out, &mem).is_err());
        // Header split over two buffers, payload after it; a (nearly) 4 GiB
        // descriptor is used only up to the cap. (Chains over 4 GiB in
        // total are cut short by virtio-queue itself.)
        let chain = q
            .build_desc_chain(&[
                desc(0x40000, 20, VRING_DESC_F_WRITE),
                desc(0x50000, u32::MAX - 20, VRING_DESC_F_WRITE),
            ])
            .unwrap();
        let rx = RxBuffer::from_chain(chain, &mem).unwrap();
        assert_eq!(rx.max_payload(), MAX_PAYLOAD);
        let pkt = Packet {
            hdr: sample(),
            data: b"hello".to_vec(),
        };
        assert_eq!(rx.write(&mem, &pkt).unwrap(), 49);
        let mut b = [0u8; 49];
        mem.read_slice(&mut b[..20], GuestAddress(0x40000)).unwrap();
        mem.read_slice(&mut b[20..], GuestAddress(0x50000)).unwrap();
        let mut hb = [0u8; HDR_SIZE];
        hb.copy_from_slice(&b[..HDR_SIZE]);
        assert_eq!(Header::from_bytes(&hb), sample());
        assert_eq!(&b[HDR_SIZE..], b"hello");
    }
}
