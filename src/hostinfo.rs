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

/// This host's address, for `status.hostIP`: the source address of its
/// default IPv4 route (the kernel's choice for a datagram to a documentation
/// address; nothing is sent), else 127.0.0.1.
pub fn host_ip() -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, UdpSocket};
    let routed = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| {
        s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        s.local_addr()
    });
    match routed {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_host_ip_is_an_address_of_this_host() {
        let ip = host_ip();
        assert!(!ip.is_unspecified());
        // One can bind it: it is this host's.
        std::net::UdpSocket::bind((ip, 0)).unwrap();
    }

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
