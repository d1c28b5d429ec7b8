//! Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI
//! learns its CPUs, its IOAPIC and the ISA interrupt routing.

/// Where the tables go: the last KiB of base memory, which Linux scans for
/// the floating pointer when the BIOS data area names no EBDA.
pub const MPTABLE_START: u64 = 0x9fc00;
/// Local APIC base address.
pub const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
/// IOAPIC base address.
pub const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
/// Most vCPUs whose entries fit in the last KiB of base memory.
pub const MAX_VCPUS: u8 = 32;
/// Pins of KVM's in-kernel IOAPIC.
pub const IOAPIC_PINS: u8 = 24;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
const MP_IRQ_INT: u8 = 0;
const MP_IRQ_NMI: u8 = 1;
const MP_IRQ_EXTINT: u8 = 3;
const BUS_ID_ISA: u8 = 0;
/// Floating pointer (16) + header (44) + per CPU (20) + bus/ioapic (16) +
/// per pin (8) + two local interrupt entries (16).
pub fn table_size(vcpus: u8) -> usize {
    16 + 44 + 20 * vcpus as usize + 16 + 8 * IOAPIC_PINS as usize + 16
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Build the floating pointer and the configuration table, to be written at
/// `MPTABLE_START`. The IOAPIC's id is the first id after the CPUs'.
pub fn build(vcpus: u8) -> Vec<u8> {
    assert!((1..=MAX_VCPUS).contains(&vcpus), "1..={MAX_VCPUS} vCPUs");
    let ioapic_id = vcpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;

    // CPUID leaf 1 signature and feature flags (FPU, APIC) of a generic CPU:
    // Linux only uses them for printing.
    let cpu_signature: u32 = (6 << 8) | (2 << 4) | 3;
    let cpu_features: u32 = (1 << 9) | 1;
    for id in 0..vcpus {
        entries.extend_from_slice(&[MP_PROCESSOR, id, APIC_VERSION]);
        entries.push(CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 });
        entries.extend_from_slice(&cpu_signature.to_le_bytes());
        entries.extend_from_slice(&cpu_features.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[MP_BUS, BUS_ID_ISA]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[MP_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // type, irq type, flags (conforming), source bus, source irq, dest ioapic, dest pin
        entries.extend_from_slice(&[MP_INTSRC, MP_IRQ_INT, 0, 0, BUS_ID_ISA, pin, ioapic_id, pin]);
        count += 1;
    }
    // LINT0 is the 8259's virtual wire, LINT1 the NMI line, on every CPU.
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_EXTINT, 0, 0, BUS_ID_ISA, 0, 0xff, 0]);
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_NMI, 0, 0, BUS_ID_ISA, 0, 0xff, 1]);
    count += 2;

    let table_addr = MPTABLE_START as u32 + 16;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    header.push(4); // spec revision 1.4
    header.push(0); // checksum, below
    header.extend_from_slice(b"PEAPOD  ");
    header.extend_from_slice(b"MICROVM     ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    let mut config = header;
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&table_addr.to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(4); // spec revision
    fp.push(0); // checksum, below
    fp.extend_from_slice(&[0; 5]); // feature bytes: 0 = configuration table present
    fp[10] = checksum(&fp);

    let mut out = fp;
    out.extend_from_slice(&config);
    debug_assert_eq!(out.len(), table_size(vcpus));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn test_mptable_checksums_and_signatures() {
        for vcpus in [1u8, 2, 8, MAX_VCPUS] {
            let t = build(vcpus);
            assert_eq!(t.len(), table_size(vcpus));
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[0..16]), 0, "floating pointer checksum");
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, MPTABLE_START + 16);
            let cfg = &t[16..];
            assert_eq!(&cfg[0..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(sum(cfg), 0, "configuration table checksum");
            let count = u16::from_le_bytes([cfg[34], cfg[35]]);
            assert_eq!(
                count as usize,
                vcpus as usize + 2 + IOAPIC_PINS as usize + 2
            );
        }
    }

    #[test]
    fn test_mptable_marks_only_cpu0_as_boot_processor() {
        let t = build(4);
        let cpus = &t[16 + 44..16 + 44 + 80];
        let flags: Vec<u8> = cpus.chunks(20).map(|c| c[3]).collect();
        assert_eq!(flags, vec![3, 1, 1, 1]);
        let ids: Vec<u8> = cpus.chunks(20).map(|c| c[1]).collect();
        assert_eq!(ids, vec![0, 1, 2, 3]);
    }

    #[test]
    fn test_mptable_fits_below_base_memory_end() {
        assert!(MPTABLE_START + table_size(MAX_VCPUS) as u64 <= 0xa0000);
    }
}
