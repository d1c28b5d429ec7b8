//! virtio-net (virtio spec 5.1, device type 1) with passt as the host
//! backend.
//!
//! Layers: [`framing`] (passt's length-prefixed frames over a byte stream,
//! bounded buffers both ways), [`backend`] (the [`NetBackend`] trait and
//! [`PasstStream`]), [`device`] (the `VirtioDevice`, config space and the
//! rx/tx queue handlers, plain functions over guest memory),
//! [`event_handler`] (the event-manager glue).
//!
//! # Wire format
//! passt (and QEMU's `-netdev stream`) carry Ethernet frames (no FCS) on a
//! Unix stream socket, each prefixed with its length as a 4-byte big-endian
//! integer. Each virtio buffer starts with the 12-byte `virtio_net_hdr_v1`
//! (VERSION_1 fixes its size): stripped on tx, a zeroed one (with
//! `num_buffers` = 1) prepended on rx.
//!
//! # Features
//! VERSION_1, MAC, STATUS (link down once passt is gone, with a config
//! interrupt) and MTU when one is configured. No checksum or segmentation
//! offloads (the guest computes checksums; passt needs none), no mergeable
//! rx buffers: with an MTU up to 1500 Linux posts 1.5 KiB buffers, and with
//! a larger MTU (passt supports 65520) it switches to "big packets" chains
//! of pages that hold a whole frame, so one chain per frame always
//! suffices. A frame larger than the guest's buffer is dropped (logged,
//! rate-limited), never split.
//!
//! # Hostile guest, failing host
//! Chains are bounded by their own descriptors and by [`MAX_FRAME`]; a
//! malformed chain is logged (rate-limited), returned with 0 bytes, and the
//! device goes on. Memory held is bounded: at most one read buffer
//! ([`framing::READ_BUF`]) from passt and the write high-water mark plus
//! one frame towards it. When the guest posts no rx buffers the socket is
//! not read (no data is dropped from the stream, nothing spins); when passt
//! does not read, the tx queue is not consumed. When passt exits (EOF, HUP,
//! an error) or breaks the framing, the device logs it once, closes the
//! socket, reports the link down ([`NetLinkState`]) and keeps consuming the
//! guest's frames into the void: the VM runs on without a network.

pub mod backend;
pub mod device;
pub mod event_handler;
pub mod framing;

pub use backend::{Interest, NetBackend, PasstStream};
pub use device::{Net, NetLinkState, RXQ, TXQ};
pub use event_handler::NetHandler;

/// Size of `virtio_net_hdr_v1` (with VERSION_1, whatever the features).
pub const HDR_LEN: usize = 12;
/// Size of an Ethernet header.
pub const ETH_HLEN: usize = 14;
/// Largest frame carried either way: a 65535-byte payload and its Ethernet
/// header (passt's own limit). Longer frames from passt are a protocol
/// error; longer tx chains are dropped.
pub const MAX_FRAME: usize = 65535 + ETH_HLEN;
/// Smallest MTU offered (IPv4's minimum; Linux refuses smaller).
pub const MIN_MTU: u16 = 68;

/// Why a virtio-net device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The MTU is below [`MIN_MTU`].
    #[error("network MTU {0} is below the minimum of {MIN_MTU}")]
    InvalidMtu(u16),
    /// The MAC address is zero or multicast.
    #[error("MAC address {} is not a unicast address", format_mac(.0))]
    InvalidMac([u8; 6]),
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
