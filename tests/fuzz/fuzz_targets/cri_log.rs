//! The CRI log reader (`peapod logs`, attached runs, the shim): a log file
//! holds what a container wrote, framed by the monitor, but a reader must
//! not trust it. The input becomes a log file; the follower reads it in
//! bounded lines. Nothing may panic; no line is longer than the file.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use peapod::sandbox::crilog::{self, Follower};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let _ = crilog::parse_record(line);
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "peapod-fuzz-crilog-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let path = crilog::log_path(&dir, "c", 0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    let mut f = Follower::new(&dir, "c", false);
    for l in f.poll(true) {
        assert!(l.content.len() <= data.len(), "{}", l.content.len());
    }
    std::fs::remove_dir_all(&dir).unwrap();
});
