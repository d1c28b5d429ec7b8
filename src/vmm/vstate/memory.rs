//! Guest physical memory: one `GuestMemoryMmap`, RAM laid out around the
//! 32-bit MMIO hole.

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Start of the MMIO hole below 4 GiB (devices live here, never RAM).
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the MMIO hole; RAM beyond the hole resumes here.
pub const MMIO_HOLE_END: u64 = 1 << 32;

/// Guest memory as used throughout the VMM.
pub type GuestMem = GuestMemoryMmap<()>;

/// The RAM ranges for `size` bytes of guest memory: everything below the MMIO
/// hole first, the rest above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(MMIO_HOLE_END), (size - low) as usize));
    }
    ranges
}

/// Map `size` bytes of anonymous guest memory. Pages are not touched: the
/// host only commits what the guest uses.
pub fn create_guest_memory(size: u64) -> Result<GuestMem, vm_memory::mmap::FromRangesError> {
    GuestMemoryMmap::from_ranges(&ram_ranges(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemory;

    #[test]
    fn test_ram_ranges_small_vm_is_one_range() {
        assert_eq!(ram_ranges(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn test_ram_ranges_large_vm_skips_mmio_hole() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1].0, GuestAddress(MMIO_HOLE_END));
        assert_eq!(r[0].1 + r[1].1, 4 << 30);
    }

    #[test]
    fn test_create_guest_memory_sizes_match() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        assert_eq!(mem.last_addr(), GuestAddress((64 << 20) - 1));
    }
}
