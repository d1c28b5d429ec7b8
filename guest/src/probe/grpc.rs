//! The gRPC health check a `grpc` probe makes, as the kubelet makes it:
//! `grpc.health.v1.Health/Check` over plaintext HTTP/2 (prior knowledge),
//! one request, and the status in the answer. Only what that takes is here:
//! the request's header block is HPACK literals (no Huffman coding, no
//! dynamic table), and the answer is read from its DATA frames, so the
//! server's header blocks are never decoded.

use super::Verdict;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// The one stream a check uses.
const STREAM: u32 = 1;

/// HPACK static table entries the request names (RFC 7541, appendix A).
const METHOD_POST: u8 = 3;
const PATH: usize = 4;
const AUTHORITY: usize = 1;
const SCHEME_HTTP: u8 = 6;
const CONTENT_TYPE: usize = 31;
const USER_AGENT: usize = 58;

/// The acknowledgement of the server's SETTINGS frame.
pub const SETTINGS_ACK: [u8; 9] = [0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0];

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK integer: `first`'s high bits, then `value` with an `n`-bit
/// prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An HPACK string, not Huffman-coded.
fn hpack_string(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A header field, a literal not indexed: its name by static table index,
/// or written out (`index` 0).
fn hpack_field(out: &mut Vec<u8>, index: usize, name: &str, value: &str) {
    if index == 0 {
        out.push(0);
        hpack_string(out, name);
    } else {
        hpack_int(out, 0, 4, index);
    }
    hpack_string(out, value);
}

/// The bytes of a whole check of `service` (empty: the server) on
/// `authority` (`host:port`): preface, settings, request headers and body.
pub fn request(authority: &str, service: &str) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let mut block = vec![0x80 | METHOD_POST, 0x80 | SCHEME_HTTP];
    hpack_field(&mut block, PATH, "", "/grpc.health.v1.Health/Check");
    hpack_field(&mut block, AUTHORITY, "", authority);
    hpack_field(&mut block, CONTENT_TYPE, "", "application/grpc");
    hpack_field(&mut block, 0, "te", "trailers");
    hpack_field(&mut block, USER_AGENT, "", "kube-probe/1.0 (peapod)");
    frame(&mut out, HEADERS, END_HEADERS, STREAM, &block);
    // HealthCheckRequest { string service = 1; }
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        hpack_int(&mut message, 0, 7, service.len());
        message.extend_from_slice(service.as_bytes());
    }
    // gRPC's length-prefixed message: not compressed, its length.
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    frame(&mut out, DATA, END_STREAM, STREAM, &body);
    out
}

/// What the server's bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The check's result, once known.
    pub verdict: Option<Verdict>,
    /// The server sent its settings (to acknowledge).
    pub settings: bool,
}

/// Read the server's frames in `got` (the last may be incomplete).
pub fn answer(got: &[u8]) -> Answer {
    let mut settings = false;
    let mut message = Vec::new();
    let mut at = 0;
    let done = |v: Verdict, settings: bool| Answer {
        verdict: Some(v),
        settings,
    };
    while let Some(head) = got.get(at..at + 9) {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let Some(payload) = got.get(at + 9..at + 9 + len) else {
            break;
        };
        at += 9 + len;
        match kind {
            SETTINGS if flags & ACK == 0 && stream == 0 => settings = true,
            GOAWAY => {
                return done(
                    Verdict::Fail("the server closed the connection (HTTP/2 GOAWAY)".into()),
                    settings,
                )
            }
            RST_STREAM if stream == STREAM => {
                let code = payload
                    .get(..4)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                return done(
                    Verdict::Fail(format!(
                        "the server reset the request (HTTP/2 error {code})"
                    )),
                    settings,
                );
            }
            DATA if stream == STREAM => {
                let data = if flags & PADDED != 0 {
                    let pad = payload.first().map_or(usize::MAX, |p| usize::from(*p));
                    payload
                        .len()
                        .checked_sub(pad + 1)
                        .map(|end| &payload[1..=end])
                } else {
                    Some(payload)
                };
                let Some(data) = data else {
                    return done(Verdict::Fail("a malformed DATA frame".into()), settings);
                };
                message.extend_from_slice(data);
                if let Some(v) = health_status(&message) {
                    return done(v, settings);
                }
            }
            // Trailers without a status message before: a gRPC error.
            HEADERS if stream == STREAM && flags & END_STREAM != 0 => {
                return done(
                    Verdict::Fail(
                        "the server answered with an error, not a health status (does it \
                         implement grpc.health.v1.Health?)"
                            .into(),
                    ),
                    settings,
                )
            }
            _ => {}
        }
    }
    Answer {
        verdict: None,
        settings,
    }
}

/// The result in a length-prefixed `HealthCheckResponse`, once it is whole.
fn health_status(message: &[u8]) -> Option<Verdict> {
    let head = message.get(..5)?;
    if head[0] != 0 {
        return Some(Verdict::Fail("the answer is compressed".into()));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = message.get(5..5usize.checked_add(len)?)?;
    // HealthCheckResponse { ServingStatus status = 1; }: a varint.
    let mut status = 0;
    while let Some((key, rest)) = varint(body) {
        body = rest;
        let value = match key & 7 {
            0 => {
                let (v, rest) = varint(body)?;
                body = rest;
                v
            }
            2 => {
                let (n, rest) = varint(body)?;
                body = rest.get(usize::try_from(n).ok()?..)?;
                continue;
            }
            _ => return Some(Verdict::Fail("a malformed health status".into())),
        };
        if key >> 3 == 1 {
            status = value;
        }
    }
    let name = match status {
        1 => return Some(Verdict::Pass),
        0 => "UNKNOWN",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown status",
    };
    Some(Verdict::Fail(format!(
        "service unhealthy (responded with {name:?})"
    )))
}

/// A protobuf varint at the start of `b`, and what follows it.
fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(frames: &[(u8, u8, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, flags, stream, payload) in frames {
            frame(&mut out, *kind, *flags, *stream, payload);
        }
        out
    }

    #[test]
    fn test_request_bytes() {
        let req = request("10.0.2.15:9000", "app");
        assert!(req.starts_with(PREFACE));
        let rest = &req[PREFACE.len()..];
        // An empty SETTINGS frame, then HEADERS on stream 1.
        assert_eq!(&rest[..9], &[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
        let headers = &rest[9..];
        let len = u32::from_be_bytes([0, headers[0], headers[1], headers[2]]) as usize;
        assert_eq!(&headers[3..9], &[HEADERS, END_HEADERS, 0, 0, 0, 1]);
        let block = &headers[9..9 + len];
        assert_eq!(&block[..3], &[0x83, 0x86, 0x04]);
        assert_eq!(block[3] as usize, "/grpc.health.v1.Health/Check".len());
        let text = String::from_utf8_lossy(block);
        for s in [
            "/grpc.health.v1.Health/Check",
            "10.0.2.15:9000",
            "application/grpc",
            "te",
            "trailers",
        ] {
            assert!(text.contains(s), "{s} in {text:?}");
        }
        // content-type by index 31: 0x0f then 31 - 15.
        assert!(block.windows(2).any(|w| w == [0x0f, 16]));
        let data = &headers[9 + len..];
        assert_eq!(&data[3..9], &[DATA, END_STREAM, 0, 0, 0, 1]);
        assert_eq!(&data[9..], &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'p']);
    }

    #[test]
    fn test_answers() {
        let serving: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];
        let not_serving: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x02];
        let settings = (SETTINGS, 0, 0, &[0u8, 3, 0, 0, 0, 100][..]);
        let headers = (HEADERS, END_HEADERS, STREAM, &[0x88u8][..]);
        let got = server(&[settings, headers, (DATA, 0, STREAM, serving)]);
        assert_eq!(
            answer(&got),
            Answer {
                verdict: Some(Verdict::Pass),
                settings: true
            }
        );
        // Not all there yet: no verdict, whatever the cut.
        for cut in 0..got.len() {
            assert_eq!(answer(&got[..cut]).verdict, None, "cut at {cut}");
        }
        let got = server(&[headers, (DATA, 0, STREAM, not_serving)]);
        assert!(
            matches!(answer(&got).verdict, Some(Verdict::Fail(m)) if m.contains("NOT_SERVING"))
        );
        // An empty message is UNKNOWN (proto3 leaves out the zero).
        let got = server(&[(DATA, 0, STREAM, &[0, 0, 0, 0, 0])]);
        assert!(matches!(answer(&got).verdict, Some(Verdict::Fail(m)) if m.contains("UNKNOWN")));
        // Padded DATA, the message over two frames.
        let got = server(&[
            (DATA, PADDED, STREAM, &[2, 0, 0, 0, 0, 9, 9][..]),
            (DATA, 0, STREAM, &[2, 0x08, 0x01][..]),
        ]);
        assert_eq!(answer(&got).verdict, Some(Verdict::Pass));
        let got = server(&[(DATA, PADDED, STREAM, &[9, 0][..])]);
        assert!(matches!(answer(&got).verdict, Some(Verdict::Fail(_))));
        // Trailers only (Unimplemented), a reset, a GOAWAY.
        let got = server(&[(HEADERS, END_HEADERS | END_STREAM, STREAM, &[0x88][..])]);
        assert!(
            matches!(answer(&got).verdict, Some(Verdict::Fail(m)) if m.contains("grpc.health.v1"))
        );
        let got = server(&[(RST_STREAM, 0, STREAM, &[0, 0, 0, 7][..])]);
        assert!(matches!(answer(&got).verdict, Some(Verdict::Fail(m)) if m.contains("error 7")));
        let got = server(&[(GOAWAY, 0, 0, &[0; 8][..])]);
        assert!(matches!(answer(&got).verdict, Some(Verdict::Fail(_))));
        // Other streams and a settings ACK change nothing.
        let got = server(&[(SETTINGS, ACK, 0, &[][..]), (DATA, 0, 3, serving)]);
        assert_eq!(
            answer(&got),
            Answer {
                verdict: None,
                settings: false
            }
        );
    }

    #[test]
    fn test_hpack_int_prefixes() {
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 4, 58);
        assert_eq!(out, [0x0f, 43]);
        out.clear();
        hpack_int(&mut out, 0, 7, 1337);
        assert_eq!(out, [0x7f, 0xba, 0x09]);
    }
}
