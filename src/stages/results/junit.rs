//! `JUnit` XML, from any writer: `testsuites` / `testsuite` (nested or not) / `testcase` with
//! `failure`, `error` or `skipped` children, as pytest, nextest, Maven Surefire, Gradle,
//! jest-junit, vitest and mocha-junit-reporter write it; Surefire's reruns (`flakyFailure`:
//! passed when re-run; `rerunFailure`: failed again) and pytest's expected failures
//! (`skipped type="pytest.xfail"`) too. Ids are `classname.name` (the name alone without a
//! class), as each writer fills them in.
//!
//! Node's reporter (`--test-reporter=junit`) is its own shape: tests directly under
//! `testsuites`, a `describe` block as a nested `testsuite`, `classname="test"` on every test,
//! and its counts in comments (`<!-- tests 7 -->`). Its ids are `suite > name`, as in its TAP.
//!
//! The summary is the root's `tests`/`failures`/`errors`/`skipped` attributes, else the sum
//! of its top-level suites' (when each has them); node's comments for node's shape.

use super::{Outcome, Reading, Summary, bump, leading_number};

pub(super) fn read(xml: &[u8]) -> Reading {
    let mut r = Reading::default();
    let text = String::from_utf8_lossy(xml);
    let doc = match roxmltree::Document::parse(&text) {
        Ok(doc) => doc,
        Err(e) => {
            r.unreadable = Some(format!("the JUnit report is not XML: {e}"));
            return r;
        }
    };
    let root = doc.root_element();
    if !root.has_tag_name("testsuites") && !root.has_tag_name("testsuite") {
        r.unreadable =
            Some(format!("the JUnit report's root is <{}>, not <testsuites> or <testsuite>", root.tag_name().name()));
        return r;
    }
    let node_shape = root.has_tag_name("testsuites")
        && (root.children().any(|c| c.has_tag_name("testcase"))
            || root.children().any(|c| c.is_comment() && c.text().is_some_and(|t| t.trim().starts_with("tests "))));
    for case in root.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").unwrap_or_default();
        let class = case.attribute("classname").unwrap_or_default();
        let id = if node_shape {
            let mut path: Vec<&str> = case
                .ancestors()
                .skip(1)
                .take_while(|a| *a != root)
                .filter(|a| a.has_tag_name("testsuite"))
                .filter_map(|a| a.attribute("name"))
                .collect();
            path.reverse();
            path.push(name);
            path.join(" > ")
        } else if class.is_empty() {
            name.to_owned()
        } else {
            format!("{class}.{name}")
        };
        let outcome = outcome(case);
        if outcome == Outcome::Error
            && case.children().any(|c| {
                c.has_tag_name("error") && c.attribute("message").is_some_and(|m| m.starts_with("collection failure"))
            })
        {
            r.fault(format!("the tests could not be collected: {id}"));
            continue;
        }
        r.record(&id, outcome, false);
    }
    r.summary = if node_shape { node_counts(root) } else { attribute_counts(root) };
    if r.summary.is_some_and(|s| s.total == Some(0)) && r.tests.is_empty() {
        r.fault("the JUnit report has no tests");
    }
    r
}

fn outcome(case: roxmltree::Node<'_, '_>) -> Outcome {
    let mut outcome = Outcome::Passed;
    for child in case.children().filter(roxmltree::Node::is_element) {
        let this = match child.tag_name().name() {
            "failure" | "rerunFailure" => Outcome::Failed,
            "error" | "rerunError" => Outcome::Error,
            "skipped" if child.attribute("type") == Some("pytest.xfail") => Outcome::Xfailed,
            "skipped" => Outcome::Skipped,
            // `flakyFailure`, `flakyError`: failed, then passed when re-run.
            _ => continue,
        };
        outcome = outcome.worse(this);
    }
    outcome
}

/// The counts of an element's attributes, if it has `tests`.
fn counts_of(node: roxmltree::Node<'_, '_>) -> Option<Summary> {
    let n = |k: &str| node.attribute(k).and_then(|v| leading_number(v.trim()));
    let total = n("tests")?;
    let failed = n("failures");
    let errors = n("errors");
    let skipped = n("skipped");
    Some(Summary { total: Some(total), failed, errors, skipped, ..Summary::default() })
}

fn attribute_counts(root: roxmltree::Node<'_, '_>) -> Option<Summary> {
    if let Some(s) = counts_of(root) {
        return Some(s);
    }
    let suites: Vec<_> = root.children().filter(|c| c.has_tag_name("testsuite")).collect();
    if suites.is_empty() || root.children().any(|c| c.has_tag_name("testcase")) {
        return None;
    }
    let mut sum = Summary::default();
    for suite in suites {
        sum.add(&counts_of(suite)?);
    }
    Some(sum)
}

/// node's `<!-- tests 7 -->`, `<!-- pass 3 -->`, … comments.
fn node_counts(root: roxmltree::Node<'_, '_>) -> Option<Summary> {
    let mut sum: Option<Summary> = None;
    for c in root.children().filter(roxmltree::Node::is_comment) {
        let Some((key, n)) = c.text().map(str::trim).and_then(|t| t.split_once(' ')) else {
            continue;
        };
        let Some(n) = n.parse::<u64>().ok() else {
            continue;
        };
        if let Some(field) = sum.get_or_insert_with(Summary::default).node_field(key) {
            bump(field, n);
        }
    }
    sum
}
