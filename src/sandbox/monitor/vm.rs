//! Running the guest: the VMM as a child process (with passt, the pod
//! network's host side, started here), or the native peapod-init as a
//! child.

use super::*;

pub(super) fn run_vm(monitor: &Arc<Monitor>) -> anyhow::Result<GuestOutcome> {
    let launch = &monitor.launch;
    let vm_launch: &VmLaunch = launch.vm.as_ref().context("no VM in a VM launch")?;
    let agent = UnixListener::bind(format!("{VSOCK_SOCKET}_{AGENT_PORT}"))
        .context("cannot listen for the guest's agent")?;
    let mut vmm_launch = VmmLaunch {
        kernel: vm_launch.kernel.clone(),
        init: launch.init.clone(),
        initrd: vm_launch.initrd.clone(),
        cmdline: guest_cmdline(monitor, vm_launch)?
            .as_cstring()
            .map_err(|e| anyhow!("kernel command line: {e}"))?
            .into_string()?,
        mem_bytes: vm_launch.mem_bytes,
        vcpus: vm_launch.vcpus,
        shares: vm_launch.shares.clone(),
        console_log: PathBuf::from(CONSOLE_LOG),
        vsock_uds: PathBuf::from(VSOCK_SOCKET),
        net: None,
        boot_timeout_s: launch.boot_timeout_s,
    };
    // passt before the VM, from this (the main, long-lived) thread: its
    // parent-death signal follows the thread that started it. It comes up
    // while the VMM starts (its watcher waits for it).
    let mut passt = None;
    let mut passt_stream = None;
    if let Some(net) = &vm_launch.net {
        let (p, stream, vmm_net, wire) = start_passt(net)?;
        log::info!(
            "network: passt (pid {}), pod address {}/{} via {}",
            p.pid(),
            wire.address,
            wire.prefix_len,
            wire.gateway
        );
        let shown = PodNetwork {
            address: format!("{}/{}", wire.address, wire.prefix_len),
            gateway: wire.gateway.to_string(),
            dns: wire.dns_servers.iter().map(ToString::to_string).collect(),
            ports: net.publish.iter().map(ToString::to_string).collect(),
            passt_pid: p.pid(),
            down: None,
        };
        monitor.update(|s| s.network = Some(shown));
        *lock(&monitor.network) = Some(wire);
        vmm_launch.net = Some(vmm_net);
        passt = Some(p);
        passt_stream = Some(stream);
        monitor.mark("passt started");
    }
    // The VMM, in a process of its own (a child of this one, from this
    // thread too).
    let exe = std::env::current_exe().context("cannot find peapod's own executable")?;
    let mut vmm = VmmProcess::spawn(&exe, &vmm_launch, passt_stream.as_ref())?;
    // The VMM holds its copy of passt's stream: passt sees the end of it
    // when the VMM ends.
    drop(passt_stream);
    *lock(&monitor.killer) = Some(vmm.killer());
    monitor.update(|s| s.vmm_pid = Some(vmm.pid()));
    log::info!(
        "VMM (pid {}): {} MiB, {} vCPU(s), kernel {}",
        vmm.pid(),
        vm_launch.mem_bytes >> 20,
        vm_launch.vcpus,
        vm_launch.kernel.display()
    );
    let passt_watch = match passt.take() {
        Some(p) => Some(watch_passt(monitor, p)?),
        None => None,
    };
    watch_volumes(monitor)?;
    let guest = spawn_guest_thread(monitor, agent)?;
    let mut end = None;
    while let Some(event) = vmm.next_event() {
        match event {
            VmmEvent::Created => monitor.mark("VM created"),
            VmmEvent::KernelLoaded => monitor.mark("kernel loaded"),
            VmmEvent::Running => monitor.mark("first KVM_RUN"),
            VmmEvent::Ended(o) => end = Some(Ok(o)),
            VmmEvent::Failed(why) => end = Some(Err(why)),
        }
    }
    let status = vmm.wait().context("cannot wait for the VMM");
    *lock(&monitor.killer) = None;
    monitor.guest_ended.store(true, Ordering::SeqCst);
    if let Some(watch) = passt_watch {
        // It sees the end within a poll and drops (kills) passt.
        let _ = watch.join();
    }
    if let Some(copy) = &vm_launch.console_log {
        if let Err(e) = std::fs::copy(CONSOLE_LOG, copy) {
            log::warn!("cannot copy the console log to {}: {e}", copy.display());
        }
    }
    // The VM is gone, and with it every vsock connection: the guest thread
    // sees the end of its stream.
    let _ = guest.join();
    let status = status?;
    let killed = || match lock(&monitor.stopping).clone() {
        Some(why) => format!("{why}: the VM was killed"),
        None => "the VM was killed".into(),
    };
    let outcome = match end {
        Some(Ok(o)) => o,
        Some(Err(why)) => return Err(anyhow!(why)),
        None => {
            let why = if monitor.killed.load(Ordering::SeqCst) {
                killed()
            } else {
                let why = vmm_process::describe_death(status);
                log::error!("{why}");
                why
            };
            return Ok((false, why, console_tail(Path::new(CONSOLE_LOG))));
        }
    };
    if let Some(uptime) = outcome.ready_uptime_ms {
        monitor.update(|s| {
            s.timings
                .push(("guest uptime at ready".into(), uptime as f64))
        });
    }
    let rss = outcome
        .process_rss
        .map(|r| r.saturating_sub(outcome.guest_resident));
    monitor.update(|s| {
        if let Some(rss) = rss {
            s.timings
                .push(("VMM RSS excl. guest (MiB)".into(), rss as f64 / 1048576.0));
        }
        s.timings.push((
            "guest memory touched (MiB)".into(),
            outcome.guest_resident as f64 / 1048576.0,
        ));
        s.timings.push((
            "guest memory returned (MiB)".into(),
            outcome.guest_returned as f64 / 1048576.0,
        ));
        if let Some(pss) = outcome.process_pss {
            s.timings
                .push(("VMM PSS incl. guest (MiB)".into(), pss as f64 / 1048576.0));
        }
    });
    Ok(match outcome.failure {
        None => (true, String::new(), Vec::new()),
        Some(msg) => (false, msg, outcome.console_tail),
    })
}

/// The last lines of the console log, when the VMM could not say them.
fn console_tail(path: &Path) -> Vec<String> {
    use std::io::Seek;
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::new();
    if f.seek(std::io::SeekFrom::Start(len.saturating_sub(8192)))
        .and_then(|_| f.take(8192).read_to_end(&mut buf))
        .is_err()
    {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if len > 8192 && !lines.is_empty() {
        // The read began inside a line.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(15);
    lines.into_iter().skip(skip).collect()
}

/// The guest kernel's command line for this pod.
pub(super) fn guest_cmdline(monitor: &Monitor, vm: &VmLaunch) -> anyhow::Result<Cmdline> {
    let mut c =
        crate::sandbox::launch::kernel_cmdline(&monitor.launch.pod.name, vm.verbose_console)
            .map_err(|e| anyhow!("kernel command line: {e}"))?;
    let cmd = |e: linux_loader::cmdline::Error| anyhow!("kernel command line: {e}");
    c.insert("peapod.agent", &AGENT_PORT.to_string())
        .map_err(cmd)?;
    let tags: Vec<&str> = vm.shares.iter().map(|s| s.tag.as_str()).collect();
    if !tags.is_empty() {
        c.insert(peapod_proto::CMDLINE_SHARE_TAGS, &tags.join(","))
            .map_err(cmd)?;
    }
    Ok(c)
}

pub(super) fn run_native(monitor: &Arc<Monitor>) -> anyhow::Result<GuestOutcome> {
    let launch = &monitor.launch;
    let listener = UnixListener::bind(INIT_SOCKET).context("cannot listen for peapod-init")?;
    let mut cmd = Command::new(&launch.init);
    cmd.arg("--native")
        .arg("--socket")
        .arg(INIT_SOCKET)
        .arg("--share")
        .arg(crate::sandbox::wire::SHARE_ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: prctl is async-signal-safe; it only sets this child's
    // parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            // The launcher (and with it the pod's PID 1) dies with us.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut launcher: Child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", launch.init.display()))?;
    log::info!(
        "peapod-init --native (pid {}): namespaces only, no VM",
        launcher.id()
    );
    let killer = Arc::new(ProcessKiller::new(launcher.id()));
    *lock(&monitor.killer) = Some(killer.clone());
    let guest = spawn_guest_thread(monitor, listener)?;
    let status = launcher.wait().context("cannot wait for peapod-init");
    killer.reaped();
    *lock(&monitor.killer) = None;
    monitor.guest_ended.store(true, Ordering::SeqCst);
    let status = status?;
    let _ = guest.join();
    let ended = lock(&monitor.state).ended();
    Ok(if ended {
        (true, String::new(), Vec::new())
    } else {
        let why = match lock(&monitor.stopping).clone() {
            Some(why) => format!("{why}: peapod-init was killed"),
            None => {
                format!("peapod-init exited ({status}) before the pod ended; see {MONITOR_LOG}")
            }
        };
        (false, why, Vec::new())
    })
}
