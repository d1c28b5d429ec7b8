//! Container output to `Log` chunks: one chunk per line where possible.

use peapod_proto::MAX_CHUNK;

/// Take the chunks ready to send out of `buf`: every complete line (at most
/// [`MAX_CHUNK`] bytes a chunk; a longer line is split, its leading chunks
/// marked partial), then, if `eof` or the rest is a full chunk already, the
/// unfinished rest as a partial chunk. Returns `(data, partial)` pairs in
/// order; what is left in `buf` waits for more data.
pub fn take_chunks(buf: &mut Vec<u8>, eof: bool) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl < MAX_CHUNK => {
                out.push((rest[..=nl].to_vec(), false));
                start += nl + 1;
            }
            _ if rest.len() >= MAX_CHUNK => {
                out.push((rest[..MAX_CHUNK].to_vec(), true));
                start += MAX_CHUNK;
            }
            _ => break,
        }
    }
    if eof && start < buf.len() {
        out.push((buf[start..].to_vec(), true));
        start = buf.len();
    }
    buf.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_take_chunks_lines_and_rest() {
        let mut buf = b"one\ntwo\nthr".to_vec();
        let got = take_chunks(&mut buf, false);
        assert_eq!(
            got,
            vec![(b"one\n".to_vec(), false), (b"two\n".to_vec(), false)]
        );
        assert_eq!(buf, b"thr");
        buf.extend_from_slice(b"ee");
        assert_eq!(take_chunks(&mut buf, true), vec![(b"three".to_vec(), true)]);
        assert!(buf.is_empty());
        assert!(take_chunks(&mut buf, true).is_empty());
    }

    #[test]
    fn test_take_chunks_splits_long_lines() {
        let mut buf = vec![b'x'; MAX_CHUNK + 10];
        buf.push(b'\n');
        let got = take_chunks(&mut buf, false);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (MAX_CHUNK, true));
        assert_eq!((got[1].0.len(), got[1].1), (11, false));
        assert!(buf.is_empty());
        // Exactly a chunk's worth without a newline goes out as partial.
        let mut buf = vec![b'y'; MAX_CHUNK];
        assert_eq!(take_chunks(&mut buf, false).len(), 1);
        assert!(buf.is_empty());
    }
}
