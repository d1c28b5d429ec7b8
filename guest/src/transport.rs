//! The byte stream to the host: a Unix socket in native mode, vsock in a
//! VM. The runtime only needs `Read`, `Write` and a descriptor to poll.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A connected stream to the host.
#[derive(Debug)]
pub enum Transport {
    /// Native mode: the host's listening Unix socket.
    Unix(UnixStream),
    /// In a VM: a vsock stream to the host (CID 2).
    Vsock(std::fs::File),
}

impl Transport {
    /// Connect to the host's Unix socket.
    pub fn connect_unix(path: &Path) -> io::Result<Transport> {
        UnixStream::connect(path)
            .map(Transport::Unix)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", path.display())))
    }
}

/// The host's vsock CID.
pub const VMADDR_CID_HOST: u32 = 2;

impl Transport {
    /// Connect to `port` on the host over vsock.
    pub fn connect_vsock(port: u32) -> io::Result<Transport> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new socket that nothing else owns.
        let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_vm is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = VMADDR_CID_HOST;
        addr.svm_port = port;
        // SAFETY: `addr` is a valid sockaddr_vm of the size passed.
        let rc = unsafe {
            libc::connect(
                file.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("connect to vsock port {port} of the host: {e}"),
            ));
        }
        Ok(Transport::Vsock(file))
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Unix(s) => s.read(buf),
            Transport::Vsock(f) => f.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Unix(s) => s.write(buf),
            Transport::Vsock(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Unix(s) => s.flush(),
            Transport::Vsock(f) => f.flush(),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Transport::Unix(s) => s.as_raw_fd(),
            Transport::Vsock(f) => f.as_raw_fd(),
        }
    }
}
