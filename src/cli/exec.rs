//! `peapod exec POD [-c C] [-i] [-t] -- CMD...`: run a command in a running
//! container, through the pod's monitor and peapod-init, and exit with its
//! exit code (128 + the signal when a signal ended it).

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use anyhow::anyhow;
use peapod_proto::Stream;

use super::Failure;
use crate::sandbox;
use crate::sandbox::api::{self, Reply, Request};

/// Arguments of `peapod exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's first app container).
    #[arg(short, long, value_name = "NAME")]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Puts the terminal in raw mode; restores it on drop.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawTerminal { saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

fn window_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills the winsize we pass.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0
            && ws.ws_row > 0
        {
            Some((ws.ws_row, ws.ws_col))
        } else {
            None
        }
    }
}

/// `peapod exec`.
pub fn exec(args: ExecArgs) -> Result<ExitCode, Failure> {
    let (dir, state) = sandbox::find(&args.pod).map_err(Failure::Usage)?;
    if state.ended() || !state.monitor_alive() {
        return Err(Failure::Usage(anyhow!(
            "pod {} is not running ({})",
            args.pod,
            state.status_word()
        )));
    }
    let container = match args.container {
        Some(c) => c,
        None => state
            .default_container()
            .map(|c| c.status.name.clone())
            .ok_or_else(|| Failure::Usage(anyhow!("pod {} has no containers", args.pod)))?,
    };
    let mut conn = api::connect(&dir).map_err(|e| {
        Failure::Runtime(anyhow!(e).context(format!("pod {}: cannot reach its monitor", args.pod)))
    })?;
    conn.send(&Request::Exec {
        container,
        command: args.command,
        tty: args.tty,
        stdin: args.interactive,
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    let mut writer = api::connect_clone(&conn).map_err(|e| Failure::Runtime(e.into()))?;
    let mut raw = None;
    loop {
        let reply = conn
            .recv::<Reply>()
            .map_err(|e| Failure::Runtime(e.into()))?
            .ok_or_else(|| Failure::Runtime(anyhow!("the pod's monitor closed the connection")))?;
        match reply {
            Reply::ExecStarted {} => {
                if args.tty {
                    raw = RawTerminal::enter();
                    if let Some((rows, cols)) = window_size() {
                        let _ = writer.send(&Request::ExecResize { rows, cols });
                    }
                }
                if args.interactive {
                    let mut w =
                        api::connect_clone(&conn).map_err(|e| Failure::Runtime(e.into()))?;
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 16 << 10];
                        let mut stdin = std::io::stdin().lock();
                        loop {
                            let n = stdin.read(&mut buf).unwrap_or(0);
                            let req = Request::ExecStdin {
                                data: buf[..n].to_vec(),
                                eof: n == 0,
                            };
                            if w.send(&req).is_err() || n == 0 {
                                return;
                            }
                        }
                    });
                } else {
                    let _ = writer.send(&Request::ExecStdin {
                        data: Vec::new(),
                        eof: true,
                    });
                }
            }
            Reply::ExecOutput { stream, data } => {
                // Without -t, a terminal shows the bytes escaped (see
                // attach::escape_controls); with -t they are the session's.
                let shown = |to_terminal: bool| {
                    if to_terminal && !args.tty {
                        let mut text = Vec::with_capacity(data.len());
                        super::attach::escape_controls(&data, &mut text);
                        std::borrow::Cow::Owned(text)
                    } else {
                        std::borrow::Cow::Borrowed(&data[..])
                    }
                };
                let data = match stream {
                    Stream::Stdout => shown(std::io::stdout().is_terminal()),
                    Stream::Stderr => shown(std::io::stderr().is_terminal()),
                };
                let _ = match stream {
                    Stream::Stdout => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&data).and_then(|()| out.flush())
                    }
                    Stream::Stderr => std::io::stderr().lock().write_all(&data),
                };
            }
            Reply::ExecExited { code, signal } => {
                drop(raw);
                let status = match (code, signal) {
                    (Some(c), _) => c,
                    (None, Some(s)) => 128 + s,
                    (None, None) => 1,
                };
                return Ok(ExitCode::from(status.clamp(0, 255) as u8));
            }
            Reply::Error { message, usage } => {
                drop(raw);
                return Err(if usage {
                    Failure::Usage(anyhow!("{message}"))
                } else {
                    Failure::Runtime(anyhow!("{message}"))
                });
            }
            Reply::Ok {} => {}
        }
    }
}
