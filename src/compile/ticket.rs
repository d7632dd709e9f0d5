//! Reading a ticket: a Markdown file with YAML front matter, or a GitHub `issues` webhook event.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics, Pos, code};
use crate::spec::{self, Node};
use crate::ticket::Ticket;

/// Front-matter keys with a meaning of their own; every other key becomes a field.
const KNOWN_KEYS: &[&str] = &["id", "title", "labels", "url", "author", "category"];

impl Ticket {
    /// Loads a ticket: `.json` files as GitHub `issues` webhook events, anything else as Markdown.
    pub fn load(path: &Path) -> Result<Ticket, Diagnostics> {
        let text = spec::read_text(path)?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            Ticket::from_github_event(path, &text)
        } else {
            Ticket::from_markdown(path, &text)
        }
    }

    /// A Markdown ticket: optional `---` front matter, then the body. Without a `title` key the
    /// first `# ` heading is the title; without an `id` the file name is.
    pub fn from_markdown(path: &Path, text: &str) -> Result<Ticket, Diagnostics> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (front, body, body_line) = split_front_matter(text);
        let mut t = Ticket {
            id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            title: String::new(),
            body: body.to_owned(),
            labels: Vec::new(),
            url: None,
            author: None,
            category: None,
            fields: BTreeMap::new(),
        };
        let mut errors = Diagnostics::default();
        if let Some(front) = front {
            // Front matter starts on line 2 of the file.
            let root = spec::parse_tree(path, front).map_err(|ds| shift(ds, 1))?;
            let Node::Map(entries) = &root.value else {
                return Err(Diagnostic::new(
                    path,
                    Pos::new(2, 1),
                    "the front matter must be a mapping of keys to values",
                )
                .code(code::TICKET_FRONT_MATTER)
                .hint("write `key: value` lines between the `---` lines")
                .into());
            };
            for (key, value) in entries {
                let at = Pos::new(value.at.line + 1, value.at.column);
                let scalar = || scalar_text(&value.value);
                match key.value.as_str() {
                    "id" => match scalar() {
                        Some(s) if !s.is_empty() => t.id = s,
                        _ => errors.push(
                            Diagnostic::new(path, at, "`id` must be a non-empty string or number")
                                .code(code::TICKET_ID),
                        ),
                    },
                    "title" => match scalar() {
                        Some(s) => t.title = s,
                        None => {
                            errors.push(Diagnostic::new(path, at, "`title` must be a string").code(code::TICKET_TITLE));
                        }
                    },
                    "url" => t.url = scalar(),
                    "author" => t.author = scalar(),
                    "category" => t.category = scalar(),
                    "labels" => match &value.value {
                        Node::Seq(items) => t.labels = items.iter().filter_map(|i| scalar_text(&i.value)).collect(),
                        _ => errors.push(
                            Diagnostic::new(path, at, "`labels` must be a list")
                                .code(code::TICKET_LABELS)
                                .hint("write `labels: [bug, backend]`"),
                        ),
                    },
                    other => {
                        debug_assert!(!KNOWN_KEYS.contains(&other));
                        t.fields.insert(other.to_owned(), value.value.to_json());
                    }
                }
            }
        }
        if t.title.is_empty()
            && let Some(h) = t.body.lines().find_map(|l| l.strip_prefix("# "))
        {
            h.trim().clone_into(&mut t.title);
        }
        if t.title.is_empty() {
            errors.push(
                Diagnostic::new(path, Pos::new(body_line, 1), "the ticket has no title")
                    .code(code::TICKET_NO_TITLE)
                    .hint("add `title:` to the front matter or a `# ` heading"),
            );
        }
        errors.into_result(t)
    }

    /// A GitHub `issues` webhook event (the payload GitHub posts, or `$GITHUB_EVENT_PATH` in
    /// Actions). Issue-form sections (`### Name` then the answer) become fields.
    pub fn from_github_event(path: &Path, text: &str) -> Result<Ticket, Diagnostics> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            let pos = Pos::new(u32::try_from(e.line()).unwrap_or(0), u32::try_from(e.column()).unwrap_or(0));
            Diagnostics::from(Diagnostic::new(path, pos, format!("invalid JSON: {e}")).code(code::TICKET_JSON))
        })?;
        let issue = v.get("issue").ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::new(path,
                    Pos::START,
                    "not a GitHub `issues` event: there is no `issue` object",
                ).code(code::TICKET_NOT_ISSUE_EVENT)
                .hint(
                    "pass the webhook payload of an `issues` event, such as $GITHUB_EVENT_PATH in an `issues` workflow",
                ),
            )
        })?;
        let number = issue.get("number").and_then(Value::as_u64).ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::new(path, Pos::START, "the event's `issue.number` is missing or not a number")
                    .code(code::TICKET_ISSUE_NUMBER),
            )
        })?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let body = s(issue.get("body")).unwrap_or_default();
        Ok(Ticket {
            id: number.to_string(),
            title: s(issue.get("title")).unwrap_or_default(),
            fields: issue_form_fields(&body),
            body,
            labels: issue
                .get("labels")
                .and_then(Value::as_array)
                .map(|ls| ls.iter().filter_map(|l| s(l.get("name"))).collect())
                .unwrap_or_default(),
            url: s(issue.get("html_url")),
            author: s(issue.get("user").and_then(|u| u.get("login"))),
            category: None,
        })
    }
}

/// `(front matter, body, line where the body starts)`.
fn split_front_matter(text: &str) -> (Option<&str>, &str, u32) {
    let Some(rest) = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n")) else {
        return (None, text, 1);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            let front = &rest[..offset];
            let body = &rest[offset + line.len()..];
            let lines = u32::try_from(front.lines().count()).unwrap_or(u32::MAX);
            return (Some(front), body, lines.saturating_add(3));
        }
        offset += line.len();
    }
    (None, text, 1)
}

fn shift(ds: Diagnostics, lines: u32) -> Diagnostics {
    let mut out = Diagnostics::default();
    for mut d in ds {
        if d.pos.line > 0 {
            d.pos.line += lines;
        }
        out.push(d);
    }
    out
}

fn scalar_text(n: &Node) -> Option<String> {
    match n {
        Node::Str(s) => Some(s.clone()),
        Node::Int(i) => Some(i.to_string()),
        Node::UInt(u) => Some(u.to_string()),
        Node::Float(f) => Some(f.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// GitHub issue forms render each answer as `### Label`, a blank line and the text; an empty
/// answer is `_No response_`. Labels become `snake_case` field names.
fn issue_form_fields(body: &str) -> BTreeMap<String, Value> {
    let mut fields = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    let flush = |cur: Option<(String, Vec<&str>)>, fields: &mut BTreeMap<String, Value>| {
        if let Some((name, lines)) = cur {
            let text = lines.join("\n").trim().to_owned();
            if !name.is_empty() && text != "_No response_" {
                fields.insert(name, Value::String(text));
            }
        }
    };
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            flush(current.take(), &mut fields);
            let name: String = h
                .trim()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
                .collect::<String>()
                .split('_')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            current = Some((name, Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    flush(current, &mut fields);
    fields
}

#[cfg(test)]
#[expect(clippy::panic, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn markdown_front_matter_and_fields() -> Result<(), Diagnostics> {
        let text = "---\nid: BUG-7\nlabels: [bug]\nfailing_test: tests/test_x.py::test_y\n---\n# Parser drops the last item\n\nSteps...\n";
        let t = Ticket::from_markdown(Path::new("t.md"), text)?;
        assert_eq!(t.id, "BUG-7");
        assert_eq!(t.title, "Parser drops the last item");
        assert_eq!(t.labels, vec!["bug"]);
        assert_eq!(t.fields.get("failing_test"), Some(&Value::String("tests/test_x.py::test_y".into())));
        assert!(t.body.starts_with("# Parser"));
        Ok(())
    }

    #[test]
    fn front_matter_errors_point_into_the_file() {
        let text = "---\nid: 1\nlabels: bug\n---\n# t\n";
        let Err(ds) = Ticket::from_markdown(Path::new("t.md"), text) else { panic!("accepted") };
        let d = ds.iter().next().map(|d| (d.pos.line, d.message.clone()));
        assert_eq!(d, Some((3, "`labels` must be a list".into())));
    }

    #[test]
    fn issue_forms_become_fields() {
        let f = issue_form_fields("### Failing test\n\ntests/a.py::t\n\n### Notes\n\n_No response_\n");
        assert_eq!(f.get("failing_test"), Some(&Value::String("tests/a.py::t".into())));
        assert!(!f.contains_key("notes"));
    }
}
