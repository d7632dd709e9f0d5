//! `uses: grade.jsonschema`: the workspace's JSON or YAML files named by `files` (globs) are
//! valid against the JSON Schema at `schema`. The schema is the base revision's (an agent that
//! rewrites it changes nothing); the files are the workspace's, read on the host, never
//! through a symbolic link.

use crate::plan::kind::JsonSchema;
use crate::stages::context::read_inside;
use crate::stages::{HostResult, Verdict};
use crate::workspace::Workspace;

fn parse(path: &str, text: &str) -> Result<serde_json::Value, String> {
    let yaml = std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if yaml {
        serde_saphyr::from_str::<serde_json::Value>(text).map_err(|e| format!("{path}: not valid YAML: {e}"))
    } else {
        serde_json::from_str(text).map_err(|e| format!("{path}: not valid JSON: {e}"))
    }
}

pub fn grade(ws: &Workspace, params: &JsonSchema) -> Result<HostResult, String> {
    let schema_path = params.schema.as_str();
    let schema_bytes = ws.base_file(schema_path).map_err(|why| format!("schema {schema_path}: {why}"))?;
    let schema_text = String::from_utf8(schema_bytes).map_err(|_| format!("schema {schema_path}: not UTF-8"))?;
    let schema = parse(schema_path, &schema_text)?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| format!("schema {schema_path} is not a JSON Schema: {e}"))?;
    let globs = crate::policy::Globs::new(&params.files, crate::policy::Matching::default())?;
    let files: Vec<String> = ws.files()?.into_iter().filter(|f| globs.is_match(f)).collect();
    let mut reasons = Vec::new();
    if files.is_empty() {
        reasons.push("no file matches `files`".to_owned());
    }
    for f in &files {
        let value = match read_inside(&ws.root(), f).map_err(|why| format!("{f}: {why}")).and_then(|t| parse(f, &t)) {
            Ok(v) => v,
            Err(e) => {
                reasons.push(e);
                continue;
            }
        };
        for err in validator.iter_errors(&value) {
            reasons.push(format!(
                "{f}{}: {}",
                if err.instance_path().as_str().is_empty() {
                    String::new()
                } else {
                    format!(" at {}", err.instance_path())
                },
                err.masked()
            ));
        }
    }
    let pass = reasons.is_empty();
    let summary = if pass {
        format!("grade.jsonschema: pass ({} files valid against {schema_path})", files.len())
    } else {
        format!("grade.jsonschema: FAIL\n{}", reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))
    };
    Ok(HostResult {
        summary,
        verdict: Some(Verdict { pass, reasons, details: serde_json::json!({ "schema": schema_path, "files": files }) }),
        ..HostResult::default()
    })
}

/// `grade.jsonschema` behind the [`crate::stages::Grader`] trait.
pub struct JsonSchemaGrader(pub JsonSchema);

impl crate::stages::Grader for JsonSchemaGrader {
    fn grade(&self, ws: &Workspace) -> Result<HostResult, String> {
        grade(ws, &self.0)
    }
}
