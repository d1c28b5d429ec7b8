//! Container logs in the CRI log format, as the kubelet keeps them:
//! `logs/<container>/<restart>.log`, one record per line,
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, where `P`
//! marks a partial line whose content continues in the next record of the
//! same stream.
//!
//! The monitor writes ([`Writer`]); `peapod logs` and attached `peapod run`
//! read and follow ([`Follower`]) the same files, so every reader sees the
//! same bytes in the same order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use peapod_proto::Stream;

/// The directory of the logs in a pod directory.
pub const LOGS_DIR: &str = "logs";

/// Whether `name` can be a container's log directory: a DNS-1123 label,
/// as Kubernetes container names are (never `..`, `/` or empty).
pub fn is_container_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The log file of a container's `restart`th run. `container` must pass
/// [`is_container_name`] (the writer checks).
pub fn log_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir
        .join(LOGS_DIR)
        .join(container)
        .join(format!("{restart}.log"))
}

fn bad_name(container: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{container:?} is not a container name"),
    )
}

/// The restart numbers that have a log file, in order.
pub fn restarts(pod_dir: &Path, container: &str) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(pod_dir.join(LOGS_DIR).join(container))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

/// `2026-11-27T15:36:19.123456789Z` from nanoseconds since the Unix epoch.
pub fn rfc3339_nano(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01: years
/// are split into 400-year eras of 146097 days, each era into years
/// starting on March 1st (so the leap day is last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn stream_word(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// Append the records of one chunk of output to `out`: a record per line;
/// the last one is `P` when the chunk ends mid-line and `partial` says
/// the line continues.
pub fn encode_chunk(out: &mut Vec<u8>, ts_ns: u64, stream: Stream, data: &[u8], partial: bool) {
    let ts = rfc3339_nano(ts_ns);
    let mut rest = data;
    while !rest.is_empty() {
        let (line, tag, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], 'F', &rest[nl + 1..]),
            None => (rest, if partial { 'P' } else { 'F' }, &rest[rest.len()..]),
        };
        out.extend_from_slice(format!("{ts} {} {tag} ", stream_word(stream)).as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = next;
    }
}

/// Writes each container's log files.
#[derive(Default)]
pub struct Writer {
    open: BTreeMap<String, (u32, File)>,
}

impl Writer {
    /// Start the log of `container`'s `restart`th run (closing the last).
    pub fn start(&mut self, pod_dir: &Path, container: &str, restart: u32) -> io::Result<()> {
        if !is_container_name(container) {
            return Err(bad_name(container));
        }
        let path = log_path(pod_dir, container, restart);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.open.insert(container.to_owned(), (restart, file));
        Ok(())
    }

    /// Append a chunk of `container`'s output.
    pub fn write(
        &mut self,
        pod_dir: &Path,
        container: &str,
        ts_ns: u64,
        stream: Stream,
        data: &[u8],
        partial: bool,
    ) -> io::Result<()> {
        if !is_container_name(container) {
            return Err(bad_name(container));
        }
        if !self.open.contains_key(container) {
            self.start(pod_dir, container, 0)?;
        }
        let mut buf = Vec::with_capacity(data.len() + 48);
        encode_chunk(&mut buf, ts_ns, stream, data, partial);
        let (_, file) = self.open.get_mut(container).expect("opened above");
        file.write_all(&buf)
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The timestamp as written.
    pub timestamp: String,
    /// Which stream.
    pub stream: Stream,
    /// `P`: the line continues in the stream's next record.
    pub partial: bool,
    /// The content, without the newline.
    pub content: Vec<u8>,
}

/// Parse one record (a line without its `\n`).
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// The most of one line a [`Follower`] holds: a longer line (a container
/// writing megabytes without a newline) comes out in pieces of this size.
pub const MAX_LINE: usize = 64 << 10;

/// A whole line of a container's output, partial records joined (or a
/// piece of a line longer than [`MAX_LINE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The timestamp of its first record.
    pub timestamp: String,
    /// Which stream.
    pub stream: Stream,
    /// The line, without the newline.
    pub content: Vec<u8>,
    /// A later piece of a long line (not its start).
    pub continued: bool,
    /// The line goes on in the next piece of this stream.
    pub continues: bool,
}

/// Follows one container's log files from the start: the current run's
/// file, then the next run's when a restart starts one.
pub struct Follower {
    pod_dir: PathBuf,
    container: String,
    /// The restart number being read and where in its file.
    current: Option<(u32, u64)>,
    /// Bytes read past the last complete record.
    pending: Vec<u8>,
    /// Partial records per stream, waiting for their `F`.
    joining: [Option<Line>; 2],
}

impl Follower {
    /// Follow `container` from its first run (or only from the latest run
    /// when `latest_only`, as `peapod logs` shows the current container).
    pub fn new(pod_dir: &Path, container: &str, latest_only: bool) -> Follower {
        let runs = restarts(pod_dir, container);
        let first = if latest_only {
            runs.last().copied()
        } else {
            runs.first().copied()
        };
        Follower {
            pod_dir: pod_dir.to_owned(),
            container: container.to_owned(),
            current: first.map(|r| (r, 0)),
            pending: Vec::new(),
            joining: [None, None],
        }
    }

    /// The container followed.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// Read what was written since the last call; returns the whole lines.
    /// With `eof`, the pod has ended: unfinished lines come out too.
    pub fn poll(&mut self, eof: bool) -> Vec<Line> {
        let mut out = Vec::new();
        loop {
            if self.current.is_none() {
                self.current = restarts(&self.pod_dir, &self.container)
                    .first()
                    .map(|&r| (r, 0));
            }
            let Some((run, offset)) = self.current else {
                break;
            };
            self.read_from(run, offset, &mut out);
            // A later run's file means this one is complete (the writer
            // never appends to it again): read what came before the switch.
            let next = restarts(&self.pod_dir, &self.container)
                .into_iter()
                .find(|&r| r > run);
            match next {
                Some(r) => {
                    if let Some((_, offset)) = self.current {
                        self.read_from(run, offset, &mut out);
                    }
                    self.pending.clear();
                    self.flush(&mut out);
                    self.current = Some((r, 0));
                }
                None => break,
            }
        }
        if eof {
            self.flush(&mut out);
        }
        out
    }

    /// Read run `run`'s file from `offset` to its end (in bounded pieces).
    fn read_from(&mut self, run: u32, offset: u64, out: &mut Vec<Line>) {
        let path = log_path(&self.pod_dir, &self.container, run);
        let mut at = offset;
        if let Ok(mut f) = File::open(&path) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    at += n as u64;
                    self.pending.extend_from_slice(&buf[..n]);
                    self.take_records(out);
                }
            }
        }
        self.current = Some((run, at));
    }

    fn take_records(&mut self, out: &mut Vec<Line>) {
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + nl];
            start += nl + 1;
            let Some(rec) = parse_record(line) else {
                continue;
            };
            let slot = &mut self.joining[rec.stream as usize];
            let mut joined = match slot.take() {
                Some(mut l) => {
                    l.content.extend_from_slice(&rec.content);
                    l
                }
                None => Line {
                    timestamp: rec.timestamp,
                    stream: rec.stream,
                    content: rec.content,
                    continued: false,
                    continues: false,
                },
            };
            if !rec.partial {
                out.push(joined);
            } else if joined.content.len() >= MAX_LINE {
                // Bounded: pass on what there is, keep joining the rest.
                let rest = Line {
                    timestamp: joined.timestamp.clone(),
                    stream: joined.stream,
                    content: Vec::new(),
                    continued: true,
                    continues: false,
                };
                joined.continues = true;
                out.push(joined);
                *slot = Some(rest);
            } else {
                *slot = Some(joined);
            }
        }
        self.pending.drain(..start);
    }

    fn flush(&mut self, out: &mut Vec<Line>) {
        for slot in &mut self.joining {
            if let Some(l) = slot.take() {
                out.push(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rfc3339_nano_known_dates() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.000000007
        assert_eq!(
            rfc3339_nano(951_827_696_000_000_007),
            "2000-02-29T12:34:56.000000007Z"
        );
        // 2026-11-27T15:56:19.5Z (date -u -d @1795794979)
        assert_eq!(
            rfc3339_nano(1_795_794_979_500_000_000),
            "2026-11-27T15:56:19.500000000Z"
        );
        // 2100-03-01 (2100 is not a leap year).
        assert_eq!(
            rfc3339_nano(4_107_542_400 * 1_000_000_000),
            "2100-03-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn test_encode_chunk_marks_partial_lines() {
        let mut out = Vec::new();
        encode_chunk(&mut out, 0, Stream::Stdout, b"a\nb\n", false);
        encode_chunk(&mut out, 0, Stream::Stderr, b"half", true);
        encode_chunk(&mut out, 0, Stream::Stderr, b"tail", false);
        let text = String::from_utf8(out).unwrap();
        let ts = "1970-01-01T00:00:00.000000000Z";
        assert_eq!(
            text,
            format!("{ts} stdout F a\n{ts} stdout F b\n{ts} stderr P half\n{ts} stderr F tail\n")
        );
    }

    #[test]
    fn test_writer_refuses_names_that_are_not_container_names() {
        let dir = std::env::temp_dir().join(format!("peapod-crilog-names-{}", std::process::id()));
        let mut w = Writer::default();
        for bad in [
            "",
            "..",
            "../x",
            "/etc",
            "a/b",
            "A",
            "-a",
            "a-",
            &"a".repeat(64),
        ] {
            assert!(w.start(&dir, bad, 0).is_err(), "{bad:?}");
            assert!(
                w.write(&dir, bad, 0, Stream::Stdout, b"x", false).is_err(),
                "{bad:?}"
            );
        }
        assert!(!dir.exists(), "nothing was created");
        assert!(is_container_name("log-collector2"));
    }

    #[test]
    fn test_parse_record_rejects_garbage() {
        let r = parse_record(b"ts stdout F hello world").unwrap();
        assert_eq!(r.content, b"hello world");
        assert!(!r.partial);
        assert_eq!(parse_record(b"ts stdout F ").unwrap().content, b"");
        assert!(parse_record(b"ts stdin F x").is_none());
        assert!(parse_record(b"ts stdout X x").is_none());
        assert!(parse_record(b"garbage").is_none());
    }

    #[test]
    fn test_writer_and_follower_across_restarts() {
        let dir = std::env::temp_dir().join(format!("peapod-crilog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Writer::default();
        let mut f = Follower::new(&dir, "c", false);
        assert!(f.poll(false).is_empty(), "no file yet");
        w.start(&dir, "c", 0).unwrap();
        w.write(&dir, "c", 1, Stream::Stdout, b"one\n", false)
            .unwrap();
        w.write(&dir, "c", 2, Stream::Stdout, b"tw", true).unwrap();
        let lines: Vec<_> = f.poll(false).into_iter().map(|l| l.content).collect();
        assert_eq!(lines, [b"one".to_vec()]);
        w.write(&dir, "c", 3, Stream::Stdout, b"o\n", false)
            .unwrap();
        w.start(&dir, "c", 1).unwrap();
        w.write(&dir, "c", 4, Stream::Stderr, b"again\n", false)
            .unwrap();
        let lines: Vec<_> = f.poll(false).into_iter().map(|l| l.content).collect();
        assert_eq!(lines, [b"two".to_vec(), b"again".to_vec()]);
        // `logs` (latest run only) sees the second run.
        let mut latest = Follower::new(&dir, "c", true);
        let lines = latest.poll(true);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].stream, Stream::Stderr);
        // An unfinished line comes out at the end.
        w.write(&dir, "c", 5, Stream::Stdout, b"cut", true).unwrap();
        assert!(f.poll(false).is_empty());
        let lines: Vec<_> = f.poll(true).into_iter().map(|l| l.content).collect();
        assert_eq!(lines, [b"cut".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A container that writes megabytes without a newline: the follower
    /// (`logs -f`, an attached `run`) holds at most MAX_LINE of it, passing
    /// on pieces that say the line goes on.
    #[test]
    fn test_follower_passes_on_a_long_line_in_bounded_pieces() {
        let dir = std::env::temp_dir().join(format!("peapod-crilog-long-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Writer::default();
        w.start(&dir, "c", 0).unwrap();
        let chunk = vec![b'x'; 16 << 10];
        for i in 0..256 {
            w.write(&dir, "c", i, Stream::Stdout, &chunk, true).unwrap();
        }
        w.write(&dir, "c", 999, Stream::Stdout, b"end\n", false)
            .unwrap();
        let mut f = Follower::new(&dir, "c", false);
        let pieces = f.poll(false);
        let longest = pieces.iter().map(|l| l.content.len()).max().unwrap();
        assert!(longest <= MAX_LINE + chunk.len(), "{longest}");
        let total: usize = pieces.iter().map(|l| l.content.len()).sum();
        assert_eq!(total, 256 * chunk.len() + 3);
        assert!(!pieces[0].continued && pieces[0].continues);
        let last = pieces.last().unwrap();
        assert!(last.continued && !last.continues && last.content.ends_with(b"end"));
        assert!(pieces[..pieces.len() - 1].iter().all(|l| l.continues));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
