//! The one error type of the wire protocol.

use std::io;

/// Everything that can go wrong speaking the protocol.
///
/// Framing errors (`FrameTooLarge`, `EmptyFrame`, `TruncatedFrame`) mean the
/// stream is out of sync or hostile: the connection must be dropped, there is
/// no way to resynchronise. A `Decode` error concerns one well-framed message;
/// the receiver may report it and go on.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// A frame header announced (or a sender tried to write) more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// A frame header announced zero bytes; no message is empty.
    #[error("zero-length frame")]
    EmptyFrame,
    /// The stream ended inside a frame.
    #[error("stream ended after {got} of {needed} bytes of a frame")]
    TruncatedFrame { needed: usize, got: usize },
    /// Reading from or writing to the stream failed.
    #[error("failed to {action}")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// A frame did not hold a valid message. The text is serde_json's, which
    /// names unknown message types, unknown fields and the offending column.
    /// Kept as a string so the guest can forward it in `GuestMsg::Error`.
    #[error("cannot decode message: {message}")]
    Decode { message: String },
    /// Serializing one of our own messages failed (a bug, not peer input).
    #[error("cannot encode message")]
    Encode(#[source] serde_json::Error),
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}; \
         host (peapod) and guest (peapod-init) must come from the same release"
    )]
    VersionMismatch { ours: u32, theirs: u32 },
    /// A well-formed message arrived where another one was required.
    #[error("expected a `{expected}` message, got `{got}`")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },
    /// A `RunPod` plan breaks an invariant the guest relies on.
    #[error("invalid pod plan: {field}: {problem}")]
    InvalidPod { field: String, problem: String },
    /// The peer closed the stream while a message was required.
    #[error("connection closed while waiting for a `{expected}` message")]
    Closed { expected: &'static str },
}

impl ProtoError {
    pub(crate) fn io(action: &'static str) -> impl FnOnce(io::Error) -> ProtoError {
        move |source| ProtoError::Io { action, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
