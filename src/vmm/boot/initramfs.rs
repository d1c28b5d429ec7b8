//! The guest's initramfs, generated in memory at launch: a newc cpio archive
//! holding peapod-init as `/init`. No cpio tool, no root, no file left behind.

use std::io;

/// Mode bits of the entries written here.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The magic of the "new ASCII" cpio format the kernel unpacks.
const NEWC_MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Device numbers for character devices.
    pub rdev: (u32, u32),
    /// File contents (empty for directories and devices).
    pub data: Vec<u8>,
}

impl Entry {
    /// A directory.
    pub fn dir(path: &str, perm: u32) -> Self {
        Entry {
            path: path.into(),
            mode: S_IFDIR | perm,
            rdev: (0, 0),
            data: Vec::new(),
        }
    }
    /// A regular file.
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Self {
        Entry {
            path: path.into(),
            mode: S_IFREG | perm,
            rdev: (0, 0),
            data,
        }
    }
    /// A character device node.
    pub fn char_dev(path: &str, perm: u32, major: u32, minor: u32) -> Self {
        Entry {
            path: path.into(),
            mode: S_IFCHR | perm,
            rdev: (major, minor),
            data: Vec::new(),
        }
    }
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn write_header(out: &mut Vec<u8>, ino: u32, e: &Entry, name_len: usize) {
    let fields = [
        ino,
        e.mode,
        0, // uid: root in the guest
        0, // gid
        1, // nlink
        0, // mtime: fixed, so the archive is reproducible
        e.data.len() as u32,
        0, // devmajor
        0, // devminor
        e.rdev.0,
        e.rdev.1,
        name_len as u32,
        0, // check
    ];
    out.extend_from_slice(NEWC_MAGIC.as_bytes());
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
}

fn write_entry(out: &mut Vec<u8>, ino: u32, e: &Entry) {
    let name_len = e.path.len() + 1;
    write_header(out, ino, e, name_len);
    out.extend_from_slice(e.path.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(&e.data);
    pad4(out);
}

/// Serialise entries into a newc archive, with the trailer.
pub fn write_newc(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.data.len() + 128).sum());
    for (i, e) in entries.iter().enumerate() {
        if e.path.is_empty() || e.path.starts_with('/') || e.path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {:?}", e.path),
            ));
        }
        if u32::try_from(e.data.len()).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is larger than 4 GiB", e.path),
            ));
        }
        write_entry(&mut out, i as u32 + 1, e);
    }
    write_entry(
        &mut out,
        0,
        &Entry {
            path: TRAILER.into(),
            mode: 0,
            rdev: (0, 0),
            data: Vec::new(),
        },
    );
    Ok(out)
}

/// The initramfs for a peapod guest: `/init` is peapod-init; `/dev/console`
/// exists so the kernel can give init its stdio before devtmpfs is mounted.
pub fn build(init_binary: Vec<u8>) -> io::Result<Vec<u8>> {
    write_newc(&[
        Entry::dir("dev", 0o755),
        Entry::char_dev("dev/console", 0o600, 5, 1),
        Entry::dir("proc", 0o555),
        Entry::dir("sys", 0o555),
        Entry::dir("run", 0o755),
        Entry::dir("tmp", 0o1777),
        Entry::file("init", 0o755, init_binary),
    ])
}

/// Read a newc archive back (used by tests; tolerant of nothing).
pub fn read_newc(mut buf: &[u8]) -> io::Result<Vec<Entry>> {
    fn bad(msg: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
    }
    fn hex(b: &[u8]) -> io::Result<u32> {
        let s = std::str::from_utf8(b).map_err(|_| bad("header is not ASCII"))?;
        u32::from_str_radix(s, 16).map_err(|_| bad("header field is not hex"))
    }
    let total = buf.len();
    let mut entries = Vec::new();
    loop {
        let start = total - buf.len();
        if buf.len() < 110 || &buf[..6] != NEWC_MAGIC.as_bytes() {
            return Err(bad("missing newc header"));
        }
        let field = |i: usize| hex(&buf[6 + i * 8..14 + i * 8]);
        let mode = field(1)?;
        let size = field(6)? as usize;
        let rdev = (field(9)?, field(10)?);
        let name_len = field(11)? as usize;
        let name_end = 110 + name_len;
        if name_len == 0 || buf.len() < name_end {
            return Err(bad("truncated name"));
        }
        let name =
            std::str::from_utf8(&buf[110..name_end - 1]).map_err(|_| bad("name is not UTF-8"))?;
        let data_start = (start + name_end).div_ceil(4) * 4 - start;
        let data_end = data_start
            .checked_add(size)
            .ok_or_else(|| bad("size overflow"))?;
        if buf.len() < data_end {
            return Err(bad("truncated data"));
        }
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            path: name.to_string(),
            mode,
            rdev,
            data: buf[data_start..data_end].to_vec(),
        });
        let next = (start + data_end).div_ceil(4) * 4 - start;
        buf = &buf[next.min(buf.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_initramfs_round_trip() {
        let init = b"\x7fELF fake init with odd length".to_vec();
        let archive = build(init.clone()).unwrap();
        assert_eq!(archive.len() % 4, 0);
        let entries = read_newc(&archive).unwrap();
        let init_entry = entries.iter().find(|e| e.path == "init").unwrap();
        assert_eq!(init_entry.data, init);
        assert_eq!(init_entry.mode, S_IFREG | 0o755);
        let console = entries.iter().find(|e| e.path == "dev/console").unwrap();
        assert_eq!(console.mode & 0o170000, S_IFCHR);
        assert_eq!(console.rdev, (5, 1));
        assert!(entries
            .iter()
            .any(|e| e.path == "dev" && e.mode & S_IFDIR != 0));
    }

    #[test]
    fn test_cpio_padding_for_every_name_and_size() {
        for name_len in 1..9 {
            for size in 0..9 {
                let e = Entry::file(&"n".repeat(name_len), 0o644, vec![0xa5; size]);
                let back = read_newc(&write_newc(std::slice::from_ref(&e)).unwrap()).unwrap();
                assert_eq!(back, vec![e]);
            }
        }
    }

    #[test]
    fn test_cpio_rejects_absolute_paths() {
        assert!(write_newc(&[Entry::dir("/abs", 0o755)]).is_err());
        assert!(write_newc(&[Entry::dir("", 0o755)]).is_err());
    }

    #[test]
    fn test_cpio_reader_rejects_truncated_archive() {
        let archive = build(vec![1, 2, 3]).unwrap();
        assert!(read_newc(&archive[..archive.len() - 20]).is_err());
        assert!(read_newc(b"garbage").is_err());
    }
}
