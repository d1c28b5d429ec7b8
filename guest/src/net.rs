//! The pod's network: one Ethernet interface (virtio-net in a VM, backed
//! by passt on the host) configured from the pod's [`WireNetwork`] before
//! any container starts, and the /etc/hosts and /etc/resolv.conf content
//! every container gets.
//!
//! The interface is configured with the classic ioctls on a datagram
//! socket, in this order: MTU (SIOCSIFMTU), address (SIOCSIFADDR), netmask
//! (SIOCSIFNETMASK, which also makes the kernel's subnet route), up
//! (SIOCSIFFLAGS); then the routes (SIOCADDRT): an on-link host route to
//! the gateway when it lies outside the subnet (passt copies the host's
//! address, which may be a /32), and the default route via the gateway.
//!
//! Interfaces are listed with if_nameindex(3) and their MAC and type read
//! with SIOCGIFHWADDR, not from /sys/class/net: sysfs shows the interfaces
//! of the network namespace that mounted it, which in native mode is the
//! host's, not the pod's.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use peapod_proto::network::{in_subnet, netmask, parse_mac};
use peapod_proto::WireNetwork;

/// A network interface of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    /// Hardware type (`ARPHRD_*`).
    pub hw_type: u16,
    pub mac: [u8; 6],
}

/// A route to add: `dst/prefix_len`, via `gateway` or on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// `struct rtentry` of <linux/route.h>, the argument of SIOCADDRT (the
/// libc crate defines it for musl only).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// An interface name as the kernel takes it: NUL-padded to IFNAMSIZ (the
/// kernel copies IFNAMSIZ - 1 bytes of a route's device name, whatever the
/// string's length).
type IfName = [libc::c_char; libc::IFNAMSIZ];

fn if_name(name: &str) -> io::Result<IfName> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let mut out: IfName = [0; libc::IFNAMSIZ];
    for (d, s) in out.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(out)
}

/// An ifreq naming the interface `name`, the rest zero.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = if_name(name)?;
    Ok(req)
}

/// An IPv4 socket address (port 0) in the generic form ifreq and rtentry
/// hold.
fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: both are 16 bytes of plain data (transmute checks the size);
    // a sockaddr whose family is AF_INET is read as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The SIOCADDRT argument for `route` on the device `dev`.
fn rtentry(route: &Route, dev: &IfName) -> RtEntry {
    let mut flags = libc::RTF_UP;
    if route.prefix_len == 32 {
        flags |= libc::RTF_HOST;
    }
    if route.gateway.is_some() {
        flags |= libc::RTF_GATEWAY;
    }
    RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(route.dst),
        // Family 0: no gateway, the destination is on-link.
        rt_gateway: route.gateway.map_or(
            // SAFETY: sockaddr is plain data; all-zero is a valid value.
            unsafe { std::mem::zeroed() },
            sockaddr,
        ),
        rt_genmask: sockaddr(netmask(route.prefix_len)),
        rt_flags: flags,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        // The kernel only reads through it.
        rt_dev: dev.as_ptr().cast_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    }
}

/// The routes to add once the interface is up, in order.
pub fn routes(net: &WireNetwork) -> Vec<Route> {
    let mut out = Vec::with_capacity(2);
    if !in_subnet(net.address, net.prefix_len, net.gateway) {
        out.push(Route {
            dst: net.gateway,
            prefix_len: 32,
            gateway: None,
        });
    }
    out.push(Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: Some(net.gateway),
    });
    out
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The interface to configure: the Ethernet interface with MAC `mac`, or
/// without one the Ethernet interface with the lowest index.
pub fn select_link(links: &[Link], mac: Option<[u8; 6]>) -> Result<&Link, String> {
    let mut ether = links.iter().filter(|l| l.hw_type == libc::ARPHRD_ETHER);
    let found = match mac {
        Some(mac) => ether.find(|l| l.mac == mac),
        None => ether.min_by_key(|l| l.index),
    };
    found.ok_or_else(|| {
        let have = links
            .iter()
            .map(|l| format!("{} {}", l.name, fmt_mac(&l.mac)))
            .collect::<Vec<_>>()
            .join(", ");
        match mac {
            Some(mac) => format!(
                "no Ethernet interface has MAC {} (found: {have})",
                fmt_mac(&mac)
            ),
            None => format!("no Ethernet interface (found: {have})"),
        }
    })
}

fn with_context(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(with_context("open a socket")(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int, what: impl std::fmt::Display) -> io::Result<()> {
    if rc < 0 {
        return Err(with_context(what)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Hardware type and address of an interface (SIOCGIFHWADDR).
fn hw_addr(sock: &OwnedFd, name: &str) -> io::Result<(u16, [u8; 6])> {
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFHWADDR fills the ifreq it is given.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    check(rc, format!("read the MAC of {name}"))?;
    // SAFETY: SIOCGIFHWADDR filled in ifru_hwaddr.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data) {
        *d = s as u8;
    }
    Ok((hw.sa_family, mac))
}

/// The interfaces of this network namespace.
pub fn list_links(sock: &OwnedFd) -> io::Result<Vec<Link>> {
    // SAFETY: no arguments; returns NULL or an array freed below.
    let head = unsafe { libc::if_nameindex() };
    if head.is_null() {
        return Err(with_context("list network interfaces")(
            io::Error::last_os_error(),
        ));
    }
    let mut names = Vec::new();
    let mut entry = head;
    loop {
        // SAFETY: `entry` points into the array if_nameindex returned, at
        // or before its terminating all-zero entry.
        let e = unsafe { &*entry };
        if e.if_index == 0 || e.if_name.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated name owned by the array, copied here.
        let name = unsafe { std::ffi::CStr::from_ptr(e.if_name) };
        names.push((name.to_string_lossy().into_owned(), e.if_index));
        // SAFETY: this was not the terminating entry, so one follows.
        entry = unsafe { entry.add(1) };
    }
    // SAFETY: the array if_nameindex returned, freed once, not used after.
    unsafe { libc::if_freenameindex(head) };
    let mut links = Vec::with_capacity(names.len());
    for (name, index) in names {
        match hw_addr(sock, &name) {
            Ok((hw_type, mac)) => links.push(Link {
                name,
                index,
                hw_type,
                mac,
            }),
            // Gone since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(links)
}

fn set_addr(
    sock: &OwnedFd,
    name: &str,
    request: libc::c_ulong,
    addr: Ipv4Addr,
    what: String,
) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    // SAFETY: SIOCSIFADDR and SIOCSIFNETMASK read an ifreq holding an
    // AF_INET sockaddr.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) };
    check(rc, what)
}

/// Configure the interface `name` from `net`: MTU, address, up, routes.
fn configure_link(sock: &OwnedFd, name: &str, net: &WireNetwork) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = net.mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads an ifreq holding the MTU.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &req) };
    check(rc, format_args!("set the MTU to {}", net.mtu))?;

    set_addr(
        sock,
        name,
        libc::SIOCSIFADDR,
        net.address,
        format!("set the address {}", net.address),
    )?;
    let mask = netmask(net.prefix_len);
    set_addr(
        sock,
        name,
        libc::SIOCSIFNETMASK,
        mask,
        format!("set the netmask {mask} (/{})", net.prefix_len),
    )?;

    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS fills the ifreq it is given.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    check(rc, "read the interface flags")?;
    // SAFETY: ifru_flags is the member SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads an ifreq holding the flags.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    check(rc, "bring it up")?;

    let dev = if_name(name)?;
    for route in routes(net) {
        let entry = rtentry(&route, &dev);
        // SAFETY: SIOCADDRT reads a struct rtentry, whose rt_dev points to
        // `dev`, a NUL-padded buffer of IFNAMSIZ bytes alive for the call.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &entry) };
        let what = match route.gateway {
            Some(gw) => format!("add the default route via {gw}"),
            None => format!("add an on-link route to the gateway {}", route.dst),
        };
        check(rc, what)?;
    }
    Ok(())
}

/// Find the pod's interface and configure it from `net`; returns its name.
/// Errors read `cannot configure eth0: ...`, naming the interface.
pub fn configure(net: &WireNetwork) -> io::Result<String> {
    let fail = |name: &str| with_context(format!("cannot configure {name}"));
    let sock = inet_socket().map_err(fail("eth0"))?;
    let links = list_links(&sock).map_err(fail("eth0"))?;
    let mac = net.mac.as_deref().and_then(parse_mac);
    let link = select_link(&links, mac)
        .map_err(|problem| fail("eth0")(io::Error::new(io::ErrorKind::NotFound, problem)))?;
    configure_link(&sock, &link.name, net).map_err(fail(&link.name))?;
    Ok(link.name.clone())
}

/// The pod's /etc/hosts: localhost, the pod's hostname (on its address
/// when it has a network, as Kubernetes writes it; else on 127.0.1.1), and
/// the network's extra entries.
pub fn hosts_file(hostname: &str, net: Option<&WireNetwork>) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let Some(net) = net else {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
        return out;
    };
    out.push_str(&format!("{}\t{hostname}\n", net.address));
    if !net.hosts.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for h in &net.hosts {
            out.push_str(&format!("{}\t{}\n", h.ip, h.names.join("\t")));
        }
    }
    out
}

/// The pod's /etc/resolv.conf.
pub fn resolv_conf(net: &WireNetwork) -> String {
    let mut out = String::new();
    for s in &net.dns_servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !net.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", net.dns_search.join(" ")));
    }
    if !net.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", net.dns_options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use peapod_proto::WireHostEntry;
    use std::net::IpAddr;
    use std::process::Command;

    fn network() -> WireNetwork {
        WireNetwork {
            mac: Some("52:54:00:12:34:56".into()),
            address: Ipv4Addr::new(10, 9, 8, 7),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 9, 8, 1),
            mtu: 1400,
            dns_servers: vec![
                IpAddr::V4(Ipv4Addr::new(10, 9, 8, 1)),
                "2001:db8::53".parse().unwrap(),
            ],
            dns_search: vec!["svc.example".into(), "example".into()],
            dns_options: vec!["ndots:2".into(), "edns0".into()],
            hosts: vec![
                WireHostEntry {
                    ip: IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)),
                    names: vec!["db".into(), "db.internal".into()],
                },
                WireHostEntry {
                    ip: "2001:db8::2".parse().unwrap(),
                    names: vec!["cache".into()],
                },
            ],
        }
    }

    fn link(name: &str, index: u32, hw_type: u16, last: u8) -> Link {
        Link {
            name: name.into(),
            index,
            hw_type,
            mac: [0x52, 0x54, 0, 0, 0, last],
        }
    }

    #[test]
    fn test_select_link_by_mac_or_lowest_ethernet_index() {
        let links = [
            link("lo", 1, libc::ARPHRD_LOOPBACK, 0),
            link("sit0", 2, libc::ARPHRD_SIT, 0),
            link("eth1", 4, libc::ARPHRD_ETHER, 2),
            link("eth0", 3, libc::ARPHRD_ETHER, 1),
        ];
        assert_eq!(select_link(&links, None).unwrap().name, "eth0");
        let mac = [0x52, 0x54, 0, 0, 0, 2];
        assert_eq!(select_link(&links, Some(mac)).unwrap().name, "eth1");
        // lo has MAC 00..00 but is not Ethernet.
        let err = select_link(&links, Some([0x52, 0x54, 0, 0, 0, 0])).unwrap_err();
        assert_eq!(
            err,
            "no Ethernet interface has MAC 52:54:00:00:00:00 (found: lo 52:54:00:00:00:00, \
             sit0 52:54:00:00:00:00, eth1 52:54:00:00:00:02, eth0 52:54:00:00:00:01)"
        );
        let err = select_link(&links[..2], None).unwrap_err();
        assert!(
            err.starts_with("no Ethernet interface (found: lo "),
            "{err}"
        );
    }

    #[test]
    fn test_routes_add_on_link_gateway_only_off_subnet() {
        let net = network();
        let default = Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Some(net.gateway),
        };
        assert_eq!(routes(&net), [default]);
        let net = WireNetwork {
            prefix_len: 32,
            ..network()
        };
        let host = Route {
            dst: net.gateway,
            prefix_len: 32,
            gateway: None,
        };
        assert_eq!(routes(&net), [host, default]);
    }

    fn sin(sa: &libc::sockaddr) -> (u16, u16, Ipv4Addr) {
        // SAFETY: both are 16 bytes of plain data.
        let sin: libc::sockaddr_in = unsafe { std::mem::transmute(*sa) };
        (
            sin.sin_family,
            sin.sin_port,
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        )
    }

    #[test]
    fn test_rtentry_matches_the_kernel_layout() {
        // <linux/route.h> on LP64: 120 bytes, rt_flags after three sockaddrs.
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(std::mem::size_of::<RtEntry>(), 120);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_dst), 8);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_flags), 56);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_metric), 80);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_dev), 88);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_irtt), 112);
        }
        let dev = if_name("eth0").unwrap();
        let af = libc::AF_INET as u16;
        let gw = Ipv4Addr::new(10, 0, 0, 1);

        let e = rtentry(
            &Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(gw),
            },
            &dev,
        );
        assert_eq!(e.rt_flags, libc::RTF_UP | libc::RTF_GATEWAY);
        assert_eq!(sin(&e.rt_dst), (af, 0, Ipv4Addr::UNSPECIFIED));
        assert_eq!(sin(&e.rt_genmask), (af, 0, Ipv4Addr::UNSPECIFIED));
        assert_eq!(sin(&e.rt_gateway), (af, 0, gw));
        assert_eq!(e.rt_dev.cast_const(), dev.as_ptr());
        assert_eq!(e.rt_metric, 0);

        let e = rtentry(
            &Route {
                dst: gw,
                prefix_len: 32,
                gateway: None,
            },
            &dev,
        );
        assert_eq!(e.rt_flags, libc::RTF_UP | libc::RTF_HOST);
        assert_eq!(sin(&e.rt_dst), (af, 0, gw));
        assert_eq!(sin(&e.rt_genmask), (af, 0, Ipv4Addr::BROADCAST));
        assert_eq!(sin(&e.rt_gateway), (0, 0, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn test_ifreq_names_are_nul_padded_and_bounded() {
        let req = ifreq("eth0").unwrap();
        let name: Vec<u8> = req.ifr_name.iter().map(|c| *c as u8).collect();
        assert_eq!(&name[..5], b"eth0\0");
        assert!(name.iter().skip(4).all(|b| *b == 0));
        assert!(ifreq("0123456789abcde").is_ok());
        for bad in ["", "0123456789abcdef", "a\0b"] {
            assert!(ifreq(bad).is_err(), "{bad:?}");
        }
        let (family, port, addr) = sin(&sockaddr(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(
            (family, port, addr),
            (libc::AF_INET as u16, 0, Ipv4Addr::new(192, 0, 2, 2))
        );
    }

    #[test]
    fn test_hosts_file_with_and_without_network() {
        assert_eq!(
            hosts_file("web", None),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb\n"
        );
        assert_eq!(
            hosts_file("web", Some(&network())),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             10.9.8.7\tweb\n\
             \n# Entries added by HostAliases.\n\
             10.1.1.1\tdb\tdb.internal\n\
             2001:db8::2\tcache\n"
        );
        let bare = WireNetwork {
            hosts: vec![],
            ..network()
        };
        assert!(hosts_file("web", Some(&bare))
            .ends_with("::1\tlocalhost ip6-localhost ip6-loopback\n10.9.8.7\tweb\n"));
    }

    #[test]
    fn test_resolv_conf_lists_servers_then_search() {
        assert_eq!(
            resolv_conf(&network()),
            "nameserver 10.9.8.1\nnameserver 2001:db8::53\nsearch svc.example example\n\
             options ndots:2 edns0\n"
        );
        let none = WireNetwork {
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            ..network()
        };
        assert_eq!(resolv_conf(&none), "");
    }

    /// Run `ip ARGS` (in the calling thread's network namespace); its
    /// stdout, or a panic with its stderr.
    fn ip(args: &str) -> String {
        let out = Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .unwrap_or_else(|e| panic!("ip {args}: {e}"));
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Why the namespace tests cannot run here, if they cannot.
    /// A test that cannot run here: a failure under CI (`CI=true`), else
    /// `skipped: why` (as the host tests' `common::skip` says it), counted
    /// by scripts/test through `$PEAPOD_SKIP_LOG`.
    fn skip(why: &str) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "this test cannot run here, and CI=true: {why}");
        println!("skipped: {why}");
        if let Some(log) = std::env::var_os("PEAPOD_SKIP_LOG") {
            use std::io::Write;
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .and_then(|mut f| writeln!(f, "guest net: {why}"));
        }
    }

    fn cannot_run() -> Option<&'static str> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Some("needs root (a network namespace and interfaces)");
        }
        let has_ip = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_ip {
            return Some("needs iproute2's `ip`");
        }
        None
    }

    /// Run `test` in a thread of its own in a fresh network namespace
    /// holding a veth pair: `eth0` (MAC 52:54:00:12:34:56) and its peer.
    /// The namespace belongs to that thread alone (and the `ip` processes
    /// it starts), and goes away with it; nothing else of the test process
    /// changes.
    fn in_fresh_netns(test: impl FnOnce() + Send + 'static) {
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only
            // this thread.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            ip("link add eth0 address 52:54:00:12:34:56 type veth \
                peer name peer0 address 52:54:00:00:00:99");
            ip("link set peer0 up");
            test();
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn test_configure_in_a_network_namespace() {
        if let Some(why) = cannot_run() {
            skip(why);
            return;
        }
        in_fresh_netns(|| {
            assert_eq!(configure(&network()).unwrap(), "eth0");
            let link = ip("-o link show dev eth0");
            assert!(link.contains("mtu 1400"), "{link}");
            assert!(link.contains(",UP"), "{link}");
            let addr = ip("-4 -o addr show dev eth0");
            assert!(addr.contains("inet 10.9.8.7/24 brd 10.9.8.255"), "{addr}");
            let routes = ip("-4 route show");
            let lines: Vec<&str> = routes.lines().map(str::trim).collect();
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("default via 10.9.8.1 dev eth0")),
                "{routes}"
            );
            assert!(
                lines.iter().any(|l| l.starts_with("10.9.8.0/24 dev eth0")),
                "{routes}"
            );
        });
    }

    #[test]
    fn test_configure_off_subnet_gateway_gets_an_on_link_route() {
        if let Some(why) = cannot_run() {
            skip(why);
            return;
        }
        in_fresh_netns(|| {
            let net = WireNetwork {
                mac: None,
                prefix_len: 32,
                gateway: Ipv4Addr::new(169, 254, 1, 1),
                ..network()
            };
            // Without a MAC: the Ethernet interface with the lowest index
            // (one of the veth pair).
            let name = configure(&net).unwrap();
            let addr = ip(&format!("-4 -o addr show dev {name}"));
            assert!(addr.contains("inet 10.9.8.7/32"), "{addr}");
            let routes = ip("-4 route show");
            let lines: Vec<&str> = routes.lines().map(str::trim).collect();
            let want_host = format!("169.254.1.1 dev {name} scope link");
            let want_default = format!("default via 169.254.1.1 dev {name}");
            assert!(lines.iter().any(|l| l.starts_with(&want_host)), "{routes}");
            assert!(
                lines.iter().any(|l| l.starts_with(&want_default)),
                "{routes}"
            );
        });
    }

    #[test]
    fn test_configure_names_the_failure() {
        if let Some(why) = cannot_run() {
            skip(why);
            return;
        }
        in_fresh_netns(|| {
            let net = WireNetwork {
                mac: Some("52:54:00:ff:ff:ff".into()),
                ..network()
            };
            let err = configure(&net).unwrap_err().to_string();
            assert!(
                err.starts_with("cannot configure eth0: no Ethernet interface has MAC 52:54:00:ff:ff:ff (found: "),
                "{err}"
            );
            assert!(err.contains("eth0 52:54:00:12:34:56"), "{err}");
            // The largest MTU passt takes; then configuring again fails
            // where the default route already exists, and says so.
            let net = WireNetwork {
                mtu: 65520,
                ..network()
            };
            configure(&net).unwrap();
            assert!(ip("-o link show dev eth0").contains("mtu 65520"));
            let err = configure(&net).unwrap_err().to_string();
            assert_eq!(
                err,
                "cannot configure eth0: add the default route via 10.9.8.1: File exists (os error 17)"
            );
        });
    }
}
