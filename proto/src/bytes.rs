//! Binary payloads (log and exec data) inside JSON messages, as standard
//! base64 with padding (RFC 4648 section 4).
//!
//! A JSON array of numbers would cost up to four bytes per byte; base64
//! costs 4/3. Decoding is strict: wrong length, bytes outside the alphabet,
//! misplaced padding and non-zero trailing bits are all rejected, so every
//! byte string has exactly one encoding.
//!
//! Use on a `Vec<u8>` field with `#[serde(with = "crate::bytes")]`, or
//! `#[serde(with = "crate::bytes::chunk")]` for data a peer streams, which
//! is refused at decode beyond [`crate::MAX_CHUNK`] bytes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serializer};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD: u8 = b'=';

/// Why a base64 string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// The length is not a multiple of four.
    Length(usize),
    /// A byte outside the alphabet, or padding anywhere but the end.
    Byte { offset: usize, byte: u8 },
    /// Bits after the last whole byte are not zero (a non-canonical encoding).
    TrailingBits,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::Length(len) => {
                write!(f, "base64 length {len} is not a multiple of 4")
            }
            Base64Error::Byte { offset, byte } => {
                write!(f, "invalid base64 byte 0x{byte:02x} at offset {offset}")
            }
            Base64Error::TrailingBits => write!(f, "base64 has non-zero trailing bits"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Encode `data` as padded standard base64.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |i: u32| char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]);
        out.push(sextet(0));
        out.push(sextet(1));
        out.push(if chunk.len() > 1 { sextet(2) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(3) } else { '=' });
    }
    out
}

fn value(byte: u8) -> Option<u32> {
    let v = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decode padded standard base64, strictly.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let input = text.as_bytes();
    if input.len() % 4 != 0 {
        return Err(Base64Error::Length(input.len()));
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let quads = input.len() / 4;
    for (q, quad) in input.chunks_exact(4).enumerate() {
        let last = q + 1 == quads;
        // Padding is allowed only in the last two positions of the last quad,
        // and a padded third position requires a padded fourth.
        let pad = match (last, quad[2], quad[3]) {
            (true, PAD, PAD) => 2,
            (true, _, PAD) => 1,
            _ => 0,
        };
        let mut n = 0u32;
        for (i, &byte) in quad[..4 - pad].iter().enumerate() {
            let v = value(byte).ok_or(Base64Error::Byte {
                offset: q * 4 + i,
                byte,
            })?;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return Err(Base64Error::TrailingBits);
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Ok(out)
}

/// serde `with` hook: serialize bytes as a base64 string.
pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(data))
}

/// serde `with` hook: deserialize bytes from a base64 string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    // Borrowing would fail for strings with JSON escapes; base64 never needs
    // them, but a hostile peer may send them, so accept an owned string too.
    let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
    decode(&text).map_err(serde::de::Error::custom)
}

/// Streamed data (logs, exec input and output): at most
/// [`crate::MAX_CHUNK`] bytes, checked on the encoded length before
/// anything is decoded. A peer that sends more is refused, so a receiver
/// can bound what it queues by counting chunks.
pub mod chunk {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::MAX_CHUNK;

    /// serde `with` hook: as [`super::serialize`].
    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize(data, serializer)
    }

    /// serde `with` hook: base64 of at most [`MAX_CHUNK`] bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        if text.len() > MAX_CHUNK.div_ceil(3) * 4 {
            return Err(serde::de::Error::custom(format!(
                "data of about {} bytes is over the {MAX_CHUNK}-byte chunk limit",
                text.len() / 4 * 3
            )));
        }
        let data = super::decode(&text).map_err(serde::de::Error::custom)?;
        // The encoded length bounds it within two bytes; this is exact.
        if data.len() > MAX_CHUNK {
            return Err(serde::de::Error::custom(format!(
                "data of {} bytes is over the {MAX_CHUNK}-byte chunk limit",
                data.len()
            )));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_base64_known_vectors() {
        // RFC 4648 section 10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn test_base64_round_trip_lengths_0_to_10() {
        for len in 0..=10usize {
            // Vary the content so every sextet position sees high and low bits.
            for seed in [0u8, 0x5a, 0xff] {
                let data: Vec<u8> = (0..len)
                    .map(|i| seed.wrapping_add((i as u8).wrapping_mul(37)))
                    .collect();
                let coded = encode(&data);
                assert_eq!(coded.len(), len.div_ceil(3) * 4);
                assert_eq!(decode(&coded).unwrap(), data, "len {len} seed {seed}");
            }
        }
    }

    #[test]
    fn test_base64_round_trip_all_byte_values() {
        let data: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode(&encode(&data)).unwrap(), data);
    }

    #[test]
    fn test_base64_rejects_invalid_input() {
        assert_eq!(decode("Zg="), Err(Base64Error::Length(3)));
        assert_eq!(decode("Z"), Err(Base64Error::Length(1)));
        assert_eq!(
            decode("Zm9*"),
            Err(Base64Error::Byte {
                offset: 3,
                byte: b'*'
            })
        );
        // Padding in the middle of the input or in the wrong position.
        assert!(matches!(decode("Zg==Zm8="), Err(Base64Error::Byte { .. })));
        assert!(matches!(decode("Z=g="), Err(Base64Error::Byte { .. })));
        assert!(matches!(decode("===="), Err(Base64Error::Byte { .. })));
        assert!(matches!(decode("Zm=9"), Err(Base64Error::Byte { .. })));
        // Whitespace and URL-safe alphabet are not accepted.
        assert!(matches!(decode("Zm9v Zg=="), Err(Base64Error::Length(9))));
        assert!(matches!(decode("-_-_"), Err(Base64Error::Byte { .. })));
        // Non-canonical: "Zh==" would decode to "f" with stray bits set.
        assert_eq!(decode("Zh=="), Err(Base64Error::TrailingBits));
        assert_eq!(decode("Zm9="), Err(Base64Error::TrailingBits));
    }

    #[test]
    fn test_base64_serde_hook() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Chunk {
            #[serde(with = "crate::bytes")]
            data: Vec<u8>,
        }
        let chunk = Chunk {
            data: b"hi\n\0".to_vec(),
        };
        let json = serde_json::to_string(&chunk).unwrap();
        assert_eq!(json, r#"{"data":"aGkKAA=="}"#);
        assert_eq!(serde_json::from_str::<Chunk>(&json).unwrap(), chunk);
        // Escaped JSON strings cannot be borrowed; they must still decode.
        let escaped = r#"{"data":"aGkKAA\u003d="}"#;
        assert_eq!(serde_json::from_str::<Chunk>(escaped).unwrap(), chunk);
        let err = serde_json::from_str::<Chunk>(r#"{"data":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("not a multiple of 4"), "{err}");
    }

    #[test]
    fn test_chunk_refuses_data_over_the_limit_at_decode() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Chunk {
            #[serde(with = "crate::bytes::chunk")]
            data: Vec<u8>,
        }
        let most = Chunk {
            data: vec![7; crate::MAX_CHUNK],
        };
        let json = serde_json::to_string(&most).unwrap();
        assert_eq!(serde_json::from_str::<Chunk>(&json).unwrap(), most);
        let over = serde_json::to_string(&Chunk {
            data: vec![7; crate::MAX_CHUNK + 1],
        })
        .unwrap();
        let err = serde_json::from_str::<Chunk>(&over).unwrap_err();
        assert!(err.to_string().contains("chunk limit"), "{err}");
        // Far over: refused on its encoded length, before decoding.
        let far = serde_json::to_string(&Chunk {
            data: vec![7; 4 * crate::MAX_CHUNK],
        })
        .unwrap();
        let err = serde_json::from_str::<Chunk>(&far).unwrap_err();
        assert!(err.to_string().contains("about"), "{err}");
    }
}
