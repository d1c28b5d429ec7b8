//! bench/cri's driver, a CRI client as the kubelet is one: RUNS times,
//! RunPodSandbox + CreateContainer + StartContainer of a 2-container pod
//! with runtime handler HANDLER, timed to both containers running (as
//! ContainerStatus says); each pod is then stopped and removed, untimed.
//! Prints `HANDLER.start MS` per run.
//!
//!   cri-bench SOCKET HANDLER RUNS IMAGE LOG_DIR

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    LinuxContainerResources, LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

const CONTAINER_RUNNING: i32 = 1;

type Client = RuntimeServiceClient<Channel>;

async fn connect(socket: &str) -> Client {
    let path = socket.to_owned();
    let channel = Endpoint::try_from("http://[::]")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .expect("connect to containerd's CRI");
    RuntimeServiceClient::new(channel)
}

async fn one_pod(c: &mut Client, handler: &str, n: usize, image: &str, logs: &Path) -> Duration {
    let name = format!("bench-{handler}-{n}");
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: logs.join(&name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let sandbox = c
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox ({handler}): {e}"))
        .into_inner()
        .pod_sandbox_id;
    let mut ids = Vec::new();
    for ctr in ["app", "sidecar"] {
        let cfg = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: ctr.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "100000".into()],
            log_path: format!("{ctr}.log"),
            ..Default::default()
        };
        let id = c
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(cfg),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer ({handler}): {e}"))
            .into_inner()
            .container_id;
        c.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer ({handler}): {e}"));
        ids.push(id);
    }
    for id in &ids {
        loop {
            let s = c
                .container_status(ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .expect("ContainerStatus")
                .into_inner()
                .status
                .expect("a status");
            if s.state == CONTAINER_RUNNING {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let took = started.elapsed();
    c.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .expect("StopPodSandbox");
    c.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .expect("RemovePodSandbox");
    took
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, handler, runs, image, logs] = args.as_slice() else {
        eprintln!("usage: cri-bench SOCKET HANDLER RUNS IMAGE LOG_DIR");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut c = connect(socket).await;
        // Warm-up, not timed: first-use costs (image unpacking for the
        // snapshotter, page cache).
        one_pod(&mut c, handler, 0, image, Path::new(logs)).await;
        for n in 1..=runs {
            let took = one_pod(&mut c, handler, n, image, Path::new(logs)).await;
            println!("{handler}.start {:.1}", took.as_secs_f64() * 1000.0);
        }
    });
}
