//! The graders that judge the workspace on the host, one file each, and the one list of them.

pub mod diff;
pub mod jsonschema;
pub mod tamper;

use crate::plan::StageKind;

/// The host grader of a stage's kind, with its parameters; `None` for kinds that are not one.
pub fn host_grader(kind: &StageKind) -> Option<Box<dyn super::Grader>> {
    match kind {
        StageKind::Diff(p) => Some(Box::new(diff::DiffGrader(diff::Params::from_plan(p)))),
        StageKind::JsonSchema(p) => Some(Box::new(jsonschema::JsonSchemaGrader(p.clone()))),
        _ => None,
    }
}
