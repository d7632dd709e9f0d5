//! What a stage does: its kind and that kind's parameters, typed.
//!
//! The compiler checks a stage's `with:` against the kinds table (with positions for its
//! diagnostics) and then builds one of these; the runtime matches on the variant and never
//! compares kind names. A plan's JSON (and so a run record) keeps the `kind` and `with` fields
//! it always had: every parameter is optional here, and only those the pipeline set are written.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A stage's kind, with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawKind", into = "RawKind")]
pub enum StageKind {
    /// A plain `run:` command.
    Run,
    Context(Context),
    Agent(Agent),
    Tests(Tests),
    Diff(Diff),
    JsonSchema(JsonSchema),
    Command(Command),
    OpenApi(OpenApi),
    Equivalence(Equivalence),
    Bench(Bench),
    Policy(PolicyParams),
    Flags(Flags),
    Approve(Approve),
    Ship(Ship),
}

/// `uses: context`: the bundle of what the agent should read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_log: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<bool>,
}

/// `uses: agent`: which agent, and its prompt (inline or from a file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<String>,
}

/// `uses: grade.tests`: `FAIL_TO_PASS` must flip, `PASS_TO_PASS` must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tests {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_to_pass: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_to_pass: Option<PassToPass>,
    /// The compiler always sets it: the stage's own list, or the usual test locations and the
    /// policy's protected paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_files: Option<Vec<String>>,
    /// Which reader reads the results; without it, `JUnit` when there is a report, else the log
    /// as unittest or pytest prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TestFormat>,
    /// How many times the base revision runs (default 2, at most 20): `PASS_TO_PASS` counts
    /// only the tests that pass every time, and those that flip are reported as flaky.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_runs: Option<u64>,
}

/// The output form a reader reads, as a stage names it (`with: { format: ... }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestFormat {
    /// pytest's own output: `-rA` summary lines, `-v` result lines, or the default (which names
    /// only failing tests).
    #[serde(rename = "pytest")]
    Pytest,
    /// `python -m unittest -v`.
    #[serde(rename = "unittest")]
    Unittest,
    /// The default human output of Rust's libtest, as `cargo test` prints it.
    #[serde(rename = "libtest")]
    Libtest,
    /// `go test -json`.
    #[serde(rename = "gotest-json")]
    GoTestJson,
    /// TAP, as `node --test` prints it.
    #[serde(rename = "tap")]
    Tap,
    /// `JUnit` XML from any runner (pytest, nextest, Node, Maven Surefire, Gradle, jest, vitest,
    /// mocha): read from the report file, not from the log.
    #[serde(rename = "junit")]
    Junit,
}

impl TestFormat {
    pub const NAMES: &'static [&'static str] = &["pytest", "unittest", "libtest", "gotest-json", "tap", "junit"];

    pub fn parse(name: &str) -> Option<TestFormat> {
        Some(match name {
            "pytest" => TestFormat::Pytest,
            "unittest" => TestFormat::Unittest,
            "libtest" => TestFormat::Libtest,
            "gotest-json" => TestFormat::GoTestJson,
            "tap" => TestFormat::Tap,
            "junit" => TestFormat::Junit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TestFormat::Pytest => "pytest",
            TestFormat::Unittest => "unittest",
            TestFormat::Libtest => "libtest",
            TestFormat::GoTestJson => "gotest-json",
            TestFormat::Tap => "tap",
            TestFormat::Junit => "junit",
        }
    }
}

/// Which tests must keep passing: `true` for every test that passes on the base revision (every
/// time it runs), or the list of them, as SWE-bench's `PASS_TO_PASS` names them (each a template).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PassToPass {
    All(bool),
    Only(Vec<String>),
}

/// `uses: grade.diff`: the change's size and what it touches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_changed_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_changed_lines: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_dependencies: Option<bool>,
    /// Paths (globs) where a change may reach into the test framework (see the tamper signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_framework_in: Option<Vec<String>>,
}

/// `uses: grade.jsonschema`: files valid against a schema.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchema {
    pub schema: String,
    pub files: Vec<String>,
}

/// `uses: grade.command`: a command whose exit status is the verdict.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub command: String,
}

/// `uses: grade.openapi` (not runnable in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApi {
    pub spec: String,
    pub start: String,
    pub base_url: String,
}

/// `uses: grade.equivalence` (not runnable in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equivalence {
    pub command: String,
    pub inputs: String,
}

/// `uses: grade.bench` (not runnable in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bench {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
}

/// `uses: grade.policy` (not runnable in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyParams {
    pub policy: String,
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// `uses: grade.flags` (not runnable in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flags {
    pub flag: String,
    pub command: String,
}

/// `uses: approve`: a human gate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `uses: ship`: commit, push, open the pull request. Strings are templates, rendered at run time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ship {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl StageKind {
    /// Builds a kind from its name and `with:` parameters, as a pipeline or a record writes them.
    pub fn from_parts(name: &str, with: IndexMap<String, Value>) -> Result<StageKind, String> {
        fn params<T: serde::de::DeserializeOwned>(name: &str, with: IndexMap<String, Value>) -> Result<T, String> {
            serde_json::from_value(Value::Object(with.into_iter().collect()))
                .map_err(|e| format!("`{name}` parameters: {e}"))
        }
        Ok(match name {
            "run" if with.is_empty() => StageKind::Run,
            "run" => return Err("a `run` stage takes no `with` parameters".to_owned()),
            "context" => StageKind::Context(params(name, with)?),
            "agent" => StageKind::Agent(params(name, with)?),
            "grade.tests" => StageKind::Tests(params(name, with)?),
            "grade.diff" => StageKind::Diff(params(name, with)?),
            "grade.jsonschema" => StageKind::JsonSchema(params(name, with)?),
            "grade.command" => StageKind::Command(params(name, with)?),
            "grade.openapi" => StageKind::OpenApi(params(name, with)?),
            "grade.equivalence" => StageKind::Equivalence(params(name, with)?),
            "grade.bench" => StageKind::Bench(params(name, with)?),
            "grade.policy" => StageKind::Policy(params(name, with)?),
            "grade.flags" => StageKind::Flags(params(name, with)?),
            "approve" => StageKind::Approve(params(name, with)?),
            "ship" => StageKind::Ship(params(name, with)?),
            other => return Err(format!("`{other}` is not a stage kind")),
        })
    }

    /// The name a pipeline writes in `uses:` (`run` for a command).
    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Run => "run",
            StageKind::Context(_) => "context",
            StageKind::Agent(_) => "agent",
            StageKind::Tests(_) => "grade.tests",
            StageKind::Diff(_) => "grade.diff",
            StageKind::JsonSchema(_) => "grade.jsonschema",
            StageKind::Command(_) => "grade.command",
            StageKind::OpenApi(_) => "grade.openapi",
            StageKind::Equivalence(_) => "grade.equivalence",
            StageKind::Bench(_) => "grade.bench",
            StageKind::Policy(_) => "grade.policy",
            StageKind::Flags(_) => "grade.flags",
            StageKind::Approve(_) => "approve",
            StageKind::Ship(_) => "ship",
        }
    }

    /// Whether this version of lightsout can run the kind (the others are known to the format,
    /// so a pipeline naming them compiles, and is refused before anything runs).
    pub fn runnable(&self) -> bool {
        !matches!(
            self,
            StageKind::OpenApi(_)
                | StageKind::Equivalence(_)
                | StageKind::Bench(_)
                | StageKind::Policy(_)
                | StageKind::Flags(_)
        )
    }

    /// Whether the kind runs on the host, inside lightsout, rather than in a container.
    pub fn on_host(&self) -> bool {
        matches!(self, StageKind::Context(_) | StageKind::Diff(_) | StageKind::JsonSchema(_) | StageKind::Ship(_))
    }

    /// The shell command of a grader that runs one in its container.
    pub fn grader_command(&self) -> Option<&str> {
        match self {
            StageKind::Tests(t) => Some(&t.command),
            StageKind::Command(c) => Some(&c.command),
            _ => None,
        }
    }

    /// Outputs the kind always sets, besides those the stage declares.
    pub fn implied_outputs(&self) -> &'static [&'static str] {
        match self {
            StageKind::Context(_) => &["bundle", "files", "omitted"],
            _ => &[],
        }
    }

    /// The parameters as a pipeline writes them.
    pub fn with(&self) -> IndexMap<String, Value> {
        RawKind::from(self.clone()).with
    }
}

/// The form a plan's JSON keeps: `kind` and an untyped `with`.
#[derive(Serialize, Deserialize)]
struct RawKind {
    kind: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    with: IndexMap<String, Value>,
}

impl TryFrom<RawKind> for StageKind {
    type Error = String;
    fn try_from(raw: RawKind) -> Result<StageKind, String> {
        StageKind::from_parts(&raw.kind, raw.with)
    }
}

impl From<StageKind> for RawKind {
    fn from(kind: StageKind) -> RawKind {
        fn map<T: Serialize>(params: &T) -> IndexMap<String, Value> {
            match serde_json::to_value(params) {
                Ok(Value::Object(m)) => m.into_iter().collect(),
                _ => IndexMap::new(),
            }
        }
        let with = match &kind {
            StageKind::Run => IndexMap::new(),
            StageKind::Context(p) => map(p),
            StageKind::Agent(p) => map(p),
            StageKind::Tests(p) => map(p),
            StageKind::Diff(p) => map(p),
            StageKind::JsonSchema(p) => map(p),
            StageKind::Command(p) => map(p),
            StageKind::OpenApi(p) => map(p),
            StageKind::Equivalence(p) => map(p),
            StageKind::Bench(p) => map(p),
            StageKind::Policy(p) => map(p),
            StageKind::Flags(p) => map(p),
            StageKind::Approve(p) => map(p),
            StageKind::Ship(p) => map(p),
        };
        RawKind { kind: kind.name().to_owned(), with }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_to_the_same_kind_and_parameters() -> Result<(), String> {
        let with: IndexMap<String, Value> = serde_json::from_str(
            r#"{"command": "pytest -q", "fail_to_pass": ["tests/test_x.py::test_f[a b]"], "pass_to_pass": false}"#,
        )
        .map_err(|e| e.to_string())?;
        let kind = StageKind::from_parts("grade.tests", with.clone())?;
        assert_eq!(kind.name(), "grade.tests");
        let mut back = kind.with();
        back.sort_keys();
        let mut want = with;
        want.sort_keys();
        assert_eq!(back, want, "only what the pipeline set is written, `false` included");
        let json = serde_json::to_string(&kind).map_err(|e| e.to_string())?;
        assert_eq!(serde_json::from_str::<StageKind>(&json).map_err(|e| e.to_string())?, kind);
        Ok(())
    }

    #[test]
    fn unknown_kinds_and_parameters_are_refused() {
        assert!(StageKind::from_parts("grade.nope", IndexMap::new()).is_err());
        let mut with = IndexMap::new();
        with.insert("commandd".to_owned(), Value::from("x"));
        assert!(StageKind::from_parts("grade.command", with.clone()).is_err());
        assert!(StageKind::from_parts("run", with).is_err());
    }
}
