//! Access to `/dev/kvm` and detection of the host's KVM flavour.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use kvm_ioctls::Kvm;

/// MSR index that the public PVM (Pagetable-based Virtual Machine) reports
/// in `KVM_GET_MSR_INDEX_LIST`.
pub const PVM_MSR_INDEX: u32 = 0x4b56_4df1;
/// The kernel module that provides a PVM `/dev/kvm`. Some PVM builds (this
/// project's development machines among them) do not report the MSR above,
/// so the loaded module is checked too.
pub const PVM_MODULE: &str = "kvm_pvm";

/// The device every VM is created through.
pub const KVM_PATH: &str = "/dev/kvm";

/// What kind of KVM the host provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmFlavour {
    /// Hardware virtualization (VT-x or AMD-V): ordinary guest kernels run.
    Hardware,
    /// PVM: guest user code runs natively, guest ring-0 code is emulated and
    /// an ordinary Linux kernel cannot boot.
    Pvm,
}

impl KvmFlavour {
    /// Classify a host from the MSR indices its KVM reports and whether the
    /// PVM module is loaded.
    pub fn classify(indices: &[u32], pvm_module_loaded: bool) -> Self {
        if pvm_module_loaded || indices.contains(&PVM_MSR_INDEX) {
            KvmFlavour::Pvm
        } else {
            KvmFlavour::Hardware
        }
    }

    /// Whether an ordinary Linux guest kernel can boot on this flavour.
    pub fn can_boot_linux(self) -> bool {
        self == KvmFlavour::Hardware
    }
}

impl fmt::Display for KvmFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmFlavour::Hardware => f.write_str("hardware (VT-x/AMD-V)"),
            KvmFlavour::Pvm => f.write_str("PVM (pagetable-based, ring 0 emulated)"),
        }
    }
}

/// The explanation printed wherever a guest kernel cannot run on PVM.
pub const PVM_ADVICE: &str = "this host's KVM is PVM; ordinary guest kernels cannot run here; \
use scripts/kvm-runner (an emulated KVM host) to run pods on this machine";

/// Why `/dev/kvm` could not be opened, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KvmAccessError {
    /// The device node does not exist.
    #[error("{KVM_PATH} does not exist: this host has no KVM (load kvm_intel or kvm_amd, or enable nested virtualization for this VM)")]
    Missing,
    /// The device exists but this user may not open it.
    #[error("{KVM_PATH} is not accessible to this user: add yourself to its group (`sudo usermod -aG $(stat -c %G {KVM_PATH}) $USER`, then log in again) or grant access with `sudo setfacl -m u:$USER:rw {KVM_PATH}`")]
    Denied(#[source] io::Error),
    /// Any other failure opening or using the device.
    #[error("cannot open {KVM_PATH}")]
    Open(#[source] io::Error),
}

/// Open `/dev/kvm`, mapping failures to errors that say how to fix them.
pub fn open_kvm() -> Result<Kvm, KvmAccessError> {
    let path = Path::new(KVM_PATH);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => KvmAccessError::Missing,
            io::ErrorKind::PermissionDenied => KvmAccessError::Denied(e),
            _ => KvmAccessError::Open(e),
        })?;
    // SAFETY: `file` is an open /dev/kvm descriptor whose ownership moves to Kvm.
    Ok(unsafe { Kvm::from_raw_fd(file.into_raw_fd()) })
}

/// Detect the flavour of an open KVM.
pub fn detect_flavour(kvm: &Kvm) -> io::Result<KvmFlavour> {
    let list = kvm
        .get_msr_index_list()
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let module = Path::new("/sys/module").join(PVM_MODULE).exists();
    Ok(KvmFlavour::classify(list.as_slice(), module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_flavour_detects_pvm_msr() {
        assert_eq!(
            KvmFlavour::classify(&[0x10, PVM_MSR_INDEX, 0xc000_0080], false),
            KvmFlavour::Pvm
        );
        // KVM's own paravirt MSRs (0x4b564d0x) are not PVM's.
        assert_eq!(
            KvmFlavour::classify(&[0x4b56_4d00, 0x4b56_4d05], true),
            KvmFlavour::Pvm
        );
        assert!(!KvmFlavour::Pvm.can_boot_linux());
    }

    #[test]
    fn test_flavour_defaults_to_hardware() {
        assert_eq!(
            KvmFlavour::classify(&[0x10, 0x174, 0x4b56_4d00, 0xc000_0080], false),
            KvmFlavour::Hardware
        );
        assert_eq!(KvmFlavour::classify(&[], false), KvmFlavour::Hardware);
        assert!(KvmFlavour::Hardware.can_boot_linux());
    }
}
