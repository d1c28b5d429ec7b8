//! Kubernetes' view: a CRI client (as the kubelet is one) drives
//! containerd's CRI plugin with the runtime handler `peapod`. A pod
//! sandbox becomes one peapod VM; two containers join it, share a host
//! directory (as an emptyDir is) and localhost; containerd writes their
//! kubelet-format logs; ExecSync and Exec; a stop with a grace period;
//! the pod's stop and removal leave nothing. A sandbox asking for more
//! memory than the host has fails RunPodSandbox and leaves nothing.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::TempDir;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecRequest, ExecSyncRequest, ImageSpec, ImageStatusRequest, LinuxContainerResources,
    LinuxPodSandboxConfig, Mount, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use support::{processes, Containerd, IMAGE};
use tonic::transport::{Channel, Endpoint, Uri};

/// A CNI plugin for the test network: it gives the pod's network namespace
/// an address and creates nothing (the CRI plugin wants a sandbox IP; a
/// peapod VM has its own network, which the CNI namespace does not reach).
const TEST_CNI_PLUGIN: &str = r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion": "0.4.0", "supportedVersions": ["0.3.1", "0.4.0"]}' ;;
ADD) printf '{"cniVersion": "0.4.0", "interfaces": [{"name": "%s", "sandbox": "%s"}],
  "ips": [{"version": "4", "address": "10.88.0.2/24", "interface": 0}]}\n' "$CNI_IFNAME" "$CNI_NETNS" ;;
esac
"#;

/// The CRI plugin's settings: the test image as the pause image (the shim
/// runs no pause process; containerd only needs the image to be there),
/// and the test network.
fn cri_config(dir: &Path) -> String {
    let net = dir.join("net.d");
    let bin = dir.join("cni-bin");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("peapod-test-ip");
    std::fs::write(&plugin, TEST_CNI_PLUGIN).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The CRI plugin also sets up loopback itself, with the real plugin
    // (Debian's containernetworking-plugins).
    let loopback = Path::new("/usr/lib/cni/loopback");
    assert!(
        loopback.is_file(),
        "no {} (apt-get install containernetworking-plugins)",
        loopback.display()
    );
    std::os::unix::fs::symlink(loopback, bin.join("loopback")).unwrap();
    std::fs::write(
        net.join("10-test.conflist"),
        r#"{"cniVersion": "0.4.0", "name": "peapod-test", "plugins": [{"type": "peapod-test-ip"}]}"#,
    )
    .unwrap();
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{}"
  conf_dir = "{}"
"#,
        bin.display(),
        net.display()
    )
}

struct Cri {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    fn connect(socket: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = socket.to_owned();
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    })),
            )
            .expect("connect to containerd's CRI");
        Cri {
            rt,
            client: RuntimeServiceClient::new(channel.clone()),
            channel,
        }
    }

    fn client_channel(&self) -> Channel {
        self.channel.clone()
    }

    // The caller looks at the status (a test's error path).
    #[allow(clippy::result_large_err)]
    fn call<T, F>(
        &mut self,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        self.rt.block_on(f(client)).map(|r| r.into_inner())
    }
}

fn sandbox_config(dir: &Path, name: &str, memory: i64) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: dir.join("logs").join(name).display().to_string(),
        annotations: HashMap::from([("peapod.io/test".to_string(), "cri".to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: memory,
                cpu_period: 100_000,
                cpu_quota: 100_000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, script: &str, volume: &Path) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        mounts: vec![Mount {
            container_path: "/data".into(),
            host_path: volume.display().to_string(),
            ..Default::default()
        }],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// CRI's container states.
const CONTAINER_RUNNING: i32 = 1;
const CONTAINER_EXITED: i32 = 2;

#[test]
fn test_cri_pod_sandbox_is_one_peapod_vm() {
    if !support::runs_here("test_cri_pod_sandbox_is_one_peapod_vm") {
        return;
    }
    let dir = TempDir::new("cri");
    let c = Containerd::start(&dir.0, &cri_config(&dir.0));
    let mut cri = Cri::connect(&dir.0.join("containerd.sock"));
    let v = cri
        .call(|mut s| async move { s.version(VersionRequest::default()).await })
        .unwrap();
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    // The CRI plugin learns of the imported image from an event.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut images = ImageServiceClient::new(cri.client_channel());
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let found = cri.rt.block_on(images.image_status(req));
        if found.is_ok_and(|r| r.into_inner().image.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CRI does not see {IMAGE}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The pod sandbox: one VM, in `peapod ps`.
    let config = sandbox_config(&dir.0, "web", 128 << 20);
    let req = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: "peapod".into(),
    };
    let sandbox = cri
        .call(|mut s| async move { s.run_pod_sandbox(req).await })
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
        .pod_sandbox_id;
    let ps = c.ps();
    let pod = format!("web-{}", &sandbox[..8]);
    assert_eq!(ps[0]["name"], pod.as_str(), "{ps}");
    // No container runs yet: Pending, as Kubernetes would say.
    assert_eq!(ps[0]["status"], "Pending", "{ps}");
    let isolation = std::env::var("PEAPOD_TEST_SHIM_ISOLATION").unwrap_or("vm".into());
    assert_eq!(ps[0]["isolation"], isolation.as_str(), "{ps}");

    // Two containers: a shared host directory, localhost.
    let volume = dir.0.join("emptydir");
    std::fs::create_dir_all(&volume).unwrap();
    let mut ids = HashMap::new();
    for (name, script) in [
        (
            "server",
            "echo shared-file > /data/f; echo hello-from-server | nc -l -p 7072; exec sleep 1000",
        ),
        (
            "client",
            "until nc 127.0.0.1 7072; do sleep 0.1; done; cat /data/f; echo bye >&2",
        ),
    ] {
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(name, script, &volume)),
            sandbox_config: Some(config.clone()),
        };
        let id = cri
            .call(|mut s| async move { s.create_container(req).await })
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", c.log()))
            .container_id;
        let start = StartContainerRequest {
            container_id: id.clone(),
        };
        cri.call(|mut s| async move { s.start_container(start).await })
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", c.log()));
        ids.insert(name, id);
    }
    let status = |cri: &mut Cri, id: &str| {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        cri.call(|mut s| async move { s.container_status(req).await })
            .unwrap()
            .status
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = loop {
        let s = status(&mut cri, &ids["client"]);
        if s.state == CONTAINER_EXITED {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "client did not end: {s:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(client.exit_code, 0, "{client:?}");
    assert_eq!(status(&mut cri, &ids["server"]).state, CONTAINER_RUNNING);
    assert_eq!(
        std::fs::read_to_string(volume.join("f")).unwrap(),
        "shared-file\n"
    );
    let ps = c.ps();
    assert_eq!(ps.as_array().unwrap().len(), 1, "one pod: {ps}");
    assert_eq!(ps[0]["status"], "Running", "{ps}");
    // The client's task was deleted once it ended (containerd's CRI does
    // so): the pod keeps the server.
    assert_eq!(ps[0]["container_statuses"][0]["name"], "server", "{ps}");
    assert_eq!(ps[0]["containers"], 1, "{ps}");

    // containerd's kubelet-format log, from the output the shim passed on.
    let log = std::fs::read_to_string(dir.0.join("logs/web/client.log")).unwrap();
    for line in [
        " stdout F hello-from-server",
        " stdout F shared-file",
        " stderr F bye",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }

    // ExecSync and Exec.
    let req = ExecSyncRequest {
        container_id: ids["server"].clone(),
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo exec-out; echo exec-err >&2; exit 4".into(),
        ],
        timeout: 30,
    };
    let out = cri
        .call(|mut s| async move { s.exec_sync(req).await })
        .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", c.log()));
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"exec-out\n"[..], &b"exec-err\n"[..], 4)
    );
    let req = ExecRequest {
        container_id: ids["server"].clone(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    };
    let exec = cri.call(|mut s| async move { s.exec(req).await }).unwrap();
    assert!(exec.url.starts_with("http://"), "{exec:?}");

    // A stop with a grace period: SIGTERM, then SIGKILL after 2 s.
    let req = StopContainerRequest {
        container_id: ids["server"].clone(),
        timeout: 2,
    };
    cri.call(|mut s| async move { s.stop_container(req).await })
        .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", c.log()));
    assert_eq!(status(&mut cri, &ids["server"]).state, CONTAINER_EXITED);

    // The pod's end: nothing left.
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    };
    cri.call(|mut s| async move { s.stop_pod_sandbox(stop).await })
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log()));
    let rm = RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    };
    cri.call(|mut s| async move { s.remove_pod_sandbox(rm).await })
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log()));
    c.assert_nothing_left("StopPodSandbox and RemovePodSandbox");

    // Co-scheduling: a pod that does not fit fails whole, and leaves nothing.
    let huge = RunPodSandboxRequest {
        config: Some(sandbox_config(&dir.0, "huge", 1 << 40)),
        runtime_handler: "peapod".into(),
    };
    let e = cri
        .call(|mut s| async move { s.run_pod_sandbox(huge).await })
        .expect_err("a 1 TiB pod cannot fit");
    assert!(e.message().contains("does not fit on this host"), "{e:?}");
    c.assert_nothing_left("a pod that does not fit");
    assert!(processes(&["containerd-shim-peapod-v2"]).is_empty());
}
