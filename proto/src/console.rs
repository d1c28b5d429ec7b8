//! The serial-console protocol: lines peapod-init prints and the VMM scans
//! for. It exists before (and independently of) the framed stream protocol,
//! so boot progress is visible even when vsock never comes up.

/// Prefix of every line peapod-init prints for the host to parse.
pub const CONSOLE_PREFIX: &str = "peapod-init:";

/// The line peapod-init prints once the pod's infra process is up:
/// `peapod-init: ready uptime_ms=<ms>`.
pub const READY_MARK: &str = "peapod-init: ready";

/// The line peapod-init prints right before it resets the VM:
/// `peapod-init: exit status=<code>`.
pub const EXIT_MARK: &str = "peapod-init: exit status=";

/// Kernel command line key carrying the pod name to the guest.
pub const CMDLINE_POD_NAME: &str = "peapod.pod";

/// Kernel command line key naming the virtio-fs tag of the pod share.
pub const CMDLINE_SHARE_TAG: &str = "peapod.share";

/// Kernel command line key naming more virtio-fs tags, comma-separated:
/// each is mounted at `GUEST_SHARE_DIR/<tag>` (a pod's image root
/// filesystems, one share each).
pub const CMDLINE_SHARE_TAGS: &str = "peapod.shares";

/// Where peapod-init mounts the pod share in the guest.
pub const GUEST_SHARE_DIR: &str = "/run/peapod/share";

/// Parse the uptime out of a readiness line.
pub fn parse_ready(line: &str) -> Option<u64> {
    let rest = line.trim().strip_prefix(READY_MARK)?.trim();
    rest.strip_prefix("uptime_ms=")?.parse().ok()
}

/// Parse the status out of an exit line.
pub fn parse_exit(line: &str) -> Option<i32> {
    line.trim().strip_prefix(EXIT_MARK)?.trim().parse().ok()
}

/// Format the readiness line.
pub fn ready_line(uptime_ms: u64) -> String {
    format!("{READY_MARK} uptime_ms={uptime_ms}")
}

/// Format the exit line.
pub fn exit_line(status: i32) -> String {
    format!("{EXIT_MARK}{status}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ready_line_round_trip() {
        assert_eq!(parse_ready(&ready_line(1234)), Some(1234));
        assert_eq!(parse_ready("peapod-init: ready uptime_ms=x"), None);
        assert_eq!(parse_ready("something else"), None);
    }

    #[test]
    fn test_exit_line_round_trip() {
        assert_eq!(parse_exit(&exit_line(0)), Some(0));
        assert_eq!(parse_exit(&exit_line(-3)), Some(-3));
        assert_eq!(parse_exit("peapod-init: exit status="), None);
    }
}
