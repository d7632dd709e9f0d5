//! The tamper signal of `grade.diff`: an added line, outside the test files, that reaches into
//! the test framework. Test files and the runner's configuration are taken from the base
//! revision before `grade.tests` runs, but the code under test runs inside the test process: two
//! lines in a library can turn `assertEqual` into a no-op, print `... ok` for tests that never
//! ran, or write an all-passed report where the runner's should be. Such a line fails the
//! change with where it is and why, unless the stage allows it for that path
//! (`with: { allow_framework_in: [globs] }`).

/// File extensions the signal reads, by language.
const PYTHON: &[&str] = &["py", "pyi", "pth"];
const JS: &[&str] = &["js", "mjs", "cjs", "ts", "mts", "cts", "jsx", "tsx"];
const OTHER_CODE: &[&str] = &["go", "rs", "rb", "sh", "java", "kt", "php"];

/// Why an added line of `path` (a file outside the tests) tampers with the test framework.
pub fn tampers(path: &str, line: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    let code = line.trim();
    if code.is_empty() {
        return None;
    }
    let in_code = [PYTHON, JS, OTHER_CODE].iter().any(|group| group.contains(&ext.as_str()));
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
        e if PYTHON.contains(&e) => python(code),
        "go" => {
            (code.contains("\"testing\"") || code.starts_with("import \"testing")).then_some("imports Go's `testing`")
        }
        e if JS.contains(&e) => {
            let hooks =
                ["node:test", "'vitest'", "\"vitest\"", "@jest/", "jest.", "'mocha'", "\"mocha\"", "'tap'", "\"tap\""];
            hooks.iter().any(|h| code.contains(h)).then_some("reaches into the test runner")
        }
        _ => None,
    }
}

/// The standard library's top-level modules (Python 3.11's `sys.stdlib_module_names`, without the
/// private ones): a file of the change named like one, where the import path starts, shadows it
/// for the test runner, which imports many of them.
const STDLIB: &[&str] = &[
    "abc",
    "aifc",
    "antigravity",
    "argparse",
    "array",
    "ast",
    "asynchat",
    "asyncio",
    "asyncore",
    "atexit",
    "audioop",
    "base64",
    "bdb",
    "binascii",
    "bisect",
    "builtins",
    "bz2",
    "cProfile",
    "calendar",
    "cgi",
    "cgitb",
    "chunk",
    "cmath",
    "cmd",
    "code",
    "codecs",
    "codeop",
    "collections",
    "colorsys",
    "compileall",
    "concurrent",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "copyreg",
    "crypt",
    "csv",
    "ctypes",
    "curses",
    "dataclasses",
    "datetime",
    "dbm",
    "decimal",
    "difflib",
    "dis",
    "distutils",
    "doctest",
    "email",
    "encodings",
    "ensurepip",
    "enum",
    "errno",
    "faulthandler",
    "fcntl",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "genericpath",
    "getopt",
    "getpass",
    "gettext",
    "glob",
    "graphlib",
    "grp",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http",
    "idlelib",
    "imaplib",
    "imghdr",
    "imp",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "lib2to3",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "mailcap",
    "marshal",
    "math",
    "mimetypes",
    "mmap",
    "modulefinder",
    "msilib",
    "msvcrt",
    "multiprocessing",
    "netrc",
    "nis",
    "nntplib",
    "nt",
    "ntpath",
    "nturl2path",
    "numbers",
    "opcode",
    "operator",
    "optparse",
    "os",
    "ossaudiodev",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "pipes",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "posix",
    "posixpath",
    "pprint",
    "profile",
    "pstats",
    "pty",
    "pwd",
    "py_compile",
    "pyclbr",
    "pydoc",
    "pydoc_data",
    "pyexpat",
    "queue",
    "quopri",
    "random",
    "re",
    "readline",
    "reprlib",
    "resource",
    "rlcompleter",
    "runpy",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "site",
    "smtpd",
    "smtplib",
    "sndhdr",
    "socket",
    "socketserver",
    "spwd",
    "sqlite3",
    "sre_compile",
    "sre_constants",
    "sre_parse",
    "ssl",
    "stat",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "subprocess",
    "sunau",
    "symtable",
    "sys",
    "sysconfig",
    "syslog",
    "tabnanny",
    "tarfile",
    "telnetlib",
    "tempfile",
    "termios",
    "textwrap",
    "this",
    "threading",
    "time",
    "timeit",
    "tkinter",
    "token",
    "tokenize",
    "tomllib",
    "trace",
    "traceback",
    "tracemalloc",
    "tty",
    "turtle",
    "turtledemo",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib",
    "uu",
    "uuid",
    "venv",
    "warnings",
    "wave",
    "weakref",
    "webbrowser",
    "winreg",
    "winsound",
    "wsgiref",
    "xdrlib",
    "xml",
    "xmlrpc",
    "zipapp",
    "zipfile",
    "zipimport",
    "zlib",
    "zoneinfo",
];

/// Why an added file shadows a module the test runner imports, if it does: `argparse.py` or
/// `argparse/` at the top of the workspace (or of `src/`), which `python -m unittest` and pytest
/// put first on the import path.
pub fn shadows(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("src/").unwrap_or(path);
    let first = rest.split('/').next().unwrap_or(rest);
    let module = first.strip_suffix(".py").unwrap_or(first);
    let is_module =
        std::path::Path::new(first).extension().is_some_and(|e| e.eq_ignore_ascii_case("py")) || rest.contains('/');
    (is_module && STDLIB.contains(&module)).then_some("shadows a standard-library module the test runner imports")
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
    if code.contains("__import__(") || code.contains("importlib") {
        return Some("imports a module by name, past what the tamper signal can read");
    }
    // What hides code from the diff, or reaches other modules' attributes by computed names.
    if builtin_call(code, "exec") || builtin_call(code, "eval") || code.contains("marshal.") || code.contains("ctypes")
    {
        return Some("runs code the diff does not show");
    }
    if code.contains("setattr(") && (code.contains("getattr(") || code.contains("modules") || code.contains("vars(")) {
        return Some("sets an attribute of another module by a computed name");
    }
    if code.starts_with("import sys as") || code.contains(", sys as ") || code.starts_with("import os as") {
        return Some("imports `sys` or `os` under another name");
    }
    if code.contains("_exit(")
        || code.contains("atexit")
        || code.contains("signal.signal(")
        || code.contains("sys.argv")
    {
        return Some("ends or steers the test process (`os._exit`, `atexit`, signal handlers, `sys.argv`)");
    }
    if ["__eq__", "__ne__", "__hash__", "__bool__"].iter().any(|d| code.contains(d)) {
        return Some("defines how values compare, which the tests' assertions rely on");
    }
    if code.contains("# coding") && code.contains("utf-7") || code.contains("coding: utf_7") {
        return Some("declares a source encoding that hides code from the diff");
    }
    None
}

/// Whether `code` calls the builtin `name` (not a method or another function ending so, such as
/// `ast.literal_eval`).
fn builtin_call(code: &str, name: &str) -> bool {
    let call = format!("{name}(");
    code.match_indices(&call)
        .any(|(i, _)| code[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.')))
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
            ("stats/__init__.py", "setattr(getattr(_s.modules['unit' 'test'], 'Test' 'Case'), 'assertEqual', f)"),
            ("stats/__init__.py", "import sys as _s"),
            ("stats/__init__.py", "exec(open(os.path.join(here, '_data.txt')).read())"),
            ("stats/__init__.py", "os._exit(0)"),
            ("stats/__init__.py", "def __eq__(self, other):"),
            ("stats/__init__.py", "# coding: utf-7"),
        ] {
            assert!(tampers(path, line).is_some(), "{path}: {line}");
        }
    }

    #[test]
    fn a_file_named_like_the_standard_library_shadows_it() {
        assert!(super::shadows("argparse.py").is_some());
        assert!(super::shadows("difflib/__init__.py").is_some());
        assert!(super::shadows("src/fnmatch.py").is_some());
        assert_eq!(super::shadows("stats/__init__.py"), None);
        assert_eq!(super::shadows("pkg/argparse.py"), None, "inside a package it is the package's");
        assert_eq!(super::shadows("json"), None, "a file without .py at the top is not a module");
    }

    #[test]
    fn ordinary_code_is_not_flagged() {
        for (path, line) in [
            ("stats/__init__.py", "import statistics"),
            ("stats/__init__.py", "from collections import OrderedDict"),
            ("stats/__init__.py", "return (ordered[middle - 1] + ordered[middle]) / 2"),
            ("stats/__init__.py", "print('ok')"),
            ("stats/__init__.py", "value = ast.literal_eval(text)"),
            ("stats/__init__.py", "PATTERN = re.compile(r'[0-9]+')"),
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
