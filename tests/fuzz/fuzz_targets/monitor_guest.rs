//! The monitor as a hostile guest drives it: sequences of guest messages
//! (one JSON message per line, as the frame decoder hands them on) into a
//! monitor of a three-container pod over a fresh pod directory. Nothing
//! may panic; the monitor writes nowhere but the pod directory; the logs
//! stay within their limits however many records, restarts and container
//! names the guest sends; the state file stays readable.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use peapod::sandbox::crilog::LogLimits;
use peapod::sandbox::monitor::fuzzing::GuestFeed;
use peapod::sandbox::state::PodState;
use peapod_proto::{decode, encode, ContainerEvent, GuestMsg, PodPhase, Stream, MAX_FRAME};

const LIMITS: LogLimits = LogLimits {
    max_size: 4096,
    max_files: 2,
};

fn base() -> PathBuf {
    std::env::temp_dir().join(format!("peapod-fuzz-monitor-{}", std::process::id()))
}

/// Bytes beneath `dir`, and whether anything there is not a regular file
/// or directory.
fn usage(dir: &Path) -> (u64, Vec<PathBuf>) {
    let mut total = 0;
    let mut odd = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            } else {
                odd.push(e.path());
            }
        }
    }
    (total, odd)
}

/// Seeds: what a guest says in an ordinary pod's life.
fn seeds(dir: &Path) {
    let line = |m: &GuestMsg| String::from_utf8(encode(m).unwrap()).unwrap();
    let started = |c: &str, init| GuestMsg::ContainerEvent {
        container: c.into(),
        init,
        event: ContainerEvent::Started { pid: 7 },
    };
    let log = |c: &str, data: &[u8], partial| GuestMsg::Log {
        container: c.into(),
        stream: Stream::Stdout,
        timestamp_ns: 1,
        partial,
        data: data.to_vec(),
    };
    let exited = |c: &str, code| GuestMsg::ContainerEvent {
        container: c.into(),
        init: false,
        event: ContainerEvent::Exited {
            code: Some(code),
            signal: None,
            oom_killed: false,
            message: Some("é".repeat(3000)),
        },
    };
    let life = [
        GuestMsg::Ready { uptime_ms: 5 },
        started("init", true),
        log("init", b"init ran\n", false),
        exited("init", 0),
        GuestMsg::ContainerEvent {
            container: "app".into(),
            init: false,
            event: ContainerEvent::Created { pid: 8 },
        },
        GuestMsg::ContainerEvent {
            container: "app".into(),
            init: false,
            event: ContainerEvent::HookFailed {
                hook: peapod_proto::HookKind::PostStart,
                message: "ü".repeat(600),
            },
        },
        started("app", false),
        started("side", false),
        log("app", b"partial", true),
        log("app", b" line\n", false),
        GuestMsg::ContainerEvent {
            container: "side".into(),
            init: false,
            event: ContainerEvent::Restarting {
                restart_count: 1,
                backoff_ms: 10,
            },
        },
        exited("app", 3),
        GuestMsg::ExecStarted { exec_id: 1 },
        GuestMsg::Error {
            message: "exec 1: no such file".into(),
        },
        GuestMsg::PodExited {
            phase: PodPhase::Failed,
            reason: "app failed".into(),
        },
        log("app", b"after the end\n", false),
    ];
    let text: Vec<String> = life.iter().map(line).collect();
    std::fs::write(dir.join("seed-life"), text.join("\n")).unwrap();
    std::fs::write(
        dir.join("seed-logs"),
        [text[6].clone(), text[8].clone(), text[9].clone()].join("\n"),
    )
    .unwrap();
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("PEAPOD_FUZZ_SEED_DIR").filter(|d| !d.is_empty()) {
            seeds(Path::new(&dir));
        }
    },
    |data: &[u8]| {
        let base = base();
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("pod");
        std::fs::create_dir_all(&dir).unwrap();
        let feed = GuestFeed::new(&dir, LIMITS);
        let mut fed = 0u64;
        for line in data.split(|&b| b == b'\n') {
            if let Ok(msg) = decode::<GuestMsg>(line) {
                feed.feed(msg);
                fed += 1;
            }
        }
        // Nothing beside the pod directory.
        let top: Vec<_> = std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(top, [std::ffi::OsString::from("pod")], "the monitor wrote outside the pod directory");
        // Logs within their limits (each container's files, the one being
        // written among them; a record may end a file past its size), the
        // state file within what the guest's messages could put in it.
        let (bytes, odd) = usage(&dir);
        assert!(odd.is_empty(), "the monitor made {odd:?}");
        let logs = 3 * u64::from(LIMITS.max_files) * (LIMITS.max_size + MAX_FRAME as u64);
        assert!(
            bytes <= logs + 64 * 1024 + MAX_FRAME as u64,
            "{bytes} bytes in the pod directory after {fed} messages"
        );
        let state = PodState::load(&dir).expect("the state file stays readable");
        assert_eq!(state, feed.state());
    }
);
