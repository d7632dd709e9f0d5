//! `go test -json`: one JSON event a line (`run`, `pass`, `fail`, `skip`, `output`, and since
//! Go 1.24 `build-output`/`build-fail`), per package and test; subtests are `TestName/sub`.
//! Ids are `example.com/pkg.TestName/sub`.
//!
//! Only the events' actions count, never their output. Before Go 1.20, test2json also turned a
//! `--- PASS: TestX` line printed by the code under test into a `pass` event: when one test
//! has two results, the worse one stands (a forged failure only fails its own author). A
//! package that fails to build is not in the events at all before Go 1.24: the plain
//! `FAIL pkg [build failed]` line says it, and is an infrastructure fault, as is a package
//! that failed with no failing test (`TestMain`, `init`, a setup error).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Lines, Outcome, Reading};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    action: String,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    import_path: Option<String>,
    #[serde(default)]
    test: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

pub(super) fn read(log: &[u8]) -> Reading {
    let mut r = Reading::default();
    // Tests started and not ended, and each package's failed tests and own result.
    let mut running: BTreeSet<(String, String)> = BTreeSet::new();
    let mut failed_in: BTreeMap<String, u64> = BTreeMap::new();
    let mut package_failed: BTreeSet<String> = BTreeSet::new();
    let mut no_tests_to_run = false;
    let mut lines = Lines::new(log);
    for line in lines.by_ref() {
        let line = line.as_ref();
        let Some(ev) = line.starts_with('{').then(|| serde_json::from_str::<Event>(line).ok()).flatten() else {
            // Not an event: the go command's own words (a build failure before Go 1.24).
            note_plain(&mut r, line);
            continue;
        };
        let pkg = ev.package.or(ev.import_path).unwrap_or_default();
        match (ev.action.as_str(), ev.test) {
            ("run", Some(test)) => {
                running.insert((pkg, test));
            }
            (action @ ("pass" | "fail" | "skip"), Some(test)) => {
                let outcome = match action {
                    "pass" => Outcome::Passed,
                    "fail" => Outcome::Failed,
                    _ => Outcome::Skipped,
                };
                if outcome == Outcome::Failed {
                    *failed_in.entry(pkg.clone()).or_default() += 1;
                }
                let id = format!("{pkg}.{test}");
                running.remove(&(pkg, test));
                record_worst(&mut r, &id, outcome);
            }
            ("fail", None) => {
                package_failed.insert(pkg);
            }
            ("build-fail", _) => r.fault(format!("go: {pkg}: build failed")),
            ("output" | "build-output", _) => {
                let out = ev.output.unwrap_or_default();
                if out.contains("[no tests to run]") {
                    no_tests_to_run = true;
                }
                if ev.action == "output" && (out.contains("[build failed]") || out.contains("[setup failed]")) {
                    note_plain(&mut r, out.trim_end());
                }
            }
            _ => {}
        }
    }
    r.long_lines = lines.long;
    // A test the binary never ended: it crashed or timed out while the test ran.
    for (pkg, test) in running {
        *failed_in.entry(pkg.clone()).or_default() += 1;
        record_worst(&mut r, &format!("{pkg}.{test}"), Outcome::Error);
    }
    for pkg in package_failed {
        if failed_in.get(&pkg).copied().unwrap_or(0) == 0 {
            r.fault(format!("go: package {pkg} failed with no failing test (a build, setup, init or TestMain error)"));
        }
    }
    if r.tests.is_empty() && no_tests_to_run {
        r.fault("go test ran no tests (no test matches -run)");
    }
    r
}

/// A test's result; a second one for the same test leaves the worse of the two.
fn record_worst(r: &mut Reading, id: &str, outcome: Outcome) {
    match r.get(id).map(|t| t.outcome) {
        Some(old) if old != outcome => r.record(id, old.worse(outcome), true),
        _ => r.record(id, outcome, false),
    }
}

/// `FAIL<tab>example.com/pkg [build failed]`, from the go command.
fn note_plain(r: &mut Reading, line: &str) {
    if let Some(rest) = line.strip_prefix("FAIL\t").or_else(|| line.strip_prefix("FAIL ")) {
        for what in ["[build failed]", "[setup failed]"] {
            if let Some(pkg) = rest.strip_suffix(what) {
                r.fault(format!("go: {}: {}", pkg.trim(), what.trim_matches(['[', ']'])));
            }
        }
    }
}
