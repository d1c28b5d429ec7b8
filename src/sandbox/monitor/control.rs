//! `api.sock`: stop, kill and exec requests from the CLI (and other
//! clients), exec sessions relayed to and from peapod-init.

use super::*;

/// The guest side of an exec session: what peapod-init sends for it,
/// queued until the session's client takes it, bounded in bytes
/// ([`EXEC_BACKLOG_BYTES`]) however the guest splits its output.
#[derive(Clone)]
pub(super) struct ExecTx {
    tx: mpsc::Sender<GuestMsg>,
    queued: Arc<AtomicUsize>,
}

/// The client side of an exec session's queue.
pub(super) struct ExecRx {
    rx: Receiver<GuestMsg>,
    queued: Arc<AtomicUsize>,
}

fn exec_cost(msg: &GuestMsg) -> usize {
    match msg {
        GuestMsg::ExecOutput { data, .. } => EXEC_MSG_COST + data.len(),
        _ => EXEC_MSG_COST,
    }
}

pub(super) fn exec_queue() -> (ExecTx, ExecRx) {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ExecTx {
            tx,
            queued: queued.clone(),
        },
        ExecRx { rx, queued },
    )
}

impl ExecTx {
    /// Queue `msg`; false when the session is over its bound (or gone):
    /// `msg` is dropped and so should the session be.
    pub(super) fn offer(&self, msg: GuestMsg) -> bool {
        let cost = exec_cost(&msg);
        let before = self.queued.fetch_add(cost, Ordering::SeqCst);
        if before + cost > EXEC_BACKLOG_BYTES {
            return false;
        }
        self.tx.send(msg).is_ok()
    }
}

impl ExecRx {
    fn recv_timeout(&self, timeout: Duration) -> Result<GuestMsg, mpsc::RecvTimeoutError> {
        let msg = self.rx.recv_timeout(timeout)?;
        self.queued.fetch_sub(exec_cost(&msg), Ordering::SeqCst);
        Ok(msg)
    }
}

pub(super) fn serve_api(m: &Arc<Monitor>, listener: &UnixListener) {
    let mut failing = false;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => {
                failing = false;
                s
            }
            // Out of descriptors (EMFILE) or memory: the error repeats at
            // once, so back off rather than spin a CPU; said once.
            Err(e) => {
                if !failing {
                    log::warn!("api.sock: cannot accept a connection: {e}");
                    failing = true;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let m = m.clone();
        let _ = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                let mut conn = Connection::new(stream);
                match conn.recv::<Request>() {
                    Ok(Some(req)) => handle(&m, conn, req),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = conn.send(&Reply::Error {
                            message: e.to_string(),
                            usage: false,
                        });
                    }
                }
            });
    }
}

pub(super) fn handle(m: &Arc<Monitor>, mut conn: Connection<UnixStream>, req: Request) {
    let reply = match req {
        Request::Stop { grace_period_s } => {
            m.stop("stopped by `peapod stop`", grace_period_s);
            Reply::Ok {}
        }
        Request::Kill {} => {
            *lock(&m.stopping) = Some("killed by `peapod rm -f`".into());
            m.kill();
            Reply::Ok {}
        }
        Request::Exec {
            container,
            command,
            tty,
            stdin,
        } => return exec(m, conn, container, command, tty, stdin),
        Request::ExecStdin { .. } | Request::ExecResize { .. } => Reply::Error {
            message: "no exec session on this connection".into(),
            usage: false,
        },
        Request::AddContainer { container, image } => add_container(m, *container, image),
        Request::Signal { container, signal } => signal_containers(m, container, signal),
        Request::RemoveContainer { container } => {
            let msg = HostMsg::RemoveContainer {
                container: container.clone(),
            };
            // What the state does not have, peapod-init does not either
            // (and the monitor hears nothing from it of unknown containers).
            let known = lock(&m.state).container(&container).is_some();
            let answer = if known {
                container_op(m, &container, &msg)
            } else {
                Err("the pod has no container of that name".into())
            };
            match answer {
                Ok(()) => Reply::Ok {},
                Err(message) => Reply::Error {
                    message: format!(
                        "pod {}: container {container}: {message}",
                        m.launch.pod.name
                    ),
                    usage: true,
                },
            }
        }
    };
    let _ = conn.send(&reply);
}

/// A signal for one container (which must exist) or all of them.
fn signal_containers(m: &Arc<Monitor>, container: Option<String>, signal: i32) -> Reply {
    if !(1..=64).contains(&signal) {
        return Reply::Error {
            message: format!("{signal} is not a signal number (1 to 64)"),
            usage: true,
        };
    }
    if let Some(name) = &container {
        if lock(&m.state).container(name).is_none() {
            return Reply::Error {
                message: format!(
                    "pod {}: container {name}: the pod has no container of that name",
                    m.launch.pod.name
                ),
                usage: true,
            };
        }
    }
    if m.send_guest(&HostMsg::Signal { container, signal }) {
        Reply::Ok {}
    } else {
        Reply::Error {
            message: format!("pod {}: peapod-init is not reachable", m.launch.pod.name),
            usage: false,
        }
    }
}

/// A container joins the sandbox: it is in the state (waiting) before
/// peapod-init hears of it, so that its start finds it; a refusal takes it
/// out again.
fn add_container(m: &Arc<Monitor>, container: peapod_proto::WireContainer, image: String) -> Reply {
    let pod = &m.launch.pod.name;
    let name = container.name.clone();
    if !m.launch.pod.sandbox {
        return Reply::Error {
            message: format!(
                "pod {pod} is not a sandbox: containers join only pods started as one"
            ),
            usage: true,
        };
    }
    let mut added = false;
    m.update(|s| {
        if s.container(&name).is_none() {
            s.containers
                .push(ContainerInfo::waiting(&name, false, &image));
            added = true;
        }
    });
    let msg = HostMsg::AddContainer {
        container: Box::new(container),
    };
    match container_op(m, &name, &msg) {
        Ok(()) => Reply::Ok {},
        Err(message) => {
            if added {
                m.update(|s| s.containers.retain(|c| c.status.name != name));
            }
            Reply::Error {
                message: format!("pod {pod}: container {name}: {message}"),
                usage: true,
            }
        }
    }
}

/// Send `msg` about container `name` to peapod-init and wait for its
/// answer (see `Monitor::on_event`).
fn container_op(m: &Arc<Monitor>, name: &str, msg: &HostMsg) -> Result<(), String> {
    let (tx, rx) = mpsc::sync_channel(1);
    match lock(&m.container_ops).entry(name.to_owned()) {
        std::collections::hash_map::Entry::Occupied(_) => {
            return Err("another request for it is under way".into())
        }
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(tx);
        }
    }
    let answer = if m.send_guest(msg) {
        rx.recv_timeout(CONTAINER_OP_TIMEOUT)
            .unwrap_or_else(|_| Err("peapod-init did not answer".into()))
    } else {
        Err("the pod is not running".into())
    };
    lock(&m.container_ops).remove(name);
    answer
}

pub(super) fn exec(
    m: &Arc<Monitor>,
    mut conn: Connection<UnixStream>,
    container: String,
    command: Vec<String>,
    tty: bool,
    stdin: bool,
) {
    let refuse = |conn: &mut Connection<UnixStream>, message: String| {
        let _ = conn.send(&Reply::Error {
            message,
            usage: true,
        });
    };
    let pod = m.launch.pod.name.clone();
    {
        let s = lock(&m.state);
        match s.container(&container) {
            None => {
                let names: Vec<&str> = s
                    .containers
                    .iter()
                    .map(|c| c.status.name.as_str())
                    .collect();
                return refuse(
                    &mut conn,
                    format!(
                        "pod {pod} has no container {container} (it has: {})",
                        names.join(", ")
                    ),
                );
            }
            Some(c) if !c.running() => {
                return refuse(
                    &mut conn,
                    format!(
                        "container {container} of pod {pod} is not running: {}",
                        c.state_word()
                    ),
                )
            }
            Some(_) => {}
        }
    }
    if command.is_empty() {
        return refuse(&mut conn, "no command to run".into());
    }
    let exec_id = m.next_exec.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = exec_queue();
    lock(&m.execs).insert(exec_id, tx);
    let sent = m.send_guest(&HostMsg::Exec {
        exec_id,
        container,
        command,
        tty,
        stdin,
        env: Vec::new(),
        working_dir: None,
        user: None,
    });
    if !sent {
        lock(&m.execs).remove(&exec_id);
        let _ = conn.send(&Reply::Error {
            message: format!("pod {pod} is not running"),
            usage: true,
        });
        return;
    }
    // Input from the CLI goes to the guest until the CLI closes.
    let done = Arc::new(AtomicBool::new(false));
    if let Ok(read_half) = conn.get_ref().try_clone() {
        let m2 = m.clone();
        let done2 = done.clone();
        let _ = std::thread::Builder::new()
            .name("exec-input".into())
            .spawn(move || {
                let mut input = Connection::new(read_half);
                let mut eof_sent = false;
                while let Ok(Some(req)) = input.recv::<Request>() {
                    let msg = match req {
                        Request::ExecStdin { data, eof } => {
                            eof_sent |= eof;
                            HostMsg::ExecStdin { exec_id, data, eof }
                        }
                        Request::ExecResize { rows, cols } => HostMsg::ExecResize {
                            exec_id,
                            rows,
                            cols,
                        },
                        _ => continue,
                    };
                    if done2.load(Ordering::SeqCst) || !m2.send_guest(&msg) {
                        return;
                    }
                }
                if !eof_sent && !done2.load(Ordering::SeqCst) {
                    m2.send_guest(&HostMsg::ExecStdin {
                        exec_id,
                        data: Vec::new(),
                        eof: true,
                    });
                }
            });
    }
    let mut started = false;
    loop {
        let reply = match rx.recv_timeout(Duration::from_secs(if started { 3600 } else { 30 })) {
            Ok(GuestMsg::ExecStarted { .. }) => {
                started = true;
                Reply::ExecStarted {}
            }
            Ok(GuestMsg::ExecOutput { stream, data, .. }) => Reply::ExecOutput { stream, data },
            Ok(GuestMsg::ExecExited { code, signal, .. }) => {
                let _ = conn.send(&Reply::ExecExited { code, signal });
                break;
            }
            Ok(GuestMsg::Error { message }) if !started => {
                // "exec 3: container \"x\" has exited": the part after the id.
                let why = message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, why)| why)
                    .to_owned();
                let _ = conn.send(&Reply::Error {
                    message: format!("pod {pod}: {why}"),
                    usage: true,
                });
                break;
            }
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) if started => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = conn.send(&Reply::Error {
                    message: "peapod-init did not start the process".into(),
                    usage: false,
                });
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let message = if m.guest_ended.load(Ordering::SeqCst) || lock(&m.guest).is_none() {
                    format!("pod {pod} ended")
                } else {
                    "the exec session's output was not read fast enough; it was dropped".into()
                };
                let _ = conn.send(&Reply::Error {
                    message,
                    usage: false,
                });
                break;
            }
        };
        if conn.send(&reply).is_err() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    lock(&m.execs).remove(&exec_id);
    let _ = conn.get_ref().shutdown(std::net::Shutdown::Both);
}
