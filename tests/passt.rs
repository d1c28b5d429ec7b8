//! The virtio-net device and the passt launcher against the real passt
//! (Debian's `passt`): frames go through the device's queues (mock rings in
//! real guest memory), over the length-prefixed stream, to passt and back.
//! This pins the wire format to the real program. Skipped (saying so) only
//! when passt is not installed.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use peapod::vmm::devices::virtio::net::{Net, NetLinkState, PasstStream, HDR_LEN};
use peapod::vmm::devices::virtio::{Interrupt, VirtioDevice};
use peapod::vmm::net::passt::LOOPBACK_MAC;
use peapod::vmm::net::{GuestIpv4, Passt, PasstConfig, PasstError, PortForward, Protocol, Uplink};
use peapod::vmm::vstate::kvm::open_kvm;
use peapod::vmm::vstate::memory::{create_guest_memory, GuestMem};
use peapod::vmm::{GuestEnd, NetBackendSocket, NetConfig, Vm, VmConfig, VIRTIO_MMIO_BASE};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RX_BUFS: u64 = 0x40_0000;
const TX_BUFS: u64 = 0x80_0000;
const SLOT: u64 = 0x1_1000;
const QSIZE: u16 = 32;
const WAIT: Duration = Duration::from_secs(5);

fn passt_installed() -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("passt").is_file()))
        .unwrap_or(false);
    if !found {
        common::skip("passt is not installed (apt install passt)");
    }
    found
}

fn rd(addr: u64, len: u32, flags: u32) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, 0))
}

/// A guest's view of the device: memory, mock rings (few enough entries
/// that the mock's ring layout holds), the device over passt's stream.
struct Guest<'a> {
    mem: &'a GuestMem,
    rxm: MockSplitQueue<'a, GuestMem>,
    txm: MockSplitQueue<'a, GuestMem>,
    net: Net<PasstStream>,
    tx_next: u16,
    rx_seen: u16,
}

impl<'a> Guest<'a> {
    fn new(mem: &'a GuestMem, passt: &mut Passt) -> Self {
        let stream = passt.take_stream().expect("stream");
        let mut net = Net::new(MAC, Some(1500), PasstStream::new(stream).unwrap()).unwrap();
        let rxm = MockSplitQueue::create(mem, GuestAddress(0x1_0000), QSIZE);
        let txm = MockSplitQueue::create(mem, GuestAddress(0x2_0000), QSIZE);
        for i in 0..8u16 {
            let addr = RX_BUFS + u64::from(i) * SLOT;
            rxm.add_desc_chains(&[rd(addr, 2048, VRING_DESC_F_WRITE)], i)
                .unwrap();
        }
        let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        net.activate(
            mem.clone(),
            vec![rxm.create_queue().unwrap(), txm.create_queue().unwrap()],
            irq,
        )
        .unwrap();
        Guest {
            mem,
            rxm,
            txm,
            net,
            tx_next: 0,
            rx_seen: 0,
        }
    }

    /// Transmit `frame` (one descriptor: header and frame).
    fn send(&mut self, frame: &[u8]) {
        let i = self.tx_next;
        self.tx_next += 1;
        let addr = TX_BUFS + u64::from(i) * SLOT;
        let mut buf = vec![0u8; HDR_LEN];
        buf.extend_from_slice(frame);
        self.mem.write_slice(&buf, GuestAddress(addr)).unwrap();
        self.txm
            .add_desc_chains(&[rd(addr, buf.len() as u32, 0)], i)
            .unwrap();
        self.net.process();
    }

    /// The next received frame (header checked, then stripped), waiting at
    /// most `WAIT`.
    fn recv(&mut self) -> Option<Vec<u8>> {
        let used = self.rxm.used_addr().0;
        let start = Instant::now();
        while start.elapsed() < WAIT {
            self.net.process();
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            if idx != self.rx_seen {
                let e = used + 4 + u64::from(self.rx_seen) * 8;
                self.rx_seen += 1;
                let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
                let mut buf = vec![0u8; len as usize];
                let addr = RX_BUFS + u64::from(id) * SLOT;
                self.mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
                assert_eq!(
                    &buf[..HDR_LEN],
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                    "zeroed virtio-net header, num_buffers 1"
                );
                return Some(buf.split_off(HDR_LEN));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Receive until `pred` matches a frame.
    fn recv_until(&mut self, what: &str, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if let Some(f) = self.recv() {
                if pred(&f) {
                    return f;
                }
            }
        }
        panic!("no {what} from passt within {WAIT:?}");
    }

    fn link(&self) -> NetLinkState {
        self.net.link_state()
    }
}

fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The (sender MAC, sender IP, target MAC, target IP) of an ARP reply.
fn arp_reply(f: &[u8]) -> Option<([u8; 6], Ipv4Addr, [u8; 6], Ipv4Addr)> {
    if f.len() < 42 || f[12..14] != [0x08, 0x06] || f[20..22] != [0, 2] {
        return None;
    }
    let mac = |o: usize| <[u8; 6]>::try_from(&f[o..o + 6]).unwrap();
    let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    Some((mac(22), ip(28), mac(32), ip(38)))
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn dhcp_discover() -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[..4].copy_from_slice(&[1, 1, 6, 0]);
    bootp[4..8].copy_from_slice(&0x5045_4150u32.to_be_bytes());
    bootp[10..12].copy_from_slice(&0x8000u16.to_be_bytes());
    bootp[28..34].copy_from_slice(&MAC);
    bootp.extend_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(&[53, 1, 1, 55, 4, 1, 3, 6, 26, 255]);
    let udp_len = 8 + bootp.len();
    let mut udp = Vec::new();
    udp.extend_from_slice(&68u16.to_be_bytes());
    udp.extend_from_slice(&67u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&bootp);
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// An IPv4 UDP datagram from `src:sport` to `dst:dport` (no UDP checksum,
/// which IPv4 allows), addressed to `dst_mac`.
fn udp_frame(
    dst_mac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The payload of a UDP datagram to `port` in frame `f`.
fn udp_payload_to(f: &[u8], port: u16) -> Option<&[u8]> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return None;
    }
    let udp = &f[14 + usize::from(f[14] & 0xf) * 4..];
    (udp.len() >= 8 && udp[2..4] == port.to_be_bytes()).then(|| &udp[8..])
}

/// DHCP options: (code, value).
type DhcpOptions = Vec<(u8, Vec<u8>)>;

/// A DHCP reply's (message type, yiaddr, options).
fn dhcp_reply(f: &[u8]) -> Option<(u8, Ipv4Addr, DhcpOptions)> {
    if f.len() < 14 + 20 + 8 + 240 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    let udp = &f[14 + ihl..];
    if udp[0..4] != [0, 67, 0, 68] {
        return None;
    }
    let bootp = &udp[8..];
    let yiaddr = Ipv4Addr::new(bootp[16], bootp[17], bootp[18], bootp[19]);
    let mut opts = Vec::new();
    let mut i = 240;
    let mut kind = 0;
    while i + 1 < bootp.len() && bootp[i] != 255 {
        if bootp[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (bootp[i], usize::from(bootp[i + 1]));
        let val = bootp.get(i + 2..i + 2 + len)?.to_vec();
        if code == 53 {
            kind = val[0];
        }
        opts.push((code, val));
        i += 2 + len;
    }
    Some((kind, yiaddr, opts))
}

fn start(dir: &TempDir, tweak: impl FnOnce(&mut PasstConfig)) -> Passt {
    let mut cfg = PasstConfig::new(dir.0.join("passt"));
    tweak(&mut cfg);
    Passt::spawn(&cfg).unwrap_or_else(|e| panic!("passt: {e}"))
}

#[test]
fn test_passt_answers_arp_for_the_gateway_through_virtio_net() {
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-arp");
    let mut passt = start(&dir, |_| {});
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    guest.send(&arp_request(ip.address, ip.gateway));
    let reply = guest.recv_until("ARP reply", |f| arp_reply(f).is_some());
    let (sha, spa, tha, tpa) = arp_reply(&reply).unwrap();
    assert_eq!(spa, ip.gateway, "the gateway answers");
    assert_eq!((tha, tpa), (MAC, ip.address), "to us");
    assert!(
        sha[0] & 1 == 0 && sha != [0; 6],
        "from a unicast MAC {sha:?}"
    );
    assert_eq!(&reply[..6], &MAC, "addressed to our MAC");
    assert!(!guest.link().is_down());
}

#[test]
fn test_passt_dhcp_offer_matches_the_launcher_plan() {
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-dhcp");
    let mut passt = start(&dir, |c| c.mtu = Some(1500));
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    guest.send(&dhcp_discover());
    let offer = guest.recv_until("DHCP offer", |f| dhcp_reply(f).is_some());
    let (kind, yiaddr, opts) = dhcp_reply(&offer).unwrap();
    assert_eq!(kind, 2, "DHCPOFFER");
    assert_eq!(yiaddr, ip.address);
    let opt = |c: u8| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
    let mask = u32::MAX << (32 - u32::from(ip.prefix_len));
    assert_eq!(opt(1), Some(mask.to_be_bytes().to_vec()), "netmask");
    assert_eq!(opt(3), Some(ip.gateway.octets().to_vec()), "router");
    assert_eq!(opt(26), Some(1500u16.to_be_bytes().to_vec()), "MTU");
}

#[test]
fn test_passt_on_loopback_serves_the_fallback_network() {
    // What a host without a default route gets (forced here: this host may
    // have one).
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-lo");
    let mut passt = start(&dir, |c| c.uplink = Uplink::Loopback);
    let ip = passt.guest_ipv4();
    assert_eq!(
        ip,
        GuestIpv4 {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2)
        }
    );
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    guest.send(&arp_request(ip.address, ip.gateway));
    let reply = guest.recv_until("ARP reply", |f| arp_reply(f).is_some());
    let (sha, spa, _, _) = arp_reply(&reply).unwrap();
    assert_eq!((sha, spa), (LOOPBACK_MAC, ip.gateway));
}

#[test]
fn test_passt_forwards_a_host_port_to_the_guest() {
    if !passt_installed() {
        return;
    }
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = TempDir::new("passt-fwd");
    let mut passt = start(&dir, |c| {
        c.forwards = vec![PortForward {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp,
        }]
    });
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    // Let passt learn our address, then connect from the host.
    guest.send(&arp_request(ip.address, ip.gateway));
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let syn = guest.recv_until("TCP SYN to guest port 80", |f| {
        f.len() >= 14 + 20 + 20
            && f[12..14] == [0x08, 0x00]
            && f[23] == 6
            && f[30..34] == ip.address.octets()
            && f[36..38] == 80u16.to_be_bytes()
            && f[47] & 0x02 != 0
    });
    assert_eq!(&syn[..6], &MAC);
}

/// The gateway's MAC address, asked with ARP.
fn gateway_mac(guest: &mut Guest, ip: GuestIpv4) -> [u8; 6] {
    guest.send(&arp_request(ip.address, ip.gateway));
    let reply = guest.recv_until("ARP reply", |f| arp_reply(f).is_some());
    arp_reply(&reply).unwrap().0
}

/// Send "ping" from the guest to the gateway's `port`, where a UDP echo
/// server listens on the host's 127.0.0.1, and return what came back.
fn ping_host_loopback_through_gateway(host_loopback: bool) -> Option<Vec<u8>> {
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    echo.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let dir = TempDir::new("passt-gw");
    let mut passt = start(&dir, |c| c.host_loopback = host_loopback);
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    let gw_mac = gateway_mac(&mut guest, ip);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        guest.send(&udp_frame(
            gw_mac,
            (ip.address, 40000),
            (ip.gateway, port),
            b"ping",
        ));
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = echo.recv_from(&mut buf) {
            echo.send_to(&buf[..n], from).unwrap();
            let reply = guest.recv_until("the echo", |f| udp_payload_to(f, 40000).is_some());
            return udp_payload_to(&reply, 40000).map(<[u8]>::to_vec);
        }
    }
    None
}

#[test]
fn test_passt_gateway_reaches_the_host_loopback_only_when_asked() {
    // A pod reaches no service that listens only on the host's 127.0.0.1
    // (the attack: passt maps the gateway address there by default)...
    if !passt_installed() {
        return;
    }
    assert_eq!(ping_host_loopback_through_gateway(false), None);
    // ...unless the pod asks for it (peapod.io/host-loopback: "true").
    assert_eq!(
        ping_host_loopback_through_gateway(true).as_deref(),
        Some(&b"ping"[..])
    );
}

#[test]
fn test_passt_forwards_dns_to_a_loopback_resolver_without_mapping_the_loopback() {
    // With the gateway no longer mapped to the host's loopback, a host
    // whose resolver listens there (dnsmasq, unbound on 127.0.0.1) still
    // resolves for the pod: DNS to the gateway is forwarded to it. Runs in
    // a private mount namespace (root) with a resolv.conf of its own.
    const INNER: &str = "PEAPOD_TEST_PASST_DNS_INNER";
    let name = "test_passt_forwards_dns_to_a_loopback_resolver_without_mapping_the_loopback";
    if !passt_installed() {
        return;
    }
    if std::env::var_os(INNER).is_none() {
        if !common::is_root() {
            return common::skip("a private mount namespace for resolv.conf needs root");
        }
        let out = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture"])
            .env(INNER, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{out:?}");
        return;
    }
    let dir = TempDir::new("passt-dns");
    let conf = dir.0.join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\n").unwrap();
    let ok = std::process::Command::new("mount")
        .args(["--bind"])
        .args([&conf, std::path::Path::new("/etc/resolv.conf")])
        .status()
        .unwrap();
    assert!(ok.success(), "bind-mount a resolv.conf");
    // The host's resolver: answers each query with its header's QR bit set.
    let resolver = std::net::UdpSocket::bind("127.0.0.1:53").expect("127.0.0.1:53 is free");
    resolver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = resolver.recv_from(&mut buf) {
            buf[2] |= 0x80;
            let _ = resolver.send_to(&buf[..n], from);
        }
    });
    let mut passt = start(&dir, |_| {});
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    let gw_mac = gateway_mac(&mut guest, ip);
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
    guest.send(&udp_frame(
        gw_mac,
        (ip.address, 40001),
        (ip.gateway, 53),
        &query,
    ));
    let reply = guest.recv_until("the resolver's answer", |f| {
        udp_payload_to(f, 40001).is_some()
    });
    let answer = udp_payload_to(&reply, 40001).unwrap();
    assert_eq!(&answer[..3], &[0x12, 0x34, 0x81], "{answer:?}");
    assert_eq!(&answer[3..], &query[3..]);
}

#[test]
fn test_passt_port_in_use_is_refused_before_start() {
    if !passt_installed() {
        return;
    }
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = TempDir::new("passt-busy");
    let mut cfg = PasstConfig::new(dir.0.join("passt"));
    cfg.forwards = vec![PortForward {
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host_port: port,
        container_port: 80,
        protocol: Protocol::Tcp,
    }];
    let e = Passt::spawn(&cfg).err().expect("refused");
    assert!(matches!(e, PasstError::PortInUse(..)), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[test]
fn test_passt_exit_takes_the_link_down_and_the_device_goes_on() {
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-exit");
    let mut passt = start(&dir, |_| {});
    let ip = passt.guest_ipv4();
    let mem = create_guest_memory(16 << 20).unwrap();
    let mut guest = Guest::new(&mem, &mut passt);
    let link = guest.link();
    drop(passt); // SIGKILL
    let start = Instant::now();
    while !link.is_down() && start.elapsed() < WAIT {
        guest.net.process();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(link.is_down(), "the monitor can see the network is gone");
    let mut status = [0xffu8; 2];
    guest.net.read_config(6, &mut status);
    assert_eq!(status, [0, 0], "link down for the guest");
    // The guest keeps sending; its buffers keep coming back.
    for _ in 0..3 {
        guest.send(&arp_request(ip.address, ip.gateway));
    }
    let idx: u16 = mem
        .read_obj(GuestAddress(guest.txm.used_addr().0 + 2))
        .unwrap();
    assert_eq!(idx, 3);
}

#[test]
fn test_passt_quits_when_the_vmm_disconnects() {
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-oneoff");
    let mut passt = start(&dir, |_| {});
    drop(passt.take_stream());
    let start = Instant::now();
    let mut exited = None;
    while exited.is_none() && start.elapsed() < WAIT {
        exited = passt.try_exited();
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _) = exited.expect("passt exited by itself");
    assert!(status.success(), "{status}");
}

#[test]
fn test_passt_dies_with_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG follows the spawning thread: passt must be started
    // from a thread that lives as long as the VM.
    if !passt_installed() {
        return;
    }
    let dir = TempDir::new("passt-pdeathsig");
    let cfg = PasstConfig::new(dir.0.join("passt"));
    let (pid, mut stream) = std::thread::spawn(move || {
        let mut passt = Passt::spawn(&cfg).unwrap();
        let stream = passt.take_stream().unwrap();
        let pid = passt.pid() as libc::pid_t;
        // Not dropped: nothing but the kernel kills it.
        std::mem::forget(passt);
        (pid, stream)
    })
    .join()
    .unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(stream.read(&mut b).unwrap(), 0, "passt went away");
    let mut status = 0;
    // SAFETY: `pid` is our (forgotten) child; waitpid only reaps it.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
}

/// mov eax, [rbx + disp8]; mov [addr], eax (addr below 2 GiB)
fn copy_reg(code: &mut Vec<u8>, disp: u8, addr: u32) {
    code.extend_from_slice(&[0x8b, 0x43, disp]);
    code.extend_from_slice(&[0x89, 0x04, 0x25]);
    code.extend_from_slice(&addr.to_le_bytes());
}

#[test]
fn test_vm_attaches_virtio_net_after_the_other_devices() {
    // Vm::new wiring, natively: a CPL3 payload reads the third virtio-mmio
    // window (rng and the balloon come first) through MMIO exits.
    let kvm = match open_kvm() {
        Ok(k) => k,
        Err(e) => {
            common::skip(&e.to_string());
            return;
        }
    };
    let (ours, _passt) = UnixStream::pair().unwrap();
    let cfg = VmConfig {
        mem_bytes: 16 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: false,
        vsock_uds: None,
        fs_shares: Vec::new(),
        net: Some(NetConfig {
            backend: NetBackendSocket::Connected(Arc::new(ours)),
            mac: MAC,
            mtu: Some(1500),
        }),
    };
    let mut vm = Vm::new(&kvm, &cfg).unwrap();
    let link = vm.net_link().expect("a network device");
    const RESULT_AT: u32 = 0x20_0000;
    let mut c = Vec::new();
    // mov rbx, VIRTIO_MMIO_BASE + 0x2000
    c.extend_from_slice(&[0x48, 0xbb]);
    c.extend_from_slice(&(VIRTIO_MMIO_BASE + 0x2000).to_le_bytes());
    copy_reg(&mut c, 0x08, RESULT_AT); // device id
                                       // Config space is at 0x100: beyond disp8, so move rbx first.
                                       // add rbx, 0x100
    c.extend_from_slice(&[0x48, 0x81, 0xc3, 0x00, 0x01, 0x00, 0x00]);
    copy_reg(&mut c, 0x00, RESULT_AT + 4); // mac[0..4]
    copy_reg(&mut c, 0x04, RESULT_AT + 8); // mac[4..6], status
    copy_reg(&mut c, 0x08, RESULT_AT + 12); // max pairs, mtu
                                            // mov al, 0xfe; out 0x64, al (reset); jmp $
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe]);
    vm.load_user_payload(&c, GuestAddress(0x10_0000)).unwrap();
    let mem = vm.memory().clone();
    let outcome = vm.run(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(outcome.end, GuestEnd::Reset, "{outcome:?}");
    let mut got = [0u8; 16];
    mem.read_slice(&mut got, GuestAddress(u64::from(RESULT_AT)))
        .unwrap();
    assert_eq!(&got[..4], &1u32.to_le_bytes(), "device id: network card");
    assert_eq!(&got[4..10], &MAC);
    assert_eq!(&got[10..12], &1u16.to_le_bytes(), "link up");
    assert_eq!(&got[14..16], &1500u16.to_le_bytes(), "MTU");
    assert!(!link.is_down());
}
