//! The built-in stage kinds that run on the host, inside lightsout itself: they read the
//! workspace (never following a symlink out of it) and give a structured result.

pub mod context;
pub mod diff;
pub mod grade_tests;
pub mod jsonschema;
pub mod ship;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A grader's structured verdict, recorded with the stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// One line per reason it failed (or notable facts when it passed).
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
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

/// Whether `kind` runs on the host in this version.
pub fn is_host_kind(kind: &str) -> bool {
    matches!(kind, "context" | "grade.diff" | "grade.jsonschema" | "ship")
}
