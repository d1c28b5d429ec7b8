//! Loading an ELF `vmlinux` by mapping it rather than copying it.
//!
//! Each `PT_LOAD` segment's whole pages are mapped copy-on-write from the
//! file over the guest RAM they load at (`MAP_PRIVATE | MAP_FIXED`); only
//! a segment's last partial page is copied. Starting a VM then costs no
//! copy of the kernel, and every pod on the host shares the kernel's pages
//! in the page cache until its guest writes one. A segment whose file
//! offset and address are not both page-aligned is read in instead.
//!
//! The kernel file is the user's own (the pod file cannot name it); still,
//! every offset, size and address is checked before it is used.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vm_memory::{GuestAddress, GuestMemory};

use crate::vmm::vstate::memory::GuestMem;

const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// More program headers than any kernel has: a bound on what is read.
const MAX_PHDRS: usize = 64;

/// Why an ELF kernel cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Reading the file failed.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// It is not a 64-bit little-endian x86-64 executable.
    #[error("it is not a 64-bit x86-64 ELF executable")]
    NotX86_64,
    /// The program headers are missing, too many, or malformed.
    #[error("its program headers are malformed")]
    ProgramHeaders,
    /// The entry point is below high memory.
    #[error("its entry point {0:#x} is below 1 MiB")]
    Entry(u64),
    /// A segment lies outside the file or outside guest RAM.
    #[error("segment at {addr:#x} ({size} bytes) does not fit the file or guest memory")]
    Segment {
        /// Guest physical address.
        addr: u64,
        /// Bytes in memory.
        size: u64,
    },
    /// Mapping or reading a segment failed.
    #[error("cannot map it into guest memory: {0}")]
    Map(#[source] std::io::Error),
}

/// A loaded kernel: its entry point and the first byte after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// `e_entry`: for an x86-64 vmlinux, startup_64's physical address.
    pub entry: GuestAddress,
    /// First guest address past every segment.
    pub end: u64,
}

struct Segment {
    offset: u64,
    addr: u64,
    file_size: u64,
    mem_size: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn segments(file: &File, file_len: u64) -> Result<(u64, Vec<Segment>), ElfError> {
    let mut ehdr = [0u8; EHDR_SIZE];
    file.read_exact_at(&mut ehdr, 0).map_err(ElfError::Read)?;
    // Magic, ELFCLASS64, ELFDATA2LSB, ET_EXEC, EM_X86_64.
    if ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 || u16_at(&ehdr, 18) != EM_X86_64 {
        return Err(ElfError::NotX86_64);
    }
    let entry = u64_at(&ehdr, 24);
    let phoff = u64_at(&ehdr, 32);
    let phentsize = usize::from(u16_at(&ehdr, 54));
    let phnum = usize::from(u16_at(&ehdr, 56));
    if phentsize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHDRS {
        return Err(ElfError::ProgramHeaders);
    }
    let table_len = (PHDR_SIZE * phnum) as u64;
    if phoff
        .checked_add(table_len)
        .is_none_or(|end| end > file_len)
    {
        return Err(ElfError::ProgramHeaders);
    }
    let mut table = vec![0u8; PHDR_SIZE * phnum];
    file.read_exact_at(&mut table, phoff)
        .map_err(ElfError::Read)?;
    let mut segs = Vec::new();
    for ph in table.chunks_exact(PHDR_SIZE) {
        if u32_at(ph, 0) != PT_LOAD || u64_at(ph, 32) == 0 {
            continue;
        }
        let seg = Segment {
            offset: u64_at(ph, 8),
            addr: u64_at(ph, 24),
            file_size: u64_at(ph, 32),
            mem_size: u64_at(ph, 40),
        };
        let bad = || ElfError::Segment {
            addr: seg.addr,
            size: seg.mem_size,
        };
        if seg.file_size > seg.mem_size
            || seg
                .offset
                .checked_add(seg.file_size)
                .is_none_or(|e| e > file_len)
        {
            return Err(bad());
        }
        segs.push(seg);
    }
    if segs.is_empty() {
        return Err(ElfError::ProgramHeaders);
    }
    Ok((entry, segs))
}

/// Load the ELF kernel `file` into `mem`, every segment at its physical
/// address, which must be at or above `himem`.
pub fn load(mem: &GuestMem, file: &File, himem: u64) -> Result<Loaded, ElfError> {
    let file_len = file.metadata().map_err(ElfError::Read)?.len();
    let (entry, segs) = segments(file, file_len)?;
    if entry < himem {
        return Err(ElfError::Entry(entry));
    }
    let mut end = 0u64;
    for seg in &segs {
        let bad = || ElfError::Segment {
            addr: seg.addr,
            size: seg.mem_size,
        };
        let mem_size = usize::try_from(seg.mem_size).map_err(|_| bad())?;
        if seg.addr < himem {
            return Err(bad());
        }
        // The whole segment (its zero-filled tail too) within one region.
        mem.get_slice(GuestAddress(seg.addr), mem_size)
            .map_err(|_| bad())?;
        super::map_file(mem, file, seg.offset, GuestAddress(seg.addr), seg.file_size)
            .map_err(ElfError::Map)?;
        end = end.max(seg.addr + seg.mem_size);
    }
    Ok(Loaded {
        entry: GuestAddress(entry),
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::create_guest_memory;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use vm_memory::Bytes;

    /// An ELF image with the given (offset, addr, file size, mem size)
    /// segments, each filled with its index + 1.
    fn image(entry: u64, segs: &[(u64, u64, u64, u64)]) -> File {
        let phoff = 64u64;
        let mut b = vec![0u8; 64 + 56 * segs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&phoff.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (off, addr, fsz, msz)) in segs.iter().enumerate() {
            let p = 64 + 56 * i;
            b[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            b[p + 24..p + 32].copy_from_slice(&addr.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&fsz.to_le_bytes());
            b[p + 40..p + 48].copy_from_slice(&msz.to_le_bytes());
            // A segment past any sane file (the hostile cases) is not written.
            let Some(end) = off.checked_add(*fsz).filter(|e| *e < 1 << 24) else {
                continue;
            };
            if b.len() < end as usize {
                b.resize(end as usize, 0);
            }
            b[*off as usize..end as usize].fill(i as u8 + 1);
        }
        // Bytes after the last segment that must never reach a zero tail.
        b.extend_from_slice(&[0xee; 8192]);
        let mut f = tempfile();
        f.write_all(&b).unwrap();
        f
    }

    fn tempfile() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "peapod-elf-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn byte(mem: &GuestMem, at: u64) -> u8 {
        mem.read_obj(GuestAddress(at)).unwrap()
    }

    #[test]
    fn test_segments_are_mapped_copied_and_zero_filled() {
        let mem = create_guest_memory(16 << 20).unwrap();
        // An aligned segment with a partial last page and a zero tail (as
        // a kernel's .bss), and an unaligned one that is read in.
        let f = image(
            1 << 20,
            &[
                (0x2000, 1 << 20, 0x2100, 0x5000),
                (0x4100, 0x30_0010, 0x100, 0x100),
            ],
        );
        let got = load(&mem, &f, 1 << 20).unwrap();
        assert_eq!(got.entry, GuestAddress(1 << 20));
        assert_eq!(got.end, 0x30_0110);
        assert_eq!(byte(&mem, 1 << 20), 1);
        assert_eq!(byte(&mem, (1 << 20) + 0x20ff), 1, "the copied partial page");
        assert_eq!(
            byte(&mem, (1 << 20) + 0x2100),
            0,
            "past the file size is zero"
        );
        assert_eq!(byte(&mem, (1 << 20) + 0x4fff), 0);
        assert_eq!(byte(&mem, 0x30_0010), 2);
        assert_eq!(byte(&mem, 0x30_010f), 2);
        // The guest's writes stay its own: copy-on-write, the file keeps its bytes.
        mem.write_obj(9u8, GuestAddress(1 << 20)).unwrap();
        assert_eq!(byte(&mem, 1 << 20), 9);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0x2000).unwrap();
        assert_eq!(b, [1]);
    }

    #[test]
    fn test_hostile_headers_are_refused() {
        let mem = create_guest_memory(4 << 20).unwrap();
        // Past guest RAM, below high memory, past the end of the file,
        // file size over memory size, entry below 1 MiB.
        for (entry, seg) in [
            (1 << 20, (0x1000, 3 << 20, 0x1000, 2 << 20)),
            (1 << 20, (0x1000, 0x8000, 0x1000, 0x1000)),
            (1 << 20, (0x1000, 1 << 20, 1 << 40, 1 << 40)),
            (1 << 20, (0x1000, 1 << 20, 0x2000, 0x1000)),
            (0x1000, (0x1000, 1 << 20, 0x1000, 0x1000)),
            (1 << 20, (u64::MAX - 10, 1 << 20, 0x1000, 0x1000)),
        ] {
            let f = image(entry, &[seg]);
            assert!(load(&mem, &f, 1 << 20).is_err(), "{entry:#x} {seg:x?}");
        }
        let mut f = tempfile();
        f.write_all(b"\x7fELF\x01\x01").unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        assert!(matches!(load(&mem, &f, 1 << 20), Err(ElfError::NotX86_64)));
    }
}
