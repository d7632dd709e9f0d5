//! What `init` finds in a repository: its ecosystem, its test runner, and from them the commands
//! a pipeline runs (the whole suite for `grade.tests`, one named test for `reproduce`), the
//! reader of their results, the image, and how the test dependencies get into it.
//!
//! Python, Rust and Go are here; Node, whose runner is read from `package.json`, is in
//! [`super::node`].

use std::path::Path;

/// A template that names the failing test, shell-quoted when the stage is rendered.
pub(super) const TEST: &str = "{{ inputs.failing_test }}";

/// What init writes for the repository it found.
pub(super) struct Setup {
    /// What was found, for init's output: `pyproject.toml, tests with pytest`.
    pub(super) found: String,
    /// The official image of the toolchain (lightsout never pulls: the user pulls or builds it).
    pub(super) image: &'static str,
    /// The whole test suite, as `grade.tests` runs it.
    pub(super) grade: String,
    /// One test, [`TEST`], as `reproduce` runs it (may be several lines of shell).
    pub(super) reproduce: String,
    /// The result reader of `grade.tests` (`with: format`).
    pub(super) format: Option<&'static str>,
    /// How `failing_test` names a test, for the pipeline's input description.
    pub(super) test_id: &'static str,
    /// The test dependencies, when the toolchain image lacks them.
    pub(super) deps: Option<Deps>,
    pub(super) build: String,
    pub(super) bench: String,
    pub(super) run: String,
    pub(super) serve: String,
    /// Things the user should know, said by init and kept as comments.
    pub(super) notes: Vec<String>,
}

/// How the test dependencies get installed: a Dockerfile `FROM` the toolchain image that copies
/// the manifests (and only them: the image is rebuilt when they change) and installs.
pub(super) struct Deps {
    /// The manifests, relative to the repository.
    pub(super) copy: Vec<String>,
    /// The Dockerfile's lines after `COPY`, run in the directory the manifests are in.
    pub(super) steps: Vec<String>,
    /// What they install, for init's output and the Dockerfile's comment.
    pub(super) what: String,
}

/// The repository's setup, or `None` when no known build file is there.
pub(super) fn detect(dir: &Path) -> Option<Setup> {
    if dir.join("Cargo.toml").is_file() {
        Some(rust(dir))
    } else if dir.join("go.mod").is_file() {
        Some(go(dir))
    } else if dir.join("package.json").is_file() {
        Some(super::node::node(dir))
    } else {
        python(dir)
    }
}

pub(super) fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
}

/// Whether a TOML-like manifest has a non-empty table whose header contains `dependencies`.
fn has_dependency_table(text: &str) -> bool {
    let mut in_deps = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.contains("dependencies");
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            return true;
        }
    }
    false
}

fn rust(dir: &Path) -> Setup {
    let manifest = read(dir, "Cargo.toml");
    let mut notes = Vec::new();
    let deps = has_dependency_table(&manifest).then(|| {
        let mut copy = vec!["Cargo.toml".to_owned()];
        if dir.join("Cargo.lock").is_file() {
            copy.push("Cargo.lock".into());
        }
        if manifest.contains("[workspace]") {
            notes.push(
                "a Cargo workspace: add its members' Cargo.toml files to the COPY line of lightsout.Dockerfile".into(),
            );
        }
        Deps {
            copy,
            // `cargo fetch` needs a target; the crates land in the image's CARGO_HOME.
            steps: vec![
                "RUN mkdir -p src && touch src/lib.rs && cargo fetch".into(),
                "ENV CARGO_NET_OFFLINE=true".into(),
            ],
            what: "the crates Cargo.toml names (`cargo fetch`)".into(),
        }
    });
    Setup {
        found: "Cargo.toml, tests with cargo test".into(),
        image: "rust:1-bookworm",
        // Every test binary, also after one fails: PASS_TO_PASS needs them all.
        grade: "cargo test --no-fail-fast".into(),
        reproduce: format!("cargo test --no-fail-fast -- --exact {TEST}"),
        format: Some("libtest"),
        test_id: "the path cargo test prints for it, without the crate: `tests::parses_empty`",
        deps,
        build: "cargo build --all-targets".into(),
        bench: "cargo bench".into(),
        run: "cargo run --".into(),
        serve: "cargo run".into(),
        notes,
    }
}

/// `go test -run` on the packages that declare the test: `TestName` or `TestName/subtest`.
const GO_REPRODUCE: &str = r#"t=@TEST@
# The packages whose test files declare the test (all of them if none does).
pkgs=$(grep -rlE --include='*_test.go' "^func ${t%%/*}\(" . | xargs -r -n1 dirname | sort -u)
go test -json -run "^${t}\$" ${pkgs:-./...}"#;

fn go(dir: &Path) -> Setup {
    let module = read(dir, "go.mod");
    let requires = module.lines().any(|l| l.trim_start().starts_with("require"));
    let deps = requires.then(|| {
        let mut copy = vec!["go.mod".to_owned()];
        if dir.join("go.sum").is_file() {
            copy.push("go.sum".into());
        }
        Deps {
            copy,
            steps: vec!["RUN go mod download".into(), "ENV GOFLAGS=-mod=mod GOPROXY=off".into()],
            what: "the modules go.mod requires (`go mod download`)".into(),
        }
    });
    Setup {
        found: "go.mod, tests with go test".into(),
        image: "golang:1.23-bookworm",
        grade: "go test -json ./...".into(),
        reproduce: GO_REPRODUCE.replace("@TEST@", TEST),
        format: Some("gotest-json"),
        test_id: "the test function, or function/subtest: `TestParse` or `TestParse/empty`",
        deps,
        build: "go build ./...".into(),
        bench: "go test -run '^$' -bench . ./...".into(),
        run: "go run .".into(),
        serve: "go run .".into(),
        notes: Vec::new(),
    }
}

/// Python requirement files init copies into the test image, when present.
const REQUIREMENTS: &[&str] = &[
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "requirements-tests.txt",
    "dev-requirements.txt",
    "test-requirements.txt",
    "requirements/dev.txt",
    "requirements/test.txt",
    "requirements/tests.txt",
];

/// The extras and dependency groups taken for tests.
const PY_EXTRAS: &str = r#"("test", "tests", "testing", "dev")"#;

fn python(dir: &Path) -> Option<Setup> {
    let has = |rel: &str| dir.join(rel).is_file();
    let requirements: Vec<&str> = REQUIREMENTS.iter().copied().filter(|r| has(r)).collect();
    let manifests: Vec<&str> = ["pyproject.toml", "setup.cfg", "setup.py"].into_iter().filter(|m| has(m)).collect();
    if manifests.is_empty() && requirements.is_empty() {
        return None;
    }
    let text: String =
        manifests.iter().chain(&requirements).chain(&["tox.ini"]).map(|m| read(dir, m)).collect::<Vec<_>>().join("\n");
    let tests_dir = ["tests", "test"].into_iter().find(|d| dir.join(d).is_dir());
    let conftest = ["conftest.py", "tests/conftest.py", "test/conftest.py"].into_iter().any(has);
    let pytest = has("pytest.ini") || conftest || text.contains("pytest");
    let src_layout = dir.join("src").is_dir() && !has("src/__init__.py");

    // Where imports resolve: the source tree, not an installed copy (the image has only the
    // dependencies; the code under test is the workspace's).
    let mut path: Vec<&str> = Vec::new();
    if src_layout {
        path.push("src");
    }
    let (grade, reproduce, format, test_id) = if pytest {
        let py = "python3 -m pytest -rA";
        (
            py.to_owned(),
            format!("{py} {TEST}"),
            "pytest",
            "a pytest node id: `tests/test_codec.py::test_encode` or `tests/test_codec.py::TestCodec::test_encode`",
        )
    } else {
        // unittest discovers only packages: a tests directory without __init__.py is its own
        // top level, and its modules are imported from it.
        let discover = match tests_dir {
            Some(t) if !dir.join(t).join("__init__.py").is_file() => {
                path.push(t);
                format!("discover -v -s {t}")
            }
            _ => "discover -v".to_owned(),
        };
        (
            format!("python3 -m unittest {discover}"),
            format!("python3 -m unittest -v {TEST}"),
            "unittest",
            "a dotted unittest id: `tests.test_codec.CodecTest.test_encode`",
        )
    };
    let env = if path.is_empty() { String::new() } else { format!("PYTHONPATH={} ", path.join(":")) };

    let mut copy: Vec<String> = manifests.iter().filter(|m| **m != "setup.py").map(|m| (*m).to_owned()).collect();
    copy.extend(requirements.iter().map(|r| (*r).to_owned()));
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    if has("pyproject.toml") {
        steps.push(format!(
            "RUN python3 -c 'import tomllib; p = tomllib.load(open(\"pyproject.toml\", \"rb\")); r = p.get(\"project\", {{}}); x = r.get(\"optional-dependencies\", {{}}); g = p.get(\"dependency-groups\", {{}}); print(*r.get(\"dependencies\", []), *[d for k in {PY_EXTRAS} for d in x.get(k, []) + [s for s in g.get(k, []) if isinstance(s, str)]], sep=\"\\n\")' >> requirements.lightsout.txt"
        ));
    }
    if has("setup.cfg") {
        steps.push(format!(
            "RUN python3 -c 'import configparser; c = configparser.ConfigParser(); c.read(\"setup.cfg\"); v = lambda s, k: c.get(s, k, fallback=\"\").splitlines(); print(*[d.strip() for d in v(\"options\", \"install_requires\") + [d for k in {PY_EXTRAS} for d in v(\"options.extras_require\", k)] if d.strip()], sep=\"\\n\")' >> requirements.lightsout.txt"
        ));
    }
    for r in &requirements {
        steps.push(format!("RUN echo '-r {r}' >> requirements.lightsout.txt"));
    }
    if has("setup.py") && !has("pyproject.toml") && !has("setup.cfg") {
        notes.push("setup.py is code: the dependencies it names are not read; add them to lightsout.Dockerfile".into());
    }
    steps.push("RUN touch requirements.lightsout.txt && cat requirements.lightsout.txt".into());
    steps.push(
        "RUN ! grep -q . requirements.lightsout.txt || python3 -m pip install --no-cache-dir -r requirements.lightsout.txt"
            .into(),
    );
    if pytest {
        steps.push("RUN python3 -m pytest --version || python3 -m pip install --no-cache-dir pytest".into());
    }
    let runner = if pytest { "pytest" } else { "unittest" };
    let what = if pytest {
        "pytest and the dependencies the manifests name (the project's, its test and dev extras)"
    } else {
        "the dependencies the manifests name (the project's, its test and dev extras)"
    };
    Some(Setup {
        found: format!(
            "{}, tests with {runner}",
            manifests.iter().chain(&requirements).copied().collect::<Vec<_>>().join(", ")
        ),
        image: "python:3.12-bookworm",
        grade: format!("{env}{grade}"),
        reproduce: format!("{env}{reproduce}"),
        format: Some(format),
        test_id,
        deps: Some(Deps { copy, steps, what: what.into() }),
        build: "python3 -m compileall -q .".into(),
        bench: format!("{env}python3 -m pytest --benchmark-only"),
        run: format!("{env}python3 -m app"),
        serve: format!("{env}python3 -m app serve"),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_tables() {
        assert!(!has_dependency_table("[package]\nname = \"x\"\n\n[dependencies]\n\n[dev-dependencies]\n# none\n"));
        assert!(has_dependency_table("[package]\n[dev-dependencies]\nquickcheck = \"1\"\n"));
        assert!(has_dependency_table("[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n"));
    }
}
