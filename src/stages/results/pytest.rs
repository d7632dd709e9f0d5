//! pytest's own output. Three shapes, mixed as the flags mix them:
//! - progress dots per file (`tests/test_x.py .F.s`): counts, without names;
//! - `-v` result lines (`tests/test_x.py::test_f[a b] PASSED [ 50%]`), where with `-s` the
//!   test's own output can sit between the id and the status;
//! - the short test summary (`PASSED tests/test_x.py::test_f[a b]`, `FAILED … - message`):
//!   every outcome with `-rA`, failures and errors by default.
//!
//! The short summary is the runner's last word: it settles any result line before it (which
//! the code under test can print), and what it names is subtracted from the progress counts.
//! The final line (`== 2 failed, 5 passed, 1 skipped in 0.1s ==`) is the summary to check.
//! Sections of tracebacks and captured output are skipped.

use super::{Counts, Lines, Outcome, Reading, Summary, bump, leading_number};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Progress and `-v` result lines.
    Progress,
    /// Tracebacks, captured output, warnings: the code under test's text.
    Other,
    ShortSummary,
}

pub(super) fn read(log: &[u8]) -> Reading {
    let mut r = Reading::default();
    let mut section = Section::Progress;
    let mut progress = Counts::default();
    let mut named = Counts::default();
    let mut pending: Option<String> = None;
    let mut lines = Lines::new(log);
    for line in lines.by_ref() {
        let line = line.as_ref();
        if let Some(title) = banner(line) {
            pending = None;
            if title.contains("test session starts") {
                section = Section::Progress;
            } else if title == "short test summary info" {
                section = Section::ShortSummary;
            } else if let Some(s) = final_line(title) {
                add_summary(&mut r, &s);
                section = Section::Other;
            } else if let Some(why) = title.strip_prefix("Interrupted: ") {
                r.fault(format!("pytest was interrupted: {why}"));
            } else {
                section = Section::Other;
            }
            continue;
        }
        if let Some(why) = line.strip_prefix("ERROR: ") {
            // pytest's own usage errors: an unknown test id, a missing file, a bad option.
            r.fault(format!("pytest: {why}"));
            continue;
        }
        match section {
            Section::Other => {}
            Section::ShortSummary => {
                if let Some(s) = final_line(line) {
                    // `-q`: the final line has no banner.
                    add_summary(&mut r, &s);
                    section = Section::Other;
                } else if let Some((outcome, rest)) = status_prefix(line) {
                    let (id, _) = node_id(rest);
                    if outcome == Outcome::Skipped || id.is_empty() {
                        // `SKIPPED [1] tests/x.py:15: reason`: a place, not an id.
                    } else if outcome == Outcome::Error && !id.contains("::") {
                        r.fault(format!("pytest could not collect {id}"));
                    } else {
                        if r.get(id).is_none() {
                            named.add(outcome, 1);
                        }
                        r.record(id, outcome, true);
                    }
                }
            }
            Section::Progress => {
                if let Some(s) = final_line(line) {
                    add_summary(&mut r, &s);
                    section = Section::Other;
                    continue;
                }
                let (id, rest) = node_id(line);
                if id.contains("::") {
                    match result_word(rest) {
                        Some(outcome) => {
                            if r.get(id).is_none() {
                                named.add(outcome, 1);
                            }
                            r.record(id, outcome, false);
                            pending = None;
                        }
                        None => pending = Some(id.to_owned()),
                    }
                } else if let Some(outcome) = result_word(line) {
                    // `-v -s`: the status after the test's own output, alone on a line.
                    if let Some(id) = pending.take() {
                        if r.get(&id).is_none() {
                            named.add(outcome, 1);
                        }
                        r.record(&id, outcome, false);
                    }
                } else if let Some(dots) = progress_line(line) {
                    for c in dots.chars() {
                        progress.add(progress_char(c), 1);
                    }
                }
            }
        }
    }
    r.long_lines = lines.long;
    if let Some(id) = pending {
        r.anomaly(format!("{id} started and has no result"));
    }
    // What the progress counted and no line named.
    let sub = |a: u64, b: u64| a.saturating_sub(b);
    r.unnamed = Counts {
        passed: sub(progress.passed, named.passed),
        failed: sub(progress.failed, named.failed),
        errors: sub(progress.errors, named.errors),
        skipped: sub(progress.skipped, named.skipped),
        xfailed: sub(progress.xfailed, named.xfailed),
        xpassed: sub(progress.xpassed, named.xpassed),
    };
    if r.summary.is_some_and(|s| s.total == Some(0)) && r.tests.is_empty() && r.faults.is_empty() {
        r.fault("pytest ran no tests");
    }
    r
}

fn add_summary(r: &mut Reading, s: &Summary) {
    r.summary.get_or_insert_with(Summary::default).add(s);
}

/// The title of a `==== title ====` (or `!!!! title !!!!`) banner.
fn banner(line: &str) -> Option<&str> {
    for c in ['=', '!'] {
        let inner = line.trim_start_matches(c);
        if inner.len() < line.len() && line.ends_with(c) {
            let title = inner.trim_end_matches(c).trim();
            if !title.is_empty() && line.len() - title.len() >= 4 {
                return Some(title);
            }
        }
    }
    None
}

/// pytest's final counts: `2 failed, 5 passed, 1 skipped, 3 deselected in 0.12s`,
/// `no tests ran in 0.01s`. Every category it can state is stated (zero when absent).
fn final_line(text: &str) -> Option<Summary> {
    let (counts, time) = text.rsplit_once(" in ")?;
    let time = time.split_whitespace().next()?;
    if !(time.ends_with('s') && time.trim_end_matches('s').chars().any(|c| c.is_ascii_digit())) {
        return None;
    }
    let mut s = Summary {
        total: Some(0),
        passed: Some(0),
        failed: Some(0),
        errors: Some(0),
        skipped: Some(0),
        xfailed: Some(0),
        xpassed: Some(0),
    };
    if counts.trim() == "no tests ran" {
        return Some(s);
    }
    for part in counts.split(", ") {
        let n = leading_number(part.trim())?;
        let word = part.trim().split_once(' ')?.1;
        let field = match word {
            "passed" => &mut s.passed,
            "failed" => &mut s.failed,
            "error" | "errors" => &mut s.errors,
            "skipped" => &mut s.skipped,
            "xfailed" => &mut s.xfailed,
            "xpassed" => &mut s.xpassed,
            "deselected" | "warning" | "warnings" | "rerun" | "subtests passed" | "subtests failed" => continue,
            _ => return None,
        };
        bump(field, n);
        bump(&mut s.total, n);
    }
    Some(s)
}

/// A short-summary line's status and the rest: `PASSED tests/x.py::t`.
fn status_prefix(line: &str) -> Option<(Outcome, &str)> {
    let (word, rest) = line.split_once(' ')?;
    Some((status(word)?, rest))
}

fn status(word: &str) -> Option<Outcome> {
    Some(match word {
        "PASSED" => Outcome::Passed,
        "FAILED" => Outcome::Failed,
        "ERROR" => Outcome::Error,
        "SKIPPED" => Outcome::Skipped,
        "XFAIL" => Outcome::Xfailed,
        "XPASS" => Outcome::Xpassed,
        _ => return None,
    })
}

/// `-v`'s status after an id: `PASSED`, `SKIPPED (reason)`, `XFAIL (reason)`, with or
/// without ` [ 50%]`; nothing else on the line.
fn result_word(rest: &str) -> Option<Outcome> {
    let rest = rest.trim();
    let rest = match rest.rfind(" [") {
        Some(i) if rest.ends_with("%]") => rest[..i].trim_end(),
        _ if rest.starts_with('[') && rest.ends_with("%]") => "",
        _ => rest,
    };
    let (word, more) = rest.split_once(' ').unwrap_or((rest, ""));
    let more = more.trim();
    let outcome = status(word)?;
    (more.is_empty() || (more.starts_with('(') && more.ends_with(')'))).then_some(outcome)
}

/// A node id at the start of `s` and what follows it: the id ends at the first space outside
/// brackets (`tests/x.py::test_f[a b] PASSED` → `tests/x.py::test_f[a b]`).
fn node_id(s: &str) -> (&str, &str) {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ' ' if depth <= 0 => return (&s[..i], &s[i + 1..]),
            _ => {}
        }
    }
    (s, "")
}

/// The result characters of a progress line: `tests/x.py .F.s [ 50%]`, or a continuation
/// line of characters only.
fn progress_line(line: &str) -> Option<&str> {
    let line = match line.rfind(" [") {
        Some(i) if line.ends_with("%]") => line[..i].trim_end(),
        _ => line,
    };
    let dots = match line.split_once(' ') {
        Some((file, dots)) if std::path::Path::new(file).extension().is_some_and(|e| e == "py") => dots.trim(),
        Some(_) => return None,
        None => line,
    };
    (!dots.is_empty() && dots.chars().all(|c| ".FEsxX".contains(c))).then_some(dots)
}

fn progress_char(c: char) -> Outcome {
    match c {
        'F' => Outcome::Failed,
        'E' => Outcome::Error,
        's' => Outcome::Skipped,
        'x' => Outcome::Xfailed,
        'X' => Outcome::Xpassed,
        _ => Outcome::Passed,
    }
}
