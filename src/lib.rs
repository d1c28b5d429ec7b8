//! peapod: rootless Kubernetes pods in KVM microVMs.
//!
//! A pod runs as one lightweight KVM guest whose PID 1, `peapod-init`, is the
//! pod's infra process. See ARCHITECTURE in the repository for the data flow.

pub mod admission;
pub mod cli;
pub mod hostinfo;
pub mod image;
pub mod sandbox;
pub mod settings;
pub mod spec;
pub mod vmm;
