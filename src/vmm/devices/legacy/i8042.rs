//! The one i8042 function a microVM needs: the CPU reset line (`reboot=k`).

use crate::vmm::devices::bus::BusDevice;
use crate::vmm::vstate::vcpu::{StopSignal, VcpuStop};

/// Port base of the controller (data 0x60, command/status 0x64).
pub const I8042_BASE: u64 = 0x60;
/// The controller spans 0x60..=0x64.
pub const I8042_LEN: u64 = 5;
const CMD_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

/// Stops the VM when the guest pulses the reset line.
pub struct I8042 {
    reset: StopSignal,
}

impl I8042 {
    /// A controller that raises `reset` on reset.
    pub fn new(reset: StopSignal) -> Self {
        I8042 { reset }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty, so a guest
        // waiting for the controller (kb_wait) never spins.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == CMD_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            self.reset.stop(VcpuStop::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn test_i8042_reset_signals_event() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let signal = StopSignal::new(evt.try_clone().unwrap());
        let mut dev = I8042::new(signal.clone());
        dev.write(0, &[CMD_RESET_CPU]);
        assert!(evt.read().is_err(), "a data port write is not a reset");
        dev.write(CMD_OFFSET, &[0xd1]);
        assert!(evt.read().is_err());
        assert_eq!(signal.reason(), None);
        dev.write(CMD_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
        assert_eq!(signal.reason(), Some(VcpuStop::Reset));
        let mut status = [0xffu8];
        dev.read(CMD_OFFSET, &mut status);
        assert_eq!(status[0], 0);
    }
}
