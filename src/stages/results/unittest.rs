//! `python -m unittest -v`. A result is `test_f (pkg.mod.Class.test_f) ... ok` (Python 3.11+;
//! `test_f (pkg.mod.Class)` before), but the status is not always on that line: a test with a
//! docstring prints its first line before ` ... `, and a warning (or the test's own output)
//! lands between ` ... ` and the status, which then stands alone on a later line. Failures and
//! errors are listed again in blocks at the end (`FAIL: test_f (pkg.mod.Class.test_f)`): those
//! settle the result lines, which the code under test can print too. `Ran N tests` and
//! `OK (skipped=1)` / `FAILED (failures=1, errors=2)` are the summary.

use super::{Lines, Outcome, Reading, Summary, leading_number};

pub(super) fn read(log: &[u8]) -> Reading {
    let mut r = Reading::default();
    // The test whose status is still to come.
    let mut pending: Option<String> = None;
    // Inside a `FAIL:`/`ERROR:` block of a test that could not be loaded: its name and the
    // last exception line seen.
    let mut load_error: Option<(String, Option<String>)> = None;
    let mut ran: Option<u64> = None;
    // Tests that could not be loaded, by their result line: their `ERROR:` block says why.
    let mut unexplained: Vec<String> = Vec::new();
    let mut lines = Lines::new(log);
    for line in lines.by_ref() {
        let line = line.as_ref();
        if let Some((name, error)) = &mut load_error {
            if line.starts_with("=====") || line.starts_with("Ran ") {
                let why = error.take().map(|e| format!(": {e}")).unwrap_or_default();
                r.fault(format!("unittest could not load {name}{why}"));
                load_error = None;
            } else if is_exception_line(line) {
                *error = Some(line.to_owned());
                continue;
            } else {
                continue;
            }
        }
        if let Some((outcome, rest)) = block_header(line) {
            pending = None;
            if let Some(id) = header(rest).map(|(id, _)| id) {
                if let Some(name) = failed_load(&id) {
                    load_error = Some((name, None));
                } else {
                    r.record(&id, outcome, true);
                }
            }
            continue;
        }
        if let Some(n) = line.strip_prefix("Ran ").and_then(|s| s.strip_suffix('s')).and_then(|s| {
            let n = leading_number(s)?;
            s.contains(" test").then_some(n)
        }) {
            pending = None;
            ran = Some(n);
            continue;
        }
        if let Some(n) = ran
            && let Some(s) = summary_line(line, n)
        {
            r.summary.get_or_insert_with(Summary::default).add(&s);
            ran = None;
            continue;
        }
        if let Some((id, rest)) = header(line) {
            if let Some(p) = pending.take() {
                r.anomaly(format!("{p} started and has no result"));
            }
            if let Some(name) = failed_load(&id) {
                unexplained.push(name);
                continue;
            }
            match rest.split_once(" ... ").map(|(_, s)| status(s)) {
                Some(Some(outcome)) => r.record(&id, outcome, false),
                _ => pending = Some(id),
            }
            continue;
        }
        if let Some(id) = pending.as_ref() {
            // The docstring line (`First line ... ok`), or the status alone after a warning.
            let status = line.rsplit_once(" ... ").map_or_else(|| status(line), |(_, s)| status(s));
            if let Some(outcome) = status {
                let id = id.clone();
                r.record(&id, outcome, false);
                pending = None;
            }
        }
    }
    if let Some((name, error)) = load_error {
        let why = error.map(|e| format!(": {e}")).unwrap_or_default();
        r.fault(format!("unittest could not load {name}{why}"));
    }
    if let Some(p) = pending {
        r.anomaly(format!("{p} started and has no result"));
    }
    for name in unexplained {
        if !r.faults.iter().any(|f| f.starts_with(&format!("unittest could not load {name}"))) {
            r.fault(format!("unittest could not load {name}"));
        }
    }
    r.long_lines = lines.long;
    if r.summary.is_some_and(|s| s.total == Some(0)) && r.faults.is_empty() {
        r.fault("unittest ran no tests");
    }
    r
}

/// `test_f (pkg.mod.Class.test_f)` or `test_f (pkg.mod.Class)` at the start of a line: the id
/// (`pkg.mod.Class.test_f`) and the rest of the line.
fn header(line: &str) -> Option<(String, &str)> {
    let (name, rest) = line.split_once(" (")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let (dotted, rest) = rest.split_once(')')?;
    if dotted.is_empty() || !dotted.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    let id = if dotted == name || dotted.ends_with(&format!(".{name}")) {
        dotted.to_owned()
    } else {
        format!("{dotted}.{name}")
    };
    Some((id, rest))
}

/// A block at the end: `FAIL: test_f (…)`, `ERROR: …`, `UNEXPECTED SUCCESS: …`.
fn block_header(line: &str) -> Option<(Outcome, &str)> {
    for (prefix, outcome) in
        [("FAIL: ", Outcome::Failed), ("ERROR: ", Outcome::Error), ("UNEXPECTED SUCCESS: ", Outcome::Xpassed)]
    {
        if let Some(rest) = line.strip_prefix(prefix) {
            return Some((outcome, rest));
        }
    }
    None
}

/// The name of a test unittest could not load (`unittest.loader._FailedTest.tests.test_x`).
fn failed_load(id: &str) -> Option<String> {
    id.split_once("unittest.loader._FailedTest.").map(|(_, name)| name.to_owned())
}

fn is_exception_line(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(head, _)| {
        !head.is_empty()
            && (head.ends_with("Error") || head.ends_with("Exception"))
            && head.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    })
}

/// A status after ` ... `, the whole of what is left.
fn status(s: &str) -> Option<Outcome> {
    let s = s.trim();
    Some(match s {
        "ok" => Outcome::Passed,
        "FAIL" => Outcome::Failed,
        "ERROR" => Outcome::Error,
        "expected failure" => Outcome::Xfailed,
        "unexpected success" => Outcome::Xpassed,
        _ if s == "skipped" || s.starts_with("skipped '") || s.starts_with("skipped \"") => Outcome::Skipped,
        _ => return None,
    })
}

/// `OK`, `OK (skipped=1)`, `FAILED (failures=1, errors=2)`, `NO TESTS RAN`, after `Ran n tests`.
fn summary_line(line: &str, ran: u64) -> Option<Summary> {
    let line = line.trim();
    let detail = if line == "OK" || line == "FAILED" || line == "NO TESTS RAN" {
        ""
    } else {
        let (word, rest) = line.split_once(" (")?;
        if word != "OK" && word != "FAILED" {
            return None;
        }
        rest.strip_suffix(')')?
    };
    let mut s = Summary {
        total: Some(ran),
        failed: Some(0),
        errors: Some(0),
        skipped: Some(0),
        xfailed: Some(0),
        xpassed: Some(0),
        passed: None,
    };
    for part in detail.split(", ").filter(|p| !p.is_empty()) {
        let (key, n) = part.split_once('=')?;
        let n: u64 = n.parse().ok()?;
        let field = match key {
            "failures" => &mut s.failed,
            "errors" => &mut s.errors,
            "skipped" => &mut s.skipped,
            "expected failures" => &mut s.xfailed,
            "unexpected successes" => &mut s.xpassed,
            _ => return None,
        };
        *field = Some(n);
    }
    let others: u64 = [s.failed, s.errors, s.skipped, s.xfailed, s.xpassed].iter().map(|v| v.unwrap_or(0)).sum();
    s.passed = Some(ran.saturating_sub(others));
    Some(s)
}
