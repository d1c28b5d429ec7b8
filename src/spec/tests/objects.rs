//! ConfigMaps, Secrets and PersistentVolumeClaims beside the Pod, and the
//! volumes and variables made from them and from the downward API.

use super::*;

const OBJECTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  mode: fast
  app.conf: |
    listen 8080
binaryData:
  logo.bin: AAEC/w==
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
data:
  password: aHVudGVyMg==
stringData:
  user: admin
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

fn pod(extra_spec: &str, container: &str) -> String {
    format!(
        "{OBJECTS}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web, tier: \"front\"}}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    resources: {{limits: {{memory: 64Mi}}}}\n{container}{extra_spec}"
    )
}

fn files(plan: &PodPlan, volume: &str) -> Vec<(String, u32, Vec<u8>)> {
    let v = plan.volumes.iter().find(|v| v.name == volume).unwrap();
    let VolumeSource::Files { files } = &v.source else {
        panic!("not a files volume: {v:?}");
    };
    files
        .iter()
        .map(|f| (f.path.clone(), f.mode, f.data.clone()))
        .collect()
}

#[test]
fn test_objects_feed_volumes_and_env() {
    let plan = ok(&pod(
        "  volumes:\n  - {name: cfg, configMap: {name: settings}}\n  - name: sec\n    secret:\n      secretName: creds\n      defaultMode: 0400\n      items: [{key: password, path: db/pass, mode: 0440}]\n  - {name: data, persistentVolumeClaim: {claimName: data, readOnly: true}}\n",
        "    envFrom:\n    - {configMapRef: {name: settings}, prefix: CFG_}\n    env:\n    - {name: CFG_mode, value: slow}\n    - name: PASS\n      valueFrom: {secretKeyRef: {name: creds, key: password}}\n",
    ));
    assert_eq!(
        files(&plan, "cfg"),
        [
            ("app.conf".to_owned(), 0o644, b"listen 8080\n".to_vec()),
            ("logo.bin".to_owned(), 0o644, vec![0, 1, 2, 255]),
            ("mode".to_owned(), 0o644, b"fast".to_vec()),
        ]
    );
    assert_eq!(
        files(&plan, "sec"),
        [("db/pass".to_owned(), 0o440, b"hunter2".to_vec())]
    );
    let data = plan.volumes.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(
        data.source,
        VolumeSource::Claim {
            claim: "data".into(),
            read_only: true,
            storage: Some(GI),
        }
    );
    let env = &plan.containers[0].env;
    // envFrom first, env overrides; the binary key is left out.
    assert!(!env.iter().any(|(k, _)| k == "CFG_logo.bin"), "{env:?}");
    assert!(env.contains(&("CFG_mode".into(), "slow".into())), "{env:?}");
    assert!(env.contains(&("CFG_app.conf".into(), "listen 8080\n".into())));
    assert!(env.contains(&("PASS".into(), "hunter2".into())));
}

#[test]
fn test_downward_api_and_projected_volumes() {
    let plan = ok(&pod(
        "  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n      - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}\n  - name: all\n    projected:\n      defaultMode: 0600\n      sources:\n      - configMap: {name: settings, items: [{key: mode, path: mode}]}\n      - secret: {name: creds, items: [{key: user, path: user}]}\n      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}\n",
        "    env:\n    - name: NODE\n      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}\n",
    ));
    assert_eq!(
        files(&plan, "info"),
        [
            ("name".to_owned(), 0o644, b"web".to_vec()),
            (
                "labels".to_owned(),
                0o644,
                b"app=\"web\"\ntier=\"front\"".to_vec()
            ),
            ("mem".to_owned(), 0o644, b"64".to_vec()),
        ]
    );
    assert_eq!(
        files(&plan, "all"),
        [
            ("mode".to_owned(), 0o600, b"fast".to_vec()),
            ("user".to_owned(), 0o600, b"admin".to_vec()),
            ("ns".to_owned(), 0o600, b"default".to_vec()),
        ]
    );
    assert_eq!(plan.containers[0].env[0].1, crate::hostinfo::hostname());
}

#[test]
fn test_objects_bad_input_names_the_object_field_and_fix() {
    let bad_object = |doc: &str, needles: &[&str]| {
        assert_err(&format!("{doc}\n---\n{}", with_container("")), needles);
    };
    bad_object(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: \"not base64!\"}",
        &["Secret s: data.k: is not base64", "stringData"],
    );
    bad_object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a/b\": x}",
        &["ConfigMap c: data.a/b: \"a/b\" is not a valid key: it contains '/'"],
    );
    bad_object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {n: [1]}",
        &[
            "data.n: expected a string, found sequence",
            "(line 4, column 11)",
        ],
    );
    bad_object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndatta: {}",
        &["datta: unknown field \"datta\"; did you mean \"data\"?"],
    );
    bad_object(
        "apiVersion: v2\nkind: ConfigMap\nmetadata: {name: c}",
        &["apiVersion must be v1 for a ConfigMap"],
    );
    bad_object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}",
        &["ConfigMap c: is defined twice"],
    );
    bad_object(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: p}\nspec: {volumeMode: Block}",
        &["spec.volumeMode: \"Block\" is not supported by peapod; use Filesystem"],
    );
    // A missing key names the ConfigMap, the key and what it has.
    assert_err(
        &pod(
            "  volumes:\n  - {name: cfg, configMap: {name: settings, items: [{key: nope, path: x}]}}\n",
            "",
        ),
        &["spec.volumes[0].configMap.items[0].key: ConfigMap \"settings\" has no key \"nope\" (it has: app.conf, logo.bin, mode)"],
    );
    assert_err(
        &pod("", "    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: settings, key: logo.bin}}}\n"),
        &["key \"logo.bin\" is not UTF-8 text"],
    );
    for (item, needle) in [
        (
            "{key: mode, path: ../x}",
            "is not a relative path inside the volume",
        ),
        (
            "{key: mode, path: /etc/x}",
            "is not a relative path inside the volume",
        ),
        (
            "{key: mode, path: ..data}",
            "is not a relative path inside the volume",
        ),
        ("{key: mode, path: m, mode: 01000}", "is not a file mode"),
    ] {
        assert_err(
            &pod(
                &format!("  volumes:\n  - {{name: cfg, configMap: {{name: settings, items: [{item}]}}}}\n"),
                "",
            ),
            &[needle],
        );
    }
    assert_err(
        &pod(
            "  volumes:\n  - name: i\n    downwardAPI: {items: [{path: m, resourceFieldRef: {resource: limits.memory}}]}\n",
            "",
        ),
        &["resourceFieldRef.containerName: is required in a volume"],
    );
    assert_err(
        &pod(
            "  volumes:\n  - name: i\n    downwardAPI: {items: [{path: n, fieldRef: {fieldPath: spec.nodeName}}]}\n",
            "",
        ),
        &["\"spec.nodeName\" is not a supported field path here"],
    );
}

#[test]
fn test_objects_from_other_files_and_their_limits() {
    let extra = parse_objects(OBJECTS, "cm.yaml").unwrap();
    assert_eq!(extra.config_maps.len(), 1);
    assert_eq!(extra.claims["data"].storage, Some(GI));
    let plan = parse_with(
        &with_spec("  volumes:\n  - {name: cfg, configMap: {name: settings}}\n"),
        FILE,
        extra.clone(),
    )
    .unwrap();
    assert_eq!(files(&plan, "cfg").len(), 3);
    // The same object in both: refused.
    let e = parse_with(&pod("", ""), FILE, extra)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ConfigMap settings: is defined twice"), "{e}");
    // A --configmap file holds no Pod.
    let e = parse_objects(&with_container(""), "cm.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("a --configmap file holds only"), "{e}");
    // Too much data for one pod.
    let big = "x".repeat(600 << 10);
    let e = err(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{k: {big}}}\n---\n{}",
        with_spec("  volumes:\n  - {name: b, configMap: {name: big}}\n")
    ));
    assert!(
        e.contains("more than peapod passes to a pod (512 KiB)"),
        "{e}"
    );
}

#[test]
fn test_file_modes_read_as_kubectl_reads_them() {
    use crate::spec::pod::RawMode;
    for (text, want) in [
        ("0644", Some(0o644)),
        ("0400", Some(0o400)),
        ("420", Some(0o644)),
        ("0o755", Some(0o755)),
        ("0", Some(0)),
        ("0800", None),
        ("rw", None),
    ] {
        assert_eq!(RawMode(text.into()).value(), want, "{text}");
    }
    let plan = ok(&pod(
        "  volumes:\n  - {name: cfg, configMap: {name: settings, defaultMode: 420, items: [{key: mode, path: m}]}}\n",
        "",
    ));
    assert_eq!(files(&plan, "cfg")[0].1, 0o644);
}

#[test]
fn test_security_context_groups_sysctls_and_privilege_escalation() {
    let plan = ok(&with_container(
        "    securityContext: {allowPrivilegeEscalation: false}\n  securityContext:\n    fsGroup: 2000\n    supplementalGroups: [3000, 3001]\n    sysctls:\n    - {name: net.ipv4.ip_local_port_range, value: \"20000 30000\"}\n    - {name: kernel/shm_rmid_forced, value: \"1\"}\n",
    ));
    assert_eq!(plan.fs_group, Some(2000));
    assert_eq!(plan.supplemental_groups, [3000, 3001]);
    assert_eq!(
        plan.sysctls,
        [
            (
                "net.ipv4.ip_local_port_range".to_owned(),
                "20000 30000".to_owned()
            ),
            ("kernel.shm_rmid_forced".to_owned(), "1".to_owned()),
        ]
    );
    assert!(plan.containers[0].no_new_privs);
    assert_err(
        &with_spec("  securityContext:\n    sysctls: [{name: vm.swappiness, value: \"10\"}]\n"),
        &[
            "spec.securityContext.sysctls[0].name: vm.swappiness is not a namespaced sysctl",
            "net.*",
        ],
    );
    assert_err(
        &with_spec("  securityContext:\n    sysctls: [{name: \"net..x\", value: \"1\"}]\n"),
        &["is not a sysctl name"],
    );
    assert_err(
        &with_spec("  securityContext:\n    supplementalGroups: [-1]\n"),
        &[
            "spec.securityContext.supplementalGroups[0]",
            "not a valid id",
        ],
    );
}

/// status.podIP is put in by peapod-init: the plan carries the token,
/// through `$(VAR)` references too.
#[test]
fn test_pod_ip_is_left_for_the_guest() {
    let plan = ok(&with_container(
        "    command: [echo, \"$(URL)\"]\n    env:\n    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: URL, value: \"http://$(IP):80\"}\n",
    ));
    let token = peapod_proto::POD_IP_TOKEN;
    assert_eq!(plan.containers[0].env[0].1, token);
    assert_eq!(plan.containers[0].env[1].1, format!("http://{token}:80"));
    assert_eq!(plan.containers[0].command[1], format!("http://{token}:80"));
}
