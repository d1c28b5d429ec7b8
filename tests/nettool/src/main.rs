//! peapod-nettool: the network tool of peapod's VM tests and `bench/net`.
//!
//! One static binary (std only, built by `scripts/build-nettool`) runs on the
//! host and inside a pod (the busybox test image gets it through a hostPath
//! mount), so both ends of a test speak the same protocol:
//!
//! - `udp-echo` and `udp-ping`: does UDP get through, both ways?
//! - `dns-serve`: a tiny authoritative DNS server, to check that a pod's
//!   resolver reaches the DNS server it was given (see [`dns`]).
//! - `serve`, `bench` and `tcp-send`: TCP throughput, round-trip time and
//!   new-connection latency, printed as `name value` lines (see [`tcp`]).
//!
//! Every blocking step of a client has a timeout, so a test never hangs on
//! it; servers wait for clients forever and are killed by whoever started
//! them. Exit status: 0 ok, 1 failure, 2 usage error.

mod dns;
mod tcp;
mod udp;

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: peapod-nettool COMMAND ARGS...

  udp-echo ADDR:PORT [--count N]
      echo every UDP datagram back to its sender (N of them, else forever)
  udp-ping ADDR:PORT MESSAGE [--timeout SECS] [--tries N]
      send MESSAGE (up to N times, default 5), print the reply as
      `reply: TEXT`; exit 0 if it came back unchanged
  dns-serve ADDR:PORT NAME=IPV4...
      answer DNS queries over UDP: A records for these names, NXDOMAIN for
      all others
  serve ADDR:PORT [--timeout SECS]
      the TCP server of bench and tcp-send
  bench ADDR:PORT [--bytes N] [--rtt COUNT] [--connects COUNT] [--size N]
        [--only upload|download|rtt|connect] [--wait SECS] [--timeout SECS]
      measure upload and download throughput (--bytes, default 256M), the
      round-trip time of --size-byte messages (default 64; --rtt of them,
      default 2000) and connect+request latency (--connects, default 200)
      against serve; prints upload_mbit, download_mbit, rtt_us_median,
      rtt_us_p90, rtt_us_p99, connect_us_median, connect_us_p90 and
      connect_us_p99 lines
  tcp-send ADDR:PORT N [--wait SECS] [--timeout SECS]
      upload N bytes to serve, print upload_mbit

ADDR:PORT is numeric: 10.0.2.2:5000, [::1]:5000. Servers print
`listening ADDR:PORT` once bound (port 0 picks a free one). Sizes take a
K, M or G suffix (KiB, MiB, GiB). SECS may be fractional. --timeout
(default 10) bounds every blocking step; --wait retries the first connect
for that long while the server starts. Exit status: 0 ok, 1 failure,
2 usage error.
";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure of a command: what could not be done and why, e.g.
/// `connect to 10.0.2.2:5000: Connection refused (os error 111)`.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names the action that an I/O error interrupted.
pub trait Context<T> {
    fn context<S: fmt::Display>(self, action: impl FnOnce() -> S) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn context<S: fmt::Display>(self, action: impl FnOnce() -> S) -> Result<T, Error> {
        self.map_err(|e| Error(format!("{}: {e}", action())))
    }
}

/// Writes one line to stdout, flushed: scripts and tests wait for them.
fn say(line: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context(|| "write to stdout")
}

#[derive(Debug)]
enum Command {
    Help,
    UdpEcho {
        addr: SocketAddr,
        count: Option<u64>,
    },
    UdpPing {
        addr: SocketAddr,
        message: String,
        timeout: Duration,
        tries: u32,
    },
    DnsServe {
        addr: SocketAddr,
        zone: dns::Zone,
    },
    Serve {
        addr: SocketAddr,
        timeout: Duration,
    },
    Bench {
        client: tcp::Client,
        options: tcp::BenchOptions,
    },
    TcpSend {
        client: tcp::Client,
        bytes: u64,
        wait: Duration,
    },
}

/// A subcommand's arguments: positionals, and `--name VALUE` or
/// `--name=VALUE` options (the last one counts; `--` ends them).
struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: &[String], allowed: &[&str]) -> Result<Self, String> {
        let mut args = Args {
            positional: Vec::new(),
            options: Vec::new(),
        };
        let mut raw = raw.iter();
        while let Some(arg) = raw.next() {
            if arg == "--" {
                args.positional.extend(raw.cloned());
                break;
            }
            let Some(option) = arg.strip_prefix("--") else {
                args.positional.push(arg.clone());
                continue;
            };
            let (name, value) = match option.split_once('=') {
                Some((name, value)) => (name, value.to_string()),
                None => match raw.next() {
                    Some(value) => (option, value.clone()),
                    None => return Err(format!("--{option} needs a value")),
                },
            };
            if !allowed.contains(&name) {
                return Err(format!("unknown option --{name}"));
            }
            args.options.push((name.to_string(), value));
        }
        Ok(args)
    }

    /// Exactly `N` positionals, as `synopsis` names them.
    fn exactly<const N: usize>(&self, synopsis: &str) -> Result<[&str; N], String> {
        let values: Vec<&str> = self.positional.iter().map(String::as_str).collect();
        values
            .try_into()
            .map_err(|_| format!("expected {synopsis}"))
    }

    /// The option `name` parsed by `parse` (`what` it must be), if given.
    fn get<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, String> {
        let Some((_, value)) = self.options.iter().rev().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        parse(value)
            .map(Some)
            .ok_or_else(|| format!("--{name}: {value:?} is not {what}"))
    }

    fn timeout(&self) -> Result<Duration, String> {
        let timeout = self.get("timeout", parse_seconds, "a number of seconds")?;
        match timeout {
            Some(t) if t.is_zero() => Err("--timeout must be more than 0".into()),
            t => Ok(t.unwrap_or(DEFAULT_TIMEOUT)),
        }
    }

    fn wait(&self) -> Result<Duration, String> {
        let wait = self.get("wait", parse_seconds, "a number of seconds")?;
        Ok(wait.unwrap_or(Duration::ZERO))
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a numeric ADDR:PORT"))
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

fn parse_positive(s: &str) -> Option<u64> {
    s.parse().ok().filter(|&n| n > 0)
}

/// A byte count: digits with an optional K, M or G suffix (KiB, MiB, GiB).
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn parse_phase(s: &str) -> Option<tcp::Phase> {
    match s {
        "upload" => Some(tcp::Phase::Upload),
        "download" => Some(tcp::Phase::Download),
        "rtt" => Some(tcp::Phase::Rtt),
        "connect" => Some(tcp::Phase::Connect),
        _ => None,
    }
}

fn parse_command(raw: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = raw.split_first() else {
        return Err("no command given".into());
    };
    match command.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "udp-echo" => {
            let args = Args::parse(rest, &["count"])?;
            let [addr] = args.exactly("udp-echo ADDR:PORT")?;
            Ok(Command::UdpEcho {
                addr: parse_addr(addr)?,
                count: args.get("count", parse_positive, "a positive count")?,
            })
        }
        "udp-ping" => {
            let args = Args::parse(rest, &["timeout", "tries"])?;
            let [addr, message] = args.exactly("udp-ping ADDR:PORT MESSAGE")?;
            let tries = args.get(
                "tries",
                |s| s.parse().ok().filter(|&n| n > 0),
                "a positive count",
            )?;
            Ok(Command::UdpPing {
                addr: parse_addr(addr)?,
                message: message.to_string(),
                timeout: args.timeout()?,
                tries: tries.unwrap_or(5),
            })
        }
        "dns-serve" => {
            let args = Args::parse(rest, &[])?;
            let Some((addr, entries)) =
                args.positional.split_first().filter(|(_, e)| !e.is_empty())
            else {
                return Err("expected dns-serve ADDR:PORT NAME=IPV4...".into());
            };
            Ok(Command::DnsServe {
                addr: parse_addr(addr)?,
                zone: dns::Zone::parse(entries)?,
            })
        }
        "serve" => {
            let args = Args::parse(rest, &["timeout"])?;
            let [addr] = args.exactly("serve ADDR:PORT")?;
            Ok(Command::Serve {
                addr: parse_addr(addr)?,
                timeout: args.timeout()?,
            })
        }
        "bench" => {
            let allowed = [
                "bytes", "rtt", "connects", "size", "only", "wait", "timeout",
            ];
            let args = Args::parse(rest, &allowed)?;
            let [addr] = args.exactly("bench ADDR:PORT")?;
            let bytes = args.get("bytes", parse_size, "a byte count")?;
            let rtt = args.get("rtt", parse_positive, "a positive count")?;
            let connects = args.get("connects", parse_positive, "a positive count")?;
            let size = args.get("size", parse_size, "a byte count")?.unwrap_or(64);
            if size == 0 || size > tcp::MAX_MESSAGE as u64 {
                return Err(format!("--size must be 1 to {} bytes", tcp::MAX_MESSAGE));
            }
            Ok(Command::Bench {
                client: tcp::Client::new(parse_addr(addr)?, args.timeout()?),
                options: tcp::BenchOptions {
                    bytes: bytes.unwrap_or(256 << 20),
                    rtt: rtt.unwrap_or(2000),
                    connects: connects.unwrap_or(200),
                    size: size as usize,
                    only: args.get("only", parse_phase, "upload, download, rtt or connect")?,
                    wait: args.wait()?,
                },
            })
        }
        "tcp-send" => {
            let args = Args::parse(rest, &["wait", "timeout"])?;
            let [addr, bytes] = args.exactly("tcp-send ADDR:PORT N")?;
            Ok(Command::TcpSend {
                client: tcp::Client::new(parse_addr(addr)?, args.timeout()?),
                bytes: parse_size(bytes).ok_or_else(|| format!("{bytes:?} is not a byte count"))?,
                wait: args.wait()?,
            })
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn listening(addr: Result<SocketAddr, io::Error>) -> Result<(), Error> {
    let addr = addr.context(|| "read the bound address")?;
    say(&format!("listening {addr}"))
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Help => say(USAGE.trim_end()),
        Command::UdpEcho { addr, count } => {
            let socket = UdpSocket::bind(addr).context(|| format!("bind UDP {addr}"))?;
            listening(socket.local_addr())?;
            udp::echo(&socket, count)
        }
        Command::UdpPing {
            addr,
            message,
            timeout,
            tries,
        } => {
            let reply = udp::ping(addr, message.as_bytes(), timeout, tries)?;
            say(&format!("reply: {}", String::from_utf8_lossy(&reply)))?;
            if reply != message.as_bytes() {
                return Err(Error::new(format!(
                    "the reply from {addr} differs from the message {message:?}"
                )));
            }
            Ok(())
        }
        Command::DnsServe { addr, zone } => {
            let socket = UdpSocket::bind(addr).context(|| format!("bind UDP {addr}"))?;
            listening(socket.local_addr())?;
            dns::serve(&socket, &zone)
        }
        Command::Serve { addr, timeout } => {
            let listener = TcpListener::bind(addr).context(|| format!("listen on TCP {addr}"))?;
            listening(listener.local_addr())?;
            tcp::serve(&listener, timeout)
        }
        Command::Bench { client, options } => tcp::bench(&client, &options, |name, value| {
            say(&format!("{name} {value:.2}"))
        }),
        Command::TcpSend {
            client,
            bytes,
            wait,
        } => {
            client.wait_ready(wait)?;
            let elapsed = client.upload(bytes)?;
            say(&format!("upload_mbit {:.2}", tcp::mbit(bytes, elapsed)))
        }
    }
}

/// Run as a pod's peapod-init (the monitor starts its init as `INIT
/// --native --socket SOCKET --share ROOT`): a hostile guest for the
/// hardening tests. It speaks the guest protocol as a container that
/// became root in the guest kernel could, then does what
/// `$PEAPOD_HOSTILE` names, and stays connected.
///   pod-exited-flood   2,000 `pod_exited` messages
///   exec-flood         its first container runs; each exec gets 69 MiB
///                      of output at once (1,100 messages of 64 KiB), then
///                      one message with 256 KiB of data
///   log-flood          its first container runs and writes 16 MiB without
///                      end, then is said to restart 50 times, the first
///                      time as restart number 4,000,000,000
fn hostile_init(args: &[String]) -> ExitCode {
    use peapod_proto::{Connection, ContainerEvent, GuestMsg, HostMsg, PodPhase, Stream};
    let Some(socket) = args
        .iter()
        .position(|a| a == "--socket")
        .and_then(|i| args.get(i + 1))
    else {
        eprintln!("hostile init: no --socket");
        return ExitCode::from(2);
    };
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hostile init: {socket}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut conn = Connection::new(stream);
    let attack = std::env::var("PEAPOD_HOSTILE").unwrap_or_default();
    let result = conn
        .handshake_guest("hostile-init")
        .and_then(|_| conn.send(&GuestMsg::Ready { uptime_ms: 0 }))
        .and_then(|()| conn.recv::<HostMsg>())
        .and_then(|pod| match attack.as_str() {
            "pod-exited-flood" => (0..2000).try_for_each(|i| {
                conn.send(&GuestMsg::PodExited {
                    phase: PodPhase::Failed,
                    reason: format!("flood {i}"),
                })
            }),
            "log-flood" => {
                let Some(HostMsg::RunPod(pod)) = pod else {
                    return Ok(());
                };
                let Some(first) = pod.containers.first() else {
                    return Ok(());
                };
                let name = first.name.clone();
                let event = |event| GuestMsg::ContainerEvent {
                    container: name.clone(),
                    init: false,
                    event,
                };
                let log = |data: Vec<u8>| GuestMsg::Log {
                    container: name.clone(),
                    stream: Stream::Stdout,
                    timestamp_ns: 1,
                    partial: false,
                    data,
                };
                conn.send(&event(ContainerEvent::Started { pid: 2 }))?;
                let mut line = vec![b'x'; peapod_proto::MAX_CHUNK - 1];
                line.push(b'\n');
                for _ in 0..256 {
                    conn.send(&log(line.clone()))?;
                }
                for i in 0..50u32 {
                    conn.send(&event(ContainerEvent::Restarting {
                        restart_count: if i == 0 { 4_000_000_000 } else { i },
                        backoff_ms: 0,
                    }))?;
                    conn.send(&event(ContainerEvent::Started { pid: 2 }))?;
                    conn.send(&log(format!("run {i}\n").into_bytes()))?;
                }
                Ok(())
            }
            "exec-flood" => {
                let Some(HostMsg::RunPod(pod)) = pod else {
                    return Ok(());
                };
                let Some(first) = pod.containers.first() else {
                    return Ok(());
                };
                conn.send(&GuestMsg::ContainerEvent {
                    container: first.name.clone(),
                    init: false,
                    event: ContainerEvent::Started { pid: 2 },
                })?;
                loop {
                    let exec_id = match conn.recv::<HostMsg>()? {
                        None => return Ok(()),
                        Some(HostMsg::Exec { exec_id, .. }) => exec_id,
                        Some(_) => continue,
                    };
                    conn.send(&GuestMsg::ExecStarted { exec_id })?;
                    let data = vec![b'x'; peapod_proto::MAX_CHUNK];
                    for _ in 0..1100 {
                        conn.send(&GuestMsg::ExecOutput {
                            exec_id,
                            stream: Stream::Stdout,
                            data: data.clone(),
                        })?;
                    }
                    conn.send(&GuestMsg::ExecOutput {
                        exec_id,
                        stream: Stream::Stdout,
                        data: vec![b'y'; 4 * peapod_proto::MAX_CHUNK],
                    })?;
                }
            }
            _ => Ok(()),
        });
    if let Err(e) = result {
        eprintln!("hostile init: {e}");
    }
    eprintln!("hostile init: {attack} sent");
    // Stay: the test looks at the monitor meanwhile, then removes the pod.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> ExitCode {
    let raw: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    if let Ok(args) = &raw {
        if args.first().is_some_and(|a| a == "--native") {
            return hostile_init(args);
        }
    }
    let command = match raw {
        Ok(raw) => parse_command(&raw),
        Err(arg) => Err(format!("argument {arg:?} is not UTF-8")),
    };
    let command = match command {
        Ok(command) => command,
        Err(e) => {
            eprintln!("peapod-nettool: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peapod-nettool: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_parse_size_suffixes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        for bad in [
            "",
            "M",
            "1.5M",
            "-1",
            "+1",
            "10T",
            "1 M",
            "MiB",
            "99999999999999999999G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn test_parse_command_bench_defaults_and_options() {
        let Ok(Command::Bench { options, .. }) = parse_command(&strings(&["bench", "127.0.0.1:1"]))
        else {
            panic!("bench not parsed");
        };
        assert_eq!(
            (options.bytes, options.rtt, options.connects, options.size),
            (256 << 20, 2000, 200, 64)
        );
        assert_eq!((options.only, options.wait), (None, Duration::ZERO));
        let raw = strings(&[
            "bench",
            "[::1]:9",
            "--bytes=1M",
            "--only",
            "rtt",
            "--size",
            "1K",
            "--wait",
            "2.5",
        ]);
        let Ok(Command::Bench { client, options }) = parse_command(&raw) else {
            panic!("bench with options not parsed");
        };
        assert_eq!(client.addr, "[::1]:9".parse::<SocketAddr>().unwrap());
        assert_eq!((options.bytes, options.size), (1 << 20, 1024));
        assert_eq!(options.only, Some(tcp::Phase::Rtt));
        assert_eq!(options.wait, Duration::from_millis(2500));
    }

    #[test]
    fn test_parse_command_usage_errors() {
        for bad in [
            &[][..],
            &["frobnicate"],
            &["udp-echo"],
            &["udp-echo", "localhost:53"],
            &["udp-echo", "127.0.0.1:53", "--count", "0"],
            &["udp-ping", "127.0.0.1:53"],
            &["udp-ping", "127.0.0.1:53", "hi", "--timeout", "0"],
            &["udp-ping", "127.0.0.1:53", "hi", "--tries"],
            &["dns-serve", "127.0.0.1:53"],
            &["dns-serve", "127.0.0.1:53", "a.example=1.2.3"],
            &["serve", "127.0.0.1:1", "--count", "3"],
            &["bench", "127.0.0.1:1", "--only", "everything"],
            &["bench", "127.0.0.1:1", "--size", "0"],
            &["bench", "127.0.0.1:1", "--rtt", "-3"],
            &["tcp-send", "127.0.0.1:1"],
            &["tcp-send", "127.0.0.1:1", "lots"],
        ] {
            assert!(parse_command(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_parse_command_message_after_double_dash() {
        let raw = strings(&["udp-ping", "127.0.0.1:7", "--tries", "2", "--", "--hello"]);
        let Ok(Command::UdpPing {
            message,
            tries,
            timeout,
            ..
        }) = parse_command(&raw)
        else {
            panic!("udp-ping not parsed");
        };
        assert_eq!(
            (message.as_str(), tries, timeout),
            ("--hello", 2, DEFAULT_TIMEOUT)
        );
    }
}
