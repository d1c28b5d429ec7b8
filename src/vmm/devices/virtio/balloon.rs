//! virtio-balloon, for free page reporting: the guest tells the host which
//! of its free pages it has touched, and the host drops them
//! (`MADV_DONTNEED`), so an idle pod holds only the memory it uses.
//!
//! The host never asks the guest to inflate (`num_pages` stays 0): a pod's
//! memory is its own, reserved whole. Pages the guest still puts on the
//! inflate or deflate queue are taken back unread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemory};

use super::{
    device_type, read_config_bytes, ActivateError, Interrupt, LogLimit, VirtioDevice,
    VIRTIO_MMIO_INT_VRING,
};
use crate::vmm::vstate::memory::GuestMem;

/// Feature: the driver reports free pages on a queue of their own.
pub const VIRTIO_BALLOON_F_REPORTING: u64 = 1 << 5;
/// The inflate, deflate and reporting queues, in that order.
const QUEUE_SIZES: [u16; 3] = [64, 64, 64];
const REPORTING_QUEUE: usize = 2;
/// The guest's page granule for reports: ranges are whole 4 KiB pages.
const PAGE: u64 = 4096;

/// Drop the host pages behind every range of the reporting queue's pending
/// chains. Returns (resident bytes dropped, whether the guest needs an
/// interrupt).
/// A range is a device-writable descriptor of whole pages inside guest
/// RAM; anything else (a wild address, a length past a region, a partial
/// page) is skipped and logged, never trusted.
pub fn process_reports(queue: &mut Queue, mem: &GuestMem, limit: &mut LogLimit) -> (u64, bool) {
    let mut dropped = 0u64;
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        for desc in chain {
            let (addr, len) = (desc.addr(), u64::from(desc.len()));
            if !desc.is_write_only() || len == 0 || addr.0 % PAGE != 0 || len % PAGE != 0 {
                limit.warn(format_args!(
                    "reported range {:#x}+{len:#x} is not whole pages the device may write",
                    addr.0
                ));
                continue;
            }
            match discard(mem, addr, len) {
                Ok(resident) => dropped += resident,
                Err(e) => limit.warn(format_args!(
                    "cannot drop reported range {:#x}+{len:#x}: {e}",
                    addr.0
                )),
            }
        }
        if queue.add_used(mem, head, 0).is_err() {
            limit.warn(format_args!("cannot add a used entry"));
        }
        used_any = true;
    }
    (
        dropped,
        used_any && queue.needs_notification(mem).unwrap_or(true),
    )
}

/// Take back every pending chain of an inflate or deflate queue unread.
fn return_all(queue: &mut Queue, mem: &GuestMem) -> bool {
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let _ = queue.add_used(mem, chain.head_index(), 0);
        used_any = true;
    }
    used_any && queue.needs_notification(mem).unwrap_or(true)
}

/// `MADV_DONTNEED` the host mapping of guest range `addr..addr+len`, which
/// must lie inside one RAM region. Returns the bytes of it that were
/// resident (the memory actually given back).
fn discard(mem: &GuestMem, addr: GuestAddress, len: u64) -> Result<u64, String> {
    let len = usize::try_from(len).map_err(|_| "too long".to_string())?;
    let slice = mem
        .get_slice(addr, len)
        .map_err(|_| "not inside guest RAM".to_string())?;
    let guard = slice.ptr_guard_mut();
    let ptr = guard.as_ptr();
    let pages = len / PAGE as usize;
    // A report is at most one queue's worth of ranges; count its resident
    // pages a chunk at a time so the vector stays small.
    let mut resident = 0u64;
    let mut flags = [0u8; 512];
    for start in (0..pages).step_by(flags.len()) {
        let n = flags.len().min(pages - start);
        // SAFETY: the range lies inside the live mapping checked above;
        // `flags` has a byte for each of its `n` pages.
        let rc = unsafe {
            libc::mincore(
                ptr.add(start * PAGE as usize).cast(),
                n * PAGE as usize,
                flags.as_mut_ptr(),
            )
        };
        if rc == 0 {
            resident += flags[..n].iter().filter(|b| *b & 1 == 1).count() as u64 * PAGE;
        }
    }
    // SAFETY: the range is part of a live anonymous mapping owned by `mem`
    // (checked above); dropping its pages only makes them read back as
    // zeros, which is what the guest asked for: they are free to it.
    let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(resident)
}

/// The balloon device.
pub struct Balloon {
    acked: u64,
    active: Option<(GuestMem, Vec<Queue>, Arc<Interrupt>)>,
    /// Guest memory handed back to the host so far, in bytes.
    returned: Arc<AtomicU64>,
    limit: LogLimit,
}

impl Default for Balloon {
    fn default() -> Self {
        Self::new()
    }
}

impl Balloon {
    /// An inactive device.
    pub fn new() -> Self {
        Balloon {
            acked: 0,
            active: None,
            returned: Arc::new(AtomicU64::new(0)),
            limit: LogLimit::new("virtio-balloon"),
        }
    }

    /// The running count of bytes given back, readable from any thread.
    pub fn returned(&self) -> Arc<AtomicU64> {
        self.returned.clone()
    }

    /// Serve the queues the driver notified (any of them: the work is
    /// the same and cheap when a queue is empty).
    pub fn process(&mut self) {
        let Some((mem, queues, interrupt)) = self.active.as_mut() else {
            return;
        };
        let mut notify = false;
        for (i, queue) in queues.iter_mut().enumerate() {
            if i == REPORTING_QUEUE {
                let (dropped, n) = process_reports(queue, mem, &mut self.limit);
                self.returned.fetch_add(dropped, Ordering::Relaxed);
                notify |= n;
            } else {
                notify |= return_all(queue, mem);
            }
        }
        if notify {
            interrupt.signal(VIRTIO_MMIO_INT_VRING);
        }
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        device_type::BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_BALLOON_F_REPORTING
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // num_pages (always 0: never inflate), then actual.
        read_config_bytes(&[0u8; 8], offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMem,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let expected = if self.acked & VIRTIO_BALLOON_F_REPORTING != 0 {
            3
        } else {
            2
        };
        if queues.len() != expected {
            return Err(ActivateError::QueueCount {
                expected,
                got: queues.len(),
            });
        }
        self.active = Some((mem, queues, interrupt));
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked = 0;
    }
}

impl super::ServeQueues for Balloon {
    fn serve(&mut self) {
        self.process();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::{create_guest_memory, resident_bytes};
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::Bytes;
    use vmm_sys_util::eventfd::EventFd;

    const W: u16 = VRING_DESC_F_WRITE as u16;
    const N: u16 = VRING_DESC_F_NEXT as u16;

    fn used_count(mem: &GuestMem, q: &MockSplitQueue<GuestMem>) -> u16 {
        mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap()
    }

    #[test]
    fn test_reported_pages_are_dropped_and_read_back_as_zero() {
        let mem = create_guest_memory(16 << 20).unwrap();
        mem.write_slice(&vec![7u8; 6 << 20], GuestAddress(4 << 20))
            .unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(4 << 20, 2 << 20, W | N, 1)),
            RawDescriptor::from(SplitDescriptor::new(8 << 20, 4 << 20, W, 0)),
        ];
        q.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        let before = resident_bytes(&mem);
        assert!(before >= 6 << 20);
        let (dropped, notify) = process_reports(&mut queue, &mem, &mut LogLimit::new("test"));
        // Counted as given back: what was resident, i.e. 2 MiB at 4 MiB
        // and the written half of the 4 MiB at 8 MiB.
        assert_eq!(dropped, 4 << 20);
        assert!(notify);
        assert_eq!(used_count(&mem, &q), 1);
        assert!(resident_bytes(&mem) <= before - (4 << 20));
        let mut b = [1u8; 16];
        mem.read_slice(&mut b, GuestAddress(9 << 20)).unwrap();
        assert_eq!(b, [0u8; 16], "a dropped page reads back as zero");
        mem.read_slice(&mut b, GuestAddress(6 << 20)).unwrap();
        assert_eq!(b, [7u8; 16], "a page between the ranges is kept");
    }

    #[test]
    fn test_hostile_ranges_are_skipped_and_still_answered() {
        let mem = create_guest_memory(16 << 20).unwrap();
        mem.write_slice(&vec![7u8; 1 << 20], GuestAddress(4 << 20))
            .unwrap();
        let q = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let descs = [
            // Past the end of RAM, and running off its end.
            RawDescriptor::from(SplitDescriptor::new(1 << 40, 4096, W | N, 1)),
            RawDescriptor::from(SplitDescriptor::new(12 << 20, !4095, W | N, 2)),
            // Not page-aligned, and not whole pages.
            RawDescriptor::from(SplitDescriptor::new((4 << 20) + 512, 4096, W | N, 3)),
            RawDescriptor::from(SplitDescriptor::new(4 << 20, 100, W | N, 4)),
            // Device-readable.
            RawDescriptor::from(SplitDescriptor::new(4 << 20, 4096, 0, 0)),
        ];
        q.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        let (dropped, _) = process_reports(&mut queue, &mem, &mut LogLimit::new("test"));
        assert_eq!(dropped, 0);
        assert_eq!(used_count(&mem, &q), 1, "the chain is still given back");
        let mut b = [0u8; 4];
        mem.read_slice(&mut b, GuestAddress(4 << 20)).unwrap();
        assert_eq!(b, [7u8; 4], "nothing was dropped");
    }

    #[test]
    fn test_activation_needs_the_reporting_queue_only_when_negotiated() {
        let mem = create_guest_memory(1 << 20).unwrap();
        let irq = || Arc::new(Interrupt::new(EventFd::new(0).unwrap()));
        let queues = |n| (0..n).map(|_| Queue::new(64).unwrap()).collect::<Vec<_>>();
        let mut b = Balloon::new();
        assert!(b.activate(mem.clone(), queues(2), irq()).is_ok());
        b.reset();
        b.ack_features(VIRTIO_BALLOON_F_REPORTING);
        assert!(b.activate(mem.clone(), queues(2), irq()).is_err());
        assert!(b.activate(mem, queues(3), irq()).is_ok());
        let mut cfg = [9u8; 8];
        b.read_config(0, &mut cfg);
        assert_eq!(cfg, [0u8; 8], "the host never asks to inflate");
    }
}
