//! Containers, volumes, mounts, ports, security and environment: refused
//! inputs with their messages, and the valid neighbours.

use super::*;

#[test]
fn test_parse_volume_mount_naming_no_volume() {
    let yaml = with_container("    volumeMounts:\n    - name: dat\n      mountPath: /data\n")
        + "  volumes:\n  - name: data\n    emptyDir: {}\n";
    assert_err(
        &yaml,
        &[
            "spec.containers[0].volumeMounts[0].name: no volume named \"dat\" in spec.volumes",
            "did you mean \"data\"?",
        ],
    );
    let no_volumes =
        with_container("    volumeMounts:\n    - name: data\n      mountPath: /data\n");
    assert_err(
        &no_volumes,
        &[
            "no volume named \"data\"",
            "the pod has no volumes",
            "add the volume to spec.volumes",
        ],
    );
}

#[test]
fn test_parse_duplicate_volume_names() {
    let yaml = with_spec("  volumes:\n  - name: data\n    emptyDir: {}\n  - name: data\n    hostPath: {path: /srv}\n");
    assert_err(
        &yaml,
        &[
            "spec.volumes[1].name: duplicate volume name \"data\"",
            "spec.volumes[0]",
            "must be unique",
        ],
    );
}

#[test]
fn test_parse_duplicate_mount_path() {
    let yaml = with_container("    volumeMounts:\n    - {name: a, mountPath: /data}\n    - {name: b, mountPath: /data/}\n") + "  volumes:\n  - name: a\n  - name: b\n";
    assert_err(&yaml, &["spec.containers[0].volumeMounts[1].mountPath: \"/data/\" is already the mountPath of volumeMounts[0]", "its own path"]);
}

#[test]
fn test_parse_bad_sub_path() {
    let mount = |sub: &str| {
        with_container(&format!(
            "    volumeMounts:\n    - name: a\n      mountPath: /data\n      subPath: \"{sub}\"\n"
        )) + "  volumes:\n  - name: a\n"
    };
    assert_err(
        &mount("/etc"),
        &[
            "volumeMounts[0].subPath: \"/etc\" is an absolute path",
            "relative to the volume's root",
        ],
    );
    assert_err(
        &mount("a/../../etc"),
        &["volumeMounts[0].subPath: \"a/../../etc\" contains '..'"],
    );
    assert_err(&mount(".."), &["contains '..'"]);
    let plan = ok(&mount("logs/app..1"));
    assert_eq!(
        plan.containers[0].volume_mounts[0].sub_path.as_deref(),
        Some("logs/app..1")
    );
    // subPathExpr: expanded with the container's environment.
    let expr = |e: &str| {
        with_container(&format!("    env:\n    - name: POD_NAME\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n    volumeMounts:\n    - name: a\n      mountPath: /data\n      subPathExpr: {e}\n")) + "  volumes:\n  - name: a\n"
    };
    let plan = ok(&expr("logs/$(POD_NAME)"));
    assert_eq!(
        plan.containers[0].volume_mounts[0].sub_path.as_deref(),
        Some("logs/web")
    );
    assert_err(
        &expr("$(POD_NAME)/.."),
        &["volumeMounts[0].subPathExpr", "'..'"],
    );
}

#[test]
fn test_parse_mount_path_not_absolute() {
    let yaml = with_container("    volumeMounts:\n    - name: a\n      mountPath: data\n")
        + "  volumes:\n  - name: a\n";
    assert_err(
        &yaml,
        &[
            "volumeMounts[0].mountPath: \"data\" is not an absolute path",
            "e.g. /data",
        ],
    );
    let missing =
        with_container("    volumeMounts:\n    - name: a\n") + "  volumes:\n  - name: a\n";
    assert_err(&missing, &["volumeMounts[0].mountPath: is required"]);
}

#[test]
fn test_parse_mount_propagation() {
    let mount = |p: &str| {
        with_container(&format!("    volumeMounts:\n    - name: a\n      mountPath: /data\n      mountPropagation: {p}\n")) + "  volumes:\n  - name: a\n"
    };
    ok(&mount("HostToContainer"));
    assert_err(
        &mount("Bidirectional"),
        &["mountPropagation: Bidirectional needs a privileged container"],
    );
    assert_err(
        &mount("Sideways"),
        &["\"Sideways\" is not a propagation mode"],
    );
}

#[test]
fn test_parse_restart_policy_invalid() {
    assert_err(
        &with_spec("  restartPolicy: Sometimes\n"),
        &[
            "spec.restartPolicy: \"Sometimes\" is not a restart policy",
            "Always, OnFailure or Never",
        ],
    );
    assert_err(
        &with_spec("  restartPolicy: always\n"),
        &["\"always\" is not a restart policy"],
    );
    assert_eq!(
        ok(&with_spec("  restartPolicy: Never\n")).restart_policy,
        RestartPolicy::Never
    );
}

#[test]
fn test_parse_container_restart_policy() {
    let init = |policy: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    restartPolicy: {policy}\n  containers:\n  - name: a\n    image: busybox\n")
    };
    assert_err(&init("OnFailure"), &["spec.initContainers[0].restartPolicy: \"OnFailure\" is not allowed on an init container", "only Always"]);
    assert_err(
        &with_container("    restartPolicy: Always\n"),
        &[
            "spec.containers[0].restartPolicy: is not supported by peapod on app containers",
            "spec.restartPolicy",
        ],
    );
}

#[test]
fn test_parse_grace_period_and_deadline() {
    assert_err(
        &with_spec("  terminationGracePeriodSeconds: -1\n"),
        &[
            "spec.terminationGracePeriodSeconds: -1 is negative",
            "0 or more seconds",
        ],
    );
    assert_eq!(
        ok(&with_spec("  terminationGracePeriodSeconds: 0\n")).termination_grace_period_seconds,
        0
    );
    assert_err(
        &with_spec("  activeDeadlineSeconds: 0\n"),
        &["spec.activeDeadlineSeconds: 0 is not positive"],
    );
}

#[test]
fn test_parse_host_namespaces_refused() {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_err(
            &with_spec(&format!("  {field}: true\n")),
            &[
                &format!("spec.{field}: true is not supported by peapod"),
                "remove it",
            ],
        );
        ok(&with_spec(&format!("  {field}: false\n")));
    }
}

#[test]
fn test_parse_privileged_refused() {
    assert_err(
        &with_container("    securityContext:\n      privileged: true\n"),
        &[
            "spec.containers[0].securityContext.privileged: true is not supported by peapod",
            "capabilities.add",
        ],
    );
}

#[test]
fn test_parse_security_context_users() {
    let yaml = with_spec("  securityContext:\n    runAsUser: 1000\n    runAsNonRoot: true\n");
    let plan = ok(&yaml);
    assert_eq!(plan.containers[0].run_as_user, Some(1000));
    assert!(plan.containers[0].run_as_non_root);
    let root =
        with_container("    securityContext:\n      runAsUser: 0\n      runAsNonRoot: true\n");
    assert_err(
        &root,
        &["securityContext.runAsUser: is 0 (root) but runAsNonRoot is true"],
    );
    assert_err(
        &with_container("    securityContext:\n      runAsUser: -1\n"),
        &["runAsUser: -1 is not a valid id", "0 to 2147483647"],
    );
    assert_err(
        &with_spec("  securityContext:\n    runAsGroup: 4294967296\n"),
        &["spec.securityContext.runAsGroup", "not a valid id"],
    );
}

#[test]
fn test_parse_env_from_a_missing_config_map_or_secret_refused() {
    assert_err(
        &with_container("    envFrom:\n    - configMapRef: {name: settings}\n"),
        &[
            "spec.containers[0].envFrom[0].configMapRef.name: ConfigMap \"settings\" is not in the pod file or a --configmap file",
            "no ConfigMap is defined",
            "optional: true",
        ],
    );
    assert_err(
        &with_container("    env:\n    - name: PASSWORD\n      valueFrom:\n        secretKeyRef: {name: creds, key: password}\n"),
        &["spec.containers[0].env[0].valueFrom.secretKeyRef.name: Secret \"creds\" is not in the pod file"],
    );
    // Optional and missing: no variable value.
    let plan = ok(&with_container(
        "    env:\n    - name: MODE\n      valueFrom:\n        configMapKeyRef: {name: settings, key: mode, optional: true}\n    envFrom:\n    - {secretRef: {name: creds, optional: true}}\n",
    ));
    assert_eq!(plan.containers[0].env, [("MODE".to_owned(), String::new())]);
    assert_err(
        &with_container("    envFrom:\n    - {prefix: X_}\n"),
        &["envFrom[0]: must set exactly one of configMapRef and secretRef"],
    );
}

#[test]
fn test_parse_env_order_override_and_expansion() {
    let plan = ok(&with_container(
        "    command: [sh, -c, \"echo $(GREETING) $(NAME) $(UNSET)\"]\n    args: [\"$$(NAME)\", \"$(A)\"]\n    env:\n    - {name: A, value: first}\n    - {name: NAME, value: world}\n    - {name: GREETING, value: \"hello $(NAME)\"}\n    - {name: A, value: \"second-$(A)\"}\n    - {name: LATER_REF, value: \"$(Z)\"}\n    - {name: Z, value: z}\n    - {name: EMPTY}\n",
    ));
    let c = &plan.containers[0];
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
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
    assert_err(
        &with_container("    env:\n    - value: x\n"),
        &["spec.containers[0].env[0].name: is required"],
    );
    assert_err(
        &with_container("    env:\n    - {name: \"A=B\", value: x}\n"),
        &["env[0].name: \"A=B\" is not a valid variable name", "'='"],
    );
    assert_err(
        &with_container("    env:\n    - name: A\n      value: x\n      valueFrom:\n        fieldRef: {fieldPath: metadata.name}\n"),
        &["env[0]: sets both value and valueFrom"],
    );
    assert_err(
        &with_container("    env:\n    - name: A\n      valueFrom: {}\n"),
        &["env[0].valueFrom: is empty"],
    );
    // The node is this host: status.hostIP is its address.
    let plan = ok(&with_container(
        "    env:\n    - name: IP\n      valueFrom:\n        fieldRef: {fieldPath: status.hostIP}\n",
    ));
    let ip = &plan.containers[0].env[0];
    assert_eq!(ip.0, "IP");
    assert_eq!(ip.1, crate::hostinfo::host_ip().to_string());
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
    let env: Vec<(&str, &str)> = plan.containers[0]
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
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
        &["spec.volumes[0].configMap.name: ConfigMap \"settings\" is not in the pod file"],
    );
    assert_err(
        &volume("secret:"),
        &["spec.volumes[0].secret.secretName: is required"],
    );
    assert_err(
        &volume("nfs: {server: nas, path: /export}"),
        &[
            "volume source nfs is not supported",
            "persistentVolumeClaim",
        ],
    );
    assert_err(
        &volume("projected: {sources: [{serviceAccountToken: {path: token}}]}"),
        &["projected.sources[0].serviceAccountToken: is not supported by peapod"],
    );
    assert_err(
        &with_spec("  volumes:\n  - name: v\n    emptyDir: {}\n    hostPath: {path: /srv}\n"),
        &["spec.volumes[0]: sets more than one volume source (emptyDir, hostPath)"],
    );
}

#[test]
fn test_parse_volume_sources() {
    let volume = |source: &str| {
        let plan = ok(&with_spec(&format!(
            "  volumes:\n  - name: v\n    {source}\n"
        )));
        plan.volumes[0].source.clone()
    };
    assert_eq!(
        volume("emptyDir: {}"),
        VolumeSource::EmptyDir {
            medium_memory: false,
            size_limit: None
        }
    );
    assert_eq!(
        volume("emptyDir:"),
        VolumeSource::EmptyDir {
            medium_memory: false,
            size_limit: None
        }
    );
    assert_eq!(
        volume("emptyDir: {medium: \"\", sizeLimit: 1Gi}"),
        VolumeSource::EmptyDir {
            medium_memory: false,
            size_limit: Some(GI)
        }
    );
    assert_eq!(
        volume("hostPath: {path: /var/run/app.sock, type: Socket}"),
        VolumeSource::HostPath {
            path: "/var/run/app.sock".into(),
            kind: HostPathType::Socket
        }
    );
    assert_eq!(
        volume("hostPath: {path: /srv}"),
        VolumeSource::HostPath {
            path: "/srv".into(),
            kind: HostPathType::Unchecked
        }
    );
    let bad = |source: &str, want: &[&str]| {
        assert_err(
            &with_spec(&format!("  volumes:\n  - name: v\n    {source}\n")),
            want,
        )
    };
    bad(
        "hostPath: {path: srv/data}",
        &["spec.volumes[0].hostPath.path: \"srv/data\" is not an absolute path"],
    );
    bad(
        "hostPath: {path: /srv/../etc}",
        &["hostPath.path: \"/srv/../etc\" must not contain '..'"],
    );
    bad("hostPath:", &["spec.volumes[0].hostPath.path: is required"]);
    bad(
        "hostPath: {path: /srv, type: Folder}",
        &[
            "hostPath.type: \"Folder\" is not a hostPath type",
            "DirectoryOrCreate",
        ],
    );
    bad(
        "emptyDir: {medium: Disk}",
        &[
            "emptyDir.medium: \"Disk\" is not a storage medium",
            "Memory",
        ],
    );
    bad(
        "emptyDir: {medium: HugePages}",
        &["emptyDir.medium: HugePages is not supported by peapod"],
    );
    bad(
        "emptyDir: {sizeLimit: 1Gb}",
        &["emptyDir.sizeLimit: \"1Gb\" is not a quantity"],
    );
    assert_err(
        &with_spec("  volumes:\n  - emptyDir: {}\n"),
        &["spec.volumes[0].name: is required"],
    );
    assert_err(
        &with_spec("  volumes:\n  - name: My-Vol\n"),
        &["spec.volumes[0].name: \"My-Vol\" is not a valid volume name"],
    );
}

#[test]
fn test_parse_ports() {
    let port = |p: &str| with_container(&format!("    ports:\n    - {p}\n"));
    let plan = ok(&port(
        "{containerPort: 53, protocol: UDP, hostPort: 5353, hostIP: 127.0.0.1}",
    ));
    assert_eq!(
        plan.containers[0].ports[0],
        PortPlan {
            name: None,
            container_port: 53,
            host_port: Some(5353),
            host_ip: Some("127.0.0.1".into()),
            protocol: Protocol::Udp
        }
    );
    assert_err(
        &port("{containerPort: 0}"),
        &[
            "ports[0].containerPort: 0 is not a port number",
            "1 to 65535",
        ],
    );
    assert_err(
        &port("{containerPort: 70000}"),
        &["70000 is not a port number"],
    );
    assert_err(
        &port("{name: http}"),
        &["ports[0].containerPort: is required"],
    );
    assert_err(
        &port("{containerPort: 80, hostPort: -1}"),
        &["ports[0].hostPort: -1 is not a port number"],
    );
    assert_err(
        &port("{containerPort: 80, protocol: tcp}"),
        &[
            "ports[0].protocol: \"tcp\" is not a protocol",
            "TCP, UDP or SCTP",
        ],
    );
    assert_err(
        &port("{containerPort: 80, hostIP: localhost}"),
        &["ports[0].hostIP: \"localhost\" is not an IP address"],
    );
    assert_err(
        &port("{containerPort: 80, name: HTTP_PORT}"),
        &["ports[0].name: \"HTTP_PORT\" is not a valid port name"],
    );
    assert_err(
        &with_container("    ports:\n    - {containerPort: 80, name: web}\n    - {containerPort: 81, name: web}\n"),
        &["ports[1].name: \"web\" is already the name of ports[0]"],
    );
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}\n  - {name: b, image: busybox, ports: [{containerPort: 81, hostPort: 8080}]}\n";
    assert_err(two, &["spec.containers[1].ports[0].hostPort: host port 8080/TCP is already published by spec.containers[0].ports[0].hostPort"]);
}

#[test]
fn test_parse_labels_and_annotations_checked() {
    let meta = |m: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n{m}spec: {{containers: [{{name: a, image: busybox}}]}}\n")
    };
    assert_err(
        &meta("  labels: {\"bad key!\": x}\n"),
        &["metadata.labels.bad key!: \"bad key!\" is not a valid label key"],
    );
    assert_err(
        &meta("  labels: {app: \"has spaces\"}\n"),
        &[
            "metadata.labels.app: \"has spaces\" is not a valid label value",
            "annotations",
        ],
    );
    assert_err(
        &meta("  annotations: {\"Example.com/x\": y}\n"),
        &[
            "metadata.annotations.Example.com/x",
            "not a valid annotation key",
        ],
    );
    let plan = ok(&meta("  labels: {app: web, \"app.kubernetes.io/part-of\": shop, empty: \"\"}\n  annotations: {note: \"free text: fine\"}\n"));
    assert_eq!(plan.labels.len(), 3);
}

#[test]
fn test_parse_other_refusals() {
    assert_err(
        &with_spec("  os: {name: windows}\n"),
        &["spec.os.name: windows is not supported by peapod", "linux"],
    );
    assert_err(
        &with_spec("  dnsPolicy: Custom\n"),
        &["spec.dnsPolicy: \"Custom\" is not a DNS policy"],
    );
    assert_err(
        &with_spec("  ephemeralContainers:\n  - name: debug\n    image: busybox\n"),
        &["spec.ephemeralContainers: is not supported by peapod"],
    );
    assert_err(
        &with_container("    volumeDevices:\n    - {name: blk, devicePath: /dev/xvda}\n"),
        &["volumeDevices: is not supported by peapod"],
    );
    assert_err(
        &with_container("    workingDir: app\n"),
        &["spec.containers[0].workingDir: \"app\" is not an absolute path"],
    );
    assert_err(
        &with_container("    imagePullPolicy: Sometimes\n"),
        &["imagePullPolicy: \"Sometimes\" is not a pull policy"],
    );
}

#[test]
fn test_dns_policy_and_config() {
    // No dnsConfig: the host's resolvers, nothing added.
    let plan = ok(&with_spec(""));
    assert_eq!(plan.dns, crate::spec::PodDns::default());
    // Added to the host's resolvers, options as resolv.conf writes them.
    let plan = ok(&with_spec(
        "  dnsPolicy: ClusterFirst\n  dnsConfig:\n    nameservers: [192.0.2.53, \"2001:db8::53\"]\n    \
         searches: [corp.example]\n    options: [{name: ndots, value: \"2\"}, {name: edns0}, \
         {name: timeout, value: 3}]\n",
    ));
    assert!(!plan.dns.config_only);
    assert_eq!(plan.dns.nameservers.len(), 2);
    assert_eq!(plan.dns.searches, ["corp.example"]);
    assert_eq!(plan.dns.options, ["ndots:2", "edns0", "timeout:3"]);
    // dnsPolicy None: dnsConfig alone, which must name a nameserver.
    let plan = ok(&with_spec(
        "  dnsPolicy: \"None\"\n  dnsConfig: {nameservers: [192.0.2.53]}\n",
    ));
    assert!(plan.dns.config_only);
    for (extra, want) in [
        (
            "  dnsPolicy: \"None\"\n",
            "spec.dnsConfig.nameservers: must list at least one nameserver when spec.dnsPolicy is None",
        ),
        (
            "  dnsConfig: {nameservers: [dns.example]}\n",
            "spec.dnsConfig.nameservers[0]: \"dns.example\" is not an IP address",
        ),
        (
            "  dnsConfig: {nameservers: [1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4]}\n",
            "spec.dnsConfig.nameservers: at most 3 nameservers",
        ),
        (
            "  dnsConfig: {searches: [\"bad domain\"]}\n",
            "spec.dnsConfig.searches[0]: \"bad domain\" is not a DNS name",
        ),
        (
            "  dnsConfig: {options: [{value: \"2\"}]}\n",
            "spec.dnsConfig.options[0].name: is required",
        ),
        (
            "  dnsConfig: {options: [{name: ndots, value: \"2 rotate\"}]}\n",
            "spec.dnsConfig.options[0].value: \"2 rotate\" is not an option value",
        ),
        (
            "  dnsConfig: {nameserver: [1.1.1.1]}\n",
            "spec.dnsConfig.nameserver: unknown field",
        ),
    ] {
        assert_err(&with_spec(extra), &[want]);
    }
}

#[test]
fn test_parse_probes() {
    let plan = ok(&with_container(
        "    ports: [{name: http, containerPort: 8080}]\n    startupProbe: {tcpSocket: {port: http}, failureThreshold: 30, periodSeconds: 1}\n    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n      initialDelaySeconds: 5\n    readinessProbe:\n      httpGet:\n        path: healthz\n        port: 8080\n        httpHeaders: [{name: X-Probe, value: \"1\"}]\n      successThreshold: 2\n",
    ));
    let probes = &plan.containers[0].probes;
    use peapod_proto::{ProbeAction, ProbeKind};
    assert_eq!(
        probes.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness
        ]
    );
    assert_eq!(
        probes[0].action,
        ProbeAction::Tcp {
            host: None,
            port: 8080
        }
    );
    assert_eq!((probes[0].period_s, probes[0].failure_threshold), (1, 30));
    assert_eq!(
        probes[1].action,
        ProbeAction::Exec {
            command: vec!["cat".into(), "/tmp/healthy".into()]
        }
    );
    // The kubelet's defaults.
    assert_eq!(
        (
            probes[1].initial_delay_s,
            probes[1].period_s,
            probes[1].timeout_s,
            probes[1].failure_threshold
        ),
        (5, 10, 1, 3)
    );
    assert_eq!(
        probes[2].action,
        ProbeAction::Http {
            host: None,
            port: 8080,
            path: "/healthz".into(),
            headers: vec![("X-Probe".into(), "1".into())],
        }
    );
    assert_eq!(probes[2].success_threshold, 2);
    // gRPC health checks; HTTPS probes peapod cannot run yet are left out
    // (with a warning): the pod runs.
    let plan = ok(&with_container(
        "    livenessProbe: {grpc: {port: 9000, service: app.v1}}\n    readinessProbe: {httpGet: {port: 443, scheme: HTTPS}}\n",
    ));
    assert_eq!(
        plan.containers[0]
            .probes
            .iter()
            .map(|p| &p.action)
            .collect::<Vec<_>>(),
        [&ProbeAction::Grpc {
            port: 9000,
            service: "app.v1".into()
        }]
    );
    for (probe, needle) in [
        ("{tcpSocket: {port: web}}", "livenessProbe.tcpSocket.port: the container has no port named \"web\" (the container names no ports)"),
        ("{exec: {command: []}}", "livenessProbe.exec.command: is required"),
        ("{grpc: {}}", "livenessProbe.grpc.port: is required"),
        ("{grpc: {port: 1, service: \"a\\nb\"}}", "livenessProbe.grpc.service: must be a service name"),
        ("{tcpSocket: {port: 80}, successThreshold: 2}", "livenessProbe.successThreshold: must be 1 for a liveness probe"),
        ("{tcpSocket: {port: 80}, periodSeconds: 0}", "livenessProbe.periodSeconds: 0 is out of range; use 1 or more"),
        ("{tcpSocket: {port: 70000}}", "livenessProbe.tcpSocket.port: 70000 is not a port"),
        ("{exec: {command: [x]}, tcpSocket: {port: 1}}", "livenessProbe: must set exactly one of exec, httpGet, tcpSocket and grpc"),
        ("{httpGet: {port: 80, host: example.com}}", "livenessProbe.httpGet.host: \"example.com\" is not an IP address"),
    ] {
        assert_err(
            &with_container(&format!("    livenessProbe: {probe}\n")),
            &[&format!("spec.containers[0].{needle}")],
        );
    }
}

#[test]
fn test_parse_lifecycle_and_termination_message() {
    use peapod_proto::ProbeAction;
    let plan = ok(&with_container(
        "    ports: [{name: http, containerPort: 8080}]\n    lifecycle:\n      postStart: {exec: {command: [sh, -c, 'echo hi > /tmp/started']}}\n      preStop: {httpGet: {path: /drain, port: http}}\n      stopSignal: SIGQUIT\n    terminationMessagePath: /tmp/why\n    terminationMessagePolicy: FallbackToLogsOnError\n",
    ));
    let c = &plan.containers[0];
    assert_eq!(
        c.lifecycle.post_start,
        Some(ProbeAction::Exec {
            command: vec!["sh".into(), "-c".into(), "echo hi > /tmp/started".into()]
        })
    );
    assert_eq!(
        c.lifecycle.pre_stop,
        Some(ProbeAction::Http {
            host: None,
            port: 8080,
            path: "/drain".into(),
            headers: vec![],
        })
    );
    assert_eq!(c.lifecycle.stop_signal, Some(3));
    assert_eq!(c.termination_message_path, "/tmp/why");
    assert!(c.termination_message_fallback);
    // The defaults: the kubelet's file, the File policy.
    let plan = ok(&with_container(
        "    lifecycle: {preStop: {sleep: {seconds: 5}}}\n",
    ));
    let c = &plan.containers[0];
    assert_eq!(
        c.lifecycle.pre_stop,
        Some(ProbeAction::Sleep { seconds: 5 })
    );
    assert_eq!(c.termination_message_path, "/dev/termination-log");
    assert!(!c.termination_message_fallback);
    // A sidecar may have hooks.
    ok("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    restartPolicy: Always\n    lifecycle: {preStop: {exec: {command: [x]}}}\n  containers:\n  - name: a\n    image: busybox\n");
    for (extra, needle) in [
        (
            "    lifecycle: {postStart: {tcpSocket: {port: 80}}}\n",
            "lifecycle.postStart.tcpSocket: is not a lifecycle handler",
        ),
        (
            "    lifecycle: {preStop: {}}\n",
            "lifecycle.preStop: must set exactly one of exec, httpGet and sleep",
        ),
        (
            "    lifecycle: {preStop: {exec: {command: [x]}, sleep: {seconds: 1}}}\n",
            "lifecycle.preStop: must set exactly one of exec, httpGet and sleep",
        ),
        (
            "    lifecycle: {preStop: {sleep: {seconds: -1}}}\n",
            "lifecycle.preStop.sleep.seconds: -1 is out of range",
        ),
        (
            "    lifecycle: {preStop: {sleep: {}}}\n",
            "lifecycle.preStop.sleep.seconds: is required",
        ),
        (
            "    lifecycle: {postStart: {httpGet: {port: web}}}\n",
            "lifecycle.postStart.httpGet.port: the container has no port named \"web\"",
        ),
        (
            "    lifecycle: {postStart: {httpGet: {port: 443, scheme: HTTPS}}}\n",
            "lifecycle.postStart.httpGet.scheme: HTTPS hooks are not available",
        ),
        (
            "    lifecycle: {postStart: {grpc: {port: 1}}}\n",
            "lifecycle.postStart.grpc: unknown field \"grpc\"",
        ),
        (
            "    lifecycle: {stopSignal: SIGFOO}\n",
            "lifecycle.stopSignal: \"SIGFOO\" is not a signal",
        ),
        (
            "    terminationMessagePath: tmp/why\n",
            "terminationMessagePath: \"tmp/why\" is not an absolute file path",
        ),
        (
            "    terminationMessagePath: /tmp/../etc/x\n",
            "terminationMessagePath: \"/tmp/../etc/x\" is not an absolute file path",
        ),
        (
            "    terminationMessagePolicy: Always\n",
            "terminationMessagePolicy: \"Always\" is not a termination message policy",
        ),
    ] {
        assert_err(
            &with_container(extra),
            &[&format!("spec.containers[0].{needle}")],
        );
    }
    // As Kubernetes: an init container that runs to completion has no
    // hooks and no probes.
    for field in [
        "lifecycle: {postStart: {exec: {command: [x]}}}",
        "readinessProbe: {exec: {command: [x]}}",
    ] {
        let name = field.split(':').next().unwrap();
        assert_err(
            &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    {field}\n  containers:\n  - name: a\n    image: busybox\n"),
            &[&format!("spec.initContainers[0].{name}: may not be set on an init container that runs to completion")],
        );
    }
}
