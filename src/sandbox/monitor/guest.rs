//! The connection to peapod-init: accept it, hand it the pod, then read
//! what it reports into the state and the logs.

use super::*;

/// Accept peapod-init's connection, give it the pod, then read what it
/// says until it closes the connection.
pub(super) fn spawn_guest_thread(
    monitor: &Arc<Monitor>,
    listener: UnixListener,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let m = monitor.clone();
    Ok(std::thread::Builder::new()
        .name("guest".into())
        .spawn(move || {
            let timeout = Duration::from_secs(m.launch.boot_timeout_s);
            let conn = match connect_guest(&m, &listener, timeout) {
                Ok(conn) => conn,
                Err(e) => {
                    log::error!("{e:#}");
                    m.update(|s| {
                        s.reason = format!("{e:#}");
                    });
                    m.kill();
                    return;
                }
            };
            drop(listener);
            m.mark("pod sent");
            m.reporter.send(&Report::Started);
            if let Some(secs) = m.launch.deadline_s {
                let weak = Arc::downgrade(&m);
                let _ = std::thread::Builder::new()
                    .name("deadline".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_secs(secs));
                        if let Some(m) = weak.upgrade() {
                            m.stop("DeadlineExceeded: activeDeadlineSeconds passed", None);
                        }
                    });
            }
            read_guest(&m, conn);
            lock(&m.guest).take();
            // Sessions still waiting hear that the pod is gone.
            lock(&m.execs).clear();
        })?)
}

pub(super) fn connect_guest(
    m: &Monitor,
    listener: &UnixListener,
    timeout: Duration,
) -> anyhow::Result<Connection<UnixStream>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(anyhow!(e).context("cannot accept peapod-init's connection")),
        }
        if m.guest_ended.load(Ordering::SeqCst) {
            return Err(anyhow!("the guest ended before peapod-init connected"));
        }
        if lock(&m.stopping).is_some() {
            return Err(anyhow!("stopped before peapod-init connected"));
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "peapod-init did not connect within {timeout:?}; see {}",
                m.dir.join(CONSOLE_LOG).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stream.set_nonblocking(false)?;
    let mut conn = Connection::new(stream);
    conn.get_ref().set_read_timeout(Some(timeout))?;
    conn.handshake_host(&format!("peapod {}", env!("CARGO_PKG_VERSION")))?;
    loop {
        match conn.recv::<GuestMsg>()? {
            Some(GuestMsg::Ready { uptime_ms }) => {
                log::info!("peapod-init ready (its uptime {uptime_ms} ms)");
                break;
            }
            Some(GuestMsg::Error { message }) => return Err(anyhow!("peapod-init: {message}")),
            Some(other) => log::debug!("before ready: {other:?}"),
            None => {
                return Err(anyhow!(
                    "peapod-init closed the connection before it was ready"
                ))
            }
        }
    }
    m.mark("peapod-init ready");
    conn.get_ref().set_read_timeout(None)?;
    let mut writer = Connection::new(conn.get_ref().try_clone()?);
    writer
        .get_ref()
        .set_write_timeout(Some(GUEST_WRITE_TIMEOUT))?;
    let mut pod = m.launch.pod.clone();
    pod.network = lock(&m.network).clone();
    writer.send(&HostMsg::RunPod(Box::new(pod)))?;
    *lock(&m.guest) = Some(writer);
    m.update(|s| s.started_ns = Some(now_ns()));
    Ok(conn)
}

pub(super) fn read_guest(m: &Monitor, mut conn: Connection<UnixStream>) {
    loop {
        match conn.recv::<GuestMsg>() {
            Ok(Some(msg)) => m.on_guest(msg),
            Ok(None) => return,
            Err(e) => {
                log::warn!("connection to peapod-init: {e}");
                return;
            }
        }
    }
}
