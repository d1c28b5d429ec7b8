//! `containerd-shim-peapod-v2`: containerd's runtime `io.containerd.peapod.v2`.
//! Every CRI pod sandbox becomes one peapod microVM, and the pod's
//! containers join it; a plain `ctr run` container is a pod of one.

mod config;
mod mounts;
mod oci;
mod service;
mod stdio;

use std::path::Path;
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, StartOpts};

/// The runtime name containerd knows the shim by.
const RUNTIME: &str = "io.containerd.peapod.v2";

struct Shim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
}

impl containerd_shim::Shim for Shim {
    type T = service::Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Shim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
        }
    }

    /// One shim per pod: tasks of one CRI sandbox share the shim started
    /// for the first of them (the library answers with the running shim's
    /// address when its socket is taken). Prints only the address.
    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let annotations = oci_spec::runtime::Spec::load("config.json")
            .ok()
            .and_then(|s| s.annotations().clone())
            .unwrap_or_default();
        let group = oci::group(&annotations, &opts.id);
        let (_pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    /// containerd's clean-up after this task's shim died: the pod (when
    /// the task was its sandbox) ends and every mount goes.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("no bundle directory: {e}")))?;
        if let Err(e) = service::cleanup_bundle(Path::new(&bundle)) {
            log::warn!("task {}: {e}", self.id);
            return Err(containerd_shim::Error::Other(e));
        }
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: containerd_shim::protos::protobuf::MessageField::some(
                containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::now(),
            ),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        send_stderr_to_containerd_log();
        service::Service::new(&self.namespace, publisher, self.exit.clone())
    }
}

/// The shim's stderr (inherited by the monitors it starts) is /dev/null;
/// the bundle's `log` fifo is read by containerd into its own log, so
/// monitor messages land there.
fn send_stderr_to_containerd_log() {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("log")
    else {
        return;
    };
    // Blocking from now on: containerd reads it for the shim's lifetime.
    // SAFETY: fcntl and dup2 on a descriptor this function owns.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        libc::dup2(f.as_raw_fd(), 2);
    }
}

fn main() {
    // No reaper: the library's would collect every child with
    // waitpid(-1), racing the shim's own waits (nsenter, the monitor's
    // start); the shim reaps its monitors itself. No subreaper: a monitor's
    // helpers (passt) have nothing to report to the shim.
    let config = Config {
        no_reaper: true,
        no_sub_reaper: true,
        ..Config::default()
    };
    containerd_shim::run::<Shim>(RUNTIME, Some(config));
}
