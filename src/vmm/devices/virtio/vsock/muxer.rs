//! The Unix-socket host backend (Firecracker-style addressing, our own code).
//!
//! * A guest connection to port `P` is forwarded to the Unix socket
//!   `<uds_path>_P`, which the VMM connects to.
//! * A host process connects to `<uds_path>`, writes `CONNECT <port>\n`, and
//!   once the guest accepts gets `OK <host_port>\n`; the stream is then the
//!   connection.
//!
//! A plain struct without epoll: it reports which fds it wants watched and
//! for what ([`VsockBackend::interests`]), and is told when they are ready.
//! Flow control follows virtio 5.10.6.3: the guest may have at most our
//! `buf_alloc` bytes unforwarded per connection (more is a flood and resets
//! the connection, so memory per connection is bounded); we never send the
//! guest more than its advertised credit.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::packet::{
    op, Header, Packet, HOST_CID, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};

/// Our receive buffer per connection, advertised as `buf_alloc`.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Forwarded bytes after which the guest is told about new credit unasked.
pub const CREDIT_UPDATE_THRESHOLD: u32 = 64 * 1024;
/// First local port for host-initiated connections.
pub const HOST_PORT_BASE: u32 = 1 << 30;
/// Most connections at once (more are refused with RST).
pub const MAX_CONNECTIONS: usize = 1024;
/// Most accepted host streams still sending their `CONNECT` line.
pub const MAX_PENDING_CONNECTS: usize = 64;
/// Control packets queued for the guest before tx processing pauses.
pub const MAX_CONTROL_BACKLOG: usize = 1024;
/// Longest `CONNECT <port>\n` line.
const MAX_CONNECT_LINE: usize = 32;

/// What a backend wants watched on one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdInterest {
    /// The fd.
    pub fd: RawFd,
    /// Wake when readable.
    pub readable: bool,
    /// Wake when writable.
    pub writable: bool,
}

/// The host side of virtio-vsock, as the queue handlers see it.
pub trait VsockBackend: Send {
    /// A well-formed packet from the guest (type stream, CIDs checked).
    fn send_to_host(&mut self, pkt: Packet);
    /// Reset the connection `(local_port, peer_port)` and tell the guest.
    fn reset_connection(&mut self, local_port: u32, peer_port: u32);
    /// Whether [`Self::pending_rx`] may have something.
    fn has_pending_rx(&self) -> bool;
    /// The next packet for the guest, its payload at most `max_data` bytes.
    fn pending_rx(&mut self, max_data: usize) -> Option<Packet>;
    /// Too many packets wait for the guest: stop taking tx packets.
    fn rx_backlog_full(&self) -> bool;
    /// The fds to watch, and for what; fds not listed must not be watched.
    fn interests(&self) -> Vec<FdInterest>;
    /// `fd` is ready.
    fn handle_event(&mut self, fd: RawFd, readable: bool, writable: bool);
    /// Close fds of finished connections (called once they are unwatched).
    fn release_closed(&mut self);
    /// The guest driver reset: forget every connection.
    fn reset(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Host-initiated; REQUEST sent, waiting for the guest's RESPONSE.
    LocalInit,
    /// Data flows.
    Established,
}

struct Conn {
    stream: UnixStream,
    state: State,
    // Host → guest.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    tx_cnt: u32,
    /// The host socket is readable and not yet drained.
    rx_ready: bool,
    /// The host side sent EOF (or the guest will not receive).
    host_eof: bool,
    // Guest → host.
    to_host: VecDeque<u8>,
    /// Leading bytes of `to_host` that are not guest data (the OK line).
    not_guest_data: usize,
    fwd_cnt: u32,
    last_fwd_cnt_sent: u32,
    credit_update_queued: bool,
    guest_shut_send: bool,
    shut_wr_done: bool,
}

impl Conn {
    fn new(stream: UnixStream, state: State, hdr: Option<&Header>) -> Self {
        Conn {
            stream,
            state,
            peer_buf_alloc: hdr.map_or(0, |h| h.buf_alloc),
            peer_fwd_cnt: hdr.map_or(0, |h| h.fwd_cnt),
            tx_cnt: 0,
            rx_ready: false,
            host_eof: false,
            to_host: VecDeque::new(),
            not_guest_data: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            credit_update_queued: false,
            guest_shut_send: false,
            shut_wr_done: false,
        }
    }

    /// Bytes the guest can still take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wants_read(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && !self.rx_ready
            && self.peer_credit() > 0
    }

    /// Write buffered guest data to the host socket. Err: the socket is dead.
    fn flush(&mut self) -> std::io::Result<()> {
        while !self.to_host.is_empty() {
            let (a, _) = self.to_host.as_slices();
            match send_nosignal(self.stream.as_raw_fd(), a) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    let ours = n.min(self.not_guest_data);
                    self.not_guest_data -= ours;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add((n - ours) as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.to_host.is_empty() && self.guest_shut_send && !self.shut_wr_done {
            self.shut_wr_done = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }
}

/// `send(2)` with `MSG_NOSIGNAL`: a vanished host peer is an error, not a
/// SIGPIPE.
fn send_nosignal(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is a valid readable buffer of `buf.len()` bytes; `fd` is
    // a socket owned by the caller for the duration of the call.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A host stream that has not finished its `CONNECT <port>\n` line.
struct PendingConnect {
    stream: UnixStream,
    line: Vec<u8>,
}

/// The Unix-socket backend.
pub struct Muxer {
    uds_path: PathBuf,
    listener: UnixListener,
    guest_cid: u64,
    conns: HashMap<(u32, u32), Conn>,
    pending_connects: HashMap<RawFd, PendingConnect>,
    /// Control packets for the guest, oldest first.
    control: VecDeque<Header>,
    /// Connections whose host socket has data, round robin.
    rx_queue: VecDeque<(u32, u32)>,
    /// Streams of finished connections, closed by `release_closed`.
    retired: Vec<UnixStream>,
    next_host_port: u32,
}

impl Muxer {
    /// Listen on `uds_path` (a stale socket there is replaced) for a guest
    /// with CID `guest_cid`.
    pub fn new(uds_path: &Path, guest_cid: u64) -> std::io::Result<Muxer> {
        if let Ok(meta) = std::fs::symlink_metadata(uds_path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(uds_path)?;
            }
        }
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        Ok(Muxer {
            uds_path: uds_path.to_path_buf(),
            listener,
            guest_cid,
            conns: HashMap::new(),
            pending_connects: HashMap::new(),
            control: VecDeque::new(),
            rx_queue: VecDeque::new(),
            retired: Vec::new(),
            next_host_port: HOST_PORT_BASE,
        })
    }

    /// Connections in the table.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn header(&self, local_port: u32, peer_port: u32, op: u16) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: local_port,
            dst_port: peer_port,
            type_: TYPE_STREAM,
            op,
            ..Header::default()
        }
    }

    fn queue_control(&mut self, local_port: u32, peer_port: u32, op: u16, flags: u32) {
        let mut h = self.header(local_port, peer_port, op);
        h.flags = flags;
        self.control.push_back(h);
    }

    fn rst(&mut self, local_port: u32, peer_port: u32) {
        self.queue_control(local_port, peer_port, op::RST, 0);
    }

    fn remove(&mut self, key: (u32, u32)) {
        if let Some(c) = self.conns.remove(&key) {
            self.retired.push(c.stream);
        }
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let p = self.next_host_port;
            self.next_host_port = self.next_host_port.wrapping_add(1).max(HOST_PORT_BASE);
            if !self.conns.keys().any(|&(l, _)| l == p) {
                return p;
            }
        }
    }

    fn connect_guest_request(&mut self, pkt: &Packet) {
        let (local, peer) = (pkt.hdr.dst_port, pkt.hdr.src_port);
        if self.conns.contains_key(&(local, peer)) {
            log::debug!("vsock: duplicate REQUEST for {local}/{peer}");
            self.remove((local, peer));
            self.rst(local, peer);
            return;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: connection table full; refusing guest port {peer}");
            self.rst(local, peer);
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{local}"));
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("vsock: guest connect to port {local}: {e}");
                self.rst(local, peer);
                return;
            }
        };
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("vsock: {e}");
            self.rst(local, peer);
            return;
        }
        self.conns.insert(
            (local, peer),
            Conn::new(stream, State::Established, Some(&pkt.hdr)),
        );
        self.queue_control(local, peer, op::RESPONSE, 0);
    }

    fn guest_rw(&mut self, key: (u32, u32), data: &[u8]) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.state != State::Established || c.guest_shut_send {
            self.remove(key);
            self.rst(key.0, key.1);
            return;
        }
        if c.to_host.len() + data.len() > BUF_ALLOC as usize {
            log::warn!(
                "vsock: guest port {} sent past its credit; resetting the connection",
                key.1
            );
            self.remove(key);
            self.rst(key.0, key.1);
            return;
        }
        c.to_host.extend(data);
        self.after_flush(key);
    }

    /// Flush a connection; reset it if the host socket is gone; queue a
    /// credit update once enough was forwarded.
    fn after_flush(&mut self, key: (u32, u32)) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if let Err(e) = c.flush() {
            log::debug!("vsock: host socket for port {}: {e}", key.0);
            self.remove(key);
            self.rst(key.0, key.1);
            return;
        }
        if !c.credit_update_queued
            && c.fwd_cnt.wrapping_sub(c.last_fwd_cnt_sent) >= CREDIT_UPDATE_THRESHOLD
        {
            c.credit_update_queued = true;
            self.queue_control(key.0, key.1, op::CREDIT_UPDATE, 0);
        }
    }

    fn guest_shutdown(&mut self, key: (u32, u32), flags: u32) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if flags & SHUTDOWN_RCV != 0 {
            c.host_eof = true;
        }
        if flags & SHUTDOWN_SEND != 0 {
            c.guest_shut_send = true;
        }
        if flags & (SHUTDOWN_RCV | SHUTDOWN_SEND) == SHUTDOWN_RCV | SHUTDOWN_SEND {
            // Both directions closed: best-effort flush, then the RST that
            // completes the close on the guest side.
            let _ = c.flush();
            self.remove(key);
            self.rst(key.0, key.1);
            return;
        }
        self.after_flush(key);
    }

    fn guest_response(&mut self, key: (u32, u32)) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.state != State::LocalInit {
            self.remove(key);
            self.rst(key.0, key.1);
            return;
        }
        c.state = State::Established;
        // The OK line is not guest data: it stays out of the credit count.
        let line = format!("OK {}\n", key.0);
        c.not_guest_data = line.len();
        c.to_host.extend(line.as_bytes());
        self.after_flush(key);
    }

    fn accept_all(&mut self) {
        while self.pending_connects.len() < MAX_PENDING_CONNECTS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    self.pending_connects.insert(
                        fd,
                        PendingConnect {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock {
                        log::warn!("vsock: accept on {}: {e}", self.uds_path.display());
                    }
                    break;
                }
            }
        }
    }

    /// Read the CONNECT line byte by byte (what follows it is stream data).
    fn read_connect_line(&mut self, fd: RawFd) {
        let Some(p) = self.pending_connects.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8; 1];
        let done = loop {
            match p.stream.read(&mut byte) {
                Ok(0) => break Err("closed before CONNECT"),
                Ok(_) if byte[0] == b'\n' => break Ok(()),
                Ok(_) if p.line.len() >= MAX_CONNECT_LINE => break Err("CONNECT line too long"),
                Ok(_) => p.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break Err("read error"),
            }
        };
        let Some(p) = self.pending_connects.remove(&fd) else {
            return;
        };
        let port = done.and_then(|()| parse_connect(&p.line).ok_or("malformed CONNECT line"));
        let port = match port {
            Ok(port) => port,
            Err(why) => {
                log::debug!("vsock: host connection dropped: {why}");
                self.retired.push(p.stream);
                return;
            }
        };
        if self.conns.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: connection table full; refusing host CONNECT {port}");
            self.retired.push(p.stream);
            return;
        }
        let local = self.alloc_host_port();
        self.conns
            .insert((local, port), Conn::new(p.stream, State::LocalInit, None));
        self.queue_control(local, port, op::REQUEST, 0);
    }

    fn conn_event(&mut self, key: (u32, u32), readable: bool, writable: bool) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if readable && c.wants_read() {
            c.rx_ready = true;
            self.rx_queue.push_back(key);
        }
        if writable && !c.to_host.is_empty() {
            self.after_flush(key);
        }
    }

    /// Read host data for the guest from the next ready connection.
    fn next_data(&mut self, max_data: usize) -> Option<Packet> {
        for _ in 0..self.rx_queue.len() {
            let key = self.rx_queue.pop_front()?;
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if !c.rx_ready {
                continue;
            }
            let credit = c.peer_credit() as usize;
            if credit == 0 || c.state != State::Established || c.host_eof {
                // Wait for credit; epoll re-arms once it arrives.
                c.rx_ready = false;
                continue;
            }
            let want = max_data.min(credit).min(MAX_PAYLOAD);
            if want == 0 {
                self.rx_queue.push_front(key);
                return None;
            }
            let mut buf = vec![0u8; want];
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.rx_ready = false;
                    c.host_eof = true;
                    return Some(Packet::control(self.stamp(
                        key,
                        op::SHUTDOWN,
                        SHUTDOWN_SEND,
                    )));
                }
                Ok(n) => {
                    buf.truncate(n);
                    c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
                    self.rx_queue.push_back(key);
                    let hdr = Header {
                        len: n as u32,
                        ..self.stamp(key, op::RW, 0)
                    };
                    return Some(Packet { hdr, data: buf });
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    c.rx_ready = false;
                }
                Err(e) => {
                    log::debug!("vsock: host socket for port {}: {e}", key.0);
                    self.remove(key);
                    return Some(Packet::control(self.stamp(key, op::RST, 0)));
                }
            }
        }
        None
    }

    /// A header to the guest carrying the connection's current credit.
    fn stamp(&mut self, key: (u32, u32), op: u16, flags: u32) -> Header {
        let mut h = self.header(key.0, key.1, op);
        h.flags = flags;
        if let Some(c) = self.conns.get_mut(&key) {
            h.buf_alloc = BUF_ALLOC;
            h.fwd_cnt = c.fwd_cnt;
            c.last_fwd_cnt_sent = c.fwd_cnt;
            if op == op::CREDIT_UPDATE {
                c.credit_update_queued = false;
            }
        }
        h
    }
}

fn parse_connect(line: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(line).ok()?;
    let s = s.strip_suffix('\r').unwrap_or(s);
    let port = s.strip_prefix("CONNECT ")?;
    port.trim().parse().ok()
}

impl VsockBackend for Muxer {
    fn send_to_host(&mut self, pkt: Packet) {
        let key = (pkt.hdr.dst_port, pkt.hdr.src_port);
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = pkt.hdr.buf_alloc;
            c.peer_fwd_cnt = pkt.hdr.fwd_cnt;
        }
        let known = self.conns.contains_key(&key);
        match pkt.hdr.op {
            op::REQUEST => self.connect_guest_request(&pkt),
            op::RST => self.remove(key),
            _ if !known => {
                log::debug!("vsock: packet for unknown connection {}/{}", key.0, key.1);
                self.rst(key.0, key.1);
            }
            op::RESPONSE => self.guest_response(key),
            op::RW => self.guest_rw(key, &pkt.data),
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST => {
                if let Some(c) = self.conns.get_mut(&key) {
                    if !c.credit_update_queued {
                        c.credit_update_queued = true;
                        self.queue_control(key.0, key.1, op::CREDIT_UPDATE, 0);
                    }
                }
            }
            op::SHUTDOWN => self.guest_shutdown(key, pkt.hdr.flags),
            other => {
                log::debug!("vsock: unknown op {other}");
                self.remove(key);
                self.rst(key.0, key.1);
            }
        }
    }

    fn reset_connection(&mut self, local_port: u32, peer_port: u32) {
        self.remove((local_port, peer_port));
        self.rst(local_port, peer_port);
    }

    fn has_pending_rx(&self) -> bool {
        !self.control.is_empty()
            || self.rx_queue.iter().any(|k| {
                self.conns
                    .get(k)
                    .is_some_and(|c| c.rx_ready && c.peer_credit() > 0)
            })
    }

    fn pending_rx(&mut self, max_data: usize) -> Option<Packet> {
        if let Some(h) = self.control.pop_front() {
            let stamped = self.stamp((h.src_port, h.dst_port), h.op, h.flags);
            return Some(Packet::control(stamped));
        }
        self.next_data(max_data)
    }

    fn rx_backlog_full(&self) -> bool {
        self.control.len() >= MAX_CONTROL_BACKLOG
    }

    fn interests(&self) -> Vec<FdInterest> {
        let mut v = Vec::with_capacity(1 + self.pending_connects.len() + self.conns.len());
        if self.pending_connects.len() < MAX_PENDING_CONNECTS {
            v.push(FdInterest {
                fd: self.listener.as_raw_fd(),
                readable: true,
                writable: false,
            });
        }
        for fd in self.pending_connects.keys() {
            v.push(FdInterest {
                fd: *fd,
                readable: true,
                writable: false,
            });
        }
        for c in self.conns.values() {
            let readable = c.wants_read();
            let writable = !c.to_host.is_empty();
            if readable || writable {
                v.push(FdInterest {
                    fd: c.stream.as_raw_fd(),
                    readable,
                    writable,
                });
            }
        }
        v
    }

    fn handle_event(&mut self, fd: RawFd, readable: bool, writable: bool) {
        if fd == self.listener.as_raw_fd() {
            self.accept_all();
            return;
        }
        if self.pending_connects.contains_key(&fd) {
            self.read_connect_line(fd);
            return;
        }
        let key = self
            .conns
            .iter()
            .find(|(_, c)| c.stream.as_raw_fd() == fd)
            .map(|(k, _)| *k);
        if let Some(key) = key {
            self.conn_event(key, readable, writable);
        }
    }

    fn release_closed(&mut self) {
        self.retired.clear();
    }

    fn reset(&mut self) {
        let keys: Vec<_> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        self.control.clear();
        self.rx_queue.clear();
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
