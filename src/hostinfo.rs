//! Facts about the host, read from `/proc`.

/// The value of a `Key:   N kB` line of a /proc file such as
/// `/proc/meminfo` or `/proc/self/status`, in bytes.
pub fn proc_kib_field(path: &str, key: &str) -> Option<u64> {
    parse_kib_field(&std::fs::read_to_string(path).ok()?, key)
}

fn parse_kib_field(text: &str, key: &str) -> Option<u64> {
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// This host's name (the kernel's), for `spec.nodeName`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_kib_field() {
        let t =
            "MemTotal:       24684292 kB\nMemAvailable:   23712336 kB\nHugePages_Total:       0\n";
        assert_eq!(parse_kib_field(t, "MemAvailable"), Some(23_712_336 * 1024));
        assert_eq!(parse_kib_field(t, "HugePages_Total"), Some(0));
        assert_eq!(parse_kib_field(t, "Mem"), None, "whole keys only");
        assert_eq!(parse_kib_field(t, "Missing"), None);
        assert!(proc_kib_field("/proc/self/status", "VmRSS").unwrap() > 0);
    }
}
