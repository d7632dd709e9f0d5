//! The commands as a user runs them: exit codes, output, and `init`'s manners.

use super::{lightsout, output, root};

#[test]
fn help_documents_the_exit_codes() {
    let (code, out, _) = output(lightsout(root()).arg("--help"));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn bad_arguments_exit_2() {
    let (code, _, err) = output(lightsout(root()).arg("valdate"));
    assert_eq!(code, 2);
    assert!(err.contains("validate"), "{err}");
}

#[test]
fn validate_the_example() {
    let (code, out, err) = output(lightsout(&root().join("examples/bugfix")).arg("validate"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ok  bugfix (pipelines/bugfix.yaml): 6 stages\n");
}

#[test]
fn validate_reports_json_and_exits_2() {
    let (code, out, _) = output(lightsout(root()).args([
        "validate",
        "--factory",
        "tests/fixtures/factory.yaml",
        "--pipeline",
        "tests/malformed/dangling-needs.yaml",
        "--format",
        "json",
    ]));
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 8);
    assert_eq!(v["errors"][0]["column"], 13);
    assert_eq!(v["errors"][0]["hint"], "did you mean `build`?");
}

#[test]
fn validate_finds_the_factory_in_a_parent_directory() {
    let (code, _, err) = output(lightsout(&root().join("examples/bugfix/tickets")).arg("validate"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn no_factory_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (code, _, err) = output(lightsout(dir.path()).arg("validate"));
    assert_eq!(code, 2);
    assert!(err.contains("no factory.yaml here or in any parent directory"), "{err}");
    assert!(err.contains("lightsout init"), "{err}");
    Ok(())
}

#[test]
fn graph_formats() {
    let dir = root().join("examples/bugfix");
    for format in ["text", "dot", "mermaid"] {
        let (code, out, err) = output(lightsout(&dir).args(["graph", "--format", format]));
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(format!("graph_{format}"), out);
    }
}

#[test]
fn plan_for_the_example_ticket() {
    let (code, out, err) =
        output(lightsout(&root().join("examples/bugfix")).args(["plan", "--ticket", "tickets/BUG-1.md"]));
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn plan_json_is_machine_readable() {
    let (code, out, err) = output(lightsout(&root().join("examples/bugfix")).args([
        "plan",
        "--ticket",
        "tickets/BUG-1.md",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["route"]["category"], "bugfix");
    let ids: Vec<&str> =
        v["plan"]["stages"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["context", "reproduce", "fix", "tests", "scope", "ship"]);
    assert_eq!(v["plan"]["stages"][3]["workspace"], "read-only");
}

#[test]
fn init_detects_the_repository_and_never_overwrites() -> Result<(), Box<dyn std::error::Error>> {
    for (marker, test_cmd) in [
        ("Cargo.toml", "cargo test"),
        ("pyproject.toml", "python3 -m pytest"),
        ("package.json", "npm test"),
        ("go.mod", "go test ./..."),
        ("", "make test"),
    ] {
        let dir = tempfile::tempdir()?;
        if !marker.is_empty() {
            std::fs::write(dir.path().join(marker), "")?;
        }
        let (code, _, err) = output(lightsout(dir.path()).arg("init"));
        assert_eq!(code, 0, "{err}");
        let bugfix = std::fs::read_to_string(dir.path().join("pipelines/bugfix.yaml"))?;
        assert!(bugfix.contains(&format!("command: {test_cmd}")), "{marker}: {bugfix}");
        let (code, _, err) = output(lightsout(dir.path()).arg("validate"));
        assert_eq!(code, 0, "{marker}: {err}");
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("factory.yaml"), "mine\n")?;
    let (code, _, err) = output(lightsout(dir.path()).arg("init"));
    assert_eq!(code, 2);
    assert!(err.contains("factory.yaml") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("factory.yaml"))?, "mine\n");
    let (code, _, err) = output(lightsout(dir.path()).args(["init", "--force"]));
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read_to_string(dir.path().join("factory.yaml"))?, "mine\n");
    Ok(())
}

#[test]
fn schema_and_completions_print() {
    let (code, out, _) = output(lightsout(root()).args(["schema", "factory"]));
    assert_eq!(code, 0);
    assert!(out.contains("\"title\": \"lightsout factory\""));
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = output(lightsout(root()).args(["completions", shell]));
        assert_eq!(code, 0);
        assert!(out.contains("validate"), "{shell}");
    }
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let mut child = lightsout(super::root())
        .args(["schema", "pipeline"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
