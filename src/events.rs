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
