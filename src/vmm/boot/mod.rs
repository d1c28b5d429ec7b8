//! Loading a Linux guest: kernel image (ELF vmlinux or bzImage), generated
//! initramfs, command line, zero page with the e820 map, MP table.

pub mod elf;
pub mod initramfs;
pub mod mptable;
pub mod x86;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Cmdline, KernelLoader};
use vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemory};

use super::vstate::memory::{GuestMem, MMIO_HOLE_END, MMIO_HOLE_START};

/// The zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line the 6.1 kernel takes (`COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Where high memory, and so the kernel, starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// End of usable base memory: the MP table sits in the KiB above it.
pub const EBDA_START: u64 = mptable::MPTABLE_START;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
/// Offset of the 64-bit entry point in a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// What can go wrong while loading a guest.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file could not be opened.
    #[error("cannot open kernel {}: give a kernel with --kernel or PEAPOD_KERNEL, or build one with scripts/build-kernel", .0.display())]
    OpenKernel(PathBuf, #[source] std::io::Error),
    /// The ELF vmlinux is malformed or does not fit.
    #[error("cannot load kernel {}: {err}", .path.display())]
    LoadElf {
        /// The kernel image.
        path: PathBuf,
        /// What is wrong.
        err: elf::ElfError,
    },
    /// The file is neither format we boot.
    #[error("kernel {} is not an ELF vmlinux or a bzImage: point --kernel at the vmlinux that scripts/build-kernel prints", .0.display())]
    KernelFormat(PathBuf),
    /// linux-loader refused the image.
    #[error("cannot load kernel {} into guest memory: {err}", .path.display())]
    LoadKernel {
        /// The kernel image.
        path: PathBuf,
        /// What linux-loader said.
        err: linux_loader::loader::Error,
    },
    /// The initramfs file cannot be read.
    #[error("cannot read the initramfs {}: {}", .0.display(), .1)]
    ReadInitrd(PathBuf, #[source] std::io::Error),
    /// The initramfs does not fit.
    #[error("initramfs of {size} bytes does not fit in guest memory: give the pod more memory")]
    InitrdTooLarge {
        /// Size of the archive.
        size: usize,
    },
    /// The command line is invalid or too long.
    #[error("invalid kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    /// A write of boot data failed.
    #[error("cannot write {0} to guest memory")]
    WriteMemory(&'static str),
    /// Writing the x86 entry state failed.
    #[error(transparent)]
    X86(#[from] x86::WriteBootStructure),
}

/// Which format a kernel image is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`.
    Elf,
    /// A compressed `bzImage`.
    BzImage,
}

/// Tell the format of a kernel image from its magic numbers.
pub fn detect_format<R: Read + Seek>(image: &mut R) -> std::io::Result<Option<KernelFormat>> {
    let mut magic = [0u8; 4];
    image.seek(SeekFrom::Start(0))?;
    if image.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    image.seek(SeekFrom::Start(0x202))?;
    if image.read_exact(&mut magic).is_ok() && u32::from_le_bytes(magic) == KERNEL_HDR_MAGIC {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// Open a kernel and check that it is a format we can boot, without loading it.
pub fn check_kernel(path: &Path) -> Result<KernelFormat, BootError> {
    let mut f = File::open(path).map_err(|e| BootError::OpenKernel(path.into(), e))?;
    detect_format(&mut f)
        .map_err(|e| BootError::OpenKernel(path.into(), e))?
        .ok_or_else(|| BootError::KernelFormat(path.into()))
}

/// Where the loaded kernel starts executing, and what the zero page starts from.
#[derive(Debug)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: GuestAddress,
    /// First byte after the kernel image.
    pub end: u64,
    /// The bzImage's own setup header, to copy into the zero page.
    pub setup_header: Option<linux_loader::loader::bootparam::setup_header>,
}

/// Load a kernel image into guest memory.
pub fn load_kernel(mem: &GuestMem, path: &Path) -> Result<LoadedKernel, BootError> {
    let mut f = File::open(path).map_err(|e| BootError::OpenKernel(path.into(), e))?;
    let format = detect_format(&mut f)
        .map_err(|e| BootError::OpenKernel(path.into(), e))?
        .ok_or_else(|| BootError::KernelFormat(path.into()))?;
    if format == KernelFormat::Elf {
        // Mapped, not copied (see `elf`). The ELF entry point of an x86-64
        // vmlinux is startup_64's physical address.
        let loaded = elf::load(mem, &f, HIMEM_START).map_err(|err| BootError::LoadElf {
            path: path.into(),
            err,
        })?;
        return Ok(LoadedKernel {
            entry: loaded.entry,
            end: loaded.end,
            setup_header: None,
        });
    }
    let res = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|err| {
        BootError::LoadKernel {
            path: path.into(),
            err,
        }
    })?;
    Ok(LoadedKernel {
        entry: res.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY_OFFSET),
        end: res.kernel_load.raw_value() + res.kernel_end,
        setup_header: res.setup_header,
    })
}

/// The guest's initramfs: built in memory, or a file (read in: the guest
/// unpacks it, then frees and poisons its pages, each a copy-on-write
/// fault had it been mapped).
#[derive(Debug, Clone, Copy)]
pub enum Initrd<'a> {
    /// The archive's bytes.
    Bytes(&'a [u8]),
    /// A file holding the archive.
    File(&'a Path),
}

/// Place the initramfs at the top of low memory (page aligned), returning
/// its address and size.
pub fn load_initrd(
    mem: &GuestMem,
    kernel_end: u64,
    initrd: Initrd<'_>,
) -> Result<(GuestAddress, usize), BootError> {
    let (file, size) = match initrd {
        Initrd::Bytes(b) => (None, b.len()),
        Initrd::File(p) => {
            let f = File::open(p).map_err(|e| BootError::ReadInitrd(p.into(), e))?;
            let len = f
                .metadata()
                .map_err(|e| BootError::ReadInitrd(p.into(), e))?
                .len();
            let len =
                usize::try_from(len).map_err(|_| BootError::InitrdTooLarge { size: usize::MAX })?;
            (Some((f, p)), len)
        }
    };
    let too_large = || BootError::InitrdTooLarge { size };
    let low_end = mem.last_addr().raw_value().min(MMIO_HOLE_START - 1) + 1;
    let addr = low_end.checked_sub(size as u64).ok_or_else(too_large)? & !0xfff;
    if addr < kernel_end {
        return Err(too_large());
    }
    if let Some((f, p)) = file {
        read_file(mem, &f, 0, GuestAddress(addr), size as u64)
            .map_err(|e| BootError::ReadInitrd(p.into(), e))?;
    } else if let Initrd::Bytes(b) = initrd {
        mem.write_slice(b, GuestAddress(addr))
            .map_err(|_| BootError::WriteMemory("initramfs"))?;
    }
    Ok((GuestAddress(addr), size))
}

fn outside_ram() -> std::io::Error {
    std::io::Error::other("the range is not inside guest RAM")
}

/// The `len` bytes of guest RAM at `addr`, all in one region.
fn guest_range(
    mem: &GuestMem,
    addr: GuestAddress,
    len: u64,
) -> std::io::Result<vm_memory::VolatileSlice<'_, ()>> {
    let len = usize::try_from(len).map_err(|_| outside_ram())?;
    mem.get_slice(addr, len).map_err(|_| outside_ram())
}

/// Put `len` bytes of `file` from `offset` at guest address `addr`: the
/// whole pages mapped copy-on-write from the file over guest RAM
/// (`MAP_PRIVATE | MAP_FIXED`) when the offset and the address are both
/// page-aligned, the rest read in. The range must lie in one RAM region.
/// The guest's writes stay its own; pages it never writes stay shared in
/// the page cache with every other guest mapping the same file. Meant for
/// what the guest only reads: each page it writes is a copy-on-write fault.
pub fn map_file(
    mem: &GuestMem,
    file: &File,
    offset: u64,
    addr: GuestAddress,
    len: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const PAGE: u64 = 4096;
    let slice = guest_range(mem, addr, len)?;
    let mapped = if offset % PAGE == 0 && addr.0 % PAGE == 0 {
        len & !(PAGE - 1)
    } else {
        0
    };
    if mapped > 0 {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::other("the file offset is out of range"))?;
        let guard = slice.ptr_guard_mut();
        // SAFETY: the target is `mapped` bytes inside a live guest RAM
        // mapping owned by `mem` (checked above), replaced in place by a
        // private copy-on-write mapping of the file: the range stays
        // mapped, readable and writable, and is unmapped with `mem`.
        let got = unsafe {
            libc::mmap(
                guard.as_ptr().cast(),
                mapped as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                off,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
    }
    read_file(
        mem,
        file,
        offset + mapped,
        GuestAddress(addr.0 + mapped),
        len - mapped,
    )
}

/// Read `len` bytes of `file` from `offset` into guest memory at `addr`,
/// which must still be as the VMM mapped it: zero, never written.
///
/// The file is read in chunks of 256 KiB, and only each chunk's bytes from
/// its first non-zero one to its last are written: a kernel's padding
/// between its text, read-only data and data is megabytes of zeros, guest
/// memory is zero already, and a page never written costs the host nothing
/// until the guest uses it. What is written is populated in one call per
/// chunk (`MADV_POPULATE_WRITE`) rather than faulted in page by page by
/// the copy: on a host that is itself a VM each page fault is a trip
/// through its hypervisor.
pub fn read_file(
    mem: &GuestMem,
    file: &File,
    offset: u64,
    addr: GuestAddress,
    len: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    const CHUNK: usize = 64 * PAGE;
    let slice = guest_range(mem, addr, len)?;
    let ulen = slice.len();
    let mut buf = vec![0u8; ulen.min(CHUNK)];
    let mut done = 0usize;
    while done < ulen {
        let n = (ulen - done).min(CHUNK);
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, offset + done as u64)?;
        if let (Some(first), Some(last)) = (
            chunk.iter().position(|b| *b != 0),
            chunk.iter().rposition(|b| *b != 0),
        ) {
            let dst = slice
                .subslice(done + first, last + 1 - first)
                .map_err(|_| outside_ram())?;
            {
                let guard = dst.ptr_guard_mut();
                let lo = guard.as_ptr() as usize & !(PAGE - 1);
                let hi = (guard.as_ptr() as usize + dst.len()).next_multiple_of(PAGE);
                // SAFETY: the pages from `lo` to `hi` hold `dst`, a range of
                // one guest RAM mapping (whose regions are page-aligned);
                // populating them changes no contents. A kernel without the
                // advice (before 5.14) refuses it, and the copy faults the
                // pages in instead.
                unsafe {
                    libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_POPULATE_WRITE);
                }
            }
            dst.copy_from(&chunk[first..=last]);
        }
        done += n;
    }
    Ok(())
}

/// The e820 map of a guest with this memory: base memory, the EBDA/MP table
/// reserved, RAM from 1 MiB, RAM above the MMIO hole.
pub fn e820_map(mem: &GuestMem) -> Vec<boot_e820_entry> {
    let end = mem.last_addr().raw_value() + 1;
    let mut map = vec![
        boot_e820_entry {
            addr: 0,
            size: EBDA_START,
            type_: E820_RAM,
        },
        boot_e820_entry {
            addr: EBDA_START,
            size: 0xa0000 - EBDA_START,
            type_: E820_RESERVED,
        },
    ];
    let low_end = end.min(MMIO_HOLE_START);
    map.push(boot_e820_entry {
        addr: HIMEM_START,
        size: low_end - HIMEM_START,
        type_: E820_RAM,
    });
    if end > MMIO_HOLE_END {
        map.push(boot_e820_entry {
            addr: MMIO_HOLE_END,
            size: end - MMIO_HOLE_END,
            type_: E820_RAM,
        });
    }
    map
}

/// Fill the zero page: setup header, command line, initramfs, e820.
pub fn build_zero_page(
    mem: &GuestMem,
    kernel: &LoadedKernel,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, usize)>,
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.raw_value() as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem);
    for (slot, entry) in params.e820_table.iter_mut().zip(map.iter()) {
        *slot = *entry;
    }
    params.e820_entries = map.len() as u8;
    params
}

/// Everything needed to boot a kernel in a fresh VM.
pub struct BootSpec<'a> {
    /// Kernel image path.
    pub kernel: &'a Path,
    /// The kernel command line.
    pub cmdline: &'a Cmdline,
    /// The initramfs archive.
    pub initrd: Initrd<'a>,
    /// Number of vCPUs (for the MP table).
    pub vcpus: u8,
}

/// Load kernel, initramfs, command line, zero page and MP table. Returns the
/// kernel entry point.
pub fn load_guest(mem: &GuestMem, spec: &BootSpec<'_>) -> Result<GuestAddress, BootError> {
    let kernel = load_kernel(mem, spec.kernel)?;
    let cmdline = spec.cmdline.as_cstring().map_err(BootError::Cmdline)?;
    let cmdline = cmdline.as_bytes_with_nul();
    if cmdline.len() > CMDLINE_MAX_SIZE {
        return Err(BootError::Cmdline(linux_loader::cmdline::Error::TooLarge));
    }
    mem.write_slice(cmdline, GuestAddress(CMDLINE_START))
        .map_err(|_| BootError::WriteMemory("command line"))?;
    let initrd = load_initrd(mem, kernel.end, spec.initrd)?;
    let params = build_zero_page(mem, &kernel, cmdline.len() - 1, Some(initrd));
    mem.write_slice(params.as_slice(), GuestAddress(ZERO_PAGE_START))
        .map_err(|_| BootError::WriteMemory("zero page"))?;
    mem.write_slice(
        &mptable::build(spec.vcpus),
        GuestAddress(mptable::MPTABLE_START),
    )
    .map_err(|_| BootError::WriteMemory("MP table"))?;
    Ok(kernel.entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::create_guest_memory;
    use std::io::{Cursor, Write};

    #[test]
    fn test_detect_format_by_magic() {
        let mut elf = Cursor::new(b"\x7fELF\x02\x01\x01".to_vec());
        assert_eq!(detect_format(&mut elf).unwrap(), Some(KernelFormat::Elf));
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(
            detect_format(&mut Cursor::new(bz)).unwrap(),
            Some(KernelFormat::BzImage)
        );
        assert_eq!(
            detect_format(&mut Cursor::new(b"#!/bin/sh\n".to_vec())).unwrap(),
            None
        );
        assert_eq!(detect_format(&mut Cursor::new(Vec::new())).unwrap(), None);
    }

    #[test]
    fn test_check_kernel_rejects_missing_and_non_kernel_files() {
        let err = check_kernel(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("scripts/build-kernel"), "{err}");
        let mut f = tempfile();
        f.1.write_all(b"not a kernel at all").unwrap();
        let err = check_kernel(&f.0).unwrap_err();
        assert!(matches!(err, BootError::KernelFormat(_)), "{err}");
        std::fs::remove_file(&f.0).unwrap();
    }

    fn tempfile() -> (PathBuf, File) {
        let p = std::env::temp_dir().join(format!("peapod-test-kernel-{}", std::process::id()));
        let f = File::create(&p).unwrap();
        (p, f)
    }

    #[test]
    fn test_e820_map_small_guest() {
        let mem = create_guest_memory(128 << 20).unwrap();
        let map = e820_map(&mem);
        assert_eq!(map.len(), 3);
        assert_eq!(
            (map[0].addr, map[0].size, map[0].type_),
            (0, EBDA_START, E820_RAM)
        );
        assert_eq!({ map[1].type_ }, E820_RESERVED);
        assert_eq!(
            (map[2].addr, map[2].addr + map[2].size),
            (HIMEM_START, 128 << 20)
        );
    }

    #[test]
    fn test_e820_map_guest_above_mmio_hole() {
        let mem = create_guest_memory(4 << 30).unwrap();
        let map = e820_map(&mem);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].addr + map[2].size, MMIO_HOLE_START);
        assert_eq!({ map[3].addr }, MMIO_HOLE_END);
        let ram: u64 = map
            .iter()
            .filter(|e| e.type_ == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (4 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn test_zero_page_layout() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let kernel = LoadedKernel {
            entry: GuestAddress(0x100_0000),
            end: 0x200_0000,
            setup_header: None,
        };
        let p = build_zero_page(&mem, &kernel, 42, Some((GuestAddress(0x300_0000), 4096)));
        // Offsets from the x86 boot protocol (Documentation/x86/zero-page.rst, boot.rst).
        let bytes = p.as_slice();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(bytes[0x1e8], 3, "e820_entries");
        assert_eq!(
            u16::from_le_bytes([bytes[0x1fe], bytes[0x1ff]]),
            0xaa55,
            "boot_flag"
        );
        assert_eq!(&bytes[0x202..0x206], b"HdrS");
        assert_eq!(bytes[0x210], 0xff, "type_of_loader");
        assert_eq!(
            u32::from_le_bytes(bytes[0x218..0x21c].try_into().unwrap()),
            0x300_0000,
            "ramdisk_image"
        );
        assert_eq!(
            u32::from_le_bytes(bytes[0x21c..0x220].try_into().unwrap()),
            4096,
            "ramdisk_size"
        );
        assert_eq!(
            u32::from_le_bytes(bytes[0x228..0x22c].try_into().unwrap()),
            CMDLINE_START as u32,
            "cmd_line_ptr"
        );
        assert_eq!(
            u32::from_le_bytes(bytes[0x238..0x23c].try_into().unwrap()),
            42,
            "cmdline_size"
        );
        let e820_0 = &bytes[0x2d0..0x2d0 + 20];
        assert_eq!(
            u64::from_le_bytes(e820_0[8..16].try_into().unwrap()),
            EBDA_START
        );
    }

    #[test]
    fn test_initrd_goes_below_low_memory_end_page_aligned() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let data = vec![7u8; 10_000];
        let (addr, size) = load_initrd(&mem, 0x200_0000, Initrd::Bytes(&data)).unwrap();
        assert_eq!((addr.raw_value() & 0xfff, size), (0, data.len()));
        assert!(addr.raw_value() + data.len() as u64 <= 64 << 20);
        let mut back = vec![0u8; data.len()];
        mem.read_slice(&mut back, addr).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            load_initrd(&mem, 0x3ff_f000, Initrd::Bytes(&data)),
            Err(BootError::InitrdTooLarge { .. })
        ));
    }

    #[test]
    fn test_initrd_file_is_read_in_whole() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let path = std::env::temp_dir().join(format!("peapod-test-initrd-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let (addr, size) = load_initrd(&mem, 0x200_0000, Initrd::File(&path)).unwrap();
        assert_eq!((addr.raw_value() & 0xfff, size), (0, data.len()));
        let mut back = vec![0u8; data.len()];
        mem.read_slice(&mut back, addr).unwrap();
        assert_eq!(back, data);
        // Past the archive, in its last page: zero, not whatever follows.
        let mut tail = [9u8; 16];
        mem.read_slice(&mut tail, addr.unchecked_add(data.len() as u64))
            .unwrap();
        assert_eq!(tail, [0u8; 16]);
        // A guest write stays in the guest.
        mem.write_obj(0xffu8, addr).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[0], 0);
        assert!(matches!(
            load_initrd(&mem, 0, Initrd::File(Path::new("/nonexistent/initrd"))),
            Err(BootError::ReadInitrd(..))
        ));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn test_read_file_leaves_chunks_of_zeros_unwritten() {
        const K: usize = 1024;
        let mem = create_guest_memory(16 << 20).unwrap();
        // 256 KiB of data, 512 KiB of zeros (two whole chunks), then data
        // that starts and ends inside a chunk, read to an unaligned address.
        let mut data = vec![0u8; 1024 * K];
        data[..256 * K].fill(7);
        data[800 * K..900 * K].fill(9);
        let path = std::env::temp_dir().join(format!("peapod-test-read-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let at = GuestAddress((1 << 20) + 16);
        read_file(&mem, &f, 0, at, data.len() as u64).unwrap();
        // The pages of the two chunks of zeros were never touched (checked
        // before anything reads them).
        let host = mem.get_host_address(at).unwrap() as usize;
        let first = (host + 256 * K).next_multiple_of(4096);
        let pages = (host + 768 * K - first) / 4096;
        let mut resident = vec![0u8; pages];
        // SAFETY: the range is inside the guest RAM mapping `mem` owns.
        let rc = unsafe {
            libc::mincore(
                first as *mut libc::c_void,
                pages * 4096,
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        assert!(resident.iter().all(|r| r & 1 == 0), "{resident:?}");
        let mut back = vec![1u8; data.len()];
        mem.read_slice(&mut back, at).unwrap();
        assert!(back == data, "guest memory holds the file");
        // Past the end of the file: an error, not zeros.
        assert!(read_file(&mem, &f, 1000 * K as u64, at, 100 * K as u64).is_err());
    }
}
