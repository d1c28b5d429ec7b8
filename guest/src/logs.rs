//! Container output to `Log` chunks: whole lines, as many as fit in a chunk
//! (a frame per line would cost a container that logs short lines many times
//! its output on the wire).

use peapod_proto::MAX_CHUNK;

/// Take the chunks ready to send out of `buf`: the complete lines, as many
/// as fit in each chunk of at most [`MAX_CHUNK`] bytes (a longer line is
/// split, its leading chunks marked partial), then, if `eof` or the rest is
/// a full chunk already, the unfinished rest as a partial chunk. A chunk not
/// marked partial ends with a newline. Returns `(data, partial)` pairs in
/// order; what is left in `buf` waits for more data.
pub fn take_chunks(buf: &mut Vec<u8>, eof: bool) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let window = &rest[..rest.len().min(MAX_CHUNK)];
        match window.iter().rposition(|&b| b == b'\n') {
            Some(nl) => {
                out.push((rest[..=nl].to_vec(), false));
                start += nl + 1;
            }
            None if rest.len() >= MAX_CHUNK => {
                out.push((rest[..MAX_CHUNK].to_vec(), true));
                start += MAX_CHUNK;
            }
            None => break,
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
        assert_eq!(got, vec![(b"one\ntwo\n".to_vec(), false)]);
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
        // A line ending exactly at the chunk size is one whole chunk.
        let mut buf = vec![b'z'; MAX_CHUNK - 1];
        buf.extend_from_slice(b"\nnext");
        let got = take_chunks(&mut buf, false);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.len(), got[0].1), (MAX_CHUNK, false));
        assert_eq!(buf, b"next");
    }

    #[test]
    fn test_take_chunks_packs_short_lines() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|n| format!("{n}\n").into_bytes())
            .collect();
        let mut buf = text.clone();
        buf.extend_from_slice(b"unfinished");
        let got = take_chunks(&mut buf, false);
        assert_eq!(buf, b"unfinished");
        // Few chunks, each whole lines, at most a chunk's worth, and
        // together exactly the lines.
        assert!(
            got.len() <= text.len() / (MAX_CHUNK - 8) + 1,
            "{}",
            got.len()
        );
        for (data, partial) in &got {
            assert!(!partial && data.ends_with(b"\n") && data.len() <= MAX_CHUNK);
        }
        let joined: Vec<u8> = got.into_iter().flat_map(|(d, _)| d).collect();
        assert_eq!(joined, text);
    }
}
