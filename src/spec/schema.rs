//! The JSON Schema of each file kind: generated from the types, committed under `schema/`, and
//! used to validate a user's file with every violation mapped back to its line and column.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use super::node::{self, Node};
use crate::diag::Located;
use crate::diag::{Diagnostic, Diagnostics, code, did_you_mean};

/// The kinds of file lightsout reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileKind {
    Factory,
    Pipeline,
    Policy,
}

impl FileKind {
    pub const ALL: [FileKind; 3] = [FileKind::Factory, FileKind::Pipeline, FileKind::Policy];

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Factory => "factory",
            FileKind::Pipeline => "pipeline",
            FileKind::Policy => "policy",
        }
    }

    /// The committed file name under `schema/`.
    pub fn schema_file(self) -> String {
        format!("{}.schema.json", self.name())
    }

    /// The JSON Schema, generated from the Rust types.
    pub fn schema(self) -> Value {
        let schema = match self {
            FileKind::Factory => schemars::schema_for!(super::FactoryFile),
            FileKind::Pipeline => schemars::schema_for!(super::PipelineFile),
            FileKind::Policy => schemars::schema_for!(super::PolicyFile),
        };
        schema.to_value()
    }

    /// The schema as committed: pretty JSON with a final newline.
    pub fn schema_text(self) -> String {
        let mut s = serde_json::to_string_pretty(&self.schema()).unwrap_or_default();
        s.push('\n');
        s
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static CACHE: [OnceLock<jsonschema::Validator>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        CACHE[self as usize].get_or_init(|| {
            // The schema is generated from our own types; a failure here is a bug that the
            // schema tests catch before release.
            #[expect(clippy::expect_used, reason = "test set-up: a failure here is the test failing")]
            jsonschema::options()
                .should_validate_formats(false)
                .build(&self.schema())
                .expect("the generated schema compiles")
        })
    }
}

/// Validates a parsed file against its kind's schema, reporting every violation.
pub fn validate(kind: FileKind, path: &Path, root: &Located<Node>) -> Result<(), Diagnostics> {
    let json = root.value.to_json();
    let schema = kind.schema();
    let mut out = Diagnostics::default();
    for err in kind.validator().iter_errors(&json) {
        report(&mut out, path, root, &schema, &err);
    }
    out.into_result(())
}

fn segments(loc: &jsonschema::paths::Location) -> Vec<String> {
    loc.iter()
        .map(|s| match s {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

/// A readable name for where a value is: `stages.build.needs[0]`.
fn dotted(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if seg.parse::<usize>().is_ok() {
            let _ = write!(s, "[{seg}]");
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg);
        }
    }
    if s.is_empty() { "the file".into() } else { format!("`{s}`") }
}

fn report(
    out: &mut Diagnostics,
    path: &Path,
    root: &Located<Node>,
    schema: &Value,
    err: &jsonschema::ValidationError<'_>,
) {
    let segs = segments(err.instance_path());
    let seg_refs = || segs.iter().map(String::as_str);
    let at = node::locate(root, seg_refs());
    let value_at = node::locate_value(root, seg_refs());
    let found = found_kind(root, &segs);
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_properties(schema, err);
            for key in unexpected {
                let key_at = node::locate(root, seg_refs().chain([key.as_str()]));
                let hint = did_you_mean(key, allowed.iter().map(String::as_str))
                    .or_else(|| (!allowed.is_empty()).then(|| format!("allowed keys here: {}", allowed.join(", "))));
                out.push(
                    Diagnostic::new(path, key_at, format!("unknown key `{key}` in {}", dotted(&segs)))
                        .code(code::FIELD_UNKNOWN)
                        .maybe_hint(hint),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(
                Diagnostic::new(path, value_at, format!("missing required key `{name}` in {}", dotted(&segs)))
                    .code(code::FIELD_MISSING)
                    .hint(format!("add `{name}:`")),
            );
        }
        ValidationErrorKind::Type { kind } => {
            let expected = type_names(kind);
            let hint = if expected.starts_with("a list") {
                "write a list: `[a, b]`, or one `- item` per line"
            } else if expected.starts_with("a mapping") {
                "write `key: value` pairs, indented under this key"
            } else if expected.starts_with("an integer") || expected.starts_with("a number") {
                "write a number without quotes"
            } else if expected.starts_with("true or false") {
                "write `true` or `false` without quotes"
            } else {
                "quote the value: `\"...\"`"
            };
            out.push(
                Diagnostic::new(path, value_at, format!("{} must be {expected}, found {found}", dotted(&segs)))
                    .code(code::FIELD_TYPE)
                    .hint(hint),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<&str> = options.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let given = err.instance().as_str().unwrap_or_default();
            let hint = did_you_mean(given, choices.iter().copied())
                .or_else(|| Some(format!("use one of: {}", choices.join(", "))));
            out.push(
                Diagnostic::new(
                    path,
                    value_at,
                    format!("{} has an unknown value {}", dotted(&segs), short(err.instance())),
                )
                .code(code::FIELD_VALUE)
                .maybe_hint(hint),
            );
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Report the branches the value's type fits (a mapping given where a name or a map
            // is allowed is wrong as a map, not as a name); when none fits, every branch but
            // `null` (`Option<T>` is `anyOf [T, null]`: why the value is not a T).
            let misfit = |b: &Vec<jsonschema::ValidationError<'_>>| {
                b.iter().all(|e| {
                    matches!(e.kind(), ValidationErrorKind::Type { .. }) && e.instance_path() == err.instance_path()
                })
            };
            let fitting: Vec<&Vec<jsonschema::ValidationError<'_>>> = context.iter().filter(|b| !misfit(b)).collect();
            let branches = if fitting.is_empty() { context.iter().collect() } else { fitting };
            let mut inner = branches.into_iter().flatten().filter(|e| !is_null_type_error(e)).peekable();
            if inner.peek().is_none() {
                out.push(
                    Diagnostic::new(path, value_at, format!("{} is not valid: {err}", dotted(&segs)))
                        .code(code::FIELD_INVALID),
                );
            }
            for e in inner {
                report(out, path, root, schema, e);
            }
        }
        _ => out.push(
            Diagnostic::new(path, at, format!("{} is not valid: {}", dotted(&segs), plain_message(err)))
                .code(code::FIELD_INVALID)
                .hint("`lightsout schema` prints every key with its allowed values"),
        ),
    }
}

fn is_null_type_error(e: &jsonschema::ValidationError<'_>) -> bool {
    matches!(e.kind(), ValidationErrorKind::Type { kind } if type_names(kind) == "null")
}

fn found_kind(root: &Located<Node>, segs: &[String]) -> String {
    let mut here = &root.value;
    for seg in segs {
        let next = match here {
            Node::Map(entries) => entries.iter().find(|(k, _)| &k.value == seg).map(|(_, v)| &v.value),
            Node::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)).map(|n| &n.value),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => break,
        }
    }
    match here {
        Node::Str(s) => format!("the string {}", short(&Value::String(s.clone()))),
        Node::Null => "nothing (null)".into(),
        other => other.kind().into(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}...", s.chars().take(57).collect::<String>()) } else { s }
}

fn plain_message(err: &jsonschema::ValidationError<'_>) -> String {
    err.masked().to_string()
}

fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let one = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "string" => "a string".to_owned(),
        "integer" => "an integer".to_owned(),
        "number" => "a number".to_owned(),
        "boolean" => "true or false".to_owned(),
        "null" => "null".to_owned(),
        other => other.to_owned(),
    };
    match kind {
        TypeKind::Single(t) => one(t),
        TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().filter(|t| t.to_string() != "null").map(|t| one(&t)).collect();
            if names.is_empty() { "null".into() } else { names.join(" or ") }
        }
    }
}

/// The property names the schema allows where an `additionalProperties` error was raised.
fn allowed_properties(schema: &Value, err: &jsonschema::ValidationError<'_>) -> Vec<String> {
    // The evaluation path follows `$ref`s; the keyword location inside the referenced
    // definition is what we can resolve in our own schema.
    let pointer = err.absolute_keyword_location().and_then(|u| u.fragment().map(|f| f.as_str().to_owned()));
    let pointer = pointer.unwrap_or_else(|| err.schema_path().as_str().to_owned());
    let parent = pointer.strip_suffix("/additionalProperties").unwrap_or(&pointer);
    let parent = percent_decode(parent);
    schema
        .pointer(&parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    s.replace("%24", "$")
}
