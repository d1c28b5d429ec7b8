//! Where the guest console goes: a log file, optionally the terminal, and a
//! line scanner that notices peapod-init's readiness and exit lines.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

/// The most a console log file grows to: past it, the file becomes
/// `<file>.1` (replacing the last one) and a new one starts, so a guest
/// that prints without end holds at most twice this on the host's disk.
pub const CONSOLE_LOG_MAX: u64 = 4 << 20;

/// The console's log file, rotated at [`CONSOLE_LOG_MAX`].
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    written: u64,
}

impl ConsoleLog {
    /// Create (truncate) `path`.
    pub fn create(path: PathBuf) -> io::Result<ConsoleLog> {
        let file = File::create(&path)?;
        Ok(ConsoleLog {
            path,
            file,
            written: 0,
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.written > 0 && self.written + buf.len() as u64 > CONSOLE_LOG_MAX {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, old)?;
            self.file = File::create(&self.path)?;
            self.written = 0;
        }
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

/// Lines of console output kept for error reports.
pub const TAIL_LINES: usize = 40;
const MAX_LINE: usize = 4096;

/// What the console has seen so far.
#[derive(Debug, Default, Clone)]
pub struct ConsoleState {
    /// When the readiness line arrived, and the guest uptime it reported.
    pub ready: Option<(Instant, u64)>,
    /// The status peapod-init announced before resetting the VM.
    pub exit_status: Option<i32>,
    /// The last lines printed.
    pub tail: VecDeque<String>,
}

/// Shared view of the console state.
pub type SharedConsole = Arc<Mutex<ConsoleState>>;

/// A `Write` sink for the serial port.
pub struct ConsoleSink {
    log: Option<ConsoleLog>,
    echo: Option<Box<dyn Write + Send>>,
    line: Vec<u8>,
    state: SharedConsole,
    notify: EventFd,
}

impl ConsoleSink {
    /// A sink writing to `log` (if any) and `echo` (if any); `notify` is
    /// signalled whenever the readiness or exit line is seen.
    pub fn new(
        log: Option<ConsoleLog>,
        echo: Option<Box<dyn Write + Send>>,
        state: SharedConsole,
        notify: EventFd,
    ) -> Self {
        ConsoleSink {
            log,
            echo,
            line: Vec::new(),
            state,
            notify,
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line)
            .trim_end_matches('\r')
            .to_string();
        self.line.clear();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut signal = false;
        if let Some(uptime) = peapod_proto::parse_ready(&text) {
            state.ready.get_or_insert((Instant::now(), uptime));
            signal = true;
        } else if let Some(status) = peapod_proto::parse_exit(&text) {
            state.exit_status = Some(status);
            signal = true;
        }
        if state.tail.len() == TAIL_LINES {
            state.tail.pop_front();
        }
        state.tail.push_back(text);
        drop(state);
        if signal {
            let _ = self.notify.write(1);
        }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(log) = self.log.as_mut() {
            // A full disk must not stop the guest: drop console output instead.
            if let Err(e) = log.write_all(buf) {
                log::warn!("console log write failed, closing it: {e}");
                self.log = None;
            }
        }
        if let Some(echo) = self.echo.as_mut() {
            let _ = echo.write_all(buf);
        }
        for &b in buf {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(echo) = self.echo.as_mut() {
            let _ = echo.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn test_console_sink_sees_ready_and_exit_lines() {
        let state = SharedConsole::default();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut sink = ConsoleSink::new(None, None, state.clone(), evt.try_clone().unwrap());
        sink.write_all(b"[    0.1] booting\r\npeapod-init: re")
            .unwrap();
        assert!(state.lock().unwrap().ready.is_none());
        sink.write_all(b"ady uptime_ms=812\n").unwrap();
        assert_eq!(state.lock().unwrap().ready.unwrap().1, 812);
        assert_eq!(evt.read().unwrap(), 1);
        sink.write_all(b"peapod-init: exit status=3\n").unwrap();
        let s = state.lock().unwrap();
        assert_eq!(s.exit_status, Some(3));
        assert_eq!(s.tail.front().unwrap(), "[    0.1] booting");
    }

    #[test]
    fn test_console_sink_bounds_memory() {
        let state = SharedConsole::default();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut sink = ConsoleSink::new(None, None, state.clone(), evt);
        sink.write_all(&vec![b'a'; 10 * MAX_LINE]).unwrap();
        sink.write_all(b"\n").unwrap();
        for i in 0..(TAIL_LINES * 2) {
            sink.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        let s = state.lock().unwrap();
        assert_eq!(s.tail.len(), TAIL_LINES);
        assert_eq!(
            s.tail.back().unwrap(),
            &format!("line {}", TAIL_LINES * 2 - 1)
        );
    }

    /// A guest printing without end (a container root in the guest can
    /// write /dev/console) holds at most two files of CONSOLE_LOG_MAX.
    #[test]
    fn test_console_log_is_rotated_at_its_cap() {
        let dir = std::env::temp_dir().join(format!("peapod-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        let log = ConsoleLog::create(path.clone()).unwrap();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut sink = ConsoleSink::new(Some(log), None, SharedConsole::default(), evt);
        let line = [b'c'; 1024];
        for _ in 0..(3 * CONSOLE_LOG_MAX / 1024) {
            sink.write_all(&line).unwrap();
        }
        sink.write_all(b"\nlast line\n").unwrap();
        let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        assert!(size(&path) <= CONSOLE_LOG_MAX);
        assert!(size(&dir.join("console.log.1")) <= CONSOLE_LOG_MAX);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("last line\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
