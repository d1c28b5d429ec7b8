//! virtio-rng: guest entropy from the host's getrandom(2).

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemory};

use super::{device_type, ActivateError, Interrupt, VirtioDevice, VIRTIO_MMIO_INT_VRING};
use crate::vmm::vstate::memory::GuestMem;

const QUEUE_SIZE: u16 = 256;
/// Most bytes served per descriptor chain: a guest cannot make the host
/// generate unbounded entropy in one request.
pub const MAX_REQUEST: u32 = 64 * 1024;

fn fill_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

/// Serve every pending request of the queue. Returns whether the guest needs
/// an interrupt. Chains with a device-readable descriptor are answered with 0
/// bytes; nothing the guest wrote is trusted.
pub fn process_queue<M: GuestMemory>(queue: &mut Queue, mem: &M) -> bool {
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let mut written: u32 = 0;
        let mut buf = Vec::new();
        for desc in chain {
            if !desc.is_write_only() {
                log::debug!("virtio-rng: device-readable descriptor in a request");
                written = 0;
                break;
            }
            let len = desc.len().min(MAX_REQUEST - written);
            buf.resize(len as usize, 0);
            if !fill_random(&mut buf) || mem.write_slice(&buf, desc.addr()).is_err() {
                written = 0;
                break;
            }
            written += len;
            if written == MAX_REQUEST {
                break;
            }
        }
        if queue.add_used(mem, head, written).is_err() {
            log::debug!("virtio-rng: cannot add used entry");
        }
        used_any = true;
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

/// The entropy device.
pub struct Rng {
    active: Option<(GuestMem, Queue, Arc<Interrupt>)>,
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    /// An inactive device.
    pub fn new() -> Self {
        Rng { active: None }
    }

    /// Whether the driver started the device.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Handle a queue notification.
    pub fn process(&mut self) {
        if let Some((mem, queue, interrupt)) = self.active.as_mut() {
            if process_queue(queue, mem) {
                interrupt.signal(VIRTIO_MMIO_INT_VRING);
            }
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn activate(
        &mut self,
        mem: GuestMem,
        mut queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        if queues.len() != 1 {
            return Err(ActivateError::QueueCount {
                expected: 1,
                got: queues.len(),
            });
        }
        let queue = queues.remove(0);
        self.active = Some((mem, queue, interrupt));
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

impl super::ServeQueues for Rng {
    fn serve(&mut self) {
        self.process();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::create_guest_memory;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    fn used(mem: &GuestMem, q: &MockSplitQueue<GuestMem>, i: u64) -> (u32, u32) {
        let base = q.used_addr().0 + 4 + i * 8;
        (
            mem.read_obj(GuestAddress(base)).unwrap(),
            mem.read_obj(GuestAddress(base + 4)).unwrap(),
        )
    }

    #[test]
    fn test_rng_fills_writable_buffers() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(
                0x40000,
                64,
                VRING_DESC_F_WRITE as u16 | VRING_DESC_F_NEXT as u16,
                1,
            )),
            RawDescriptor::from(SplitDescriptor::new(
                0x41000,
                32,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
        ];
        q.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        assert!(process_queue(&mut queue, &mem));
        assert_eq!(used(&mem, &q, 0), (0, 96));
        let mut got = [0u8; 64];
        mem.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
        assert_ne!(got, [0u8; 64], "buffer was filled");
    }

    #[test]
    fn test_rng_answers_readable_descriptor_with_zero_bytes() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let descs = [RawDescriptor::from(SplitDescriptor::new(0x40000, 64, 0, 0))];
        q.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        process_queue(&mut queue, &mem);
        assert_eq!(used(&mem, &q, 0), (0, 0));
    }

    #[test]
    fn test_rng_survives_buffer_outside_memory_and_huge_lengths() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(
                0x4000_0000,
                64,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
            RawDescriptor::from(SplitDescriptor::new(
                0x20000,
                u32::MAX,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
        ];
        q.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        process_queue(&mut queue, &mem);
        assert_eq!(used(&mem, &q, 0), (0, 0), "unmapped buffer gets 0 bytes");
        // A 4 GiB request is served up to the cap, never trusted.
        assert_eq!(used(&mem, &q, 1), (1, MAX_REQUEST));
    }
}
