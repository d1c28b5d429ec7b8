//! KVM state: the KVM handle, guest memory, vCPUs.

pub mod kvm;
pub mod memory;
pub mod vcpu;
