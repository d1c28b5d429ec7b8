//! The messages: [`HostMsg`] (host to guest) and [`GuestMsg`] (guest to host),
//! one JSON object per frame, tagged by `"type"`.
//!
//! The first frame each way is `hello` carrying [`PROTOCOL_VERSION`]; any
//! change to a message that an older peer would misread bumps the version.
//! Unknown message types and unknown fields are decode errors, never ignored.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Result};
use crate::frame::MAX_FRAME;
use crate::pod::{WireContainer, WirePod};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 4;

/// Identifies an exec session; chosen by the host, unique per pod.
pub type ExecId = u64;

/// The first message each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The sender's program and version, for logs (`peapod-init 0.1.0`).
    pub agent: String,
}

impl Hello {
    /// Our hello.
    pub fn new(agent: impl Into<String>) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            agent: agent.into(),
        }
    }
}

/// Check the peer's hello against our version.
pub fn check_version(peer: &Hello) -> Result<()> {
    if peer.version != PROTOCOL_VERSION {
        return Err(ProtoError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: peer.version,
        });
    }
    Ok(())
}

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMsg {
    /// Handshake; the first message.
    Hello(Hello),
    /// Run this pod. Sent once, after the guest said `ready`.
    RunPod(Box<WirePod>),
    /// Start a process in a running container.
    Exec {
        exec_id: ExecId,
        container: String,
        /// argv; the first element is looked up in the container's `PATH`.
        command: Vec<String>,
        tty: bool,
        /// Keep stdin open; data follows in `exec_stdin`.
        stdin: bool,
        /// Added to the container's environment.
        env: Vec<(String, String)>,
        /// Absolute; `None` means the container's.
        working_dir: Option<String>,
        /// `(uid, gid)`; `None` means the container's.
        user: Option<(u32, u32)>,
    },
    /// Input for an exec session; at most [`crate::MAX_CHUNK`] bytes.
    ExecStdin {
        exec_id: ExecId,
        #[serde(with = "crate::bytes::chunk")]
        data: Vec<u8>,
        /// Close stdin after this data.
        eof: bool,
    },
    /// Terminal size of a tty exec session.
    ExecResize {
        exec_id: ExecId,
        rows: u16,
        cols: u16,
    },
    /// Send a signal to one container's main process, or to all of them.
    Signal {
        container: Option<String>,
        signal: i32,
    },
    /// Stop the pod: SIGTERM to every container, SIGKILL after the grace
    /// period, then `pod_exited`.
    StopPod { grace_period_s: u64 },
    /// Ask for a `status` message. A struct variant, not a unit one: serde
    /// ignores extra fields of internally tagged unit variants.
    StatusQuery {},
    /// Add an app container to the running pod and start it (once the
    /// init containers are done). Its name must be new to the pod (a
    /// removed container's may come back); its mounts name the pod's
    /// volumes. `refused` answers a bad one; otherwise `started` (or
    /// `exited`, when it cannot start) follows.
    AddContainer { container: Box<WireContainer> },
    /// Forget an ended container (its process and restarts are over);
    /// `removed` follows, or `refused` naming why not.
    RemoveContainer { container: String },
}

/// Output streams of a container or exec session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Something that happened to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContainerEvent {
    /// The container's process exists and its postStart hook runs; its
    /// output is logged from here. `Started` follows once the hook passed.
    Created { pid: u32 },
    /// The container runs (its postStart hook, if any, passed).
    Started { pid: u32 },
    /// The container's process ended. Exactly one of `code` and `signal` is
    /// set; `oom_killed` when the kernel OOM killer ended it; `message`:
    /// its termination message (`terminationMessagePath`, or its output's
    /// tail under `FallbackToLogsOnError`).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A lifecycle hook failed; a failed postStart hook stops the
    /// container, a failed preStop hook does not keep it from stopping.
    HookFailed {
        hook: crate::pod::HookKind,
        message: String,
    },
    /// The container will be restarted after `backoff_ms`; `restart_count`
    /// counts this restart.
    Restarting { restart_count: u32, backoff_ms: u64 },
    /// The container is gone from the pod (`remove_container`).
    Removed {},
    /// An `add_container` or `remove_container` of this container was
    /// refused; nothing changed.
    Refused { message: String },
    /// The container became ready or stopped being ready (readiness and
    /// startup probes; without them, ready once it runs).
    Ready { ready: bool },
    /// A probe failed `failureThreshold` times in a row; a failing startup
    /// or liveness probe restarts the container.
    Unhealthy {
        probe: crate::pod::ProbeKind,
        message: String,
    },
}

/// Pod phase, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Termination {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, ... (Kubernetes reasons).
    pub reason: String,
    /// Realtime clock, nanoseconds since the Unix epoch.
    pub finished_at_ns: u64,
    /// The termination message (at most [`MAX_TERMINATION_MESSAGE`]
    /// bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The most of a termination message kept, in bytes, as the kubelet keeps.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

/// A container's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContainerState {
    /// Not running yet (`PodInitializing`, `CrashLoopBackOff`, ...).
    Waiting {
        reason: String,
    },
    /// Running since (realtime, ns since the epoch).
    Running {
        started_at_ns: u64,
    },
    Terminated(Termination),
}

/// One container in a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStatus {
    pub name: String,
    pub init: bool,
    pub state: ContainerState,
    pub restart_count: u32,
    /// How the previous run ended, once it was restarted.
    pub last_termination: Option<Termination>,
    /// It runs and passes its readiness probe (if any).
    #[serde(default)]
    pub ready: bool,
    /// The last probe failure (`Liveness probe failed: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_failure: Option<String>,
    /// The last lifecycle hook failure (`FailedPostStartHook: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_failure: Option<String>,
}

/// Answer to `status_query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodStatus {
    pub phase: PodPhase,
    /// Init containers first, then app containers, in pod order.
    pub containers: Vec<ContainerStatus>,
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestMsg {
    /// Handshake; the first message.
    Hello(Hello),
    /// The guest is set up and waits for `run_pod`.
    Ready { uptime_ms: u64 },
    /// A container event.
    ContainerEvent {
        container: String,
        init: bool,
        event: ContainerEvent,
    },
    /// Container output; at most [`crate::MAX_CHUNK`] bytes.
    Log {
        container: String,
        stream: Stream,
        /// Realtime clock when read, nanoseconds since the Unix epoch.
        timestamp_ns: u64,
        /// The chunk does not end with a newline: its last line continues
        /// in the next chunk, or, at the end of the stream, was never
        /// finished (CRI logs mark both `P`, as containerd does).
        partial: bool,
        #[serde(with = "crate::bytes::chunk")]
        data: Vec<u8>,
    },
    /// The exec session's process runs.
    ExecStarted { exec_id: ExecId },
    /// Exec output; at most [`crate::MAX_CHUNK`] bytes.
    ExecOutput {
        exec_id: ExecId,
        stream: Stream,
        #[serde(with = "crate::bytes::chunk")]
        data: Vec<u8>,
    },
    /// The exec session's process ended; no output follows.
    ExecExited {
        exec_id: ExecId,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Answer to `status_query`.
    Status(PodStatus),
    /// Every container has ended; the guest shuts down next.
    PodExited { phase: PodPhase, reason: String },
    /// A request failed, or a message could not be decoded.
    Error { message: String },
}

/// What both message enums share.
pub trait Message: Serialize + DeserializeOwned {
    /// The wire name of the message type (`"run_pod"`), for errors and logs.
    fn kind(&self) -> &'static str;
    /// The `hello` message.
    fn hello(hello: Hello) -> Self;
    /// The hello inside, if this is one.
    fn into_hello(self) -> Result<Hello, Self>;
}

impl Message for HostMsg {
    fn kind(&self) -> &'static str {
        match self {
            HostMsg::Hello(_) => "hello",
            HostMsg::RunPod(_) => "run_pod",
            HostMsg::Exec { .. } => "exec",
            HostMsg::ExecStdin { .. } => "exec_stdin",
            HostMsg::ExecResize { .. } => "exec_resize",
            HostMsg::Signal { .. } => "signal",
            HostMsg::StopPod { .. } => "stop_pod",
            HostMsg::StatusQuery {} => "status_query",
            HostMsg::AddContainer { .. } => "add_container",
            HostMsg::RemoveContainer { .. } => "remove_container",
        }
    }

    fn hello(hello: Hello) -> Self {
        HostMsg::Hello(hello)
    }

    fn into_hello(self) -> Result<Hello, Self> {
        match self {
            HostMsg::Hello(h) => Ok(h),
            other => Err(other),
        }
    }
}

impl Message for GuestMsg {
    fn kind(&self) -> &'static str {
        match self {
            GuestMsg::Hello(_) => "hello",
            GuestMsg::Ready { .. } => "ready",
            GuestMsg::ContainerEvent { .. } => "container_event",
            GuestMsg::Log { .. } => "log",
            GuestMsg::ExecStarted { .. } => "exec_started",
            GuestMsg::ExecOutput { .. } => "exec_output",
            GuestMsg::ExecExited { .. } => "exec_exited",
            GuestMsg::Status(_) => "status",
            GuestMsg::PodExited { .. } => "pod_exited",
            GuestMsg::Error { .. } => "error",
        }
    }

    fn hello(hello: Hello) -> Self {
        GuestMsg::Hello(hello)
    }

    fn into_hello(self) -> Result<Hello, Self> {
        match self {
            GuestMsg::Hello(h) => Ok(h),
            other => Err(other),
        }
    }
}

/// Serialize a message to a frame payload, checking it fits a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(msg).map_err(ProtoError::Encode)?;
    if payload.len() > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME,
        });
    }
    Ok(payload)
}

/// Deserialize a frame payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    serde_json::from_slice(payload).map_err(|e| ProtoError::Decode {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::tests::{sample_container, sample_pod};

    fn host_samples() -> Vec<HostMsg> {
        vec![
            HostMsg::Hello(Hello::new("peapod 0.1.0")),
            HostMsg::RunPod(Box::new(sample_pod())),
            HostMsg::Exec {
                exec_id: 7,
                container: "app".into(),
                command: vec!["ls".into(), "-l".into()],
                tty: true,
                stdin: true,
                env: vec![("TERM".into(), "xterm".into())],
                working_dir: Some("/tmp".into()),
                user: Some((0, 0)),
            },
            HostMsg::Exec {
                exec_id: 8,
                container: "app".into(),
                command: vec!["true".into()],
                tty: false,
                stdin: false,
                env: vec![],
                working_dir: None,
                user: None,
            },
            HostMsg::ExecStdin {
                exec_id: 7,
                data: b"echo \xff\0\n".to_vec(),
                eof: false,
            },
            HostMsg::ExecStdin {
                exec_id: 7,
                data: vec![],
                eof: true,
            },
            HostMsg::ExecResize {
                exec_id: 7,
                rows: 24,
                cols: 80,
            },
            HostMsg::Signal {
                container: Some("app".into()),
                signal: 1,
            },
            HostMsg::Signal {
                container: None,
                signal: 15,
            },
            HostMsg::StopPod { grace_period_s: 30 },
            HostMsg::StatusQuery {},
            HostMsg::AddContainer {
                container: Box::new(sample_container("late")),
            },
            HostMsg::RemoveContainer {
                container: "late".into(),
            },
        ]
    }

    fn guest_samples() -> Vec<GuestMsg> {
        let finished = Termination {
            code: None,
            signal: Some(9),
            reason: "OOMKilled".into(),
            finished_at_ns: 1_700_000_000_000_000_000,
            message: None,
        };
        vec![
            GuestMsg::Hello(Hello::new("peapod-init 0.1.0")),
            GuestMsg::Ready { uptime_ms: 123 },
            GuestMsg::ContainerEvent {
                container: "app".into(),
                init: false,
                event: ContainerEvent::Started { pid: 42 },
            },
            GuestMsg::ContainerEvent {
                container: "setup".into(),
                init: true,
                event: ContainerEvent::Exited {
                    code: Some(3),
                    signal: None,
                    oom_killed: false,
                    message: None,
                },
            },
            GuestMsg::ContainerEvent {
                container: "app".into(),
                init: false,
                event: ContainerEvent::Exited {
                    code: None,
                    signal: Some(9),
                    oom_killed: true,
                    message: Some("out of memory\n".into()),
                },
            },
            GuestMsg::ContainerEvent {
                container: "app".into(),
                init: false,
                event: ContainerEvent::Created { pid: 7 },
            },
            GuestMsg::ContainerEvent {
                container: "app".into(),
                init: false,
                event: ContainerEvent::HookFailed {
                    hook: crate::pod::HookKind::PreStop,
                    message: "postStart hook failed: command exited with 1".into(),
                },
            },
            GuestMsg::ContainerEvent {
                container: "app".into(),
                init: false,
                event: ContainerEvent::Restarting {
                    restart_count: 2,
                    backoff_ms: 2000,
                },
            },
            GuestMsg::ContainerEvent {
                container: "late".into(),
                init: false,
                event: ContainerEvent::Removed {},
            },
            GuestMsg::ContainerEvent {
                container: "late".into(),
                init: false,
                event: ContainerEvent::Refused {
                    message: "the pod already has a container of that name".into(),
                },
            },
            GuestMsg::Log {
                container: "app".into(),
                stream: Stream::Stderr,
                timestamp_ns: u64::MAX,
                partial: true,
                data: (0..=255).collect(),
            },
            GuestMsg::ExecStarted { exec_id: 7 },
            GuestMsg::ExecOutput {
                exec_id: 7,
                stream: Stream::Stdout,
                data: b"total 0\n".to_vec(),
            },
            GuestMsg::ExecExited {
                exec_id: 7,
                code: Some(0),
                signal: None,
            },
            GuestMsg::Status(PodStatus {
                phase: PodPhase::Running,
                containers: vec![
                    ContainerStatus {
                        name: "setup".into(),
                        init: true,
                        state: ContainerState::Terminated(Termination {
                            code: Some(0),
                            signal: None,
                            reason: "Completed".into(),
                            finished_at_ns: 5,
                            message: None,
                        }),
                        restart_count: 0,
                        last_termination: None,
                        ready: false,
                        probe_failure: None,
                        hook_failure: None,
                    },
                    ContainerStatus {
                        name: "app".into(),
                        init: false,
                        state: ContainerState::Running { started_at_ns: 9 },
                        restart_count: 1,
                        last_termination: Some(finished),
                        ready: false,
                        probe_failure: None,
                        hook_failure: None,
                    },
                    ContainerStatus {
                        name: "side".into(),
                        init: false,
                        state: ContainerState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                        },
                        restart_count: 4,
                        last_termination: None,
                        ready: false,
                        probe_failure: None,
                        hook_failure: None,
                    },
                ],
            }),
            GuestMsg::PodExited {
                phase: PodPhase::Succeeded,
                reason: "Completed".into(),
            },
            GuestMsg::Error {
                message: "no container \"x\"".into(),
            },
        ]
    }

    #[test]
    fn test_host_msg_round_trip_every_type() {
        let samples = host_samples();
        let mut kinds: Vec<_> = samples.iter().map(|m| m.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 10, "every HostMsg variant has a sample");
        for msg in samples {
            let payload = encode(&msg).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(json["type"], msg.kind(), "kind() matches the wire tag");
            assert_eq!(decode::<HostMsg>(&payload).unwrap(), msg);
        }
    }

    #[test]
    fn test_guest_msg_round_trip_every_type() {
        let samples = guest_samples();
        let mut kinds: Vec<_> = samples.iter().map(|m| m.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 10, "every GuestMsg variant has a sample");
        for msg in samples {
            let payload = encode(&msg).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(json["type"], msg.kind(), "kind() matches the wire tag");
            assert_eq!(decode::<GuestMsg>(&payload).unwrap(), msg);
        }
    }

    #[test]
    fn test_msg_wire_format_is_stable() {
        // Changing these strings changes the protocol: bump PROTOCOL_VERSION.
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                encode(&HostMsg::Hello(Hello::new("peapod"))).unwrap(),
                r#"{"type":"hello","version":4,"agent":"peapod"}"#,
            ),
            (
                encode(&HostMsg::StatusQuery {}).unwrap(),
                r#"{"type":"status_query"}"#,
            ),
            (
                encode(&HostMsg::RemoveContainer {
                    container: "c".into(),
                })
                .unwrap(),
                r#"{"type":"remove_container","container":"c"}"#,
            ),
            (
                encode(&GuestMsg::Log {
                    container: "c".into(),
                    stream: Stream::Stdout,
                    timestamp_ns: 1,
                    partial: false,
                    data: b"hi\n".to_vec(),
                })
                .unwrap(),
                r#"{"type":"log","container":"c","stream":"stdout","timestamp_ns":1,"partial":false,"data":"aGkK"}"#,
            ),
            (
                encode(&GuestMsg::ContainerEvent {
                    container: "c".into(),
                    init: false,
                    event: ContainerEvent::Exited {
                        code: Some(1),
                        signal: None,
                        oom_killed: false,
                        message: None,
                    },
                })
                .unwrap(),
                r#"{"type":"container_event","container":"c","init":false,"event":{"kind":"exited","code":1,"signal":null,"oom_killed":false}}"#,
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(std::str::from_utf8(&payload).unwrap(), want);
        }
    }

    #[test]
    fn test_decode_rejects_unknown_type() {
        let err = decode::<HostMsg>(br#"{"type":"format_disk"}"#).unwrap_err();
        let ProtoError::Decode { message } = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.contains("unknown variant `format_disk`"),
            "{message}"
        );
        // A guest message is not a host message.
        assert!(decode::<HostMsg>(br#"{"type":"ready","uptime_ms":1}"#).is_err());
        assert!(decode::<GuestMsg>(br#"{"type":"status_query"}"#).is_err());
        // No tag at all.
        let err = decode::<GuestMsg>(br#"{"uptime_ms":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `type`"), "{err}");
    }

    #[test]
    fn test_decode_rejects_unknown_field() {
        let cases: [&[u8]; 5] = [
            br#"{"type":"stop_pod","grace_period_s":3,"force":true}"#,
            br#"{"type":"hello","version":1,"agent":"x","extra":0}"#,
            br#"{"type":"status_query","x":1}"#,
            br#"{"type":"container_event","container":"c","init":false,"event":{"kind":"started","pid":1,"ppid":0}}"#,
            br#"{"type":"status","phase":"running","containers":[],"node":"n"}"#,
        ];
        for payload in cases {
            let host = decode::<HostMsg>(payload);
            let guest = decode::<GuestMsg>(payload);
            let text = String::from_utf8_lossy(payload);
            assert!(host.is_err() && guest.is_err(), "accepted {text}");
            let err = if payload.starts_with(br#"{"type":"stop"#)
                || payload.starts_with(br#"{"type":"status_q"#)
            {
                host.unwrap_err()
            } else {
                guest.unwrap_err()
            };
            assert!(err.to_string().contains("unknown field"), "{text}: {err}");
        }
    }

    #[test]
    fn test_decode_rejects_unknown_field_in_pod() {
        let mut json = serde_json::to_value(HostMsg::RunPod(Box::new(sample_pod()))).unwrap();
        json["containers"][0]["privileged"] = true.into();
        let err = decode::<HostMsg>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `privileged`"),
            "{err}"
        );
    }

    #[test]
    fn test_decode_rejects_malformed_payloads() {
        for payload in [
            &b"not json"[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            br#"{"type":"log","container":"c","stream":"stdout","timestamp_ns":1,"partial":false,"data":"!!!!"}"#,
            br#"{"type":"ready","uptime_ms":-1}"#,
        ] {
            let err = decode::<GuestMsg>(payload).unwrap_err();
            assert!(matches!(err, ProtoError::Decode { .. }), "{err:?}");
        }
    }

    #[test]
    fn test_encode_rejects_oversized_message() {
        let msg = GuestMsg::Error {
            message: "x".repeat(MAX_FRAME),
        };
        assert!(matches!(
            encode(&msg),
            Err(ProtoError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn test_encode_max_chunk_fits_a_frame() {
        let msg = GuestMsg::Log {
            container: "c".repeat(253),
            stream: Stream::Stdout,
            timestamp_ns: u64::MAX,
            partial: true,
            data: vec![0xff; crate::MAX_CHUNK],
        };
        assert!(encode(&msg).unwrap().len() < MAX_FRAME);
    }

    #[test]
    fn test_check_version() {
        check_version(&Hello::new("x")).unwrap();
        let err = check_version(&Hello {
            version: 1,
            agent: "x".into(),
        })
        .unwrap_err();
        assert!(matches!(
            err,
            ProtoError::VersionMismatch { ours: 4, theirs: 1 }
        ));
        let text = err.to_string();
        assert!(
            text.contains("version 4") && text.contains("version 1"),
            "{text}"
        );
    }
}
