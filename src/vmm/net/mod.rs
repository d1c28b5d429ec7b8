//! The pod's network on the host: passt (the user-mode network stack behind
//! the virtio-net device) and the host facts it mirrors.
//!
//! This lives in the VMM (not the sandbox layer) because passt is the
//! virtio-net device's backend: the launcher and the device agree on one
//! wire format and one lifetime (passt dies with the VMM), and the VMM's
//! tests run both against the real program. The sandbox/monitor only
//! chooses ports and addresses and hands the connected stream to
//! `VmConfig::net`.

pub mod host;
pub mod passt;

pub use host::{default_route_ipv4, HostIpv4};
pub use passt::{GuestIpv4, Passt, PasstConfig, PasstError, PortForward, Protocol, Uplink};
