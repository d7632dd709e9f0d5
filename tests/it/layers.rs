//! The layering rule of `src/lib.rs`, checked: every `crate::<module>` a file of `src/` names is
//! an arrow from its module to that one, and each arrow must be in the allowed matrix. The
//! exceptions are today's wrong-way arrows; each structural step removes some, none is added.

use std::collections::BTreeSet;
use std::path::Path;

/// Who may use whom (besides themselves and the modules everyone may use).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "run",
            "stages",
            "executor",
            "compile",
            "spec",
            "ticket",
            "template",
            "workspace",
            "secrets",
            "egress",
            "store",
            "report",
            "untrusted",
        ],
    ),
    (
        "run",
        &["stages", "executor", "workspace", "secrets", "egress", "store", "report", "ticket", "template", "untrusted"],
    ),
    ("stages", &["executor", "workspace", "secrets", "ticket", "template", "untrusted"]),
    ("executor", &["egress", "secrets"]),
    ("compile", &["spec", "ticket", "template"]),
    ("report", &["store", "ticket"]),
    ("store", &[]),
    ("egress", &[]),
    ("workspace", &["untrusted"]),
    ("secrets", &[]),
    ("untrusted", &["secrets"]),
    ("template", &[]),
    ("ticket", &[]),
    ("spec", &[]),
    ("plan", &[]),
    ("events", &[]),
    ("diag", &[]),
    ("policy", &[]),
];

/// Everyone may use these.
const COMMON: &[&str] = &["plan", "events", "diag", "policy"];

/// Today's arrows outside the matrix: to be removed by the steps of the restructuring, never
/// added to.
const EXCEPTIONS: &[(&str, &str)] = &[];

fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every (from, to) arrow in `src/`, with one place it is written.
fn arrows() -> Vec<(String, String, String)> {
    let src = super::root().join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut out = Vec::new();
    for f in all {
        let rel = f.strip_prefix(&src).expect("inside src").to_path_buf();
        let Some(from) = module_of(&rel) else { continue };
        let text = std::fs::read_to_string(&f).expect("read");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let after = &rest[i + "crate::".len()..];
                let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != from {
                    out.push((from.clone(), name.clone(), format!("src/{}:{}", rel.display(), n + 1)));
                }
                rest = after;
            }
        }
    }
    out
}

#[test]
fn arrows_go_one_way() {
    let mut wrong = BTreeSet::new();
    let mut used_exceptions = BTreeSet::new();
    for (from, to, at) in arrows() {
        if COMMON.contains(&to.as_str()) {
            continue;
        }
        let allowed = ALLOWED.iter().find(|(m, _)| *m == from).is_some_and(|(_, ok)| ok.contains(&to.as_str()));
        if allowed {
            continue;
        }
        if EXCEPTIONS.contains(&(from.as_str(), to.as_str())) {
            used_exceptions.insert((from, to));
            continue;
        }
        wrong.insert(format!("{from} -> {to} ({at})"));
    }
    assert!(
        wrong.is_empty(),
        "arrows outside the layering rule of src/lib.rs:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
    let stale: Vec<_> =
        EXCEPTIONS.iter().filter(|(a, b)| !used_exceptions.contains(&((*a).to_owned(), (*b).to_owned()))).collect();
    assert!(stale.is_empty(), "exceptions no longer needed (remove them): {stale:?}");
}

#[test]
fn every_module_has_a_row() {
    let modules: BTreeSet<String> = arrows().into_iter().map(|(from, _, _)| from).collect();
    for m in modules {
        assert!(ALLOWED.iter().any(|(n, _)| *n == m), "module `{m}` has no row in ALLOWED");
    }
}
