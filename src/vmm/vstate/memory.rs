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
///
/// Each region is marked `MADV_DONTFORK`: a child process never gets a
/// copy of guest memory, and the kernel never merges the guest's mappings
/// with the process's other anonymous ones, so [`smaps_rss`] can tell
/// them apart.
pub fn create_guest_memory(size: u64) -> Result<GuestMem, vm_memory::mmap::FromRangesError> {
    use vm_memory::{GuestMemory, GuestMemoryRegion};
    let mem = GuestMemoryMmap::from_ranges(&ram_ranges(size))?;
    for region in mem.iter() {
        // SAFETY: the range is one live mapping owned by `mem`; the advice
        // changes only how it is inherited and merged.
        let rc = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_DONTFORK,
            )
        };
        if rc != 0 {
            log::warn!(
                "guest memory: MADV_DONTFORK: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(mem)
}

/// Bytes of guest memory the host has actually committed (resident pages).
pub fn resident_bytes(mem: &GuestMem) -> u64 {
    use vm_memory::{GuestMemory, GuestMemoryRegion};
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut total = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range is one live mapping owned by `mem`; `vec` has a
        // byte for each of its pages.
        let rc = unsafe { libc::mincore(region.as_ptr().cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec.iter().filter(|b| *b & 1 == 1).count() as u64 * page as u64;
        }
    }
    total
}

/// The process's resident memory, from its `/proc/self/statm` (opened
/// beforehand: the VMM's confined main thread opens no files).
pub fn process_rss_bytes(statm: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 128];
    let n = statm.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

/// What a VMM process holds, from its own `/proc/self/smaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFigures {
    /// Resident bytes of the guest's RAM mappings.
    pub guest_rss: u64,
    /// Resident bytes of the whole process.
    pub rss: u64,
    /// Proportional set size of the whole process: each shared page (the
    /// kernel's, the binary's, libc's) split among the processes mapping
    /// it. What one more pod costs the host.
    pub pss: u64,
}

/// Resident bytes of the guest's RAM mappings and of the whole process,
/// from its `/proc/self/smaps` (opened beforehand, as for
/// [`process_rss_bytes`]). Unlike `mincore`, this counts only the pages
/// this process has mapped: a kernel page shared from the page cache
/// (see `boot::elf`) counts once the guest touched it, not because
/// another pod did.
pub fn smaps_rss(smaps: &std::fs::File, mem: &GuestMem) -> Option<MemoryFigures> {
    use std::os::unix::fs::FileExt;
    use vm_memory::{GuestMemory, GuestMemoryRegion};
    const MAX: usize = 4 << 20;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() >= MAX {
                return None;
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = smaps.read_at(&mut buf[len..], len as u64).ok()?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let regions: Vec<(u64, u64)> = mem
        .iter()
        .map(|r| (r.as_ptr() as u64, r.as_ptr() as u64 + r.len()))
        .collect();
    parse_smaps(text, &regions)
}

/// [`smaps_rss`] over the text of an smaps file. A mapping counts as the
/// guest's when it lies inside the guest's regions; regions that touch are
/// joined first, since the kernel may merge their mappings into one.
fn parse_smaps(text: &str, regions: &[(u64, u64)]) -> Option<MemoryFigures> {
    let mut joined: Vec<(u64, u64)> = regions.to_vec();
    joined.sort_unstable();
    let mut union: Vec<(u64, u64)> = Vec::new();
    for (s, e) in joined {
        match union.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => union.push((s, e)),
        }
    }
    let kb = |v: &str| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok();
    let (mut guest, mut total, mut pss, mut inside) = (0u64, 0u64, 0u64, false);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Rss:") {
            let bytes = kb(v)? * 1024;
            total += bytes;
            if inside {
                guest += bytes;
            }
        } else if let Some(v) = line.strip_prefix("Pss:") {
            pss += kb(v)? * 1024;
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    inside = union.iter().any(|(s, e)| a >= *s && b <= *e);
                }
            }
        }
    }
    Some(MemoryFigures {
        guest_rss: guest,
        rss: total,
        pss,
    })
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
    fn test_resident_bytes_counts_touched_pages() {
        let mem = create_guest_memory(8 << 20).unwrap();
        let before = resident_bytes(&mem);
        assert!(before < 1 << 20, "untouched guest memory is not resident");
        vm_memory::Bytes::write_slice(&mem, &vec![1u8; 1 << 20], GuestAddress(0)).unwrap();
        assert!(resident_bytes(&mem) >= 1 << 20);
        let statm = std::fs::File::open("/proc/self/statm").unwrap();
        assert!(process_rss_bytes(&statm).unwrap() >= 1 << 20);
        // Other tests' guest memory may sit next to this one and share
        // its mapping: here the live figures are only checked for shape.
        let smaps = std::fs::File::open("/proc/self/smaps").unwrap();
        let f = smaps_rss(&smaps, &mem).unwrap();
        assert!(f.rss > f.guest_rss && f.pss > 0 && f.pss <= f.rss, "{f:?}");
    }

    #[test]
    fn test_parse_smaps_counts_mappings_inside_the_guest_regions() {
        let text = "\
1000-3000 rw-p 00000000 00:00 0
Rss:                   8 kB
Pss:                   8 kB
3000-5000 r--p 00000000 fe:00 42 /vmlinux
Rss:                   4 kB
Pss:                   2 kB
5000-9000 rw-p 00000000 00:00 0
Rss:                  12 kB
Pss:                  12 kB
9000-a000 rw-p 00000000 00:00 0 [heap]
Rss:                   4 kB
Pss:                   4 kB
";
        // Two regions that touch (the kernel merged 5000-9000 across
        // them), the heap outside.
        let f = parse_smaps(text, &[(0x1000, 0x6000), (0x6000, 0x9000)]).unwrap();
        assert_eq!(
            f,
            MemoryFigures {
                guest_rss: 24 << 10,
                rss: 28 << 10,
                pss: 26 << 10,
            }
        );
        // A mapping that runs out of the guest is not the guest's.
        let f = parse_smaps(text, &[(0x1000, 0x8000)]).unwrap();
        assert_eq!(f.guest_rss, 12 << 10);
    }

    #[test]
    fn test_create_guest_memory_sizes_match() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        assert_eq!(mem.last_addr(), GuestAddress((64 << 20) - 1));
    }
}
