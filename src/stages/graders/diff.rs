//! `uses: grade.diff`: judges the change itself, on the host, from git's view of it: protected
//! paths untouched, changed files and lines under limits, no new dependencies unless allowed,
//! and no added text that looks like a credential.

use crate::stages::{HostResult, Verdict};
use crate::workspace::Workspace;

/// Files whose change means a dependency was added, removed or moved.
const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile",
    "Pipfile.lock",
    "go.mod",
    "go.sum",
    "Gemfile",
    "Gemfile.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
];

#[derive(Clone, Debug, Default)]
pub struct Params {
    pub protect: Vec<String>,
    pub max_changed_files: Option<u64>,
    pub max_changed_lines: Option<u64>,
    pub allow_dependencies: bool,
    /// Where a change may reach into the test framework.
    pub allow_framework_in: Vec<String>,
}

impl Params {
    pub fn from_plan(p: &crate::plan::kind::Diff) -> Params {
        Params {
            protect: p.protect.clone().unwrap_or_default(),
            max_changed_files: p.max_changed_files,
            max_changed_lines: p.max_changed_lines,
            allow_dependencies: p.allow_dependencies.unwrap_or(false),
            allow_framework_in: p.allow_framework_in.clone().unwrap_or_default(),
        }
    }
}

/// An added line this long counts as more than one (bytes per line counted).
const LONG_LINE: u64 = 400;

fn is_manifest(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    // Case-insensitively: on macOS and Windows `Requirements.txt` is the same file.
    MANIFESTS.iter().any(|m| m.eq_ignore_ascii_case(name))
        || (name.to_ascii_lowercase().starts_with("requirements")
            && std::path::Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")))
}

/// Why a line looks like a credential, if it does.
pub fn credential(line: &str) -> Option<&'static str> {
    let has_run = |prefix: &str, min: usize, ok: fn(char) -> bool| {
        line.match_indices(prefix).any(|(i, _)| line[i + prefix.len()..].chars().take_while(|&c| ok(c)).count() >= min)
    };
    let upper_digit = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
        return Some("a private key");
    }
    if has_run("AKIA", 16, upper_digit) || has_run("ASIA", 16, upper_digit) {
        return Some("an AWS access key id");
    }
    for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"] {
        if has_run(p, 30, |c| c.is_ascii_alphanumeric() || c == '_') {
            return Some("a GitHub token");
        }
    }
    for p in ["xoxb-", "xoxp-", "xoxa-", "xoxs-"] {
        if has_run(p, 10, |c| c.is_ascii_alphanumeric() || c == '-') {
            return Some("a Slack token");
        }
    }
    if has_run("sk-", 32, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Some("an API secret key");
    }
    // `password = "…"`, `api_key: '…'`, `SECRET_TOKEN="…"` with a long literal value.
    let lower = line.to_ascii_lowercase();
    for key in ["password", "passwd", "secret", "api_key", "apikey", "token", "private_key"] {
        if let Some(i) = lower.find(key) {
            let rest = lower[i + key.len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
            let rest = rest.trim_start();
            if let Some(rest) = rest.strip_prefix([':', '=']) {
                let rest = rest.trim_start();
                if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
                    let value: String = rest[1..].chars().take_while(|&c| c != q).collect();
                    if value.len() >= 12 && !value.contains("{{") && !value.contains('$') {
                        return Some("a hard-coded secret");
                    }
                }
            }
        }
    }
    None
}

pub fn grade(ws: &Workspace, p: &Params) -> Result<HostResult, String> {
    let how = crate::policy::Matching { ignore_case: true, literal_separator: false };
    let protect = crate::policy::Globs::new(&p.protect, how)?;
    let stat = ws.numstat()?;
    let mut reasons = Vec::new();
    for (path, _) in &stat {
        if let Some(g) = protect.first_match(path) {
            reasons.push(format!("{path} is protected (`{g}`) but was changed"));
        }
    }
    let added = ws.added_lines()?;
    let files = stat.len() as u64;
    // git counts lines by their `\n`: a file whose lines end in a lone `\r` (which Python and
    // others read as line breaks) would be one line, and so would a minified wall of code. Each
    // lone `\r` counts as a line, and so does each started LONG_LINE bytes of an added line.
    let hidden: u64 = added
        .iter()
        .map(|(_, l)| {
            let crs = l.trim_end_matches('\r').matches('\r').count() as u64;
            crs + (l.len() as u64).saturating_sub(1) / LONG_LINE
        })
        .sum();
    // A file git takes for binary (a NUL byte is enough) has its lines counted from the text
    // diff: git's own count would be one, whatever it hides.
    let binary_lines = |path: &str| added.iter().filter(|(f, _)| f == path).count() as u64 + 1;
    let counts: Vec<(&str, u64, u64)> = stat
        .iter()
        .map(|(f, n)| match n {
            Some((a, d)) => (f.as_str(), *a, *d),
            None => (f.as_str(), binary_lines(f), 1),
        })
        .collect();
    let lines: u64 = counts.iter().map(|(_, a, d)| a + d).sum::<u64>() + hidden;
    if let Some(max) = p.max_changed_files.filter(|m| files > *m) {
        reasons.push(format!("{files} files changed, more than the limit of {max}"));
    }
    if let Some(max) = p.max_changed_lines.filter(|m| lines > *m) {
        reasons.push(format!("{lines} lines changed, more than the limit of {max}"));
    }
    if !p.allow_dependencies {
        for (path, _) in stat.iter().filter(|(path, _)| is_manifest(path)) {
            reasons.push(format!("{path} changed: new dependencies need `allow_dependencies: true`"));
        }
    }
    // The tests themselves may use their framework; so may the paths the stage allows.
    let mut framework_ok: Vec<String> = crate::plan::DEFAULT_TEST_FILES.iter().map(|s| (*s).to_owned()).collect();
    framework_ok.extend(p.allow_framework_in.iter().cloned());
    let framework_ok = crate::policy::Globs::new(&framework_ok, how)?;
    let mut tampered = 0usize;
    for (path, line) in added {
        if let Some(what) = credential(&line) {
            reasons.push(format!("{path} adds what looks like {what}"));
        }
        if !framework_ok.is_match(&path)
            && let Some(what) = super::tamper::tampers(&path, &line)
        {
            tampered += 1;
            if tampered <= 10 {
                let shown: String = line.trim().chars().take(120).collect();
                reasons.push(format!(
                    "{path} {what}: `{}` (the code under test must not reach into the test framework; if this path must, list it in grade.diff's `allow_framework_in`)",
                    crate::diag::printable(&shown)
                ));
            }
        }
    }
    if tampered > 10 {
        reasons.push(format!("and {} more lines that reach into the test framework", tampered - 10));
    }
    let pass = reasons.is_empty();
    if pass {
        reasons.push(format!(
            "{files} files and {lines} lines changed; no protected path, dependency manifest or credential-like text touched"
        ));
    }
    let details = serde_json::json!({
        "files": counts.iter().map(|(f, a, d)| serde_json::json!({"path": f, "added": a, "removed": d})).collect::<Vec<_>>(),
        "changed_files": files,
        "changed_lines": lines,
    });
    let summary = if pass {
        format!("grade.diff: pass ({files} files, {lines} lines changed)")
    } else {
        format!("grade.diff: FAIL\n{}", reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))
    };
    let mut result = HostResult { summary, ..HostResult::default() };
    result.outputs.insert("changed_files".into(), files.to_string());
    result.outputs.insert("changed_lines".into(), lines.to_string());
    result.verdict = Some(Verdict { pass, reasons, details });
    Ok(result)
}

/// `grade.diff` behind the [`crate::stages::Grader`] trait.
pub struct DiffGrader(pub Params);

impl crate::stages::Grader for DiffGrader {
    fn grade(&self, ws: &Workspace) -> Result<HostResult, String> {
        grade(ws, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_spotted() {
        assert_eq!(credential("aws = AKIAABCDEFGHIJKLMNOP"), Some("an AWS access key id"));
        assert_eq!(credential("-----BEGIN RSA PRIVATE KEY-----"), Some("a private key"));
        assert_eq!(credential("token = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'"), Some("a GitHub token"));
        assert_eq!(credential("DB_PASSWORD = \"hunter2hunter2\""), Some("a hard-coded secret"));
        assert_eq!(credential("password = os.environ[\"DB_PASSWORD\"]"), None);
        assert_eq!(credential("token: \"{{ secrets.x }}\""), None);
        assert_eq!(credential("def median(values):"), None);
    }

    #[test]
    fn manifests() {
        assert!(is_manifest("Cargo.toml") && is_manifest("web/package.json") && is_manifest("requirements-dev.txt"));
        assert!(!is_manifest("src/cargo.rs"));
    }
}
