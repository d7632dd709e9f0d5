//! The built-in stage kinds that run on the host, inside lightsout itself: they read the
//! workspace (never following a symlink out of it) and give a structured result.

pub mod context;
pub mod diff;
pub mod grade_tests;
pub mod guard;
pub mod jsonschema;
pub mod results;
pub mod ship;

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::workspace::Workspace;

pub use crate::events::Verdict;

/// When host work must stop: the run was cancelled, or the stage's timeout has passed. Work on
/// a blocking thread cannot be killed midway, so it asks before each step with effects outside
/// (a commit, a push, a request to GitHub).
#[derive(Clone, Debug)]
pub struct Stop {
    cancel: tokio_util::sync::CancellationToken,
    deadline: std::time::Instant,
}

impl Stop {
    pub fn new(cancel: tokio_util::sync::CancellationToken, timeout: std::time::Duration) -> Stop {
        Stop { cancel, deadline: std::time::Instant::now() + timeout }
    }

    /// `Err` (why) when the step `before` must not start.
    pub fn check(&self, before: &str) -> Result<(), String> {
        if self.cancel.is_cancelled() {
            Err(format!("cancelled before {before}"))
        } else if std::time::Instant::now() >= self.deadline {
            Err(format!("ran past its timeout before {before}"))
        } else {
            Ok(())
        }
    }

    /// The time left, at most `cap`.
    pub fn remaining(&self, cap: std::time::Duration) -> std::time::Duration {
        self.deadline.saturating_duration_since(std::time::Instant::now()).min(cap)
    }
}

/// What a host stage produced.
#[derive(Clone, Debug, Default)]
pub struct HostResult {
    pub outputs: BTreeMap<String, String>,
    /// Files to keep in the stage's record directory: (name, contents).
    pub artifacts: Vec<(String, String)>,
    pub verdict: Option<Verdict>,
    /// A one-line summary for the stage's log.
    pub summary: String,
}

/// A grader that judges the workspace on the host: one file each, behind this one trait.
/// (Graders that run a command, `grade.tests` and `grade.command`, run in the stage's container;
/// their judging is in `grade_tests` and the run engine.)
pub trait Grader: Sync {
    /// The `uses:` kind it implements.
    fn kind(&self) -> &'static str;
    /// Judges the workspace; the verdict is in the result.
    fn grade(&self, ws: &Workspace, with: &IndexMap<String, serde_json::Value>) -> Result<HostResult, String>;
}

/// A stage parameter that is a list of strings (`with: { key: [a, b] }`); absent or of
/// another type: empty. (The schema has checked the types at compile time.)
pub fn string_list(with: &IndexMap<String, serde_json::Value>, key: &str) -> Vec<String> {
    with.get(key)
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The host grader for `kind`, if there is one.
pub fn host_grader(kind: &str) -> Option<&'static dyn Grader> {
    const GRADERS: &[&dyn Grader] = &[&diff::DiffGrader, &jsonschema::JsonSchemaGrader];
    GRADERS.iter().copied().find(|g| g.kind() == kind)
}

/// Whether `kind` runs on the host in this version.
pub fn is_host_kind(kind: &str) -> bool {
    matches!(kind, "context" | "grade.diff" | "grade.jsonschema" | "ship")
}
