//! Start passt for one pod: the host side of the pod's virtio-net device.
//!
//! passt runs as the same user as the VMM (`--runas` our uid:gid; without
//! it passt started as root would switch to `nobody`), in the foreground,
//! quiet, and dies with the thread that started it (`PR_SET_PDEATHSIG`
//! SIGKILL: start it from the thread that lives as long as the VM, e.g. the
//! monitor's main thread). It is in its own process group, so a terminal's
//! Ctrl-C reaches the VMM, not passt behind its back.
//!
//! # Socket
//! The VMM and passt share a socket pair: passt inherits its end as
//! `--fd` (which implies `--one-off`: passt quits when the VMM's end
//! closes). Compared with `--socket PATH` this needs no socket file (no
//! 108-byte `sun_path` limit on the pod directory, no stale sockets, no
//! race with another client of the same user), and works when the VMM runs
//! as root: passt 2023-03 started as root switches to `nobody` *before*
//! binding its socket, fails with EACCES in a root-owned directory, and
//! still prints "bound" and exits 0. Readiness is passt's `--pid` file,
//! written after its port forwards are bound and its sandbox is set up.
//!
//! # Ports
//! passt 2023-03 does not report a forward it could bind on only some
//! addresses (e.g. IPv4 taken, IPv6 free), so every forward is bind-tested
//! here first: a port in use or a privileged port is a clear error before
//! passt starts. (A race with another process binding in between remains.)
//! TCP forwards alone come with `-u none`, so no passt version forwards UDP
//! on the same ports unasked.
//!
//! # Addresses, and hosts without a default route
//! By default passt takes the address, prefix and gateway of the host's
//! default-route interface and hands them to the guest over DHCP; we pass
//! them explicitly (`--address/--netmask/--gateway`) and return them
//! ([`Passt::guest_ipv4`]) so the guest can be configured the same way
//! without DHCP. passt refuses to start without a routable interface
//! ("External interface not usable", exit 1) even with explicit addresses.
//! So on a host without an IPv4 default route ([`Uplink::Auto`]), or with
//! [`Uplink::Loopback`], passt is bound to `lo` with a made-up MAC
//! ([`LOOPBACK_MAC`]) and the guest gets [`FALLBACK_IPV4`] (or the
//! configured address): the guest's ARP/DHCP and the host-to-guest port
//! forwards work, but the guest cannot reach beyond the host (there is no
//! route to anywhere).

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::host::{default_route_ipv4, HostIpv4};
use crate::vmm::devices::virtio::net::format_mac;

/// How long passt may take to start. It takes milliseconds, but a loaded
/// host (measured: the emulated KVM host while another build ran) took
/// over 5 s; only a passt that never starts waits this long.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The guest's address when passt has no host uplink to mirror
/// (QEMU user networking's well-known plan).
pub const FALLBACK_IPV4: GuestIpv4 = GuestIpv4 {
    address: Ipv4Addr::new(10, 0, 2, 15),
    prefix_len: 24,
    gateway: Ipv4Addr::new(10, 0, 2, 2),
};
/// passt's own MAC when bound to `lo` (which has none): locally
/// administered, unicast.
pub const LOOPBACK_MAC: [u8; 6] = [0x02, 0x70, 0x61, 0x73, 0x73, 0x74];
/// passt's pid file and log in the runtime directory.
const PID_FILE: &str = "passt.pid";
const LOG_FILE: &str = "passt.log";

/// A transport protocol passt forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (`-t`).
    Tcp,
    /// UDP (`-u`).
    Udp,
}

/// One host port forwarded to a port of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// Bind only this host address (default: all).
    pub host_ip: Option<IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// The guest (container) port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "{proto} [{ip}]:{}", self.host_port)?,
            Some(ip) => write!(f, "{proto} {ip}:{}", self.host_port)?,
            None => write!(f, "{proto} host port {}", self.host_port)?,
        }
        write!(f, " -> guest port {}", self.container_port)
    }
}

impl PortForward {
    /// passt's spec: `[ADDR/]HOST_PORT[:GUEST_PORT]`.
    fn spec(&self) -> String {
        let mut s = String::new();
        if let Some(ip) = self.host_ip {
            s.push_str(&format!("{ip}/"));
        }
        s.push_str(&self.host_port.to_string());
        if self.container_port != self.host_port {
            s.push_str(&format!(":{}", self.container_port));
        }
        s
    }
}

/// The guest's IPv4 configuration (what passt answers DHCP with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestIpv4 {
    /// The guest's address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The default gateway (passt itself).
    pub gateway: Ipv4Addr,
}

/// Which host interface passt works from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Uplink {
    /// The host's IPv4 default-route interface (passt's default); `lo`
    /// when the host has none.
    #[default]
    Auto,
    /// `lo` only: port forwards from the host, no way out.
    Loopback,
}

/// How to start passt.
#[derive(Debug, Clone)]
pub struct PasstConfig {
    /// The program (`passt`, looked up in `PATH`).
    pub program: PathBuf,
    /// A directory we own for passt's pid file and log.
    pub runtime_dir: PathBuf,
    /// Host ports forwarded to the guest.
    pub forwards: Vec<PortForward>,
    /// MTU announced over DHCP (passt's default: none).
    pub mtu: Option<u16>,
    /// The guest's address (default: mirror the host's uplink).
    pub ipv4: Option<GuestIpv4>,
    /// The host side.
    pub uplink: Uplink,
    /// Whether the gateway address reaches the host's loopback (passt's
    /// default mapping). Off, passt runs with `--no-map-gw`: the pod
    /// reaches no service that listens only on the host's 127.0.0.1;
    /// DNS (port 53) to the gateway still reaches the host's first
    /// resolver, wherever it listens (passt's `--dns-forward`).
    pub host_loopback: bool,
    /// How long passt may take to become ready.
    pub ready_timeout: Duration,
}

impl PasstConfig {
    /// Defaults: `passt` from `PATH`, no forwards, host addresses.
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Self {
        PasstConfig {
            program: PathBuf::from("passt"),
            runtime_dir: runtime_dir.into(),
            forwards: Vec::new(),
            mtu: None,
            ipv4: None,
            uplink: Uplink::Auto,
            host_loopback: false,
            ready_timeout: READY_TIMEOUT,
        }
    }
}

/// Why passt could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PasstError {
    /// The passt binary is not there.
    #[error("passt is not installed (no {}): install Debian's passt: apt install passt", .0.display())]
    NotInstalled(PathBuf),
    /// A forward names port 0.
    #[error("port forward {0}: port 0 is not a port")]
    InvalidPort(PortForward),
    /// Two forwards claim the same host port.
    #[error("port forwards {0} and {1} use the same host port")]
    DuplicatePort(PortForward, PortForward),
    /// A host port is taken.
    #[error(
        "{0}: the host port is already in use; choose another hostPort or stop what listens there"
    )]
    PortInUse(PortForward, #[source] io::Error),
    /// A host port is privileged.
    #[error("{0}: host ports below {1} need privileges (sysctl net.ipv4.ip_unprivileged_port_start); choose a hostPort of at least {1}")]
    PortPrivileged(PortForward, u16, #[source] io::Error),
    /// A host port cannot be bound for another reason (e.g. the host
    /// address is not one of this host's).
    #[error("{0}: cannot bind the host port")]
    BindPort(PortForward, #[source] io::Error),
    /// The host's routes could not be read.
    #[error("cannot read the host's default route")]
    HostRoute(#[source] io::Error),
    /// The socket pair could not be created.
    #[error("cannot create the socket pair for passt")]
    SocketPair(#[source] io::Error),
    /// The runtime directory is not usable.
    #[error("cannot create passt's files in {}", .0.display())]
    RuntimeDir(PathBuf, #[source] io::Error),
    /// passt could not be executed.
    #[error("cannot start {}", .0.display())]
    Spawn(PathBuf, #[source] io::Error),
    /// passt exited before it was ready.
    #[error("passt exited during start-up ({status}){}", stderr_note(.stderr))]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        stderr: String,
    },
    /// passt did not become ready in time (it was killed).
    #[error("passt did not become ready within {timeout:?}{}", stderr_note(.stderr))]
    Timeout {
        /// The limit.
        timeout: Duration,
        /// What it printed.
        stderr: String,
    },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim())
    }
}

/// passt's log without the noise of a host without syslog.
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !(l.starts_with("Failed to send") && l.ends_with("bytes to syslog")))
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Check that every forward names real ports, no two share a host port,
/// and each host port can be bound now (by this user, on its address).
pub fn check_forwards(forwards: &[PortForward]) -> Result<(), PasstError> {
    for (i, f) in forwards.iter().enumerate() {
        if f.host_port == 0 || f.container_port == 0 {
            return Err(PasstError::InvalidPort(f.clone()));
        }
        let clash = forwards[..i].iter().find(|g| {
            g.protocol == f.protocol
                && g.host_port == f.host_port
                && (g.host_ip.is_none() || f.host_ip.is_none() || g.host_ip == f.host_ip)
        });
        if let Some(g) = clash {
            return Err(PasstError::DuplicatePort(g.clone(), f.clone()));
        }
    }
    for f in forwards {
        let addrs: Vec<(IpAddr, bool)> = match f.host_ip {
            Some(ip) => vec![(ip, true)],
            // passt binds both families; IPv6 may be off on this host.
            None => vec![
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), true),
                (IpAddr::V6(Ipv6Addr::UNSPECIFIED), false),
            ],
        };
        for (ip, required) in addrs {
            let r = match f.protocol {
                Protocol::Tcp => TcpListener::bind((ip, f.host_port)).map(drop),
                Protocol::Udp => UdpSocket::bind((ip, f.host_port)).map(drop),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    return Err(PasstError::PortInUse(f.clone(), e))
                }
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(PasstError::PortPrivileged(
                        f.clone(),
                        unprivileged_port_start(),
                        e,
                    ))
                }
                Err(e) if required => return Err(PasstError::BindPort(f.clone(), e)),
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// passt's options for `cfg` (all but the fd, pid file and user), and the
/// guest's resulting address. `host` is the host's default route.
pub fn plan(cfg: &PasstConfig, host: Option<&HostIpv4>) -> (Vec<OsString>, GuestIpv4) {
    let mut args: Vec<OsString> = vec!["--foreground".into(), "--quiet".into()];
    let loopback = cfg.uplink == Uplink::Loopback || host.is_none();
    let ipv4 = match (cfg.ipv4, host) {
        (Some(ip), _) => ip,
        (None, Some(h)) if !loopback => GuestIpv4 {
            address: h.address,
            prefix_len: h.prefix_len,
            gateway: h.gateway,
        },
        _ => FALLBACK_IPV4,
    };
    if loopback {
        args.extend([
            "--interface".into(),
            "lo".into(),
            "--mac-addr".into(),
            format_mac(&LOOPBACK_MAC).into(),
        ]);
    }
    args.extend([
        "--address".into(),
        ipv4.address.to_string().into(),
        "--netmask".into(),
        ipv4.prefix_len.to_string().into(),
        "--gateway".into(),
        ipv4.gateway.to_string().into(),
    ]);
    if !cfg.host_loopback {
        args.extend([
            "--no-map-gw".into(),
            "--dns-forward".into(),
            ipv4.gateway.to_string().into(),
        ]);
    }
    if let Some(mtu) = cfg.mtu {
        args.extend(["--mtu".into(), mtu.to_string().into()]);
    }
    let mut udp = false;
    let mut tcp = false;
    for f in &cfg.forwards {
        let flag = match f.protocol {
            Protocol::Tcp => {
                tcp = true;
                "--tcp-ports"
            }
            Protocol::Udp => {
                udp = true;
                "--udp-ports"
            }
        };
        args.extend([flag.into(), f.spec().into()]);
    }
    if tcp && !udp {
        args.extend(["--udp-ports".into(), "none".into()]);
    }
    (args, ipv4)
}

/// A running passt, connected. Dropping it kills passt.
pub struct Passt {
    child: Child,
    stream: Option<UnixStream>,
    ipv4: GuestIpv4,
    log: PathBuf,
    /// passt writes it once it is ready.
    pid_file: PathBuf,
    ready_timeout: Duration,
}

impl Passt {
    /// Check the forwards, start passt, and wait (at most
    /// `cfg.ready_timeout`) until it is ready.
    pub fn spawn(cfg: &PasstConfig) -> Result<Passt, PasstError> {
        let mut passt = Passt::start(cfg)?;
        passt.wait_ready()?;
        Ok(passt)
    }

    /// Check the forwards and start passt, without waiting for it: what
    /// the VMM writes to its stream waits in the socket until passt reads
    /// it. [`Passt::wait_ready`] says when it is up (or why not).
    pub fn start(cfg: &PasstConfig) -> Result<Passt, PasstError> {
        check_forwards(&cfg.forwards)?;
        let host = match cfg.uplink {
            Uplink::Auto => default_route_ipv4().map_err(PasstError::HostRoute)?,
            Uplink::Loopback => None,
        };
        if host.is_none() && cfg.uplink == Uplink::Auto {
            log::info!(
                "the host has no IPv4 default route: passt works from lo, so the pod can \
                 only be reached through its port forwards and cannot reach beyond the host"
            );
        }
        let (mut args, ipv4) = plan(cfg, host.as_ref());

        let dir_err = |e| PasstError::RuntimeDir(cfg.runtime_dir.clone(), e);
        std::fs::create_dir_all(&cfg.runtime_dir).map_err(dir_err)?;
        let pid_file = cfg.runtime_dir.join(PID_FILE);
        let log = cfg.runtime_dir.join(LOG_FILE);
        match std::fs::remove_file(&pid_file) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(dir_err(e)),
            _ => {}
        }
        let stderr = File::create(&log).map_err(dir_err)?;

        let (ours, theirs) = UnixStream::pair().map_err(PasstError::SocketPair)?;
        let fd = theirs.as_raw_fd();
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        args.extend([
            "--runas".into(),
            format!("{uid}:{gid}").into(),
            "--pid".into(),
            pid_file.clone().into_os_string(),
            "--fd".into(),
            fd.to_string().into(),
        ]);

        let mut cmd = Command::new(&cfg.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // Runs between fork and exec: only async-signal-safe calls, no
        // allocation.
        let arm_child = move || {
            // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no
            // memory effects.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != parent {
                // The VMM died before PDEATHSIG was armed.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Let passt inherit its end of the socket pair, and only it.
            // SAFETY: `fd` is open in this (forked) process; F_SETFD only
            // changes its close-on-exec flag.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: `arm_child` is safe to run between fork and exec (see
        // above).
        unsafe { cmd.pre_exec(arm_child) };
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                PasstError::NotInstalled(cfg.program.clone())
            } else {
                PasstError::Spawn(cfg.program.clone(), e)
            }
        })?;
        drop(theirs);
        Ok(Passt {
            child,
            stream: Some(ours),
            ipv4,
            log,
            pid_file,
            ready_timeout: cfg.ready_timeout,
        })
    }

    /// Wait (at most the configured time) until passt is ready: it wrote
    /// its pid file. Not ready in time, it is killed.
    pub fn wait_ready(&mut self) -> Result<(), PasstError> {
        let (pid_file, timeout) = (self.pid_file.clone(), self.ready_timeout);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(PasstError::Exited {
                    status,
                    stderr: read_log(&self.log),
                });
            }
            let written = std::fs::read_to_string(&pid_file)
                .is_ok_and(|s| s.ends_with('\n') && s.trim().parse::<u32>().is_ok());
            if written {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(PasstError::Timeout {
                    timeout,
                    stderr: read_log(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The VMM's end of the connection (for `NetConfig`); `None` once taken.
    pub fn take_stream(&mut self) -> Option<UnixStream> {
        self.stream.take()
    }

    /// The guest's IPv4 configuration passt hands out.
    pub fn guest_ipv4(&self) -> GuestIpv4 {
        self.ipv4
    }

    /// passt's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// passt's stderr (in the runtime directory).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// passt's exit status, if it has exited, with what it printed.
    pub fn try_exited(&mut self) -> Option<(ExitStatus, String)> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some((status, read_log(&self.log))),
            _ => None,
        }
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(ip: Option<IpAddr>, host: u16, guest: u16, protocol: Protocol) -> PortForward {
        PortForward {
            host_ip: ip,
            host_port: host,
            container_port: guest,
            protocol,
        }
    }

    fn strs(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    fn host() -> HostIpv4 {
        HostIpv4 {
            interface: "eth0".into(),
            address: Ipv4Addr::new(192, 0, 2, 2),
            prefix_len: 24,
            gateway: Ipv4Addr::new(192, 0, 2, 1),
        }
    }

    #[test]
    fn test_passt_plan_mirrors_host_and_builds_port_specs() {
        let mut cfg = PasstConfig::new("/run/x");
        cfg.mtu = Some(1500);
        cfg.forwards = vec![
            fwd(None, 8080, 80, Protocol::Tcp),
            fwd(
                Some("127.0.0.1".parse().unwrap()),
                9000,
                9000,
                Protocol::Tcp,
            ),
            fwd(Some("::1".parse().unwrap()), 5353, 53, Protocol::Udp),
        ];
        let (args, ip) = plan(&cfg, Some(&host()));
        assert_eq!(
            strs(&args),
            [
                "--foreground",
                "--quiet",
                "--address",
                "192.0.2.2",
                "--netmask",
                "24",
                "--gateway",
                "192.0.2.1",
                "--no-map-gw",
                "--dns-forward",
                "192.0.2.1",
                "--mtu",
                "1500",
                "--tcp-ports",
                "8080:80",
                "--tcp-ports",
                "127.0.0.1/9000",
                "--udp-ports",
                "::1/5353:53",
            ]
        );
        assert_eq!(
            ip,
            GuestIpv4 {
                address: Ipv4Addr::new(192, 0, 2, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(192, 0, 2, 1)
            }
        );
        // TCP alone: UDP is explicitly not forwarded.
        cfg.forwards.pop();
        cfg.mtu = None;
        let (args, _) = plan(&cfg, Some(&host()));
        assert_eq!(strs(&args[args.len() - 2..]), ["--udp-ports", "none"]);
    }

    #[test]
    fn test_passt_plan_without_default_route_uses_loopback() {
        let cfg = PasstConfig::new("/run/x");
        let (args, ip) = plan(&cfg, None);
        assert_eq!(ip, FALLBACK_IPV4);
        let a = strs(&args);
        assert_eq!(
            &a[2..6],
            ["--interface", "lo", "--mac-addr", "02:70:61:73:73:74"]
        );
        assert!(a.contains(&"10.0.2.15") && a.contains(&"10.0.2.2"));
        // Explicit addresses win, with or without a host route.
        let mut cfg = PasstConfig::new("/run/x");
        cfg.ipv4 = Some(GuestIpv4 {
            address: Ipv4Addr::new(172, 16, 0, 2),
            prefix_len: 16,
            gateway: Ipv4Addr::new(172, 16, 0, 1),
        });
        cfg.uplink = Uplink::Loopback;
        let (args, ip) = plan(&cfg, Some(&host()));
        assert_eq!(ip, cfg.ipv4.unwrap());
        assert!(strs(&args).contains(&"lo"));
    }

    #[test]
    fn test_passt_check_forwards_reports_clear_errors() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let lo: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let e = check_forwards(&[fwd(lo, port, 80, Protocol::Tcp)]).unwrap_err();
        assert!(matches!(e, PasstError::PortInUse(..)), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.to_string().contains("already in use"), "{e}");
        // The same port over UDP is free.
        check_forwards(&[fwd(lo, port, 80, Protocol::Udp)]).unwrap();
        let e = check_forwards(&[fwd(None, 0, 80, Protocol::Tcp)]).unwrap_err();
        assert!(matches!(e, PasstError::InvalidPort(_)), "{e}");
        let e = check_forwards(&[
            fwd(None, 18123, 80, Protocol::Tcp),
            fwd(lo, 18123, 81, Protocol::Tcp),
        ])
        .unwrap_err();
        assert!(matches!(e, PasstError::DuplicatePort(..)), "{e}");
        // An address that is not this host's.
        let e = check_forwards(&[fwd(
            Some("192.0.2.254".parse().unwrap()),
            18124,
            1,
            Protocol::Tcp,
        )]);
        assert!(matches!(e, Err(PasstError::BindPort(..))), "{e:?}");
    }

    #[test]
    fn test_passt_missing_binary_says_how_to_install() {
        let dir = std::env::temp_dir().join(format!("peapod-passt-missing-{}", std::process::id()));
        let mut cfg = PasstConfig::new(&dir);
        cfg.program = PathBuf::from("/nonexistent/passt");
        let e = Passt::spawn(&cfg).err().expect("fails");
        assert!(matches!(e, PasstError::NotInstalled(_)), "{e}");
        assert!(e.to_string().contains("apt install passt"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_passt_early_exit_includes_its_stderr() {
        let dir = std::env::temp_dir().join(format!("peapod-passt-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-passt");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Failed to send 9 bytes to syslog' >&2\necho 'bad option' >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut cfg = PasstConfig::new(dir.join("run"));
        cfg.program = fake;
        cfg.uplink = Uplink::Loopback;
        let e = Passt::spawn(&cfg).err().expect("fails");
        let msg = e.to_string();
        assert!(matches!(e, PasstError::Exited { .. }), "{msg}");
        assert!(msg.ends_with(": bad option"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_passt_not_ready_in_time_is_killed() {
        let dir = std::env::temp_dir().join(format!("peapod-passt-slow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-passt");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut cfg = PasstConfig::new(dir.join("run"));
        cfg.program = fake;
        cfg.uplink = Uplink::Loopback;
        cfg.ready_timeout = Duration::from_millis(200);
        let e = Passt::spawn(&cfg).err().expect("fails");
        assert!(matches!(e, PasstError::Timeout { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
