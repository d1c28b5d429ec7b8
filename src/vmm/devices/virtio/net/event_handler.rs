//! Event glue: an event-manager subscriber that watches the queue eventfds
//! and the backend's socket, runs the device, and keeps the epoll set in
//! step with what the backend wants.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::backend::{Interest, NetBackend};
use super::device::Net;

/// Drives one virtio-net device from the event loop.
pub struct NetHandler<B: NetBackend> {
    device: Arc<Mutex<Net<B>>>,
    queue_evts: Vec<EventFd>,
    /// The backend fd in the epoll set, with what it is watched for.
    watched: Option<(RawFd, EventSet)>,
}

impl<B: NetBackend> NetHandler<B> {
    /// `queue_evts` are the rx and tx queue notification eventfds.
    pub fn new(device: Arc<Mutex<Net<B>>>, queue_evts: Vec<EventFd>) -> Self {
        NetHandler {
            device,
            queue_evts,
            watched: None,
        }
    }

    /// Make the epoll set match the backend's interest; once its fd is out
    /// of the set, let a dead backend close it (so a reused fd number is
    /// never confused with the old one). An fd watched for nothing still
    /// reports EPOLLHUP/EPOLLERR, so a passt that dies while the guest
    /// takes no frames is noticed too.
    fn sync_fds(&mut self, dev: &mut Net<B>, ops: &mut EventOps) {
        let want = dev.backend().interest().map(
            |Interest {
                 fd,
                 readable,
                 writable,
             }| {
                let mut set = EventSet::empty();
                if readable {
                    set |= EventSet::IN;
                }
                if writable {
                    set |= EventSet::OUT;
                }
                (fd, set)
            },
        );
        match (self.watched, want) {
            (Some(old), Some(new)) if old == new => {}
            (Some((old_fd, _)), Some((fd, set))) if old_fd == fd => {
                if let Err(e) = ops.modify(Events::new_raw(fd, set)) {
                    log::debug!("virtio-net: cannot rewatch fd {fd}: {e:?}");
                }
                self.watched = want;
            }
            (old, new) => {
                if let Some((fd, _)) = old {
                    if let Err(e) = ops.remove(Events::empty_raw(fd)) {
                        log::debug!("virtio-net: cannot unwatch fd {fd}: {e:?}");
                    }
                    self.watched = None;
                }
                if let Some((fd, set)) = new {
                    match ops.add(Events::new_raw(fd, set)) {
                        Ok(()) => self.watched = new,
                        Err(e) => log::warn!("virtio-net: cannot watch fd {fd}: {e:?}"),
                    }
                }
            }
        }
        if self.watched.is_none() {
            dev.backend_mut().release();
        }
    }
}

impl<B: NetBackend + 'static> MutEventSubscriber for NetHandler<B> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        let set = events.event_set();
        let device = self.device.clone();
        let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(evt) = self.queue_evts.iter().find(|e| e.as_raw_fd() == fd) {
            // New rx buffers or tx frames: both queues are run below.
            let _ = evt.read();
        } else if self.watched.is_some_and(|(w, _)| w == fd) {
            dev.backend_mut().handle_event(
                set.contains(EventSet::IN),
                set.contains(EventSet::OUT),
                set.intersects(EventSet::HANG_UP | EventSet::ERROR),
            );
        }
        dev.process();
        self.sync_fds(&mut dev, ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.queue_evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("virtio-net: cannot watch queue events: {e:?}");
            }
        }
        let device = self.device.clone();
        let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_fds(&mut dev, ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::net::backend::PasstStream;
    use crate::vmm::devices::virtio::net::device::tests::{eth_frame, framed, rd, MAC};
    use crate::vmm::devices::virtio::net::HDR_LEN;
    use crate::vmm::devices::virtio::{Interrupt, VirtioDevice};
    use crate::vmm::vstate::memory::{create_guest_memory, GuestMem};
    use event_manager::{EventManager, SubscriberOps};
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    type Sub = Arc<Mutex<dyn MutEventSubscriber + Send>>;

    fn used_len(mem: &GuestMem, q: &MockSplitQueue<GuestMem>, i: u64) -> Option<u32> {
        let idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
        (u64::from(idx) > i).then(|| {
            mem.read_obj(GuestAddress(q.used_addr().0 + 8 + i * 8))
                .unwrap()
        })
    }

    #[test]
    fn test_net_handler_delivers_frames_and_survives_passt_exit() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let rxm = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let txm = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        for i in 0..4u16 {
            let addr = 0x40_0000 + u64::from(i) * 0x1000;
            rxm.add_desc_chains(&[rd(addr, 0x1000, VRING_DESC_F_WRITE, 0)], i)
                .unwrap();
        }
        let (ours, mut passt) = UnixStream::pair().unwrap();
        let dev = Arc::new(Mutex::new(
            Net::new(MAC, None, PasstStream::new(ours).unwrap()).unwrap(),
        ));
        let link = dev.lock().unwrap().link_state();
        let irqfd = EventFd::new(EFD_NONBLOCK).unwrap();
        dev.lock()
            .unwrap()
            .activate(
                mem.clone(),
                vec![rxm.create_queue().unwrap(), txm.create_queue().unwrap()],
                Arc::new(Interrupt::new(irqfd.try_clone().unwrap())),
            )
            .unwrap();
        let evts: Vec<EventFd> = (0..2)
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect();
        let tx_evt = evts[1].try_clone().unwrap();
        let mut em: EventManager<Sub> = EventManager::new().unwrap();
        em.add_subscriber(Arc::new(Mutex::new(NetHandler::new(dev.clone(), evts))));

        // A frame from passt reaches the guest and raises the interrupt.
        let frame = eth_frame(80, 1);
        passt.write_all(&framed(&frame)).unwrap();
        for _ in 0..20 {
            if used_len(&mem, &rxm, 0).is_some() {
                break;
            }
            em.run_with_timeout(50).unwrap();
        }
        assert_eq!(used_len(&mem, &rxm, 0), Some((HDR_LEN + 80) as u32));
        assert!(irqfd.read().unwrap() > 0, "interrupt raised");

        // passt exits: noticed, flagged, the socket leaves the epoll set,
        // and the loop goes quiet (no spinning on a dead fd).
        drop(passt);
        for _ in 0..20 {
            if link.is_down() {
                break;
            }
            em.run_with_timeout(50).unwrap();
        }
        assert!(link.is_down());
        assert_eq!(
            em.run_with_timeout(100).unwrap(),
            0,
            "nothing fires any more"
        );

        // The guest still sends: its frames are taken and dropped.
        mem.write_slice(&eth_frame(HDR_LEN + 60, 0), GuestAddress(0x20_0000))
            .unwrap();
        txm.add_desc_chains(&[rd(0x20_0000, (HDR_LEN + 60) as u32, 0, 0)], 0)
            .unwrap();
        tx_evt.write(1).unwrap();
        em.run_with_timeout(100).unwrap();
        assert_eq!(used_len(&mem, &txm, 0), Some(0));
    }
}
