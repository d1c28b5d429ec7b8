//! Container-level validation: name, image, resources, ports, volume
//! mounts and security context. The environment is resolved in `env.rs`.

use std::net::IpAddr;
use std::path::{Component, Path};

use super::error::{closest, SpecError};
use super::names;
use super::plan::{
    Capabilities, ContainerPlan, PortPlan, Protocol, PullPolicy, VolumeMountPlan, VolumePlan,
    DEFAULT_TERMINATION_MESSAGE_PATH, MIN_CONTAINER_MEMORY,
};
use super::pod::{Container, ContainerPort, RawQuantity, ResourceRequirements, VolumeMount};
use super::validate::{Checker, PodSecurity};

/// Resource amounts of one container (or of the pod, `spec.resources`).
#[derive(Debug, Default)]
pub(crate) struct Resources {
    pub memory_limit: Option<u64>,
    pub memory_request: Option<u64>,
    pub cpu_limit: Option<u64>,
    pub cpu_request: Option<u64>,
}

impl Checker<'_> {
    /// Validates one container; `env`, `command` and `args` are filled in
    /// later by [`Checker::environment`].
    pub(crate) fn container(
        &self,
        raw: &Container,
        path: &str,
        is_init: bool,
        volumes: &[VolumePlan],
        pod_security: PodSecurity,
    ) -> Result<ContainerPlan, SpecError> {
        let name = match raw.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                return Err(self.invalid(
                    format!("{path}.name"),
                    "is required; give the container a name, e.g. name: app",
                ))
            }
        };
        self.dns_label(&format!("{path}.name"), &name, "container name")?;

        let image = match raw.image.as_deref() {
            None => {
                return Err(self.invalid(
                    format!("{path}.image"),
                    "is required; set the container image, e.g. image: busybox:1.36 or \
                     image: oci:./images/app:latest",
                ))
            }
            Some(image) if image.trim().is_empty() => {
                return Err(self.invalid(
                    format!("{path}.image"),
                    "is empty; set the container image, e.g. image: busybox:1.36 or \
                     image: oci:./images/app:latest",
                ))
            }
            Some(image) => image
                .parse()
                .map_err(|e| self.invalid(format!("{path}.image"), format!("{e}")))?,
        };

        let working_dir = match raw.working_dir.as_deref() {
            None | Some("") => None,
            Some(dir) if dir.starts_with('/') => Some(dir.to_owned()),
            Some(dir) => {
                return Err(self.invalid(
                    format!("{path}.workingDir"),
                    format!("{dir:?} is not an absolute path; write it from the root, e.g. /app"),
                ))
            }
        };

        let sidecar = self.container_restart_policy(raw, path, is_init)?;
        self.refuse_unsupported_container_features(raw, path)?;
        self.log_ignored_container_fields(raw, path);

        let resources = self.resources(raw.resources.as_ref(), path)?;
        let ports = self.ports(raw.ports.as_deref().unwrap_or_default(), path)?;
        let volume_mounts = self.volume_mounts(
            raw.volume_mounts.as_deref().unwrap_or_default(),
            path,
            volumes,
        )?;

        let sc = raw.security_context.as_ref();
        let sc_path = format!("{path}.securityContext");
        self.refuse_true(
            &format!("{sc_path}.privileged"),
            sc.and_then(|sc| sc.privileged),
            "privileged containers are not available; remove it and list only the capabilities \
             you need under securityContext.capabilities.add",
        )?;
        let run_as_user = match self.id(
            &format!("{sc_path}.runAsUser"),
            sc.and_then(|sc| sc.run_as_user),
        )? {
            Some(uid) => Some(uid),
            None => pod_security.run_as_user,
        };
        let run_as_group = match self.id(
            &format!("{sc_path}.runAsGroup"),
            sc.and_then(|sc| sc.run_as_group),
        )? {
            Some(gid) => Some(gid),
            None => pod_security.run_as_group,
        };
        let run_as_non_root = sc
            .and_then(|sc| sc.run_as_non_root)
            .or(pod_security.run_as_non_root)
            .unwrap_or(false);
        if run_as_non_root && run_as_user == Some(0) {
            return Err(self.invalid(
                format!("{sc_path}.runAsUser"),
                "is 0 (root) but runAsNonRoot is true; set runAsUser to a non-zero uid or drop \
                 runAsNonRoot",
            ));
        }
        let capabilities = sc
            .and_then(|sc| sc.capabilities.as_ref())
            .map(|caps| Capabilities {
                add: caps.add.clone().unwrap_or_default(),
                drop: caps.drop.clone().unwrap_or_default(),
            })
            .unwrap_or_default();

        let probes = self.probes(raw, path, &ports)?;
        let lifecycle = self.lifecycle(raw.lifecycle.as_ref(), path, &ports)?;
        if is_init && !sidecar {
            // As Kubernetes: an init container that runs to completion has
            // no probes and no hooks (a sidecar has).
            let set = [
                ("lifecycle", raw.lifecycle.is_some()),
                ("livenessProbe", raw.liveness_probe.is_some()),
                ("readinessProbe", raw.readiness_probe.is_some()),
                ("startupProbe", raw.startup_probe.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, set)| *set) {
                return Err(self.invalid(
                    format!("{path}.{field}"),
                    "may not be set on an init container that runs to completion; remove it, \
                     or make the container a sidecar with restartPolicy: Always",
                ));
            }
        }
        let termination_message_path = match raw.termination_message_path.as_deref() {
            None | Some("") => DEFAULT_TERMINATION_MESSAGE_PATH.to_owned(),
            Some(p)
                if p.starts_with('/') && !p.ends_with('/') && !p.split('/').any(|c| c == "..") =>
            {
                p.to_owned()
            }
            Some(p) => {
                return Err(self.invalid(
                    format!("{path}.terminationMessagePath"),
                    format!("{p:?} is not an absolute file path; use e.g. /dev/termination-log"),
                ))
            }
        };
        Ok(ContainerPlan {
            name,
            image,
            command: raw.command.clone().unwrap_or_default(),
            args: raw.args.clone().unwrap_or_default(),
            working_dir,
            env: Vec::new(),
            ports,
            volume_mounts,
            memory_limit: resources.memory_limit,
            memory_request: resources.memory_request,
            cpu_limit: resources.cpu_limit,
            cpu_request: resources.cpu_request,
            run_as_user,
            run_as_group,
            run_as_non_root,
            read_only_root_filesystem: sc
                .and_then(|sc| sc.read_only_root_filesystem)
                .unwrap_or(false),
            capabilities,
            no_new_privs: sc.and_then(|sc| sc.allow_privilege_escalation) == Some(false),
            probes,
            lifecycle,
            image_pull_policy: match raw.image_pull_policy.as_deref() {
                Some("Always") => Some(PullPolicy::Always),
                Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
                Some("Never") => Some(PullPolicy::Never),
                _ => None,
            },
            termination_message_path,
            termination_message_fallback: raw.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
            tty: raw.tty.unwrap_or(false),
            stdin: raw.stdin.unwrap_or(false),
            stdin_once: raw.stdin_once.unwrap_or(false),
            sidecar,
        })
    }

    /// Returns whether the container is a sidecar.
    fn container_restart_policy(
        &self,
        raw: &Container,
        path: &str,
        is_init: bool,
    ) -> Result<bool, SpecError> {
        let field = format!("{path}.restartPolicy");
        match (raw.restart_policy.as_deref(), is_init) {
            (None, _) => Ok(false),
            (Some("Always"), true) => Ok(true),
            (Some(other), true) => Err(self.invalid(
                field,
                format!(
                    "{other:?} is not allowed on an init container: only Always (which makes it \
                     a sidecar) is; remove it for an init container that runs to completion"
                ),
            )),
            (Some(_), false) => Err(self.invalid(
                field,
                "is not supported by peapod on app containers; remove it and use \
                 spec.restartPolicy for the whole pod",
            )),
        }
    }

    fn refuse_unsupported_container_features(
        &self,
        raw: &Container,
        path: &str,
    ) -> Result<(), SpecError> {
        self.refuse_non_empty(
            &format!("{path}.restartPolicyRules"),
            &raw.restart_policy_rules,
            "remove them and use spec.restartPolicy",
        )?;
        self.refuse_non_empty(
            &format!("{path}.volumeDevices"),
            &raw.volume_devices,
            "raw block devices cannot be attached; use volumeMounts",
        )?;
        if let Some(policy) = raw.image_pull_policy.as_deref() {
            if !["Always", "IfNotPresent", "Never"].contains(&policy) {
                return Err(self.invalid(
                    format!("{path}.imagePullPolicy"),
                    format!("{policy:?} is not a pull policy; use Always, IfNotPresent or Never"),
                ));
            }
        }
        if let Some(policy) = raw.termination_message_policy.as_deref() {
            if !["File", "FallbackToLogsOnError"].contains(&policy) {
                return Err(self.invalid(
                    format!("{path}.terminationMessagePolicy"),
                    format!("{policy:?} is not a termination message policy; use File or FallbackToLogsOnError"),
                ));
            }
        }
        Ok(())
    }

    fn log_ignored_container_fields(&self, raw: &Container, path: &str) {
        let quiet = [("resizePolicy", raw.resize_policy.is_some())];
        for (field, _) in quiet.iter().filter(|(_, set)| *set) {
            self.note_ignored(&format!("{path}.{field}"), "not used by peapod");
        }
        if let Some(sc) = &raw.security_context {
            if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
                self.warn_ignored(
                    &format!("{path}.securityContext.procMount"),
                    "peapod always masks /proc",
                );
            }
            let confinement = [
                ("seLinuxOptions", sc.se_linux_options.is_some()),
                ("seccompProfile", sc.seccomp_profile.is_some()),
                ("appArmorProfile", sc.app_armor_profile.is_some()),
                ("windowsOptions", sc.windows_options.is_some()),
            ];
            for (field, _) in confinement.iter().filter(|(_, set)| *set) {
                self.note_ignored(
                    &format!("{path}.securityContext.{field}"),
                    "the VM is the isolation boundary",
                );
            }
        }
    }

    pub(crate) fn resources(
        &self,
        raw: Option<&ResourceRequirements>,
        path: &str,
    ) -> Result<Resources, SpecError> {
        let mut out = Resources::default();
        let Some(raw) = raw else {
            return Ok(out);
        };
        let lists = [
            ("limits", raw.limits.as_ref()),
            ("requests", raw.requests.as_ref()),
        ];
        for (kind, list) in lists {
            for (name, quantity) in list.into_iter().flatten() {
                let field = format!("{path}.resources.{kind}.{name}");
                let limits = kind == "limits";
                match name.as_str() {
                    "memory" => {
                        let bytes = Some(self.bytes(&field, quantity)?);
                        if limits {
                            out.memory_limit = bytes;
                        } else {
                            out.memory_request = bytes;
                        }
                    }
                    "cpu" => {
                        let millis = Some(self.millicores(&field, quantity)?);
                        if limits {
                            out.cpu_limit = millis;
                        } else {
                            out.cpu_request = millis;
                        }
                    }
                    "ephemeral-storage" => {
                        self.bytes(&field, quantity)?;
                        self.note_ignored(&field, "peapod does not limit container storage");
                    }
                    other if other.starts_with("hugepages-") => {
                        return Err(self.invalid(
                            field,
                            "huge pages are not supported by peapod; remove this resource",
                        ))
                    }
                    other if other.contains('/') => {
                        return Err(self.invalid(
                            field,
                            format!(
                                "extended resource {other:?} is not supported by peapod (no \
                                 device plugins); remove it"
                            ),
                        ))
                    }
                    other => {
                        let hint = closest(other, &["cpu", "memory", "ephemeral-storage"])
                            .map(|best| format!("did you mean {best:?}? "))
                            .unwrap_or_default();
                        return Err(self.invalid(
                            field,
                            format!("unknown resource {other:?}; {hint}use cpu or memory"),
                        ));
                    }
                }
            }
        }
        self.refuse_non_empty(
            &format!("{path}.resources.claims"),
            &raw.claims,
            "dynamic resource allocation needs a cluster; remove the claims",
        )?;

        if let Some(limit) = out.memory_limit {
            if limit < MIN_CONTAINER_MEMORY {
                let text = raw_text(raw.limits.as_ref(), "memory");
                return Err(self.invalid(
                    format!("{path}.resources.limits.memory"),
                    format!(
                        "{text:?} ({limit} bytes) is below the minimum memory limit of 6Mi per \
                         container (runc and Docker refuse less than 6 MiB); set at least 6Mi"
                    ),
                ));
            }
        }
        let pairs = [
            ("memory", out.memory_request, out.memory_limit),
            ("cpu", out.cpu_request, out.cpu_limit),
        ];
        for (name, request, limit) in pairs {
            if let (Some(request), Some(limit)) = (request, limit) {
                if request > limit {
                    return Err(self.invalid(
                        format!("{path}.resources.requests.{name}"),
                        format!(
                            "request {:?} is greater than the limit {:?}; lower the request or \
                             raise resources.limits.{name}",
                            raw_text(raw.requests.as_ref(), name),
                            raw_text(raw.limits.as_ref(), name),
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn ports(&self, raw: &[ContainerPort], path: &str) -> Result<Vec<PortPlan>, SpecError> {
        let mut ports: Vec<PortPlan> = Vec::with_capacity(raw.len());
        for (j, port) in raw.iter().enumerate() {
            let field = format!("{path}.ports[{j}]");
            let container_port = match port.container_port {
                None => {
                    return Err(self.invalid(
                        format!("{field}.containerPort"),
                        "is required; set the port the container listens on, e.g. 8080",
                    ))
                }
                Some(n) => u16::try_from(n).ok().filter(|&p| p != 0).ok_or_else(|| {
                    self.invalid(
                        format!("{field}.containerPort"),
                        format!("{n} is not a port number; use 1 to 65535"),
                    )
                })?,
            };
            let host_port = match port.host_port {
                None | Some(0) => None,
                Some(n) => Some(u16::try_from(n).map_err(|_| {
                    self.invalid(
                        format!("{field}.hostPort"),
                        format!("{n} is not a port number; use 1 to 65535, or remove it"),
                    )
                })?),
            };
            let protocol = match port.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(other) => {
                    return Err(self.invalid(
                        format!("{field}.protocol"),
                        format!("{other:?} is not a protocol; use TCP, UDP or SCTP (uppercase)"),
                    ))
                }
            };
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") => None,
                Some(ip) => {
                    ip.parse::<IpAddr>().map_err(|_| {
                        self.invalid(
                            format!("{field}.hostIP"),
                            format!("{ip:?} is not an IP address; use e.g. 127.0.0.1 or ::1"),
                        )
                    })?;
                    Some(ip.to_owned())
                }
            };
            let name = match port.name.as_deref() {
                None | Some("") => None,
                Some(name) => {
                    if let Some(problem) = names::port_name_problem(name) {
                        return Err(self.invalid(
                            format!("{field}.name"),
                            format!(
                                "{name:?} is not a valid port name: it {problem}; use at most 15 \
                                 lowercase letters, digits and '-', e.g. http"
                            ),
                        ));
                    }
                    if let Some(k) = ports.iter().position(|p| p.name.as_deref() == Some(name)) {
                        return Err(self.invalid(
                            format!("{field}.name"),
                            format!("{name:?} is already the name of ports[{k}]; port names must be unique"),
                        ));
                    }
                    Some(name.to_owned())
                }
            };
            ports.push(PortPlan {
                name,
                container_port,
                host_port,
                host_ip,
                protocol,
            });
        }
        Ok(ports)
    }

    fn volume_mounts(
        &self,
        raw: &[VolumeMount],
        path: &str,
        volumes: &[VolumePlan],
    ) -> Result<Vec<VolumeMountPlan>, SpecError> {
        let mut mounts: Vec<VolumeMountPlan> = Vec::with_capacity(raw.len());
        for (j, mount) in raw.iter().enumerate() {
            let field = format!("{path}.volumeMounts[{j}]");
            let name = match mount.name.as_deref() {
                Some(name) if !name.is_empty() => name,
                _ => {
                    return Err(self.invalid(
                        format!("{field}.name"),
                        "is required; name one of the pod's spec.volumes",
                    ))
                }
            };
            if !volumes.iter().any(|v| v.name == name) {
                let known: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
                let hint = match closest(name, &known) {
                    Some(best) => format!("did you mean {best:?}? "),
                    None if known.is_empty() => "the pod has no volumes; ".to_owned(),
                    None => format!("the pod's volumes are {}; ", known.join(", ")),
                };
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!(
                        "no volume named {name:?} in spec.volumes; {hint}add the volume to \
                         spec.volumes or fix the name"
                    ),
                ));
            }
            let mount_path =
                match mount.mount_path.as_deref() {
                    Some(p) if !p.is_empty() => p,
                    _ => return Err(self.invalid(
                        format!("{field}.mountPath"),
                        "is required; set where the volume appears in the container, e.g. /data",
                    )),
                };
            if !mount_path.starts_with('/') {
                return Err(self.invalid(
                    format!("{field}.mountPath"),
                    format!("{mount_path:?} is not an absolute path; write it from the root, e.g. /{mount_path}"),
                ));
            }
            let normalized = normalize_mount_path(mount_path);
            if let Some(k) = mounts
                .iter()
                .position(|m| normalize_mount_path(&m.mount_path) == normalized)
            {
                return Err(self.invalid(
                    format!("{field}.mountPath"),
                    format!(
                        "{mount_path:?} is already the mountPath of volumeMounts[{k}] in this \
                         container; each mount needs its own path"
                    ),
                ));
            }
            let sub_path = match mount.sub_path.as_deref() {
                None | Some("") => None,
                Some(sub) => {
                    self.check_sub_path(&format!("{field}.subPath"), sub)?;
                    Some(sub.to_owned())
                }
            };
            // subPathExpr is expanded with the container's environment,
            // once it is known (`Checker::environment`).
            if sub_path.is_some()
                && mount
                    .sub_path_expr
                    .as_deref()
                    .is_some_and(|e| !e.is_empty())
            {
                return Err(self.invalid(
                    format!("{field}.subPathExpr"),
                    "is set with subPath; keep one",
                ));
            }
            match mount.mount_propagation.as_deref() {
                None | Some("None") => {}
                Some("HostToContainer") => self.note_ignored(
                    &format!("{field}.mountPropagation"),
                    "host mounts made later do not reach the VM",
                ),
                Some("Bidirectional") => {
                    return Err(self.invalid(
                        format!("{field}.mountPropagation"),
                        "Bidirectional needs a privileged container, which peapod does not \
                         support; remove it or use HostToContainer",
                    ))
                }
                Some(other) => {
                    return Err(self.invalid(
                        format!("{field}.mountPropagation"),
                        format!("{other:?} is not a propagation mode; use None, HostToContainer or Bidirectional"),
                    ))
                }
            }
            let read_only = mount.read_only.unwrap_or(false);
            match mount.recursive_read_only.as_deref() {
                None | Some("Disabled") | Some("IfPossible") => {}
                Some("Enabled") if read_only => {}
                Some("Enabled") => {
                    return Err(self.invalid(
                        format!("{field}.recursiveReadOnly"),
                        "Enabled needs readOnly: true on the same mount; add it",
                    ))
                }
                Some(other) => {
                    return Err(self.invalid(
                        format!("{field}.recursiveReadOnly"),
                        format!("{other:?} is not valid; use Disabled, IfPossible or Enabled"),
                    ))
                }
            }
            mounts.push(VolumeMountPlan {
                name: name.to_owned(),
                mount_path: mount_path.to_owned(),
                read_only,
                sub_path,
            });
        }
        Ok(mounts)
    }

    pub(crate) fn check_sub_path(&self, field: &str, sub: &str) -> Result<(), SpecError> {
        if sub.starts_with('/') {
            return Err(self.invalid(
                field,
                format!(
                    "{sub:?} is an absolute path; subPath must be relative to the volume's root, \
                     e.g. {:?}",
                    sub.trim_start_matches('/')
                ),
            ));
        }
        if Path::new(sub)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(self.invalid(
                field,
                format!("{sub:?} contains '..'; subPath must stay inside the volume, so remove it"),
            ));
        }
        Ok(())
    }
}

/// `/data/` and `/data` are the same mount point.
fn normalize_mount_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// The quantity text of `name` in `list`, for messages.
fn raw_text(list: Option<&std::collections::BTreeMap<String, RawQuantity>>, name: &str) -> String {
    list.and_then(|l| l.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}
