//! The byte stream to the host. Native mode uses a Unix socket; in a VM it
//! will be vsock, a new variant here: the runtime only needs `Read`,
//! `Write` and a descriptor to poll.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A connected stream to the host.
#[derive(Debug)]
pub enum Transport {
    /// Native mode: the host's listening Unix socket.
    Unix(UnixStream),
}

impl Transport {
    /// Connect to the host's Unix socket.
    pub fn connect_unix(path: &Path) -> io::Result<Transport> {
        UnixStream::connect(path)
            .map(Transport::Unix)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", path.display())))
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Unix(s) => s.flush(),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Transport::Unix(s) => s.as_raw_fd(),
        }
    }
}
