//! Length-delimited framing: a 4-byte big-endian payload length, then the
//! payload.
//!
//! Lengths are checked before anything is allocated, so a peer cannot make us
//! reserve memory by announcing a huge frame. Zero-length frames are errors:
//! every message has at least a type.

use std::io::{self, Read, Write};

use crate::error::{ProtoError, Result};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// Largest payload accepted or sent. A `RunPod` for a large pod is a few tens
/// of KiB; data-carrying messages stay far below this with [`MAX_CHUNK`].
pub const MAX_FRAME: usize = 1 << 20;

/// Largest binary chunk a sender puts in one `Log`, `ExecOutput` or
/// `ExecStdin` message; split longer data. Base64 makes it 4/3 larger, still
/// well inside [`MAX_FRAME`].
pub const MAX_CHUNK: usize = 64 << 10;

fn check_len(len: usize) -> Result<()> {
    if len == 0 {
        return Err(ProtoError::EmptyFrame);
    }
    if len > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(())
}

fn header_len(header: [u8; HEADER_LEN]) -> Result<usize> {
    // u32 always fits usize on the 32- and 64-bit targets we build for.
    let len = u32::from_be_bytes(header) as usize;
    check_len(len)?;
    Ok(len)
}

/// Header and payload as one buffer, for event loops that queue their writes.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>> {
    check_len(payload.len())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    // check_len bounds the length by MAX_FRAME, which fits u32.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Write one frame and flush. Header and payload go out in one write so a
/// frame is never split across small socket writes by us.
pub fn write_frame<W: Write + ?Sized>(writer: &mut W, payload: &[u8]) -> Result<()> {
    let frame = encode_frame(payload)?;
    writer
        .write_all(&frame)
        .map_err(ProtoError::io("write a frame"))?;
    writer.flush().map_err(ProtoError::io("flush a frame"))
}

/// Fill `buf` completely; returns how many bytes were read before EOF.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::io("read a frame")(e)),
        }
    }
    Ok(got)
}

/// Read one frame, blocking. `Ok(None)` on end of stream at a frame boundary;
/// an error if the stream ends inside a frame.
pub fn read_frame<R: Read + ?Sized>(reader: &mut R) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        HEADER_LEN => {}
        got => {
            return Err(ProtoError::TruncatedFrame {
                needed: HEADER_LEN,
                got,
            })
        }
    }
    let len = header_len(header)?;
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload)?;
    if got < len {
        return Err(ProtoError::TruncatedFrame {
            needed: HEADER_LEN + len,
            got: HEADER_LEN + got,
        });
    }
    Ok(Some(payload))
}

/// Incremental frame decoder for non-blocking event loops: push whatever the
/// socket returned, then pop frames until [`FrameDecoder::next_frame`] says
/// `None`.
///
/// A bad header is not consumed: once `next_frame` failed it keeps failing,
/// and the caller must drop the connection. Pop frames after every push;
/// the buffer then never holds more than one frame plus one read.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing.
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Read once from `reader` (e.g. a non-blocking socket) into the decoder.
    /// Returns the byte count; 0 means end of stream. `WouldBlock` and other
    /// errors are returned as they are.
    pub fn read_from<R: Read + ?Sized>(&mut self, reader: &mut R) -> io::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = reader.read(&mut chunk)?;
        self.push(&chunk[..n]);
        Ok(n)
    }

    /// Pop the next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = header_len(*header)?;
        let Some(payload) = pending.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some(payload))
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Call at end of stream: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<()> {
        let pending = &self.buf[self.start..];
        if pending.is_empty() {
            return Ok(());
        }
        let needed = match pending.first_chunk::<HEADER_LEN>() {
            Some(header) => HEADER_LEN + header_len(*header)?,
            None => HEADER_LEN,
        };
        Err(ProtoError::TruncatedFrame {
            needed,
            got: pending.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            write_frame(&mut out, p).unwrap();
        }
        out
    }

    /// A reader that returns at most one byte per call, with an
    /// `Interrupted` error before every byte.
    struct Trickle<'a> {
        data: &'a [u8],
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let Some((&first, rest)) = self.data.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = first;
            self.data = rest;
            Ok(1)
        }
    }

    #[test]
    fn test_write_frame_layout() {
        assert_eq!(frames(&[b"abc"]), b"\0\0\0\x03abc");
    }

    #[test]
    fn test_read_frame_round_trip_and_clean_eof() {
        let data = frames(&[b"one", b"two!", &[7u8; 1000]]);
        let mut cursor = Cursor::new(data);
        assert_eq!(read_frame(&mut cursor).unwrap().unwrap(), b"one");
        assert_eq!(read_frame(&mut cursor).unwrap().unwrap(), b"two!");
        assert_eq!(read_frame(&mut cursor).unwrap().unwrap(), vec![7u8; 1000]);
        assert!(read_frame(&mut cursor).unwrap().is_none());
    }

    #[test]
    fn test_read_frame_partial_reads() {
        let data = frames(&[b"hello", b"world"]);
        let mut reader = Trickle {
            data: &data,
            interrupt: false,
        };
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"world");
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn test_read_frame_eof_mid_frame() {
        let data = frames(&[b"hello"]);
        for cut in 1..data.len() {
            let err = read_frame(&mut Cursor::new(&data[..cut])).unwrap_err();
            let ProtoError::TruncatedFrame { needed, got } = err else {
                panic!("cut {cut}: {err:?}");
            };
            assert_eq!(got, cut);
            assert_eq!(needed, if cut < HEADER_LEN { HEADER_LEN } else { 9 });
        }
    }

    #[test]
    fn test_read_frame_rejects_oversized_before_allocating() {
        // Nothing follows the header: had the reader allocated and read 4 GiB,
        // it would report a truncated frame (or abort) instead.
        let err = read_frame(&mut Cursor::new(u32::MAX.to_be_bytes())).unwrap_err();
        assert!(
            matches!(err, ProtoError::FrameTooLarge { len, max: MAX_FRAME } if len == u32::MAX as usize),
            "{err:?}"
        );
        let just_over = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut Cursor::new(just_over)),
            Err(ProtoError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn test_read_frame_rejects_empty() {
        let err = read_frame(&mut Cursor::new([0u8; 4])).unwrap_err();
        assert!(matches!(err, ProtoError::EmptyFrame), "{err:?}");
    }

    #[test]
    fn test_write_frame_rejects_empty_and_oversized() {
        let mut out = Vec::new();
        assert!(matches!(
            write_frame(&mut out, b""),
            Err(ProtoError::EmptyFrame)
        ));
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(
            write_frame(&mut out, &big),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert!(out.is_empty(), "nothing written for a rejected frame");
        // Exactly the limit is fine.
        write_frame(&mut out, &big[..MAX_FRAME]).unwrap();
        assert_eq!(
            read_frame(&mut Cursor::new(out)).unwrap().unwrap().len(),
            MAX_FRAME
        );
    }

    #[test]
    fn test_frame_decoder_split_at_every_byte_boundary() {
        let payloads: [&[u8]; 3] = [b"a", b"second frame", &[0xff; 300]];
        let data = frames(&payloads);
        for cut in 0..=data.len() {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for part in [&data[..cut], &data[cut..]] {
                dec.push(part);
                while let Some(frame) = dec.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, payloads, "cut at {cut}");
            assert_eq!(dec.buffered(), 0);
            dec.finish().unwrap();
        }
    }

    #[test]
    fn test_frame_decoder_byte_by_byte() {
        let payloads: [&[u8]; 4] = [b"x", b"yy", b"zzz", &[1, 2, 3, 4, 5]];
        let data = frames(&payloads);
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for byte in &data {
            dec.push(std::slice::from_ref(byte));
            while let Some(frame) = dec.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, payloads);
    }

    #[test]
    fn test_frame_decoder_rejects_oversized_header_and_stays_failed() {
        let mut dec = FrameDecoder::new();
        dec.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            dec.next_frame(),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        dec.push(b"more");
        assert!(matches!(
            dec.next_frame(),
            Err(ProtoError::FrameTooLarge { .. })
        ));

        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0, 0, 0, 1]);
        assert!(matches!(dec.next_frame(), Err(ProtoError::EmptyFrame)));
    }

    #[test]
    fn test_frame_decoder_finish_mid_frame() {
        let data = frames(&[b"hello"]);
        let mut dec = FrameDecoder::new();
        dec.push(&data[..2]);
        assert!(dec.next_frame().unwrap().is_none());
        assert!(matches!(
            dec.finish(),
            Err(ProtoError::TruncatedFrame { needed: 4, got: 2 })
        ));
        dec.push(&data[2..6]);
        assert!(dec.next_frame().unwrap().is_none());
        assert!(matches!(
            dec.finish(),
            Err(ProtoError::TruncatedFrame { needed: 9, got: 6 })
        ));
    }

    #[test]
    fn test_frame_decoder_read_from() {
        let data = frames(&[b"abc", b"def"]);
        let mut reader = Trickle {
            data: &data,
            interrupt: true,
        };
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        loop {
            match dec.read_from(&mut reader) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("{e}"),
            }
            while let Some(frame) = dec.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, [b"abc", b"def"]);
        dec.finish().unwrap();
    }
}
