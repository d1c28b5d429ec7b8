//! Loading an ELF `vmlinux`: its text mapped, the rest read in.
//!
//! The whole pages of the kernel's `.text` section are mapped copy-on-write
//! from the file over the guest RAM they load at (`MAP_PRIVATE |
//! MAP_FIXED`): every pod on the host shares them in the page cache, and
//! the guest only reads them (bar the few its alternatives patch). Every
//! other byte of every `PT_LOAD` segment is read into guest memory (runs
//! of zeros skipped, see [`super::read_file`]): the guest writes its data
//! and `.bss`, and frees and poisons its init sections and the padding
//! around its read-only data (megabytes at every boot). A guest write to a
//! page mapped from the file is a copy-on-write fault taken while the vCPU
//! waits; to a page the VMM wrote, only the mapping. Measured in the
//! emulated KVM host (a nested VM), reading this and the initramfs in
//! brought `peapod-init: ready` 0.8 to 1.7 s sooner (three A/B runs, n=5
//! each); on the development machine (a PVM guest, where each page fault
//! is a trip through its hypervisor) it costs the VMM about 3 ms before
//! the first instruction.
//!
//! A kernel without readable section headers (or without `.text`) is read
//! in whole; so is any range whose file offset and address are not both
//! page-aligned.
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
const SHDR_SIZE: usize = 64;
/// More program headers than any kernel has: a bound on what is read.
const MAX_PHDRS: usize = 64;
/// More section headers, and a longer section name table, than any kernel
/// has: bounds on what is read to find `.text`.
const MAX_SHDRS: usize = 1024;
const MAX_SHSTRTAB: u64 = 64 << 10;
const PAGE: u64 = 4096;

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
    /// Virtual address (`p_vaddr`): where sections say they are.
    vaddr: u64,
    /// Physical address (`p_paddr`): where it loads in guest memory.
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

fn segments(
    file: &File,
    file_len: u64,
    ehdr: &[u8; EHDR_SIZE],
) -> Result<(u64, Vec<Segment>), ElfError> {
    // Magic, ELFCLASS64, ELFDATA2LSB, ET_EXEC, EM_X86_64.
    if ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 || u16_at(ehdr, 18) != EM_X86_64 {
        return Err(ElfError::NotX86_64);
    }
    let entry = u64_at(ehdr, 24);
    let phoff = u64_at(ehdr, 32);
    let phentsize = usize::from(u16_at(ehdr, 54));
    let phnum = usize::from(u16_at(ehdr, 56));
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
            vaddr: u64_at(ph, 16),
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

/// The guest-physical range of the `.text` section, when the section
/// headers are well-formed and `.text` lies in a segment's file bytes.
/// `None` otherwise: the kernel is then read in whole, which is correct,
/// only not shared.
fn text_range(
    file: &File,
    file_len: u64,
    ehdr: &[u8; EHDR_SIZE],
    segs: &[Segment],
) -> Option<(u64, u64)> {
    let shoff = u64_at(ehdr, 40);
    let shentsize = usize::from(u16_at(ehdr, 58));
    let shnum = usize::from(u16_at(ehdr, 60));
    let shstrndx = usize::from(u16_at(ehdr, 62));
    if shentsize != SHDR_SIZE || shnum == 0 || shnum > MAX_SHDRS || shstrndx >= shnum {
        return None;
    }
    if shoff.checked_add((SHDR_SIZE * shnum) as u64)? > file_len {
        return None;
    }
    let mut table = vec![0u8; SHDR_SIZE * shnum];
    file.read_exact_at(&mut table, shoff).ok()?;
    let strtab = table.chunks_exact(SHDR_SIZE).nth(shstrndx)?;
    let (names_at, names_len) = (u64_at(strtab, 24), u64_at(strtab, 32));
    if names_len > MAX_SHSTRTAB || names_at.checked_add(names_len)? > file_len {
        return None;
    }
    let mut names = vec![0u8; names_len as usize];
    file.read_exact_at(&mut names, names_at).ok()?;
    let sh = table.chunks_exact(SHDR_SIZE).find(|sh| {
        let name = u32_at(sh, 0) as usize;
        names.get(name..).is_some_and(|n| n.starts_with(b".text\0"))
    })?;
    let (vaddr, size) = (u64_at(sh, 16), u64_at(sh, 32));
    let end = vaddr.checked_add(size)?;
    let seg = segs
        .iter()
        .find(|g| vaddr >= g.vaddr && g.vaddr.checked_add(g.file_size).is_some_and(|e| end <= e))?;
    let start = seg.addr + (vaddr - seg.vaddr);
    Some((start, start + size))
}

/// Load the ELF kernel `file` into `mem`, every segment at its physical
/// address, which must be at or above `himem`.
pub fn load(mem: &GuestMem, file: &File, himem: u64) -> Result<Loaded, ElfError> {
    let file_len = file.metadata().map_err(ElfError::Read)?.len();
    let mut ehdr = [0u8; EHDR_SIZE];
    file.read_exact_at(&mut ehdr, 0).map_err(ElfError::Read)?;
    let (entry, segs) = segments(file, file_len, &ehdr)?;
    if entry < himem {
        return Err(ElfError::Entry(entry));
    }
    // Only whole pages of .text are mapped.
    let text = text_range(file, file_len, &ehdr, &segs)
        .map(|(start, end)| (start.next_multiple_of(PAGE), end & !(PAGE - 1)));
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
        // The segment's file bytes: read in before .text, mapped within
        // it, read in after it.
        let (start, stop) = (seg.addr, seg.addr + seg.file_size);
        let (map_from, map_to) = match text {
            Some((t0, t1)) if t0 < t1 => (t0.clamp(start, stop), t1.clamp(start, stop)),
            _ => (stop, stop),
        };
        let at = |addr: u64| seg.offset + (addr - start);
        super::read_file(mem, file, seg.offset, GuestAddress(start), map_from - start)
            .map_err(ElfError::Map)?;
        super::map_file(
            mem,
            file,
            at(map_from),
            GuestAddress(map_from),
            map_to - map_from,
        )
        .map_err(ElfError::Map)?;
        super::read_file(mem, file, at(map_to), GuestAddress(map_to), stop - map_to)
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
            b[p + 16..p + 24].copy_from_slice(&addr.to_le_bytes());
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

    /// `image` with section headers after it: a null section, the name
    /// table, and `.text` at `text` (address, size).
    fn image_with_text(entry: u64, segs: &[(u64, u64, u64, u64)], text: (u64, u64)) -> File {
        let mut f = image(entry, segs);
        let names = b"\0.shstrtab\0.text\0";
        let names_at = f.metadata().unwrap().len();
        let shoff = names_at + names.len() as u64;
        let mut sh = vec![0u8; 3 * SHDR_SIZE];
        // [1] .shstrtab: name 1, its bytes at names_at.
        sh[64..68].copy_from_slice(&1u32.to_le_bytes());
        sh[64 + 24..64 + 32].copy_from_slice(&names_at.to_le_bytes());
        sh[64 + 32..64 + 40].copy_from_slice(&(names.len() as u64).to_le_bytes());
        // [2] .text: name 11.
        sh[128..132].copy_from_slice(&11u32.to_le_bytes());
        sh[128 + 16..128 + 24].copy_from_slice(&text.0.to_le_bytes());
        sh[128 + 32..128 + 40].copy_from_slice(&text.1.to_le_bytes());
        f.write_all(names).unwrap();
        f.write_all(&sh).unwrap();
        let mut ehdr = [0u8; EHDR_SIZE];
        f.read_exact_at(&mut ehdr, 0).unwrap();
        ehdr[40..48].copy_from_slice(&shoff.to_le_bytes());
        ehdr[58..60].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        ehdr[60..62].copy_from_slice(&3u16.to_le_bytes());
        ehdr[62..64].copy_from_slice(&1u16.to_le_bytes());
        f.write_all_at(&ehdr, 0).unwrap();
        f
    }

    /// Whether guest memory at `at` follows the file at `offset` (mapped
    /// from it, not yet written by the guest) or holds its own copy.
    fn follows_file(mem: &GuestMem, f: &File, offset: u64, at: u64) -> bool {
        let before = byte(mem, at);
        f.write_all_at(&[before ^ 0x5a], offset).unwrap();
        let now = byte(mem, at);
        f.write_all_at(&[before], offset).unwrap();
        now != before
    }

    #[test]
    fn test_only_whole_pages_of_text_are_mapped_from_the_file() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let base = 1u64 << 20;
        // One segment of 6 pages; .text from the middle of its first page
        // to the middle of its fifth.
        let f = image_with_text(
            base,
            &[(0x1000, base, 0x6000, 0x8000)],
            (base + 0x800, 0x3800 + 0x800),
        );
        load(&mem, &f, base).unwrap();
        for page in 0..6u64 {
            let (offset, at) = (0x1000 + page * 0x1000 + 0x10, base + page * 0x1000 + 0x10);
            assert_eq!(byte(&mem, at), 1, "page {page} holds the segment's bytes");
            let mapped = (1..4).contains(&page);
            assert_eq!(follows_file(&mem, &f, offset, at), mapped, "page {page}");
        }
        assert_eq!(byte(&mem, base + 0x7000), 0, "the zero-filled tail");
    }

    #[test]
    fn test_without_usable_section_headers_the_kernel_is_read_in() {
        let base = 1u64 << 20;
        let segs = [(0x1000, base, 0x4000, 0x4000)];
        // No section headers; .text outside every segment; .text past the
        // segment's file bytes; a section table that does not fit the file.
        let broken = |f: File| {
            let mut ehdr = [0u8; EHDR_SIZE];
            f.read_exact_at(&mut ehdr, 0).unwrap();
            ehdr[60..62].copy_from_slice(&u16::MAX.to_le_bytes());
            f.write_all_at(&ehdr, 0).unwrap();
            f
        };
        for f in [
            image(base, &segs),
            image_with_text(base, &segs, (8 << 20, 0x2000)),
            image_with_text(base, &segs, (base, 0x8000)),
            broken(image_with_text(base, &segs, (base, 0x4000))),
        ] {
            let mem = create_guest_memory(16 << 20).unwrap();
            load(&mem, &f, base).unwrap();
            for page in 0..4u64 {
                let at = base + page * 0x1000;
                assert_eq!(byte(&mem, at), 1);
                assert!(
                    !follows_file(&mem, &f, 0x1000 + page * 0x1000, at),
                    "page {page}"
                );
            }
        }
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
    fn test_segments_are_loaded_and_zero_filled() {
        let mem = create_guest_memory(16 << 20).unwrap();
        // An aligned segment with a partial last page and a zero tail (as
        // a kernel's .bss), and an unaligned one.
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
        assert_eq!(byte(&mem, (1 << 20) + 0x20ff), 1, "the partial last page");
        assert_eq!(
            byte(&mem, (1 << 20) + 0x2100),
            0,
            "past the file size is zero"
        );
        assert_eq!(byte(&mem, (1 << 20) + 0x4fff), 0);
        assert_eq!(byte(&mem, 0x30_0010), 2);
        assert_eq!(byte(&mem, 0x30_010f), 2);
        // The guest's writes stay its own: the file keeps its bytes.
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
