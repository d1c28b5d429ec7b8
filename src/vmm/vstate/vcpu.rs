//! vCPU configuration (CPUID, MSRs, registers, LAPIC) and the run loop that
//! routes exits to the device buses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_fpu, kvm_msr_entry, CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::devices::bus::Bus;

const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_IA32_MISC_ENABLE_FAST_STRING: u64 = 1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Why a vCPU stopped the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// The guest pulsed the i8042 reset line: Linux `reboot` with `reboot=k`.
    Reset,
    /// The guest triple-faulted: Linux `reboot=t`, or a crash.
    TripleFault,
    /// KVM could not emulate a guest instruction.
    EmulationFailure {
        /// vCPU index.
        cpu: u8,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// Hardware reason code.
        reason: u64,
    },
    /// KVM_RUN failed or returned something unexpected.
    Internal(String),
    /// The host stopped the VM (the pod was killed).
    Killed,
}

/// Fix up the host's supported CPUID for one vCPU: APIC ids, logical CPU
/// count, the hypervisor bit.
pub fn patch_cpuid(cpuid: &mut CpuId, id: u8, vcpus: u8) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(vcpus) << 16);
                e.ecx |= 1 << 31;
                if vcpus > 1 {
                    e.edx |= 1 << 28; // HTT: more than one logical processor
                }
            }
            0xb | 0x1f => e.edx = u32::from(id),
            _ => {}
        }
    }
}

/// CPUID.1:ECX bit 24, the LAPIC timer's TSC-deadline mode.
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Advertise the LAPIC timer's TSC-deadline mode (KVM emulates it when it
/// has `KVM_CAP_TSC_DEADLINE_TIMER`, but never sets the bit itself). A
/// guest that has it programs its timer in TSC ticks and skips the APIC
/// timer calibration, 100 ms of waiting on the PIT at every boot.
pub fn set_tsc_deadline_timer(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == 1) {
        e.ecx |= CPUID_1_ECX_TSC_DEADLINE;
    }
}

/// MSRs set before the first instruction.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    let e = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        e(MSR_IA32_SYSENTER_CS, 0),
        e(MSR_IA32_SYSENTER_ESP, 0),
        e(MSR_IA32_SYSENTER_EIP, 0),
        e(MSR_STAR, 0),
        e(MSR_CSTAR, 0),
        e(MSR_KERNEL_GS_BASE, 0),
        e(MSR_SYSCALL_MASK, 0),
        e(MSR_LSTAR, 0),
        e(MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING),
        e(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
}

fn set_lapic_delivery_mode(regs: &mut [i8], offset: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = regs[offset + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, x) in v.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *x as i8;
    }
}

/// Configure CPUID, MSRs, FPU and LAPIC of one vCPU.
pub fn configure(vcpu: &VcpuFd, cpuid: &CpuId, id: u8, vcpus: u8) -> Result<(), kvm_ioctls::Error> {
    let mut cpuid = cpuid.clone();
    patch_cpuid(&mut cpuid, id, vcpus);
    vcpu.set_cpuid2(&cpuid)?;
    let msrs =
        Msrs::from_entries(&boot_msrs()).map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
    vcpu.set_msrs(&msrs)?;
    vcpu.set_fpu(&kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    })?;
    let mut lapic = vcpu.get_lapic()?;
    set_lapic_delivery_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_lapic_delivery_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic)
}

/// How vCPUs and devices tell the VMM that the VM must stop: the first
/// reason wins, and the event loop is woken.
#[derive(Clone)]
pub struct StopSignal {
    reason: Arc<Mutex<Option<VcpuStop>>>,
    evt: Arc<EventFd>,
}

impl StopSignal {
    /// A signal that wakes whoever polls `evt`.
    pub fn new(evt: EventFd) -> Self {
        StopSignal {
            reason: Arc::default(),
            evt: Arc::new(evt),
        }
    }

    /// Ask the VMM to stop the VM.
    pub fn stop(&self, why: VcpuStop) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        if let Err(e) = self.evt.write(1) {
            log::error!("cannot signal VM stop: {e}");
        }
    }

    /// The reason, once one was given.
    pub fn reason(&self) -> Option<VcpuStop> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a vCPU thread shares with the VMM.
pub struct VcpuShared {
    /// Port I/O devices.
    pub pio: Bus,
    /// MMIO devices.
    pub mmio: Bus,
    /// Set by the VMM to stop every vCPU.
    pub stop: Arc<AtomicBool>,
    /// Where a vCPU reports why the VM must stop.
    pub signal: StopSignal,
}

impl VcpuShared {
    fn finish(&self, why: VcpuStop) {
        self.signal.stop(why);
    }
}

/// Run a vCPU until the guest stops the VM or the VMM asks it to stop.
/// Returns the number of exits handled.
pub fn run_loop(mut vcpu: VcpuFd, id: u8, shared: &VcpuShared) -> u64 {
    let mut exits: u64 = 0;
    let mut unknown_pio_logged = 0u32;
    while !shared.stop.load(Ordering::Acquire) {
        let exit = vcpu.run();
        exits += 1;
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                if !shared.pio.write(u64::from(port), data) && unknown_pio_logged < 16 {
                    unknown_pio_logged += 1;
                    log::debug!("vcpu{id}: write to unhandled port {port:#x}");
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                if !shared.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !shared.mmio.read(addr, data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                shared.mmio.write(addr, data);
            }
            Ok(VcpuExit::Shutdown) => {
                shared.finish(VcpuStop::TripleFault);
                break;
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                log::debug!("vcpu{id}: system event {kind}");
                shared.finish(VcpuStop::Reset);
                break;
            }
            Ok(VcpuExit::Hlt) => {
                // Only seen without an in-kernel LAPIC: treat as power off.
                shared.finish(VcpuStop::Reset);
                break;
            }
            Ok(VcpuExit::InternalError) => {
                shared.finish(VcpuStop::EmulationFailure { cpu: id });
                break;
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                shared.finish(VcpuStop::FailEntry { reason });
                break;
            }
            Ok(other) => {
                shared.finish(VcpuStop::Internal(format!(
                    "unexpected exit {other:?} on vcpu{id}"
                )));
                break;
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
            }
            Err(e) => {
                shared.finish(VcpuStop::Internal(format!(
                    "KVM_RUN failed on vcpu{id}: {e}"
                )));
                break;
            }
        }
    }
    exits
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn test_patch_cpuid_sets_apic_id_and_hypervisor_bit() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 9,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        patch_cpuid(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800);
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_eq!(e[1].edx, 3);
    }

    #[test]
    fn test_set_tsc_deadline_timer_sets_leaf_1_ecx_bit_24_only() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: 0x8000_0001,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        set_tsc_deadline_timer(&mut cpuid);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ecx, 0x8100_0001);
        assert_eq!(e[1].ecx, 0);
    }

    #[test]
    fn test_lapic_delivery_mode() {
        let mut regs = [0i8; 1024];
        regs[APIC_LVT0] = 0x10;
        set_lapic_delivery_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_lapic_delivery_mode(&mut regs, APIC_LVT1, APIC_MODE_NMI);
        assert_eq!(regs[APIC_LVT0] as u8, 0x10);
        assert_eq!(regs[APIC_LVT0 + 1] as u8, 0x07);
        assert_eq!(regs[APIC_LVT1 + 1] as u8, 0x04);
    }

    #[test]
    fn test_boot_msrs_enable_mtrr_writeback() {
        let m = boot_msrs();
        let def = m.iter().find(|e| e.index == MSR_MTRR_DEF_TYPE).unwrap();
        assert_eq!(def.data, (1 << 11) | 6);
    }
}
