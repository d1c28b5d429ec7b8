//! `peapod wait`: block until a pod is running, has completed, or is gone,
//! as `kubectl wait` does for CI jobs and scripts.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::Failure;
use crate::sandbox::state::Liveness;
use crate::sandbox::{self, PodState};
use peapod_proto::PodPhase;

/// Arguments of `peapod wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The pod.
    pub pod: String,
    /// What to wait for.
    #[arg(long = "for", value_enum, value_name = "CONDITION")]
    pub condition: Condition,
    /// How long to wait: seconds, or a number with s, m or h (`90`, `90s`,
    /// `5m`); 0 checks once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// The conditions `wait --for` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Condition {
    /// The pod is Running and every app container runs.
    Running,
    /// The pod is Running and every app container is ready (runs, and
    /// passes its readiness probe, if it has one).
    Ready,
    /// The pod has ended (exit 0 when it Succeeded, 1 when it Failed).
    Completed,
    /// The pod is gone (`peapod rm`); also true of a pod that never was.
    Deleted,
}

impl Condition {
    fn word(self) -> &'static str {
        match self {
            Condition::Running => "running",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
            Condition::Deleted => "deleted",
        }
    }
}

/// `90`, `90s`, `5m`, `1h` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: use seconds, or a number with s, m or h (90, 90s, 5m)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&s| s <= 7 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration of at most a week (90, 90s, 5m)"))
}

/// One look at the pod.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The condition holds; exit with this code.
    Met(u8),
    /// Not yet; says where the pod is.
    NotYet(String),
    /// It never will: why.
    Never(String),
}

fn check(condition: Condition, name: &str, state: Option<&PodState>) -> Verdict {
    let Some(s) = state else {
        return match condition {
            Condition::Deleted => Verdict::Met(0),
            _ => Verdict::Never(format!("pod {name} was removed")),
        };
    };
    let status = s.status_word();
    let reason = s.status_reason();
    let described = if reason.is_empty() {
        status.to_owned()
    } else {
        format!("{status}: {reason}")
    };
    if s.liveness() == Liveness::Dead && condition != Condition::Deleted {
        return Verdict::Never(format!("pod {name} is {described}"));
    }
    match condition {
        Condition::Running | Condition::Ready if s.ended() => Verdict::Never(format!(
            "pod {name} ended before it was {} ({described})",
            condition.word()
        )),
        Condition::Running | Condition::Ready => {
            // Running: every app container runs; ready: and passes its
            // readiness probe.
            let ready = condition == Condition::Ready;
            let waiting: Vec<String> = s
                .containers
                .iter()
                .filter(|c| !c.status.init && !(c.running() && (!ready || c.status.ready)))
                .map(|c| match &c.status.probe_failure {
                    Some(why) if ready && c.running() => format!("{} ({why})", c.status.name),
                    _ => c.status.name.clone(),
                })
                .collect();
            if s.phase == PodPhase::Running && waiting.is_empty() {
                Verdict::Met(0)
            } else if waiting.is_empty() {
                Verdict::NotYet(described)
            } else {
                Verdict::NotYet(format!(
                    "{described}; not {}: {}",
                    condition.word(),
                    waiting.join(", ")
                ))
            }
        }
        Condition::Completed if s.ended() => Verdict::Met(u8::from(s.phase != PodPhase::Succeeded)),
        Condition::Completed | Condition::Deleted => Verdict::NotYet(described),
    }
}

/// `peapod wait`.
pub fn wait(args: WaitArgs) -> Result<ExitCode, Failure> {
    let dir = sandbox::trusted_runtime_dir()
        .map_err(Failure::Usage)?
        .join(&args.pod);
    // A pod that is not there at all is an error unless it is meant to go.
    if args.condition != Condition::Deleted {
        sandbox::find(&args.pod).map_err(Failure::Usage)?;
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        let state = match PodState::load(&dir) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Failure::Runtime(
                    anyhow!(e).context(format!("pod {}: cannot read its state", args.pod)),
                ))
            }
        };
        match check(args.condition, &args.pod, state.as_ref()) {
            Verdict::Met(code) => {
                let said = match (&state, args.condition) {
                    (Some(s), Condition::Completed) if code != 0 => {
                        format!("{} ({})", s.status_word(), s.status_reason())
                    }
                    (Some(s), _) => s.status_word().to_owned(),
                    (None, _) => "deleted".to_owned(),
                };
                println!("{}: {said}", args.pod);
                return Ok(ExitCode::from(code));
            }
            Verdict::Never(why) => {
                return Err(Failure::Runtime(anyhow!(
                    "pod {} will not be {}: {why}",
                    args.pod,
                    args.condition.word()
                )))
            }
            Verdict::NotYet(where_) => {
                if Instant::now() >= deadline {
                    return Err(Failure::Runtime(anyhow!(
                        "timed out after {} s waiting for pod {} to be {} (it is {where_})",
                        args.timeout.as_secs(),
                        args.pod,
                        args.condition.word()
                    )));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::state::ContainerInfo;
    use peapod_proto::{ContainerState, Termination};

    #[test]
    fn test_wait_parse_duration() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "1.5m", "-1", "5d", "9999999999999999999", "200h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// A pod whose monitor is this process (alive), with two app
    /// containers and an init container.
    fn pod(phase: PodPhase, app_running: [bool; 2]) -> PodState {
        let mut s = PodState::new("web", std::path::Path::new("/p.yaml"), "vm");
        s.phase = phase;
        let mut init = ContainerInfo::waiting("setup", true, "busybox");
        init.status.state = ContainerState::Terminated(Termination {
            code: Some(0),
            signal: None,
            reason: "Completed".into(),
            finished_at_ns: 1,
            message: None,
        });
        s.containers.push(init);
        for (name, running) in ["a", "b"].into_iter().zip(app_running) {
            let mut c = ContainerInfo::waiting(name, false, "busybox");
            if running {
                c.status.state = ContainerState::Running { started_at_ns: 1 };
            }
            s.containers.push(c);
        }
        s
    }

    #[test]
    fn test_wait_running_needs_every_app_container() {
        let c = Condition::Running;
        assert_eq!(
            check(c, "web", Some(&pod(PodPhase::Running, [true, true]))),
            Verdict::Met(0)
        );
        let half = check(c, "web", Some(&pod(PodPhase::Running, [true, false])));
        assert!(
            matches!(&half, Verdict::NotYet(w) if w.contains("not running: b")),
            "{half:?}"
        );
        let pending = check(c, "web", Some(&pod(PodPhase::Pending, [false, false])));
        assert!(matches!(pending, Verdict::NotYet(_)), "{pending:?}");
        // An ended pod will never run; neither will a removed one.
        let mut failed = pod(PodPhase::Failed, [false, false]);
        failed.reason = "container a failed".into();
        let never = check(c, "web", Some(&failed));
        assert!(
            matches!(&never, Verdict::Never(w) if w.contains("ended before it was running (Failed: container a failed)")),
            "{never:?}"
        );
        assert!(matches!(check(c, "web", None), Verdict::Never(_)));
    }

    #[test]
    fn test_wait_completed_and_deleted() {
        let c = Condition::Completed;
        assert_eq!(
            check(c, "web", Some(&pod(PodPhase::Succeeded, [false, false]))),
            Verdict::Met(0)
        );
        assert_eq!(
            check(c, "web", Some(&pod(PodPhase::Failed, [false, false]))),
            Verdict::Met(1)
        );
        assert!(matches!(
            check(c, "web", Some(&pod(PodPhase::Running, [true, true]))),
            Verdict::NotYet(_)
        ));
        let d = Condition::Deleted;
        assert_eq!(check(d, "web", None), Verdict::Met(0));
        assert!(matches!(
            check(d, "web", Some(&pod(PodPhase::Succeeded, [false, false]))),
            Verdict::NotYet(_)
        ));
    }

    #[test]
    fn test_wait_dead_monitor_never_runs() {
        let mut s = pod(PodPhase::Running, [true, true]);
        s.monitor_start_time += 1; // not this process: the monitor is gone
        let v = check(Condition::Running, "web", Some(&s));
        assert!(
            matches!(&v, Verdict::Never(w) if w.contains("is Dead")),
            "{v:?}"
        );
        let v = check(Condition::Completed, "web", Some(&s));
        assert!(matches!(v, Verdict::Never(_)), "{v:?}");
        // It can still be removed.
        assert!(matches!(
            check(Condition::Deleted, "web", Some(&s)),
            Verdict::NotYet(_)
        ));
    }
}
