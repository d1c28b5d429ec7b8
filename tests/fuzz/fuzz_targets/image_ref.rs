//! Image references as a pod file writes them. Nothing may panic, and a
//! reference that parses prints as text that parses to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peapod::image::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = text.parse::<ImageRef>() {
        let again: ImageRef = r
            .to_string()
            .parse()
            .expect("a parsed reference prints as one");
        assert_eq!(again, r);
    }
});
