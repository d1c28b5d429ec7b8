//! UDP: an echo server, and a client that checks its message comes back.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Context, Error};

/// Room for the largest UDP payload.
const MAX_DATAGRAM: usize = 65536;

/// Whether `e` is a socket timeout (`EAGAIN` from `SO_RCVTIMEO`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends every datagram back to its sender unchanged: `count` of them, or
/// forever.
pub fn echo(socket: &UdpSocket, count: Option<u64>) -> Result<(), Error> {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut echoed = 0;
    while count.is_none_or(|count| echoed < count) {
        let (len, peer) = socket
            .recv_from(&mut buf)
            .context(|| "receive a datagram")?;
        if let Err(e) = socket.send_to(&buf[..len], peer) {
            eprintln!("peapod-nettool: echo {len} bytes to {peer}: {e}");
        }
        echoed += 1;
    }
    Ok(())
}

/// Sends `message` to `addr` and returns the first datagram that comes back
/// from it. Sends up to `tries` times, waiting `timeout / tries` after each.
pub fn ping(
    addr: SocketAddr,
    message: &[u8],
    timeout: Duration,
    tries: u32,
) -> Result<Vec<u8>, Error> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).context(|| format!("bind a UDP socket toward {addr}"))?;
    // Connected: only datagrams from addr arrive, and ICMP port-unreachable
    // shows as ECONNREFUSED.
    socket
        .connect(addr)
        .context(|| format!("connect UDP to {addr}"))?;
    let per_try = timeout / tries.max(1);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut refused = false;
    for _ in 0..tries {
        let deadline = Instant::now() + per_try;
        match socket.send(message) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused = true,
            sent => {
                sent.context(|| format!("send {} bytes to {addr}", message.len()))?;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .context(|| "set the UDP read timeout")?;
            match socket.recv(&mut buf) {
                Ok(len) => return Ok(buf[..len].to_vec()),
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // Nothing listens (yet): wait out this try, then resend.
                    refused = true;
                    thread::sleep(left);
                }
                Err(e) => return Err(Error::new(format!("receive from {addr}: {e}"))),
            }
        }
    }
    let why = if refused {
        ", port unreachable: is anything listening?"
    } else {
        ""
    };
    Err(Error::new(format!(
        "no reply from {addr} within {timeout:?} ({tries} tries){why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn test_ping_gets_echo_back() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let server = thread::spawn(move || echo(&socket, Some(2)));
        assert_eq!(ping(addr, b"hello pod", TIMEOUT, 5).unwrap(), b"hello pod");
        assert_eq!(ping(addr, b"", TIMEOUT, 5).unwrap(), b"");
        server.join().unwrap().unwrap();
    }

    #[test]
    fn test_ping_without_server_fails_in_time() {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = ping(addr, b"anyone?", Duration::from_millis(300), 3).unwrap_err();
        assert!(err.to_string().contains("no reply"), "{err}");
    }
}
