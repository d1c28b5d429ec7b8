//! The pod network's host side: passt per pod, watched while the pod runs,
//! and the resolvers the pod gets.

use super::*;

/// How often the passt watcher looks at passt.
pub(super) const PASST_POLL: Duration = Duration::from_millis(200);

/// Watch the pod's passt until the guest ends, then kill it (by dropping
/// it). If passt exits first, the pod loses its network but goes on (exec,
/// logs and stop work over vsock): the state says why, for `ps` and
/// `inspect`.
pub(super) fn watch_passt(
    monitor: &Arc<Monitor>,
    mut passt: Passt,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let m = monitor.clone();
    let watch = move || {
        // It came up while the VM was being made; if it did not, the pod
        // cannot have its network: it is stopped, saying why.
        if let Err(e) = passt.wait_ready() {
            let why = format!("cannot start passt for the pod network: {e}");
            log::error!("{why}");
            *lock(&m.stopping) = Some(why);
            if let Some(killer) = lock(&m.killer).as_ref() {
                killer.kill();
            }
            return;
        }
        m.mark("passt ready");
        while !m.guest_ended.load(Ordering::SeqCst) {
            let Some((status, stderr)) = passt.try_exited() else {
                std::thread::sleep(PASST_POLL);
                continue;
            };
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            let why = match last {
                Some(line) => format!("passt exited ({status}): {}", line.trim()),
                None => format!("passt exited ({status})"),
            };
            log::warn!(
                "network down: {why}; the pod runs on without a network (see {})",
                passt.log_path().display()
            );
            m.update(|s| {
                if let Some(n) = s.network.as_mut() {
                    n.down = Some(why);
                }
            });
            return;
        }
    };
    std::thread::Builder::new()
        .name("passt-watch".into())
        .spawn(watch)
        .context("cannot start the passt watcher")
}

/// The pod network's MTU: passt's own default, as Podman's pasta uses it.
/// passt speaks to the host through sockets, so no frame of this size ever
/// reaches a wire; one frame carries up to 64 KiB of a TCP stream, and the
/// guest, the VMM and passt move ~40 times fewer frames than at 1500.
pub(super) const POD_MTU: u16 = 65520;

/// Start the pod's passt; returns it, its stream for the VMM, the VM's
/// network device and what peapod-init is told (the address passt answers
/// DHCP with, the host's resolvers, the MAC).
pub(super) fn start_passt(
    net: &NetLaunch,
) -> anyhow::Result<(Passt, UnixStream, VmmNet, WireNetwork)> {
    let mut cfg = PasstConfig::new(std::env::current_dir()?);
    cfg.forwards = net
        .publish
        .iter()
        .map(crate::sandbox::Publish::forward)
        .collect();
    cfg.mtu = Some(POD_MTU);
    cfg.host_loopback = net.host_loopback;
    // Not waited for here: the VMM starts while passt comes up.
    let mut passt = Passt::start(&cfg).context("cannot start passt for the pod network")?;
    let stream = passt
        .take_stream()
        .context("passt's stream was already taken")?;
    let ip = passt.guest_ipv4();
    let mac = random_mac();
    let (dns_servers, dns_search, dns_options) = if net.dns.config_only {
        let d = &net.dns;
        (d.nameservers.clone(), d.searches.clone(), d.options.clone())
    } else {
        let (servers, search) = host_resolvers(ip.gateway);
        with_dns_config(servers, search, &net.dns)
    };
    let wire = WireNetwork {
        mac: Some(
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        address: ip.address,
        prefix_len: ip.prefix_len,
        gateway: ip.gateway,
        mtu: POD_MTU.into(),
        dns_servers,
        dns_search,
        dns_options,
        hosts: net
            .host_aliases
            .iter()
            .map(|(ip, names)| WireHostEntry {
                ip: *ip,
                names: names.clone(),
            })
            .collect(),
    };
    let vmm_net = VmmNet {
        mac,
        mtu: Some(POD_MTU),
    };
    Ok((passt, stream, vmm_net, wire))
}

/// A locally administered unicast MAC, random per pod.
pub(super) fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut mac);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The host's resolvers and search domains with `spec.dnsConfig` added,
/// as the kubelet adds it: its nameservers and searches after the host's
/// (no repeats, within resolv.conf's limits: the first 3 nameservers, 32
/// search domains), and its options.
pub(super) fn with_dns_config(
    mut servers: Vec<IpAddr>,
    mut search: Vec<String>,
    dns: &crate::spec::PodDns,
) -> (Vec<IpAddr>, Vec<String>, Vec<String>) {
    use peapod_proto::network::{MAX_DNS_SEARCH, MAX_DNS_SERVERS};
    for n in &dns.nameservers {
        if !servers.contains(n) {
            servers.push(*n);
        }
    }
    if servers.len() > MAX_DNS_SERVERS {
        log::warn!(
            "resolv.conf takes {MAX_DNS_SERVERS} nameservers: {:?} left out",
            &servers[MAX_DNS_SERVERS..]
        );
        servers.truncate(MAX_DNS_SERVERS);
    }
    for d in &dns.searches {
        if !search.contains(d) {
            search.push(d.clone());
        }
    }
    search.truncate(MAX_DNS_SEARCH);
    (servers, search, dns.options.clone())
}

/// systemd-resolved's list of the real upstream servers, for hosts whose
/// /etc/resolv.conf names only its loopback stub (127.0.0.53).
pub(super) const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// The host's resolvers as the pod sees them through passt, and the
/// `search` domains.
pub(super) fn host_resolvers(gateway: Ipv4Addr) -> (Vec<IpAddr>, Vec<String>) {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    choose_resolvers(
        &read("/etc/resolv.conf"),
        || read(RESOLVED_UPSTREAMS),
        gateway,
    )
}

/// The pod's resolvers from the host's resolv.conf: its non-loopback IPv4
/// `nameserver`s (at most 3), which the pod reaches through passt like any
/// other address. A loopback resolver cannot be reached that way: for
/// systemd-resolved's stub the pod gets the stub's upstreams (as Podman
/// does); otherwise the gateway, whose port 53 passt forwards to such a
/// resolver (dnsmasq, unbound) on the host's loopback, mapped or not.
pub(super) fn choose_resolvers(
    resolv_conf: &str,
    resolved_upstreams: impl FnOnce() -> String,
    gateway: Ipv4Addr,
) -> (Vec<IpAddr>, Vec<String>) {
    let parse = |text: &str| {
        let mut servers = Vec::new();
        let mut search = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        servers.push(ip);
                    }
                }
                Some("search") => {
                    search = words
                        .filter(|w| peapod_proto::network::is_dns_name(w))
                        .take(6)
                        .map(str::to_owned)
                        .collect();
                }
                _ => {}
            }
        }
        (servers, search)
    };
    let reachable = |servers: &[IpAddr]| -> Vec<IpAddr> {
        servers
            .iter()
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .take(3)
            .copied()
            .collect()
    };
    let (listed, search) = parse(resolv_conf);
    let mut servers = reachable(&listed);
    if servers.is_empty() && listed.contains(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))) {
        servers = reachable(&parse(&resolved_upstreams()).0);
    }
    if servers.is_empty() {
        servers.push(IpAddr::V4(gateway));
    }
    (servers, search)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn test_resolvers_are_the_hosts_reachable_ones() {
        let conf = "# comment\nnameserver 192.0.2.53\nnameserver ::1\nnameserver 127.0.0.1\n\
                    nameserver 198.51.100.1\nnameserver 198.51.100.2\nnameserver 198.51.100.3\n\
                    search corp.example bad..name example.com\n";
        let (servers, search) = choose_resolvers(conf, || unreachable!(), GW);
        assert_eq!(
            servers,
            ips(&["192.0.2.53", "198.51.100.1", "198.51.100.2"])
        );
        assert_eq!(search, ["corp.example", "example.com"]);
    }

    #[test]
    fn test_dns_config_is_added_to_the_hosts_resolvers() {
        let dns = crate::spec::PodDns {
            config_only: false,
            nameservers: ips(&["192.0.2.53", "198.51.100.1", "203.0.113.9"]),
            searches: vec!["corp.example".into(), "svc.example".into()],
            options: vec!["ndots:2".into()],
        };
        let host = ips(&["198.51.100.1", "198.51.100.2"]);
        let (servers, search, options) = with_dns_config(host, vec!["svc.example".into()], &dns);
        // The host's first, no repeats, at most 3.
        assert_eq!(
            servers,
            ips(&["198.51.100.1", "198.51.100.2", "192.0.2.53"])
        );
        assert_eq!(search, ["svc.example", "corp.example"]);
        assert_eq!(options, ["ndots:2"]);
    }

    #[test]
    fn test_resolvers_behind_a_loopback_resolver() {
        // dnsmasq or unbound on 127.0.0.1: the gateway, which passt maps
        // to the host's loopback.
        let (servers, _) = choose_resolvers("nameserver 127.0.0.1\n", String::new, GW);
        assert_eq!(servers, ips(&["10.0.2.2"]));
        // systemd-resolved's stub: its upstreams.
        let upstreams = || "nameserver 203.0.113.7\nnameserver 127.0.0.1\n".to_owned();
        let (servers, _) = choose_resolvers("nameserver 127.0.0.53\n", upstreams, GW);
        assert_eq!(servers, ips(&["203.0.113.7"]));
        // ...unless it has none: the gateway.
        let (servers, _) = choose_resolvers("nameserver 127.0.0.53\n", String::new, GW);
        assert_eq!(servers, ips(&["10.0.2.2"]));
        // No resolv.conf at all.
        let (servers, search) = choose_resolvers("", String::new, GW);
        assert_eq!((servers, search.len()), (ips(&["10.0.2.2"]), 0));
    }
}
