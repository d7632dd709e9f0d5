//! Result readers: what a test runner's output says about each test, read by a reader chosen
//! by its [`Format`] (never guessed from the text), with the runner's own summary counts, and
//! the cross-check ([`check`]) that decides whether the reading can be trusted.
//!
//! Pure functions over bytes: no I/O, no async. Every reader is linear in its input, keeps at
//! most [`MAX_TESTS`] tests (the rest are counted), reads at most [`MAX_LINE`] bytes of any line
//! (its head and its tail), strips ANSI colour codes and `\r`, and never panics.

mod check;
mod gotest;
pub mod ids;
mod junit;
mod libtest;
mod pytest;
mod tap;
mod unittest;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use check::{Problem, check};
pub use ids::find;

/// The tests kept from one reading; the rest are counted in [`Reading::dropped`].
pub const MAX_TESTS: usize = 500_000;
/// The bytes read of one line: its first and last half. A result marker is at a line's start
/// or its end; a longer line is output of the code under test.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest test id kept; a longer one is cut (and its outcome still counted).
pub const MAX_ID: usize = 4096;

pub use crate::plan::kind::TestFormat as Format;

/// What happened to one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// The test could not run to its assertion: an exception outside it, a fixture, a panic in
    /// setup (where the runner tells it from a failure).
    Error,
    Skipped,
    /// Failed, and marked as expected to fail.
    Xfailed,
    /// Passed, though marked as expected to fail.
    Xpassed,
}

impl Outcome {
    /// Whether the test counts as passing for a verdict. An expected failure is a failure (a
    /// marker must not turn a failing test into a pass), and an unexpected success is not a
    /// clean pass either.
    pub fn passed(self) -> bool {
        self == Outcome::Passed
    }

    /// Whether the test ran at all: a skipped test says nothing.
    pub fn ran(self) -> bool {
        self != Outcome::Skipped
    }

    /// For merging two reports of one test: the worse one wins.
    fn rank(self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::Skipped => 1,
            Outcome::Xpassed => 2,
            Outcome::Xfailed => 3,
            Outcome::Failed => 4,
            Outcome::Error => 5,
        }
    }

    #[must_use]
    pub fn worse(self, other: Outcome) -> Outcome {
        if other.rank() > self.rank() { other } else { self }
    }
}

/// One test as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// The id in the runner's native form: a pytest node id, `pkg.mod.Class.test_f`,
    /// `module::tests::name`, `example.com/pkg.TestName/sub`, `suite > name`, `classname.name`.
    pub id: String,
    pub outcome: Outcome,
}

/// Test counts, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub skipped: u64,
    pub xfailed: u64,
    pub xpassed: u64,
}

impl Counts {
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        let slot = match outcome {
            Outcome::Passed => &mut self.passed,
            Outcome::Failed => &mut self.failed,
            Outcome::Error => &mut self.errors,
            Outcome::Skipped => &mut self.skipped,
            Outcome::Xfailed => &mut self.xfailed,
            Outcome::Xpassed => &mut self.xpassed,
        };
        *slot = slot.saturating_add(n);
    }

    pub fn total(&self) -> u64 {
        [self.passed, self.failed, self.errors, self.skipped, self.xfailed, self.xpassed]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// The runner's own account of the run, summed over every summary it printed. A field is
/// `None` when the runner does not state it; a runner that folds two outcomes into one count
/// leaves the finer one `None` (the check folds them the same way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total: Option<u64>,
    pub passed: Option<u64>,
    pub failed: Option<u64>,
    pub errors: Option<u64>,
    pub skipped: Option<u64>,
    pub xfailed: Option<u64>,
    pub xpassed: Option<u64>,
}

impl Summary {
    /// Adds another summary of the same run (one per test binary, package or session).
    fn add(&mut self, other: &Summary) {
        for (field, n) in [
            (&mut self.total, other.total),
            (&mut self.passed, other.passed),
            (&mut self.failed, other.failed),
            (&mut self.errors, other.errors),
            (&mut self.skipped, other.skipped),
            (&mut self.xfailed, other.xfailed),
            (&mut self.xpassed, other.xpassed),
        ] {
            if let Some(n) = n {
                bump(field, n);
            }
        }
    }

    /// The field of node's count `key` (`# tests 7`, `<!-- pass 3 -->`), in TAP and `JUnit`.
    fn node_field(&mut self, key: &str) -> Option<&mut Option<u64>> {
        Some(match key {
            "tests" => &mut self.total,
            "pass" => &mut self.passed,
            "fail" => &mut self.failed,
            "cancelled" => &mut self.errors,
            "skipped" | "todo" => &mut self.skipped,
            _ => return None,
        })
    }
}

/// Adds `n` to a summary field.
fn bump(field: &mut Option<u64>, n: u64) {
    *field = Some(field.unwrap_or(0).saturating_add(n));
}

/// What one reader read from one run's output.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// Every test read, once each, in the order first seen.
    pub tests: Vec<Test>,
    /// Results the output counts but does not name (pytest's progress dots without `-rA`).
    pub unnamed: Counts,
    /// The runner's own summary, when the output has one.
    pub summary: Option<Summary>,
    /// Why the output cannot be read at all (a report that is not XML, say).
    pub unreadable: Option<String>,
    /// Signs that the tests could not run as asked: a collection or import error, a build
    /// failure, an unknown test id, no tests at all. Each is a reason, in the runner's words.
    pub faults: Vec<String>,
    /// What does not add up in the output itself: a test that started and has no result, two
    /// results for one test that the runner's own output does not settle.
    pub anomalies: Vec<String>,
    /// Results the runner's structured output corrected (a line printed by the code under
    /// test that looked like a result): kept for the record, never trusted.
    pub overridden: Vec<String>,
    /// Tests read beyond [`MAX_TESTS`]: counted, not kept.
    pub dropped: u64,
    /// Lines longer than [`MAX_LINE`], read by their head and tail only.
    pub long_lines: u64,
    index: std::collections::HashMap<String, usize>,
}

impl Reading {
    /// Records a result for `id`. A second result for the same id is merged (the worse wins)
    /// and is an anomaly when the two differ, unless `settles` (the runner's structured output
    /// speaking last), which overrides and notes it.
    fn record(&mut self, id: &str, outcome: Outcome, settles: bool) {
        let id = cut(id);
        if let Some(&i) = self.index.get(id.as_ref()) {
            let old = self.tests[i].outcome;
            if old == outcome {
                return;
            }
            if settles {
                self.tests[i].outcome = outcome;
                if self.overridden.len() < 100 {
                    self.overridden.push(format!("{id}: read {old:?}, then {outcome:?} from the runner"));
                }
            } else {
                self.tests[i].outcome = old.worse(outcome);
                if self.anomalies.len() < 100 {
                    self.anomalies.push(format!("{id} is reported both {old:?} and {outcome:?}"));
                }
            }
            return;
        }
        if self.tests.len() >= MAX_TESTS {
            self.dropped += 1;
            return;
        }
        self.index.insert(id.clone().into_owned(), self.tests.len());
        self.tests.push(Test { id: id.into_owned(), outcome });
    }

    fn get(&self, id: &str) -> Option<&Test> {
        self.index.get(id).map(|&i| &self.tests[i])
    }

    fn fault(&mut self, why: impl Into<String>) {
        let why = why.into();
        if self.faults.len() < 20 && !self.faults.contains(&why) {
            self.faults.push(why);
        }
    }

    fn anomaly(&mut self, why: impl Into<String>) {
        if self.anomalies.len() < 100 {
            self.anomalies.push(why.into());
        }
    }

    /// The tests read, counted by outcome (with the unnamed ones and the dropped ones, which
    /// are counted as passed only for the total: the check reports the drop itself).
    pub fn counts(&self) -> Counts {
        let mut c = self.unnamed;
        for t in &self.tests {
            c.add(t.outcome, 1);
        }
        c
    }

    /// Test id → passed, for the verdict: skipped tests are left out.
    pub fn passed_by_id(&self) -> std::collections::BTreeMap<String, bool> {
        self.tests.iter().filter(|t| t.outcome.ran()).map(|t| (t.id.clone(), t.outcome.passed())).collect()
    }
}

/// Reads one run's output. `log` is what the command printed (stdout and stderr together);
/// `report` the file it wrote, for [`Format::Junit`].
pub fn read(format: Format, log: &[u8], report: Option<&[u8]>) -> Reading {
    match format {
        Format::Pytest => pytest::read(log),
        Format::Unittest => unittest::read(log),
        Format::Libtest => libtest::read(log),
        Format::GoTestJson => gotest::read(log),
        Format::Tap => tap::read(log),
        Format::Junit => report.map_or_else(
            || {
                let mut r = Reading::default();
                r.fault("the test command wrote no JUnit report");
                r
            },
            junit::read,
        ),
    }
}

/// The lines of `bytes`: without their line end (`\n` or `\r\n`), ANSI escape sequences
/// removed, decoded as UTF-8 (invalid bytes replaced). A line over [`MAX_LINE`] bytes is read
/// by its head and tail, joined by ` … `, and counted in `long`.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    pub long: u64,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Lines<'a> {
        Lines { rest: bytes, long: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        if self.rest.is_empty() {
            return None;
        }
        let (mut line, rest) = match self.rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        while let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.len() > MAX_LINE {
            self.long += 1;
            let half = MAX_LINE / 2;
            let mut joined = strip_ansi(&line[..half]).into_owned();
            joined.extend_from_slice(" … ".as_bytes());
            joined.extend_from_slice(&strip_ansi(&line[line.len() - half..]));
            return Some(Cow::Owned(String::from_utf8_lossy(&joined).into_owned()));
        }
        Some(match strip_ansi(line) {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        })
    }
}

/// `bytes` without ANSI escape sequences: CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL` or
/// `ESC \`), charset and other two-byte escapes, and a stray `\r` inside a line (a progress
/// redraw).
fn strip_ansi(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.iter().any(|b| *b == 0x1b || *b == b'\r') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x1b => {
                i += 1;
                match bytes.get(i) {
                    Some(b'[') => {
                        i += 1;
                        while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                            i += 1;
                        }
                        i += 1;
                    }
                    Some(b']') => {
                        i += 1;
                        while i < bytes.len()
                            && bytes[i] != 0x07
                            && !(bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'\\'))
                        {
                            i += 1;
                        }
                        i += if bytes.get(i) == Some(&0x1b) { 2 } else { 1 };
                    }
                    Some(b'(' | b')' | b'#') => i += 2,
                    Some(_) => i += 1,
                    None => {}
                }
            }
            b'\r' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// `id`, cut to [`MAX_ID`] bytes at a character boundary.
fn cut(id: &str) -> Cow<'_, str> {
    if id.len() <= MAX_ID {
        return Cow::Borrowed(id);
    }
    let mut end = MAX_ID;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &id[..end]))
}

/// The number at the start of `s` (`"12 passed"` → 12).
fn leading_number(s: &str) -> Option<u64> {
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}
