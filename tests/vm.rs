//! VM tests: the real VMM boots the real guest kernel (scripts/build-kernel)
//! to peapod-init, as an unprivileged user. Directly on VT-x/AMD-V hosts,
//! through scripts/kvm-runner elsewhere; never skipped.

mod common;

use common::*;
use peapod::vmm::boot::Initrd;

/// `peapod` as the VM tests run it: the test image store (`busybox:latest`
/// loaded) and the init under test.
fn peapod_env() -> String {
    format!(
        "PEAPOD_CACHE={} PEAPOD_INIT={} {}",
        image_cache().display(),
        init_binary().display(),
        peapod().display()
    )
}

#[test]
fn test_vm_runs_hello_pod_rootless() {
    // examples/hello.yaml end to end: its container's output comes back
    // from the guest with its name, the pod's result is the exit code.
    // Then Ctrl-C while the VM boots ends the pod and leaves nothing.
    let script = format!(
        r#"echo uid=$(id -u)
p() {{ env {env} "$@"; }}
p run --timings examples/hello.yaml; echo "hello=$?"
env {env} run examples/hello.yaml & r=$!
for i in $(seq 1 300); do p ps --output json | grep -q '"status": "Pending"' && break; sleep 0.05; done
kill -INT $r; wait $r; echo "interrupted=$?"
p ps --output json | tr -d ' 
'; echo
pgrep -u "$(id -u)" -x passt || pgrep -u "$(id -u)" -f '[_]_monitor|[p]eapod-monitor|[p]eapod-vmm|[_]_vmm' || echo no-processes-left
"#,
        env = peapod_env()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    out.expect_stdout(&["hello=0", "interrupted=130", "\n[]\n", "no-processes-left"]);
    assert!(
        out.stderr.contains("interrupted before it started"),
        "{out:?}"
    );
    assert!(out.stdout.contains("[hello] hello from hello"), "{out:?}");
    assert!(
        out.stderr.contains("peapod-init ready") && out.stderr.contains("VMM RSS excl. guest"),
        "timings are printed: {out:?}"
    );
    let uid: u32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .and_then(|u| u.trim().parse().ok())
        .expect("uid line");
    if host_boots_guests() && is_root() {
        eprintln!("note: ran as root on this host (rootless is proven through the runner)");
    } else {
        assert_ne!(uid, 0, "the pod must run as an unprivileged user: {out:?}");
    }
}

#[test]
fn test_vm_guest_without_working_init_fails_with_console_tail() {
    // An /init that exits at once: the kernel panics ("Attempted to kill
    // init"), resets (panic=-1), and peapod must say so, with the console;
    // with -d the Failed pod stays for `inspect`, which shows the console.
    let dir = TempDir::new("vm-init");
    let init = dir.0.join("exit-7");
    std::fs::write(&init, exit_elf(7)).unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "env {p} run --init {i} --boot-timeout 120 examples/hello.yaml; echo attached=$?; \
         env {p} run -d --init {i} --boot-timeout 120 examples/hello.yaml; echo detached=$?; \
         env {p} inspect hello; env {p} rm hello; echo rm=$?",
        p = peapod_env(),
        i = init.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("attached=1"), "{out:?}");
    assert!(out.stdout.contains("detached=1"), "{out:?}");
    assert!(
        out.stderr
            .contains("before peapod-init reported an exit status"),
        "{out:?}"
    );
    assert!(out.stderr.contains("last console lines"), "{out:?}");
    assert!(out.stderr.contains("Attempted to kill init"), "{out:?}");
    let inspect = &out.stdout[out.stdout.find("detached=1").unwrap()..];
    assert!(
        inspect.contains("\"status\": \"Failed\"") && inspect.contains("Attempted to kill init"),
        "inspect shows the Failed pod and its console: {out:?}"
    );
    assert!(out.stdout.contains("rm=0"), "{out:?}");
}

#[test]
fn test_vm_seed_pod_runs_with_enough_capacity() {
    // The same App + LogCollector pod that a 1.25 GiB node refuses (see
    // tests/cli.rs) is admitted and runs with 2 GiB: the collector sidecar
    // reads the app's log file from their shared emptyDir.
    let script = format!(
        "PEAPOD_CAPACITY_MEMORY=2Gi exec env {} run --timings examples/seed-app-logcollector.yaml",
        peapod_env()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    for n in 1..=3 {
        assert!(
            out.stdout
                .contains(&format!("[log-collector] collected: request {n} served")),
            "the collector read the app's log file from the shared volume: {out:?}"
        );
    }
    assert!(
        out.stderr.contains("of 1600"),
        "the VM got the pod's 1.5 GiB plus overhead: {out:?}"
    );
}

/// The seed's shared-volume pod: an init container, busybox httpd serving
/// what a second container writes into the shared emptyDir.
const WEB_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 3
  volumes:
    - name: html
      emptyDir: {}
  initContainers:
    - name: setup
      image: busybox:latest
      command: [sh, -c, "echo init-ran-first > /www/order"]
      volumeMounts: [{name: html, mountPath: /www}]
  containers:
    - name: httpd
      image: busybox:latest
      command: [httpd, -f, -p, "8080", -h, /www]
      volumeMounts: [{name: html, mountPath: /www}]
    - name: writer
      image: busybox:latest
      command:
        - sh
        - -c
        - |
          trap 'echo writer-got-term; exit 0' TERM
          cat /www/order
          echo hello-from-writer > /www/index.html
          i=0
          while true; do i=$((i+1)); echo tick $i; sleep 1 & wait; done
      volumeMounts: [{name: html, mountPath: /www}]
"#;

#[test]
fn test_vm_pod_lifecycle_detached_exec_logs_stop_rm() {
    // One VM pod through its whole life as an unprivileged user: run -d,
    // ps, exec (localhost to the other container, exit codes, errors),
    // logs, logs -f, a second run of the name refused, stop with the grace
    // period, rm (also of directories a container left locked in the
    // volume); file operations of every kind on the volume, under the
    // VMM's seccomp filters; the VMM a child of the monitor, every thread
    // of it filtered; a VMM killed with -9 fails the pod while its monitor
    // lives on; then a monitor killed with -9 shows as Dead and rm cleans up
    // its state and reservation. The disk emptyDir lives in the user's data
    // directory, not the runtime tmpfs, and goes with the pod; a pod whose
    // emptyDir outgrows its sizeLimit is evicted, as the kubelet does.
    let dir = TempDir::with_mode("vm-life", 0o777);
    dir.write("web.yaml", WEB_POD);
    dir.write(
        "evict.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: evict}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: data, emptyDir: {sizeLimit: 1Mi}}]
  containers:
    - name: filler
      image: busybox:latest
      command: [sh, -c, "dd if=/dev/zero of=/data/f bs=1M count=4 && sync && exec sleep 3600"]
      volumeMounts: [{name: data, mountPath: /data}]
"#,
    );
    let script = format!(
        r#"set -u
p() {{ env {env} "$@"; }}
cd {dir}
p run -d web.yaml; echo "run-d=$?"
for i in $(seq 1 100); do p logs web -c writer 2>/dev/null | grep -q 'tick 2' && break; sleep 0.5; done
p ps
vol=$(p inspect web | sed -n 's/^ *"path": "\(.*\/html\)",$/\1/p')
case "$vol" in "$HOME"/.local/share/peapod/pods/web-*/html) echo volume-in-data-dir ;; *) echo "volume at $vol" ;; esac
test -f "$vol/index.html" && echo volume-on-disk
p exec web -c writer -- wget -q -O - http://127.0.0.1:8080/; echo "exec-wget=$?"
p exec web -c writer -- sh -c 'echo out-$(hostname); exit 7'; echo "exec-rc=$?"
p exec web -c nope -- true; echo "exec-missing=$?"
echo stdin-data | p exec -i web -c httpd -- cat; echo "exec-stdin=$?"
p exec -t web -c writer -- sh -c 'tty; exit 3'; echo "exec-tty=$?"
p exec web -c writer -- sh -c 'mkdir -p /www/locked/sub && touch /www/locked/sub/f && chmod 555 /www/locked/sub && chmod 0 /www/locked'; echo "locked=$?"
p exec web -c writer -- sh -c '
  set -e; cd /www; mkdir d; echo a > d/a; ln -s a d/sym; readlink d/sym >/dev/null
  mv d/a d/b; chmod 600 d/b; touch -d 2020-01-01 d/b; truncate -s 1M d/b
  dd if=/dev/zero of=d/c bs=4k count=4 conv=fsync 2>/dev/null; mkfifo d/fifo; stat d/b >/dev/null
  df /www >/dev/null; ls -la d >/dev/null; cp -a d e; sync; rm -rf d e
  find / -xdev -type f 2>/dev/null | head -200 | xargs cat >/dev/null 2>&1 || true'
echo "fsops=$?"
vmm=$(p inspect web | sed -n 's/.*"vmm_pid": \([0-9]*\).*/\1/p')
test "$(awk '{{print $4}}' "/proc/$vmm/stat")" = "$(p inspect web | sed -n 's/.*"monitor_pid": \([0-9]*\).*/\1/p')" && echo vmm-is-monitor-child
grep -q 'NoNewPrivs:.1' "/proc/$vmm/status" && echo vmm-no-new-privs
echo "vmm-threads: $(ls /proc/$vmm/task | wc -l), unfiltered: $(grep -L 'Seccomp:.2' /proc/$vmm/task/*/status | wc -l)"
p logs web -c writer | head -3
p run -d web.yaml; echo "run-again=$?"
p logs -f web -c writer > follow.txt 2>&1 &
p stop web; echo "stop=$?"
wait; echo "follow-ended=$?"
tail -2 follow.txt
p ps --output json
p exec web -c writer -- true; echo "exec-ended=$?"
p rm web; echo "rm=$?"
test -e "$vol" || echo volume-removed
p logs web; echo "logs-gone=$?"
p run -d web.yaml; echo "run-d2=$?"
vmm=$(p inspect web | sed -n 's/.*"vmm_pid": \([0-9]*\).*/\1/p')
kill -9 "$vmm"; sleep 1
p ps
p inspect web | grep -o '"reason": "the VMM process was killed by signal 9 (Killed)'
p rm web; echo "rm-vmm-killed=$?"
p run -d web.yaml; echo "run-d3=$?"
pid=$(p inspect web | sed -n 's/.*"monitor_pid": \([0-9]*\).*/\1/p')
kill -9 "$pid"; sleep 1
p ps
p rm web; echo "rm-dead=$?"
p run -d evict.yaml; echo "evict-run=$?"
p wait evict --for=completed --timeout 120; echo "evict-wait=$?"
p inspect evict | grep -o '"reason": "Evicted: emptyDir volume \\"data\\" uses [0-9]* bytes'
p rm evict; echo "evict-rm=$?"
ls "$HOME/.local/share/peapod/pods" | wc -l | sed 's/^/volumes-left: /'
p ps --output json
"#,
        env = peapod_env(),
        dir = dir.0.display(),
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    let o = &out.stdout;
    out.expect_stdout(&[
        "run-d=0",
        "hello-from-writer",
        "exec-wget=0",
        "out-web",
        "exec-rc=7",
        "exec-missing=2",
        "stdin-data",
        "exec-stdin=0",
        "/dev/pts/",
        "exec-tty=3",
        "locked=0",
        "fsops=0",
        "vmm-is-monitor-child",
        "vmm-no-new-privs",
        "unfiltered: 0",
        "init-ran-first",
        "run-again=2",
        "stop=0",
        "follow-ended=0",
        "writer-got-term",
        "exec-ended=2",
        "rm=0",
        "logs-gone=2",
        "run-d2=0",
        "\"reason\": \"the VMM process was killed by signal 9 (Killed)",
        "rm-vmm-killed=0",
        "run-d3=0",
        "rm-dead=0",
        "volume-in-data-dir",
        "volume-on-disk",
        "volume-removed",
        "evict-run=0",
        "evict-wait=1",
        "\"reason\": \"Evicted: emptyDir volume \\\"data\\\" uses ",
        "evict-rm=0",
        "volumes-left: 0",
    ]);
    assert!(
        out.stderr.contains("pod web has no container nope"),
        "{out:?}"
    );
    assert!(out.stderr.contains("a pod named web"), "{out:?}");
    // ps showed the pod running with both containers ready, Failed (the
    // monitor lives on) after its VMM was killed, then Dead after the
    // monitor was killed, with the reason.
    assert!(
        o.contains("web                      Running    2/2"),
        "{out:?}"
    );
    assert!(o.contains("web                      Failed"), "{out:?}");
    assert!(o.contains("web                      Dead"), "{out:?}");
    assert!(out.stderr.contains("its monitor (pid"), "{out:?}");
    // The last `ps --output json` lists nothing: state and reservation gone.
    assert!(o.trim_end().ends_with("[]"), "{out:?}");
}

#[test]
fn test_vm_guest_mounts_virtio_fs_share() {
    // The VMM's in-process virtio-fs device serves a host directory that
    // the real guest kernel mounts: peapod-init lists it on the console.
    if rerun_on_guest_capable_kvm("test_vm_guest_mounts_virtio_fs_share") {
        return;
    }
    let kvm = peapod::vmm::vstate::kvm::open_kvm().unwrap();
    let share = TempDir::new("vm-share");
    std::fs::write(share.0.join("from-the-host.txt"), "hello").unwrap();
    std::fs::create_dir(share.0.join("volumes")).unwrap();
    let cfg = peapod::vmm::VmConfig {
        mem_bytes: 128 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: false,
        vsock_uds: None,
        fs_shares: vec![peapod::vmm::FsShare {
            tag: "podshare".into(),
            path: share.0.clone(),
            read_only: true,
        }],
        net: None,
    };
    let mut vm = peapod::vmm::Vm::new(&kvm, &cfg).unwrap();
    let init = std::fs::read(init_binary()).unwrap();
    let initrd = peapod::vmm::boot::initramfs::build(init).unwrap();
    let mut cmdline = peapod::sandbox::launch::kernel_cmdline("share-test", false).unwrap();
    cmdline
        .insert(peapod_proto::CMDLINE_SHARE_TAG, "podshare")
        .unwrap();
    vm.load_linux(&guest_kernel(), Initrd::Bytes(&initrd), cmdline)
        .unwrap();
    let out = vm.run(Some(std::time::Duration::from_secs(120))).unwrap();
    let tail = out.console_tail.join("\n");
    assert_eq!(out.exit_status, Some(0), "{tail}");
    assert!(
        tail.contains("peapod-init: share podshare mounted: from-the-host.txt volumes"),
        "{tail}"
    );
}

#[test]
fn test_vm_pod_runs_in_guest_over_vsock_and_virtio_fs() {
    // The whole path inside a real guest, rootless: peapod-init leaves the
    // initramfs, mounts the pod share (the busybox image, served by the
    // VMM's virtio-fs device), connects to the host over the VMM's vsock
    // device, takes a pod, runs its container (overlay on the share,
    // pivot_root, its own PID namespace), and streams the container's output
    // and the pod's end back over vsock.
    use peapod_proto::{
        Backoff, Connection, ContainerEvent, GuestMsg, HostMsg, PodPhase, RestartPolicy, Stream,
        WirePod,
    };
    if rerun_on_guest_capable_kvm("test_vm_pod_runs_in_guest_over_vsock_and_virtio_fs") {
        return;
    }
    const PORT: u32 = 1024;
    let kvm = peapod::vmm::vstate::kvm::open_kvm().unwrap();
    let dir = TempDir::new("vm-agent");
    let uds = dir.0.join("vsock.sock");
    let listener =
        std::os::unix::net::UnixListener::bind(format!("{}_{PORT}", uds.display())).unwrap();
    let cfg = peapod::vmm::VmConfig {
        mem_bytes: 192 << 20,
        vcpus: 1,
        console_log: None,
        console_echo: std::env::var_os("PEAPOD_TEST_CONSOLE").is_some(),
        vsock_uds: Some(uds.clone()),
        fs_shares: vec![peapod::vmm::FsShare {
            tag: "podshare".into(),
            path: test_image().to_path_buf(),
            read_only: true,
        }],
        net: None,
    };
    let mut vm = peapod::vmm::Vm::new(&kvm, &cfg).unwrap();
    let initrd =
        peapod::vmm::boot::initramfs::build(std::fs::read(init_binary()).unwrap()).unwrap();
    let mut cmdline = peapod::sandbox::launch::kernel_cmdline("agent-test", false).unwrap();
    cmdline
        .insert(peapod_proto::CMDLINE_SHARE_TAG, "podshare")
        .unwrap();
    cmdline.insert("peapod.agent", &PORT.to_string()).unwrap();
    vm.load_linux(&guest_kernel(), Initrd::Bytes(&initrd), cmdline)
        .unwrap();
    let vm_thread =
        std::thread::spawn(move || vm.run(Some(std::time::Duration::from_secs(120))).unwrap());

    // Accept the guest's connection, unless the VM ends first.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if vm_thread.is_finished() || std::time::Instant::now() > deadline {
                    let outcome = vm_thread.join().unwrap();
                    panic!(
                        "the guest never connected over vsock:\n{}",
                        outcome.console_tail.join("\n")
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let mut conn = Connection::new(stream);
    let hello = conn.handshake_host("vm test").unwrap();
    assert!(hello.agent.contains("peapod-init"), "{hello:?}");
    let ready: GuestMsg = conn.recv().unwrap().unwrap();
    assert!(matches!(ready, GuestMsg::Ready { .. }), "{ready:?}");
    let container = sh("hello", "echo hello-from-$(hostname); cat /proc/1/comm");
    let pod = WirePod {
        name: "agent-test".into(),
        hostname: "agent-test".into(),
        init_containers: vec![],
        containers: vec![container],
        volumes: vec![],
        restart_policy: RestartPolicy::Never,
        grace_period_s: 5,
        backoff: Backoff {
            initial_ms: 100,
            max_ms: 1000,
        },
        share_process_namespace: false,
        network: None,
        sandbox: false,
        fs_group: None,
        sysctls: Vec::new(),
    };
    conn.send(&HostMsg::RunPod(Box::new(pod))).unwrap();
    let mut stdout = Vec::new();
    let mut started = false;
    let end = loop {
        match conn.recv::<GuestMsg>().unwrap() {
            Some(GuestMsg::Log {
                stream: Stream::Stdout,
                data,
                ..
            }) => stdout.extend_from_slice(&data),
            Some(GuestMsg::ContainerEvent {
                event: ContainerEvent::Started { .. },
                ..
            }) => started = true,
            Some(GuestMsg::PodExited { phase, reason }) => break (phase, reason),
            Some(other) => eprintln!("guest: {other:?}"),
            None => panic!("the guest closed the connection before the pod ended"),
        }
    };
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let outcome = vm_thread.join().unwrap();
    let tail = outcome.console_tail.join("\n");
    assert!(started, "{tail}");
    assert_eq!(end.0, PodPhase::Succeeded, "{end:?}\n{stdout}\n{tail}");
    assert!(
        stdout.contains("hello-from-agent-test"),
        "runs with the pod's hostname: {stdout}\n{tail}"
    );
    // sh runs its last command in place, so `cat` itself is PID 1 of the
    // container's own PID namespace.
    assert!(
        stdout.lines().any(|l| l == "cat"),
        "the container is PID 1 of its own namespace: {stdout}"
    );
    assert_eq!(
        outcome.exit_status,
        Some(0),
        "peapod-init reported the pod's success: {tail}"
    );
    assert!(
        tail.contains("peapod-init: share podshare mounted: busybox.tar oci rootfs"),
        "{tail}"
    );
}

#[test]
fn test_vm_memory_is_enforced_by_the_vm() {
    // A container past its limit is OOM-killed inside the guest (cgroup
    // memory.max) and reported as OOMKilled while its sibling runs on, and
    // the host never gives the VM more than the reservation. (A pod past
    // its total without limits makes the guest thrash its page cache for
    // minutes under the emulated runner before its OOM killer acts; the
    // bound it would show is the same one checked here.)
    let dir = TempDir::with_mode("vm-mem", 0o777);
    let hog =
        |mib: u32| format!("x=$(head -c {mib}m /dev/zero | tr '\\\\000' a); echo survived ${{#x}}");
    dir.write(
        "oom.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: oom}}\nspec:\n  restartPolicy: Never\n  \
             containers:\n  - name: hog\n    image: busybox:latest\n    command: [sh, -c, \"{}\"]\n    \
             resources: {{limits: {{memory: 32Mi}}}}\n  - name: calm\n    image: busybox:latest\n    \
             command: [sh, -c, \"sleep 7; echo calm-survived\"]\n    resources: {{limits: {{memory: 32Mi}}}}\n",
            hog(64)
        ),
    );
    let script = format!(
        "cd {dir}; env {p} run --keep --timings oom.yaml; echo oom=$?; env {p} inspect oom",
        p = peapod_env(),
        dir = dir.0.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert!(out.stdout.contains("oom=1"), "{out:?}");
    assert!(out.stdout.contains("[calm] calm-survived"), "{out:?}");
    assert!(!out.stdout.contains("[hog] survived"), "{out:?}");
    assert!(out.stderr.contains("OOMKilled"), "{out:?}");
    assert!(
        out.stdout.contains("\"reason\": \"OOMKilled\""),
        "inspect: {out:?}"
    );
    // The VM is 32 + 32 MiB + 64 MiB overhead: what the guest touched
    // stays within it, whatever the pod tried (KVM maps exactly the
    // reservation; the guest has nothing else to touch).
    let mib = |label: &str| -> f64 {
        out.stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("timings show the {label}: {out:?}"))
    };
    let touched = mib("guest memory touched");
    assert!(touched <= 128.0, "touched {touched} MiB of 128: {out:?}");
    assert!(out.stderr.contains("of 128"), "{out:?}");
    // What the hog touched went free when it was killed; the guest
    // reports it (virtio-balloon free page reporting, in passes 2 s
    // apart) while calm sleeps on, and the host drops it.
    let returned = mib("guest memory returned");
    assert!(returned >= 4.0, "returned {returned} MiB: {out:?}");
}

#[test]
fn test_vm_virtio_fs_keeps_containers_inside_the_share() {
    // An image whose root filesystem holds symlinks out of it (`/`, `..`
    // chains): inside the container they resolve in the guest, never to
    // the host file next to the image directory.
    let dir = TempDir::with_mode("vm-escape", 0o755);
    std::fs::write(dir.0.join("outside-marker"), "HOST-SECRET\n").unwrap();
    let img = dir.0.join("img");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(test_image().join("rootfs"))
        .arg(&img)
        .status()
        .unwrap();
    assert!(ok.success());
    std::os::unix::fs::symlink("/", img.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../../../..", img.join("up")).unwrap();
    std::os::unix::fs::symlink("../outside-marker", img.join("marker")).unwrap();
    dir.write(
        "escape.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: escape}}\nspec:\n  restartPolicy: Never\n  \
             containers:\n  - name: c\n    image: rootfs:{}\n    command: [sh, -c, \
             \"cat /marker /up/outside-marker /escape/../outside-marker /../../outside-marker; \
             ls /up/ | tr '\\\\n' ' '; echo; echo checked\"]\n",
            img.display()
        ),
    );
    let script = format!(
        "cd {}; exec env {} run --allow-host-path {} escape.yaml",
        dir.0.display(),
        peapod_env(),
        img.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    assert!(out.stdout.contains("[c] checked"), "{out:?}");
    assert!(
        !out.stdout.contains("HOST-SECRET") && !out.stderr.contains("HOST-SECRET"),
        "a container read a host file outside its image: {out:?}"
    );
    assert!(!out.stdout.contains("outside-marker"), "{out:?}");
}

#[test]
fn test_vm_host_path_volume_and_sidecar() {
    // A hostPath directory reaches the VM over its own virtio-fs share:
    // the container reads what the host put there, writes back through it,
    // and a readOnly mount of it refuses writes. A sidecar (an init
    // container with restartPolicy Always) runs beside the app and is
    // stopped once the app is done, without failing the pod.
    let dir = TempDir::with_mode("vm-hostpath", 0o777);
    let host = dir.0.join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::write(host.join("from-host.txt"), "hello-from-host\n").unwrap();
    dir.write(
        "pod.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hostpath
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  volumes:
    - name: host
      hostPath: {{path: {host}, type: Directory}}
  initContainers:
    - name: tailer
      image: busybox:latest
      restartPolicy: Always
      command: [sh, -c, "trap 'echo sidecar-got-term; exit 0' TERM; echo sidecar-up; while true; do sleep 0.2 & wait; done"]
  containers:
    - name: app
      image: busybox:latest
      command: [sh, -c, "cat /host/from-host.txt; echo from-guest > /host/from-guest.txt; (echo x > /ro/x) 2>/dev/null || echo ro-refused"]
      volumeMounts:
        - {{name: host, mountPath: /host}}
        - {{name: host, mountPath: /ro, readOnly: true}}
"#,
            host = host.display()
        ),
    );
    // What the guest wrote is checked where peapod ran (the runner's /tmp
    // is its own overlay).
    let script = format!(
        "cd {d}; env {p} run --allow-host-path {h} pod.yaml; echo rc=$?; \
         echo host-sees=$(cat {h}/from-guest.txt); ls {h}",
        d = dir.0.display(),
        p = peapod_env(),
        h = host.display()
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    out.expect_stdout(&[
        "[tailer] sidecar-up",
        "[app] hello-from-host",
        "[app] ro-refused",
        "[tailer] sidecar-got-term",
        "rc=0",
        "host-sees=from-guest",
    ]);
    assert!(
        !out.stdout.lines().any(|l| l == "x"),
        "the read-only mount wrote: {out:?}"
    );
}

#[test]
fn test_vm_pod_network_through_passt() {
    // The pod network without root: a virtio-net device backed by passt.
    // Out: a container reaches a server on the host's loopback through the
    // gateway address when its pod asks (peapod.io/host-loopback), and
    // not otherwise. In: busybox httpd in the pod, published as
    // hostPort 18080, serves from the host what another container wrote
    // into their shared volume (the seed's web example, whole). Two pods at
    // once on different host ports; a third asking for a taken port is
    // refused before it starts; --network none leaves only loopback. Then
    // the README's "peapod in your CI" flow on examples/web.yaml: run -d,
    // wait --for=running, its hostPort, ps --output json, logs
    // --all-containers, rm, wait --for=deleted.
    let dir = TempDir::with_mode("vm-net", 0o777);
    std::fs::create_dir(dir.0.join("www")).unwrap();
    std::fs::write(dir.0.join("www/index.html"), "served-by-the-host\n").unwrap();
    let pod = |name: &str, port: u16, loopback: bool| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{peapod.io/host-loopback: "{loopback}"}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: html, emptyDir: {{}}}}]
  containers:
    - name: web
      image: busybox:latest
      command: [httpd, -f, -p, "8080", -h, /html]
      ports: [{{containerPort: 8080, hostPort: {port}}}]
      volumeMounts: [{{name: html, mountPath: /html}}]
      resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}
    - name: writer
      image: busybox:latest
      command:
        - sh
        - -c
        - |
          echo page-of-{name} > /html/index.html
          gw=$(ip route | awk '/^default/ {{print $3}}')
          timeout 10 wget -q -O - http://$gw:18999/ && echo host-reached || echo host-not-reached
          exec sleep 3600
      volumeMounts: [{{name: html, mountPath: /html}}]
      resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}
"#
        )
    };
    dir.write("a.yaml", &pod("net-a", 18080, false));
    dir.write("b.yaml", &pod("net-b", 18081, true));
    dir.write("clash.yaml", &pod("net-c", 18080, false));
    dir.write(
        "none.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: net-none}\nspec:\n  restartPolicy: Never\n  \
         containers:\n  - name: c\n    image: busybox:latest\n    command: [sh, -c, \"echo links: \
         $(ls /sys/class/net)\"]\n",
    );
    let script = format!(
        r#"cd {dir}
p() {{ env {env} "$@"; }}
busybox httpd -p 127.0.0.1:18999 -h {dir}/www
p run -d a.yaml; echo "run-a=$?"
p run -d b.yaml; echo "run-b=$?"
p run -d clash.yaml; echo "run-clash=$?"
for i in $(seq 1 120); do p logs net-b -c writer 2>/dev/null | grep -q host-reached && break; sleep 0.5; done
for i in $(seq 1 120); do p logs net-a -c writer 2>/dev/null | grep -q host-not-reached && break; sleep 0.5; done
p logs net-a -c writer | sed 's/^/net-a: /'
p logs net-b -c writer | sed 's/^/net-b: /'
busybox wget -q -O - http://127.0.0.1:18080/
busybox wget -q -O - http://127.0.0.1:18081/
p rm -f net-a net-b
p run --network none none.yaml; echo "run-none=$?"
p run -d {repo}/examples/web.yaml; echo "web-run=$?"
p wait web --for=running --timeout 300; echo "web-wait=$?"
for i in $(seq 1 60); do busybox wget -q -O - http://127.0.0.1:8080/ && break; sleep 1; done
p ps --output json | tr -d ' \n' | grep -o '"name":"web","status":"Running"[^[]*"ip":"[0-9.]*","ports":\["8080->8080/tcp"\]' && echo web-json-ok
p logs web --all-containers
p rm -f web; echo "web-rm=$?"
p wait web --for=deleted --timeout 60; echo "web-deleted=$?"
"#,
        dir = dir.0.display(),
        env = peapod_env(),
        repo = repo().display(),
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    let o = &out.stdout;
    out.expect_stdout(&[
        "run-a=0",
        "run-b=0",
        "run-clash=2",
        "net-a: host-not-reached",
        "net-b: served-by-the-host",
        "net-b: host-reached",
        "page-of-net-a",
        "page-of-net-b",
        "[c] links: lo",
        "run-none=0",
        "web-run=0",
        "web: Running",
        "web-wait=0",
        "hello from web",
        "web-json-ok",
        "[writer] wrote /html/index.html",
        "web-rm=0",
        "web: deleted",
        "web-deleted=0",
    ]);
    assert!(
        out.stderr.contains("host port 18080") && out.stderr.contains("already in use"),
        "{out:?}"
    );
    assert!(
        !o.contains("links: eth0") && !o.contains("lo eth0"),
        "{out:?}"
    );
}

#[test]
fn test_vm_pod_network_udp_dns_and_passt_exit() {
    // UDP both ways: a container's datagram to the host's loopback (through
    // the gateway address, which the pod asks for) comes back from an echo server there, and one
    // sent from the host to hostPort 18997/UDP is echoed by a container.
    // DNS: a container looks up a name that only the test's resolver knows
    // (on the runner's 127.0.0.1:53, the host's resolver there) through its
    // /etc/resolv.conf, which also has the pod's dnsConfig. Then passt is killed under the running pod: `ps`
    // and `inspect` say the network is down and why, and the pod goes on
    // (exec still works: it does not need the network).
    let dir = TempDir::with_mode("vm-udp", 0o755);
    let tools = dir.0.join("tools");
    std::fs::create_dir(&tools).unwrap();
    std::fs::copy(nettool_binary(), tools.join("peapod-nettool")).unwrap();
    let in_runner = !host_boots_guests();
    dir.write(
        "udp.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: net-udp, annotations: {{peapod.io/host-loopback: "true"}}}}
spec:
  terminationGracePeriodSeconds: 1
  dnsConfig: {{searches: [peapod.example], options: [{{name: ndots, value: "1"}}]}}
  volumes: [{{name: tools, hostPath: {{path: {tools}, type: Directory}}}}]
  containers:
    - name: echo
      image: busybox:latest
      command: [/tools/peapod-nettool, udp-echo, "0.0.0.0:9999"]
      ports: [{{containerPort: 9999, hostPort: 18997, protocol: UDP}}]
      volumeMounts: [{{name: tools, mountPath: /tools, readOnly: true}}]
      resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}
    - name: client
      image: busybox:latest
      command:
        - sh
        - -c
        - |
          gw=$(ip route | awk '/^default/ {{print $3}}')
          /tools/peapod-nettool udp-ping $gw:18998 from-the-pod --timeout 30 && echo udp-out-ok
          sed 's/^/resolv.conf: /' /etc/resolv.conf
          nslookup pod-test.peapod.example && echo dns-ok
          echo client-done
          exec sleep 3600
      volumeMounts: [{{name: tools, mountPath: /tools, readOnly: true}}]
      resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}
"#,
            tools = tools.display()
        ),
    );
    let dns = if in_runner {
        "$T dns-serve 127.0.0.1:53 pod-test.peapod.example=192.0.2.77 2>$HOME/dns.log & d=$!"
    } else {
        "d=; echo 'note: DNS is checked in the runner only (its resolver is on 127.0.0.1:53)' >&2"
    };
    let script = format!(
        r#"cd {dir}
p() {{ env {env} "$@"; }}
T={dir}/tools/peapod-nettool
$T udp-echo 127.0.0.1:18998 & e=$!
{dns}
p run -d --allow-host-path {dir}/tools udp.yaml; echo "run=$?"
for i in $(seq 1 120); do p logs net-udp -c client 2>/dev/null | grep -q '^client-done' && break; sleep 0.5; done
sleep 1
p logs net-udp -c client
$T udp-ping 127.0.0.1:18997 from-the-host --timeout 30 && echo udp-in-ok
pod_dir=$(p inspect net-udp | sed -n 's/^  "directory": "\(.*\)",$/\1/p')
kill -9 "$(cat "$pod_dir/passt.pid")" && echo passt-killed
for i in $(seq 1 50); do p inspect net-udp | grep -q '"down": "passt exited' && break; sleep 0.2; done
p inspect net-udp | grep '"down"\|"status"'
p ps 2>&1
p exec net-udp -c client -- echo exec-without-network
p rm -f net-udp
kill $e $d 2>/dev/null
cat "$HOME/dns.log" 2>/dev/null
"#,
        dir = dir.0.display(),
        env = peapod_env(),
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    let o = &out.stdout;
    out.expect_stdout(&[
        "run=0",
        "reply: from-the-pod",
        "udp-out-ok",
        "reply: from-the-host",
        "udp-in-ok",
        "passt-killed",
        "\"status\": \"Running\"",
        "\"down\": \"passt exited (signal: 9",
        "exec-without-network",
    ]);
    assert!(
        o.contains("net-udp: network down: passt exited"),
        "ps says why: {out:?}"
    );
    if in_runner {
        for want in [
            "resolv.conf: nameserver 10.0.2.2\n",
            "resolv.conf: search peapod.example\n",
            "resolv.conf: options ndots:1\n",
        ] {
            assert!(o.contains(want), "the pod's resolv.conf: {out:?}");
        }
        assert!(
            o.contains("192.0.2.77") && o.contains("dns-ok"),
            "the lookup went through passt to the host's resolver: {out:?}"
        );
    }
}

#[test]
fn test_vm_config_maps_secrets_downward_api_and_claims() {
    // The real-world Pod YAML scenario in a VM, as an unprivileged user:
    // ConfigMap, Secret and downward API volumes (from the guest's memory,
    // read-only, a subPath, modes), env and envFrom, a --configmap file;
    // a PersistentVolumeClaim that a second pod reads; `peapod volume`.
    let dir = TempDir::with_mode("vm-config", 0o777);
    for (name, text) in common::config_scenario("busybox:latest") {
        dir.write(name, &text);
    }
    let script = format!(
        r#"set -u
p() {{ env {env} "$@"; }}
cd {dir}
p run --configmap extra.yaml config.yaml; echo "config=$?"
p run claim.yaml; echo "claim=$?"
p volume ls
p volume inspect store | grep -c '"used_by": \[\]'
p volume rm store; echo "volume-rm=$?"
p volume ls | wc -l | sed 's/^/volumes-listed: /'
"#,
        env = peapod_env(),
        dir = dir.0.display(),
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    let mut want: Vec<&str> = common::CONFIG_SCENARIO_OUTPUT.to_vec();
    want.extend(["config=0", "claim=0", "volume-rm=0", "volumes-listed: 1"]);
    out.expect_stdout(&want);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("store ") && l.contains(" 1Gi ")),
        "{out:?}"
    );
}

#[test]
fn test_vm_probes_hooks_and_wait_for_ready() {
    // Probes run by peapod-init in the guest, as an unprivileged user: a
    // readiness probe (httpGet on a named port) makes `wait --for=ready`
    // return only once the server listens; a liveness probe (exec) that
    // starts failing restarts its container, with the reason in inspect; a
    // startup probe (tcpSocket) gates the container's readiness. Then, in
    // the same boot, lifecycle hooks: postStart ran by the time the
    // container runs, `stop` runs preStop before SIGTERM and sends another
    // container its own stop signal; termination messages in inspect.
    let dir = TempDir::with_mode("vm-probes", 0o777);
    for (name, text) in common::hooks_scenario("busybox:latest") {
        dir.write(name, &text);
    }
    dir.write(
        "probed.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox:latest
    ports: [{name: http, containerPort: 8080}]
    command: [sh, -c, 'sleep 4; mkdir -p /www; echo ok > /www/index.html; echo listening; exec httpd -f -p 8080 -h /www']
    readinessProbe: {httpGet: {path: /index.html, port: http}, periodSeconds: 1}
  - name: flaky
    image: busybox:latest
    command: [sh, -c, 'touch /tmp/alive; echo started; sleep 8; rm /tmp/alive; exec sleep 3600']
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 2}
  - name: slow
    image: busybox:latest
    command: [sh, -c, 'sleep 2; mkdir -p /w; exec httpd -f -p 9000 -h /w']
    startupProbe: {tcpSocket: {port: 9000}, periodSeconds: 1, failureThreshold: 60}
"#,
    );
    let script = format!(
        r#"set -u
p() {{ env {env} "$@"; }}
cd {dir}
p run -d probed.yaml; echo "run-d=$?"
p wait probed --for=ready --timeout 1; echo "early-wait=$?"
p wait probed --for=ready --timeout 120; echo "ready-wait=$?"
p logs probed -c web | grep -c listening | sed 's/^/listening-lines: /'
p ps
for i in $(seq 1 90); do p inspect probed | grep -q '"restart_count": [1-9]' && break; sleep 1; done
p inspect probed | grep -o '"probe_failure": "Liveness probe failed: [^"]*"'
p logs probed -c flaky | grep -c started | sed 's/^/flaky-started: /'
p stop probed; echo "stop=$?"
p rm probed; echo "rm=$?"
p run -d hooks.yaml; echo "hooks-run=$?"
p wait hooks --for=running --timeout 120; echo "hooks-running=$?"
p exec hooks -c app -- cat /tmp/order | sed 's/^/order: /'
p stop hooks; echo "hooks-stop=$?"
p logs hooks -c app | sed 's/^/hooks-log: /'
p run fails.yaml 2>&1 | sed 's/^/fails: /'
p run -d fails.yaml >/dev/null; p wait fails --for=completed --timeout 120; echo "fails-wait=$?"
echo INSPECT-HOOKS; p inspect hooks; echo INSPECT-FAILS; p inspect fails; echo INSPECT-END
p rm hooks; p rm fails; echo "hooks-rm=$?"
"#,
        env = peapod_env(),
        dir = dir.0.display(),
    );
    let out = on_guest_capable_kvm(&["sh", "-c", &script]);
    out.expect_stdout(&[
        "run-d=0",
        "early-wait=1",
        "ready-wait=0",
        "listening-lines: 1",
        "probed                   Running    3/3",
        "\"probe_failure\": \"Liveness probe failed: ",
        "stop=0",
        "rm=0",
        "hooks-run=0",
        "hooks-running=0",
        "order: post-start",
        "hooks-stop=0",
        "hooks-log: post-start",
        "hooks-log: pre-stop",
        "fails:   config invalid: no port",
        "fails-wait=1",
        "hooks-rm=0",
    ]);
    assert!(out.stderr.contains("not ready: web"), "{out:?}");
    let between = |a: &str, b: &str| {
        let from = out.stdout.find(a).map(|i| i + a.len());
        let to = out.stdout.find(b);
        match (from, to) {
            (Some(f), Some(t)) if f <= t => out.stdout[f..t].to_owned(),
            _ => panic!("no {a}..{b} in {out:?}"),
        }
    };
    common::check_hooks_inspect(
        &between("INSPECT-HOOKS", "INSPECT-FAILS"),
        &between("INSPECT-FAILS", "INSPECT-END"),
    );
}
