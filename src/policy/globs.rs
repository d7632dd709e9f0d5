//! Path patterns as policies and pipelines write them (`tests/**`, `**/conftest.py`), compiled
//! once into one matcher (globset), and the policy's own `*` wildcards.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// How patterns match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    /// `Tests/X` matches `tests/x` (a checkout on a case-insensitive file system).
    pub ignore_case: bool,
    /// `*` and `?` stop at `/` (only `**` crosses directories).
    pub literal_separator: bool,
}

/// Compiled patterns; which one matched is known by its index.
#[derive(Clone, Debug)]
pub struct Globs {
    set: GlobSet,
    patterns: Vec<String>,
    /// Matches every path (what a guard falls back to when its patterns cannot be compiled).
    all: bool,
}

impl Globs {
    /// Compiles `patterns`; `Err` names the first that is not a pattern, and why.
    pub fn new(patterns: &[String], how: Matching) -> Result<Globs, String> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .case_insensitive(how.ignore_case)
                .literal_separator(how.literal_separator)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("`{p}` is not a glob: {}", e.kind()))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(Globs { set, patterns: patterns.to_vec(), all: false })
    }

    /// Matches every path: a set that fails closed.
    pub fn everything(patterns: &[String]) -> Globs {
        Globs { set: GlobSet::empty(), patterns: patterns.to_vec(), all: true }
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.all || self.set.is_match(path)
    }

    /// The index of the first pattern, in the order given, that `path` matches.
    pub fn first_index(&self, path: &str) -> Option<usize> {
        if self.all {
            return Some(0);
        }
        self.set.matches(path).into_iter().min()
    }

    /// The first pattern, in the order given, that `path` matches.
    pub fn first_match(&self, path: &str) -> Option<&str> {
        self.first_index(path).and_then(|i| self.patterns.get(i)).map(String::as_str).or(self.all.then_some("**"))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// `*` matches any run of characters (`/` included); everything else matches itself.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let escaped: String = pattern
        .chars()
        .map(|c| match c {
            '?' | '[' | ']' | '{' | '}' | '\\' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect();
    GlobBuilder::new(&escaped).literal_separator(false).build().is_ok_and(|g| g.compile_matcher().is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str], how: Matching) -> Result<Globs, String> {
        Globs::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>(), how)
    }

    #[test]
    fn the_usual_test_locations_match_as_written() -> Result<(), String> {
        let g = globs(crate::plan::DEFAULT_TEST_FILES, Matching::default())?;
        for path in
            ["tests/test_a.py", "tests/deep/x/y.py", "pkg/test_x.py", "conftest.py", "a/b/conftest.py", "x_test.go"]
        {
            assert!(g.is_match(path), "{path}");
        }
        for path in ["src/lib.py", "testsuite.py", "pkg/contest.py"] {
            assert!(!g.is_match(path), "{path}");
        }
        Ok(())
    }

    #[test]
    fn case_separators_and_the_first_match() -> Result<(), String> {
        let strict = Matching { ignore_case: true, literal_separator: true };
        let g = globs(&["*.lock", ".github/**", "ci/*"], strict)?;
        assert_eq!(g.first_match(".GitHub/workflows/x.yml"), Some(".github/**"));
        assert_eq!(g.first_match("Cargo.LOCK"), Some("*.lock"));
        assert_eq!(g.first_match("ci/a/b"), None, "`*` stops at `/` here");
        assert_eq!(g.first_match("sub/Cargo.lock"), None);
        let loose = globs(&["ci/*"], Matching::default())?;
        assert!(loose.is_match("ci/a/b"));
        assert!(globs(&["a[b"], Matching::default()).is_err());
        Ok(())
    }

    #[test]
    fn policy_wildcards_only_know_the_star() {
        assert!(wildcard("ghcr.io/acme/*", "ghcr.io/acme/tools/x:1"));
        assert!(wildcard("grade.*", "grade.tests"));
        assert!(!wildcard("a?c", "abc"), "`?` is itself");
        assert!(wildcard("a?c", "a?c"));
        assert!(wildcard("{x}", "{x}"));
        assert!(!wildcard("*.example.com", "example.com"));
    }
}
