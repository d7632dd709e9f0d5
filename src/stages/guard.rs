//! The last check before `ship`, which no pipeline can leave out or configure away: the change
//! touches no protected path and holds no secret.
//!
//! Protected paths are the policy's `protected.paths` (every layer), always unioned with the
//! factory's own files, the repository's CI configuration and git's own configuration files,
//! and the test files `grade.tests` takes from the base revision (what it graded is not what
//! the change holds there, so the change may not ship them). A secret is any value of a secret
//! given to the run, plain, spread over lines or base64-encoded, in an added line or a path.

use std::path::Path;

use crate::policy::{Globs, Matching};
use crate::secrets::Needles;
use crate::workspace::Workspace;

/// Paths no change may touch, whatever the policy says: CI configuration, git's configuration
/// files, the runner's own directory.
pub const ALWAYS_PROTECTED: &[&str] = &[
    ".github/**",
    ".gitlab-ci.yml",
    ".gitlab/**",
    ".circleci/**",
    ".buildkite/**",
    ".travis.yml",
    "Jenkinsfile",
    "azure-pipelines.yml",
    ".azure-pipelines/**",
    "bitbucket-pipelines.yml",
    ".drone.yml",
    ".woodpecker.yml",
    ".woodpecker/**",
    ".ci/**",
    "**/.gitattributes",
    ".gitattributes",
    ".gitmodules",
    "**/.gitmodules",
    ".lightsout/**",
    // What git ignores decides what ships: un-ignoring a cache ships code no one reads.
    ".gitignore",
    "**/.gitignore",
];

/// The factory's own files, relative to its directory.
pub const FACTORY_FILES: &[&str] = &["factory.yaml", "policy.yaml", "pipelines/**", "prompts/**"];

/// What the guard checks a change against.
pub struct Rules {
    /// Glob patterns, each matched against the path relative to the repository's top and
    /// relative to the factory's directory.
    pub protected: Vec<String>,
    /// The patterns, compiled once; and the directories of those that end in `/**`, with the
    /// pattern each stands for.
    whole: Globs,
    dirs: Globs,
    dir_of: Vec<usize>,
}

impl Rules {
    /// The protected set: the policy's paths, the factory's files (and the pipeline and policy
    /// files wherever they are), [`ALWAYS_PROTECTED`], and `test_files`.
    pub fn new(policy_paths: &[&str], factory_files: &[String], test_files: &[String]) -> Rules {
        let mut protected: Vec<String> = ALWAYS_PROTECTED.iter().map(|s| (*s).to_owned()).collect();
        protected.extend(FACTORY_FILES.iter().map(|s| (*s).to_owned()));
        protected.extend(policy_paths.iter().map(|s| (*s).to_owned()));
        protected.extend(factory_files.iter().cloned());
        protected.extend(test_files.iter().cloned());
        protected.sort();
        protected.dedup();
        // The same matching as grade.tests' reset (`*` crosses `/`), so that every file it took
        // from the base is one the change cannot ship.
        let how = Matching { ignore_case: true, literal_separator: false };
        // A pattern that does not compile protects nothing (as it never matched anything).
        protected.retain(|p| Globs::new(std::slice::from_ref(p), how).is_ok());
        let (dir_of, dirs): (Vec<usize>, Vec<String>) = protected
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.strip_suffix("/**").map(|d| (i, d.to_owned())))
            .filter(|(_, d)| Globs::new(std::slice::from_ref(d), how).is_ok())
            .unzip();
        // Every pattern compiled on its own, so the sets do; if one did not, it fails closed.
        let whole = Globs::new(&protected, how).unwrap_or_else(|_| Globs::everything(&protected));
        let dirs = Globs::new(&dirs, how).unwrap_or_else(|_| Globs::everything(&dirs));
        Rules { protected, whole, dirs, dir_of }
    }

    /// The first protected pattern `path` matches (repository-relative; `sub` is the factory's
    /// directory). Matching ignores case and invisible format characters (a checkout on a
    /// case-insensitive file system, or one that drops them, puts `.GitHub/x` at `.github/x`),
    /// and `dir/**` protects `dir` itself too (a link there would put a directory of the
    /// change's choosing in its place).
    fn protects(&self, path: &str, sub: &Path) -> Option<&str> {
        let path = visible(path);
        let sub = visible(&sub.to_string_lossy());
        let local = if sub.is_empty() {
            Some(path.as_str())
        } else {
            path.get(..sub.len())
                .filter(|head| head.to_lowercase() == sub.to_lowercase())
                .and_then(|_| path.get(sub.len()..))
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let first = |candidate: &str| {
            let whole = self.whole.first_index(candidate);
            let dir = self.dirs.first_index(candidate).and_then(|i| self.dir_of.get(i).copied());
            whole.into_iter().chain(dir).min()
        };
        let found = first(&path).into_iter().chain(local.and_then(first)).min()?;
        self.protected.get(found).map(String::as_str)
    }
}

/// `text` without the characters that render as nothing (Unicode format characters: zero-width
/// joiners and spaces, direction marks, the soft hyphen, the byte order mark).
fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !matches!(*c, '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fff8}')
        })
        .collect()
}

/// Checks the change (`tree`, from [`Workspace::change_tree`]) against the base: `Err` with
/// every reason (masked) when it touches a protected path or holds a secret.
pub fn check(ws: &Workspace, tree: &str, rules: &Rules, needles: &Needles) -> Result<(), String> {
    let mut reasons = Vec::new();
    let changed = ws.tree_paths(tree)?;
    for path in &changed {
        if let Some(rule) = rules.protects(path, &ws.sub) {
            reasons.push(format!(
                "the change touches the protected path `{}` (protected by `{rule}`)",
                path.escape_debug()
            ));
        }
        if !needles.is_empty() && needles.mask(path.as_bytes()) != path.as_bytes() {
            reasons.push(format!("a path of the change holds a secret: `{}`", needles.mask_str(path).escape_debug()));
        }
    }
    if !needles.is_empty() {
        let mut by_file: Vec<(String, String)> = Vec::new();
        for (file, line) in ws.tree_added_lines(tree)? {
            match by_file.last_mut() {
                Some((f, text)) if *f == file => {
                    text.push('\n');
                    text.push_str(&line);
                }
                _ => by_file.push((file, line)),
            }
        }
        for (file, text) in by_file {
            if needles.mask(text.as_bytes()) != text.as_bytes() {
                reasons.push(format!("the change writes a secret into `{}`", needles.mask_str(&file).escape_debug()));
            }
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(needles.mask_str(&format!("not shipped: {}", reasons.join("; ")))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths_match_from_the_top_and_from_the_factory() {
        let rules = Rules::new(&["src/secret/**"], &["ci/pipeline.yaml".to_owned()], &["tests/**".to_owned()]);
        let top = Path::new("");
        assert_eq!(rules.protects(".github/workflows/x.yml", top), Some(".github/**"));
        assert_eq!(rules.protects("a/b/.gitattributes", top), Some("**/.gitattributes"));
        assert_eq!(rules.protects("policy.yaml", top), Some("policy.yaml"));
        assert_eq!(rules.protects("tests/test_x.py", top), Some("tests/**"));
        assert_eq!(rules.protects("src/secret/k", top), Some("src/secret/**"));
        assert_eq!(rules.protects("src/app.py", top), None);
        assert_eq!(rules.protects("svc/factory.yaml", Path::new("svc")), Some("factory.yaml"));
        assert_eq!(rules.protects("other/factory.yaml", Path::new("svc")), None);
        // Case, invisible characters, and a link standing where a protected directory would be.
        assert_eq!(rules.protects(".GitHub/workflows/x.yml", top), Some(".github/**"));
        assert_eq!(rules.protects(".g\u{200c}ithub/workflows/x.yml", top), Some(".github/**"));
        assert_eq!(rules.protects("POLICY.yaml", top), Some("policy.yaml"));
        assert_eq!(rules.protects(".buildkite", top), Some(".buildkite/**"));
        assert_eq!(rules.protects("Secret/K", top), None);
        assert_eq!(rules.protects("src/Secret/k", top), Some("src/secret/**"));
        assert_eq!(rules.protects("SVC/factory.yaml", Path::new("svc")), Some("factory.yaml"));
    }
}
