//! The 16550 UART at COM1 (vm-superio), raising IRQ 4 through an irqfd.

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::devices::bus::BusDevice;

/// COM1.
pub const COM1_BASE: u64 = 0x3f8;
/// Eight registers.
pub const COM1_LEN: u64 = 8;
/// ISA interrupt of COM1.
pub const COM1_IRQ: u32 = 4;

/// An interrupt line backed by an eventfd (a KVM irqfd).
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The console UART.
pub struct SerialDevice<W: Write + Send> {
    serial: Serial<EventFdTrigger, vm_superio::serial::NoEvents, W>,
}

impl<W: Write + Send> SerialDevice<W> {
    /// A UART that raises `irq` and writes what the guest sends to `out`.
    pub fn new(irq: EventFd, out: W) -> Self {
        SerialDevice {
            serial: Serial::new(EventFdTrigger(irq), out),
        }
    }

    /// Feed host input (the terminal, with `--console`) to the guest.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl<W: Write + Send> BusDevice for SerialDevice<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            data[0] = self.serial.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            if let Err(e) = self.serial.write(offset as u8, data[0]) {
                log::debug!("serial write: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_serial_transmits_bytes_and_ignores_wide_access() {
        let out = Shared::default();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(irq, out.clone());
        dev.write(0, b"h");
        dev.write(0, b"i");
        dev.write(0, b"xy");
        assert_eq!(&*out.0.lock().unwrap(), b"hi");
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }
}
