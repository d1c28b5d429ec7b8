//! The passt/QEMU stream framing: each Ethernet frame on the Unix stream is
//! prefixed with its length as a 4-byte big-endian integer. Both directions
//! are buffered in fixed bounds, whatever the peer or the guest does.

use std::io::{self, ErrorKind, Read};

use super::MAX_FRAME;

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;
/// Size of the receive buffer: frames read ahead of the guest's buffers
/// (about 690 full-size ones), so a guest that is briefly not running does
/// not make passt find a full socket, where it drops frames and TCP stalls.
/// Untouched pages cost nothing.
pub const READ_BUF: usize = 1024 * 1024;
/// Bytes waiting for the socket above which no more frames are queued.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;

/// The peer broke the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix announced a frame over [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes announced (at most {MAX_FRAME})")]
    TooLarge(u32),
}

/// Cuts length-prefixed frames out of a byte stream that may deliver them in
/// any pieces (half a prefix, half a frame, several frames at once).
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        FrameReader {
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Where the first complete frame lies in `buf`, if there is one.
    fn current(&self) -> Result<Option<(usize, usize)>, FrameError> {
        let have = &self.buf[self.start..self.end];
        let Some(prefix) = have.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len as usize > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let len = len as usize;
        if have.len() - PREFIX_LEN < len {
            return Ok(None);
        }
        Ok(Some((self.start + PREFIX_LEN, len)))
    }

    /// The first complete frame, if one has arrived.
    pub fn frame(&self) -> Result<Option<&[u8]>, FrameError> {
        Ok(self.current()?.map(|(at, len)| &self.buf[at..at + len]))
    }

    /// Whether a complete frame is buffered.
    pub fn has_frame(&self) -> bool {
        matches!(self.current(), Ok(Some(_)))
    }

    /// Whether [`read_from`](Self::read_from) has room to read into.
    pub fn has_room(&self) -> bool {
        self.buffered() < self.buf.len()
    }

    /// Forget the first complete frame (no-op without one).
    pub fn pop(&mut self) {
        if let Ok(Some((at, len))) = self.current() {
            self.start = at + len;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
        }
    }

    /// One `read` from `r` into the free space (while
    /// [`has_room`](Self::has_room)). Returns what `read` returned (`Ok(0)`
    /// is end of stream). The buffer holds a largest frame several times
    /// over, so a frame that has begun always finishes once the frames
    /// before it are popped.
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        // Move the unread bytes to the front only when the tail is short,
        // not on every read.
        if self.start > 0 && self.buf.len() - self.end < PREFIX_LEN + MAX_FRAME {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::other("frame buffer full"));
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Frames waiting to be written to the stream, with their prefixes.
#[derive(Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    sent: usize,
}

impl FrameWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether another frame may be queued (below the high-water mark; so at
    /// most `WRITE_HIGH_WATER + PREFIX_LEN + MAX_FRAME` bytes ever wait).
    pub fn can_queue(&self) -> bool {
        self.pending() < WRITE_HIGH_WATER
    }

    /// Queue `frame` (at most [`MAX_FRAME`] bytes; longer ones are the
    /// caller's bug and are not queued).
    pub fn queue(&mut self, frame: &[u8]) {
        let Ok(len) = u32::try_from(frame.len()) else {
            return;
        };
        if frame.len() > MAX_FRAME {
            return;
        }
        if self.sent > 0 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(frame);
    }

    /// Write with `write` until everything is out or it would block.
    /// `Err` only for real failures (the stream is broken).
    pub fn flush<W>(&mut self, mut write: W) -> io::Result<()>
    where
        W: FnMut(&[u8]) -> io::Result<usize>,
    {
        while self.sent < self.buf.len() {
            match write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.sent = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes in the given piece sizes.
    struct Pieces {
        data: Vec<u8>,
        sizes: Vec<usize>,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(ErrorKind::WouldBlock.into());
            }
            let want = if self.sizes.is_empty() {
                self.data.len()
            } else {
                self.sizes.remove(0)
            };
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            Ok(n)
        }
    }

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            v.extend_from_slice(&(f.len() as u32).to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    #[test]
    fn test_frame_reader_reassembles_split_prefix_and_frame() {
        let frame: Vec<u8> = (0..100u8).collect();
        let mut src = Pieces {
            data: framed(&[&frame]),
            sizes: vec![1, 2, 3, 50, 48],
        };
        let mut r = FrameReader::new();
        let mut reads = 0;
        while !r.has_frame() {
            assert!(r.read_from(&mut src).unwrap() > 0);
            reads += 1;
        }
        assert_eq!(reads, 5);
        assert_eq!(r.frame().unwrap(), Some(&frame[..]));
        r.pop();
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.frame().unwrap(), None);
    }

    #[test]
    fn test_frame_reader_takes_many_frames_in_one_read() {
        let mut src = Pieces {
            data: framed(&[b"one", b"", b"three"]),
            sizes: vec![],
        };
        let mut r = FrameReader::new();
        r.read_from(&mut src).unwrap();
        let mut got = Vec::new();
        while let Some(f) = r.frame().unwrap() {
            got.push(f.to_vec());
            r.pop();
        }
        assert_eq!(got, vec![b"one".to_vec(), b"".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn test_frame_reader_refuses_oversized_frame() {
        let mut src = Pieces {
            data: (MAX_FRAME as u32 + 1).to_be_bytes().to_vec(),
            sizes: vec![],
        };
        let mut r = FrameReader::new();
        r.read_from(&mut src).unwrap();
        assert_eq!(r.frame(), Err(FrameError::TooLarge(MAX_FRAME as u32 + 1)));
        assert!(!r.has_frame());
    }

    #[test]
    fn test_frame_reader_largest_frame_fits_after_partial_frames() {
        let small = vec![7u8; 1000];
        let big = vec![9u8; MAX_FRAME];
        let mut data = framed(&[&small]);
        data.extend(framed(&[&big]));
        let mut src = Pieces {
            data,
            sizes: vec![1004 + 10],
        };
        let mut r = FrameReader::new();
        r.read_from(&mut src).unwrap();
        assert_eq!(r.frame().unwrap().map(<[u8]>::len), Some(1000));
        r.pop();
        // The partial big frame is moved to the front; the rest fits.
        while !r.has_frame() {
            r.read_from(&mut src).unwrap();
        }
        assert_eq!(r.frame().unwrap(), Some(&big[..]));
    }

    #[test]
    fn test_frame_writer_survives_short_writes() {
        let mut w = FrameWriter::new();
        w.queue(b"abc");
        w.queue(b"de");
        assert_eq!(w.pending(), 4 + 3 + 4 + 2);
        let mut out = Vec::new();
        let budget = [2usize, 0, 5, 100];
        let mut i = 0;
        loop {
            let r = w.flush(|b| {
                let n = budget.get(i).copied().unwrap_or(100);
                i += 1;
                if n == 0 {
                    return Err(ErrorKind::WouldBlock.into());
                }
                let n = n.min(b.len());
                out.extend_from_slice(&b[..n]);
                Ok(n)
            });
            r.unwrap();
            if w.pending() == 0 {
                break;
            }
            // A frame queued after a short write goes after the rest.
            if out.len() == 2 {
                w.queue(b"f");
            }
        }
        assert_eq!(out, framed(&[b"abc", b"de", b"f"]));
        assert!(w.can_queue());
    }

    #[test]
    fn test_frame_writer_bounds_pending_bytes() {
        let mut w = FrameWriter::new();
        let frame = vec![0u8; 1500];
        let mut queued = 0;
        while w.can_queue() {
            w.queue(&frame);
            queued += 1;
        }
        assert!(w.pending() < WRITE_HIGH_WATER + PREFIX_LEN + MAX_FRAME);
        assert_eq!(queued, WRITE_HIGH_WATER.div_ceil(1504));
        w.queue(&vec![0u8; MAX_FRAME + 1]);
        assert_eq!(w.pending(), queued * 1504, "oversized frames are refused");
    }
}
