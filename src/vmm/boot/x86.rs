//! x86-64 CPU state at the kernel's 64-bit entry point (and for the CPL3
//! test payloads): identity page tables, a flat GDT, long mode.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// Boot GDT.
pub const GDT_START: u64 = 0x500;
/// Boot IDT (empty: the kernel installs its own before enabling interrupts).
pub const IDT_START: u64 = 0x520;
/// Top-level page table.
pub const PML4_START: u64 = 0x9000;
const PDPTE_START: u64 = 0xa000;
/// Four page directories (0xb000..0xf000) map the first 4 GiB, MMIO hole included.
const PDE_START: u64 = 0xb000;
const MAPPED_GIB: u64 = 4;
/// Stack pointer handed to the kernel.
pub const BOOT_STACK: u64 = 0x8ff0;

const X86_CR0_PE: u64 = 1;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_HUGE: u64 = 1 << 7;

/// Which privilege level the first instruction runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Ring 0: a kernel entry point.
    Kernel,
    /// Ring 3 with IOPL 3: test payloads that PVM runs natively.
    User,
}

/// Error writing boot structures to guest memory.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} at {addr:#x} to guest memory")]
pub struct WriteBootStructure {
    what: &'static str,
    addr: u64,
}

/// A GDT descriptor from flags, base and limit (the usual packed layout).
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn segment_from_gdt(entry: u64, index: u8, rpl: u8) -> kvm_segment {
    let bits = |shift: u32, mask: u64| ((entry >> shift) & mask) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32,
        selector: (u16::from(index) * 8) | u16::from(rpl),
        type_: bits(40, 0xf),
        present: bits(47, 1),
        dpl: bits(45, 3),
        db: bits(54, 1),
        s: bits(44, 1),
        l: bits(53, 1),
        g: bits(55, 1),
        avl: bits(52, 1),
        padding: 0,
        unusable: if bits(47, 1) == 0 { 1 } else { 0 },
    }
}

/// The GDT used at entry: null, code, data, TSS. For `User`, code and data
/// carry DPL 3.
pub fn boot_gdt(privilege: Privilege) -> [u64; 4] {
    let (code, data) = match privilege {
        Privilege::Kernel => (0xa09b, 0xc093),
        Privilege::User => (0xa0fb, 0xc0f3),
    };
    [
        gdt_entry(0, 0, 0),
        gdt_entry(code, 0, 0xfffff),
        gdt_entry(data, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

fn write<M: GuestMemory>(
    mem: &M,
    what: &'static str,
    addr: u64,
    bytes: &[u8],
) -> Result<(), WriteBootStructure> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|_| WriteBootStructure { what, addr })
}

/// Identity-map the first 4 GiB with 2 MiB pages (user-accessible for `User`).
pub fn write_page_tables<M: GuestMemory>(
    mem: &M,
    privilege: Privilege,
) -> Result<(), WriteBootStructure> {
    let user = if privilege == Privilege::User {
        PTE_USER
    } else {
        0
    };
    let flags = PTE_PRESENT | PTE_WRITE | user;
    write(
        mem,
        "PML4",
        PML4_START,
        &(PDPTE_START | flags).to_le_bytes(),
    )?;
    let pdpte: Vec<u8> = (0..MAPPED_GIB)
        .flat_map(|g| ((PDE_START + g * 0x1000) | flags).to_le_bytes())
        .collect();
    write(mem, "PDPTE", PDPTE_START, &pdpte)?;
    let mut pde = Vec::with_capacity((512 * 8 * MAPPED_GIB) as usize);
    for i in 0..512 * MAPPED_GIB {
        pde.extend_from_slice(&((i << 21) | flags | PTE_HUGE).to_le_bytes());
    }
    write(mem, "PDE", PDE_START, &pde)
}

/// Write the GDT and an empty IDT; return special registers for long mode.
pub fn long_mode_sregs<M: GuestMemory>(
    mem: &M,
    mut sregs: kvm_sregs,
    privilege: Privilege,
) -> Result<kvm_sregs, WriteBootStructure> {
    let gdt = boot_gdt(privilege);
    let bytes: Vec<u8> = gdt.iter().flat_map(|e| e.to_le_bytes()).collect();
    write(mem, "GDT", GDT_START, &bytes)?;
    write(mem, "IDT", IDT_START, &0u64.to_le_bytes())?;
    write_page_tables(mem, privilege)?;

    let rpl = if privilege == Privilege::User { 3 } else { 0 };
    let code = segment_from_gdt(gdt[1], 1, rpl);
    let data = segment_from_gdt(gdt[2], 2, rpl);
    let tss = segment_from_gdt(gdt[3], 3, 0);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    Ok(sregs)
}

/// General registers at entry: `rip`, a boot stack, and `rsi` pointing at the
/// zero page (Linux 64-bit boot protocol). `User` runs with IOPL 3 so the
/// payload may use port I/O.
pub fn entry_regs(rip: GuestAddress, zero_page: GuestAddress, privilege: Privilege) -> kvm_regs {
    let iopl3 = if privilege == Privilege::User {
        3 << 12
    } else {
        0
    };
    kvm_regs {
        rflags: 0x2 | iopl3,
        rip: rip.raw_value(),
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: zero_page.raw_value(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vstate::memory::create_guest_memory;

    #[test]
    fn test_gdt_entry_packs_flat_segments() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0x808b, 0, 0xfffff), 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn test_segment_from_gdt_user_code() {
        let seg = segment_from_gdt(boot_gdt(Privilege::User)[1], 1, 3);
        assert_eq!(seg.selector, 0x0b);
        assert_eq!(seg.dpl, 3);
        assert_eq!(seg.l, 1);
        assert_eq!(seg.present, 1);
        assert_eq!(seg.type_, 0xb);
        assert_eq!(seg.unusable, 0);
    }

    #[test]
    fn test_page_tables_identity_map_first_4gib() {
        let mem = create_guest_memory(16 << 20).unwrap();
        write_page_tables(&mem, Privilege::Kernel).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 0x3);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
        let pdpte3: u64 = mem.read_obj(GuestAddress(PDPTE_START + 3 * 8)).unwrap();
        assert_eq!(pdpte3, (PDE_START + 0x3000) | 0x3);
        let mmio: u64 = mem
            .read_obj(GuestAddress(PDE_START + (0xd000_0000u64 >> 21) * 8))
            .unwrap();
        assert_eq!(mmio & !0xfff, 0xd000_0000);
        write_page_tables(&mem, Privilege::User).unwrap();
        let pde0: u64 = mem.read_obj(GuestAddress(PDE_START)).unwrap();
        assert_eq!(pde0 & PTE_USER, PTE_USER);
    }

    #[test]
    fn test_long_mode_sregs() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let s = long_mode_sregs(&mem, kvm_sregs::default(), Privilege::Kernel).unwrap();
        assert_eq!(s.cr3, PML4_START);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.selector, 8);
        assert_eq!(s.ss.selector, 16);
        assert_eq!(s.tr.selector, 24);
    }
}
