//! VMM smoke tests that need no guest kernel: a few instructions run at CPL3
//! (which PVM runs natively, as does hardware KVM) in a VM built by the real
//! builder, proving the memory layout, port I/O and MMIO exits, the serial
//! console, the virtio-mmio registers and a clean stop.

mod common;

use std::time::Duration;

use peapod::vmm::devices::virtio::mmio::MMIO_MAGIC;
use peapod::vmm::vstate::kvm::open_kvm;
use peapod::vmm::{GuestEnd, Vm, VmConfig, VIRTIO_MMIO_BASE};
use vm_memory::{Bytes, GuestAddress};

const PAYLOAD_AT: u64 = 0x10_0000;
const RESULT_AT: u64 = 0x20_0000;

fn kvm_or_skip() -> Option<kvm_ioctls::Kvm> {
    match open_kvm() {
        Ok(k) => Some(k),
        Err(e) => {
            // A host without /dev/kvm cannot run these; say so loudly.
            common::skip(&e.to_string());
            None
        }
    }
}

/// mov dx, port; mov al, byte; out dx, al
fn out_byte(code: &mut Vec<u8>, port: u16, byte: u8) {
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&port.to_le_bytes());
    code.extend_from_slice(&[0xb0, byte, 0xee]);
}

/// mov [addr], eax (addr below 2 GiB)
fn store_eax(code: &mut Vec<u8>, addr: u64) {
    code.extend_from_slice(&[0x89, 0x04, 0x25]);
    code.extend_from_slice(&(addr as u32).to_le_bytes());
}

/// The payload: print "OK\n" on COM1, copy the virtio-mmio magic and device
/// id into RAM through MMIO reads, write an MMIO register, then pulse the
/// i8042 reset line.
fn payload() -> Vec<u8> {
    let mut c = Vec::new();
    for b in b"OK\n" {
        out_byte(&mut c, 0x3f8, *b);
    }
    // mov rbx, VIRTIO_MMIO_BASE (a 32-bit displacement would sign-extend)
    c.extend_from_slice(&[0x48, 0xbb]);
    c.extend_from_slice(&VIRTIO_MMIO_BASE.to_le_bytes());
    // mov eax, [rbx]; mov [RESULT_AT], eax       (magic)
    c.extend_from_slice(&[0x8b, 0x03]);
    store_eax(&mut c, RESULT_AT);
    // mov eax, [rbx + 8]; mov [RESULT_AT + 4], eax  (device id)
    c.extend_from_slice(&[0x8b, 0x43, 0x08]);
    store_eax(&mut c, RESULT_AT + 4);
    // mov dword [rbx + 0x70], 1  (status: ACKNOWLEDGE); read it back
    c.extend_from_slice(&[0xc7, 0x43, 0x70, 0x01, 0x00, 0x00, 0x00]);
    c.extend_from_slice(&[0x8b, 0x43, 0x70]);
    store_eax(&mut c, RESULT_AT + 8);
    // mov al, 0xfe; out 0x64, al  (reset)
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]);
    // jmp $ (never reached)
    c.extend_from_slice(&[0xeb, 0xfe]);
    c
}

#[test]
fn test_vmm_runs_cpl3_payload_through_serial_mmio_and_reset() {
    let Some(kvm) = kvm_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("peapod-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let console = dir.join("console.log");
    let cfg = VmConfig {
        mem_bytes: 32 << 20,
        vcpus: 1,
        console_log: Some(console.clone()),
        console_echo: false,
        vsock_uds: None,
        fs_shares: Vec::new(),
        net: None,
    };
    let mut vm = Vm::new(&kvm, &cfg).unwrap();
    vm.load_user_payload(&payload(), GuestAddress(PAYLOAD_AT))
        .unwrap();
    let mem = vm.memory().clone();
    let outcome = vm.run(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(outcome.end, GuestEnd::Reset, "{outcome:?}");
    let mut words = [0u32; 3];
    for (i, w) in words.iter_mut().enumerate() {
        *w = mem
            .read_obj(GuestAddress(RESULT_AT + 4 * i as u64))
            .unwrap();
    }
    assert_eq!(
        words[0], MMIO_MAGIC,
        "virtio-mmio magic read through an MMIO exit"
    );
    assert_eq!(words[1], 4, "device id of virtio-rng");
    assert_eq!(words[2], 1, "status register written and read back");
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "OK\n");
    assert_eq!(outcome.console_tail, vec!["OK".to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_vmm_stops_spinning_guest_at_deadline() {
    let Some(kvm) = kvm_or_skip() else { return };
    let cfg = VmConfig {
        mem_bytes: 16 << 20,
        vcpus: 2,
        console_log: None,
        console_echo: false,
        vsock_uds: None,
        fs_shares: Vec::new(),
        net: None,
    };
    let mut vm = Vm::new(&kvm, &cfg).unwrap();
    // jmp $: never ready, never exits; the VMM must stop both vCPUs.
    vm.load_user_payload(&[0xeb, 0xfe], GuestAddress(PAYLOAD_AT))
        .unwrap();
    let outcome = vm.run(Some(Duration::from_millis(300))).unwrap();
    assert_eq!(outcome.end, GuestEnd::BootTimeout);
    assert!(outcome.ready.is_none());
}

#[test]
fn test_vmm_unhandled_io_reads_all_ones() {
    let Some(kvm) = kvm_or_skip() else { return };
    let cfg = VmConfig {
        mem_bytes: 16 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: false,
        vsock_uds: None,
        fs_shares: Vec::new(),
        net: None,
    };
    let mut vm = Vm::new(&kvm, &cfg).unwrap();
    let mut c = Vec::new();
    // mov dx, 0x1234; in al, dx; mov [RESULT_AT], al
    c.extend_from_slice(&[0x66, 0xba, 0x34, 0x12, 0xec]);
    c.extend_from_slice(&[0x88, 0x04, 0x25]);
    c.extend_from_slice(&(RESULT_AT as u32).to_le_bytes());

    // mov rbx, 0xd010_0000 (no device there); mov eax, [rbx]; mov [RESULT_AT+4], eax
    c.extend_from_slice(&[0x48, 0xbb]);
    c.extend_from_slice(&0xd010_0000u64.to_le_bytes());
    c.extend_from_slice(&[0x8b, 0x03]);
    store_eax(&mut c, RESULT_AT + 4);
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe]);
    vm.load_user_payload(&c, GuestAddress(PAYLOAD_AT)).unwrap();
    let mem = vm.memory().clone();
    let outcome = vm.run(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(outcome.end, GuestEnd::Reset, "{outcome:?}");
    assert_eq!(mem.read_obj::<u8>(GuestAddress(RESULT_AT)).unwrap(), 0xff);
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(RESULT_AT + 4)).unwrap(),
        0xffff_ffff
    );
}
