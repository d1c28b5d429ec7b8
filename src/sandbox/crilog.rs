//! Container logs in the CRI log format, as the kubelet keeps them:
//! `logs/<container>/<restart>.log`, one record per line,
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, where `P`
//! marks a partial line whose content continues in the next record of the
//! same stream.
//!
//! The monitor writes ([`Writer`]); `peapod logs` and attached `peapod run`
//! read and follow ([`Follower`]) the same files, so every reader sees the
//! same bytes in the same order.
//!
//! A container's logs are bounded as the kubelet bounds them
//! (`containerLogMaxSize`, `containerLogMaxFiles`: [`LogLimits`]): a file
//! that would grow past the size is rotated to `<restart>.log.<n>`, and the
//! oldest files (earlier runs', then rotated ones) are removed beyond the
//! count. Readers follow a file by its descriptor through a rotation
//! ([`Tail`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
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

/// The current log file of a container's `restart`th run. `container`
/// must pass [`is_container_name`] (the writer checks).
pub fn log_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    LogKey::current(restart).path(pod_dir, container)
}

fn bad_name(container: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{container:?} is not a container name"),
    )
}

/// One log file of a container: run `run`'s current file (`seg` is
/// [`CURRENT`]) or one of its rotated segments (`seg` counts from 1).
/// Keys sort oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    /// The restart number of the run.
    pub run: u32,
    /// The segment; [`CURRENT`] for the file being written.
    pub seg: u64,
}

/// [`LogKey::seg`] of a run's current file.
pub const CURRENT: u64 = u64::MAX;

impl LogKey {
    fn current(run: u32) -> LogKey {
        LogKey { run, seg: CURRENT }
    }

    /// The file's name: `<run>.log`, or `<run>.log.<seg>` once rotated.
    fn file_name(self) -> String {
        if self.seg == CURRENT {
            format!("{}.log", self.run)
        } else {
            format!("{}.log.{}", self.run, self.seg)
        }
    }

    fn parse(name: &str) -> Option<LogKey> {
        let (run, seg) = match name.split_once(".log") {
            Some((run, "")) => (run, CURRENT),
            Some((run, rest)) => (run, rest.strip_prefix('.')?.parse().ok()?),
            None => return None,
        };
        let canonical = |t: &str| !t.is_empty() && (t == "0" || !t.starts_with('0'));
        if !canonical(run) || seg == 0 {
            return None;
        }
        let key = LogKey {
            run: run.parse().ok()?,
            seg,
        };
        (key.file_name() == name).then_some(key)
    }

    /// Its path in `pod_dir`.
    pub fn path(self, pod_dir: &Path, container: &str) -> PathBuf {
        pod_dir
            .join(LOGS_DIR)
            .join(container)
            .join(self.file_name())
    }
}

/// Every log file of `container`, oldest first.
pub fn log_files(pod_dir: &Path, container: &str) -> Vec<LogKey> {
    let mut found: Vec<LogKey> = std::fs::read_dir(pod_dir.join(LOGS_DIR).join(container))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| LogKey::parse(e.file_name().to_str()?))
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

/// How much log each container keeps, as the kubelet's
/// `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLimits {
    /// A file is rotated before it grows past this many bytes.
    pub max_size: u64,
    /// Files kept per container, the one being written included.
    pub max_files: u32,
}

impl Default for LogLimits {
    /// The kubelet's defaults: 10 MiB x 5.
    fn default() -> Self {
        LogLimits {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// The smallest `max_size`: a few of the guest's largest chunks.
pub const MIN_LOG_SIZE: u64 = 1 << 20;

struct OpenLog {
    run: u32,
    file: File,
    size: u64,
}

/// Writes each container's log files, within [`LogLimits`].
#[derive(Default)]
pub struct Writer {
    limits: LogLimits,
    open: BTreeMap<String, OpenLog>,
}

impl Writer {
    /// A writer keeping each container's logs within `limits`.
    pub fn new(limits: LogLimits) -> Writer {
        Writer {
            limits,
            open: BTreeMap::new(),
        }
    }

    /// Start the log of `container`'s `restart`th run (closing the last).
    pub fn start(&mut self, pod_dir: &Path, container: &str, restart: u32) -> io::Result<()> {
        if !is_container_name(container) {
            return Err(bad_name(container));
        }
        let path = LogKey::current(restart).path(pod_dir, container);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        self.open.insert(
            container.to_owned(),
            OpenLog {
                run: restart,
                file,
                size,
            },
        );
        self.prune(pod_dir, container);
        Ok(())
    }

    /// Append a chunk of `container`'s output, rotating first when it
    /// would take the file past the size limit.
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
        let max_size = self.limits.max_size.max(MIN_LOG_SIZE);
        let open = self.open.get(container).expect("opened above");
        if open.size > 0 && open.size + buf.len() as u64 > max_size {
            self.rotate(pod_dir, container)?;
        }
        let open = self.open.get_mut(container).expect("opened above");
        open.file.write_all(&buf)?;
        open.size += buf.len() as u64;
        Ok(())
    }

    /// `<run>.log` becomes `<run>.log.<n>` (one past its last segment) and
    /// a new `<run>.log` is started; then the oldest files go.
    fn rotate(&mut self, pod_dir: &Path, container: &str) -> io::Result<()> {
        let run = self.open.get(container).expect("open").run;
        let seg = log_files(pod_dir, container)
            .into_iter()
            .filter(|k| k.run == run && k.seg != CURRENT)
            .map(|k| k.seg)
            .max()
            .unwrap_or(0)
            + 1;
        let current = LogKey::current(run).path(pod_dir, container);
        std::fs::rename(&current, LogKey { run, seg }.path(pod_dir, container))?;
        self.start(pod_dir, container, run)
    }

    /// Remove the oldest files of `container` beyond the count limit,
    /// never the one being written.
    fn prune(&self, pod_dir: &Path, container: &str) {
        let keep = self.limits.max_files.max(2) as usize;
        let writing = self.open.get(container).map(|o| LogKey::current(o.run));
        let mut files = log_files(pod_dir, container);
        files.retain(|k| Some(*k) != writing);
        let excess = (files.len() + 1).saturating_sub(keep);
        for key in &files[..excess.min(files.len())] {
            if let Err(e) = std::fs::remove_file(key.path(pod_dir, container)) {
                log::warn!("cannot remove an old log of {container}: {e}");
            }
        }
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

/// What [`Tail::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailRead {
    /// This many bytes.
    Data(usize),
    /// The file read so far is complete and the next one is open: a
    /// record cut short in the last one ends there; `new_run` when the
    /// next belongs to a later run (its lines do not continue the last's).
    Next { new_run: bool },
    /// Nothing new yet.
    Idle,
}

struct Reading {
    key: LogKey,
    file: File,
    ino: u64,
}

/// Reads one container's log files as they are written, oldest first,
/// following each file by its descriptor through a rotation, then on to
/// the next file once a newer one exists.
pub struct Tail {
    pod_dir: PathBuf,
    container: String,
    latest_only: bool,
    reading: Option<Reading>,
}

fn ino(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Tail {
    /// Follow `container` from its oldest file (or from the latest run's
    /// oldest, with `latest_only`).
    pub fn new(pod_dir: &Path, container: &str, latest_only: bool) -> Tail {
        Tail {
            pod_dir: pod_dir.to_owned(),
            container: container.to_owned(),
            latest_only,
            reading: None,
        }
    }

    fn open(&mut self, key: LogKey) -> bool {
        let path = key.path(&self.pod_dir, &self.container);
        let Ok(file) = File::open(&path) else {
            return false;
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        self.reading = Some(Reading {
            key,
            file,
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
        });
        true
    }

    /// Read what follows into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> TailRead {
        if self.reading.is_none() {
            let files = log_files(&self.pod_dir, &self.container);
            let first = match (self.latest_only, files.last()) {
                (true, Some(last)) => files.iter().find(|k| k.run == last.run),
                _ => files.first(),
            };
            match first {
                Some(&key) if self.open(key) => {}
                _ => return TailRead::Idle,
            }
        }
        let r = self.reading.as_mut().expect("opened above");
        if let Ok(n @ 1..) = r.file.read(buf) {
            return TailRead::Data(n);
        }
        // At the end of the file: it is complete once another follows it.
        // Ours may have been rotated (same descriptor, another name) or
        // removed.
        let files: Vec<(LogKey, Option<u64>)> = log_files(&self.pod_dir, &self.container)
            .into_iter()
            .map(|k| (k, ino(&k.path(&self.pod_dir, &self.container))))
            .collect();
        let next = match files.iter().position(|(_, i)| *i == Some(r.ino)) {
            Some(at) => files.get(at + 1),
            None => files.iter().find(|(k, i)| *k >= r.key && *i != Some(r.ino)),
        };
        let Some(&(key, _)) = next else {
            return TailRead::Idle;
        };
        // Whatever was written before the switch comes first.
        if let Ok(n @ 1..) = r.file.read(buf) {
            return TailRead::Data(n);
        }
        let new_run = key.run != r.key.run;
        if !self.open(key) {
            return TailRead::Idle;
        }
        TailRead::Next { new_run }
    }
}

/// Follows one container's log files from the start, whole lines out:
/// the current run's files, then the next run's when a restart starts one.
pub struct Follower {
    container: String,
    tail: Tail,
    /// Bytes read past the last complete record.
    pending: Vec<u8>,
    /// Partial records per stream, waiting for their `F`.
    joining: [Option<Line>; 2],
}

impl Follower {
    /// Follow `container` from its first run (or only from the latest run
    /// when `latest_only`, as `peapod logs` shows the current container).
    pub fn new(pod_dir: &Path, container: &str, latest_only: bool) -> Follower {
        Follower {
            container: container.to_owned(),
            tail: Tail::new(pod_dir, container, latest_only),
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
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match self.tail.read(&mut buf) {
                TailRead::Data(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.take_records(&mut out);
                }
                TailRead::Next { new_run } => {
                    self.pending.clear();
                    if new_run {
                        self.flush(&mut out);
                    }
                }
                TailRead::Idle => break,
            }
        }
        if eof {
            self.flush(&mut out);
        }
        out
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

    /// A container that writes without end, and a guest that says it
    /// restarted it thousands of times, keep at most max_files files of
    /// max_size each; a follower started before reads every line in order
    /// through the rotations, as long as it keeps up.
    #[test]
    fn test_writer_rotates_and_prunes_and_the_follower_keeps_up() {
        let dir = std::env::temp_dir().join(format!("peapod-crilog-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let limits = LogLimits {
            max_size: MIN_LOG_SIZE,
            max_files: 3,
        };
        let mut w = Writer::new(limits);
        w.start(&dir, "c", 0).unwrap();
        let mut f = Follower::new(&dir, "c", false);
        let line = vec![b'x'; 1000];
        let mut seen = 0usize;
        for i in 0..5000u64 {
            let mut data = format!("{i:05} ").into_bytes();
            data.extend_from_slice(&line);
            data.push(b'\n');
            w.write(&dir, "c", i, Stream::Stdout, &data, false).unwrap();
            if i % 100 == 0 {
                for l in f.poll(false) {
                    assert!(l.content.starts_with(format!("{seen:05} ").as_bytes()));
                    seen += 1;
                }
            }
        }
        for l in f.poll(false) {
            assert!(l.content.starts_with(format!("{seen:05} ").as_bytes()));
            seen += 1;
        }
        assert_eq!(seen, 5000, "every line, in order");
        let files = log_files(&dir, "c");
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(*files.last().unwrap(), LogKey::current(0));
        let total: u64 = files
            .iter()
            .map(|k| std::fs::metadata(k.path(&dir, "c")).unwrap().len())
            .sum();
        assert!(total <= 3 * MIN_LOG_SIZE, "{total}");
        // A new follower starts at the oldest file kept.
        let first = Follower::new(&dir, "c", false).poll(false);
        assert!(first.len() > 1500 && first.last().unwrap().content.starts_with(b"04999 "));
        // Restarts make files too; the oldest go first.
        for run in 1..2000 {
            w.start(&dir, "c", run).unwrap();
        }
        let files = log_files(&dir, "c");
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(*files.last().unwrap(), LogKey::current(1999));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_log_key_names_round_trip_and_others_are_ignored() {
        for (name, key) in [
            ("0.log", LogKey::current(0)),
            ("12.log", LogKey::current(12)),
            ("3.log.7", LogKey { run: 3, seg: 7 }),
        ] {
            assert_eq!(LogKey::parse(name), Some(key));
            assert_eq!(key.file_name(), name);
        }
        for name in [
            "01.log", "1.log.0", "1.log.07", "x.log", "1.log.", "1.logx", "1",
        ] {
            assert_eq!(LogKey::parse(name), None, "{name}");
        }
        assert!(LogKey { run: 0, seg: 9 } < LogKey::current(0));
        assert!(LogKey::current(0) < LogKey { run: 1, seg: 1 });
    }
}
