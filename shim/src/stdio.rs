//! A task's output to the fifos containerd gives it, never blocking: the
//! fifo is opened and written without blocking, what does not fit waits in
//! a bounded buffer, and a fifo nobody reads only loses its own output.
//!
//! A container's output comes from its CRI log file in the pod directory
//! (the monitor writes it whatever the shim does, so the pod never waits
//! for a reader here); an exec's from its monitor connection.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use peapod::sandbox::crilog;
use peapod_proto::Stream;

/// Output held for a slow reader at most; more is dropped (and said so in
/// the shim's log).
const MAX_BUFFERED: usize = 4 << 20;

/// One output fifo.
pub struct Sink {
    path: String,
    file: Option<File>,
    buf: Vec<u8>,
    /// The reader went away (or the path cannot be a fifo): output is
    /// dropped from now on.
    dead: bool,
    dropped: u64,
}

impl Sink {
    /// A sink for fifo `path` (empty: output is discarded).
    pub fn new(path: &str) -> Sink {
        Sink {
            path: path.to_owned(),
            file: None,
            buf: Vec::new(),
            dead: path.is_empty(),
            dropped: 0,
        }
    }

    /// Queue `data` and write what the fifo takes now.
    pub fn write(&mut self, data: &[u8]) {
        if self.dead {
            return;
        }
        if self.buf.len() + data.len() > MAX_BUFFERED {
            self.dropped += data.len() as u64;
            return;
        }
        self.buf.extend_from_slice(data);
        self.flush();
    }

    /// Write what the fifo takes now; true when nothing is left.
    pub fn flush(&mut self) -> bool {
        if self.dead || self.buf.is_empty() {
            return true;
        }
        if self.file.is_none() {
            // Non-blocking: a fifo without a reader is ENXIO now, not a hang.
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
            {
                Ok(f) => self.file = Some(f),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return false,
                Err(e) => {
                    log::warn!("output fifo {}: {e}; its output is dropped", self.path);
                    self.dead = true;
                    return true;
                }
            }
        }
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        while !self.buf.is_empty() {
            match f.write(&self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.buf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EPIPE: the reader is gone (SIGPIPE is handled by the
                    // shim library, not fatal).
                    log::info!("output fifo {}: {e}; its output is dropped", self.path);
                    self.dead = true;
                    self.buf.clear();
                    return true;
                }
            }
        }
        self.buf.is_empty()
    }

    /// Flush, waiting for the reader until `deadline`, then close the
    /// fifo (the reader sees the end of the output).
    pub fn finish(&mut self, deadline: Instant) {
        while !self.flush() {
            if self.file.is_none() {
                // Nobody ever opened the fifo to read: nobody is waiting.
                log::info!(
                    "output fifo {}: no reader; {} bytes dropped",
                    self.path,
                    self.buf.len()
                );
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "output fifo {}: {} bytes not read in time are dropped",
                    self.path,
                    self.buf.len()
                );
                break;
            }
            match &self.file {
                Some(f) => {
                    let mut pfd = libc::pollfd {
                        fd: f.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    let ms = left.as_millis().min(100) as i32;
                    // SAFETY: one valid pollfd for the length given.
                    unsafe { libc::poll(&mut pfd, 1, ms) };
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if self.dropped > 0 {
            log::warn!(
                "output fifo {}: {} bytes dropped (nobody read them)",
                self.path,
                self.dropped
            );
        }
        self.file = None;
        self.dead = true;
    }
}

/// A container's stdout and stderr, from its CRI log file to its fifos.
pub struct LogPump {
    log: crilog::Tail,
    pending: Vec<u8>,
    out: Sink,
    err: Sink,
    /// A terminal: one stream (stdout) carries everything.
    terminal: bool,
}

impl LogPump {
    /// Pump container `name`'s first run's log in `pod_dir`.
    pub fn new(
        pod_dir: &std::path::Path,
        name: &str,
        stdout: &str,
        stderr: &str,
        terminal: bool,
    ) -> LogPump {
        LogPump {
            log: crilog::Tail::new(pod_dir, name, false),
            pending: Vec::new(),
            out: Sink::new(stdout),
            err: Sink::new(stderr),
            terminal,
        }
    }

    /// Move what the log gained since the last call to the fifos.
    pub fn pump(&mut self) {
        let mut chunk = vec![0u8; 256 << 10];
        // Bounded per call: the pod keeps its pace, the shim its.
        for _ in 0..16 {
            match self.log.read(&mut chunk) {
                crilog::TailRead::Data(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    self.records();
                }
                crilog::TailRead::Next { .. } => self.pending.clear(),
                crilog::TailRead::Idle => break,
            }
        }
        self.out.flush();
        self.err.flush();
    }

    fn records(&mut self) {
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let Some(r) = crilog::parse_record(&line[..line.len() - 1]) else {
                continue;
            };
            let mut data = r.content;
            if !r.partial {
                data.push(b'\n');
            }
            match (r.stream, self.terminal) {
                (Stream::Stderr, false) => self.err.write(&data),
                _ => self.out.write(&data),
            }
        }
    }

    /// The container ended: the rest of its log, then the fifos close.
    pub fn finish(&mut self) {
        self.pump();
        let deadline = Instant::now() + Duration::from_secs(2);
        self.out.finish(deadline);
        self.err.finish(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn test_sink_never_blocks_without_a_reader_and_delivers_to_one() {
        let dir = std::env::temp_dir().join(format!("peapod-shim-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("out");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut sink = Sink::new(fifo.to_str().unwrap());
        sink.write(b"early ");
        assert!(!sink.flush(), "no reader yet: kept, not written");
        // A reader comes: the kept output, then more, then the end.
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        sink.write(b"late\n");
        sink.finish(Instant::now() + Duration::from_secs(1));
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "early late\n");
        // A reader that never reads: the pipe fills, the sink drops after
        // its deadline instead of blocking.
        let mut slow = Sink::new(fifo.to_str().unwrap());
        let _idle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            slow.write(&[b'x'; 64 << 10]);
        }
        slow.finish(Instant::now() + Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
