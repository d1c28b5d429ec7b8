//! Event glue: an event-manager subscriber that watches the queue eventfds
//! and whatever fds the backend asks for, runs the device, and keeps the
//! epoll set in step with the backend's connections.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::device::Vsock;
use super::muxer::{FdInterest, VsockBackend};

/// Drives one vsock device from the event loop.
pub struct VsockHandler<B: VsockBackend> {
    device: Arc<Mutex<Vsock<B>>>,
    queue_evts: Vec<EventFd>,
    /// Backend fds in the epoll set, with what they are watched for.
    watched: HashMap<RawFd, (bool, bool)>,
}

impl<B: VsockBackend> VsockHandler<B> {
    /// `queue_evts` are the rx, tx and event queue notification eventfds.
    pub fn new(device: Arc<Mutex<Vsock<B>>>, queue_evts: Vec<EventFd>) -> Self {
        VsockHandler {
            device,
            queue_evts,
            watched: HashMap::new(),
        }
    }

    /// Make the epoll set match what the backend wants, then let it close
    /// the fds it no longer needs (only once they are out of the set, so a
    /// reused fd number is never confused with an old one).
    fn sync_fds(&mut self, dev: &mut Vsock<B>, ops: &mut EventOps) {
        let want: HashMap<RawFd, (bool, bool)> = dev
            .backend()
            .interests()
            .into_iter()
            .map(
                |FdInterest {
                     fd,
                     readable,
                     writable,
                 }| (fd, (readable, writable)),
            )
            .collect();
        let old: Vec<(RawFd, (bool, bool))> = self.watched.iter().map(|(k, v)| (*k, *v)).collect();
        for (fd, was) in old {
            match want.get(&fd) {
                None => {
                    if let Err(e) = ops.remove(Events::empty_raw(fd)) {
                        log::debug!("virtio-vsock: cannot unwatch fd {fd}: {e:?}");
                    }
                    self.watched.remove(&fd);
                }
                Some(&now) if now != was => {
                    if let Err(e) = ops.modify(Events::new_raw(fd, event_set(now))) {
                        log::debug!("virtio-vsock: cannot rewatch fd {fd}: {e:?}");
                    }
                    self.watched.insert(fd, now);
                }
                Some(_) => {}
            }
        }
        for (fd, now) in want {
            if self.watched.contains_key(&fd) {
                continue;
            }
            match ops.add(Events::new_raw(fd, event_set(now))) {
                Ok(()) => {
                    self.watched.insert(fd, now);
                }
                Err(e) => log::warn!("virtio-vsock: cannot watch fd {fd}: {e:?}"),
            }
        }
        dev.backend_mut().release_closed();
    }
}

fn event_set((readable, writable): (bool, bool)) -> EventSet {
    let mut s = EventSet::empty();
    if readable {
        s |= EventSet::IN;
    }
    if writable {
        s |= EventSet::OUT;
    }
    s
}

impl<B: VsockBackend + 'static> MutEventSubscriber for VsockHandler<B> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        let set = events.event_set();
        let device = self.device.clone();
        let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
        let queue = self.queue_evts.iter().position(|e| e.as_raw_fd() == fd);
        match queue {
            // rx (new buffers), tx (new packets) or the unused event queue:
            // either way both queues are run below.
            Some(i) => {
                let _ = self.queue_evts[i].read();
            }
            None => {
                let broken = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
                dev.backend_mut().handle_event(
                    fd,
                    broken || set.contains(EventSet::IN),
                    broken || set.contains(EventSet::OUT),
                );
            }
        }
        dev.process();
        self.sync_fds(&mut dev, ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.queue_evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("virtio-vsock: cannot watch queue events: {e:?}");
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
    use crate::vmm::devices::virtio::vsock::device::tests::{guest_hdr, rd, TempDir};
    use crate::vmm::devices::virtio::vsock::device::{GUEST_CID, TXQ};
    use crate::vmm::devices::virtio::vsock::muxer::{Muxer, HOST_PORT_BASE};
    use crate::vmm::devices::virtio::vsock::packet::{op, Header, HDR_SIZE, HOST_CID};
    use crate::vmm::devices::virtio::{Interrupt, VirtioDevice};
    use crate::vmm::vstate::memory::{create_guest_memory, GuestMem};
    use event_manager::{EventManager, SubscriberOps};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    type Sub = Arc<Mutex<dyn MutEventSubscriber + Send>>;

    fn used(mem: &GuestMem, q: &MockSplitQueue<GuestMem>, i: u64) -> Option<(u32, u32)> {
        let idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
        if u64::from(idx) <= i {
            return None;
        }
        let e = q.used_addr().0 + 4 + i * 8;
        Some((
            mem.read_obj(GuestAddress(e)).unwrap(),
            mem.read_obj(GuestAddress(e + 4)).unwrap(),
        ))
    }

    fn rx_packet(mem: &GuestMem, id: u32, len: u32) -> (Header, Vec<u8>) {
        let addr = 0x40_0000 + u64::from(id) * 0x1000;
        let mut hb = [0u8; HDR_SIZE];
        mem.read_slice(&mut hb, GuestAddress(addr)).unwrap();
        let mut data = vec![0u8; len as usize - HDR_SIZE];
        mem.read_slice(&mut data, GuestAddress(addr + HDR_SIZE as u64))
            .unwrap();
        (Header::from_bytes(&hb), data)
    }

    #[test]
    fn test_vsock_handler_host_connect_handshake() {
        let dir = TempDir::new("handler");
        let uds = dir.0.join("v.sock");
        let mem = create_guest_memory(16 << 20).unwrap();
        let rxm = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let txm = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let evm = MockSplitQueue::create(&mem, GuestAddress(0x3_0000), 16);
        for i in 0..4u16 {
            let addr = 0x40_0000 + u64::from(i) * 0x1000;
            rxm.add_desc_chains(&[rd(addr, 0x1000, VRING_DESC_F_WRITE, 0)], i)
                .unwrap();
        }
        let dev = Arc::new(Mutex::new(Vsock::new(
            GUEST_CID,
            Muxer::new(&uds, GUEST_CID).unwrap(),
        )));
        let irqfd = EventFd::new(EFD_NONBLOCK).unwrap();
        let queues = vec![
            rxm.create_queue().unwrap(),
            txm.create_queue().unwrap(),
            evm.create_queue().unwrap(),
        ];
        dev.lock()
            .unwrap()
            .activate(
                mem.clone(),
                queues,
                Arc::new(Interrupt::new(irqfd.try_clone().unwrap())),
            )
            .unwrap();
        let evts: Vec<EventFd> = (0..3)
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect();
        let tx_evt = evts[TXQ].try_clone().unwrap();
        let mut em: EventManager<Sub> = EventManager::new().unwrap();
        em.add_subscriber(Arc::new(Mutex::new(VsockHandler::new(dev.clone(), evts))));

        // The host asks for guest port 52; data after the line is stream data.
        let mut host = UnixStream::connect(&uds).unwrap();
        host.write_all(b"CONNECT 52\nping").unwrap();
        for _ in 0..20 {
            if used(&mem, &rxm, 0).is_some() {
                break;
            }
            em.run_with_timeout(50).unwrap();
        }
        let (id, len) = used(&mem, &rxm, 0).expect("REQUEST delivered");
        let (req, _) = rx_packet(&mem, id, len);
        assert_eq!(req.op, op::REQUEST);
        assert_eq!((req.src_cid, req.dst_cid), (HOST_CID, GUEST_CID));
        assert_eq!((req.src_port, req.dst_port), (HOST_PORT_BASE, 52));
        assert!(irqfd.read().unwrap() > 0, "interrupt raised");

        // The guest accepts.
        let resp = guest_hdr(52, HOST_PORT_BASE, op::RESPONSE);
        mem.write_slice(&resp.to_bytes(), GuestAddress(0x20_0000))
            .unwrap();
        txm.add_desc_chains(&[rd(0x20_0000, HDR_SIZE as u32, 0, 0)], 0)
            .unwrap();
        tx_evt.write(1).unwrap();
        for _ in 0..20 {
            if used(&mem, &rxm, 1).is_some() {
                break;
            }
            em.run_with_timeout(50).unwrap();
        }
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        BufReader::new(&host).read_line(&mut line).unwrap();
        assert_eq!(line, format!("OK {HOST_PORT_BASE}\n"));
        // What followed the CONNECT line reaches the guest.
        let (id, len) = used(&mem, &rxm, 1).expect("data delivered");
        let (rw, data) = rx_packet(&mem, id, len);
        assert_eq!(rw.op, op::RW);
        assert_eq!(data, b"ping");
    }
}
