//! Devices the guest sees: legacy port I/O devices and virtio over MMIO.

pub mod bus;
pub mod legacy;
pub mod virtio;
