//! The host side of virtio-net: the [`NetBackend`] trait the queue handlers
//! use, and [`PasstStream`], the backend speaking passt's framing over a
//! nonblocking Unix stream.
//!
//! Like the vsock muxer, a backend owns no epoll: it says which fd it wants
//! watched and for what ([`NetBackend::interest`]), and is told when it is
//! ready ([`NetBackend::handle_event`]).

use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use super::framing::{FrameReader, FrameWriter};
use super::ETH_HLEN;
use crate::vmm::devices::virtio::LogLimit;

/// What a backend wants watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// The fd.
    pub fd: RawFd,
    /// Wake when readable.
    pub readable: bool,
    /// Wake when writable.
    pub writable: bool,
}

/// The host side of a virtio-net device, as the queue handlers see it.
pub trait NetBackend: Send {
    /// The next whole frame for the guest, reading more from the host if
    /// none is buffered yet. `None`: nothing yet, or the backend is down.
    fn next_frame(&mut self) -> Option<&[u8]>;
    /// Done with the frame [`Self::next_frame`] returned.
    fn pop_frame(&mut self);
    /// Whether [`Self::send`] may be called now. `false` holds the guest's
    /// frames in its tx queue (backpressure); a down backend takes (and
    /// discards) everything.
    fn can_send(&self) -> bool;
    /// A frame from the guest (Ethernet header onwards, at most
    /// `MAX_FRAME` bytes).
    fn send(&mut self, frame: &[u8]);
    /// Push queued frames towards the host without blocking.
    fn flush(&mut self);
    /// The host side is gone for good (the pod's network is down).
    fn is_down(&self) -> bool;
    /// The fd to watch and for what; `None`: watch nothing.
    fn interest(&self) -> Option<Interest>;
    /// The watched fd is ready (`hangup`: EPOLLHUP or EPOLLERR).
    fn handle_event(&mut self, readable: bool, writable: bool, hangup: bool);
    /// Close what is no longer watched (called once it is out of epoll).
    fn release(&mut self);
}

/// passt's side of the network: a connected Unix stream carrying
/// length-prefixed frames (passt's `--socket`/`--fd` mode, QEMU's `-netdev
/// stream`). Memory is bounded both ways; when the guest takes no frames,
/// the stream is not read (passt then sees a full socket).
pub struct PasstStream {
    stream: Option<UnixStream>,
    reader: FrameReader,
    writer: FrameWriter,
    down: bool,
    limit: LogLimit,
}

impl PasstStream {
    /// Use `stream` (set to nonblocking here).
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(PasstStream {
            stream: Some(stream),
            reader: FrameReader::new(),
            writer: FrameWriter::new(),
            down: false,
            limit: LogLimit::new("virtio-net"),
        })
    }

    /// Bytes of guest frames not yet written to passt.
    pub fn tx_pending(&self) -> usize {
        self.writer.pending()
    }

    /// Bytes read from passt not yet given to the guest.
    pub fn rx_buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Stop using passt for good; `what` says why, once, in the log.
    fn go_down(&mut self, what: &str) {
        if !self.down {
            self.down = true;
            log::error!("{what}: the pod's network is down");
        }
    }

    /// Read what passt has sent, while there is room. Runt frames (too
    /// short for an Ethernet header) are dropped in `next_frame`.
    fn fill(&mut self) {
        while !self.down && self.reader.has_room() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match self.reader.read_from(stream) {
                Ok(0) => self.go_down("passt exited (it closed the connection)"),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => self.go_down(&format!("passt exited (reading its socket failed: {e})")),
            }
        }
    }

    /// Whether the first buffered frame is usable, after dropping runts and
    /// noting a broken framing.
    fn front_frame_ready(&mut self) -> bool {
        loop {
            match self.reader.frame() {
                Err(e) => {
                    self.go_down(&format!("passt broke the frame protocol ({e}); closing it"));
                    return false;
                }
                Ok(Some(f)) if f.len() < ETH_HLEN => {
                    let n = f.len();
                    self.limit
                        .warn(format_args!("rx: {n}-byte frame from passt dropped"));
                    self.reader.pop();
                }
                Ok(Some(_)) => return true,
                Ok(None) => return false,
            }
        }
    }
}

/// `send(2)` without SIGPIPE (a dead passt must not kill the VMM).
fn send_nosignal(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice of `buf.len()` bytes; `fd` is
    // an open socket owned by the caller.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl NetBackend for PasstStream {
    fn next_frame(&mut self) -> Option<&[u8]> {
        if !self.front_frame_ready() {
            self.fill();
            if !self.front_frame_ready() {
                return None;
            }
        }
        if self.down {
            return None;
        }
        self.reader.frame().ok().flatten()
    }

    fn pop_frame(&mut self) {
        self.reader.pop();
    }

    fn can_send(&self) -> bool {
        self.down || self.writer.can_queue()
    }

    fn send(&mut self, frame: &[u8]) {
        if !self.down {
            self.writer.queue(frame);
        }
    }

    fn flush(&mut self) {
        if self.down {
            return;
        }
        let Some(fd) = self.stream.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if let Err(e) = self.writer.flush(|b| send_nosignal(fd, b)) {
            self.go_down(&format!("passt exited (writing its socket failed: {e})"));
        }
    }

    fn is_down(&self) -> bool {
        self.down
    }

    fn interest(&self) -> Option<Interest> {
        if self.down {
            return None;
        }
        let stream = self.stream.as_ref()?;
        Some(Interest {
            fd: stream.as_raw_fd(),
            // Read ahead of the guest's buffers, as far as the bound.
            readable: self.reader.has_room(),
            writable: self.writer.pending() > 0,
        })
    }

    fn handle_event(&mut self, readable: bool, writable: bool, hangup: bool) {
        if hangup {
            self.go_down("passt exited (its socket hung up)");
            return;
        }
        if writable {
            self.flush();
        }
        if readable {
            self.fill();
        }
    }

    fn release(&mut self) {
        if self.down {
            self.stream = None;
        }
    }
}
