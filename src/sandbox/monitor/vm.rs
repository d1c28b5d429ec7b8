//! Running the guest: the VM in this process (vCPUs, devices, the pod
//! network's host side), or the native peapod-init as a child.

use super::*;

pub(super) fn run_vm(monitor: &Arc<Monitor>) -> anyhow::Result<GuestOutcome> {
    let launch = &monitor.launch;
    let vm_launch: &VmLaunch = launch.vm.as_ref().context("no VM in a VM launch")?;
    let kvm = kvm::open_kvm()?;
    let flavour = kvm::detect_flavour(&kvm).context("cannot query KVM's MSR list")?;
    let init = std::fs::read(&launch.init)
        .with_context(|| format!("cannot read {}", launch.init.display()))?;
    let agent = UnixListener::bind(format!("{VSOCK_SOCKET}_{AGENT_PORT}"))
        .context("cannot listen for the guest's agent")?;
    let mut cfg = VmConfig {
        mem_bytes: vm_launch.mem_bytes,
        vcpus: vm_launch.vcpus,
        console_log: Some(PathBuf::from(CONSOLE_LOG)),
        console_echo: false,
        vsock_uds: Some(PathBuf::from(VSOCK_SOCKET)),
        fs_shares: vm_launch
            .shares
            .iter()
            .map(|s| FsShare {
                tag: s.tag.clone(),
                path: s.path.clone(),
                read_only: s.read_only,
            })
            .collect(),
        net: None,
    };
    // passt before the VM, from this (the main, long-lived) thread: its
    // parent-death signal follows the thread that started it.
    let mut passt = None;
    if let Some(net) = &vm_launch.net {
        let (p, net_cfg, wire) = start_passt(net)?;
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
        cfg.net = Some(net_cfg);
        passt = Some(p);
        monitor.mark("passt ready");
    }
    let initrd = initramfs::build(init).context("cannot build the initramfs")?;
    let mut vm = Vm::new(&kvm, &cfg)?;
    monitor.mark("VM created");
    let passt_watch = match passt.take() {
        Some(p) => Some(watch_passt(monitor, p, vm.net_link())?),
        None => None,
    };
    watch_volumes(monitor)?;
    let cmdline = guest_cmdline(monitor, vm_launch)?;
    vm.load_linux(&vm_launch.kernel, &initrd, cmdline)?;
    monitor.mark("kernel loaded");
    *lock(&monitor.killer) = Some(Killer::Vm(vm.stop_handle()));
    log::info!(
        "VM: {} MiB, {} vCPU(s), kernel {}",
        vm_launch.mem_bytes >> 20,
        vm_launch.vcpus,
        vm_launch.kernel.display()
    );
    let guest = spawn_guest_thread(monitor, agent)?;
    monitor.mark("first KVM_RUN");
    let outcome = vm.run(Some(Duration::from_secs(launch.boot_timeout_s)));
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
    let outcome: RunOutcome = outcome?;
    // The VM is gone, and with it every vsock connection: the guest thread
    // sees the end of its stream.
    let _ = guest.join();
    if let Some((_, uptime)) = outcome.ready {
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
    });
    let explained = match outcome.end {
        GuestEnd::Killed => Some(match lock(&monitor.stopping).clone() {
            Some(why) => format!("{why}: the VM was killed"),
            None => "the VM was killed".into(),
        }),
        _ => outcome.explain(flavour),
    };
    Ok(match explained {
        None => (true, String::new(), Vec::new()),
        Some(msg) => (false, msg, outcome.console_tail),
    })
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
    *lock(&monitor.killer) = Some(Killer::Native(launcher.id()));
    let guest = spawn_guest_thread(monitor, listener)?;
    let status = launcher.wait().context("cannot wait for peapod-init");
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
