//! The one event stream of a run. The scheduler emits events; every observer (the recorder, the
//! terminal display, `--format json`, reports) reads the same enum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one attempt of a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command ended as `expect` says it should.
    Succeeded,
    /// The command ended otherwise (a non-zero exit, or zero under `expect: failure`).
    Failed,
    /// The stage ran past its `timeout` and was stopped.
    TimedOut,
    /// Docker, git or the file system failed; retried when the stage has `retries` left.
    Fault,
    /// The run was cancelled while the stage ran.
    Cancelled,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        self == Outcome::Succeeded
    }
}

/// How a whole run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped at an `approve` gate until someone runs `lightsout approve` or `reject`.
    AwaitingApproval,
}

/// Which stream a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        factory: String,
        category: String,
        ticket: String,
        base: String,
        executor: String,
        pid: u32,
    },
    /// `lightsout resume` took the run over.
    RunResumed {
        pid: u32,
    },
    StageSkipped {
        stage: String,
        reason: String,
    },
    StageStarted {
        stage: String,
        attempt: u32,
        /// The container name (docker) or the sandbox's process id (local).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<String>,
    },
    /// Output of a stage, masked. Not written to the event log: each stage has a log file.
    StageLog {
        stage: String,
        stream: Stream,
        text: String,
    },
    StageFinished {
        stage: String,
        attempt: u32,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// Why it ended so, in one line.
        reason: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        outputs: BTreeMap<String, String>,
        /// The workspace commit after a stage that may write it (for resume).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
        /// Whether another attempt follows (an infrastructure fault with retries left).
        #[serde(default)]
        retrying: bool,
        /// A grader's structured verdict.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdict: Option<Verdict>,
    },
    /// A loop's graders failed and it has attempts left: its agent runs again with their
    /// feedback, and the stages from it to the graders are reset.
    LoopRestarted {
        stage: String,
        attempt: u32,
        reset: Vec<String>,
        feedback: String,
    },
    /// The run reached an `approve` gate.
    ApprovalRequested {
        stage: String,
        message: String,
    },
    /// Someone approved the gate (who, and why).
    Approved {
        stage: String,
        by: String,
        reason: String,
    },
    /// Someone rejected the gate (who, and why).
    Rejected {
        stage: String,
        by: String,
        reason: String,
    },
    /// The egress proxy let a stage connect to `host:port`, or refused it.
    Egress {
        stage: String,
        attempt: u32,
        host: String,
        port: u16,
        allowed: bool,
        /// The allow-list entry that admitted it, or why it was refused.
        why: String,
    },
    /// A warning the user should see (e.g. an unsandboxed local executor).
    Warning {
        message: String,
    },
    RunFinished {
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff_stat: Option<String>,
    },
}

impl Event {
    /// Whether the event belongs in the append-only event log (logs go to per-stage files).
    pub fn is_recorded(&self) -> bool {
        !matches!(self, Event::StageLog { .. })
    }
}

/// An event with its time, as one line of `events.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped {
    /// RFC 3339, milliseconds, UTC.
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    pub fn now(event: Event) -> Stamped {
        Stamped { at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(), event }
    }
}

/// A grader's structured verdict, recorded with the stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// One line per reason it failed (or notable facts when it passed).
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Event {
    /// The event with `f` applied to every text a stage, a ticket or a person could have
    /// written (reasons, messages, logs, outputs, verdicts, feedback, egress targets); names
    /// the pipeline gave (stage ids) and the run's own facts are kept. The one place events are
    /// masked, for every sink.
    #[must_use]
    pub fn map_text(self, f: &dyn Fn(&str) -> String) -> Event {
        let map = |m: BTreeMap<String, String>| m.into_iter().map(|(k, v)| (f(&k), f(&v))).collect();
        match self {
            Event::RunStarted { run_id, factory, category, ticket, base, executor, pid } => {
                Event::RunStarted { run_id, factory, category, ticket: f(&ticket), base, executor, pid }
            }
            Event::StageSkipped { stage, reason } => Event::StageSkipped { stage, reason: f(&reason) },
            Event::StageStarted { stage, attempt, on } => Event::StageStarted { stage, attempt, on },
            Event::StageLog { stage, stream, text } => Event::StageLog { stage, stream, text: f(&text) },
            Event::StageFinished {
                stage,
                attempt,
                outcome,
                exit_code,
                reason,
                duration_ms,
                outputs,
                snapshot,
                retrying,
                verdict,
            } => Event::StageFinished {
                stage,
                attempt,
                outcome,
                exit_code,
                reason: f(&reason),
                duration_ms,
                outputs: map(outputs),
                snapshot,
                retrying,
                verdict: verdict.map(|v| v.map_text(f)),
            },
            Event::LoopRestarted { stage, attempt, reset, feedback } => {
                Event::LoopRestarted { stage, attempt, reset, feedback: f(&feedback) }
            }
            Event::ApprovalRequested { stage, message } => Event::ApprovalRequested { stage, message: f(&message) },
            Event::Approved { stage, by, reason } => Event::Approved { stage, by: f(&by), reason: f(&reason) },
            Event::Rejected { stage, by, reason } => Event::Rejected { stage, by: f(&by), reason: f(&reason) },
            Event::Egress { stage, attempt, host, port, allowed, why } => {
                Event::Egress { stage, attempt, host: f(&host), port, allowed, why: f(&why) }
            }
            Event::Warning { message } => Event::Warning { message: f(&message) },
            Event::RunFinished { status, diff_stat } => {
                Event::RunFinished { status, diff_stat: diff_stat.map(|d| f(&d)) }
            }
            e @ Event::RunResumed { .. } => e,
        }
    }
}

impl Verdict {
    /// The verdict with `f` applied to every string in it (keys of its details included).
    #[must_use]
    pub fn map_text(self, f: &dyn Fn(&str) -> String) -> Verdict {
        fn json(v: serde_json::Value, f: &dyn Fn(&str) -> String) -> serde_json::Value {
            match v {
                serde_json::Value::String(s) => serde_json::Value::String(f(&s)),
                serde_json::Value::Array(items) => items.into_iter().map(|i| json(i, f)).collect(),
                serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (f(&k), json(v, f))).collect(),
                other => other,
            }
        }
        Verdict {
            pass: self.pass,
            reasons: self.reasons.iter().map(|r| f(r)).collect(),
            details: json(self.details, f),
        }
    }
}

/// A boxed future a sink returns when it closes.
pub type Closing = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where a run's events go: the recorder, the terminal, JSON lines, reports. The CLI builds
/// them; the run hands every event, masked once, to each in turn.
pub trait Sink: Send {
    /// Takes one event. An `Err` stops the run: the recorder's, because nothing may be acted
    /// on that is not recorded.
    fn take(&mut self, event: &Stamped) -> Result<(), String>;

    /// Flushes and ends (a live view clears its lines).
    fn close(self: Box<Self>) -> Closing {
        Box::pin(std::future::ready(()))
    }
}

/// The fan-out of a run's events: each is masked once, stamped, then given to every sink in
/// order (the recorder first, so that it is on disk before the others see it or the run acts).
pub struct Fanout {
    mask: Box<dyn Fn(&str) -> String + Send>,
    sinks: Vec<Box<dyn Sink>>,
}

impl Fanout {
    pub fn new(mask: Box<dyn Fn(&str) -> String + Send>, sinks: Vec<Box<dyn Sink>>) -> Fanout {
        Fanout { mask, sinks }
    }

    /// Masks, stamps and delivers one event; the first sink's refusal is the error.
    pub fn send(&mut self, event: Event) -> Result<(), String> {
        let stamped = Stamped::now(event.map_text(&*self.mask));
        for sink in &mut self.sinks {
            sink.take(&stamped)?;
        }
        Ok(())
    }

    /// Closes every sink, in order.
    pub async fn close(self) {
        for sink in self.sinks {
            sink.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that keeps what it was given, and can refuse.
    struct Keep(Arc<Mutex<Vec<Stamped>>>, bool);

    impl Sink for Keep {
        fn take(&mut self, e: &Stamped) -> Result<(), String> {
            if self.1 {
                return Err("disk full".into());
            }
            self.0.lock().map_err(|e| e.to_string())?.push(e.clone());
            Ok(())
        }
    }

    fn secret_everywhere() -> Vec<Event> {
        let s = "hunter2";
        vec![
            Event::StageLog { stage: "a".into(), stream: Stream::Stdout, text: format!("the key is {s}\n") },
            Event::StageFinished {
                stage: "a".into(),
                attempt: 1,
                outcome: Outcome::Failed,
                exit_code: Some(1),
                reason: format!("bad {s}"),
                duration_ms: 1,
                outputs: [(format!("k{s}"), format!("v{s}"))].into_iter().collect(),
                snapshot: None,
                retrying: false,
                verdict: Some(Verdict {
                    pass: false,
                    reasons: vec![s.into()],
                    details: serde_json::json!({ s: [s, { "x": s }] }),
                }),
            },
            Event::LoopRestarted { stage: "a".into(), attempt: 2, reset: vec!["a".into()], feedback: s.into() },
            Event::ApprovalRequested { stage: "g".into(), message: s.into() },
            Event::Approved { stage: "g".into(), by: s.into(), reason: s.into() },
            Event::Egress { stage: "a".into(), attempt: 1, host: s.into(), port: 1, allowed: false, why: s.into() },
            Event::Warning { message: s.into() },
            Event::RunFinished { status: RunStatus::Failed, diff_stat: Some(s.into()) },
        ]
    }

    #[test]
    fn every_sink_gets_every_event_masked_once_in_order() -> Result<(), String> {
        let (first, second) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let mask = Box::new(|t: &str| t.replace("hunter2", "***"));
        let mut fanout = Fanout::new(
            mask,
            vec![Box::new(Keep(Arc::clone(&first), false)), Box::new(Keep(Arc::clone(&second), false))],
        );
        let events = secret_everywhere();
        for e in &events {
            fanout.send(e.clone())?;
        }
        let first = first.lock().map_err(|e| e.to_string())?;
        let second = second.lock().map_err(|e| e.to_string())?;
        assert_eq!(first.len(), events.len());
        for (a, b) in first.iter().zip(second.iter()) {
            assert_eq!(a.event, b.event, "every sink sees the same event");
            let line = serde_json::to_string(a).map_err(|e| e.to_string())?;
            assert!(!line.contains("hunter2"), "{line}");
        }
        Ok(())
    }

    #[test]
    fn the_first_sinks_refusal_stops_the_event_before_the_others() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut fanout = Fanout::new(
            Box::new(str::to_owned),
            vec![Box::new(Keep(Arc::new(Mutex::new(Vec::new())), true)), Box::new(Keep(Arc::clone(&seen), false))],
        );
        assert_eq!(fanout.send(Event::Warning { message: "x".into() }), Err("disk full".to_owned()));
        assert!(seen.lock().is_ok_and(|s| s.is_empty()), "nothing is shown that was not recorded");
    }
}
