//! `uses: grade.tests`, graded the way the SWE-bench harness grades: the tests named in
//! `fail_to_pass` must fail on the base revision and pass on the candidate, and (with
//! `pass_to_pass: true`) every test that passed on the base must still pass. Per-test results
//! come from `JUnit` XML when the command writes it (`$LIGHTSOUT_JUNIT`), else from the test
//! runner's verbose output (Python's unittest `-v`, pytest `-rA`).

use std::collections::BTreeMap;

use super::Verdict;

/// Test id → passed. Skipped tests are left out.
pub type Results = BTreeMap<String, bool>;

/// Results from a `JUnit` XML report: `classname.name` → passed.
pub fn parse_junit(xml: &str) -> Result<Results, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("the JUnit report is not XML: {e}"))?;
    let mut out = Results::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").unwrap_or_default();
        let class = case.attribute("classname").unwrap_or_default();
        let id = if class.is_empty() { name.to_owned() } else { format!("{class}.{name}") };
        let mut children = case.children().filter(roxmltree::Node::is_element);
        if children.clone().any(|c| c.has_tag_name("skipped")) {
            continue;
        }
        let failed = children.any(|c| c.has_tag_name("failure") || c.has_tag_name("error"));
        out.insert(id, !failed);
    }
    Ok(out)
}

/// Results from a test runner's verbose output.
pub fn parse_log(log: &str) -> Results {
    let mut out = Results::new();
    for line in log.lines() {
        let line = line.trim_end();
        // unittest -v (3.11+): `test_x (pkg.mod.Class.test_x) ... ok`
        if let Some((head, status)) = line.rsplit_once(" ... ") {
            let id = head.rsplit_once(" (").and_then(|(_, rest)| rest.strip_suffix(')'));
            if let Some(id) = id.filter(|i| !i.contains(' ')) {
                match status {
                    "ok" | "expected failure" => {
                        out.insert(id.to_owned(), true);
                    }
                    "FAIL" | "ERROR" | "unexpected success" => {
                        out.insert(id.to_owned(), false);
                    }
                    _ => {}
                }
                continue;
            }
        }
        // pytest -rA short summary: `PASSED tests/x.py::test_y`, `FAILED tests/x.py::test_y - msg`
        for (prefix, passed) in [("PASSED ", true), ("FAILED ", false), ("ERROR ", false), ("XFAIL ", true)] {
            if let Some(rest) = line.strip_prefix(prefix) {
                let id = rest.split(" - ").next().unwrap_or(rest).trim();
                if !id.is_empty() && !id.contains(' ') {
                    out.insert(id.to_owned(), passed);
                }
            }
        }
    }
    out
}

/// Whether `id` (as the pipeline names it) is `key` (as the runner reported it): equal, or one
/// a dotted or `::` suffix of the other.
fn same_test(id: &str, key: &str) -> bool {
    id == key
        || key.ends_with(&format!(".{id}"))
        || key.ends_with(&format!("::{id}"))
        || id.ends_with(&format!(".{key}"))
        || id.ends_with(&format!("::{key}"))
}

fn lookup(results: &Results, id: &str) -> Option<bool> {
    results.iter().find(|(k, _)| same_test(id, k)).map(|(_, v)| *v)
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
        let log = "test_even_length (tests.test_stats.MedianTest.test_even_length) ... FAIL\n\
                   test_odd (tests.test_stats.MedianTest.test_odd) ... ok\n\
                   PASSED tests/test_a.py::test_one\nFAILED tests/test_a.py::test_two - assert 1 == 2\n";
        let r = parse_log(log);
        assert_eq!(r.get("tests.test_stats.MedianTest.test_even_length"), Some(&false));
        assert_eq!(r.get("tests.test_stats.MedianTest.test_odd"), Some(&true));
        assert_eq!(r.get("tests/test_a.py::test_one"), Some(&true));
        assert_eq!(r.get("tests/test_a.py::test_two"), Some(&false));
    }

    #[test]
    fn junit_reports() -> Result<(), String> {
        let xml = r#"<testsuites><testsuite><testcase classname="t.A" name="ok"/>
            <testcase classname="t.A" name="bad"><failure message="x"/></testcase>
            <testcase classname="t.A" name="skip"><skipped/></testcase></testsuite></testsuites>"#;
        let r = parse_junit(xml)?;
        assert_eq!(r.get("t.A.ok"), Some(&true));
        assert_eq!(r.get("t.A.bad"), Some(&false));
        assert!(!r.contains_key("t.A.skip"));
        Ok(())
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
