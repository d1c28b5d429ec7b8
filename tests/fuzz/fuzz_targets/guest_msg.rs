//! The host side of the guest protocol: bytes a hostile guest sends on its
//! stream, cut at the places the first byte chooses, through the frame
//! decoder and into guest messages. Nothing may panic; an oversized frame
//! leaves the decoder failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peapod_proto::{decode, FrameDecoder, GuestMsg, MAX_CHUNK};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut frames = FrameDecoder::new();
    for piece in rest.chunks(step) {
        frames.push(piece);
        while let Ok(Some(payload)) = frames.next_frame() {
            if let Ok(GuestMsg::Log { data, .. } | GuestMsg::ExecOutput { data, .. }) =
                decode::<GuestMsg>(&payload)
            {
                assert!(data.len() <= MAX_CHUNK, "a chunk over the limit decoded");
            }
        }
    }
});
