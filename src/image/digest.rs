//! sha256 content digests: parsing, and hashing while reading.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::ImageError;

/// A `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; `image` names the image in the error.
    pub fn parse(text: &str, image: &str) -> Result<Digest, ImageError> {
        let unsupported = || ImageError::UnsupportedDigest {
            image: image.to_owned(),
            digest: text.to_owned(),
        };
        let hex = text.strip_prefix("sha256:").ok_or_else(unsupported)?;
        Digest::from_hex(hex).ok_or_else(unsupported)
    }

    /// A digest from its 64 hex digits, `None` if they are not that.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hex: to_hex(&Sha256::digest(data)),
        }
    }

    /// The 64 hex digits, used as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Checks that `actual` is this digest.
    pub fn check(&self, actual: &Digest, image: &str, what: &str) -> Result<(), ImageError> {
        if self == actual {
            return Ok(());
        }
        Err(ImageError::DigestMismatch {
            image: image.to_owned(),
            what: what.to_owned(),
            expected: self.to_string(),
            actual: actual.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads the rest of the stream, then returns its digest and length.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let hex = to_hex(&self.hasher.finalize());
        Ok((Digest { hex }, self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn test_digest_of_and_display() {
        assert_eq!(Digest::of(b"").to_string(), format!("sha256:{EMPTY}"));
    }

    #[test]
    fn test_digest_parse_rejects_other_forms() {
        assert!(Digest::parse(&format!("sha256:{EMPTY}"), "img").is_ok());
        for bad in ["", "sha256:", "sha256:abc", "sha512:00", "md5:x", EMPTY] {
            let err = Digest::parse(bad, "img").unwrap_err().to_string();
            assert!(err.contains("sha256 only"), "{bad:?}: {err}");
        }
        let upper = format!("sha256:{}", EMPTY.to_uppercase());
        assert!(Digest::parse(&upper, "img").is_err());
    }

    #[test]
    fn test_digest_hashing_reader_reads_to_end() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (digest, len) = r.finish().unwrap();
        assert_eq!(len, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
    }

    #[test]
    fn test_digest_check_mismatch_names_both() {
        let want = Digest::of(b"a");
        let err = want
            .check(&Digest::of(b"b"), "oci:x", "layer y")
            .unwrap_err()
            .to_string();
        assert!(err.contains(&want.to_string()), "{err}");
        assert!(err.contains(&Digest::of(b"b").to_string()), "{err}");
        assert!(err.contains("layer y"), "{err}");
    }
}
