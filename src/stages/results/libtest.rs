//! The default human output of Rust's libtest, as `cargo test` prints it: one block per test
//! binary (`Running unittests src/lib.rs (…)`, `Running tests/more.rs (…)`, `Doc-tests toy`),
//! each with `running N tests`, `test module::tests::name ... ok` lines, a `failures:` list and
//! `test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out`.
//!
//! With `--nocapture` the test's output can sit between ` ... ` and the status, which then
//! stands alone on a later line. The `failures:` name list is the runner's last word and
//! settles any result line (which the code under test can print). Ids are the test's path in
//! its crate (`tests::adds`, `src/lib.rs - add (line 3)` for a doc test); a compile error is
//! an infrastructure fault.

use super::{Lines, Outcome, Reading, Summary, bump, leading_number};

pub(super) fn read(log: &[u8]) -> Reading {
    let mut r = Reading::default();
    let mut pending: Option<String> = None;
    // In the `failures:` name list (the second `failures:` of a block, or the only one with
    // `--nocapture`): indented names.
    let mut in_failures = false;
    // In a test's captured output (`---- tests::x stdout ----`), shown after the run.
    let mut captured = false;
    let mut lines = Lines::new(log);
    for line in lines.by_ref() {
        let line = line.as_ref();
        if line == "failures:" {
            in_failures = true;
            captured = false;
            pending = None;
            continue;
        }
        if line.starts_with("running ") || line.starts_with("test result: ") {
            captured = false;
        }
        if line.starts_with("---- ") && line.ends_with(" ----") {
            captured = true;
            in_failures = false;
            continue;
        }
        if captured {
            continue;
        }
        if in_failures {
            if let Some(name) = line.strip_prefix("    ") {
                if !name.starts_with(' ') && !name.is_empty() {
                    r.record(name.trim_end(), Outcome::Failed, true);
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            in_failures = false;
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            pending = None;
            if let Some(s) = result_line(rest) {
                r.summary.get_or_insert_with(Summary::default).add(&s);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, status)) = rest.split_once(" ... ") {
                if let Some(p) = pending.take() {
                    r.anomaly(format!("{p} started and has no result"));
                }
                let name = name.strip_suffix(" - should panic").unwrap_or(name);
                match result(status) {
                    Some(outcome) => r.record(name, outcome, false),
                    None => pending = Some(name.to_owned()),
                }
                continue;
            }
            if let Some(name) = rest.strip_suffix(" ...") {
                // `--nocapture`, and the test printed a line end first.
                pending = Some(name.strip_suffix(" - should panic").unwrap_or(name).to_owned());
                continue;
            }
        }
        if let Some(outcome) = result(line)
            && let Some(name) = pending.take()
        {
            r.record(&name, outcome, false);
            continue;
        }
        if line.starts_with("error: could not compile")
            || line.starts_with("error[E")
            || line.starts_with("error: failed to")
            || line.starts_with("error: no test target")
            || line.starts_with("error: package ID specification")
        {
            r.fault(format!("cargo could not build the tests: {}", line.trim()));
        }
    }
    if let Some(p) = pending {
        r.anomaly(format!("{p} started and has no result"));
    }
    r.long_lines = lines.long;
    if r.summary.is_some_and(|s| s.total == Some(0)) && r.faults.is_empty() {
        r.fault("cargo test ran no tests (a filter that matches none?)");
    }
    r
}

/// A status after ` ... `: `ok`, `FAILED`, `ignored`, `ignored, reason`, `bench`.
fn result(s: &str) -> Option<Outcome> {
    let s = s.trim();
    Some(match s {
        "ok" => Outcome::Passed,
        "FAILED" => Outcome::Failed,
        _ if s == "ignored" || s.starts_with("ignored, ") => Outcome::Skipped,
        _ => return None,
    })
}

/// `ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.11s`.
fn result_line(rest: &str) -> Option<Summary> {
    let (_, counts) = rest.split_once(". ")?;
    let mut s = Summary { total: Some(0), ..Summary::default() };
    for part in counts.split("; ") {
        let Some(n) = leading_number(part) else {
            continue;
        };
        let field = match part.split_once(' ').map_or("", |(_, w)| w) {
            "passed" => &mut s.passed,
            "failed" => &mut s.failed,
            "ignored" => &mut s.skipped,
            _ => continue,
        };
        bump(field, n);
        bump(&mut s.total, n);
    }
    Some(s)
}
