//! `peapod-monitor`: a pod's monitor (reservation, state, logs, API,
//! passt, the VMM's supervisor), started by `peapod run` or the shim with
//! the launch on stdin (what `peapod __monitor` does, in a binary of its
//! own). It lives as long as the pod: without the command-line parser,
//! image store, registry client and YAML parser it starts faster and holds
//! less memory than `peapod`.

fn main() -> std::process::ExitCode {
    peapod::sandbox::init_helper_log();
    peapod::sandbox::monitor::main()
}
