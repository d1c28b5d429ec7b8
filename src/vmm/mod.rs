//! The KVM microVM: guest memory sized from the pod, vCPU threads, legacy
//! devices, virtio-mmio devices, Linux boot, and the event loop that runs
//! until the guest resets.

pub mod boot;
pub mod devices;
pub mod jail;
pub mod net;
pub mod vstate;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use linux_loader::loader::Cmdline;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryRegion};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use boot::x86::Privilege;
use devices::bus::Bus;
use devices::legacy::console::{ConsoleLog, ConsoleSink, ConsoleState, SharedConsole};
use devices::legacy::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::legacy::serial::{SerialDevice, COM1_BASE, COM1_IRQ, COM1_LEN};
use devices::virtio::balloon::Balloon;
use devices::virtio::fs::{passthrough_backend, FdBudget, Fs, FsError};
use devices::virtio::mmio::{MmioTransport, MMIO_WINDOW, QUEUE_NOTIFY};
pub use devices::virtio::net::NetLinkState;
use devices::virtio::net::{Net, NetError, NetHandler, PasstStream};
use devices::virtio::rng::Rng;
use devices::virtio::vsock::{Muxer, Vsock, VsockHandler, GUEST_CID};
use devices::virtio::QueueHandler;
use vstate::kvm::{KvmFlavour, PVM_ADVICE};
use vstate::memory::{create_guest_memory, GuestMem};
use vstate::vcpu::{StopSignal, VcpuShared, VcpuStop};

/// Guest memory added to the pod's own: kernel, page tables, peapod-init.
pub const GUEST_MEMORY_OVERHEAD: u64 = 64 << 20;
/// First virtio-mmio window (inside the MMIO hole).
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// First IRQ for virtio-mmio devices (ISA IRQs 0-4 are taken by PIT, COM1...).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Address of the identity map page and TSS Intel needs below 4 GiB.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Open files the VMM keeps for itself (KVM, eventfds, vsock connections,
/// passt, logs, the API socket's clients) out of the guest's share of its
/// open-file limit.
const FD_RESERVE: usize = 1024;
/// The vCPU kick signal.
fn kick_signal() -> i32 {
    SIGRTMIN() + 1
}

/// What can go wrong building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// KVM refused to create the VM.
    #[error("cannot create the VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// Guest memory could not be mapped.
    #[error("cannot map {0} bytes of guest memory")]
    GuestMemory(u64, #[source] vm_memory::mmap::FromRangesError),
    /// Registering guest memory with KVM failed.
    #[error("cannot register guest memory with KVM")]
    RegisterMemory(#[source] kvm_ioctls::Error),
    /// The in-kernel interrupt controllers or PIT could not be created.
    #[error("cannot create the in-kernel irqchip/PIT")]
    CreateIrqchip(#[source] kvm_ioctls::Error),
    /// An eventfd, irqfd or ioeventfd could not be set up.
    #[error("cannot set up {0}")]
    SetupEvent(&'static str, #[source] std::io::Error),
    /// A vCPU could not be created or configured.
    #[error("cannot create or configure vCPU {0}")]
    CreateVcpu(u8, #[source] kvm_ioctls::Error),
    /// Devices could not be attached.
    #[error("cannot attach device {0}")]
    AttachDevice(&'static str),
    /// The console log could not be created.
    #[error("cannot create console log {}", .0.display())]
    ConsoleLog(PathBuf, #[source] std::io::Error),
    /// Loading the guest failed.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The event loop failed.
    #[error("event loop failed: {0}")]
    EventLoop(String),
    /// A vCPU thread could not be started.
    #[error("cannot start vCPU thread")]
    SpawnVcpu(#[source] std::io::Error),
    /// The VMM's threads could not be confined.
    #[error(transparent)]
    Jail(#[from] jail::JailError),
    /// The vsock Unix socket could not be created.
    #[error("cannot listen on vsock socket {}", .0.display())]
    VsockListen(PathBuf, #[source] std::io::Error),
    /// The virtio-fs share could not be set up.
    #[error("cannot share directory {} over virtio-fs", .0.display())]
    FsShare(PathBuf, #[source] FsError),
    /// The network backend (passt) could not be used.
    #[error("cannot connect to the network backend ({0})")]
    ConnectNet(String, #[source] std::io::Error),
    /// The virtio-net device could not be created.
    #[error("cannot create the network device")]
    CreateNet(#[source] NetError),
}

/// How the VM is built.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Guest memory in bytes.
    pub mem_bytes: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Write the guest console to this file.
    pub console_log: Option<PathBuf>,
    /// Also echo the guest console to the terminal.
    pub console_echo: bool,
    /// Attach virtio-vsock (guest CID 3), its host side listening on this
    /// Unix socket (guest port `P` is forwarded to `<path>_P`).
    pub vsock_uds: Option<PathBuf>,
    /// Attach one virtio-fs device per share.
    pub fs_shares: Vec<FsShare>,
    /// Attach virtio-net with passt behind it.
    pub net: Option<NetConfig>,
}

/// The pod's network device (virtio-net over passt's stream socket).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where passt is.
    pub backend: NetBackendSocket,
    /// The guest's MAC address (unicast).
    pub mac: [u8; 6],
    /// The MTU offered to the guest (VIRTIO_NET_F_MTU); none: the driver's
    /// default (1500).
    pub mtu: Option<u16>,
}

/// How the VMM reaches passt.
#[derive(Debug, Clone)]
pub enum NetBackendSocket {
    /// An already connected stream (`net::Passt::take_stream`). The VMM
    /// uses a duplicate of the fd; passt (`--fd`, one-off) sees the end only
    /// when every copy is closed, at the latest when the VMM exits.
    Connected(Arc<UnixStream>),
    /// The path of a passt started with `--socket`, connected by `Vm::new`.
    Path(PathBuf),
}

/// One host directory shared with the guest over virtio-fs.
#[derive(Debug, Clone)]
pub struct FsShare {
    /// The mount tag the guest uses (`mount -t virtiofs <tag> <dir>`);
    /// 1 to 36 bytes.
    pub tag: String,
    /// The host directory.
    pub path: PathBuf,
    /// Refuse every change from the guest.
    pub read_only: bool,
}

/// How a finished VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEnd {
    /// The guest reset the machine through the i8042 (peapod-init's normal
    /// way out).
    Reset,
    /// The guest triple-faulted (`reboot=t`, or a crash before the IDT).
    TripleFault,
    /// KVM could not emulate a guest instruction.
    EmulationFailure,
    /// KVM could not enter the guest.
    FailEntry(u64),
    /// The guest did not print the readiness line in time.
    BootTimeout,
    /// The VMM failed.
    Internal(String),
    /// The host stopped the VM ([`Vm::stop_handle`]).
    Killed,
}

/// Result of running a VM to its end.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How it ended.
    pub end: GuestEnd,
    /// Time from the first KVM_RUN to the readiness line, and the guest's
    /// uptime at that point.
    pub ready: Option<(Duration, u64)>,
    /// The exit status peapod-init announced.
    pub exit_status: Option<i32>,
    /// Wall time the VM ran.
    pub ran_for: Duration,
    /// The last console lines.
    pub console_tail: Vec<String>,
    /// Guest memory the host committed, when the VM stopped.
    pub guest_resident: u64,
    /// This process's RSS when the VM stopped.
    pub process_rss: Option<u64>,
    /// This process's PSS (shared pages split) when the VM stopped.
    pub process_pss: Option<u64>,
    /// Guest memory the guest reported free and the host dropped, in all.
    pub guest_returned: u64,
}

impl RunOutcome {
    /// Explain an abnormal end for a user, given the host's KVM flavour.
    pub fn explain(&self, flavour: KvmFlavour) -> Option<String> {
        let what = match &self.end {
            GuestEnd::Reset | GuestEnd::TripleFault if self.exit_status.is_some() => return None,
            GuestEnd::Reset | GuestEnd::TripleFault => {
                "the guest reset before peapod-init reported an exit status (kernel panic or init crash)".to_string()
            }
            GuestEnd::EmulationFailure => "KVM could not emulate a guest instruction (emulation failure)".to_string(),
            GuestEnd::FailEntry(r) => format!("KVM could not enter the guest (hardware entry failure {r:#x})"),
            GuestEnd::BootTimeout => format!("the guest did not reach peapod-init within {:.0?}", self.ran_for),
            GuestEnd::Internal(s) => format!("the VMM failed: {s}"),
            GuestEnd::Killed => return Some("the VM was killed".to_string()),
        };
        let advice = if flavour == KvmFlavour::Pvm {
            PVM_ADVICE.to_string()
        } else {
            "check the kernel (scripts/build-kernel builds a known-good one) and the console lines below".to_string()
        };
        let mut msg = format!("{what}; {advice}");
        if !self.console_tail.is_empty() {
            msg.push_str("\nlast console lines:\n");
            for l in self.console_tail.iter().rev().take(15).rev() {
                msg.push_str("  ");
                msg.push_str(l);
                msg.push('\n');
            }
        }
        Some(msg)
    }
}

/// Drains the VM's control eventfds so the event loop wakes on them.
struct ControlEvents {
    fds: Vec<EventFd>,
}

impl MutEventSubscriber for ControlEvents {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        for fd in &self.fds {
            if events.fd() == std::os::fd::AsRawFd::as_raw_fd(fd) {
                let _ = fd.read();
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in &self.fds {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                log::error!("cannot watch control event: {e:?}");
            }
        }
    }
}

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Stops a running VM from another thread.
#[derive(Clone)]
pub struct VmStopper(StopSignal);

impl VmStopper {
    /// Stop the VM now; `run` returns with [`GuestEnd::Killed`].
    pub fn stop(&self) {
        self.0.stop(VcpuStop::Killed);
    }
}

/// A built VM, ready to load a guest and run.
pub struct Vm {
    vm_fd: VmFd,
    mem: GuestMem,
    vcpus: Vec<VcpuFd>,
    cpuid: kvm_bindings::CpuId,
    pio: Bus,
    mmio: Bus,
    console: SharedConsole,
    signal: StopSignal,
    event_manager: EventManager<Subscriber>,
    virtio_cmdline: Vec<(u64, u64, u32)>,
    net_link: Option<NetLinkState>,
    /// Guest memory the guest reported free and the host dropped (bytes).
    guest_returned: Arc<AtomicU64>,
    /// What the guest-facing threads may open (see [`jail`]).
    paths: jail::PathRules,
    /// When construction started (for timings).
    pub created: Instant,
}

/// The files the VM's threads need: its shares (read-only ones to read),
/// the directories of its console log and vsock socket, and the working
/// directory (the pod directory, where relative paths point).
fn path_rules(cfg: &VmConfig) -> jail::PathRules {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rules = jail::PathRules::default();
    for share in &cfg.fs_shares {
        let list = if share.read_only {
            &mut rules.read_only
        } else {
            &mut rules.writable
        };
        list.push(abs(&share.path));
    }
    if let Ok(cwd) = std::env::current_dir() {
        rules.writable.push(cwd);
    }
    for p in cfg.console_log.iter().chain(&cfg.vsock_uds) {
        rules.writable.push(jail::dir_of(&abs(p)));
    }
    if let Some(NetBackendSocket::Path(p)) = cfg.net.as_ref().map(|n| &n.backend) {
        rules.writable.push(jail::dir_of(&abs(p)));
    }
    rules
}

impl Vm {
    /// Create the VM: memory, irqchip, PIT, vCPUs, serial, i8042, virtio-rng,
    /// virtio-balloon (free page reporting),
    /// virtio-vsock when `cfg.vsock_uds` is set, a virtio-fs device per
    /// `cfg.fs_shares` entry, and virtio-net (last) when `cfg.net` is set.
    pub fn new(kvm: &Kvm, cfg: &VmConfig) -> Result<Vm, VmmError> {
        let created = Instant::now();
        let vm_fd = kvm.create_vm().map_err(VmmError::CreateVm)?;
        let mem = create_guest_memory(cfg.mem_bytes)
            .map_err(|e| VmmError::GuestMemory(cfg.mem_bytes, e))?;
        for (slot, region) in mem.iter().enumerate() {
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the
            // Vm keeps (and so outlives the VM fd's use of it).
            unsafe { vm_fd.set_user_memory_region(r) }.map_err(VmmError::RegisterMemory)?;
        }
        vm_fd
            .set_tss_address(KVM_TSS_ADDRESS)
            .map_err(VmmError::CreateIrqchip)?;
        vm_fd.create_irq_chip().map_err(VmmError::CreateIrqchip)?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm_fd.create_pit2(pit).map_err(VmmError::CreateIrqchip)?;

        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmmError::CreateIrqchip)?;
        // KVM emulates the LAPIC's TSC-deadline mode but leaves its CPUID
        // bit to us; without it the guest calibrates its APIC timer
        // against the PIT for 100 ms at every boot.
        if kvm.check_extension(Cap::TscDeadlineTimer) {
            vstate::vcpu::set_tsc_deadline_timer(&mut cpuid);
        }
        let mut vcpus = Vec::with_capacity(cfg.vcpus as usize);
        for id in 0..cfg.vcpus {
            let vcpu = vm_fd
                .create_vcpu(u64::from(id))
                .map_err(|e| VmmError::CreateVcpu(id, e))?;
            vstate::vcpu::configure(&vcpu, &cpuid, id, cfg.vcpus)
                .map_err(|e| VmmError::CreateVcpu(id, e))?;
            vcpus.push(vcpu);
        }

        let event = |what| EventFd::new(EFD_NONBLOCK).map_err(|e| VmmError::SetupEvent(what, e));
        let exit_evt = event("exit eventfd")?;
        let console_evt = event("console eventfd")?;
        let console = SharedConsole::default();
        let log = match &cfg.console_log {
            Some(p) => Some(
                ConsoleLog::create(p.clone()).map_err(|e| VmmError::ConsoleLog(p.clone(), e))?,
            ),
            None => None,
        };
        let echo: Option<Box<dyn std::io::Write + Send>> = if cfg.console_echo {
            Some(Box::new(std::io::stderr()))
        } else {
            None
        };
        let sink = ConsoleSink::new(
            log,
            echo,
            console.clone(),
            console_evt
                .try_clone()
                .map_err(|e| VmmError::SetupEvent("console eventfd", e))?,
        );
        let serial_irq = event("serial irqfd")?;
        vm_fd
            .register_irqfd(&serial_irq, COM1_IRQ)
            .map_err(|e| VmmError::SetupEvent("serial irqfd", e.into()))?;

        let mut pio = Bus::new();
        pio.insert(
            COM1_BASE,
            COM1_LEN,
            Arc::new(Mutex::new(SerialDevice::new(serial_irq, sink))),
        )
        .map_err(|_| VmmError::AttachDevice("serial"))?;
        let signal = StopSignal::new(
            exit_evt
                .try_clone()
                .map_err(|e| VmmError::SetupEvent("exit eventfd", e))?,
        );
        pio.insert(
            I8042_BASE,
            I8042_LEN,
            Arc::new(Mutex::new(I8042::new(signal.clone()))),
        )
        .map_err(|_| VmmError::AttachDevice("i8042"))?;

        let mut event_manager: EventManager<Subscriber> =
            EventManager::new().map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
        event_manager.add_subscriber(Arc::new(Mutex::new(ControlEvents {
            fds: vec![exit_evt, console_evt],
        })));

        let mut vm = Vm {
            vm_fd,
            mem,
            vcpus,
            cpuid,
            pio,
            mmio: Bus::new(),
            console,
            signal,
            event_manager,
            virtio_cmdline: Vec::new(),
            net_link: None,
            guest_returned: Arc::default(),
            paths: path_rules(cfg),
            created,
        };
        let rng = Arc::new(Mutex::new(Rng::new()));
        let queue_evts = vm.attach_virtio(rng.clone())?;
        vm.event_manager
            .add_subscriber(Arc::new(Mutex::new(QueueHandler::new(
                "virtio-rng",
                rng,
                queue_evts,
            ))));
        let balloon = Balloon::new();
        vm.guest_returned = balloon.returned();
        let balloon = Arc::new(Mutex::new(balloon));
        let queue_evts = vm.attach_virtio(balloon.clone())?;
        vm.event_manager
            .add_subscriber(Arc::new(Mutex::new(QueueHandler::new(
                "virtio-balloon",
                balloon,
                queue_evts,
            ))));
        if let Some(uds) = &cfg.vsock_uds {
            let muxer =
                Muxer::new(uds, GUEST_CID).map_err(|e| VmmError::VsockListen(uds.clone(), e))?;
            let vsock = Arc::new(Mutex::new(Vsock::new(GUEST_CID, muxer)));
            let queue_evts = vm.attach_virtio(vsock.clone())?;
            vm.event_manager
                .add_subscriber(Arc::new(Mutex::new(VsockHandler::new(vsock, queue_evts))));
        }
        // Every share's inodes and open files count against one budget: the
        // VMM's open-file limit less what its devices and sockets need.
        let fd_budget = FdBudget::for_this_process(FD_RESERVE);
        for share in &cfg.fs_shares {
            let fail = |e| VmmError::FsShare(share.path.clone(), e);
            let backend = passthrough_backend(&share.path, share.read_only, fd_budget.clone())
                .map_err(fail)?;
            let fs = Arc::new(Mutex::new(Fs::new(&share.tag, backend).map_err(fail)?));
            let queue_evts = vm.attach_virtio(fs.clone())?;
            vm.event_manager
                .add_subscriber(Arc::new(Mutex::new(QueueHandler::new(
                    "virtio-fs",
                    fs,
                    queue_evts,
                ))));
        }
        if let Some(net) = &cfg.net {
            let (what, stream) = match &net.backend {
                NetBackendSocket::Connected(s) => ("connected stream".to_string(), s.try_clone()),
                NetBackendSocket::Path(p) => (p.display().to_string(), UnixStream::connect(p)),
            };
            let backend = stream
                .and_then(PasstStream::new)
                .map_err(|e| VmmError::ConnectNet(what, e))?;
            let dev = Net::new(net.mac, net.mtu, backend).map_err(VmmError::CreateNet)?;
            vm.net_link = Some(dev.link_state());
            let dev = Arc::new(Mutex::new(dev));
            let queue_evts = vm.attach_virtio(dev.clone())?;
            vm.event_manager
                .add_subscriber(Arc::new(Mutex::new(NetHandler::new(dev, queue_evts))));
        }
        Ok(vm)
    }

    /// Attach a virtio device on the next MMIO window and IRQ; its queue
    /// notifications become ioeventfds.
    fn attach_virtio(
        &mut self,
        device: Arc<Mutex<dyn devices::virtio::VirtioDevice>>,
    ) -> Result<Vec<EventFd>, VmmError> {
        let index = self.virtio_cmdline.len() as u64;
        let base = VIRTIO_MMIO_BASE + index * MMIO_WINDOW;
        let irq = VIRTIO_IRQ_BASE + index as u32;
        let irqfd =
            EventFd::new(EFD_NONBLOCK).map_err(|e| VmmError::SetupEvent("virtio irqfd", e))?;
        self.vm_fd
            .register_irqfd(&irqfd, irq)
            .map_err(|e| VmmError::SetupEvent("virtio irqfd", e.into()))?;
        let transport = MmioTransport::new(self.mem.clone(), device, irqfd)
            .map_err(|e| VmmError::SetupEvent("virtio queue", e))?;
        for (i, evt) in transport.queue_evts().iter().enumerate() {
            self.vm_fd
                .register_ioevent(evt, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), i as u32)
                .map_err(|e| VmmError::SetupEvent("virtio ioeventfd", e.into()))?;
        }
        let evts: Vec<EventFd> = transport
            .queue_evts()
            .iter()
            .map(|e| e.try_clone())
            .collect::<Result<_, _>>()
            .map_err(|e| VmmError::SetupEvent("virtio queue", e))?;
        self.mmio
            .insert(base, MMIO_WINDOW, Arc::new(Mutex::new(transport)))
            .map_err(|_| VmmError::AttachDevice("virtio-mmio"))?;
        self.virtio_cmdline.push((base, MMIO_WINDOW, irq));
        Ok(evts)
    }

    /// Whether the pod's network backend is gone (`None`: no network
    /// device); readable from any thread while the VM runs.
    pub fn net_link(&self) -> Option<NetLinkState> {
        self.net_link.clone()
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    /// The `virtio_mmio.device=` entries the kernel needs to find the devices.
    pub fn add_virtio_to_cmdline(&self, cmdline: &mut Cmdline) -> Result<(), boot::BootError> {
        for &(base, size, irq) in &self.virtio_cmdline {
            cmdline
                .add_virtio_mmio_device(size, GuestAddress(base), irq, None)
                .map_err(boot::BootError::Cmdline)?;
        }
        Ok(())
    }

    fn set_entry(&self, entry: GuestAddress, privilege: Privilege) -> Result<(), VmmError> {
        for (id, vcpu) in self.vcpus.iter().enumerate() {
            let sregs = vcpu
                .get_sregs()
                .map_err(|e| VmmError::CreateVcpu(id as u8, e))?;
            let sregs = boot::x86::long_mode_sregs(&self.mem, sregs, privilege)
                .map_err(|e| VmmError::Boot(e.into()))?;
            vcpu.set_sregs(&sregs)
                .map_err(|e| VmmError::CreateVcpu(id as u8, e))?;
            let regs = boot::x86::entry_regs(entry, GuestAddress(boot::ZERO_PAGE_START), privilege);
            vcpu.set_regs(&regs)
                .map_err(|e| VmmError::CreateVcpu(id as u8, e))?;
        }
        Ok(())
    }

    /// Load a Linux kernel with the initramfs. `cmdline` gets the virtio
    /// devices appended.
    pub fn load_linux(
        &mut self,
        kernel: &Path,
        initrd: boot::Initrd<'_>,
        mut cmdline: Cmdline,
    ) -> Result<(), VmmError> {
        self.add_virtio_to_cmdline(&mut cmdline)?;
        let spec = boot::BootSpec {
            kernel,
            cmdline: &cmdline,
            initrd,
            vcpus: self.vcpus.len() as u8,
        };
        let entry = boot::load_guest(&self.mem, &spec)?;
        self.set_entry(entry, Privilege::Kernel)
    }

    /// Load a user-mode (CPL3, IOPL3) payload at `at` and start every vCPU
    /// there: code that PVM runs natively, for smoke tests of the VMM.
    pub fn load_user_payload(&mut self, code: &[u8], at: GuestAddress) -> Result<(), VmmError> {
        self.mem
            .write_slice(code, at)
            .map_err(|_| boot::BootError::WriteMemory("payload"))?;
        self.set_entry(at, Privilege::User)
    }

    /// The supported CPUID the vCPUs were configured from.
    pub fn cpuid(&self) -> &kvm_bindings::CpuId {
        &self.cpuid
    }

    /// The device event loop, until the guest ends (or does not become
    /// ready in time).
    fn event_loop(
        &mut self,
        paths: &jail::PathRules,
        started: Instant,
        boot_timeout: Option<Duration>,
    ) -> GuestEnd {
        match jail::confine_paths("device", paths) {
            Ok(jail::Confined::Fully) => {}
            Ok(how) => {
                log::info!("VMM device thread: Landlock {how:?} (kernel too old for all of it)")
            }
            Err(e) => return GuestEnd::Internal(e.to_string()),
        }
        if let Err(e) = jail::confine_devices() {
            return GuestEnd::Internal(e.to_string());
        }
        loop {
            if let Some(why) = self.signal.reason() {
                return match why {
                    VcpuStop::Reset => GuestEnd::Reset,
                    VcpuStop::TripleFault => GuestEnd::TripleFault,
                    VcpuStop::EmulationFailure { .. } => GuestEnd::EmulationFailure,
                    VcpuStop::FailEntry { reason } => GuestEnd::FailEntry(reason),
                    VcpuStop::Internal(s) => GuestEnd::Internal(s),
                    VcpuStop::Killed => GuestEnd::Killed,
                };
            }
            let ready = self
                .console
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ready
                .is_some();
            let mut wait_ms = 1000;
            if let (Some(limit), false) = (boot_timeout, ready) {
                let elapsed = started.elapsed();
                if elapsed >= limit {
                    return GuestEnd::BootTimeout;
                }
                wait_ms = wait_ms.min((limit - elapsed).as_millis() as i32 + 1);
            }
            if let Err(e) = self.event_manager.run_with_timeout(wait_ms) {
                return GuestEnd::Internal(format!("event loop: {e:?}"));
            }
        }
    }

    /// A handle that stops the running VM from any thread (hard stop: the
    /// guest gets no notice; [`GuestEnd::Killed`]).
    pub fn stop_handle(&self) -> VmStopper {
        VmStopper(self.signal.clone())
    }

    /// Run until the guest resets, a vCPU fails, or `boot_timeout` passes
    /// without the readiness line. The calling thread is not confined.
    pub fn run(self, boot_timeout: Option<Duration>) -> Result<RunOutcome, VmmError> {
        self.run_inner(boot_timeout, false)
    }

    /// [`Vm::run`] in a process that is the VMM and nothing else: once
    /// every VM thread runs, the calling thread is confined too
    /// ([`jail::confine_main`]), so no thread of the process is left
    /// unfiltered while the guest runs.
    pub fn run_confined(self, boot_timeout: Option<Duration>) -> Result<RunOutcome, VmmError> {
        self.run_inner(boot_timeout, true)
    }

    fn run_inner(
        mut self,
        boot_timeout: Option<Duration>,
        confine_main: bool,
    ) -> Result<RunOutcome, VmmError> {
        // SAFETY: the handler only returns; it exists so the kick signal
        // interrupts KVM_RUN instead of killing the process.
        extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
        register_signal_handler(kick_signal(), noop)
            .map_err(|e| VmmError::SetupEvent("vCPU kick signal", e.into()))?;

        jail::harden_process().map_err(VmmError::Jail)?;
        // Opened now: a confined main thread opens nothing later.
        let statm = std::fs::File::open("/proc/self/statm").ok();
        let smaps = std::fs::File::open("/proc/self/smaps").ok();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut threads: Vec<JoinHandle<u64>> = Vec::new();
        for (id, vcpu) in std::mem::take(&mut self.vcpus).into_iter().enumerate() {
            let shared = VcpuShared {
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                stop: stop.clone(),
                signal: self.signal.clone(),
            };
            let paths = self.paths.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    // Confined before its first KVM_RUN: the guest's first
                    // instruction already runs under the filter.
                    let confined =
                        jail::confine_paths("vCPU", &paths).and_then(|_| jail::confine_vcpu());
                    if let Err(e) = confined {
                        shared.signal.stop(VcpuStop::Internal(e.to_string()));
                        return 0;
                    }
                    vstate::vcpu::run_loop(vcpu, id as u8, &shared)
                })
                .map_err(VmmError::SpawnVcpu)?;
            threads.push(t);
        }

        // The device models (virtio-fs among them) answer the guest on
        // this loop: it runs on a thread of its own, kept by Landlock to
        // the pod's paths (the caller's thread goes on unconfined).
        let paths = self.paths.clone();
        let signal = self.signal.clone();
        let end = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("vmm-devices".into())
                .spawn_scoped(scope, || self.event_loop(&paths, started, boot_timeout))
                .map(|t| {
                    if confine_main {
                        let confined =
                            jail::confine_paths("main", &paths).and_then(|_| jail::confine_main());
                        if let Err(e) = confined {
                            signal.stop(VcpuStop::Internal(e.to_string()));
                        }
                    }
                    t.join()
                        .unwrap_or_else(|_| GuestEnd::Internal("the device thread panicked".into()))
                })
        })
        .map_err(VmmError::SpawnVcpu)?;
        let ran_for = started.elapsed();

        stop.store(true, Ordering::Release);
        for t in &threads {
            while !t.is_finished() {
                let _ = t.kill(kick_signal());
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for t in threads {
            let _ = t.join();
        }
        let console: ConsoleState = self
            .console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let figures = smaps.and_then(|f| vstate::memory::smaps_rss(&f, &self.mem));
        let (guest_resident, process_rss) = match figures {
            Some(f) => (f.guest_rss, Some(f.rss)),
            None => (
                vstate::memory::resident_bytes(&self.mem),
                statm.as_ref().and_then(vstate::memory::process_rss_bytes),
            ),
        };
        Ok(RunOutcome {
            end,
            ready: console
                .ready
                .map(|(at, uptime)| (at.saturating_duration_since(started), uptime)),
            exit_status: console.exit_status,
            ran_for,
            console_tail: console.tail.into_iter().collect(),
            guest_resident,
            process_rss,
            process_pss: figures.map(|f| f.pss),
            guest_returned: self.guest_returned.load(Ordering::Relaxed),
        })
    }
}
