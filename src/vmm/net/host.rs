//! The host's IPv4 uplink: the interface of the default route, its address,
//! prefix length and gateway. passt mirrors these to the guest by default
//! (same address as the host, same gateway), so the guest is told the same.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

/// The host's default IPv4 route and the address on its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIpv4 {
    /// Interface of the default route (e.g. `eth0`).
    pub interface: String,
    /// The interface's IPv4 address (the one on the gateway's subnet).
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The default gateway.
    pub gateway: Ipv4Addr,
}

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The interface and gateway of the lowest-metric default route in
/// `/proc/net/route` text, if there is one.
pub fn parse_default_route(text: &str) -> Option<(String, Ipv4Addr)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, gw, flags, metric, mask) = (
                f.first()?,
                hex(f.get(1)?)?,
                hex(f.get(2)?)?,
                hex(f.get(3)?)?,
                f.get(6)?,
                hex(f.get(7)?)?,
            );
            let metric: u32 = metric.parse().ok()?;
            let default = dest == 0 && mask == 0;
            let up_via_gw = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
            // The kernel prints the network-order address as a native u32.
            (default && up_via_gw)
                .then(|| (metric, iface.to_string(), Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, iface, gw)| (iface, gw))
}

/// Of an interface's addresses, the one whose subnet holds `gateway` (else
/// the first).
pub fn pick_address(addrs: &[(Ipv4Addr, u8)], gateway: Ipv4Addr) -> Option<(Ipv4Addr, u8)> {
    let on_subnet = |&&(a, p): &&(Ipv4Addr, u8)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(p.min(32))).unwrap_or(0);
        u32::from(a) & mask == u32::from(gateway) & mask
    };
    addrs.iter().find(on_subnet).or(addrs.first()).copied()
}

/// The IPv4 addresses (with prefix lengths) of interface `name`.
pub fn interface_ipv4_addrs(name: &str) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let v4 = |sa: *const libc::sockaddr| -> Option<Ipv4Addr> {
        // SAFETY: `sa` is null or points to a sockaddr in the getifaddrs
        // list, which stays alive until freeifaddrs; an AF_INET one is a
        // sockaddr_in.
        unsafe {
            if sa.is_null() || i32::from((*sa).sa_family) != libc::AF_INET {
                return None;
            }
            let sin = &*sa.cast::<libc::sockaddr_in>();
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        }
    };
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; `ifa_name` is a NUL-terminated string.
        let ifa = unsafe { &*cur };
        // SAFETY: as above.
        let ifname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() == name.as_bytes() {
            if let (Some(addr), Some(mask)) = (v4(ifa.ifa_addr), v4(ifa.ifa_netmask)) {
                out.push((addr, u32::from(mask).leading_ones() as u8));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The host's default IPv4 route and address, or `None` when the host has
/// no IPv4 default route (or no address on its interface).
pub fn default_route_ipv4() -> io::Result<Option<HostIpv4>> {
    let routes = std::fs::read_to_string("/proc/net/route")?;
    let Some((interface, gateway)) = parse_default_route(&routes) else {
        return Ok(None);
    };
    let addrs = interface_ipv4_addrs(&interface)?;
    Ok(
        pick_address(&addrs, gateway).map(|(address, prefix_len)| HostIpv4 {
            interface,
            address,
            prefix_len,
            gateway,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn test_host_default_route_lowest_metric_wins() {
        assert_eq!(
            parse_default_route(ROUTES),
            Some(("eth0".to_string(), Ipv4Addr::new(192, 0, 2, 1)))
        );
    }

    #[test]
    fn test_host_no_default_route() {
        let only_subnet = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                           eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_default_route(only_subnet), None);
        // A default route that is down, and garbage, are ignored.
        let down = "h\nx\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\nbad line\n";
        assert_eq!(parse_default_route(down), None);
        assert_eq!(parse_default_route(""), None);
    }

    #[test]
    fn test_host_address_on_gateway_subnet_is_picked() {
        let addrs = [
            (Ipv4Addr::new(10, 1, 0, 5), 16),
            (Ipv4Addr::new(192, 0, 2, 2), 24),
        ];
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(pick_address(&addrs, gw), Some(addrs[1]));
        assert_eq!(pick_address(&addrs[..1], gw), Some(addrs[0]));
        assert_eq!(pick_address(&[], gw), None);
        assert_eq!(
            pick_address(&[(Ipv4Addr::new(1, 2, 3, 4), 0)], gw),
            Some((Ipv4Addr::new(1, 2, 3, 4), 0))
        );
    }

    #[test]
    fn test_host_loopback_addresses_via_getifaddrs() {
        let lo = interface_ipv4_addrs("lo").unwrap();
        assert!(lo.contains(&(Ipv4Addr::LOCALHOST, 8)), "{lo:?}");
        assert!(interface_ipv4_addrs("no-such-if0").unwrap().is_empty());
        // Whatever this host has, the answer is consistent with the route.
        if let Some(h) = default_route_ipv4().unwrap() {
            assert!(interface_ipv4_addrs(&h.interface)
                .unwrap()
                .contains(&(h.address, h.prefix_len)));
        }
    }
}
