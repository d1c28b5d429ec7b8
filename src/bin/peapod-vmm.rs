//! `peapod-vmm`: the VMM process of a VM pod, started by the pod's monitor
//! with the launch on stdin (what `peapod __vmm` does, in a binary of its
//! own). No command-line parser, image store, registry client, YAML or
//! CRI code is mapped into the process the guest talks to: it starts
//! faster and holds less memory than a second exec of `peapod`.

fn main() -> std::process::ExitCode {
    // Its stderr is the monitor's log, a file nobody watches live: keep
    // the story.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,fuse_backend_rs=warn"),
    )
    .format_timestamp(None)
    .init();
    peapod::sandbox::vmm_process::main()
}
