//! Templates: parsing and checking them at compile time, rendering them safely at run time.
//!
//! Two rules make script injection impossible by construction. Only the user's committed files
//! are ever parsed as templates: ticket text arrives as a value, never as template source. And in
//! commands every rendered value is shell-quoted by the engine itself, whatever filters the
//! template applies (`|safe` included).

use std::collections::BTreeSet;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// How a template's output is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A shell command: values are quoted as single shell words.
    Shell,
    /// Text (prompts, messages, branch names): values are inserted as they are.
    Text,
}

/// Most template instructions one render may run, against runaway loops in a user's template.
const FUEL: u64 = 1_000_000;

/// Template roots a pipeline may read.
pub const ROOTS: &[&str] = &["ticket", "inputs", "stages", "attempt", "feedback"];
/// Fields of `ticket`.
pub const TICKET_FIELDS: &[&str] = &["id", "title", "body", "labels", "url", "author", "fields", "category"];
/// Fields of `stages.<id>`.
pub const STAGE_FIELDS: &[&str] = &["outputs", "status", "verdict"];
/// Global functions minijinja provides, which `undeclared_variables` reports as variables.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "loop", "self"];

fn environment(mode: Mode) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    match mode {
        Mode::Shell => {
            env.set_auto_escape_callback(|_| AutoEscape::Custom("shell".into()));
            env.set_formatter(|out, _state, value| {
                out.write_str(&shell_words(value))?;
                Ok(())
            });
        }
        Mode::Text => env.set_auto_escape_callback(|_| AutoEscape::None),
    }
    env
}

/// A value as shell words: a list becomes one quoted word per item, anything else one word.
fn shell_words(value: &Value) -> String {
    // A command line cannot carry a NUL byte (argv strings end at one), so NULs are dropped;
    // with them gone `try_quote` cannot fail, and the fallback is never used.
    let quote = |s: &str| {
        let s = s.replace('\0', "");
        shlex::try_quote(&s).map_or_else(|_| "''".to_owned(), std::borrow::Cow::into_owned)
    };
    if value.kind() == minijinja::value::ValueKind::Seq
        && let Ok(items) = value.try_iter()
    {
        return items.map(|v| quote(&plain(&v))).collect::<Vec<_>>().join(" ");
    }
    if value.is_none() || value.is_undefined() {
        return "''".into();
    }
    quote(&plain(value))
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A template that failed to parse: the message and the 1-based line inside the template.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub line: usize,
}

/// Parses a template and returns the variables it reads, as dotted paths
/// (`stages.build.outputs.version`).
pub fn variables(source: &str) -> Result<BTreeSet<String>, SyntaxError> {
    let env = environment(Mode::Text);
    let tmpl = env.template_from_str(source).map_err(|e| SyntaxError {
        message: e.detail().map_or_else(|| e.kind().to_string(), str::to_owned),
        line: e.line().unwrap_or(1),
    })?;
    Ok(tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !GLOBALS.contains(&v.split('.').next().unwrap_or_default()))
        .collect())
}

/// Renders a committed template with a context. Ticket text in the context stays data.
pub fn render(mode: Mode, source: &str, ctx: &serde_json::Value) -> Result<String, minijinja::Error> {
    let env = environment(mode);
    let tmpl = env.template_from_str(source)?;
    tmpl.render(Value::from(minijinja::value::Serde(ctx)))
}

/// The first `{{ ... }}` in a shell command template that sits inside quotes, with the quote
/// character. lightsout quotes every value itself; inside the user's own double quotes that
/// quoting would be undone (`"$(...)"` runs), so such templates are refused at compile time.
pub fn quoted_placeholder(source: &str) -> Option<(char, String)> {
    let chars: Vec<char> = source.chars().collect();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' && chars.get(i + 1) == Some(&'{') {
            let end = (i + 2..chars.len().saturating_sub(1)).find(|&j| chars[j] == '}' && chars[j + 1] == '}');
            let stop = end.map_or(chars.len(), |e| e + 2);
            if let Some(q) = quote {
                return Some((q, chars[i..stop].iter().collect()));
            }
            i = stop;
            continue;
        }
        match (quote, c) {
            (None | Some('"'), '\\') => i += 1,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Evaluates a stage's `if:` (an expression, with or without `{{ }}`) to true or false.
pub fn eval_condition(expr: &str, ctx: &serde_json::Value) -> Result<bool, minijinja::Error> {
    let expr = expr.trim();
    let inner = expr.strip_prefix("{{").and_then(|e| e.strip_suffix("}}")).map_or(expr, str::trim);
    let env = environment(Mode::Text);
    let compiled = env.compile_expression(inner)?;
    Ok(compiled.eval(Value::from(minijinja::value::Serde(ctx)))?.is_true())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hostile() -> serde_json::Value {
        json!({
            "ticket": { "title": "x'; rm -rf / #$(id)`id`{{ 7*7 }}\n\u{0}\u{1b}[31m", "labels": ["a b", "c;d"] },
            "inputs": { "t": "tests/test_x.py::test_y" }
        })
    }

    #[test]
    fn values_in_commands_are_single_shell_words() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(Mode::Shell, "echo {{ ticket.title }}", &hostile())?;
        let words = shlex::split(&out).ok_or("unparseable")?;
        assert_eq!(words.len(), 2, "{out}");
        let title = hostile()["ticket"]["title"].as_str().unwrap_or_default().replace('\0', "");
        assert_eq!(words[1], title);
        Ok(())
    }

    #[test]
    fn safe_filter_does_not_bypass_quoting() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(Mode::Shell, "echo {{ ticket.title|safe }}", &hostile())?;
        assert_eq!(shlex::split(&out).map(|w| w.len()), Some(2), "{out}");
        Ok(())
    }

    #[test]
    fn lists_become_one_word_per_item() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(Mode::Shell, "t {{ ticket.labels }}", &hostile())?;
        assert_eq!(shlex::split(&out), Some(vec!["t".into(), "a b".into(), "c;d".into()]));
        Ok(())
    }

    #[test]
    fn ticket_text_is_never_evaluated() -> Result<(), Box<dyn std::error::Error>> {
        let out = render(Mode::Text, "{{ ticket.title }}", &hostile())?;
        assert!(out.contains("{{ 7*7 }}"), "{out}");
        assert!(!out.contains("49"));
        Ok(())
    }

    #[test]
    fn placeholders_inside_quotes_are_found() {
        assert_eq!(quoted_placeholder("echo {{ a }} 'x' \"y\""), None);
        assert_eq!(quoted_placeholder("echo \"hi {{ t }}\"").map(|q| q.0), Some('"'));
        assert_eq!(quoted_placeholder("echo 'hi {{ t }}'").map(|q| q.0), Some('\''));
        assert_eq!(quoted_placeholder("echo \\\" {{ t }}"), None);
    }

    #[test]
    fn conditions() -> Result<(), Box<dyn std::error::Error>> {
        let ctx = json!({"inputs": {"n": 3}, "stages": {"a": {"outputs": {"ok": "yes"}}}});
        assert!(eval_condition("inputs.n > 2", &ctx)?);
        assert!(!eval_condition("{{ stages.a.outputs.ok == 'no' }}", &ctx)?);
        Ok(())
    }

    #[test]
    fn undefined_is_an_error() {
        assert!(render(Mode::Text, "{{ nope.x }}", &hostile()).is_err());
    }

    #[test]
    fn reports_nested_variables() {
        let vars = variables("{{ stages.build.outputs.v }} {% for x in range(3) %}{{ x }}{% endfor %}").ok();
        assert_eq!(vars, Some(["stages.build.outputs.v".to_owned()].into()));
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let r = render(
            Mode::Text,
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            &hostile(),
        );
        assert!(r.is_err());
    }
}
