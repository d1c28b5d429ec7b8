//! A tiny authoritative DNS server over UDP (RFC 1035): one A record for
//! each name it is given, NXDOMAIN for every other name.
//!
//! Queries are hostile input: anything but a query with one well-formed
//! question is dropped without an answer, and no bytes make this panic.

use std::net::{Ipv4Addr, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::Error;

const HEADER_LEN: usize = 12;
/// Longest name in wire form, length octets included (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// The answer's name: a compression pointer to the question's, at offset 12.
const NAME_POINTER: u16 = 0xC00C;
const TTL: u32 = 60;

/// The names served, lowercase without the trailing dot, and their addresses.
#[derive(Debug)]
pub struct Zone {
    records: Vec<(String, Ipv4Addr)>,
}

impl Zone {
    /// Reads `NAME=IPV4` arguments.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut records: Vec<(String, Ipv4Addr)> = Vec::new();
        for entry in entries {
            let Some((name, ip)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not NAME=IPV4"));
            };
            let ip = ip
                .parse()
                .map_err(|_| format!("{entry:?}: {ip:?} is not an IPv4 address"))?;
            let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            let valid = name.len() <= MAX_NAME - 2
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
                && name
                    .split('.')
                    .all(|l| !l.is_empty() && l.len() <= MAX_LABEL);
            if !valid {
                return Err(format!("{entry:?}: {name:?} is not a domain name"));
            }
            if records.iter().any(|(known, _)| *known == name) {
                return Err(format!("{name} is given twice"));
            }
            records.push((name, ip));
        }
        Ok(Zone { records })
    }

    fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        self.records
            .iter()
            .find(|(known, _)| known == name)
            .map(|&(_, ip)| ip)
    }
}

/// A query's one question.
#[derive(Debug)]
struct Question {
    /// Lowercase, labels joined by dots; bytes other than printable ASCII,
    /// and dots and backslashes within labels, as `\DDD`.
    name: String,
    qtype: u16,
    qclass: u16,
    /// Where the question ends in the packet.
    end: usize,
}

fn read_u16(packet: &[u8], at: usize) -> Option<u16> {
    let bytes = packet.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// The question after the header; `None` if it is truncated, too long or
/// compressed (a pointer in a query's question is legal, but no resolver
/// sends one).
fn parse_question(packet: &[u8]) -> Option<Question> {
    let mut name = String::new();
    let mut pos = HEADER_LEN;
    let mut wire_len = 1; // the root label's zero octet
    loop {
        let len = usize::from(*packet.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        // Also refuses compression pointers (0xC0) and the reserved 0x40 and 0x80.
        if len > MAX_LABEL {
            return None;
        }
        wire_len += 1 + len;
        if wire_len > MAX_NAME {
            return None;
        }
        let label = packet.get(pos..pos + len)?;
        pos += len;
        if !name.is_empty() {
            name.push('.');
        }
        for b in label.iter().map(u8::to_ascii_lowercase) {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("\\{b:03}"));
            }
        }
    }
    Some(Question {
        name,
        qtype: read_u16(packet, pos)?,
        qclass: read_u16(packet, pos + 2)?,
        end: pos + 4,
    })
}

fn type_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        255 => "ANY",
        other => return format!("TYPE{other}"),
    };
    name.to_string()
}

/// An answer to send back, and the line that logs it.
#[derive(Debug)]
pub struct Reply {
    pub packet: Vec<u8>,
    pub log: String,
}

/// The answer to `query`, or `None` to drop it: not a query, not exactly
/// one question, or a malformed one.
pub fn respond(zone: &Zone, query: &[u8]) -> Option<Reply> {
    let id = query.get(..2)?;
    let flags = read_u16(query, 2)?;
    if query.len() < HEADER_LEN || flags & FLAG_QR != 0 {
        return None;
    }
    let opcode = (flags >> 11) & 0xF;
    let reply_flags = FLAG_QR | (opcode << 11) | FLAG_AA | (flags & FLAG_RD);
    let mut packet = id.to_vec();
    if opcode != 0 {
        packet.extend_from_slice(&(reply_flags | RCODE_NOTIMP).to_be_bytes());
        packet.extend_from_slice(&[0; 8]); // no question, no records
        let log = format!("query with opcode {opcode} -> NOTIMP");
        return Some(Reply { packet, log });
    }
    if read_u16(query, 4)? != 1 {
        return None;
    }
    let question = parse_question(query)?;
    let known = zone.lookup(&question.name);
    let wanted = matches!(question.qtype, TYPE_A | TYPE_ANY)
        && matches!(question.qclass, CLASS_IN | CLASS_ANY);
    let answer = known.filter(|_| wanted);
    let rcode = if known.is_some() { 0 } else { RCODE_NXDOMAIN };
    for field in [reply_flags | rcode, 1, u16::from(answer.is_some()), 0, 0] {
        packet.extend_from_slice(&field.to_be_bytes());
    }
    packet.extend_from_slice(query.get(HEADER_LEN..question.end)?);
    if let Some(ip) = answer {
        for field in [NAME_POINTER, TYPE_A, CLASS_IN] {
            packet.extend_from_slice(&field.to_be_bytes());
        }
        packet.extend_from_slice(&TTL.to_be_bytes());
        packet.extend_from_slice(&4u16.to_be_bytes());
        packet.extend_from_slice(&ip.octets());
    }
    let outcome = match (known, answer) {
        (None, _) => "NXDOMAIN".to_string(),
        (Some(_), None) => "NOERROR, no answer".to_string(),
        (Some(_), Some(ip)) => ip.to_string(),
    };
    let name = if question.name.is_empty() {
        "."
    } else {
        &question.name
    };
    let log = format!("query {name} {} -> {outcome}", type_name(question.qtype));
    Some(Reply { packet, log })
}

/// Answers queries on `socket` forever, logging each to stderr.
pub fn serve(socket: &UdpSocket, zone: &Zone) -> Result<(), Error> {
    let mut buf = [0; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) => {
                eprintln!("peapod-nettool: receive a query: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(reply) = respond(zone, &buf[..len]) else {
            eprintln!("peapod-nettool: dropped a malformed {len}-byte query from {peer}");
            continue;
        };
        eprintln!("peapod-nettool: {}", reply.log);
        if let Err(e) = socket.send_to(&reply.packet, peer) {
            eprintln!("peapod-nettool: answer {peer}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let entries = ["Test.Peapod.Example.=192.0.2.77", "other.example=192.0.2.1"];
        Zone::parse(&entries.map(String::from)).unwrap()
    }

    /// A standard query (RD set) for `labels`, of type `qtype`, class IN.
    fn query(id: u16, labels: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut packet = id.to_be_bytes().to_vec();
        packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in labels {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label);
        }
        packet.push(0);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&CLASS_IN.to_be_bytes());
        packet
    }

    fn name_query(name: &str, qtype: u16) -> Vec<u8> {
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        query(0x1234, &labels, qtype)
    }

    /// (flags, qdcount, ancount, nscount, arcount) of a reply to `query`.
    fn header(reply: &Reply, query: &[u8]) -> [u16; 5] {
        assert_eq!(
            reply.packet[..2],
            query[..2],
            "the reply keeps the query's ID"
        );
        [2, 4, 6, 8, 10].map(|at| read_u16(&reply.packet, at).unwrap())
    }

    #[test]
    fn test_respond_known_name_a() {
        let q = name_query("test.PEAPOD.example", TYPE_A);
        let reply = respond(&zone(), &q).unwrap();
        assert_eq!(header(&reply, &q), [0x8500, 1, 1, 0, 0]);
        assert_eq!(reply.packet[HEADER_LEN..q.len()], q[HEADER_LEN..]);
        let answer = &reply.packet[q.len()..];
        let expected = [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 77];
        assert_eq!(answer, expected);
        assert_eq!(reply.log, "query test.peapod.example A -> 192.0.2.77");
        let any = respond(&zone(), &name_query("other.example", TYPE_ANY)).unwrap();
        assert_eq!(any.packet[any.packet.len() - 4..], [192, 0, 2, 1]);
    }

    #[test]
    fn test_respond_known_name_aaaa_noerror_without_answer() {
        let q = name_query("test.peapod.example", 28);
        let reply = respond(&zone(), &q).unwrap();
        assert_eq!(header(&reply, &q), [0x8500, 1, 0, 0, 0]);
        assert_eq!(reply.packet.len(), q.len());
        assert_eq!(
            reply.log,
            "query test.peapod.example AAAA -> NOERROR, no answer"
        );
    }

    #[test]
    fn test_respond_unknown_name_nxdomain() {
        let mut q = name_query("test.peapod.example.evil", TYPE_A);
        q[2] = 0; // RD clear: stays clear
        let reply = respond(&zone(), &q).unwrap();
        assert_eq!(header(&reply, &q), [0x8403, 1, 0, 0, 0]);
        // A dot inside a label is not a label boundary.
        let q = query(7, &[b"test.peapod", b"example"], TYPE_A);
        assert_eq!(header(&respond(&zone(), &q).unwrap(), &q)[0], 0x8503);
    }

    #[test]
    fn test_respond_other_opcode_notimp() {
        let mut q = name_query("test.peapod.example", TYPE_A);
        q[2] |= 2 << 3; // opcode 2, STATUS
        let reply = respond(&zone(), &q).unwrap();
        assert_eq!(header(&reply, &q), [0x9504, 0, 0, 0, 0]);
    }

    #[test]
    fn test_respond_name_length_limits() {
        let l63 = [b'a'; 63];
        let fits = query(1, &[&l63, &l63, &l63, &[b'b'; 61]], TYPE_A); // 255 bytes
        assert!(respond(&zone(), &fits).is_some());
        let too_long = query(1, &[&l63, &l63, &l63, &[b'b'; 62]], TYPE_A);
        assert!(respond(&zone(), &too_long).is_none());
        let huge_label = query(1, &[&[b'a'; 64]], TYPE_A);
        assert!(respond(&zone(), &huge_label).is_none());
    }

    #[test]
    fn test_respond_drops_malformed() {
        let q = name_query("test.peapod.example", TYPE_A);
        for len in 0..q.len() {
            assert!(respond(&zone(), &q[..len]).is_none(), "truncated to {len}");
        }
        let mut pointer = q[..HEADER_LEN].to_vec();
        pointer.extend_from_slice(&[4, b't', b'e', b's', b't', 0xC0, 12, 0, 1, 0, 1]);
        assert!(respond(&zone(), &pointer).is_none());
        let mut loop_to_self = q[..HEADER_LEN].to_vec();
        loop_to_self.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(respond(&zone(), &loop_to_self).is_none());
        for (at, value) in [(2, 0x81), (5, 0), (5, 2)] {
            let mut bad = q.clone();
            bad[at] = value; // a response; no question; two questions
            assert!(respond(&zone(), &bad).is_none(), "byte {at} = {value}");
        }
    }

    /// xorshift64: deterministic random bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn test_respond_fuzz_never_panics() {
        let zone = zone();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let valid = name_query("test.peapod.example", TYPE_A);
        for round in 0..20_000 {
            let packet: Vec<u8> = if round % 2 == 0 {
                (0..rng.below(600)).map(|_| rng.next() as u8).collect()
            } else {
                // A valid query with a few bytes changed, maybe cut short:
                // reaches the question parser far more often.
                let mut p = valid.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(p.len());
                    p[at] = rng.next() as u8;
                }
                p.truncate(rng.below(p.len() + 8));
                p
            };
            if let Some(reply) = respond(&zone, &packet) {
                assert_eq!(reply.packet[..2], packet[..2]);
                assert!(reply.packet.len() >= HEADER_LEN && reply.packet.len() <= 512);
            }
        }
    }

    #[test]
    fn test_zone_parse_rejects_bad_entries() {
        for bad in [
            "noequals",
            "a.example=1.2.3",
            "a..example=1.2.3.4",
            "=1.2.3.4",
            "a b=1.2.3.4",
        ] {
            assert!(Zone::parse(&[bad.to_string()]).is_err(), "{bad:?}");
        }
        let twice = ["a.example=1.2.3.4", "A.example.=1.2.3.5"].map(String::from);
        assert!(Zone::parse(&twice).is_err());
    }

    #[test]
    fn test_serve_answers_over_udp() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        thread::spawn(move || serve(&socket, &zone()));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let q = name_query("other.example", TYPE_A);
        client.send_to(&q, addr).unwrap();
        let mut buf = [0; 512];
        let len = client.recv(&mut buf).unwrap();
        assert_eq!(buf[len - 4..len], [192, 0, 2, 1]);
    }
}
