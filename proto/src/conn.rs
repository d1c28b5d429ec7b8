//! A blocking connection: framing plus JSON over any byte stream (a vsock or
//! Unix socket), and the hello exchange.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ProtoError, Result};
use crate::frame::{read_frame, write_frame};
use crate::msg::{check_version, decode, encode, GuestMsg, Hello, HostMsg, Message};

/// Messages over a blocking stream.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
}

impl<S: Read + Write> Connection<S> {
    /// Wrap a connected stream.
    pub fn new(stream: S) -> Self {
        Connection { stream }
    }

    /// Send one message.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        write_frame(&mut self.stream, &encode(msg)?)
    }

    /// Receive one message; `Ok(None)` when the peer closed the stream
    /// between messages.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match read_frame(&mut self.stream)? {
            Some(payload) => decode(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// The host's side of the handshake: exchange hellos with the guest and
    /// check its version. Returns the guest's hello.
    pub fn handshake_host(&mut self, agent: &str) -> Result<Hello> {
        self.handshake::<HostMsg, GuestMsg>(agent)
    }

    /// The guest's side of the handshake. Returns the host's hello.
    pub fn handshake_guest(&mut self, agent: &str) -> Result<Hello> {
        self.handshake::<GuestMsg, HostMsg>(agent)
    }

    /// Both sides send first, then read: a hello is far smaller than any
    /// socket buffer, so this cannot deadlock, and each side learns the
    /// other's version even when they differ.
    fn handshake<Ours: Message, Theirs: Message>(&mut self, agent: &str) -> Result<Hello> {
        self.send(&Ours::hello(Hello::new(agent)))?;
        let msg: Theirs = self
            .recv()?
            .ok_or(ProtoError::Closed { expected: "hello" })?;
        let hello = msg
            .into_hello()
            .map_err(|other| ProtoError::UnexpectedMessage {
                expected: "hello",
                got: other.kind(),
            })?;
        check_version(&hello)?;
        Ok(hello)
    }

    /// The stream, e.g. to set timeouts.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Unwrap the stream.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::thread;

    use super::*;
    use crate::frame::MAX_FRAME;
    use crate::msg::PROTOCOL_VERSION;
    use crate::pod::tests::sample_pod;

    #[test]
    fn test_connection_handshake_both_ways() {
        let (host, guest) = UnixStream::pair().unwrap();
        let guest = thread::spawn(move || {
            let mut conn = Connection::new(guest);
            let hello = conn.handshake_guest("peapod-init test").unwrap();
            conn.send(&GuestMsg::Ready { uptime_ms: 5 }).unwrap();
            let run: HostMsg = conn.recv().unwrap().unwrap();
            let HostMsg::RunPod(pod) = run else {
                panic!("{run:?}");
            };
            conn.send(&GuestMsg::PodExited {
                phase: crate::PodPhase::Succeeded,
                reason: pod.name.clone(),
            })
            .unwrap();
            assert!(conn.recv::<HostMsg>().unwrap().is_none(), "clean EOF");
            hello
        });
        let mut conn = Connection::new(host);
        let hello = conn.handshake_host("peapod test").unwrap();
        assert_eq!(hello, Hello::new("peapod-init test"));
        assert_eq!(
            conn.recv::<GuestMsg>().unwrap(),
            Some(GuestMsg::Ready { uptime_ms: 5 })
        );
        conn.send(&HostMsg::RunPod(Box::new(sample_pod()))).unwrap();
        let exited: GuestMsg = conn.recv().unwrap().unwrap();
        assert!(matches!(exited, GuestMsg::PodExited { reason, .. } if reason == "web"));
        drop(conn);
        assert_eq!(guest.join().unwrap(), Hello::new("peapod test"));
    }

    #[test]
    fn test_connection_handshake_version_mismatch() {
        let (host, guest) = UnixStream::pair().unwrap();
        // A guest from a future release.
        let guest = thread::spawn(move || {
            let mut conn = Connection::new(guest);
            conn.send(&GuestMsg::Hello(Hello {
                version: PROTOCOL_VERSION + 1,
                agent: "peapod-init 9".into(),
            }))
            .unwrap();
            // It sees our hello and rejects it too.
            let hello: HostMsg = conn.recv().unwrap().unwrap();
            assert_eq!(hello, HostMsg::Hello(Hello::new("peapod")));
        });
        let err = Connection::new(host).handshake_host("peapod").unwrap_err();
        let ProtoError::VersionMismatch { ours, theirs } = err else {
            panic!("{err:?}");
        };
        assert_eq!((ours, theirs), (PROTOCOL_VERSION, PROTOCOL_VERSION + 1));
        guest.join().unwrap();
    }

    #[test]
    fn test_connection_handshake_rejects_other_first_message() {
        let (host, guest) = UnixStream::pair().unwrap();
        let mut peer = Connection::new(guest);
        peer.send(&GuestMsg::Ready { uptime_ms: 1 }).unwrap();
        let err = Connection::new(host).handshake_host("peapod").unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::UnexpectedMessage {
                    expected: "hello",
                    got: "ready"
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn test_connection_handshake_peer_closed() {
        let (host, guest) = UnixStream::pair().unwrap();
        drop(guest);
        let err = Connection::new(host).handshake_guest("peapod-init");
        // Writing to a closed peer may fail first (EPIPE); either way no hello.
        assert!(
            matches!(err, Err(ProtoError::Closed { .. } | ProtoError::Io { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn test_connection_recv_rejects_oversized_frame() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        guest
            .write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .unwrap();
        let err = Connection::new(host).recv::<GuestMsg>().unwrap_err();
        assert!(matches!(err, ProtoError::FrameTooLarge { .. }), "{err:?}");
    }

    #[test]
    fn test_connection_recv_unknown_message_is_decode_error() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        write_frame(&mut guest, br#"{"type":"mine_bitcoin"}"#).unwrap();
        let err = Connection::new(host).recv::<GuestMsg>().unwrap_err();
        assert!(err.to_string().contains("mine_bitcoin"), "{err}");
    }
}
