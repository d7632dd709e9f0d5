//! The cross-check on a reading: the tests read must add up to the runner's own summary, the
//! exit status must agree with the results, and output that says the tests could not run is an
//! infrastructure fault, not a result.

use super::{Counts, Format, Reading, Summary};

/// Why a reading cannot be used as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The tests could not run as asked (command not found, collection or import error, build
    /// failure, unknown test id, no tests at all): the environment's fault, not the change's.
    Infrastructure(String),
    /// The output cannot be read for certain: what was read does not add up to what the runner
    /// says, or it holds no results at all.
    CannotTell(String),
    /// The exit status contradicts the results read: exit 0 with failures, or a non-zero exit
    /// with every test passed and nothing in the output to explain it.
    Contradiction(String),
}

impl Problem {
    pub fn reason(&self) -> &str {
        match self {
            Problem::Infrastructure(r) | Problem::CannotTell(r) | Problem::Contradiction(r) => r,
        }
    }
}

/// Checks `reading` of a run of `format` that exited `exit` (`None`: unknown). `exit_checked`:
/// whether the exit status is the runner's own, so that it must agree with the results (a
/// command that only writes a report, say, exits 0 whatever the report holds).
pub fn check(reading: &Reading, format: Format, exit: Option<i64>, exit_checked: bool) -> Result<(), Problem> {
    if let Some(code @ (126 | 127)) = exit {
        let what = if code == 127 { "not found" } else { "not executable" };
        return Err(Problem::Infrastructure(format!("the test command exited {code}: a command was {what}")));
    }
    if let Some(why) = &reading.unreadable {
        return Err(Problem::CannotTell(why.clone()));
    }
    if let Some(why) = reading.faults.first() {
        return Err(Problem::Infrastructure(why.clone()));
    }
    if exit_checked
        && format == Format::Pytest
        && let Some(code @ 2..=5) = exit
    {
        let what = ["interrupted", "an internal error", "a usage error", "no tests collected"]
            [usize::try_from(code - 2).unwrap_or(0)];
        return Err(Problem::Infrastructure(format!("pytest exited {code}: {what}")));
    }
    let read = reading.counts();
    if read.total() == 0 && reading.dropped == 0 {
        return Err(Problem::CannotTell(format!(
            "no test results in the output (read as {}): {}",
            format.name(),
            hint(format)
        )));
    }
    if reading.dropped > 0 {
        return Err(Problem::CannotTell(format!(
            "more than {} tests ({} more were not kept): too many to judge",
            super::MAX_TESTS,
            reading.dropped
        )));
    }
    if let Some(why) = reading.anomalies.first() {
        let more = reading.anomalies.len() - 1;
        let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        return Err(Problem::CannotTell(format!("the output does not add up: {why}{more}")));
    }
    if let Some(why) = reading.summary.as_ref().and_then(|summary| mismatch(summary, &read)) {
        return Err(Problem::CannotTell(format!("the tests read do not match the runner's summary: {why}")));
    }
    if !exit_checked {
        return Ok(());
    }
    let bad = read.failed + read.errors;
    match exit {
        Some(0) if bad > 0 => Err(Problem::Contradiction(format!(
            "the test command exited 0, but {bad} test{} failed",
            if bad == 1 { "" } else { "s" }
        ))),
        Some(code) if code != 0 && bad == 0 && !explains_failure(format, &read, code) => {
            Err(Problem::Contradiction(format!("the test command exited {code}, but every test read passed")))
        }
        _ => Ok(()),
    }
}

/// Whether a non-zero exit with no failing test read is the runner's own doing: pytest fails a
/// run on an unexpected pass only under `xfail_strict`, which shows as a failure already;
/// unittest fails on an unexpected success.
fn explains_failure(format: Format, read: &Counts, _code: i64) -> bool {
    matches!(format, Format::Unittest | Format::Pytest) && read.xpassed > 0
}

/// What the summary says that the tests read do not, if anything. A field the runner does not
/// state is folded into the one it does: an unstated `xfailed` into `skipped` (`JUnit` writes
/// an expected failure as skipped), an unstated `errors` into `failed`, an unstated `xpassed`
/// into `passed`.
fn mismatch(summary: &Summary, read: &Counts) -> Option<String> {
    let mut read = *read;
    if summary.xfailed.is_none() {
        read.skipped += std::mem::take(&mut read.xfailed);
    }
    if summary.errors.is_none() {
        read.failed += std::mem::take(&mut read.errors);
    }
    if summary.xpassed.is_none() {
        read.passed += std::mem::take(&mut read.xpassed);
    }
    let fields = [
        ("tests", summary.total, read.total()),
        ("passed", summary.passed, read.passed),
        ("failed", summary.failed, read.failed),
        ("errors", summary.errors, read.errors),
        ("skipped", summary.skipped, read.skipped),
        ("expected failures", summary.xfailed, read.xfailed),
        ("unexpected passes", summary.xpassed, read.xpassed),
    ];
    let wrong: Vec<String> = fields
        .iter()
        .filter_map(|(name, said, got)| {
            said.filter(|s| s != got).map(|s| format!("{name}: the runner says {s}, {got} read"))
        })
        .collect();
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// How to get results out of a runner that printed none we could read.
fn hint(format: Format) -> &'static str {
    match format {
        Format::Pytest => "run pytest with `-rA` (or `-v`)",
        Format::Unittest => "run unittest with `-v`",
        Format::Libtest => "run `cargo test` without `--quiet` or a custom format",
        Format::GoTestJson => "run `go test -json`",
        Format::Tap => "run `node --test --test-reporter=tap`",
        Format::Junit => "the report holds no test case",
    }
}
