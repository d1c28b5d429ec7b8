//! `peapod-vmm`: the VMM process of a VM pod, started by the pod's monitor
//! with the launch on stdin (what `peapod __vmm` does, in a binary of its
//! own). No command-line parser, image store, registry client, YAML or
//! CRI code is mapped into the process the guest talks to: it starts
//! faster and holds less memory than a second exec of `peapod`.

fn main() -> std::process::ExitCode {
    peapod::sandbox::init_helper_log();
    peapod::sandbox::vmm_process::main()
}
