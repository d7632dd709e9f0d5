//! The built-in stage kinds that run on the host, inside lightsout itself: they read the
//! workspace (never following a symlink out of it) and give a structured result.

pub mod context;
pub mod expect;
pub mod grade_tests;
pub mod graders;
pub mod guard;
pub mod results;
pub mod ship;

use std::collections::BTreeMap;

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

/// A grader that judges the workspace on the host, with its stage's parameters: one file each
/// under [`graders`], behind this one trait, listed in [`graders::host_grader`]. (Graders that
/// run a command, `grade.tests` and `grade.command`, run in the stage's container; their judging
/// is in `grade_tests` and the run engine.)
pub trait Grader: Send {
    /// Judges the workspace; the verdict is in the result.
    fn grade(&self, ws: &Workspace) -> Result<HostResult, String>;
}
