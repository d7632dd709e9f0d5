//! The tamper signal of `grade.diff`: an added line, outside the test files, that reaches into
//! the test framework. Test files and the runner's configuration are taken from the base
//! revision before `grade.tests` runs, but the code under test runs inside the test process: two
//! lines in a library can turn `assertEqual` into a no-op, print `... ok` for tests that never
//! ran, or write an all-passed report where the runner's should be. Such a line fails the
//! change with where it is and why, unless the stage allows it for that path
//! (`with: { allow_framework_in: [globs] }`).

/// Why an added line of `path` (a file outside the tests) tampers with the test framework.
pub fn tampers(path: &str, line: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    let code = line.trim();
    if code.is_empty() {
        return None;
    }
    let in_code = matches!(
        ext.as_str(),
        "py" | "pyi"
            | "pth"
            | "go"
            | "js"
            | "mjs"
            | "cjs"
            | "ts"
            | "mts"
            | "cts"
            | "jsx"
            | "tsx"
            | "rs"
            | "rb"
            | "sh"
            | "java"
            | "kt"
            | "php"
    );
    if !in_code {
        return None;
    }
    if code.contains("LIGHTSOUT_JUNIT")
        || code.contains("junit.xml")
        || code.contains("<testsuite")
        || code.contains("<testcase")
    {
        return Some("writes a test report where the runner's should be");
    }
    if forges_results(code) {
        return Some("prints what a test runner prints");
    }
    match ext.as_str() {
        "py" | "pyi" | "pth" => python(code),
        "go" => {
            (code.contains("\"testing\"") || code.starts_with("import \"testing")).then_some("imports Go's `testing`")
        }
        "js" | "mjs" | "cjs" | "ts" | "mts" | "cts" | "jsx" | "tsx" => {
            let hooks =
                ["node:test", "'vitest'", "\"vitest\"", "@jest/", "jest.", "'mocha'", "\"mocha\"", "'tap'", "\"tap\""];
            hooks.iter().any(|h| code.contains(h)).then_some("reaches into the test runner")
        }
        _ => None,
    }
}

/// A Python line that imports or patches the test framework or the interpreter's builtins.
fn python(code: &str) -> Option<&'static str> {
    const FRAMEWORKS: &[&str] = &["unittest", "pytest", "_pytest", "doctest", "nose", "nose2", "pluggy"];
    let imported = code
        .strip_prefix("import ")
        .map(|rest| rest.split(',').map(|m| m.trim().split([' ', '.']).next().unwrap_or_default()).collect::<Vec<_>>())
        .or_else(|| code.strip_prefix("from ").map(|rest| vec![rest.split([' ', '.']).next().unwrap_or_default()]));
    if let Some(modules) = imported {
        if modules.iter().any(|m| FRAMEWORKS.contains(m)) {
            return Some("imports the test framework");
        }
        if modules.contains(&"builtins") {
            return Some("imports `builtins`, which a change can patch for every test");
        }
    }
    let patches =
        ["__builtins__", "builtins.", "sys.modules[", "sys.modules.", "TestCase.", "unittest.", "pytest.", "_pytest."];
    if patches.iter().any(|p| code.contains(p)) {
        return Some("patches the test framework or the interpreter");
    }
    if code.contains("__import__(") || code.contains("importlib.import_module(") {
        return Some("imports a module by name, past what the tamper signal can read");
    }
    None
}

/// Whether a line holds what a test runner prints of its results (in a string it writes).
fn forges_results(code: &str) -> bool {
    const RESULT_LINES: &[&str] = &[
        "... ok",
        "... FAIL",
        "... skipped",
        " PASSED",
        " passed in ",
        " passed, ",
        "test result: ok.",
        "--- PASS:",
        "=== RUN",
        "# pass ",
        "# tests ",
        "OK (",
    ];
    let quoted = code.contains('"') || code.contains('\'') || code.contains('`');
    quoted && (RESULT_LINES.iter().any(|r| code.contains(r)) || ran_tests(code) || tap_ok(code))
}

/// `Ran 12 tests`, as unittest prints it.
fn ran_tests(code: &str) -> bool {
    code.match_indices("Ran ").any(|(i, _)| {
        let rest = &code[i + 4..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(" test")
    })
}

/// A TAP result line in a string: `ok 1 - name`.
fn tap_ok(code: &str) -> bool {
    ["\"ok ", "'ok ", "`ok ", "\"not ok ", "'not ok "].iter().any(|q| {
        code.match_indices(q).any(|(i, _)| code[i + q.len()..].chars().next().is_some_and(|c| c.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::tampers;

    #[test]
    fn reaching_into_the_test_framework_is_seen() {
        for (path, line) in [
            ("stats/__init__.py", "import unittest"),
            ("stats/__init__.py", "import os, unittest"),
            ("stats/__init__.py", "from unittest import mock"),
            ("stats/__init__.py", "from _pytest.runner import runtestprotocol"),
            ("stats/__init__.py", "unittest.TestCase.assertEqual = lambda *a, **k: None"),
            ("stats/__init__.py", "import builtins; builtins.print = lambda *a: None"),
            ("stats/__init__.py", "sys.modules['unittest'] = fake"),
            ("stats/__init__.py", "__import__('unit' + 'test')"),
            ("stats/__init__.py", "atexit.register(lambda: print('test_median (tests.test_stats.T) ... ok'))"),
            ("stats/__init__.py", "print('Ran 12 tests in 0.001s')"),
            ("stats/__init__.py", "open(os.environ['LIGHTSOUT_JUNIT'], 'w').write(xml)"),
            ("src/lib.rs", "println!(\"test result: ok. 12 passed; 0 failed\");"),
            ("lib/x.go", "import \"testing\""),
            ("lib/x.go", "fmt.Println(\"--- PASS: TestX (0.00s)\")"),
            ("lib/x.js", "const test = require('node:test');"),
            ("lib/x.js", "console.log('ok 1 - adds numbers')"),
        ] {
            assert!(tampers(path, line).is_some(), "{path}: {line}");
        }
    }

    #[test]
    fn ordinary_code_is_not_flagged() {
        for (path, line) in [
            ("stats/__init__.py", "import statistics"),
            ("stats/__init__.py", "from collections import OrderedDict"),
            ("stats/__init__.py", "return (ordered[middle - 1] + ordered[middle]) / 2"),
            ("stats/__init__.py", "print('ok')"),
            ("src/lib.rs", "#[test]"),
            ("lib/x.go", "import \"strings\""),
            ("lib/x.js", "const ok = check(1);"),
            ("README.md", "Ran 12 tests ... ok"),
            ("docs/x.txt", "import unittest"),
        ] {
            assert_eq!(tampers(path, line), None, "{path}: {line}");
        }
    }
}
