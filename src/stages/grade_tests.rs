//! `uses: grade.tests`, graded the way the SWE-bench harness grades: the tests named in
//! `fail_to_pass` must fail on the base revision and pass on the candidate, and (with
//! `pass_to_pass: true`) every test that passed on the base must still pass. Per-test results
//! come from the reader the stage's `format` names (see [`results`]); without one, from `JUnit`
//! XML when the command writes it (`$LIGHTSOUT_JUNIT`), else from the test runner's verbose
//! output (Python's unittest `-v`, pytest `-rA`).

use std::collections::BTreeMap;

use super::Verdict;
use super::results::{self, Format, Problem};

/// Test id → passed. Skipped tests are left out.
pub type Results = BTreeMap<String, bool>;

/// Why one run's results cannot be judged.
#[derive(Debug)]
pub enum Unjudged {
    /// The tests could not run (an environment error), or their output cannot be read for
    /// certain: an infrastructure fault, not the candidate's failure.
    Fault(String),
    /// The results contradict the command's exit status: not a pass.
    NotAPass(String),
}

impl Unjudged {
    pub fn reason(self) -> String {
        match self {
            Unjudged::Fault(r) | Unjudged::NotAPass(r) => r,
        }
    }
}

/// One run's results, read as `format` says and cross-checked with its exit status (see
/// [`results::check`]). Without a format: the `JUnit` report when the command wrote one, else
/// unittest's verbose output, else pytest's, as before formats existed; the exit status is
/// then checked only where the output has the runner's own summary.
pub fn read_results(format: Option<Format>, log: &[u8], junit: Option<&[u8]>, exit: i64) -> Result<Results, Unjudged> {
    let (used, reading) = match (format, junit) {
        (Some(f), _) => (f, results::read(f, log, junit)),
        (None, Some(xml)) => (Format::Junit, results::read(Format::Junit, log, Some(xml))),
        (None, None) => {
            let r = results::read(Format::Unittest, log, None);
            if r.tests.is_empty() && r.faults.is_empty() {
                (Format::Pytest, results::read(Format::Pytest, log, None))
            } else {
                (Format::Unittest, r)
            }
        }
    };
    let exit_checked = format.is_some() || reading.summary.is_some();
    match results::check(&reading, used, Some(exit), exit_checked) {
        Ok(()) if reading.unnamed.total() > 0 => Err(Unjudged::Fault(format!(
            "cannot tell the test results: the output counts {} tests without naming them (run pytest with `-rA` or `-v`)",
            reading.unnamed.total()
        ))),
        Ok(()) => Ok(reading.passed_by_id()),
        Err(Problem::Contradiction(why)) => Err(Unjudged::NotAPass(why)),
        Err(Problem::Infrastructure(why)) => Err(Unjudged::Fault(format!("the tests could not run: {why}"))),
        Err(Problem::CannotTell(why)) => Err(Unjudged::Fault(format!("cannot tell the test results: {why}"))),
    }
}

fn same_test(id: &str, key: &str) -> bool {
    results::ids::same_test(id, key)
}

/// Whether the test `id` names passed: every test it names (a parametrized family) must have;
/// `None` when it names none.
fn lookup(results: &Results, id: &str) -> Option<bool> {
    let found = results::ids::matching(results.keys().map(String::as_str), id);
    (!found.is_empty()).then(|| found.iter().all(|k| results.get(*k).copied().unwrap_or(false)))
}

/// The verdict from the base and candidate results.
pub fn judge(
    base: &Results,
    candidate: &Results,
    fail_to_pass: &[String],
    pass_to_pass: bool,
    candidate_exit: i64,
) -> Verdict {
    let mut reasons = Vec::new();
    let mut f2p = Vec::new();
    for id in fail_to_pass {
        let before = lookup(base, id);
        let after = lookup(candidate, id);
        f2p.push(serde_json::json!({"test": id, "base": before, "candidate": after}));
        if before == Some(true) {
            reasons
                .push(format!("FAIL_TO_PASS {id} already passes on the base revision: it does not reproduce the bug"));
        }
        match after {
            Some(true) => {}
            Some(false) => reasons.push(format!("FAIL_TO_PASS {id} still fails on the candidate")),
            None => reasons.push(format!("FAIL_TO_PASS {id} did not run on the candidate")),
        }
    }
    let mut broken = Vec::new();
    if pass_to_pass {
        for (id, passed) in base.iter().filter(|(_, p)| **p) {
            if fail_to_pass.iter().any(|f| same_test(f, id)) {
                continue;
            }
            match candidate.get(id) {
                Some(true) => {}
                Some(false) => {
                    broken.push(format!("PASS_TO_PASS {id} passed on the base revision and fails on the candidate"));
                }
                None => broken
                    .push(format!("PASS_TO_PASS {id} passed on the base revision and did not run on the candidate")),
            }
            let _ = passed;
        }
    }
    reasons.extend(broken);
    if fail_to_pass.is_empty() && !pass_to_pass && candidate_exit != 0 {
        reasons.push(format!("the test command exited {candidate_exit}"));
    }
    let pass = reasons.is_empty();
    if pass {
        // What the reviewer should know when it passed.
        for id in fail_to_pass {
            reasons.push(format!("FAIL_TO_PASS {id} fails on the base revision and passes on the candidate"));
        }
        if pass_to_pass {
            let kept = base.values().filter(|p| **p).count();
            reasons.push(format!("PASS_TO_PASS: all {kept} tests that passed on the base revision still pass"));
        }
    }
    Verdict {
        pass,
        reasons,
        details: serde_json::json!({
            "fail_to_pass": f2p,
            "base": {"passed": base.values().filter(|p| **p).count(), "failed": base.values().filter(|p| !**p).count()},
            "candidate": {"passed": candidate.values().filter(|p| **p).count(), "failed": candidate.values().filter(|p| !**p).count()},
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unittest_and_pytest_output() {
        let unittest = "test_even_length (tests.test_stats.MedianTest.test_even_length) ... FAIL\n\
                   test_odd (tests.test_stats.MedianTest.test_odd) ... ok\n";
        let r = read_results(Some(Format::Unittest), unittest.as_bytes(), None, 1).map_err(Unjudged::reason);
        let r = r.unwrap_or_default();
        assert_eq!(r.get("tests.test_stats.MedianTest.test_even_length"), Some(&false));
        assert_eq!(r.get("tests.test_stats.MedianTest.test_odd"), Some(&true));
        // pytest prints its short summary under this banner, and only there is it read.
        let pytest = "=== short test summary info ===\nPASSED tests/test_a.py::test_one\nFAILED tests/test_a.py::test_two - assert 1 == 2\n";
        let r = read_results(None, pytest.as_bytes(), None, 1).map_err(Unjudged::reason).unwrap_or_default();
        assert_eq!(r.get("tests/test_a.py::test_one"), Some(&true));
        assert_eq!(r.get("tests/test_a.py::test_two"), Some(&false));
    }

    #[test]
    fn junit_reports() {
        let xml = r#"<testsuites><testsuite><testcase classname="t.A" name="ok"/>
            <testcase classname="t.A" name="bad"><failure message="x"/></testcase>
            <testcase classname="t.A" name="skip"><skipped/></testcase></testsuite></testsuites>"#;
        let r = read_results(None, b"", Some(xml.as_bytes()), 0).map_err(Unjudged::reason).unwrap_or_default();
        assert_eq!(r.get("t.A.ok"), Some(&true));
        assert_eq!(r.get("t.A.bad"), Some(&false));
        assert!(!r.contains_key("t.A.skip"));
    }

    #[test]
    fn unreadable_results_are_faults_and_contradictions_are_not_a_pass() {
        let fault = read_results(Some(Format::Pytest), b"Segmentation fault\n", None, 139);
        assert!(matches!(fault, Err(Unjudged::Fault(ref why)) if why.starts_with("cannot tell")), "{fault:?}");
        let missing = read_results(Some(Format::Unittest), b"sh: python3: not found\n", None, 127);
        assert!(matches!(missing, Err(Unjudged::Fault(ref why)) if why.contains("not found")), "{missing:?}");
        let forged = read_results(Some(Format::Unittest), b"test_a (m.T.test_a) ... ok\n", None, 1);
        assert!(matches!(forged, Err(Unjudged::NotAPass(_))), "{forged:?}");
        let dots =
            read_results(Some(Format::Pytest), b"tests/test_a.py ..F\n== 1 failed, 2 passed in 0.1s ==\n", None, 1);
        assert!(matches!(dots, Err(Unjudged::Fault(ref why)) if why.contains("-rA")), "{dots:?}");
    }

    #[test]
    fn swe_bench_rules() {
        let base: Results = [("m.T.bug".to_owned(), false), ("m.T.other".to_owned(), true)].into();
        let good: Results = [("m.T.bug".to_owned(), true), ("m.T.other".to_owned(), true)].into();
        let broke: Results = [("m.T.bug".to_owned(), true), ("m.T.other".to_owned(), false)].into();
        let f2p = vec!["T.bug".to_owned()];
        assert!(judge(&base, &good, &f2p, true, 0).pass);
        let v = judge(&base, &broke, &f2p, true, 1);
        assert!(!v.pass && v.reasons[0].contains("PASS_TO_PASS m.T.other"), "{v:?}");
        let v = judge(&good, &good, &f2p, true, 0);
        assert!(!v.pass && v.reasons[0].contains("does not reproduce"), "{v:?}");
    }
}
