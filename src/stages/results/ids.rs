//! Test ids across output forms. A pipeline names a test the way its ecosystem does, and the
//! same test is spelled differently by each output form:
//!
//! | ecosystem | as asked | as read |
//! | --- | --- | --- |
//! | pytest | `tests/test_x.py::TestC::test_f[a b]` | the same (`-rA`, `-v`); `JUnit`: `tests.test_x.TestC` + `test_f[a b]` |
//! | unittest | `pkg.mod.Class.test_f`, `test_f (pkg.mod.Class)`, `test_f (pkg.mod.Class.test_f)` | `pkg.mod.Class.test_f` |
//! | Rust | `module::tests::name` (with or without the crate) | libtest: `module::tests::name`; nextest `JUnit`: `crate` + `module::tests::name` |
//! | Go | `TestName`, `TestName/sub`, `pkg.TestName` | `example.com/pkg.TestName/sub` |
//! | Node | `name`, `suite > name`, `file > suite > name` | TAP and `JUnit`: `suite > name` |
//!
//! An id is compared as a list of parts, split at `::`, `.`, `/`, `\`, ` > ` and ` › ` outside
//! brackets and parentheses (so `test_f[1.5 - 2]` is one part), with `.py` dropped before
//! `::` and spaces in a Go subtest written `_` as Go does. A test matches when one list ends
//! with the other. `test_f` also names every parametrized `test_f[...]` when no test is named
//! `test_f` itself.

use super::{Reading, Test};

/// The parts of an id.
pub fn parts(id: &str) -> Vec<String> {
    let id = unittest_form(id.trim());
    let id = id.replace(".py::", "::");
    let id = id.strip_suffix(".py").unwrap_or(&id);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut chars = id.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ => {}
        }
        if depth == 0 {
            let rest = &id[i..];
            let sep = if rest.starts_with("::") {
                2
            } else if rest.starts_with(" > ") {
                3
            } else if rest.starts_with(" › ") {
                " › ".len()
            } else {
                usize::from(matches!(c, '.' | '/' | '\\'))
            };
            if sep > 0 {
                push(&mut out, &mut cur);
                for _ in 1..id[i..i + sep].chars().count() {
                    chars.next();
                }
                continue;
            }
        }
        cur.push(c);
    }
    push(&mut out, &mut cur);
    out
}

fn push(out: &mut Vec<String>, cur: &mut String) {
    let part = cur.trim();
    if !part.is_empty() {
        out.push(part.to_owned());
    }
    cur.clear();
}

/// unittest's `test_f (pkg.mod.Class)` and `test_f (pkg.mod.Class.test_f)` as
/// `pkg.mod.Class.test_f`; any other id as it is.
fn unittest_form(id: &str) -> std::borrow::Cow<'_, str> {
    if let Some((name, rest)) = id.split_once(" (")
        && let Some(dotted) = rest.strip_suffix(')')
        && !name.contains(char::is_whitespace)
        && !dotted.is_empty()
        && !dotted.contains(char::is_whitespace)
    {
        if dotted.ends_with(&format!(".{name}")) {
            return dotted.to_owned().into();
        }
        return format!("{dotted}.{name}").into();
    }
    id.into()
}

/// Whether one of two part lists ends with the other (and neither is empty).
fn suffix_match(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    !short.is_empty() && long.ends_with(short)
}

/// The parts of a requested id, and the same with spaces as `_` (a Go subtest name).
fn wanted(requested: &str) -> (Vec<String>, Vec<String>) {
    let want = parts(requested);
    let go: Vec<String> = want.iter().map(|p| p.replace(' ', "_")).collect();
    (want, go)
}

/// Whether `key` (an id as read) is the test `requested` names exactly (without the
/// parametrized-family rule).
pub fn same_test(requested: &str, key: &str) -> bool {
    if requested == key {
        return true;
    }
    let (want, go) = wanted(requested);
    let have = parts(key);
    suffix_match(&want, &have) || suffix_match(&go, &have)
}

/// Whether `key` is a parametrization of the test `requested` names: `…::test_f` and
/// `…::test_f[x]`.
fn family(want: &[String], have: &[String]) -> bool {
    let (Some((last_w, pre_w)), Some((last_h, pre_h))) = (want.split_last(), have.split_last()) else {
        return false;
    };
    let Some(base) = last_h.split_once('[').map(|(b, _)| b) else {
        return false;
    };
    !last_w.contains('[') && base == last_w && suffix_match_or_empty(pre_w, pre_h)
}

fn suffix_match_or_empty(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || suffix_match(a, b)
}

/// The keys among `keys` that `requested` names: an exact match if there is one, else every
/// key whose parts end with the requested parts (or the other way round), else every
/// parametrization of it. Empty: absent. Linear in the number of keys.
pub fn matching<'a, I>(keys: I, requested: &str) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let (want, go) = wanted(requested);
    let mut suffix = Vec::new();
    let mut params = Vec::new();
    for key in keys {
        if key == requested {
            return vec![key];
        }
        let have = parts(key);
        if suffix_match(&want, &have) || suffix_match(&go, &have) {
            suffix.push(key);
        } else if suffix.is_empty() && family(&want, &have) {
            params.push(key);
        }
    }
    if suffix.is_empty() { params } else { suffix }
}

/// The tests of `reading` that `requested` names (see [`matching`]); empty when it is absent.
pub fn find<'r>(reading: &'r Reading, requested: &str) -> Vec<&'r Test> {
    let keys = matching(reading.tests.iter().map(|t| t.id.as_str()), requested);
    keys.iter().filter_map(|k| reading.get(k)).collect()
}
