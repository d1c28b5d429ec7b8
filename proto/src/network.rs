//! The pod's network as the guest configures it: one Ethernet interface
//! (virtio-net in a VM, backed by passt on the host) with a static IPv4
//! address and a default route, plus the DNS and /etc/hosts content every
//! container gets.
//!
//! Addresses are typed: a malformed one is a decode error of the whole
//! message (the host builds them from parsed values, so only a mismatched
//! peer can send one). [`WireNetwork::validate`] checks what the types do
//! not: prefix length, MTU, that the addresses are usable, that names
//! cannot break the files they are written to, and list sizes.
//!
//! The gateway may lie outside the interface's subnet (a host with a /32
//! address, which passt copies): the guest then adds an on-link host route
//! to the gateway before the default route, as `ip route add GW dev eth0`
//! would.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Result};

/// Most DNS servers: resolvers read no more (glibc's and musl's `MAXNS`),
/// and Kubernetes allows no more.
pub const MAX_DNS_SERVERS: usize = 3;
/// Most DNS search domains (Kubernetes' limit).
pub const MAX_DNS_SEARCH: usize = 32;
/// Most resolver options.
pub const MAX_DNS_OPTIONS: usize = 32;
/// Most extra /etc/hosts lines.
pub const MAX_HOST_ENTRIES: usize = 256;
/// Most names on one extra /etc/hosts line.
pub const MAX_NAMES_PER_HOST: usize = 32;
/// Smallest MTU IPv4 allows (RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU passt supports (65535 less the Ethernet header, rounded).
pub const MAX_MTU: u32 = 65520;

/// The pod's network interface and name resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireNetwork {
    /// MAC address of the interface to configure (`52:54:00:12:34:56`, as
    /// the VMM gave the virtio-net device); `None`: the Ethernet interface
    /// with the lowest index.
    pub mac: Option<String>,
    /// The pod's IPv4 address.
    pub address: Ipv4Addr,
    /// Prefix length of the interface's subnet, 1 to 32.
    pub prefix_len: u8,
    /// Default gateway; in the subnet, or else reached by an on-link route.
    pub gateway: Ipv4Addr,
    /// Interface MTU, [`MIN_MTU`] to [`MAX_MTU`].
    pub mtu: u32,
    /// `nameserver` lines of /etc/resolv.conf, in order.
    pub dns_servers: Vec<IpAddr>,
    /// The `search` line of /etc/resolv.conf.
    pub dns_search: Vec<String>,
    /// The `options` line of /etc/resolv.conf (`ndots:5`, `edns0`).
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Extra /etc/hosts lines (`hostAliases`), after the pod's own.
    pub hosts: Vec<WireHostEntry>,
}

/// One extra /etc/hosts line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireHostEntry {
    /// The address the names resolve to.
    pub ip: IpAddr,
    /// Host names, at least one.
    pub names: Vec<String>,
}

fn invalid(field: String, problem: &str) -> ProtoError {
    ProtoError::InvalidPod {
        field,
        problem: problem.to_owned(),
    }
}

/// Parse a MAC address written as six colon-separated pairs of hex digits.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The netmask of a prefix length (0 to 32).
pub fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// Whether `other` is in the subnet of `address`/`prefix_len`.
pub fn in_subnet(address: Ipv4Addr, prefix_len: u8, other: Ipv4Addr) -> bool {
    let mask = u32::from(netmask(prefix_len));
    u32::from(address) & mask == u32::from(other) & mask
}

/// A DNS name that is safe in /etc/hosts and /etc/resolv.conf: dot-separated
/// labels of 1 to 63 letters, digits, `-` or `_`, at most 253 characters,
/// one trailing dot allowed.
pub fn is_dns_name(name: &str) -> bool {
    let bare = name.strip_suffix('.').unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An address an interface or gateway can have.
fn check_unicast(field: String, a: Ipv4Addr) -> Result<()> {
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        return Err(invalid(
            field,
            &format!(
                "{a} is not a unicast address (unspecified, loopback, multicast or broadcast)"
            ),
        ));
    }
    Ok(())
}

impl WireNetwork {
    /// Check the network; `at` is the field path of this value (`network`).
    pub fn validate(&self, at: &str) -> Result<()> {
        let field = |name: &str| format!("{at}.{name}");
        if let Some(mac) = &self.mac {
            match parse_mac(mac) {
                None => {
                    return Err(invalid(
                        field("mac"),
                        &format!("{mac:?} is not a MAC address like 52:54:00:12:34:56"),
                    ))
                }
                Some(m) if m[0] & 1 == 1 => {
                    return Err(invalid(field("mac"), &format!("{mac} is a multicast MAC")))
                }
                Some(_) => {}
            }
        }
        if !(1..=32).contains(&self.prefix_len) {
            return Err(invalid(
                field("prefix_len"),
                &format!("{} is not a prefix length from 1 to 32", self.prefix_len),
            ));
        }
        check_unicast(field("address"), self.address)?;
        check_unicast(field("gateway"), self.gateway)?;
        // The subnet's own network and broadcast addresses (for /31 and /32
        // every address is a host).
        if self.prefix_len <= 30 {
            let mask = u32::from(netmask(self.prefix_len));
            let network = u32::from(self.address) & mask;
            let broadcast = network | !mask;
            for (name, a) in [("address", self.address), ("gateway", self.gateway)] {
                let in_net = in_subnet(self.address, self.prefix_len, a);
                if in_net && (u32::from(a) == network || u32::from(a) == broadcast) {
                    return Err(invalid(
                        field(name),
                        &format!(
                            "{a} is the network or broadcast address of {}/{}",
                            Ipv4Addr::from(network),
                            self.prefix_len
                        ),
                    ));
                }
            }
        }
        if self.gateway == self.address {
            return Err(invalid(
                field("gateway"),
                "must not be the pod's own address",
            ));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(invalid(
                field("mtu"),
                &format!("{} is not from {MIN_MTU} to {MAX_MTU}", self.mtu),
            ));
        }
        if self.dns_servers.len() > MAX_DNS_SERVERS {
            return Err(invalid(
                field("dns_servers"),
                &format!("more than {MAX_DNS_SERVERS} servers"),
            ));
        }
        for (i, s) in self.dns_servers.iter().enumerate() {
            if s.is_unspecified() || s.is_multicast() {
                return Err(invalid(
                    field(&format!("dns_servers[{i}]")),
                    &format!("{s} is not a unicast address"),
                ));
            }
        }
        if self.dns_search.len() > MAX_DNS_SEARCH {
            return Err(invalid(
                field("dns_search"),
                &format!("more than {MAX_DNS_SEARCH} domains"),
            ));
        }
        for (i, d) in self.dns_search.iter().enumerate() {
            if !is_dns_name(d) {
                return Err(invalid(
                    field(&format!("dns_search[{i}]")),
                    &format!("{d:?} is not a DNS name"),
                ));
            }
        }
        if self.dns_options.len() > MAX_DNS_OPTIONS {
            return Err(invalid(
                field("dns_options"),
                &format!("more than {MAX_DNS_OPTIONS} options"),
            ));
        }
        for (i, o) in self.dns_options.iter().enumerate() {
            if o.is_empty() || o.len() > 64 || !o.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    field(&format!("dns_options[{i}]")),
                    &format!("{o:?} is not a resolver option"),
                ));
            }
        }
        if self.hosts.len() > MAX_HOST_ENTRIES {
            return Err(invalid(
                field("hosts"),
                &format!("more than {MAX_HOST_ENTRIES} entries"),
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let names = field(&format!("hosts[{i}].names"));
            if h.names.is_empty() || h.names.len() > MAX_NAMES_PER_HOST {
                return Err(invalid(
                    names,
                    &format!("must hold 1 to {MAX_NAMES_PER_HOST} names"),
                ));
            }
            let mut seen = HashSet::new();
            for (j, n) in h.names.iter().enumerate() {
                if !is_dns_name(n) || !seen.insert(n.as_str()) {
                    return Err(invalid(
                        format!("{names}[{j}]"),
                        &format!("{n:?} is not a DNS name, or repeats one"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What passt gives by default on a host at 192.0.2.2/24 behind 192.0.2.1.
    pub(crate) fn sample_network() -> WireNetwork {
        WireNetwork {
            mac: Some("52:54:00:12:34:56".into()),
            address: Ipv4Addr::new(192, 0, 2, 2),
            prefix_len: 24,
            gateway: Ipv4Addr::new(192, 0, 2, 1),
            mtu: 65520,
            dns_servers: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
            dns_search: vec!["example.com".into(), "corp.example.com.".into()],
            dns_options: vec!["ndots:2".into()],
            hosts: vec![WireHostEntry {
                ip: "2001:db8::1".parse().unwrap(),
                names: vec!["db".into(), "db.internal".into()],
            }],
        }
    }

    #[test]
    fn test_parse_mac() {
        assert_eq!(
            parse_mac("52:54:00:ab:CD:ef"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef])
        );
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "52:54:00:ab:cd:e",
            "52:54:00:ab:cd:+f",
            "52-54-00-ab-cd-ef",
            "52:54:00:ab:cd:ef:",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn test_netmask_and_in_subnet() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(33), Ipv4Addr::BROADCAST);
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert!(in_subnet(a, 16, Ipv4Addr::new(10, 1, 255, 1)));
        assert!(!in_subnet(a, 16, Ipv4Addr::new(10, 2, 0, 1)));
        assert!(!in_subnet(a, 32, Ipv4Addr::new(10, 1, 2, 1)));
        assert!(in_subnet(a, 32, a));
    }

    #[test]
    fn test_is_dns_name() {
        for good in ["a", "db.internal", "x_y-z.example.com.", "0abc"] {
            assert!(is_dns_name(good), "{good:?}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 128].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "a\nnameserver 1.1.1.1",
            "a\tb",
            "#x",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn test_wire_network_validate_accepts_passt_setups() {
        sample_network().validate("network").unwrap();
        // A /32 address with the gateway outside (reached on-link), no MAC,
        // no DNS: allowed.
        let n = WireNetwork {
            mac: None,
            address: Ipv4Addr::new(10, 0, 0, 7),
            prefix_len: 32,
            gateway: Ipv4Addr::new(169, 254, 1, 1),
            mtu: 1500,
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            hosts: vec![],
        };
        n.validate("network").unwrap();
        // A /31 has no network or broadcast address.
        let n = WireNetwork {
            address: Ipv4Addr::new(10, 0, 0, 0),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 31,
            ..n
        };
        n.validate("network").unwrap();
    }

    #[test]
    fn test_wire_network_validate_names_the_field() {
        type Breaker = fn(&mut WireNetwork);
        let cases: Vec<(Breaker, &str)> = vec![
            (|n| n.mac = Some("52:54:00:12:34".into()), "network.mac"),
            (|n| n.mac = Some("01:00:5e:00:00:01".into()), "network.mac"),
            (|n| n.prefix_len = 0, "network.prefix_len"),
            (|n| n.prefix_len = 33, "network.prefix_len"),
            (|n| n.address = Ipv4Addr::UNSPECIFIED, "network.address"),
            (|n| n.address = Ipv4Addr::LOCALHOST, "network.address"),
            (
                |n| n.address = Ipv4Addr::new(224, 0, 0, 1),
                "network.address",
            ),
            (
                |n| n.address = Ipv4Addr::new(192, 0, 2, 0),
                "network.address",
            ),
            (
                |n| n.address = Ipv4Addr::new(192, 0, 2, 255),
                "network.address",
            ),
            (|n| n.gateway = Ipv4Addr::BROADCAST, "network.gateway"),
            (
                |n| n.gateway = Ipv4Addr::new(192, 0, 2, 255),
                "network.gateway",
            ),
            (|n| n.gateway = n.address, "network.gateway"),
            (|n| n.mtu = 67, "network.mtu"),
            (|n| n.mtu = 65521, "network.mtu"),
            (
                |n| n.dns_servers = vec![IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)); 4],
                "network.dns_servers",
            ),
            (
                |n| n.dns_servers.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                "network.dns_servers[1]",
            ),
            (
                |n| n.dns_search.push("evil\nnameserver 6.6.6.6".into()),
                "network.dns_search[2]",
            ),
            (
                |n| n.dns_search = vec!["a.example".into(); 33],
                "network.dns_search",
            ),
            (
                |n| n.dns_options.push("ndots:1\nnameserver 6.6.6.6".into()),
                "network.dns_options[1]",
            ),
            (|n| n.hosts[0].names.clear(), "network.hosts[0].names"),
            (
                |n| n.hosts[0].names.push("db".into()),
                "network.hosts[0].names[2]",
            ),
            (
                |n| n.hosts[0].names[1] = "a b".into(),
                "network.hosts[0].names[1]",
            ),
            (|n| n.hosts = vec![n.hosts[0].clone(); 257], "network.hosts"),
        ];
        for (break_it, field) in cases {
            let mut n = sample_network();
            break_it(&mut n);
            match n.validate("network") {
                Err(ProtoError::InvalidPod { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
