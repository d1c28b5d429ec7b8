//! Virtio devices over the MMIO transport.
//!
//! Layers, each testable alone: the [`VirtioDevice`] trait the transport
//! drives; per-device queue handlers (plain structs over guest memory); event
//! glue (an event-manager subscriber per device); host backends.

pub mod balloon;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::vstate::memory::GuestMem;

/// Feature bit every modern device offers.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Interrupt status bit: a used ring was updated.
pub const VIRTIO_MMIO_INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 2;

/// Device types (virtio spec 5).
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// Memory balloon (here: free page reporting).
    pub const BALLOON: u32 = 5;
    /// Socket device.
    pub const VSOCK: u32 = 19;
    /// File system device.
    pub const FS: u32 = 26;
}

/// Logs at most a burst of warnings per second, so a hostile guest cannot
/// flood the host log with malformed requests.
#[derive(Debug)]
pub struct LogLimit {
    device: &'static str,
    window: std::time::Instant,
    count: u32,
    suppressed: u32,
}

impl LogLimit {
    const BURST: u32 = 10;

    /// A limiter for `device`'s messages (e.g. "virtio-vsock").
    pub fn new(device: &'static str) -> Self {
        LogLimit {
            device,
            window: std::time::Instant::now(),
            count: 0,
            suppressed: 0,
        }
    }

    /// Log `msg` (a malformed or failed guest request) unless over the limit.
    pub fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        if self.window.elapsed() >= std::time::Duration::from_secs(1) {
            if self.suppressed > 0 {
                log::warn!(
                    "{}: {} more malformed or failed requests",
                    self.device,
                    self.suppressed
                );
            }
            self.window = std::time::Instant::now();
            self.count = 0;
            self.suppressed = 0;
        }
        if self.count < Self::BURST {
            self.count += 1;
            log::warn!("{}: {msg}", self.device);
        } else {
            self.suppressed += 1;
        }
    }
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {0} is not valid")]
    InvalidQueue(usize),
    /// The driver set up too few queues.
    #[error("expected {expected} queues, got {got}")]
    QueueCount {
        /// Queues the device needs.
        expected: usize,
        /// Queues the driver made ready.
        got: usize,
    },
}

/// The interrupt line of one device: status bits plus an irqfd.
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    /// An interrupt that fires `irqfd`.
    pub fn new(irqfd: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    /// Raise the interrupt for `reason` (`VIRTIO_MMIO_INT_*`).
    pub fn signal(&self, reason: u32) {
        self.status.fetch_or(reason, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            log::error!("virtio: cannot raise interrupt: {e}");
        }
    }

    /// Current interrupt status.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The driver acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }
}

/// Copy the bytes of a device's config space at `offset` into `data`;
/// what lies past its end (or a wild offset) reads as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Some(start) = usize::try_from(offset).ok().filter(|s| *s < config.len()) else {
        return;
    };
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

/// What the MMIO transport needs from a device.
pub trait VirtioDevice: Send {
    /// Virtio device type.
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features offered (VERSION_1 is added by the transport).
    fn features(&self) -> u64 {
        0
    }
    /// The driver accepted `features`.
    fn ack_features(&mut self, _features: u64) {}
    /// Read device configuration space.
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    /// Write device configuration space.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Start the device with the driver's queues.
    fn activate(
        &mut self,
        mem: GuestMem,
        queues: Vec<Queue>,
        interrupt: std::sync::Arc<Interrupt>,
    ) -> Result<(), ActivateError>;
    /// Stop the device and forget its queues.
    fn reset(&mut self);
}

/// A device that serves any of its queues' notifications the same way:
/// by running over all of its queues (rng, balloon, fs).
pub trait ServeQueues: Send {
    /// Serve what the driver queued.
    fn serve(&mut self);
}

/// Event glue for a [`ServeQueues`] device: watches its queues'
/// ioeventfds, drains the one that fired, and runs the device.
pub struct QueueHandler<D> {
    name: &'static str,
    device: Arc<Mutex<D>>,
    queue_evts: Vec<EventFd>,
}

impl<D: ServeQueues> QueueHandler<D> {
    /// `name` (e.g. "virtio-fs") for the log; `queue_evts` are the
    /// device's queue notification eventfds.
    pub fn new(name: &'static str, device: Arc<Mutex<D>>, queue_evts: Vec<EventFd>) -> Self {
        QueueHandler {
            name,
            device,
            queue_evts,
        }
    }
}

impl<D: ServeQueues> MutEventSubscriber for QueueHandler<D> {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if !events.event_set().contains(EventSet::IN) {
            return;
        }
        if let Some(evt) = self
            .queue_evts
            .iter()
            .find(|e| e.as_raw_fd() == events.fd())
        {
            let _ = evt.read();
        }
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .serve();
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.queue_evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("{}: cannot watch queue events: {e:?}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_config_bytes_zero_fills_past_the_end() {
        let config = [1u8, 2, 3, 4];
        let mut data = [9u8; 3];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0]);
        read_config_bytes(&config, 4, &mut data);
        assert_eq!(data, [0, 0, 0]);
        read_config_bytes(&config, u64::MAX, &mut data);
        assert_eq!(data, [0, 0, 0]);
    }
}
