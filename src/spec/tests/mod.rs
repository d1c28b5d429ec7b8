//! End-to-end tests of [`parse`] and [`load`]. This file: realistic
//! manifests that must be accepted, and file handling; `errors.rs`: refused
//! documents, pod fields and schema errors; `containers.rs`: refused
//! container, volume and environment settings.

mod containers;
mod errors;
mod objects;

use std::path::PathBuf;

use super::*;
use crate::image::reference::ImageRef;

const FILE: &str = "pod.yaml";
const MI: u64 = 1024 * 1024;
const GI: u64 = 1024 * MI;

fn ok(yaml: &str) -> PodPlan {
    parse(yaml, FILE).unwrap_or_else(|e| panic!("should parse, got: {e}\n{yaml}"))
}

fn err(yaml: &str) -> String {
    match parse(yaml, FILE) {
        Ok(plan) => panic!("should be refused, got {plan:?}\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the message names the file and contains every needle.
fn assert_err(yaml: &str, needles: &[&str]) {
    let message = err(yaml);
    assert!(
        message.starts_with("pod.yaml: "),
        "no file name in: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?}\nshould contain {needle:?}"
        );
    }
}

/// A valid pod whose single container gets `extra` (indented by 4).
fn with_container(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n{extra}"
    )
}

/// A valid pod with `extra` appended under `spec:` (indented by 2).
fn with_spec(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n{extra}"
    )
}

const FULL_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shop
  namespace: staging
  uid: 6f2b1c3e-1111-2222-3333-444455556666
  labels:
    app.kubernetes.io/name: shop
    tier: frontend
    version: "1.2"
  annotations:
    example.com/owner: "team shop: on call"
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Pod"}
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: shop-5d8f
    uid: 1234
    controller: true
  finalizers: [example.com/cleanup]
  creationTimestamp: null
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 10
  activeDeadlineSeconds: 3600
  hostname: shop-1
  subdomain: shops
  hostNetwork: false
  hostPID: false
  hostIPC: false
  shareProcessNamespace: true
  dnsPolicy: ClusterFirst
  dnsConfig:
    nameservers: [1.1.1.1]
    searches: [svc.cluster.local]
    options:
    - name: ndots
      value: "2"
  hostAliases:
  - ip: 127.0.0.1
    hostnames: [shop.local]
  nodeSelector:
    kubernetes.io/os: linux
  nodeName: node-1
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - key: disktype
            operator: In
            values: [ssd]
  tolerations:
  - key: dedicated
    operator: Equal
    value: shop
    effect: NoSchedule
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {tier: frontend}
  serviceAccountName: shop
  automountServiceAccountToken: false
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    runAsNonRoot: true
    fsGroup: 2000
    seccompProfile:
      type: RuntimeDefault
    sysctls:
    - name: net.ipv4.ip_local_port_range
      value: "1024 65535"
  runtimeClassName: peapod
  priorityClassName: high
  priority: 1000
  preemptionPolicy: PreemptLowerPriority
  schedulerName: default-scheduler
  enableServiceLinks: false
  imagePullSecrets:
  - name: regcred
  readinessGates:
  - conditionType: example.com/ready
  os:
    name: linux
  overhead:
    memory: 10Mi
  initContainers:
  - name: migrate
    image: registry.example.com:5000/shop/migrate:2.1
    command: ["/bin/migrate"]
    args: ["--to", "latest"]
    resources:
      limits: {memory: 2Gi, cpu: "2"}
  - name: proxy
    image: oci:./images/proxy:v3
    restartPolicy: Always
    resources:
      requests: {memory: 64Mi, cpu: 100m}
      limits: {memory: 128Mi, cpu: 250m}
    readinessProbe:
      tcpSocket: {port: 15000}
  containers:
  - name: app
    image: registry.example.com:5000/shop/app:1.2.3
    imagePullPolicy: IfNotPresent
    command: ["/app/server"]
    args: ["--listen=:$(PORT)", "--name=$(POD_NAME)", "$$(LITERAL)"]
    workingDir: /app
    env:
    - name: PORT
      value: "8080"
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
    - name: TIER
      valueFrom:
        fieldRef: {fieldPath: "metadata.labels['tier']"}
    - name: MEM_LIMIT_MI
      valueFrom:
        resourceFieldRef:
          resource: limits.memory
          divisor: 1Mi
    - name: URL
      value: http://localhost:$(PORT)/
    ports:
    - name: http
      containerPort: 8080
      hostPort: 18080
      protocol: TCP
    - containerPort: 9090
      name: metrics
    resources:
      limits:
        memory: 1Gi
        cpu: 1500m
        ephemeral-storage: 2Gi
      requests:
        memory: 512Mi
        cpu: 0.5
    volumeMounts:
    - name: cache
      mountPath: /cache
    - name: data
      mountPath: /data
      readOnly: true
      subPath: shop
      mountPropagation: None
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      privileged: false
      runAsUser: 1001
      capabilities:
        add: [NET_BIND_SERVICE]
        drop: [ALL]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      initialDelaySeconds: 3
      periodSeconds: 10
    readinessProbe:
      exec:
        command: [cat, /tmp/ready]
    startupProbe:
      grpc: {port: 9090}
    lifecycle:
      preStop:
        exec:
          command: [/bin/sh, -c, sleep 5]
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: FallbackToLogsOnError
    resizePolicy:
    - resourceName: cpu
      restartPolicy: NotRequired
    stdin: true
    stdinOnce: false
    tty: true
  - name: log-collector
    image: docker.io/fluent/fluent-bit@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    resources:
      limits:
        memory: 512Mi
    volumeMounts:
    - name: cache
      mountPath: /var/log/app/
  volumes:
  - name: cache
    emptyDir:
      medium: Memory
      sizeLimit: 256Mi
  - name: data
    hostPath:
      path: /srv/shop
      type: DirectoryOrCreate
  - name: scratch
status:
  phase: Pending
  conditions: []
"#;

#[test]
fn test_parse_full_realistic_pod() {
    let plan = ok(FULL_POD);
    assert_eq!(plan.name, "shop");
    assert_eq!(plan.namespace, "staging");
    assert_eq!(
        plan.uid.as_deref(),
        Some("6f2b1c3e-1111-2222-3333-444455556666")
    );
    assert_eq!(plan.hostname, "shop-1");
    assert_eq!(
        plan.labels.get("tier").map(String::as_str),
        Some("frontend")
    );
    assert_eq!(plan.labels.get("version").map(String::as_str), Some("1.2"));
    assert_eq!(
        plan.annotations
            .get("example.com/owner")
            .map(String::as_str),
        Some("team shop: on call")
    );
    assert_eq!(plan.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(plan.termination_grace_period_seconds, 10);
    assert_eq!(plan.active_deadline_seconds, Some(3600));
    assert!(plan.share_process_namespace);

    assert_eq!(plan.init_containers.len(), 2);
    let migrate = &plan.init_containers[0];
    assert!(!migrate.sidecar);
    assert_eq!(migrate.command, ["/bin/migrate"]);
    assert_eq!(migrate.args, ["--to", "latest"]);
    assert_eq!(migrate.memory_limit, Some(2 * GI));
    assert_eq!(migrate.cpu_limit, Some(2000));
    assert_eq!(migrate.run_as_user, Some(1000), "inherited from the pod");
    assert_eq!(migrate.run_as_group, Some(3000));
    assert!(migrate.run_as_non_root);
    let proxy = &plan.init_containers[1];
    assert!(proxy.sidecar);
    assert_eq!(
        proxy.image,
        ImageRef::OciLayout {
            path: "./images/proxy".into(),
            tag: Some("v3".into())
        }
    );

    let app = &plan.containers[0];
    assert_eq!(app.name, "app");
    assert_eq!(
        app.image,
        ImageRef::Named {
            name: "registry.example.com:5000/shop/app".into(),
            tag: Some("1.2.3".into()),
            digest: None
        }
    );
    assert_eq!(app.working_dir.as_deref(), Some("/app"));
    assert_eq!(app.args, ["--listen=:8080", "--name=shop", "$(LITERAL)"]);
    let env: Vec<(&str, &str)> = app
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PORT", "8080"),
            ("POD_NAME", "shop"),
            ("POD_NAMESPACE", "staging"),
            ("TIER", "frontend"),
            ("MEM_LIMIT_MI", "1024"),
            ("URL", "http://localhost:8080/"),
        ]
    );
    assert_eq!(
        app.ports,
        [
            PortPlan {
                name: Some("http".into()),
                container_port: 8080,
                host_port: Some(18080),
                host_ip: None,
                protocol: Protocol::Tcp
            },
            PortPlan {
                name: Some("metrics".into()),
                container_port: 9090,
                host_port: None,
                host_ip: None,
                protocol: Protocol::Tcp
            },
        ]
    );
    assert_eq!(app.memory_limit, Some(GI));
    assert_eq!(app.memory_request, Some(512 * MI));
    assert_eq!(app.cpu_limit, Some(1500));
    assert_eq!(app.cpu_request, Some(500));
    assert_eq!(app.run_as_user, Some(1001), "container overrides the pod");
    assert_eq!(app.run_as_group, Some(3000));
    assert!(app.read_only_root_filesystem);
    assert_eq!(app.capabilities.add, ["NET_BIND_SERVICE"]);
    assert_eq!(app.capabilities.drop, ["ALL"]);
    assert!(app.tty && app.stdin && !app.stdin_once);
    assert_eq!(
        app.volume_mounts[1],
        VolumeMountPlan {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: true,
            sub_path: Some("shop".into())
        }
    );

    let logs = &plan.containers[1];
    assert_eq!(
        logs.image.to_string(),
        "docker.io/fluent/fluent-bit@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );

    assert_eq!(
        plan.volumes,
        [
            VolumePlan {
                name: "cache".into(),
                source: VolumeSource::EmptyDir {
                    medium_memory: true,
                    size_limit: Some(256 * MI)
                }
            },
            VolumePlan {
                name: "data".into(),
                source: VolumeSource::HostPath {
                    path: "/srv/shop".into(),
                    kind: HostPathType::DirectoryOrCreate
                }
            },
            VolumePlan {
                name: "scratch".into(),
                source: VolumeSource::EmptyDir {
                    medium_memory: false,
                    size_limit: None
                }
            },
        ]
    );

    // Init: migrate 2Gi alone; app phase: proxy 128Mi + app 1Gi + logs 512Mi.
    assert_eq!(plan.effective_memory(), 2 * GI);
    // Init: 2000m; app phase: 250m + 1500m + default 1000m.
    assert_eq!(plan.effective_millicpu(), 2750);
    assert_eq!(plan.vcpus(), 3);
}

#[test]
fn test_parse_minimal_pod_defaults() {
    let plan = ok("apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n  containers:\n  - name: hello\n    image: busybox\n");
    assert_eq!(plan.name, "hello");
    assert_eq!(plan.namespace, "default");
    assert_eq!(plan.hostname, "hello");
    assert_eq!(plan.restart_policy, RestartPolicy::Always);
    assert_eq!(plan.termination_grace_period_seconds, 30);
    assert_eq!(plan.active_deadline_seconds, None);
    assert!(plan.init_containers.is_empty() && plan.volumes.is_empty());
    let c = &plan.containers[0];
    assert_eq!(c.image.to_string(), "docker.io/library/busybox:latest");
    assert!(c.command.is_empty() && c.args.is_empty() && c.env.is_empty());
    assert_eq!(
        (c.memory_limit, c.cpu_limit, c.run_as_user),
        (None, None, None)
    );
    assert!(!c.sidecar && !c.tty && !c.stdin);
    assert_eq!(plan.effective_memory(), DEFAULT_CONTAINER_MEMORY);
    assert_eq!(plan.vcpus(), 1);
}

#[test]
fn test_parse_seed_example_effective_memory() {
    let plan = ok(r#"
apiVersion: v1
kind: Pod
metadata:
  name: seed
spec:
  containers:
  - name: app
    image: busybox
    resources:
      limits:
        memory: 1Gi
  - name: log-collector
    image: busybox
    resources:
      limits:
        memory: 512Mi
"#);
    assert_eq!(plan.effective_memory(), 3 * GI / 2);
}

#[test]
fn test_parse_init_container_bigger_than_app_sum() {
    let plan = ok(r#"
apiVersion: v1
kind: Pod
metadata: {name: big-init}
spec:
  initContainers:
  - name: warm-cache
    image: busybox
    resources: {limits: {memory: 3Gi, cpu: "4"}}
  containers:
  - name: app
    image: busybox
    resources: {limits: {memory: 1Gi, cpu: 500m}}
  - name: side
    image: busybox
    resources: {requests: {memory: 256Mi, cpu: 250m}}
"#);
    assert_eq!(plan.effective_memory(), 3 * GI);
    assert_eq!(plan.effective_millicpu(), 4000);
    assert_eq!(plan.vcpus(), 4);
}

#[test]
fn test_parse_sidecar_counts_with_app_containers() {
    let plan = ok(r#"
apiVersion: v1
kind: Pod
metadata: {name: mesh}
spec:
  initContainers:
  - name: proxy
    image: busybox
    restartPolicy: Always
    resources: {limits: {memory: 256Mi}}
  containers:
  - name: app
    image: busybox
    resources: {limits: {memory: 1Gi}}
"#);
    assert!(plan.init_containers[0].sidecar);
    assert_eq!(plan.effective_memory(), GI + 256 * MI);
}

#[test]
fn test_parse_quantities_as_yaml_numbers() {
    let plan = ok(&with_container(
        "    resources:\n      limits: {memory: 1073741824, cpu: 2}\n      requests: {memory: 1e3, cpu: 0.5}\n",
    ));
    let c = &plan.containers[0];
    assert_eq!(c.memory_limit, Some(GI));
    assert_eq!(c.cpu_limit, Some(2000));
    assert_eq!(c.memory_request, Some(1000));
    assert_eq!(c.cpu_request, Some(500));
}

#[test]
fn test_parse_accepts_leading_separator_and_empty_documents() {
    let body = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
    ok(&format!("---\n{body}"));
    ok(&format!("# a comment\n---\n{body}---\n"));
    ok(&format!("{body}...\n"));
}

#[test]
fn test_parse_kubectl_get_output_shape() {
    ok(r#"
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: "2024-01-01T00:00:00Z"
  generation: 1
  labels: {run: nginx}
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    manager: kubectl-run
  name: nginx
  namespace: default
  resourceVersion: "123"
  selfLink: /api/v1/namespaces/default/pods/nginx
  uid: 0d8e5c2a-aaaa-bbbb-cccc-ddddeeeeffff
spec:
  containers:
  - image: nginx
    imagePullPolicy: Always
    name: nginx
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccount: default
  serviceAccountName: default
  terminationGracePeriodSeconds: 30
  tolerations:
  - effect: NoExecute
    key: node.kubernetes.io/not-ready
    operator: Exists
    tolerationSeconds: 300
status:
  phase: Running
  podIP: 10.0.0.5
"#);
}

#[test]
fn test_load_reads_file_and_resolves_image_paths() {
    let dir = scratch_dir("load-ok");
    let file = dir.join("pod.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: a\n    image: oci:images/app:v1\n  - name: b\n    image: rootfs:/abs/root\n",
    )
    .expect("write pod file");
    let plan = load(&file).expect("load");
    assert_eq!(
        plan.containers[0].image,
        ImageRef::OciLayout {
            path: dir.join("images/app"),
            tag: Some("v1".into())
        }
    );
    assert_eq!(
        plan.containers[1].image,
        ImageRef::Rootfs {
            path: "/abs/root".into()
        }
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn test_load_missing_file() {
    let path = scratch_dir("load-missing").join("nope.yaml");
    let message = load(&path).expect_err("missing file").to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not found"), "{message}");
    assert!(message.contains("check the path"), "{message}");
}

#[test]
fn test_load_unreadable_file() {
    // A directory cannot be read as a file, even by root.
    let dir = scratch_dir("load-dir");
    let err = load(&dir).expect_err("directory");
    let message = err.to_string();
    assert!(matches!(err, SpecError::ReadFile { .. }), "{err:?}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("cannot read"), "{message}");
    assert!(std::error::Error::source(&err).is_some());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn test_load_non_utf8_file() {
    let dir = scratch_dir("load-binary");
    let file = dir.join("pod.yaml");
    std::fs::write(&file, [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let message = load(&file).expect_err("binary").to_string();
    assert!(message.contains("UTF-8"), "{message}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A fresh, empty directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peapod-spec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn test_host_aliases_parsed_and_checked() {
    let plan = ok(&with_spec(
        "  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [db, db.local]\n  - ip: \"::1\"\n    hostnames: [six]\n",
    ));
    assert_eq!(
        plan.host_aliases,
        [
            (
                "10.1.2.3".parse().unwrap(),
                vec!["db".to_owned(), "db.local".to_owned()]
            ),
            ("::1".parse().unwrap(), vec!["six".to_owned()]),
        ]
    );
    assert_err(
        &with_spec("  hostAliases:\n  - ip: 10.1.2\n    hostnames: [db]\n"),
        &["spec.hostAliases[0].ip", "not an IP address"],
    );
    assert_err(
        &with_spec("  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [\"bad name\"]\n"),
        &["spec.hostAliases[0].hostnames[0]"],
    );
    assert_err(
        &with_spec("  hostAliases:\n  - ip: 10.1.2.3\n"),
        &["spec.hostAliases[0].hostnames", "at least one"],
    );
    assert_err(
        &with_spec("  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [a]\n    extra: 1\n"),
        &["spec.hostAliases[0].extra"],
    );
}

/// Every example a user may run as is parses.
#[test]
fn test_every_example_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 4, "{count} examples");
}

/// Pod-level resources size the VM and hold the containers'.
#[test]
fn test_pod_level_resources_size_the_pod() {
    let plan = ok(&with_spec(
        "  resources: {limits: {memory: 1Gi, cpu: \"2\"}, requests: {memory: 512Mi}}\n",
    ));
    assert_eq!(plan.effective_memory(), GI);
    assert_eq!(plan.effective_millicpu(), 2000);
    assert_eq!(plan.vcpus(), 2);
    // A request alone: the larger of it and the containers' rule.
    let plan = ok(&with_spec("  resources: {requests: {memory: 300Mi}}\n"));
    assert_eq!(plan.effective_memory(), 300 * MI);
    let plan = ok(&with_spec("  resources: {requests: {memory: 10Mi}}\n"));
    assert_eq!(plan.effective_memory(), DEFAULT_CONTAINER_MEMORY);
    assert_err(
        &with_container("    resources: {limits: {memory: 2Gi}}\n  resources: {limits: {memory: 1Gi}}\n"),
        &["spec.containers[0].resources.limits.memory: is above the pod's spec.resources.limits.memory"],
    );
    assert_err(
        &with_container(
            "    resources: {requests: {cpu: \"2\"}}\n  resources: {requests: {cpu: \"1\"}}\n",
        ),
        &["spec.resources.requests.cpu: is below what the containers request together"],
    );
    assert_err(
        &with_spec("  resources: {limits: {hugepages-2Mi: 1Gi}}\n"),
        &["spec.resources.limits.hugepages-2Mi: huge pages are not supported"],
    );
    assert_err(
        &with_spec("  resources: {limits: {memory: 1Gi}, requests: {memory: 2Gi}}\n"),
        &["spec.resources.requests.memory: request \"2Gi\" is greater than the limit"],
    );
}
