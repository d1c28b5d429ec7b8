//! Attached `peapod run`: print every container's output as it comes
//! (`[container] line`, stdout to stdout, stderr to stderr), stop the pod
//! on Ctrl-C (kill it on a second one), and exit with the pod's result.
//!
//! The output is read from the pod's CRI log files, as `peapod logs -f`
//! reads it: what the terminal shows is what the logs hold.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use peapod_proto::{ContainerState, PodPhase, Stream};

use super::run::RunArgs;
use super::Failure;
use crate::sandbox::api::{self, Request};
use crate::sandbox::crilog::{Follower, Line};
use crate::sandbox::monitor::CONSOLE_LOG;
use crate::sandbox::{self, PodState, Started};

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(50);

/// Print one line of a container's output.
pub fn print_line(prefix: Option<&str>, timestamps: bool, line: &Line) {
    let mut text = Vec::with_capacity(line.content.len() + 64);
    if !line.continued {
        if let Some(p) = prefix {
            text.extend_from_slice(format!("[{p}] ").as_bytes());
        }
        if timestamps {
            text.extend_from_slice(line.timestamp.as_bytes());
            text.push(b' ');
        }
    }
    let to_terminal = match line.stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    if to_terminal {
        escape_controls(&line.content, &mut text);
    } else {
        text.extend_from_slice(&line.content);
    }
    if !line.continues {
        text.push(b'\n');
    }
    // A closed stdout (`| head`) must not stop the pod's supervision.
    let _ = match line.stream {
        Stream::Stdout => std::io::stdout().lock().write_all(&text),
        Stream::Stderr => std::io::stderr().lock().write_all(&text),
    };
}

/// Guest output as a terminal may show it: control characters (C0 but
/// tab, DEL, and C1 written as UTF-8) become `\xNN`, so a container cannot
/// move the cursor, retitle the window or answer for the user. Output to a
/// file or pipe, and `-t` sessions, keep every byte.
pub fn escape_controls(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        let c1 = b == 0xc2 && data.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n));
        if c1 {
            out.extend_from_slice(format!("\\x{b:02x}\\x{:02x}", data[i + 1]).as_bytes());
            i += 2;
        } else if (b < 0x20 && b != b'\t' && b != b'\n') || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

/// What SIGINT (Ctrl-C) and SIGTERM do to an attached run.
enum Phase {
    /// The monitor runs but the pod has not started: kill the monitor (the
    /// VMM, and with it the VM and passt); `run` then removes the pod.
    Starting { monitor: u32 },
    /// The pod runs: stop it with its grace period, kill it the second
    /// time.
    Running {
        dir: PathBuf,
        name: String,
        grace_s: u64,
    },
}

/// The signal thread of an attached run: SIGINT and SIGTERM are blocked in
/// every thread and taken by it, so they act on the pod, never just end
/// the CLI while the pod goes on.
pub struct Signals {
    phase: Arc<Mutex<Phase>>,
    received: Arc<AtomicU32>,
}

impl Signals {
    /// Block the signals here (and in threads started later: call it
    /// before starting any) and start the thread, with the pod starting
    /// under `monitor`.
    pub fn install(monitor: u32) -> std::io::Result<Signals> {
        // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset,
        // and every pointer passed points to that local set.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            set
        };
        let signals = Signals {
            phase: Arc::new(Mutex::new(Phase::Starting { monitor })),
            received: Arc::new(AtomicU32::new(0)),
        };
        let phase = signals.phase.clone();
        let received = signals.received.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let mut sig = 0;
                // SAFETY: `set` is an initialised sigset_t and `sig` a valid
                // out-pointer; both outlive the call.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                let what = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                let first = received.fetch_add(1, Ordering::SeqCst) == 0;
                match &*phase.lock().unwrap_or_else(|e| e.into_inner()) {
                    Phase::Starting { monitor } => {
                        log::warn!("received {what} while the pod starts: ending it");
                        // SAFETY: kill has no memory effects. The monitor
                        // is our child and not yet waited for, so its pid
                        // cannot have been reused.
                        unsafe { libc::kill(*monitor as libc::pid_t, libc::SIGKILL) };
                    }
                    Phase::Running { dir, name, grace_s } => {
                        let req = if first {
                            log::warn!(
                                "received {what}: stopping pod {name} ({grace_s} s grace period; \
                                 again to kill it)"
                            );
                            Request::Stop {
                                grace_period_s: None,
                            }
                        } else {
                            log::warn!("received {what}: killing pod {name}");
                            Request::Kill {}
                        };
                        if let Err(e) = api::call(dir, &req) {
                            log::warn!("cannot reach the pod's monitor: {e}");
                        }
                    }
                }
            })?;
        Ok(signals)
    }

    /// The pod has started: from now on a signal stops it. One received
    /// while it started (the monitor is being killed) still counts.
    fn running(&self, dir: &Path, name: &str, grace_s: u64) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Running {
            dir: dir.to_owned(),
            name: name.to_owned(),
            grace_s,
        };
    }

    /// Whether a signal has been received.
    pub fn interrupted(&self) -> bool {
        self.received.load(Ordering::SeqCst) > 0
    }
}

/// Copies new guest console output to stderr (`--console`).
struct ConsoleTail {
    offset: u64,
}

impl ConsoleTail {
    fn poll(&mut self, dir: &Path) {
        let Ok(mut f) = File::open(dir.join(CONSOLE_LOG)) else {
            return;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            self.offset += buf.len() as u64;
            let _ = std::io::stderr().lock().write_all(&buf);
        }
    }
}

/// Follow the pod started by `run` to its end.
pub fn attach(
    name: &str,
    mut started: Started,
    signals: Option<&Signals>,
    args: &RunArgs,
) -> Result<ExitCode, Failure> {
    let dir = started.dir.clone();
    let state = PodState::load(&dir).map_err(|e| {
        Failure::Runtime(anyhow!(e).context(format!("pod {name}: cannot read its state")))
    })?;
    if let Some(signals) = signals {
        signals.running(&dir, name, grace_period(&state));
    }
    let mut followers: Vec<Follower> = state
        .containers
        .iter()
        .map(|c| Follower::new(&dir, &c.status.name, false))
        .collect();
    let mut console = args.console.then_some(ConsoleTail { offset: 0 });
    let mut last = state;
    loop {
        if let Ok(s) = PodState::load(&dir) {
            last = s;
        }
        let monitor_gone = !matches!(started.monitor.try_wait(), Ok(None));
        let ended = last.ended() || monitor_gone;
        if let Some(c) = &mut console {
            c.poll(&dir);
        }
        for f in &mut followers {
            let prefix = f.container().to_owned();
            for line in f.poll(ended) {
                print_line(Some(&prefix), false, &line);
            }
        }
        if ended {
            break;
        }
        std::thread::sleep(POLL);
    }
    // The monitor writes the last state, releases the reservation and exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(started.monitor.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if matches!(started.monitor.try_wait(), Ok(None)) {
        // Its guest said the pod ended but the VM did not: end it.
        log::warn!("the pod's monitor did not exit after the pod ended: killing it");
        let _ = started.monitor.kill();
        let _ = started.monitor.wait();
    }
    if let Ok(s) = PodState::load(&dir) {
        last = s;
    }
    if args.timings {
        print_timings(&last);
    }
    let result = result_of(&last);
    if !args.keep {
        if let Err(e) = sandbox::remove(&dir) {
            log::warn!("{e:#}");
        }
    }
    result
}

/// The pod's grace period (the monitor applies it).
fn grace_period(state: &PodState) -> u64 {
    state.grace_period_s
}

/// Exit 0 when the pod succeeded, else 1 with the reason.
pub fn result_of(state: &PodState) -> Result<ExitCode, Failure> {
    let name = &state.name;
    match state.liveness() {
        sandbox::state::Liveness::Phase(PodPhase::Succeeded) => Ok(ExitCode::SUCCESS),
        _ => {
            let mut msg = format!(
                "pod {name} {}: {}",
                state.status_word(),
                state.status_reason()
            );
            msg.push_str(&container_notes(state));
            if !state.console_tail.is_empty() && !state.reason.contains("last console lines") {
                msg.push_str("\nlast console lines:");
                for l in state.console_tail.iter().rev().take(15).rev() {
                    msg.push_str("\n  ");
                    msg.push_str(l);
                }
            }
            Err(Failure::Runtime(anyhow!(msg)))
        }
    }
}

/// What the failed containers said: a failed lifecycle hook, a termination
/// message (the guest's text, its control characters escaped).
fn container_notes(state: &PodState) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .flat_map(|c| {
                let keep = !c.is_control() || c == '\n';
                let escaped: Vec<char> = if keep {
                    vec![c]
                } else {
                    c.escape_default().collect()
                };
                escaped
            })
            .collect()
    };
    let mut out = String::new();
    for c in &state.containers {
        let name = &c.status.name;
        if let Some(why) = &c.status.hook_failure {
            out.push_str(&format!("\ncontainer {name}: {}", clean(why)));
        }
        let ContainerState::Terminated(t) = &c.status.state else {
            continue;
        };
        let Some(message) = t.message.as_deref().filter(|m| !m.trim().is_empty()) else {
            continue;
        };
        if t.code == Some(0) {
            continue;
        }
        out.push_str(&format!(
            "\ncontainer {name} said (its termination message):"
        ));
        let lines: Vec<&str> = message.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            out.push_str("\n  ");
            out.push_str(&clean(line));
        }
    }
    out
}

/// `--timings`: where the time went and what memory the VMM used.
pub fn print_timings(state: &PodState) {
    eprintln!("timings (since process start):");
    for (what, value) in &state.timings {
        if let Some(label) = what.strip_suffix(" (MiB)") {
            let of = if label.starts_with("guest memory") {
                format!(" of {}", state.memory >> 20)
            } else {
                String::new()
            };
            eprintln!("  {label:<26} {value:>9.1} MiB{of}");
        } else if what == "guest uptime at ready" {
            eprintln!("  {what:<26} {value:>9.0} ms");
        } else {
            eprintln!("  {what:<26} {value:>9.1} ms");
        }
    }
    if let Some(end) = state.finished_ns {
        let ran = end.saturating_sub(state.created_ns) as f64 / 1e6;
        eprintln!("  {:<26} {ran:>9.1} ms", "pod ran for");
    }
}
