//! Wire types shared by the host (`peapod`) and the guest (`peapod-init`).
//!
//! This crate depends on neither side. Two protocols live here:
//!
//! - [`console`]: lines the guest prints on its serial console, which the VMM
//!   scans for (readiness, exit status);
//! - the stream protocol, over vsock in a VM or a Unix socket in native
//!   mode: length-delimited frames ([`frame`]) of JSON messages ([`msg`]),
//!   with binary data in base64 ([`bytes`]). The first frame each way is a
//!   [`Hello`] carrying [`PROTOCOL_VERSION`]; the host then sends the pod
//!   ([`WirePod`], in [`HostMsg::RunPod`]) and the guest streams events,
//!   logs and exec output back ([`GuestMsg`]).
//!
//! Everything a peer sends is checked: oversized or empty frames are
//! rejected before allocating, unknown message types and fields are decode
//! errors. [`Connection`] wraps a blocking stream; event loops use
//! [`FrameDecoder`] with [`encode`]/[`decode`].

pub mod bytes;
pub mod conn;
pub mod console;
pub mod error;
pub mod frame;
pub mod msg;
pub mod network;
pub mod pod;

pub use conn::Connection;
pub use console::{
    exit_line, parse_exit, parse_ready, ready_line, CMDLINE_POD_NAME, CMDLINE_SHARE_TAG,
    CMDLINE_SHARE_TAGS, CONSOLE_PREFIX, EXIT_MARK, GUEST_SHARE_DIR, READY_MARK,
};
pub use error::{ProtoError, Result};
pub use frame::{
    encode_frame, read_frame, write_frame, FrameDecoder, HEADER_LEN, MAX_CHUNK, MAX_FRAME,
};
pub use msg::{
    check_version, decode, encode, ContainerEvent, ContainerState, ContainerStatus, ExecId,
    GuestMsg, Hello, HostMsg, Message, PodPhase, PodStatus, Stream, Termination,
    MAX_TERMINATION_MESSAGE, PROTOCOL_VERSION,
};
pub use network::{WireHostEntry, WireNetwork};
pub use pod::{
    Backoff, HookKind, ProbeAction, ProbeKind, RestartPolicy, VolumeKind, WireBind, WireContainer,
    WireFile, WireMount, WirePod, WireProbe, WireVolume, POD_IP_TOKEN,
};

/// Cut `s` to at most `max` bytes, at a character boundary: bounding a
/// message that came from the other side never panics on a multi-byte
/// character.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn test_truncate_utf8_cuts_at_a_character_boundary() {
        let mut s = "aé".repeat(3);
        super::truncate_utf8(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_owned();
        super::truncate_utf8(&mut s, 5);
        assert_eq!(s, "abc");
    }
}
