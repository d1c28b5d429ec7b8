//! peapod-init: PID 1 of a peapod guest, the pod's infra process.
//!
//! It mounts the kernel file systems, reports readiness on the console (the
//! host's VMM watches for the line), and, when the pod is done, reports the
//! pod's exit status and resets the VM, which the VMM sees as a clean exit.
//!
//! With `--native --socket PATH --share DIR` it runs on the host instead,
//! as PID 1 of fresh namespaces (see [`native`]), and runs the pod it gets
//! over the socket (see [`runtime`]).

mod cgroup;
mod container;
mod exec;
mod logs;
mod native;
mod net;
mod probe;
mod runtime;
mod sys;
mod transport;
mod vm;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use peapod_proto::{
    exit_line, ready_line, CMDLINE_POD_NAME, CMDLINE_SHARE_TAG, CMDLINE_SHARE_TAGS, GUEST_SHARE_DIR,
};

fn kernel_cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match native::parse_args(&args) {
        Ok(Some(native)) => {
            let code = if std::process::id() == 1 {
                native::pid1(&native)
            } else {
                native::launch(&native)
            };
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("peapod-init: {e}");
            return ExitCode::from(2);
        }
    }
    if std::process::id() != 1 {
        eprintln!("peapod-init: must run as PID 1 of a peapod guest (it mounts and reboots)");
        return ExitCode::from(2);
    }
    if let Err(e) = vm::leave_initramfs() {
        // Containers could not pivot_root; the pod still boots to ready.
        say(&format!(
            "peapod-init: error: cannot leave the initramfs: {e}"
        ));
    }
    let mut status = 0;
    for m in sys::BASE_MOUNTS {
        if let Err(e) = sys::mount_fs(m) {
            say(&format!("peapod-init: error: {e}"));
            status = 1;
        }
    }
    sys::tune_page_reporting();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(name) = kernel_cmdline_value(&cmdline, CMDLINE_POD_NAME) {
        if let Err(e) = sys::set_hostname(&name) {
            say(&format!(
                "peapod-init: error: cannot set hostname {name}: {e}"
            ));
        }
    }
    let agent_port =
        kernel_cmdline_value(&cmdline, vm::CMDLINE_AGENT_PORT).and_then(|p| p.parse::<u32>().ok());
    if agent_port.is_some() {
        if let Err(e) = sys::mount_pod_scratch() {
            say(&format!("peapod-init: error: {e}"));
            status = 1;
        }
        // Without it the pod still runs; each limit it cannot enforce is
        // reported to the host.
        if let Err(e) = cgroup::mount_unified() {
            say(&format!("peapod-init: warning: no cgroups: {e}"));
        }
    }
    if let Some(tag) = kernel_cmdline_value(&cmdline, CMDLINE_SHARE_TAG) {
        match mount_share(&tag, Path::new(GUEST_SHARE_DIR)) {
            Ok(names) => say(&format!(
                "peapod-init: share {tag} mounted: {}",
                names.join(" ")
            )),
            Err(e) => {
                say(&format!(
                    "peapod-init: error: cannot mount the pod share {tag}: {e}"
                ));
                status = 1;
            }
        }
    }
    let tags = kernel_cmdline_value(&cmdline, CMDLINE_SHARE_TAGS).unwrap_or_default();
    for tag in tags.split(',').filter(|t| !t.is_empty()) {
        if let Err(e) = mount_share(tag, &Path::new(GUEST_SHARE_DIR).join(tag)) {
            say(&format!(
                "peapod-init: error: cannot mount the share {tag}: {e}"
            ));
            status = 1;
        }
    }
    say(&ready_line(sys::uptime_ms()));
    if let (Some(port), 0) = (agent_port, status) {
        status = vm::agent(port);
    }
    say(&exit_line(status));
    sys::reset_machine()
}

/// Mount a virtio-fs share (tag `tag`) at `dir` and list its top level.
fn mount_share(tag: &str, dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    sys::mount(
        Some(tag),
        dir,
        Some("virtiofs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_kernel_cmdline_value() {
        let c = "console=ttyS0 peapod.pod=hello quiet peapod.podx=no";
        assert_eq!(
            kernel_cmdline_value(c, "peapod.pod").as_deref(),
            Some("hello")
        );
        assert_eq!(kernel_cmdline_value(c, "console").as_deref(), Some("ttyS0"));
        assert_eq!(kernel_cmdline_value(c, "missing"), None);
    }
}
