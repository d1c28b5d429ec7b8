//! The virtio-mmio transport (virtio 1.2, section 4.2, register layout version 2).

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::vmm::devices::bus::BusDevice;
use crate::vmm::vstate::memory::GuestMem;

/// Size of one device's register window.
pub const MMIO_WINDOW: u64 = 0x1000;
/// "virt" in little endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// Offset of the queue notify register (for ioeventfds).
pub const QUEUE_NOTIFY: u64 = 0x050;
const VENDOR_ID: u32 = 0x5045_4150; // "PAEP"

const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_FAILED: u32 = 0x80;

/// One device behind an MMIO register window.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMem,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    activated: bool,
    config_generation: u32,
}

impl MmioTransport {
    /// Wrap `device`; `irqfd` is its interrupt line.
    pub fn new(
        mem: GuestMem,
        device: Arc<Mutex<dyn VirtioDevice>>,
        irqfd: EventFd,
    ) -> std::io::Result<Self> {
        let sizes: Vec<u16> = device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue_max_sizes()
            .to_vec();
        let mut queues = Vec::with_capacity(sizes.len());
        let mut queue_evts = Vec::with_capacity(sizes.len());
        for size in sizes {
            queues
                .push(Queue::new(size).map_err(|e| std::io::Error::other(format!("queue: {e}")))?);
            queue_evts.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(MmioTransport {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irqfd)),
            queues,
            queue_evts,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            activated: false,
            config_generation: 0,
        })
    }

    /// The eventfds written when the guest notifies each queue (the VMM
    /// registers them as ioeventfds on `QUEUE_NOTIFY`).
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// Whether the device is running.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    fn device(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn features(&self) -> u64 {
        self.device().features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue registers are writable only before the driver says DRIVER_OK.
        if self.activated {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        if self.activated {
            self.device().reset();
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.activated = false;
        self.status = 0;
        self.queue_sel = 0;
        self.driver_features = 0;
        self.interrupt.ack(u32::MAX);
    }

    fn set_status(&mut self, status: u32) {
        if status == 0 {
            self.reset();
            return;
        }
        self.status = status;
        let ready = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
        if !self.activated && status & ready == ready && status & STATUS_FAILED == 0 {
            self.activate();
        }
    }

    fn activate(&mut self) {
        // The device gets its own copies; the transport keeps the registers.
        let queues: Vec<Queue> = self
            .queues
            .iter()
            .filter(|q| q.ready())
            .filter_map(|q| Queue::try_from(q.state()).ok())
            .collect();
        let valid = queues.iter().all(|q| q.is_valid(&self.mem));
        if !valid {
            log::warn!("virtio-mmio: driver made an invalid queue ready; device needs reset");
            self.status |= 0x40; // DEVICE_NEEDS_RESET
            return;
        }
        let mem = self.mem.clone();
        let interrupt = self.interrupt.clone();
        let features = self.driver_features;
        let mut device = self.device();
        device.ack_features(features);
        match device.activate(mem, queues, interrupt) {
            Ok(()) => {
                drop(device);
                self.activated = true;
            }
            Err(e) => {
                drop(device);
                log::warn!("virtio-mmio: cannot activate device: {e}");
                self.status |= 0x40;
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            0x000 => MMIO_MAGIC,
            0x004 => 2,
            0x008 => self.device().device_type(),
            0x00c => VENDOR_ID,
            0x010 => match self.device_features_sel {
                0 => self.features() as u32,
                1 => (self.features() >> 32) as u32,
                _ => 0,
            },
            0x034 => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            0x044 => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            0x060 => self.interrupt.status(),
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => {
                log::debug!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 => {
                if self.status & STATUS_FEATURES_OK == 0 {
                    let shift = match self.driver_features_sel {
                        0 => 0,
                        1 => 32,
                        _ => return,
                    };
                    let mask = 0xffff_ffffu64 << shift;
                    let offered = self.features();
                    self.driver_features =
                        (self.driver_features & !mask) | ((u64::from(v) << shift) & offered);
                }
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(v as u16);
                }
            }
            0x044 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            QUEUE_NOTIFY => match self.queue_evts.get(v as usize) {
                Some(evt) => {
                    let _ = evt.write(1);
                }
                None => log::debug!("virtio-mmio: notify of unknown queue {v}"),
            },
            0x064 => self.interrupt.ack(v),
            0x070 => self.set_status(v),
            0x080 => self
                .selected_queue()
                .map_or((), |q| q.set_desc_table_address(Some(v), None)),
            0x084 => self
                .selected_queue()
                .map_or((), |q| q.set_desc_table_address(None, Some(v))),
            0x090 => self
                .selected_queue()
                .map_or((), |q| q.set_avail_ring_address(Some(v), None)),
            0x094 => self
                .selected_queue()
                .map_or((), |q| q.set_avail_ring_address(None, Some(v))),
            0x0a0 => self
                .selected_queue()
                .map_or((), |q| q.set_used_ring_address(Some(v), None)),
            0x0a4 => self
                .selected_queue()
                .map_or((), |q| q.set_used_ring_address(None, Some(v))),
            _ => log::debug!("virtio-mmio: write of unknown register {offset:#x}"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device().read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            log::debug!(
                "virtio-mmio: {}-byte read at {offset:#x} ignored",
                data.len()
            );
            data.fill(0);
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= 0x100 {
            self.device().write_config(offset - 0x100, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            log::debug!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            );
            return;
        };
        if offset % 4 == 0 {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::rng::Rng;
    use crate::vmm::vstate::memory::create_guest_memory;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn transport() -> (MmioTransport, Arc<Mutex<Rng>>, GuestMem) {
        let mem = create_guest_memory(1 << 20).unwrap();
        let rng = Arc::new(Mutex::new(Rng::new()));
        let t = MmioTransport::new(
            mem.clone(),
            rng.clone(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        )
        .unwrap();
        (t, rng, mem)
    }

    #[test]
    fn test_mmio_identity_registers() {
        let (mut t, _, _) = transport();
        assert_eq!(rd(&mut t, 0x000), MMIO_MAGIC);
        assert_eq!(rd(&mut t, 0x004), 2);
        assert_eq!(rd(&mut t, 0x008), super::super::device_type::RNG);
        wr(&mut t, 0x014, 1);
        assert_eq!(rd(&mut t, 0x010), 1, "VERSION_1 is offered");
        assert_eq!(rd(&mut t, 0x034), 256);
        // Narrow and unaligned accesses are ignored, not trusted.
        let mut two = [0xaau8; 2];
        t.read(0x000, &mut two);
        assert_eq!(two, [0, 0]);
        t.write(0x070, &[0xff]);
        assert_eq!(rd(&mut t, 0x070), 0);
    }

    #[test]
    fn test_mmio_driver_handshake_activates_device() {
        let (mut t, rng, mem) = transport();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        wr(&mut t, 0x070, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, 0x024, 1);
        wr(&mut t, 0x020, 1);
        wr(
            &mut t,
            0x070,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        wr(&mut t, 0x030, 0);
        wr(&mut t, 0x038, 16);
        wr(&mut t, 0x080, q.desc_table_addr().0 as u32);
        wr(&mut t, 0x090, q.avail_addr().0 as u32);
        wr(&mut t, 0x0a0, q.used_addr().0 as u32);
        wr(&mut t, 0x044, 1);
        assert_eq!(rd(&mut t, 0x044), 1);
        wr(
            &mut t,
            0x070,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        assert!(t.is_activated());
        assert!(rng.lock().unwrap().is_active());
        // Queue registers are frozen once running.
        wr(&mut t, 0x038, 8);
        // A notify lands on the queue's eventfd.
        wr(&mut t, QUEUE_NOTIFY, 0);
        assert_eq!(t.queue_evts()[0].read().unwrap(), 1);
        wr(&mut t, QUEUE_NOTIFY, 7);
        // Reset stops the device.
        wr(&mut t, 0x070, 0);
        assert!(!t.is_activated());
        assert!(!rng.lock().unwrap().is_active());
    }

    #[test]
    fn test_mmio_refuses_invalid_queue() {
        let (mut t, rng, _) = transport();
        wr(
            &mut t,
            0x070,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        wr(&mut t, 0x038, 16);
        // Rings far outside guest memory.
        wr(&mut t, 0x084, 0xffff);
        wr(&mut t, 0x044, 1);
        wr(
            &mut t,
            0x070,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        assert!(!t.is_activated());
        assert!(!rng.lock().unwrap().is_active());
        assert_ne!(rd(&mut t, 0x070) & 0x40, 0, "DEVICE_NEEDS_RESET");
    }
}
