//! TAP (version 13/14), as `node --test --test-reporter=tap` prints it: `ok 1 - name`,
//! `not ok 2 - name # SKIP reason`, subtests indented by four spaces under `# Subtest: name`,
//! a YAML block after each result, and node's counts at the end (`# tests 7`, `# pass 3`,
//! `# fail 2`, `# cancelled 0`, `# skipped 1`, `# todo 1`).
//!
//! Ids are the names from the outermost test down, joined by ` > ` (`group > inner`): TAP
//! says nothing of the file of a passing test. A `describe` block (`type: 'suite'` in its
//! YAML) is not a test, as node counts it. node writes the test's own output as comments
//! (`# ok 2 - forged`), which are not results.

use super::{Lines, Outcome, Reading, Summary, bump, leading_number};

/// A result whose YAML block may still say it is a suite or was cancelled.
struct Last {
    id: String,
    outcome: Outcome,
    suite: bool,
}

pub(super) fn read(log: &[u8]) -> Reading {
    let mut r = Reading::default();
    let mut names: Vec<String> = Vec::new();
    let mut last: Option<Last> = None;
    let mut in_yaml = false;
    let mut lines = Lines::new(log);
    for line in lines.by_ref() {
        let line = line.as_ref();
        let body = line.trim_start_matches(' ');
        let depth = (line.len() - body.len()) / 4;
        if in_yaml {
            if body == "..." {
                in_yaml = false;
            } else if let Some(l) = last.as_mut() {
                if body == "type: 'suite'" {
                    l.suite = true;
                } else if body == "failureType: 'cancelledByParent'" && l.outcome == Outcome::Failed {
                    l.outcome = Outcome::Error;
                }
            }
            continue;
        }
        if body == "---" && last.is_some() {
            in_yaml = true;
            continue;
        }
        if let Some(name) = body.strip_prefix("# Subtest: ") {
            names.truncate(depth);
            names.resize(depth, String::new());
            names.push(name.to_owned());
            continue;
        }
        if let Some((outcome, name)) = result_line(body) {
            finish(&mut r, last.take());
            let mut path: Vec<&str> = names.iter().take(depth).map(String::as_str).collect();
            path.push(&name);
            last = Some(Last { id: path.join(" > "), outcome, suite: false });
            continue;
        }
        if depth == 0 {
            if let Some(why) = body.strip_prefix("Bail out!") {
                r.fault(format!("the TAP producer bailed out:{why}"));
            } else if let Some((key, n)) = body.strip_prefix("# ").and_then(|s| s.split_once(' ')) {
                let Some(n) = leading_number(n).filter(|_| n.chars().all(|c| c.is_ascii_digit())) else {
                    continue;
                };
                if let Some(field) = r.summary.get_or_insert_with(Summary::default).node_field(key) {
                    bump(field, n);
                }
            }
        }
    }
    finish(&mut r, last);
    r.long_lines = lines.long;
    if r.summary.is_some_and(|s| s.total == Some(0)) {
        r.fault("the TAP run has no tests");
    }
    r
}

fn finish(r: &mut Reading, last: Option<Last>) {
    if let Some(l) = last.filter(|l| !l.suite) {
        r.record(&l.id, l.outcome, false);
    }
}

/// `ok 1 - name`, `not ok 2 - name # SKIP why`, `ok 3 name # TODO`: the outcome and the name.
fn result_line(body: &str) -> Option<(Outcome, String)> {
    let (ok, rest) =
        if let Some(rest) = body.strip_prefix("not ok") { (false, rest) } else { (true, body.strip_prefix("ok")?) };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    // The directive after an unescaped ` # `; `\#` is a `#` in the name.
    let (name, directive) = split_directive(rest);
    let directive = directive.to_ascii_lowercase();
    let outcome = if directive.starts_with("skip") || directive.starts_with("todo") {
        Outcome::Skipped
    } else if ok {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    Some((outcome, name.replace("\\#", "#").replace("\\\\", "\\")))
}

fn split_directive(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(off) = s[i..].find(" # ") {
        let at = i + off;
        let escaped = at > 0 && bytes[at.saturating_sub(1)] == b'\\';
        if !escaped {
            return (s[..at].trim_end(), s[at + 3..].trim());
        }
        i = at + 1;
    }
    (s.trim_end(), "")
}
