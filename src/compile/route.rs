//! Routing a ticket to a category, and filling the pipeline's inputs from the ticket.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::Factory;
use crate::diag::{Diagnostic, Diagnostics, Pos, code, did_you_mean};
use crate::spec::PipelineFile;
use crate::spec::pipeline::InputType;
use crate::ticket::Ticket;

/// The chosen category and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub category: String,
    pub reason: String,
}

/// Picks the category: `--category`, then the ticket's own `category`, then the first category
/// (in factory.yaml's order) whose match rule takes the ticket.
pub fn route(factory: &Factory, ticket: &Ticket, forced: Option<&str>) -> Result<Route, Diagnostics> {
    let known = |name: &str, how: &str| -> Result<Route, Diagnostics> {
        if factory.file.categories.contains_key(name) {
            Ok(Route { category: name.to_owned(), reason: how.to_owned() })
        } else {
            Err(Diagnostic::new(&factory.path, Pos::default(), format!("there is no category `{name}` ({how})"))
                .code(code::CATEGORY_UNKNOWN)
                .maybe_hint(did_you_mean(name, factory.category_names()).or_else(|| {
                    Some(format!("categories are: {}", factory.category_names().collect::<Vec<_>>().join(", ")))
                }))
                .into())
        }
    };
    if let Some(name) = forced {
        return known(name, "chosen with --category");
    }
    if let Some(name) = &ticket.category {
        return known(name, "named by the ticket's `category`");
    }
    for (name, cat) in &factory.file.categories {
        let Some(m) = &cat.matcher else { continue };
        if let Some(l) = m.labels.iter().find(|l| ticket.labels.iter().any(|t| t.eq_ignore_ascii_case(&l.value))) {
            return Ok(Route {
                category: name.value.clone(),
                reason: format!("label `{}` matches categories.{}.match.labels", l.value, name.value),
            });
        }
        let title = ticket.title.to_lowercase();
        if let Some(t) = m.title.iter().find(|t| title.contains(&t.value.to_lowercase())) {
            return Ok(Route {
                category: name.value.clone(),
                reason: format!("title contains `{}` (categories.{}.match.title)", t.value, name.value),
            });
        }
    }
    Err(Diagnostic::new(
        &factory.path,
        Pos::default(),
        format!("ticket `{}` matches no category (labels: [{}])", ticket.id, ticket.labels.join(", ")),
    )
    .code(code::ROUTE_NO_MATCH)
    .hint("pass --category, give the ticket a label a category matches, or add `category:` to the ticket")
    .into())
}

/// The pipeline's inputs from the ticket's fields (or their defaults), each checked for presence
/// and type. Errors point at the input's declaration.
pub fn fill_inputs(
    path: &Path,
    pipeline: &PipelineFile,
    ticket: &Ticket,
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let mut values = BTreeMap::new();
    let mut errors = Diagnostics::default();
    for (name, spec) in &pipeline.inputs {
        let given = ticket.fields.get(&name.value).cloned().or_else(|| spec.default.as_ref().map(|d| d.value.clone()));
        let required = spec.required.as_ref().is_none_or(|r| r.value);
        let Some(value) = given else {
            if required {
                errors.push(
                    Diagnostic::new(path, name.at, format!("ticket `{}` gives no value for input `{}`", ticket.id, name.value)).code(code::INPUT_MISSING)
                        .hint(format!(
                            "add `{}:` to the ticket's front matter (or a `### {}` section to the issue), or give the input a `default`",
                            name.value, name.value
                        )),
                );
            }
            continue;
        };
        let ty = spec.ty.as_ref().map_or(InputType::String, |t| t.value);
        match coerce(ty, value) {
            Some(v) => {
                values.insert(name.value.clone(), v);
            }
            None => errors.push(
                Diagnostic::new(
                    path,
                    spec.ty.as_ref().map_or(name.at, |t| t.at),
                    format!("ticket `{}` gives input `{}` a value that is not {}", ticket.id, name.value, ty.name()),
                )
                .code(code::INPUT_TYPE),
            ),
        }
    }
    errors.into_result(values)
}

/// Tickets are text: a number written in an issue form arrives as a string, so strings are
/// parsed into the declared type.
fn coerce(ty: InputType, v: Value) -> Option<Value> {
    match (ty, v) {
        (InputType::String, Value::String(s)) => Some(Value::String(s)),
        (InputType::String, v @ (Value::Number(_) | Value::Bool(_))) => Some(Value::String(v.to_string())),
        (InputType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        (InputType::Integer, Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        (InputType::Number, Value::Number(n)) => Some(Value::Number(n)),
        (InputType::Number, Value::String(s)) => {
            s.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
        }
        (InputType::Boolean, Value::Bool(b)) => Some(Value::Bool(b)),
        (InputType::Boolean, Value::String(s)) => match s.trim() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        (InputType::List, Value::Array(a)) => Some(Value::Array(a)),
        (InputType::List, Value::String(s)) => Some(Value::Array(
            s.lines()
                .map(|l| l.trim().trim_start_matches("- "))
                .filter(|l| !l.is_empty())
                .map(|l| Value::String(l.into()))
                .collect(),
        )),
        _ => None,
    }
}
