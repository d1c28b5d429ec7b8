//! End-to-end tests of [`parse`] and [`load`]: realistic manifests, and
//! every refused input with the message it gets.

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
    assert!(message.starts_with("pod.yaml: "), "no file name in: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{message:?}\nshould contain {needle:?}");
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
    assert_eq!(plan.uid.as_deref(), Some("6f2b1c3e-1111-2222-3333-444455556666"));
    assert_eq!(plan.hostname, "shop-1");
    assert_eq!(plan.labels.get("tier").map(String::as_str), Some("frontend"));
    assert_eq!(plan.labels.get("version").map(String::as_str), Some("1.2"));
    assert_eq!(
        plan.annotations.get("example.com/owner").map(String::as_str),
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
    let env: Vec<(&str, &str)> = app.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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
    assert_eq!((c.memory_limit, c.cpu_limit, c.run_as_user), (None, None, None));
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
fn test_parse_yaml_syntax_error_names_line() {
    let message = err("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n spec: [\n");
    assert!(message.starts_with("pod.yaml: line "), "{message}");
    assert!(message.contains("invalid YAML"), "{message}");
    assert!(message.contains("fix the YAML syntax"), "{message}");
    let message = err("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: a\n");
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("tabs"), "{message}");
}

#[test]
fn test_parse_empty_file() {
    for text in ["", "\n\n", "# only a comment\n", "---\n", "---\n...\n"] {
        let message = err(text);
        assert!(message.starts_with("pod.yaml: the file is empty"), "{text:?}: {message}");
        assert!(message.contains("kind: Pod"), "{message}");
    }
}

#[test]
fn test_parse_multiple_documents_rejected() {
    let doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(&format!("{doc}---\n{doc}"), &["found 2 YAML documents", "one Pod per file"]);
}

#[test]
fn test_parse_document_not_a_mapping() {
    assert_err("- a\n- b\n", &["the document is a list", "Pod manifest"]);
    assert_err("hello\n", &["not a mapping"]);
}

#[test]
fn test_parse_kind_not_pod() {
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#;
    assert_err(deployment, &["kind must be Pod, got Deployment", "spec.template"]);
    assert_err("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n", &["kind must be Pod, got Service"]);
    assert_err("apiVersion: v1\nkind: List\nitems: []\n", &["kind must be Pod, got List"]);
    assert_err("apiVersion: v1\nkind: 3\n", &["kind must be Pod, got 3"]);
}

#[test]
fn test_parse_kind_missing() {
    assert_err("apiVersion: v1\nmetadata: {name: a}\n", &["kind is missing", "kind: Pod"]);
}

#[test]
fn test_parse_api_version_not_v1() {
    let yaml = "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(yaml, &["apiVersion must be v1", "got apps/v1", "set apiVersion: v1"]);
    assert_err("kind: Pod\nmetadata: {name: a}\n", &["apiVersion is missing", "apiVersion: v1"]);
}

#[test]
fn test_parse_missing_metadata_name() {
    let no_name = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {a: b}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(no_name, &["metadata.name: is required", "name: my-pod"]);
    let no_meta = "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(no_meta, &["metadata.name: is required"]);
    let generate = "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(generate, &["metadata.name", "generateName"]);
}

#[test]
fn test_parse_invalid_pod_name() {
    let pod = |name: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: \"{name}\"}}\nspec: {{containers: [{{name: a, image: busybox}}]}}\n")
    };
    assert_err(&pod("My_Pod"), &["metadata.name: \"My_Pod\" is not a valid pod name", "uppercase", "e.g. \"my-pod\""]);
    assert_err(&pod("web_1"), &["contains '_'", "lowercase letters"]);
    assert_err(&pod("-web"), &["start and end with a letter or digit"]);
    assert_err(&pod("web."), &["contains '.'"]);
    assert_err(&pod(&"a".repeat(64)), &["more than 63"]);
    ok(&pod(&"a".repeat(63)));
}

#[test]
fn test_parse_invalid_container_name() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: ok\n    image: busybox\n  - name: Bad_Name\n    image: busybox\n";
    assert_err(yaml, &["spec.containers[1].name: \"Bad_Name\" is not a valid container name", "e.g. \"bad-name\""]);
    let missing = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - image: busybox\n";
    assert_err(missing, &["spec.containers[0].name: is required"]);
}

#[test]
fn test_parse_invalid_namespace_and_hostname() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: Prod}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(yaml, &["metadata.namespace", "not a valid namespace"]);
    assert_err(&with_spec("  hostname: my_host\n"), &["spec.hostname", "not a valid hostname"]);
    let plan = ok(&with_spec("  hostname: h1\n  hostnameOverride: host.example\n"));
    assert_eq!(plan.hostname, "host.example");
}

#[test]
fn test_parse_no_containers() {
    let base = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
    for spec in ["spec: {}\n", "spec:\n  containers: []\n", "spec:\n  containers:\n", "spec:\n  initContainers: [{name: i, image: busybox}]\n"] {
        assert_err(&format!("{base}{spec}"), &["spec.containers: no containers", "add a container"]);
    }
    assert_err(base, &["spec: is missing"]);
}

#[test]
fn test_parse_duplicate_container_names() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: app, image: busybox}\n  - {name: app, image: busybox}\n";
    assert_err(yaml, &["spec.containers[1].name: \"app\" is already the name of spec.containers[0]", "rename one"]);
    let across = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  initContainers:\n  - {name: app, image: busybox}\n  containers:\n  - {name: app, image: busybox}\n";
    assert_err(across, &["spec.containers[0].name", "spec.initContainers[0]", "unique across containers and initContainers"]);
}

#[test]
fn test_parse_bad_quantity_exact_message() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: a, image: busybox}\n  - name: b\n    image: busybox\n    resources:\n      limits:\n        memory: 1.5Gx\n";
    assert_eq!(
        err(yaml),
        "pod.yaml: spec.containers[1].resources.limits.memory: \"1.5Gx\" is not a quantity (use e.g. 512Mi, 1Gi, 1.5G)"
    );
}

#[test]
fn test_parse_bad_quantities() {
    let cases = [
        ("limits: {memory: -1Gi}", "limits.memory: \"-1Gi\" is negative (use e.g. 512Mi"),
        ("limits: {memory: -5}", "limits.memory: \"-5\" is negative"),
        ("limits: {memory: \"\"}", "limits.memory: \"\" is empty (use e.g. 512Mi"),
        ("requests: {memory: lots}", "requests.memory: \"lots\" is not a quantity"),
        ("limits: {cpu: 2cores}", "limits.cpu: \"2cores\" is not a quantity (use e.g. 500m, 1, 2.5)"),
        ("requests: {cpu: -100m}", "requests.cpu: \"-100m\" is negative"),
        ("limits: {memory: 1e40}", "limits.memory: \"1e40\" is out of range"),
        ("limits: {memory: 20Ei}", "is out of range"),
        ("limits: {ephemeral-storage: 1Gx}", "limits.ephemeral-storage: \"1Gx\" is not a quantity"),
    ];
    for (resources, want) in cases {
        assert_err(
            &with_container(&format!("    resources:\n      {resources}\n")),
            &["spec.containers[0].resources.", want],
        );
    }
}

#[test]
fn test_parse_unknown_and_unsupported_resources() {
    let res = |r: &str| with_container(&format!("    resources:\n      limits: {{{r}}}\n"));
    assert_err(&res("memroy: 1Gi"), &["limits.memroy: unknown resource \"memroy\"", "did you mean \"memory\"?"]);
    assert_err(&res("nvidia.com/gpu: 1"), &["extended resource \"nvidia.com/gpu\" is not supported"]);
    assert_err(&res("hugepages-2Mi: 1Gi"), &["huge pages are not supported"]);
    assert_err(
        &with_container("    resources:\n      claims:\n      - name: gpu\n"),
        &["resources.claims: is not supported by peapod"],
    );
    assert_err(
        &with_spec("  resources:\n    limits: {memory: 1Gi}\n"),
        &["spec.resources: pod-level resources are not supported", "each container"],
    );
}

#[test]
fn test_parse_memory_limit_below_minimum() {
    let res = |m: &str| with_container(&format!("    resources:\n      limits:\n        memory: {m}\n"));
    assert_err(
        &res("4Mi"),
        &["spec.containers[0].resources.limits.memory: \"4Mi\"", "minimum memory limit of 6Mi", "runc and Docker", "set at least 6Mi"],
    );
    assert_err(&res("0"), &["minimum memory limit of 6Mi"]);
    let plan = ok(&res("6Mi"));
    assert_eq!(plan.containers[0].memory_limit, Some(MIN_CONTAINER_MEMORY));
    // Only limits have the floor; small requests are fine.
    ok(&with_container("    resources:\n      requests: {memory: 1Mi}\n"));
}

#[test]
fn test_parse_request_greater_than_limit() {
    assert_err(
        &with_container("    resources:\n      limits: {memory: 1Gi}\n      requests: {memory: 2Gi}\n"),
        &["spec.containers[0].resources.requests.memory: request \"2Gi\" is greater than the limit \"1Gi\"", "lower the request or raise resources.limits.memory"],
    );
    assert_err(
        &with_container("    resources:\n      limits: {cpu: 500m}\n      requests: {cpu: \"1\"}\n"),
        &["resources.requests.cpu: request \"1\" is greater than the limit \"500m\""],
    );
    ok(&with_container("    resources:\n      limits: {cpu: 1}\n      requests: {cpu: 1000m}\n"));
}

#[test]
fn test_parse_image_missing_or_empty() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n";
    assert_err(yaml, &["spec.containers[0].image: is required", "image: busybox:1.36"]);
    let empty = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n    image: \"\"\n";
    assert_err(empty, &["spec.containers[0].image: is empty", "image: busybox:1.36"]);
    let blank = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n    image: \"  \"\n";
    assert_err(blank, &["spec.containers[0].image: is empty"]);
}

#[test]
fn test_parse_invalid_image_reference() {
    let pod = |image: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  initContainers:\n  - name: i\n    image: \"{image}\"\n  containers:\n  - name: a\n    image: busybox\n")
    };
    assert_err(&pod("BusyBox"), &["spec.initContainers[0].image: image reference \"BusyBox\"", "must be lowercase", "accepted forms"]);
    assert_err(&pod("busybox:bad!tag"), &["spec.initContainers[0].image", "tag \"bad!tag\" is not valid"]);
    assert_err(&pod("busybox@sha256:1234"), &["64 lowercase hex"]);
    assert_err(&pod("docker://busybox"), &["docker:// transport", "not supported yet", "skopeo copy"]);
    assert_err(&pod("oci:"), &["oci: transport needs a path"]);
}

#[test]
fn test_parse_volume_mount_naming_no_volume() {
    let yaml = with_container("    volumeMounts:\n    - name: dat\n      mountPath: /data\n") + "  volumes:\n  - name: data\n    emptyDir: {}\n";
    assert_err(&yaml, &["spec.containers[0].volumeMounts[0].name: no volume named \"dat\" in spec.volumes", "did you mean \"data\"?"]);
    let no_volumes = with_container("    volumeMounts:\n    - name: data\n      mountPath: /data\n");
    assert_err(&no_volumes, &["no volume named \"data\"", "the pod has no volumes", "add the volume to spec.volumes"]);
}

#[test]
fn test_parse_duplicate_volume_names() {
    let yaml = with_spec("  volumes:\n  - name: data\n    emptyDir: {}\n  - name: data\n    hostPath: {path: /srv}\n");
    assert_err(&yaml, &["spec.volumes[1].name: duplicate volume name \"data\"", "spec.volumes[0]", "must be unique"]);
}

#[test]
fn test_parse_duplicate_mount_path() {
    let yaml = with_container("    volumeMounts:\n    - {name: a, mountPath: /data}\n    - {name: b, mountPath: /data/}\n") + "  volumes:\n  - name: a\n  - name: b\n";
    assert_err(&yaml, &["spec.containers[0].volumeMounts[1].mountPath: \"/data/\" is already the mountPath of volumeMounts[0]", "its own path"]);
}

#[test]
fn test_parse_bad_sub_path() {
    let mount = |sub: &str| {
        with_container(&format!("    volumeMounts:\n    - name: a\n      mountPath: /data\n      subPath: \"{sub}\"\n")) + "  volumes:\n  - name: a\n"
    };
    assert_err(&mount("/etc"), &["volumeMounts[0].subPath: \"/etc\" is an absolute path", "relative to the volume's root"]);
    assert_err(&mount("a/../../etc"), &["volumeMounts[0].subPath: \"a/../../etc\" contains '..'"]);
    assert_err(&mount(".."), &["contains '..'"]);
    let plan = ok(&mount("logs/app..1"));
    assert_eq!(plan.containers[0].volume_mounts[0].sub_path.as_deref(), Some("logs/app..1"));
    let expr = with_container("    volumeMounts:\n    - name: a\n      mountPath: /data\n      subPathExpr: $(POD_NAME)\n") + "  volumes:\n  - name: a\n";
    assert_err(&expr, &["subPathExpr: is not supported by peapod", "use subPath"]);
}

#[test]
fn test_parse_mount_path_not_absolute() {
    let yaml = with_container("    volumeMounts:\n    - name: a\n      mountPath: data\n") + "  volumes:\n  - name: a\n";
    assert_err(&yaml, &["volumeMounts[0].mountPath: \"data\" is not an absolute path", "e.g. /data"]);
    let missing = with_container("    volumeMounts:\n    - name: a\n") + "  volumes:\n  - name: a\n";
    assert_err(&missing, &["volumeMounts[0].mountPath: is required"]);
}

#[test]
fn test_parse_mount_propagation() {
    let mount = |p: &str| {
        with_container(&format!("    volumeMounts:\n    - name: a\n      mountPath: /data\n      mountPropagation: {p}\n")) + "  volumes:\n  - name: a\n"
    };
    ok(&mount("HostToContainer"));
    assert_err(&mount("Bidirectional"), &["mountPropagation: Bidirectional needs a privileged container"]);
    assert_err(&mount("Sideways"), &["\"Sideways\" is not a propagation mode"]);
}

#[test]
fn test_parse_restart_policy_invalid() {
    assert_err(&with_spec("  restartPolicy: Sometimes\n"), &["spec.restartPolicy: \"Sometimes\" is not a restart policy", "Always, OnFailure or Never"]);
    assert_err(&with_spec("  restartPolicy: always\n"), &["\"always\" is not a restart policy"]);
    assert_eq!(ok(&with_spec("  restartPolicy: Never\n")).restart_policy, RestartPolicy::Never);
}

#[test]
fn test_parse_container_restart_policy() {
    let init = |policy: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    restartPolicy: {policy}\n  containers:\n  - name: a\n    image: busybox\n")
    };
    assert_err(&init("OnFailure"), &["spec.initContainers[0].restartPolicy: \"OnFailure\" is not allowed on an init container", "only Always"]);
    assert_err(&with_container("    restartPolicy: Always\n"), &["spec.containers[0].restartPolicy: is not supported by peapod on app containers", "spec.restartPolicy"]);
}

#[test]
fn test_parse_grace_period_and_deadline() {
    assert_err(
        &with_spec("  terminationGracePeriodSeconds: -1\n"),
        &["spec.terminationGracePeriodSeconds: -1 is negative", "0 or more seconds"],
    );
    assert_eq!(ok(&with_spec("  terminationGracePeriodSeconds: 0\n")).termination_grace_period_seconds, 0);
    assert_err(&with_spec("  activeDeadlineSeconds: 0\n"), &["spec.activeDeadlineSeconds: 0 is not positive"]);
}

#[test]
fn test_parse_host_namespaces_refused() {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_err(
            &with_spec(&format!("  {field}: true\n")),
            &[&format!("spec.{field}: true is not supported by peapod"), "remove it"],
        );
        ok(&with_spec(&format!("  {field}: false\n")));
    }
}

#[test]
fn test_parse_privileged_refused() {
    assert_err(
        &with_container("    securityContext:\n      privileged: true\n"),
        &["spec.containers[0].securityContext.privileged: true is not supported by peapod", "capabilities.add"],
    );
}

#[test]
fn test_parse_security_context_users() {
    let yaml = with_spec("  securityContext:\n    runAsUser: 1000\n    runAsNonRoot: true\n");
    let plan = ok(&yaml);
    assert_eq!(plan.containers[0].run_as_user, Some(1000));
    assert!(plan.containers[0].run_as_non_root);
    let root = with_container("    securityContext:\n      runAsUser: 0\n      runAsNonRoot: true\n");
    assert_err(&root, &["securityContext.runAsUser: is 0 (root) but runAsNonRoot is true"]);
    assert_err(&with_container("    securityContext:\n      runAsUser: -1\n"), &["runAsUser: -1 is not a valid id", "0 to 2147483647"]);
    assert_err(&with_spec("  securityContext:\n    runAsGroup: 4294967296\n"), &["spec.securityContext.runAsGroup", "not a valid id"]);
}

#[test]
fn test_parse_env_from_config_map_or_secret_refused() {
    assert_err(
        &with_container("    envFrom:\n    - configMapRef: {name: settings}\n"),
        &["spec.containers[0].envFrom[0].configMapRef: environment from ConfigMaps is not supported by peapod", "inline values"],
    );
    assert_err(
        &with_container("    envFrom:\n    - secretRef: {name: creds}\n      prefix: DB_\n"),
        &["envFrom[0].secretRef: environment from Secrets is not supported"],
    );
    assert_err(
        &with_container("    env:\n    - name: PASSWORD\n      valueFrom:\n        secretKeyRef: {name: creds, key: password}\n"),
        &["spec.containers[0].env[0].valueFrom.secretKeyRef: environment from Secrets is not supported by peapod", "value:"],
    );
    assert_err(
        &with_container("    env:\n    - name: MODE\n      valueFrom:\n        configMapKeyRef: {name: settings, key: mode, optional: true}\n"),
        &["env[0].valueFrom.configMapKeyRef: environment from ConfigMaps is not supported"],
    );
}

#[test]
fn test_parse_env_order_override_and_expansion() {
    let plan = ok(&with_container(
        "    command: [sh, -c, \"echo $(GREETING) $(NAME) $(UNSET)\"]\n    args: [\"$$(NAME)\", \"$(A)\"]\n    env:\n    - {name: A, value: first}\n    - {name: NAME, value: world}\n    - {name: GREETING, value: \"hello $(NAME)\"}\n    - {name: A, value: \"second-$(A)\"}\n    - {name: LATER_REF, value: \"$(Z)\"}\n    - {name: Z, value: z}\n    - {name: EMPTY}\n",
    ));
    let c = &plan.containers[0];
    let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [
            ("A", "second-first"),
            ("NAME", "world"),
            ("GREETING", "hello world"),
            ("LATER_REF", "$(Z)"),
            ("Z", "z"),
            ("EMPTY", ""),
        ]
    );
    assert_eq!(c.command, ["sh", "-c", "echo hello world world $(UNSET)"]);
    assert_eq!(c.args, ["$(NAME)", "second-first"]);
}

#[test]
fn test_parse_env_invalid() {
    assert_err(&with_container("    env:\n    - value: x\n"), &["spec.containers[0].env[0].name: is required"]);
    assert_err(&with_container("    env:\n    - {name: \"A=B\", value: x}\n"), &["env[0].name: \"A=B\" is not a valid variable name", "'='"]);
    assert_err(
        &with_container("    env:\n    - name: A\n      value: x\n      valueFrom:\n        fieldRef: {fieldPath: metadata.name}\n"),
        &["env[0]: sets both value and valueFrom"],
    );
    assert_err(&with_container("    env:\n    - name: A\n      valueFrom: {}\n"), &["env[0].valueFrom: is empty"]);
    assert_err(
        &with_container("    env:\n    - name: IP\n      valueFrom:\n        fieldRef: {fieldPath: status.podIP}\n"),
        &["env[0].valueFrom.fieldRef.fieldPath: status.podIP is not supported by peapod yet"],
    );
    assert_err(
        &with_container("    env:\n    - name: X\n      valueFrom:\n        fieldRef: {fieldPath: metadata.uid}\n"),
        &["metadata.uid is not set"],
    );
}

#[test]
fn test_parse_env_resource_field_ref() {
    let plan = ok(r#"
apiVersion: v1
kind: Pod
metadata: {name: res, labels: {app: res}, annotations: {note: hi}}
spec:
  containers:
  - name: app
    image: busybox
    resources:
      limits: {memory: 512Mi, cpu: 1500m}
      requests: {cpu: 250m}
    env:
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: CPU_REQ_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: MEM_REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
    - {name: OTHER_MEM, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.memory, divisor: 1Mi}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['note']"}}}
    - {name: MISSING, valueFrom: {fieldRef: {fieldPath: "metadata.labels['nope']"}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
  - name: other
    image: busybox
"#);
    let env: Vec<(&str, &str)> = plan.containers[0].env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [
            ("MEM", "536870912"),
            ("MEM_MI", "512"),
            ("CPU", "2"),
            ("CPU_M", "1500"),
            ("CPU_REQ_M", "250"),
            ("MEM_REQ", "536870912"),
            // No limit: the pod's memory, 512Mi + the 128Mi default.
            ("OTHER_MEM", "640"),
            ("APP", "res"),
            ("NOTE", "hi"),
            ("MISSING", ""),
            ("SA", "default"),
        ]
    );
    assert_err(
        &with_container("    env:\n    - {name: X, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: \"0\"}}}\n"),
        &["resourceFieldRef.divisor: \"0\" is zero"],
    );
    assert_err(
        &with_container("    env:\n    - {name: X, valueFrom: {resourceFieldRef: {containerName: ghost, resource: limits.cpu}}}\n"),
        &["resourceFieldRef.containerName: no container named \"ghost\""],
    );
    assert_err(
        &with_container("    env:\n    - {name: X, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage}}}\n"),
        &["resourceFieldRef.resource: \"limits.ephemeral-storage\" is not supported"],
    );
}

#[test]
fn test_parse_unsupported_volume_sources() {
    let volume = |source: &str| with_spec(&format!("  volumes:\n  - name: v\n    {source}\n"));
    assert_err(
        &volume("configMap: {name: settings}"),
        &["spec.volumes[0].configMap: volume source configMap is not supported by peapod", "use emptyDir or hostPath"],
    );
    assert_err(&volume("secret:"), &["volume source secret is not supported by peapod"]);
    assert_err(&volume("persistentVolumeClaim: {claimName: data}"), &["volume source persistentVolumeClaim is not supported"]);
    assert_err(&volume("nfs: {server: nas, path: /export}"), &["volume source nfs is not supported"]);
    assert_err(&volume("projected: {sources: []}"), &["volume source projected is not supported"]);
    assert_err(
        &with_spec("  volumes:\n  - name: v\n    emptyDir: {}\n    hostPath: {path: /srv}\n"),
        &["spec.volumes[0]: sets more than one volume source (emptyDir, hostPath)"],
    );
}

#[test]
fn test_parse_volume_sources() {
    let volume = |source: &str| {
        let plan = ok(&with_spec(&format!("  volumes:\n  - name: v\n    {source}\n")));
        plan.volumes[0].source.clone()
    };
    assert_eq!(volume("emptyDir: {}"), VolumeSource::EmptyDir { medium_memory: false, size_limit: None });
    assert_eq!(volume("emptyDir:"), VolumeSource::EmptyDir { medium_memory: false, size_limit: None });
    assert_eq!(
        volume("emptyDir: {medium: \"\", sizeLimit: 1Gi}"),
        VolumeSource::EmptyDir { medium_memory: false, size_limit: Some(GI) }
    );
    assert_eq!(
        volume("hostPath: {path: /var/run/app.sock, type: Socket}"),
        VolumeSource::HostPath { path: "/var/run/app.sock".into(), kind: HostPathType::Socket }
    );
    assert_eq!(
        volume("hostPath: {path: /srv}"),
        VolumeSource::HostPath { path: "/srv".into(), kind: HostPathType::Unchecked }
    );
    let bad = |source: &str, want: &[&str]| assert_err(&with_spec(&format!("  volumes:\n  - name: v\n    {source}\n")), want);
    bad("hostPath: {path: srv/data}", &["spec.volumes[0].hostPath.path: \"srv/data\" is not an absolute path"]);
    bad("hostPath: {path: /srv/../etc}", &["hostPath.path: \"/srv/../etc\" must not contain '..'"]);
    bad("hostPath:", &["spec.volumes[0].hostPath.path: is required"]);
    bad("hostPath: {path: /srv, type: Folder}", &["hostPath.type: \"Folder\" is not a hostPath type", "DirectoryOrCreate"]);
    bad("emptyDir: {medium: Disk}", &["emptyDir.medium: \"Disk\" is not a storage medium", "Memory"]);
    bad("emptyDir: {medium: HugePages}", &["emptyDir.medium: HugePages is not supported by peapod"]);
    bad("emptyDir: {sizeLimit: 1Gb}", &["emptyDir.sizeLimit: \"1Gb\" is not a quantity"]);
    assert_err(&with_spec("  volumes:\n  - emptyDir: {}\n"), &["spec.volumes[0].name: is required"]);
    assert_err(&with_spec("  volumes:\n  - name: My-Vol\n"), &["spec.volumes[0].name: \"My-Vol\" is not a valid volume name"]);
}

#[test]
fn test_parse_unknown_field_names_path() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    imagee: busybox\n";
    let message = err(yaml);
    assert!(message.starts_with("pod.yaml: spec.containers[1].imagee: unknown field \"imagee\"; did you mean \"image\"?"), "{message}");
    assert!(message.contains("(line 10, column 5)"), "{message}");
}

#[test]
fn test_parse_unknown_fields_at_every_level() {
    assert_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\nreplicas: 3\n",
        &["replicas: unknown field \"replicas\"", "not part of the Kubernetes Pod schema", "allowed here: apiVersion, kind, metadata, spec, status"],
    );
    assert_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, label: {a: b}}\nspec: {containers: [{name: a, image: busybox}]}\n",
        &["metadata.label: unknown field \"label\"; did you mean \"labels\"?"],
    );
    assert_err(&with_spec("  restartpolicy: Never\n"), &["spec.restartpolicy: unknown field", "did you mean \"restartPolicy\"?"]);
    assert_err(
        &with_container("    resources:\n      limit: {memory: 1Gi}\n"),
        &["spec.containers[0].resources.limit: unknown field \"limit\"; did you mean \"limits\"?"],
    );
    assert_err(
        &with_container("    ports:\n    - port: 80\n"),
        &["spec.containers[0].ports[0].port: unknown field \"port\""],
    );
    assert_err(
        &with_container("    securityContext:\n      capabilities: {add: [NET_ADMIN], remove: [ALL]}\n"),
        &["securityContext.capabilities.remove: unknown field"],
    );
    assert_err(
        &with_spec("  volumes:\n  - name: v\n    emptyDir: {size: 1Gi}\n"),
        &["spec.volumes[0].emptyDir.size: unknown field \"size\""],
    );
    assert_err(
        &with_container("    env:\n    - name: A\n      valu: x\n"),
        &["spec.containers[0].env[0].valu: unknown field \"valu\"; did you mean \"value\"?"],
    );
}

#[test]
fn test_parse_misindented_field() {
    // `image` indented under the wrong key: reported where it landed.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  image: busybox\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
    assert_err(yaml, &["metadata.image: unknown field \"image\"", "indentation"]);
}

#[test]
fn test_parse_wrong_types() {
    assert_err(
        &with_container("    ports:\n    - containerPort: \"80\"\n"),
        &["spec.containers[0].ports[0].containerPort: expected an integer (without quotes), found string \"80\""],
    );
    assert_err(&with_spec("  hostNetwork: maybe\n"), &["spec.hostNetwork: expected true or false"]);
    assert_err(&with_container("    command: /bin/sh\n"), &["spec.containers[0].command: expected a list"]);
    assert_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: {name: a}\n",
        &["spec.containers: expected a list"],
    );
    assert_err(&with_container("    resources: 1Gi\n"), &["resources: expected a mapping of fields"]);
}

#[test]
fn test_parse_ports() {
    let port = |p: &str| with_container(&format!("    ports:\n    - {p}\n"));
    let plan = ok(&port("{containerPort: 53, protocol: UDP, hostPort: 5353, hostIP: 127.0.0.1}"));
    assert_eq!(
        plan.containers[0].ports[0],
        PortPlan { name: None, container_port: 53, host_port: Some(5353), host_ip: Some("127.0.0.1".into()), protocol: Protocol::Udp }
    );
    assert_err(&port("{containerPort: 0}"), &["ports[0].containerPort: 0 is not a port number", "1 to 65535"]);
    assert_err(&port("{containerPort: 70000}"), &["70000 is not a port number"]);
    assert_err(&port("{name: http}"), &["ports[0].containerPort: is required"]);
    assert_err(&port("{containerPort: 80, hostPort: -1}"), &["ports[0].hostPort: -1 is not a port number"]);
    assert_err(&port("{containerPort: 80, protocol: tcp}"), &["ports[0].protocol: \"tcp\" is not a protocol", "TCP, UDP or SCTP"]);
    assert_err(&port("{containerPort: 80, hostIP: localhost}"), &["ports[0].hostIP: \"localhost\" is not an IP address"]);
    assert_err(&port("{containerPort: 80, name: HTTP_PORT}"), &["ports[0].name: \"HTTP_PORT\" is not a valid port name"]);
    assert_err(
        &with_container("    ports:\n    - {containerPort: 80, name: web}\n    - {containerPort: 81, name: web}\n"),
        &["ports[1].name: \"web\" is already the name of ports[0]"],
    );
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}\n  - {name: b, image: busybox, ports: [{containerPort: 81, hostPort: 8080}]}\n";
    assert_err(two, &["spec.containers[1].ports[0].hostPort: host port 8080/Tcp is already published by spec.containers[0].ports[0].hostPort"]);
}

#[test]
fn test_parse_labels_and_annotations_checked() {
    let meta = |m: &str| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n{m}spec: {{containers: [{{name: a, image: busybox}}]}}\n");
    assert_err(&meta("  labels: {\"bad key!\": x}\n"), &["metadata.labels.bad key!: \"bad key!\" is not a valid label key"]);
    assert_err(&meta("  labels: {app: \"has spaces\"}\n"), &["metadata.labels.app: \"has spaces\" is not a valid label value", "annotations"]);
    assert_err(&meta("  annotations: {\"Example.com/x\": y}\n"), &["metadata.annotations.Example.com/x", "not a valid annotation key"]);
    let plan = ok(&meta("  labels: {app: web, \"app.kubernetes.io/part-of\": shop, empty: \"\"}\n  annotations: {note: \"free text: fine\"}\n"));
    assert_eq!(plan.labels.len(), 3);
}

#[test]
fn test_parse_other_refusals() {
    assert_err(&with_spec("  os: {name: windows}\n"), &["spec.os.name: windows is not supported by peapod", "linux"]);
    assert_err(&with_spec("  dnsPolicy: Custom\n"), &["spec.dnsPolicy: \"Custom\" is not a DNS policy"]);
    assert_err(
        &with_spec("  ephemeralContainers:\n  - name: debug\n    image: busybox\n"),
        &["spec.ephemeralContainers: is not supported by peapod"],
    );
    assert_err(&with_container("    volumeDevices:\n    - {name: blk, devicePath: /dev/xvda}\n"), &["volumeDevices: is not supported by peapod"]);
    assert_err(&with_container("    workingDir: app\n"), &["spec.containers[0].workingDir: \"app\" is not an absolute path"]);
    assert_err(&with_container("    imagePullPolicy: Sometimes\n"), &["imagePullPolicy: \"Sometimes\" is not a pull policy"]);
}

#[test]
fn test_parse_every_error_names_the_file_and_a_fix() {
    let bad = [
        String::new(),
        "a: [\n".to_owned(),
        "apiVersion: v1\nkind: Deployment\n".to_owned(),
        with_spec("  restartPolicy: Sometimes\n"),
        with_container("    resources: {limits: {memory: 1.5Gx}}\n"),
        with_container("    imagee: x\n"),
    ];
    for yaml in &bad {
        let message = err(yaml);
        assert!(message.starts_with("pod.yaml: "), "{message}");
        let has_fix = ["use ", "set ", "add ", "fix ", "write ", "did you mean", "check ", "copy "]
            .iter()
            .any(|verb| message.contains(verb));
        assert!(has_fix, "no fix in {message:?}");
    }
}

#[test]
fn test_spec_error_field_path() {
    let e = parse(&with_spec("  restartPolicy: Sometimes\n"), FILE).expect_err("bad");
    assert_eq!(e.field_path(), Some("spec.restartPolicy"));
    let e = parse("", FILE).expect_err("empty");
    assert_eq!(e.field_path(), None);
}

#[test]
fn test_parse_plan_round_trips_through_json() {
    let plan = ok(FULL_POD);
    let json = serde_json::to_string(&plan).expect("serialize");
    let back: PodPlan = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, plan);
}

#[test]
fn test_parse_source_name_used_in_messages() {
    let e = parse("apiVersion: v1\nkind: Job\n", "examples/job.yaml").expect_err("job");
    assert!(e.to_string().starts_with("examples/job.yaml: kind must be Pod, got Job"), "{e}");
}
