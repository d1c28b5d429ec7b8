//! virtio-vsock (virtio spec 5.10) with a Unix-socket host backend.
//!
//! Layers: [`packet`] (header parsing over descriptor chains), [`muxer`]
//! (the host backend: connections, flow control), [`device`] (the
//! `VirtioDevice` and the rx/tx queue handlers), [`event_handler`] (the
//! event-manager glue).

pub mod device;
pub mod event_handler;
pub mod muxer;
pub mod packet;

pub use device::{Vsock, GUEST_CID};
pub use event_handler::VsockHandler;
pub use muxer::{Muxer, VsockBackend};
