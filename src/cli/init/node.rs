//! Node: the test runner is the one `package.json`'s `test` script names (its linters before
//! `&&` left out), called directly with a reporter lightsout reads, since `npm test NAME` hands
//! the name to a script that ignores it. Without a test script, Node's own `node --test`.

use std::path::Path;

use super::detect::{Deps, Setup, TEST, read};

/// The runner of a `test` script, and the arguments the script gives it.
#[derive(Debug, PartialEq, Eq)]
enum Runner {
    /// `node --test [files]`.
    NodeTest(String),
    /// `node file.js`: a script that exits non-zero on failure; the file is the test.
    Script(String),
    Mocha(String),
    Tape(String),
    Ava(String),
    Jest(String),
    Vitest(String),
    Unknown(String),
}

/// Reads the runner from a `test` script: the first `&&`-separated command that is one.
fn runner(script: Option<&str>) -> Runner {
    let Some(script) = script else { return Runner::NodeTest(String::new()) };
    for part in script.split("&&").map(str::trim) {
        let mut words = part.splitn(2, char::is_whitespace);
        let first = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default().trim().to_owned();
        let first = first.strip_prefix("./node_modules/.bin/").unwrap_or(first);
        match first {
            "node" | "nodejs" => match rest.strip_prefix("--test") {
                Some(args) => return Runner::NodeTest(args.trim().to_owned()),
                None if !rest.is_empty() && !rest.starts_with('-') => return Runner::Script(rest),
                None => {}
            },
            "mocha" | "_mocha" => return Runner::Mocha(rest),
            "tape" => return Runner::Tape(rest),
            "ava" => return Runner::Ava(rest),
            "jest" => return Runner::Jest(rest),
            "vitest" => return Runner::Vitest(rest.strip_prefix("run").unwrap_or(&rest).trim().to_owned()),
            _ => {}
        }
    }
    Runner::Unknown(script.to_owned())
}

/// `cmd args`, without a trailing space when there are none.
fn join(cmd: &str, args: &str) -> String {
    if args.is_empty() { cmd.to_owned() } else { format!("{cmd} {args}") }
}

/// The packages package.json names, installed into the test image, when it names any.
fn deps(dir: &Path, json: &serde_json::Value) -> Option<Deps> {
    let declared = |key: &str| json.get(key).and_then(serde_json::Value::as_object).is_some_and(|m| !m.is_empty());
    (declared("dependencies") || declared("devDependencies")).then(|| {
        let lock = dir.join("package-lock.json").is_file();
        let mut copy = vec!["package.json".to_owned()];
        if lock {
            copy.push("package-lock.json".into());
        }
        Deps {
            copy,
            steps: vec![
                format!("RUN {}", if lock { "npm ci" } else { "npm install" }),
                "ENV NODE_PATH=/lightsout/deps/node_modules PATH=/lightsout/deps/node_modules/.bin:$PATH".into(),
            ],
            what: "the packages package.json names, dev dependencies too".into(),
        }
    })
}

pub(super) fn node(dir: &Path) -> Setup {
    let text = read(dir, "package.json");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let script = json.pointer("/scripts/test").and_then(serde_json::Value::as_str);
    let dev_has = |name: &str| json.pointer(&format!("/devDependencies/{name}")).is_some();
    let mut notes = Vec::new();
    let tap = "node --test --test-reporter=tap";
    let (found, grade, reproduce, format, test_id) = match runner(script) {
        Runner::NodeTest(args) => (
            "node --test".to_owned(),
            join(tap, &args),
            join(&format!("{tap} --test-name-pattern={TEST}"), &args),
            Some("tap"),
            "the test's name, or `suite > name`",
        ),
        Runner::Script(file) => {
            notes.push(format!(
                "the test script runs `node {file}`: lightsout runs it under `node --test` to read its result, and the test to name is the file"
            ));
            let cmd = join(tap, &file);
            ("node, a test script".to_owned(), cmd.clone(), cmd, Some("tap"), "the test file: `test.js`")
        }
        Runner::Mocha(args) => (
            "mocha".to_owned(),
            join("mocha --reporter tap", &args),
            join(&format!("mocha --reporter tap --grep {TEST}"), &args),
            Some("tap"),
            "the test's full title, as mocha prints it",
        ),
        Runner::Tape(args) => {
            notes.push("tape cannot run one test by name: `reproduce` runs every test file".into());
            let cmd = join("tape", &args);
            ("tape".to_owned(), cmd.clone(), cmd, Some("tap"), "the test's name, as tape prints it")
        }
        Runner::Ava(args) => (
            "ava".to_owned(),
            join("ava --tap", &args),
            join(&format!("ava --tap --match {TEST}"), &args),
            Some("tap"),
            "the test's title",
        ),
        Runner::Jest(args) => {
            if !dev_has("jest-junit") {
                notes.push("jest writes JUnit only through the jest-junit reporter: add it to devDependencies".into());
            }
            let cmd =
                "JEST_JUNIT_OUTPUT_FILE=\"$LIGHTSOUT_JUNIT\" jest --ci --reporters=default --reporters=jest-junit";
            (
                "jest".to_owned(),
                join(cmd, &args),
                join(&format!("{cmd} -t {TEST}"), &args),
                Some("junit"),
                "the test's full name, as jest prints it",
            )
        }
        Runner::Vitest(args) => {
            let cmd = "vitest run --reporter=junit --outputFile=\"$LIGHTSOUT_JUNIT\"";
            (
                "vitest".to_owned(),
                join(cmd, &args),
                join(&format!("{cmd} -t {TEST}"), &args),
                Some("junit"),
                "the test's full name",
            )
        }
        Runner::Unknown(script) => {
            notes.push(format!(
                "no known test runner in the test script `{script}`: `grade.tests` runs `npm test` and cannot read per-test results; give it a reporter and a `format`"
            ));
            ("npm test".to_owned(), "npm test".to_owned(), "npm test".to_owned(), None, "a test id")
        }
    };
    let deps = deps(dir, &json);
    Setup {
        found: format!("package.json, tests with {found}"),
        image: "node:22-bookworm",
        grade,
        reproduce,
        format,
        test_id,
        deps,
        build: "npm run build".into(),
        bench: "npm run bench".into(),
        run: "npm start --".into(),
        serve: "npm start".into(),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_from_test_scripts() {
        assert_eq!(runner(None), Runner::NodeTest(String::new()));
        assert_eq!(runner(Some("node --test test/")), Runner::NodeTest("test/".into()));
        assert_eq!(runner(Some("xo && node test.js")), Runner::Script("test.js".into()));
        assert_eq!(runner(Some("eslint . && mocha -R spec test/*.js")), Runner::Mocha("-R spec test/*.js".into()));
        assert_eq!(runner(Some("tape test/*.js")), Runner::Tape("test/*.js".into()));
        assert_eq!(runner(Some("vitest run")), Runner::Vitest(String::new()));
        assert_eq!(runner(Some("make check")), Runner::Unknown("make check".into()));
    }
}
