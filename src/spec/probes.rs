//! A container's probes (`startupProbe`, `livenessProbe`,
//! `readinessProbe`) and lifecycle hooks (`postStart`, `preStop`), with the
//! kubelet's defaults and rules. peapod-init runs them inside the guest.

use peapod_proto::{ProbeAction, ProbeKind, WireProbe};
use serde_yaml::Value;

use super::error::SpecError;
use super::plan::{LifecyclePlan, PortPlan};
use super::pod::{
    Container, ExecAction, GrpcAction, HttpGetAction, Lifecycle, LifecycleHandler, Probe,
    SleepAction, TcpSocketAction,
};
use super::signals::signal_number;
use super::validate::Checker;

/// The actions a probe or a lifecycle handler may set (exactly one).
struct Actions<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HttpGetAction>,
    tcp_socket: Option<&'a TcpSocketAction>,
    grpc: Option<&'a GrpcAction>,
    sleep: Option<&'a SleepAction>,
}

impl Checker<'_> {
    /// The container's probes, in the order startup, liveness, readiness.
    pub(crate) fn probes(
        &self,
        raw: &Container,
        path: &str,
        ports: &[PortPlan],
    ) -> Result<Vec<WireProbe>, SpecError> {
        let all = [
            (ProbeKind::Startup, "startupProbe", &raw.startup_probe),
            (ProbeKind::Liveness, "livenessProbe", &raw.liveness_probe),
            (ProbeKind::Readiness, "readinessProbe", &raw.readiness_probe),
        ];
        let mut out = Vec::new();
        for (kind, name, probe) in all {
            if let Some(probe) = probe {
                out.extend(self.probe(kind, probe, &format!("{path}.{name}"), ports)?);
            }
        }
        Ok(out)
    }

    /// One probe; `None` for one peapod cannot run (HTTPS), which is
    /// left out with a warning, as peapod left every probe out before it
    /// ran them: the pod runs, and that probe counts as passing.
    fn probe(
        &self,
        kind: ProbeKind,
        raw: &Probe,
        field: &str,
        ports: &[PortPlan],
    ) -> Result<Option<WireProbe>, SpecError> {
        let actions = Actions {
            exec: raw.exec.as_ref(),
            http_get: raw.http_get.as_ref(),
            tcp_socket: raw.tcp_socket.as_ref(),
            grpc: raw.grpc.as_ref(),
            sleep: None,
        };
        let Some(action) = self.action(&actions, field, ports, false)? else {
            return Ok(None);
        };
        let count =
            |name: &str, v: Option<i64>, default: u32, min: i64| -> Result<u32, SpecError> {
                match v {
                    None => Ok(default),
                    Some(n) if n >= min && n <= i64::from(u32::MAX) => Ok(n as u32),
                    Some(n) => Err(self.invalid(
                        format!("{field}.{name}"),
                        format!("{n} is out of range; use {min} or more"),
                    )),
                }
            };
        let success_threshold = count("successThreshold", raw.success_threshold, 1, 1)?;
        if kind != ProbeKind::Readiness && success_threshold != 1 {
            return Err(self.invalid(
                format!("{field}.successThreshold"),
                format!("must be 1 for a {} probe", kind.word().to_lowercase()),
            ));
        }
        if raw.termination_grace_period_seconds.is_some() {
            self.note_ignored(
                &format!("{field}.terminationGracePeriodSeconds"),
                "the pod's grace period applies",
            );
        }
        Ok(Some(WireProbe {
            kind,
            action,
            initial_delay_s: count("initialDelaySeconds", raw.initial_delay_seconds, 0, 0)?,
            period_s: count("periodSeconds", raw.period_seconds, 10, 1)?,
            timeout_s: count("timeoutSeconds", raw.timeout_seconds, 1, 1)?,
            success_threshold,
            failure_threshold: count("failureThreshold", raw.failure_threshold, 3, 1)?,
        }))
    }

    /// The container's lifecycle: its postStart and preStop hooks and its
    /// stop signal.
    pub(crate) fn lifecycle(
        &self,
        raw: Option<&Lifecycle>,
        path: &str,
        ports: &[PortPlan],
    ) -> Result<LifecyclePlan, SpecError> {
        let Some(raw) = raw else {
            return Ok(LifecyclePlan::default());
        };
        let hook = |h: Option<&LifecycleHandler>, name: &str| -> Result<_, SpecError> {
            let Some(h) = h else { return Ok(None) };
            let actions = Actions {
                exec: h.exec.as_ref(),
                http_get: h.http_get.as_ref(),
                tcp_socket: h.tcp_socket.as_ref(),
                grpc: None,
                sleep: h.sleep.as_ref(),
            };
            self.action(&actions, &format!("{path}.lifecycle.{name}"), ports, true)
        };
        let stop_signal = match raw.stop_signal.as_deref() {
            None => None,
            Some(name) => Some(signal_number(name).ok_or_else(|| {
                self.invalid(
                    format!("{path}.lifecycle.stopSignal"),
                    format!("{name:?} is not a signal; use a name such as SIGTERM or SIGQUIT"),
                )
            })?),
        };
        Ok(LifecyclePlan {
            post_start: hook(raw.post_start.as_ref(), "postStart")?,
            pre_stop: hook(raw.pre_stop.as_ref(), "preStop")?,
            stop_signal,
        })
    }

    /// What a probe (`hook` false) or a lifecycle hook does. `None`: a
    /// probe peapod cannot run, left out with a warning. A hook is never
    /// left out: one peapod cannot run is refused.
    fn action(
        &self,
        raw: &Actions<'_>,
        field: &str,
        ports: &[PortPlan],
        hook: bool,
    ) -> Result<Option<ProbeAction>, SpecError> {
        let set = [
            raw.exec.is_some(),
            raw.http_get.is_some(),
            raw.tcp_socket.is_some(),
            raw.grpc.is_some(),
            raw.sleep.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            let which = if hook {
                "exec, httpGet and sleep"
            } else {
                "exec, httpGet, tcpSocket and grpc"
            };
            return Err(self.invalid(field, format!("must set exactly one of {which}")));
        }
        if let Some(grpc) = raw.grpc {
            let port = match grpc.port {
                Some(p @ 1..=65535) => p as u16,
                _ => {
                    return Err(self.invalid(
                        format!("{field}.grpc.port"),
                        "is required: a port from 1 to 65535",
                    ))
                }
            };
            let service = grpc.service.clone().unwrap_or_default();
            if service.len() > 127 || service.chars().any(|c| c.is_control()) {
                return Err(self.invalid(
                    format!("{field}.grpc.service"),
                    "must be a service name of at most 127 bytes, on one line",
                ));
            }
            return Ok(Some(ProbeAction::Grpc { port, service }));
        }
        if let Some(sleep) = raw.sleep {
            return match sleep.seconds {
                Some(n @ 0..=86_400) => Ok(Some(ProbeAction::Sleep { seconds: n as u32 })),
                Some(n) => Err(self.invalid(
                    format!("{field}.sleep.seconds"),
                    format!("{n} is out of range; use 0 to 86400"),
                )),
                None => Err(self.invalid(
                    format!("{field}.sleep.seconds"),
                    "is required; give the seconds to wait",
                )),
            };
        }
        if hook && raw.tcp_socket.is_some() {
            return Err(self.invalid(
                format!("{field}.tcpSocket"),
                "is not a lifecycle handler (Kubernetes keeps the field but never runs it); use \
                 exec, httpGet or sleep",
            ));
        }
        let action = if let Some(exec) = raw.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err(self.invalid(
                    format!("{field}.exec.command"),
                    "is required; give the command to run, e.g. [cat, /tmp/healthy]",
                ));
            }
            ProbeAction::Exec { command }
        } else if let Some(tcp) = raw.tcp_socket {
            ProbeAction::Tcp {
                host: self.probe_host(tcp.host.as_deref(), &format!("{field}.tcpSocket.host"))?,
                port: self.probe_port(
                    tcp.port.as_ref(),
                    &format!("{field}.tcpSocket.port"),
                    ports,
                )?,
            }
        } else if let Some(http) = raw.http_get {
            let at = format!("{field}.httpGet");
            match http.scheme.as_deref() {
                None | Some("HTTP") => {}
                Some("HTTPS") if hook => {
                    return Err(self.invalid(
                        format!("{at}.scheme"),
                        "HTTPS hooks are not available in peapod; use HTTP or an exec hook",
                    ));
                }
                Some("HTTPS") => {
                    self.warn_ignored(
                        &format!("{at}.scheme"),
                        "peapod does not run HTTPS probes yet (it counts as passing); use HTTP, \
                         tcpSocket or an exec probe",
                    );
                    return Ok(None);
                }
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.scheme"),
                        format!("{other:?} is not a scheme; use HTTP or HTTPS"),
                    ))
                }
            }
            let path = match http.path.as_deref() {
                None | Some("") => "/".to_owned(),
                Some(p) if p.starts_with('/') => p.to_owned(),
                Some(p) => format!("/{p}"),
            };
            if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
                return Err(self.invalid(
                    format!("{at}.path"),
                    format!("{path:?} has spaces or control characters; percent-encode them"),
                ));
            }
            let mut headers = Vec::new();
            for (i, h) in http.http_headers.iter().flatten().enumerate() {
                let name = h.name.clone().unwrap_or_default();
                let value = h.value.clone().unwrap_or_default();
                let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                if name.is_empty() || !name.chars().all(token) {
                    return Err(self.invalid(
                        format!("{at}.httpHeaders[{i}].name"),
                        format!("{name:?} is not a header name (letters, digits and -)"),
                    ));
                }
                if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
                    return Err(self.invalid(
                        format!("{at}.httpHeaders[{i}].value"),
                        "has control characters",
                    ));
                }
                headers.push((name, value));
            }
            ProbeAction::Http {
                host: self.probe_host(http.host.as_deref(), &format!("{at}.host"))?,
                port: self.probe_port(http.port.as_ref(), &format!("{at}.port"), ports)?,
                path,
                headers,
            }
        } else {
            unreachable!("exactly one action is set")
        };
        Ok(Some(action))
    }

    fn probe_host(&self, host: Option<&str>, field: &str) -> Result<Option<String>, SpecError> {
        match host.filter(|h| !h.is_empty()) {
            None => Ok(None),
            Some(h) if h.parse::<std::net::IpAddr>().is_ok() => Ok(Some(h.to_owned())),
            Some(h) => Err(self.invalid(
                field,
                format!(
                    "{h:?} is not an IP address; give an address, or leave it out for the pod's"
                ),
            )),
        }
    }

    /// A probe's port: a number, or the name of one of the container's
    /// ports.
    fn probe_port(
        &self,
        port: Option<&Value>,
        field: &str,
        ports: &[PortPlan],
    ) -> Result<u16, SpecError> {
        let names = || {
            let named: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
            if named.is_empty() {
                "the container names no ports".to_owned()
            } else {
                format!("its named ports are: {}", named.join(", "))
            }
        };
        match port {
            None => Err(self.invalid(field, "is required; give a port number or a port's name")),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p @ 1..=65535) => Ok(p as u16),
                _ => Err(self.invalid(field, format!("{n} is not a port; use 1 to 65535"))),
            },
            Some(Value::String(s)) => {
                if let Ok(p) = s.parse::<u16>() {
                    if p > 0 {
                        return Ok(p);
                    }
                }
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(s.as_str()))
                    .map(|p| p.container_port)
                    .ok_or_else(|| {
                        self.invalid(
                            field,
                            format!("the container has no port named {s:?} ({})", names()),
                        )
                    })
            }
            Some(_) => Err(self.invalid(field, "must be a port number or a port's name")),
        }
    }
}
