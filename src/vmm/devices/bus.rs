//! Address buses that route port I/O and MMIO exits to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on a bus. `offset` is relative to the device's base address.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Shared handle to a device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a device could not be inserted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Ranges overlap, or the range is empty or wraps.
    #[error("bus range {base:#x}+{len:#x} overlaps another device or is empty")]
    Overlap {
        /// Base of the refused range.
        base: u64,
        /// Length of the refused range.
        len: u64,
    },
}

/// A set of non-overlapping address ranges, each owned by a device.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attach `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::Overlap { base, len })?;
        let before = self.ranges.range(..end).next_back();
        if let Some((b, (l, _))) = before {
            if b + l > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<(u64, &SharedDevice)> {
        let (base, (size, dev)) = self.ranges.range(..=addr).next_back()?;
        let off = addr - base;
        (off.checked_add(len as u64)? <= *size).then_some((off, dev))
    }

    /// Route a read; returns false when no device owns the address (the
    /// caller then answers with all ones, like an empty bus).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((off, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(off, data);
                true
            }
            None => false,
        }
    }

    /// Route a write; returns false when no device owns the address.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((off, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(off, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn test_bus_routes_by_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 2);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![b'x'])]);
    }

    #[test]
    fn test_bus_misses_outside_and_across_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x100, Arc::new(Mutex::new(Recorder::default())))
            .unwrap();
        let mut four = [0u8; 4];
        assert!(!bus.read(0xfff, &mut four));
        assert!(!bus.read(0x10fe, &mut four), "access straddling the end");
        assert!(!bus.write(0x1100, &[1]));
        assert!(bus.read(0x10fc, &mut four));
    }

    #[test]
    fn test_bus_refuses_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        let d = || -> SharedDevice { Arc::new(Mutex::new(Recorder::default())) };
        bus.insert(0x100, 0x10, d()).unwrap();
        assert!(bus.insert(0x108, 0x10, d()).is_err());
        assert!(bus.insert(0xf8, 0x10, d()).is_err());
        assert!(bus.insert(0x200, 0, d()).is_err());
        assert!(bus.insert(u64::MAX, 2, d()).is_err());
        bus.insert(0x110, 0x10, d()).unwrap();
    }
}
