//! The Pod YAML parser and validator, on any text: a pod file from the
//! internet may be anything. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = peapod::spec::parse(text, "fuzz.yaml");
    }
});
