//! `peapod-monitor`: a pod's monitor (reservation, state, logs, API,
//! passt, the VMM's supervisor), started by `peapod run` or the shim with
//! the launch on stdin (what `peapod __monitor` does, in a binary of its
//! own). It lives as long as the pod: without the command-line parser,
//! image store, registry client and YAML parser it starts faster and holds
//! less memory than `peapod`.

fn main() -> std::process::ExitCode {
    // Its stderr is the monitor's log, a file nobody watches live: keep
    // the story.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,fuse_backend_rs=warn"),
    )
    .format_timestamp(None)
    .init();
    peapod::sandbox::monitor::main()
}
