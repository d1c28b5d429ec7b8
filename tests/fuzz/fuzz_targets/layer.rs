//! The layer unpacker on any tar stream (an image archive comes from the
//! internet): nothing may panic, and nothing may appear outside the
//! layer's directory; a canary file beside it must stay as it was.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use peapod::image::layer::{unpack, LayerName};

fuzz_target!(|data: &[u8]| {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir().join(format!(
        "peapod-fuzz-layer-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let dest = base.join("layer");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(base.join("canary"), b"canary").unwrap();
    let _ = unpack(
        data,
        &dest,
        LayerName {
            image: "fuzz",
            digest: "sha256:fuzz",
        },
    );
    let mut outside: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["canary", "layer"],
        "the layer wrote beside itself"
    );
    assert_eq!(std::fs::read(base.join("canary")).unwrap(), b"canary");
    // Unpacked trees may hold directories without write permission.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+rwx"])
        .arg(&dest)
        .status();
    std::fs::remove_dir_all(&base).unwrap();
});
