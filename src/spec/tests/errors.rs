//! Refused inputs: each test asserts the message names the file, the field
//! path, what is wrong and the fix (with the valid neighbours alongside).

use super::*;

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
        assert!(
            message.starts_with("pod.yaml: the file is empty"),
            "{text:?}: {message}"
        );
        assert!(message.contains("kind: Pod"), "{message}");
    }
}

#[test]
fn test_parse_multiple_pods_rejected() {
    let doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(
        &format!("{doc}---\n{doc}"),
        &[
            "found 2 Pods",
            "one Pod per file",
            "put each Pod in its own file",
        ],
    );
    assert_err(
        &format!("{doc}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n"),
        &[
            "kind must be Pod, got Service",
            "ConfigMap, Secret and PersistentVolumeClaim",
        ],
    );
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
    assert_err(
        deployment,
        &["kind must be Pod, got Deployment", "spec.template"],
    );
    assert_err(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
        &["kind must be Pod, got Service"],
    );
    assert_err(
        "apiVersion: v1\nkind: List\nitems: []\n",
        &["kind must be Pod, got List"],
    );
    assert_err("apiVersion: v1\nkind: 3\n", &["kind must be Pod, got 3"]);
}

#[test]
fn test_parse_kind_missing() {
    assert_err(
        "apiVersion: v1\nmetadata: {name: a}\n",
        &["kind is missing", "kind: Pod"],
    );
}

#[test]
fn test_parse_api_version_not_v1() {
    let yaml = "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(
        yaml,
        &["apiVersion must be v1", "got apps/v1", "set apiVersion: v1"],
    );
    assert_err(
        "kind: Pod\nmetadata: {name: a}\n",
        &["apiVersion is missing", "apiVersion: v1"],
    );
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
    assert_err(
        &pod("My_Pod"),
        &[
            "metadata.name: \"My_Pod\" is not a valid pod name",
            "uppercase",
            "e.g. \"my-pod\"",
        ],
    );
    assert_err(&pod("web_1"), &["contains '_'", "lowercase letters"]);
    assert_err(&pod("-web"), &["start and end with a letter or digit"]);
    assert_err(&pod("web."), &["has an empty part between dots"]);
    assert_err(&pod(&"a".repeat(254)), &["more than 253"]);
    assert_err(&pod(&"a".repeat(64)), &["more than 63"]);
    // A DNS subdomain, as Kubernetes allows; the hostname is the name cut
    // to 63 characters.
    assert_eq!(ok(&pod("web.v1")).hostname, "web.v1");
    let long = format!("{}.{}", "a".repeat(62), "b".repeat(40));
    assert_eq!(ok(&pod(&long)).hostname, "a".repeat(62));
}

#[test]
fn test_parse_invalid_container_name() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: ok\n    image: busybox\n  - name: Bad_Name\n    image: busybox\n";
    assert_err(
        yaml,
        &[
            "spec.containers[1].name: \"Bad_Name\" is not a valid container name",
            "e.g. \"bad-name\"",
        ],
    );
    let missing = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - image: busybox\n";
    assert_err(missing, &["spec.containers[0].name: is required"]);
}

#[test]
fn test_parse_invalid_namespace_and_hostname() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: Prod}\nspec: {containers: [{name: a, image: busybox}]}\n";
    assert_err(yaml, &["metadata.namespace", "not a valid namespace"]);
    assert_err(
        &with_spec("  hostname: my_host\n"),
        &["spec.hostname", "not a valid hostname"],
    );
    let plan = ok(&with_spec(
        "  hostname: h1\n  hostnameOverride: host.example\n",
    ));
    assert_eq!(plan.hostname, "host.example");
}

#[test]
fn test_parse_no_containers() {
    let base = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
    for spec in [
        "spec: {}\n",
        "spec:\n  containers: []\n",
        "spec:\n  containers:\n",
        "spec:\n  initContainers: [{name: i, image: busybox}]\n",
    ] {
        assert_err(
            &format!("{base}{spec}"),
            &["spec.containers: no containers", "add a container"],
        );
    }
    assert_err(base, &["spec: is missing"]);
}

#[test]
fn test_parse_duplicate_container_names() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: app, image: busybox}\n  - {name: app, image: busybox}\n";
    assert_err(
        yaml,
        &[
            "spec.containers[1].name: \"app\" is already the name of spec.containers[0]",
            "rename one",
        ],
    );
    let across = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  initContainers:\n  - {name: app, image: busybox}\n  containers:\n  - {name: app, image: busybox}\n";
    assert_err(
        across,
        &[
            "spec.containers[0].name",
            "spec.initContainers[0]",
            "unique across containers and initContainers",
        ],
    );
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
        (
            "limits: {memory: -1Gi}",
            "limits.memory: \"-1Gi\" is negative (use e.g. 512Mi",
        ),
        ("limits: {memory: -5}", "limits.memory: \"-5\" is negative"),
        (
            "limits: {memory: \"\"}",
            "limits.memory: \"\" is empty (use e.g. 512Mi",
        ),
        (
            "requests: {memory: lots}",
            "requests.memory: \"lots\" is not a quantity",
        ),
        (
            "limits: {cpu: 2cores}",
            "limits.cpu: \"2cores\" is not a quantity (use e.g. 500m, 1, 2.5)",
        ),
        (
            "requests: {cpu: -100m}",
            "requests.cpu: \"-100m\" is negative",
        ),
        (
            "limits: {memory: 1e40}",
            "limits.memory: \"1e40\" is out of range",
        ),
        ("limits: {memory: 20Ei}", "is out of range"),
        (
            "limits: {ephemeral-storage: 1Gx}",
            "limits.ephemeral-storage: \"1Gx\" is not a quantity",
        ),
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
    assert_err(
        &res("memroy: 1Gi"),
        &[
            "limits.memroy: unknown resource \"memroy\"",
            "did you mean \"memory\"?",
        ],
    );
    assert_err(
        &res("nvidia.com/gpu: 1"),
        &["extended resource \"nvidia.com/gpu\" is not supported"],
    );
    assert_err(
        &res("hugepages-2Mi: 1Gi"),
        &["huge pages are not supported"],
    );
    assert_err(
        &with_container("    resources:\n      claims:\n      - name: gpu\n"),
        &["resources.claims: is not supported by peapod"],
    );
    assert_err(
        &with_spec("  resources:\n    limits: {memory: 1Gix}\n"),
        &["spec.resources.limits.memory: \"1Gix\" is not a quantity"],
    );
}

#[test]
fn test_parse_memory_limit_below_minimum() {
    let res = |m: &str| {
        with_container(&format!(
            "    resources:\n      limits:\n        memory: {m}\n"
        ))
    };
    assert_err(
        &res("4Mi"),
        &[
            "spec.containers[0].resources.limits.memory: \"4Mi\"",
            "minimum memory limit of 6Mi",
            "runc and Docker",
            "set at least 6Mi",
        ],
    );
    assert_err(&res("0"), &["minimum memory limit of 6Mi"]);
    let plan = ok(&res("6Mi"));
    assert_eq!(plan.containers[0].memory_limit, Some(MIN_CONTAINER_MEMORY));
    // Only limits have the floor; small requests are fine.
    ok(&with_container(
        "    resources:\n      requests: {memory: 1Mi}\n",
    ));
}

#[test]
fn test_parse_request_greater_than_limit() {
    assert_err(
        &with_container("    resources:\n      limits: {memory: 1Gi}\n      requests: {memory: 2Gi}\n"),
        &["spec.containers[0].resources.requests.memory: request \"2Gi\" is greater than the limit \"1Gi\"", "lower the request or raise resources.limits.memory"],
    );
    assert_err(
        &with_container(
            "    resources:\n      limits: {cpu: 500m}\n      requests: {cpu: \"1\"}\n",
        ),
        &["resources.requests.cpu: request \"1\" is greater than the limit \"500m\""],
    );
    ok(&with_container(
        "    resources:\n      limits: {cpu: 1}\n      requests: {cpu: 1000m}\n",
    ));
}

#[test]
fn test_parse_image_missing_or_empty() {
    let yaml =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n";
    assert_err(
        yaml,
        &[
            "spec.containers[0].image: is required",
            "image: busybox:1.36",
        ],
    );
    let empty = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n    image: \"\"\n";
    assert_err(
        empty,
        &["spec.containers[0].image: is empty", "image: busybox:1.36"],
    );
    let blank = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: a\n    image: \"  \"\n";
    assert_err(blank, &["spec.containers[0].image: is empty"]);
}

#[test]
fn test_parse_invalid_image_reference() {
    let pod = |image: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  initContainers:\n  - name: i\n    image: \"{image}\"\n  containers:\n  - name: a\n    image: busybox\n")
    };
    assert_err(
        &pod("BusyBox"),
        &[
            "spec.initContainers[0].image: image reference \"BusyBox\"",
            "must be lowercase",
            "accepted forms",
        ],
    );
    assert_err(
        &pod("busybox:bad!tag"),
        &[
            "spec.initContainers[0].image",
            "tag \"bad!tag\" is not valid",
        ],
    );
    assert_err(&pod("busybox@sha256:1234"), &["64 lowercase hex"]);
    assert_err(
        &pod("docker://busybox"),
        &[
            "docker:// transport",
            "named without it",
            "write busybox:latest",
        ],
    );
    assert_err(&pod("oci:"), &["oci: transport needs a path"]);
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
    assert_err(
        &with_spec("  restartpolicy: Never\n"),
        &[
            "spec.restartpolicy: unknown field",
            "did you mean \"restartPolicy\"?",
        ],
    );
    assert_err(
        &with_container("    resources:\n      limit: {memory: 1Gi}\n"),
        &["spec.containers[0].resources.limit: unknown field \"limit\"; did you mean \"limits\"?"],
    );
    assert_err(
        &with_container("    ports:\n    - port: 80\n"),
        &["spec.containers[0].ports[0].port: unknown field \"port\""],
    );
    assert_err(
        &with_container(
            "    securityContext:\n      capabilities: {add: [NET_ADMIN], remove: [ALL]}\n",
        ),
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
    assert_err(
        yaml,
        &["metadata.image: unknown field \"image\"", "indentation"],
    );
}

#[test]
fn test_parse_wrong_types() {
    assert_err(
        &with_container("    ports:\n    - containerPort: \"80\"\n"),
        &["spec.containers[0].ports[0].containerPort: expected an integer (without quotes), found string \"80\""],
    );
    assert_err(
        &with_spec("  hostNetwork: maybe\n"),
        &["spec.hostNetwork: expected true or false"],
    );
    assert_err(
        &with_container("    command: /bin/sh\n"),
        &["spec.containers[0].command: expected a list"],
    );
    assert_err(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: {name: a}\n",
        &["spec.containers: expected a list"],
    );
    assert_err(
        &with_container("    resources: 1Gi\n"),
        &["resources: expected a mapping of fields"],
    );
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
        let has_fix = [
            "use ",
            "set ",
            "add ",
            "fix ",
            "write ",
            "did you mean",
            "check ",
            "copy ",
        ]
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
    assert!(
        e.to_string()
            .starts_with("examples/job.yaml: kind must be Pod, got Job"),
        "{e}"
    );
}
