//! The readers on real runners' output (`tests/fixtures/results/`, made by
//! `scripts/results-fixtures` from toy projects of ours), and on hostile input.

use std::fmt::Write as _;

use super::*;

/// A fixture's bytes and the exit status the runner had.
macro_rules! fixture {
    ($name:literal, $ext:literal) => {
        (
            &include_bytes!(concat!("../../../tests/fixtures/results/", $name, ".", $ext))[..],
            include_str!(concat!("../../../tests/fixtures/results/", $name, ".exit")).trim().parse::<i64>().ok(),
        )
    };
    ($name:literal) => {
        fixture!($name, "log")
    };
}

/// The outcome of the test with exactly this id.
fn outcome(r: &Reading, id: &str) -> Option<Outcome> {
    r.get(id).map(|t| t.outcome)
}

/// The ids read, with their outcomes, sorted.
fn all(r: &Reading) -> Vec<(String, Outcome)> {
    let mut v: Vec<_> = r.tests.iter().map(|t| (t.id.clone(), t.outcome)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The reading of a fixture, which must pass the cross-check.
fn checked(format: Format, (bytes, exit): (&[u8], Option<i64>)) -> Reading {
    let r = if format == Format::Junit { read(format, b"", Some(bytes)) } else { read(format, bytes, None) };
    assert_eq!(check(&r, format, exit, true), Ok(()), "{}", format.name());
    r
}

/// The reason of the infrastructure fault `check` must find.
fn infrastructure(r: &Reading, format: Format, exit: Option<i64>) -> String {
    let got = check(r, format, exit, true);
    assert!(matches!(got, Err(Problem::Infrastructure(_))), "{got:?}");
    got.err().map(|p| p.reason().to_owned()).unwrap_or_default()
}

fn counts(passed: u64, failed: u64, errors: u64, skipped: u64, xfailed: u64, xpassed: u64) -> Counts {
    Counts { passed, failed, errors, skipped, xfailed, xpassed }
}

use Outcome::{Error as E, Failed as F, Passed as P, Skipped as S, Xfailed as XF, Xpassed as XP};

const PYTEST_ALL: &[(&str, Outcome)] = &[
    ("tests/test_calc.py::TestGroup::test_method", P),
    ("tests/test_calc.py::test_adds", P),
    ("tests/test_calc.py::test_fails", F),
    ("tests/test_calc.py::test_fixture_error", E),
    ("tests/test_calc.py::test_params[1.5 - 2]", P),
    ("tests/test_calc.py::test_params[\\xe9]", P),
    ("tests/test_calc.py::test_params[a b]", P),
    ("tests/test_calc.py::test_params[x[1]]", F),
    ("tests/test_calc.py::test_skipped", S),
    ("tests/test_calc.py::test_xfail", XF),
    ("tests/test_calc.py::test_xpass", XP),
];

fn expect(list: &[(&str, Outcome)]) -> Vec<(String, Outcome)> {
    list.iter().map(|(id, o)| ((*id).to_owned(), *o)).collect()
}

#[test]
fn pytest_with_ra_names_every_test_but_the_skipped() {
    for (log, exit) in [fixture!("pytest-ra"), fixture!("pytest-color")] {
        let r = read(Format::Pytest, log, None);
        let named: Vec<_> = PYTEST_ALL.iter().copied().filter(|(_, o)| *o != S).collect();
        assert_eq!(all(&r), expect(&named));
        assert_eq!(r.unnamed, counts(0, 0, 0, 1, 0, 0));
        assert_eq!(r.counts(), counts(5, 2, 1, 1, 1, 1));
        assert_eq!(check(&r, Format::Pytest, exit, true), Ok(()));
    }
}

#[test]
fn pytest_verbose_names_every_test() {
    let r = checked(Format::Pytest, fixture!("pytest-v"));
    assert_eq!(all(&r), expect(PYTEST_ALL));
    assert_eq!(r.unnamed, Counts::default());
}

#[test]
fn pytest_default_output_names_only_failures_and_counts_the_rest() {
    let r = checked(Format::Pytest, fixture!("pytest-default"));
    assert_eq!(
        all(&r),
        expect(&[
            ("tests/test_calc.py::test_fails", F),
            ("tests/test_calc.py::test_fixture_error", E),
            ("tests/test_calc.py::test_params[x[1]]", F),
        ])
    );
    assert_eq!(r.unnamed, counts(5, 0, 0, 1, 1, 1));
    assert!(find(&r, "tests/test_calc.py::test_adds").is_empty(), "a passing test is not named here");
}

#[test]
fn pytest_lines_printed_by_the_code_under_test_are_settled_by_the_summary() {
    // `-v -s`: the test printed `tests/test_calc.py::test_fails PASSED` before failing.
    let r = checked(Format::Pytest, fixture!("pytest-v-s-ra"));
    assert_eq!(outcome(&r, "tests/test_calc.py::test_fails"), Some(F));
    assert_eq!(all(&r), expect(PYTEST_ALL));
    assert!(r.overridden.iter().any(|o| o.contains("test_fails")), "{:?}", r.overridden);
}

#[test]
fn pytest_junit_report() {
    let r = checked(Format::Junit, fixture!("pytest-junit", "xml"));
    assert_eq!(outcome(&r, "tests.test_calc.test_params[a b]"), Some(P));
    assert_eq!(outcome(&r, "tests.test_calc.test_params[x[1]]"), Some(F));
    assert_eq!(outcome(&r, "tests.test_calc.test_xfail"), Some(XF));
    assert_eq!(outcome(&r, "tests.test_calc.test_skipped"), Some(S));
    assert_eq!(outcome(&r, "tests.test_calc.test_fixture_error"), Some(E));
    assert_eq!(outcome(&r, "tests.test_calc.TestGroup.test_method"), Some(P));
    assert_eq!(r.tests.len(), 11);
    assert_eq!(r.summary.and_then(|s| s.total), Some(11));
    // Node ids as tickets write them find the JUnit names.
    for (asked, found) in [
        ("tests/test_calc.py::test_params[a b]", "tests.test_calc.test_params[a b]"),
        ("tests/test_calc.py::TestGroup::test_method", "tests.test_calc.TestGroup.test_method"),
        ("test_calc.py::test_params[1.5 - 2]", "tests.test_calc.test_params[1.5 - 2]"),
    ] {
        let ids: Vec<&str> = find(&r, asked).iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [found], "{asked}");
    }
    // A parametrized test by its function's name: every parametrization.
    assert_eq!(find(&r, "tests/test_calc.py::test_params").len(), 4);
    assert!(find(&r, "tests/test_calc.py::test_nope").is_empty());
}

const UNITTEST_ALL: &[(&str, Outcome)] = &[
    ("tests.test_stats.StatsTest.test_docstring", F),
    ("tests.test_stats.StatsTest.test_error", E),
    ("tests.test_stats.StatsTest.test_expected_failure", XF),
    ("tests.test_stats.StatsTest.test_forges", P),
    ("tests.test_stats.StatsTest.test_ok", P),
    ("tests.test_stats.StatsTest.test_skipped", S),
    ("tests.test_stats.StatsTest.test_unexpected_success", XP),
    ("tests.test_stats.StatsTest.test_unicode_ünï", P),
    ("tests.test_stats.StatsTest.test_warns", P),
];

#[test]
fn unittest_verbose_with_docstrings_warnings_and_forged_lines() {
    let r = checked(Format::Unittest, fixture!("unittest-v"));
    assert_eq!(all(&r), expect(UNITTEST_ALL));
    assert_eq!(r.summary.and_then(|s| s.total), Some(9));
    // The same with Windows line ends.
    let crlf = String::from_utf8_lossy(fixture!("unittest-v").0).replace('\n', "\r\n");
    let r = read(Format::Unittest, crlf.as_bytes(), None);
    assert_eq!(all(&r), expect(UNITTEST_ALL));
    // Every form of a unittest id.
    for asked in [
        "tests.test_stats.StatsTest.test_docstring",
        "test_docstring (tests.test_stats.StatsTest)",
        "test_docstring (tests.test_stats.StatsTest.test_docstring)",
        "StatsTest.test_docstring",
    ] {
        let ids: Vec<&str> = find(&r, asked).iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["tests.test_stats.StatsTest.test_docstring"], "{asked}");
    }
}

#[test]
fn unittest_before_python_3_11() {
    let log = b"test_a (pkg.mod.T) ... ok\ntest_b (pkg.mod.T)\nDocstring. ... FAIL\n\n\
        ======================================================================\n\
        FAIL: test_b (pkg.mod.T)\nDocstring.\n---------\nTraceback\n\n-------\nRan 2 tests in 0.001s\n\nFAILED (failures=1)\n";
    let r = read(Format::Unittest, log, None);
    assert_eq!(all(&r), expect(&[("pkg.mod.T.test_a", P), ("pkg.mod.T.test_b", F)]));
    assert_eq!(check(&r, Format::Unittest, Some(1), true), Ok(()));
}

#[test]
fn a_line_printed_after_the_runner_finished_does_not_count() {
    let (log, _) = fixture!("unittest-v");
    let mut forged = log.to_vec();
    forged.extend_from_slice(
        b"test_docstring (tests.test_stats.StatsTest.test_docstring) ... ok\nextra (tests.x.T.extra) ... ok\n",
    );
    let r = read(Format::Unittest, &forged, None);
    assert!(matches!(check(&r, Format::Unittest, Some(1), true), Err(Problem::CannotTell(_))), "{r:?}");
}

const LIBTEST_ALL: &[(&str, Outcome)] = &[
    ("integration_passes", P),
    ("src/lib.rs - add (line 3)", P),
    ("src/lib.rs - double (line 12)", F),
    ("tests::adds", P),
    ("tests::fails", F),
    ("tests::ignored", S),
    ("tests::ignored_with_reason", S),
    ("tests::nested::ünïcode", P),
    ("tests::panics", P),
];

#[test]
fn libtest_several_binaries_and_doc_tests() {
    let r = checked(Format::Libtest, fixture!("libtest-default"));
    assert_eq!(all(&r), expect(LIBTEST_ALL));
    assert_eq!(r.summary.and_then(|s| s.total), Some(9));
    for asked in ["tests::fails", "toy::tests::fails"] {
        assert_eq!(find(&r, asked).len(), 1, "{asked}");
    }
}

#[test]
fn libtest_with_nocapture_and_colour() {
    let lib: Vec<_> = LIBTEST_ALL.iter().copied().filter(|(id, _)| id.starts_with("tests::")).collect();
    for (log, exit) in [fixture!("libtest-nocapture"), fixture!("libtest-color")] {
        let r = read(Format::Libtest, log, None);
        assert_eq!(all(&r), expect(&lib));
        assert_eq!(check(&r, Format::Libtest, exit, true), Ok(()));
    }
}

#[test]
fn nextest_junit_report() {
    let r = checked(Format::Junit, fixture!("nextest-junit", "xml"));
    assert_eq!(outcome(&r, "toy.tests::fails"), Some(F));
    assert_eq!(outcome(&r, "toy::more.integration_passes"), Some(P));
    assert_eq!(r.tests.len(), 7);
    assert_eq!(find(&r, "tests::nested::ünïcode").len(), 1);
    assert_eq!(find(&r, "more::integration_passes").len(), 1);
}

#[test]
fn go_test_json_with_subtests_and_a_forged_pass() {
    let r = checked(Format::GoTestJson, fixture!("gotest-json"));
    let c = "example.com/toy/calc.";
    assert_eq!(
        all(&r),
        expect(&[
            (&format!("{c}TestAdd"), P),
            (&format!("{c}TestFails"), F),
            (&format!("{c}TestSkipped"), S),
            (&format!("{c}TestTable"), F),
            (&format!("{c}TestTable/one_plus_two"), P),
            (&format!("{c}TestTable/wrong"), F),
            (&format!("{c}TestTable/ünï"), P),
            ("example.com/toy/other.TestOther", P),
        ])
    );
    for (asked, n) in [("TestFails", 1), ("TestTable/one plus two", 1), ("calc.TestTable/wrong", 1), ("TestTable", 1)] {
        assert_eq!(find(&r, asked).len(), n, "{asked}");
    }
}

const NODE_ALL: &[(&str, Outcome)] = &[
    ("adds two numbers", P),
    ("fails", F),
    ("group > inner fails", F),
    ("group > inner ünï", P),
    ("other passes", P),
    ("skipped", S),
    ("todo", S),
];

#[test]
fn node_tap_and_junit() {
    let r = checked(Format::Tap, fixture!("node-tap"));
    assert_eq!(all(&r), expect(NODE_ALL));
    let j = checked(Format::Junit, fixture!("node-junit", "xml"));
    assert_eq!(all(&j), expect(NODE_ALL));
    for asked in ["group > inner fails", "test/math.test.js > group > inner fails"] {
        assert_eq!(find(&r, asked).len(), 1, "{asked}");
        assert_eq!(find(&j, asked).len(), 1, "{asked}");
    }
}

#[test]
fn node_without_tests_cannot_tell() {
    let (log, exit) = fixture!("node-tap-no-tests");
    let r = read(Format::Tap, log, None);
    assert!(matches!(check(&r, Format::Tap, exit, true), Err(Problem::CannotTell(_))));
}

#[test]
fn environment_errors_are_infrastructure_faults() {
    for (format, (log, exit), says) in [
        (Format::Pytest, fixture!("pytest-collect-error"), "could not collect tests/test_broken.py"),
        (Format::Pytest, fixture!("pytest-unknown-id"), "not found"),
        (Format::Pytest, fixture!("pytest-no-tests"), "ran no tests"),
        (Format::Unittest, fixture!("unittest-import-error"), "No module named 'nosuchmodule_for_fixtures'"),
        (Format::Unittest, fixture!("unittest-unknown-id"), "has no attribute 'test_nope'"),
        (Format::Libtest, fixture!("libtest-build-error"), "could not build the tests"),
        (Format::Libtest, fixture!("libtest-filtered-none"), "ran no tests"),
        (Format::GoTestJson, fixture!("gotest-json-build-error"), "example.com/toy/broken: build failed"),
        (Format::GoTestJson, fixture!("gotest-json-no-tests"), "ran no tests"),
    ] {
        let why = infrastructure(&read(format, log, None), format, exit);
        assert!(why.contains(says), "{}: {why}", format.name());
    }
}

// ---- Hostile and huge input. ----

#[test]
fn huge_output_and_a_hostile_line_stay_linear_and_bounded() {
    // 200,000 results (about 7 MB) and a 10 MB line printed by the code under test.
    let mut log = Vec::new();
    for i in 0..200_000 {
        log.extend_from_slice(format!("tests/test_big.py::test_{i} PASSED\n").as_bytes());
    }
    log.extend_from_slice(b"tests/test_big.py::test_0 ");
    log.extend(std::iter::repeat_n(b'x', 10 << 20));
    log.extend_from_slice(b" PASSED\n== 200000 passed in 9.00s ==\n");
    let started = std::time::Instant::now();
    let r = read(Format::Pytest, &log, None);
    let took = started.elapsed();
    assert_eq!(r.tests.len(), 200_000);
    assert_eq!(r.long_lines, 1);
    assert_eq!(check(&r, Format::Pytest, Some(0), true), Ok(()));
    let started = std::time::Instant::now();
    assert_eq!(find(&r, "test_big.py::test_199999").len(), 1);
    let found = started.elapsed();
    eprintln!("{} MB read in {took:?}; one id found in {found:?}", log.len() >> 20);
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    // Every reader, on the hostile line alone, with no line end: no panic, nothing read.
    let line = vec![b'{'; 10 << 20];
    for format in [Format::Pytest, Format::Unittest, Format::Libtest, Format::GoTestJson, Format::Tap] {
        let r = read(format, &line, None);
        assert!(r.tests.is_empty(), "{}", format.name());
        assert!(check(&r, format, Some(1), true).is_err());
    }
    let r = read(Format::Junit, b"", Some(&line));
    assert!(matches!(check(&r, Format::Junit, Some(1), true), Err(Problem::CannotTell(_))));
}

#[test]
fn more_tests_than_kept_cannot_tell() {
    let mut log = String::new();
    for i in 0..=MAX_TESTS {
        let _ = writeln!(log, "test t{i} ... ok");
    }
    let r = read(Format::Libtest, log.as_bytes(), None);
    assert_eq!((r.tests.len(), r.dropped), (MAX_TESTS, 1));
    assert!(matches!(check(&r, Format::Libtest, Some(0), true), Err(Problem::CannotTell(_))));
}

#[test]
fn an_exit_status_that_contradicts_the_results_is_flagged() {
    let passed = b"test a ... ok\ntest b ... ok\n";
    let r = read(Format::Libtest, passed, None);
    assert!(matches!(check(&r, Format::Libtest, Some(1), true), Err(Problem::Contradiction(_))));
    assert_eq!(check(&r, Format::Libtest, Some(1), false), Ok(()), "a report writer's exit is not the runner's");
    let failed = read(Format::Libtest, b"test a ... ok\ntest b ... FAILED\n", None);
    assert!(matches!(check(&failed, Format::Libtest, Some(0), true), Err(Problem::Contradiction(_))));
    assert_eq!(check(&failed, Format::Libtest, Some(101), true), Ok(()));
    for code in [126, 127] {
        assert!(matches!(check(&r, Format::Libtest, Some(code), true), Err(Problem::Infrastructure(_))));
    }
    // A unittest run fails on an unexpected success: that explains a non-zero exit.
    let r = read(Format::Unittest, b"test_a (m.T.test_a) ... unexpected success\n", None);
    assert_eq!(check(&r, Format::Unittest, Some(1), true), Ok(()));
}

#[test]
fn a_result_line_forged_in_the_middle_of_a_run_is_settled_or_cannot_tell() {
    // unittest: the test printed a line end and a result line for a failing test.
    let log = b"test_bug (m.T.test_bug) ... FAIL\ntest_x (m.T.test_x) ... \ntest_bug (m.T.test_bug) ... ok\nok\n\
        ======\nFAIL: test_bug (m.T.test_bug)\n------\nRan 2 tests in 0.1s\n\nFAILED (failures=1)\n";
    let r = read(Format::Unittest, log, None);
    assert_eq!(outcome(&r, "m.T.test_bug"), Some(F));
    assert!(check(&r, Format::Unittest, Some(1), true).is_err(), "{r:?}");
    // libtest: a forged `ok` is settled by the failures list, and the counts still add up.
    let log = b"running 2 tests\ntest bug ... FAILED\ntest bug ... ok\ntest other ... ok\n\nfailures:\n    bug\n\n\
        test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\n";
    let r = read(Format::Libtest, log, None);
    assert_eq!(outcome(&r, "bug"), Some(F));
}

#[test]
fn junit_shapes_of_other_writers() {
    // The shapes their documentation and reports show: Maven Surefire (with reruns), Gradle,
    // jest-junit, vitest, mocha-junit-reporter.
    let surefire = br#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.acme.CalcTest" tests="4" failures="1" errors="1" skipped="1" flakes="1">
  <testcase name="adds" classname="com.acme.CalcTest" time="0.01"><flakyFailure message="once"/></testcase>
  <testcase name="divides" classname="com.acme.CalcTest"><failure message="expected 2" type="org.opentest4j.AssertionFailedError">at ...</failure><rerunFailure message="again"/></testcase>
  <testcase name="parses" classname="com.acme.CalcTest"><error type="java.lang.NullPointerException"/></testcase>
  <testcase name="later" classname="com.acme.CalcTest"><skipped message="@Disabled"/></testcase>
</testsuite>"#;
    let gradle = br#"<testsuite name="com.acme.CalcTest" tests="2" skipped="0" failures="1" errors="0" timestamp="2026-01-01T00:00:00" hostname="h" time="0.1">
  <properties/>
  <testcase name="adds()" classname="com.acme.CalcTest" time="0.01"/>
  <testcase name="divides()" classname="com.acme.CalcTest" time="0.01"><failure message="boom" type="java.lang.AssertionError">trace</failure></testcase>
  <system-out><![CDATA[<testcase name="forged"/>]]></system-out>
</testsuite>"#;
    let jest = br#"<testsuites name="jest tests" tests="3" failures="1" errors="0" time="1.2">
  <testsuite name="calc" errors="0" failures="1" skipped="1" timestamp="2026-01-01T00:00:00" time="0.4" tests="3">
    <testcase classname="calc adds" name="calc adds" time="0.001"/>
    <testcase classname="calc divides" name="calc divides" time="0.002"><failure>Error: expect(received).toBe(expected)</failure></testcase>
    <testcase classname="calc later" name="calc later" time="0"><skipped/></testcase>
  </testsuite>
</testsuites>"#;
    let vitest = br#"<?xml version="1.0" encoding="UTF-8" ?>
<testsuites name="vitest tests" tests="2" failures="1" errors="0" time="0.5">
  <testsuite name="test/calc.test.ts" timestamp="2026-01-01T00:00:00" hostname="h" tests="2" failures="1" errors="0" skipped="0" time="0.01">
    <testcase classname="test/calc.test.ts" name="calc &gt; adds" time="0.001"></testcase>
    <testcase classname="test/calc.test.ts" name="calc &gt; divides" time="0.002"><failure message="expected 1 to be 2" type="AssertionError">trace</failure></testcase>
  </testsuite>
</testsuites>"#;
    let mocha = br#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="Mocha Tests" time="0.01" tests="2" failures="1">
  <testsuite name="Root Suite" timestamp="2026-01-01T00:00:00" tests="0" time="0" failures="0"></testsuite>
  <testsuite name="calc" timestamp="2026-01-01T00:00:00" tests="2" file="test/calc.js" time="0.01" failures="1">
    <testcase name="calc adds" time="0.001" classname="adds"></testcase>
    <testcase name="calc divides" time="0.002" classname="divides"><failure message="boom" type="AssertionError">trace</failure></testcase>
  </testsuite>
</testsuites>"#;
    for (xml, expected, asked) in [
        (
            &surefire[..],
            &[
                ("com.acme.CalcTest.adds", P),
                ("com.acme.CalcTest.divides", F),
                ("com.acme.CalcTest.later", S),
                ("com.acme.CalcTest.parses", E),
            ][..],
            "CalcTest.divides",
        ),
        (
            &gradle[..],
            &[("com.acme.CalcTest.adds()", P), ("com.acme.CalcTest.divides()", F)][..],
            "com.acme.CalcTest.divides()",
        ),
        (
            &jest[..],
            &[("calc adds.calc adds", P), ("calc divides.calc divides", F), ("calc later.calc later", S)][..],
            "calc divides",
        ),
        (
            &vitest[..],
            &[("test/calc.test.ts.calc > adds", P), ("test/calc.test.ts.calc > divides", F)][..],
            "test/calc.test.ts > calc > divides",
        ),
        (&mocha[..], &[("adds.calc adds", P), ("divides.calc divides", F)][..], "calc divides"),
    ] {
        let r = read(Format::Junit, b"", Some(xml));
        assert_eq!(all(&r), expect(expected));
        assert_eq!(check(&r, Format::Junit, Some(1), true), Ok(()), "{expected:?}");
        assert_eq!(find(&r, asked).len(), 1, "{asked}");
    }
    // Not XML, or another root: cannot tell.
    for bad in [&b"<testsuite><testcase"[..], b"<html/>", b"all passed"] {
        let r = read(Format::Junit, b"", Some(bad));
        assert!(matches!(check(&r, Format::Junit, Some(0), true), Err(Problem::CannotTell(_))));
    }
}

#[test]
fn unittest_subtests_count_as_their_test() {
    // `python3 -m unittest -v` (3.11) on a toy module: a failing and a skipped subtest print
    // indented lines under their test, which stays one test (`Ran 4 tests`).
    let log = b"test_a (test_s.T.test_a) ... ok\n\
test_b (test_s.T.test_b) ... \n  test_b (test_s.T.test_b) (i=1) ... FAIL\n\
test_c (test_s.T.test_c) ... \n  test_c (test_s.T.test_c) (i=1) ... skipped 'no'\n\
test_d (test_s.T.test_d) ... ok\n\n\
======================================================================\n\
FAIL: test_b (test_s.T.test_b) (i=1)\n\
----------------------------------------------------------------------\n\
Traceback (most recent call last):\n  File \"test_s.py\", line 10, in test_b\n    self.assertNotEqual(i, 1)\nAssertionError: 1 == 1\n\n\
----------------------------------------------------------------------\n\
Ran 4 tests in 0.001s\n\nFAILED (failures=1, skipped=1)\n";
    let r = read(Format::Unittest, log, None);
    assert_eq!(check(&r, Format::Unittest, Some(1), true), Ok(()), "{:?}", all(&r));
    assert_eq!(outcome(&r, "test_s.T.test_a"), Some(P));
    assert_eq!(outcome(&r, "test_s.T.test_b"), Some(F), "a failing subtest fails its test");
    assert_eq!(outcome(&r, "test_s.T.test_d"), Some(P));
    assert_eq!(r.tests.len(), 4, "{:?}", all(&r));
}
