//! Event glue: drains the queues' ioeventfds and runs the device.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::device::Fs;

/// Drives one virtio-fs device from the event loop.
pub struct FsHandler {
    device: Arc<Mutex<Fs>>,
    queue_evts: Vec<EventFd>,
}

impl FsHandler {
    /// `queue_evts` are the hiprio and request queue notification eventfds.
    pub fn new(device: Arc<Mutex<Fs>>, queue_evts: Vec<EventFd>) -> Self {
        FsHandler { device, queue_evts }
    }
}

impl MutEventSubscriber for FsHandler {
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
            .process();
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.queue_evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("virtio-fs: cannot watch queue events: {e:?}");
            }
        }
    }
}
