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
fn validate_json_gives_each_problem_its_code() {
    for (file, codes) in [
        ("dangling-needs.yaml", &["needs.unknown", "needs.unknown"][..]),
        ("policy-image-not-allowed.yaml", &["policy.image"]),
        ("syntax-tabs.yaml", &["yaml.syntax"]),
        ("unknown-key-stage.yaml", &["field.unknown", "field.unknown"]),
        ("undefined-variable.yaml", &["template.unknown", "template.unknown"]),
        ("unknown-uses.yaml", &["kind.unknown"]),
        ("cycle.yaml", &["needs.cycle"]),
    ] {
        let pipeline = format!("tests/malformed/{file}");
        let (code, out, _) = output(lightsout(root()).args([
            "validate",
            "--factory",
            "tests/fixtures/factory.yaml",
            "--pipeline",
            &pipeline,
            "--format",
            "json",
        ]));
        assert_eq!(code, 2, "{file}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let found: Vec<&str> =
            v["errors"].as_array().into_iter().flatten().filter_map(|e| e["code"].as_str()).collect();
        assert_eq!(found, codes, "{file}: {out}");
        assert!(found.iter().all(|c| lightsout::diag::code::well_formed(c)), "{file}: {out}");
    }
}

#[test]
fn validate_shows_the_code_in_the_human_output() {
    let (code, _, err) = output(lightsout(root()).args([
        "validate",
        "--factory",
        "tests/fixtures/factory.yaml",
        "--pipeline",
        "tests/malformed/unknown-uses.yaml",
    ]));
    assert_eq!(code, 2);
    assert!(err.starts_with("error[kind.unknown]: unknown stage kind"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour when not a terminal: {err:?}");
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
    for (marker, text, test_cmd) in [
        ("Cargo.toml", "", "command: \"cargo test --no-fail-fast\", format: libtest"),
        ("pyproject.toml", "[tool.pytest.ini_options]\n", "command: \"python3 -m pytest -rA\", format: pytest"),
        ("setup.cfg", "", "command: \"python3 -m unittest discover -v\", format: unittest"),
        ("package.json", "{}", "command: \"node --test --test-reporter=tap\", format: tap"),
        (
            "package.json",
            r#"{"scripts": {"test": "mocha test/"}}"#,
            "command: \"mocha --reporter tap test/\", format: tap",
        ),
        ("go.mod", "module x\n", "command: \"go test -json ./...\", format: gotest-json"),
        ("", "", "command: make test,"),
    ] {
        let dir = tempfile::tempdir()?;
        if !marker.is_empty() {
            std::fs::write(dir.path().join(marker), text)?;
        }
        let (code, _, err) = output(lightsout(dir.path()).arg("init"));
        assert_eq!(code, 0, "{err}");
        let bugfix = std::fs::read_to_string(dir.path().join("pipelines/bugfix.yaml"))?;
        assert!(bugfix.contains(test_cmd), "{marker}: {bugfix}");
        let (code, _, err) = output(lightsout(dir.path()).arg("validate"));
        assert_eq!(code, 0, "{marker}: {err}");
    }
    // The test dependencies go into an image built from a Dockerfile init writes, which `plan`
    // lists with what it is built from and the manifests it copies.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\ndependencies = []\n[tool.pytest.ini_options]\n",
    )?;
    let (code, out, err) = output(lightsout(dir.path()).arg("init"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("found pyproject.toml, tests with pytest") && out.contains("build:lightsout.Dockerfile"),
        "{out}"
    );
    let dockerfile = std::fs::read_to_string(dir.path().join("lightsout.Dockerfile"))?;
    assert!(dockerfile.contains("COPY pyproject.toml pyproject.toml") && dockerfile.contains("pytest"), "{dockerfile}");
    std::fs::write(
        dir.path().join("t.md"),
        "---\nid: B-1\ntitle: t\nlabels: [bug]\nfailing_test: tests/test_x.py::test_y\n---\n",
    )?;
    let (code, out, err) = output(lightsout(dir.path()).args(["plan", "--ticket", "t.md"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("build:lightsout.Dockerfile: built from lightsout.Dockerfile at the base revision, FROM ")
            && out.contains("with pyproject.toml"),
        "{out}"
    );

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

/// A factory in a fresh git repository, with a repository policy, and an organisation policy
/// outside it.
fn layered(repo_policy: &str, stage: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let repo = tempfile::tempdir().expect("repo");
    let p = repo.path();
    std::fs::create_dir_all(p.join("pipelines")).expect("mkdir");
    std::fs::write(
        p.join("factory.yaml"),
        "version: 1\nname: t\ndefaults: { image: \"lightsout-test/busybox:latest\" }\ncategories:\n  misc: { pipeline: pipelines/misc.yaml }\npolicy: policy.yaml\n",
    )
    .expect("factory");
    std::fs::write(p.join("policy.yaml"), repo_policy).expect("policy");
    std::fs::write(p.join("pipelines/misc.yaml"), format!("version: 1\ncategory: misc\nstages:\n{stage}"))
        .expect("pipeline");
    std::fs::write(p.join("t.md"), "---\nid: T\ntitle: t\n---\n").expect("ticket");
    assert!(std::process::Command::new("git").arg("init").arg("-q").current_dir(p).status().expect("git").success());
    let org = tempfile::tempdir().expect("org");
    std::fs::write(
        org.path().join("org.yaml"),
        "version: 1\nimages: { allow: [\"lightsout-test/*\"] }\nresources: { memory: 2g }\nsecrets: { TOKEN: { stages: [run] } }\n",
    )
    .expect("org policy");
    (repo, org)
}

#[test]
fn the_organisation_policy_wins_and_the_repository_can_only_tighten() {
    // The repository tries to loosen: another image registry name and a secret the org gives
    // no stage. The organisation's policy still refuses the image.
    let (repo, org) = layered(
        "version: 1\nimages: { allow: [\"*\"] }\nsecrets: { TOKEN: { stages: [run] }, OTHER: { stages: [run] } }\n",
        "  a:\n    image: evil/miner:latest\n    secrets: [OTHER]\n    run: echo hi\n",
    );
    let org_file = org.path().join("org.yaml");
    let (code, _, err) = output(lightsout(repo.path()).args(["validate", "--policy"]).arg(&org_file));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("image `evil/miner:latest` is not allowed by policy") && err.contains("org.yaml"), "{err}");
    assert!(err.contains("secret `OTHER` is not allowed by policy"), "{err}");
    // Without the organisation policy the same repository passes: the loosening was only local.
    let (code, _, err) = output(lightsout(repo.path()).arg("validate"));
    assert_eq!(code, 0, "{err}");

    // The repository tightens: a lower memory ceiling than the org's binds.
    let (repo, org) =
        layered("version: 1\nresources: { memory: 256m }\n", "  a:\n    resources: { memory: 1g }\n    run: echo hi\n");
    let (code, _, err) = output(lightsout(repo.path()).args(["validate", "--policy"]).arg(org.path().join("org.yaml")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exceeds the policy ceiling of 256m") && err.contains("policy.yaml"), "{err}");

    // `plan` shows which rule of which layer allowed the image and the secret.
    let (repo, org) = layered(
        "version: 1\nimages: { allow: [\"lightsout-test/busybox:*\"] }\nsecrets: { TOKEN: { stages: [run] } }\n",
        "  a:\n    secrets: [{ name: TOKEN, as: file }]\n    run: echo hi\n",
    );
    let (code, plan, err) = output(
        lightsout(repo.path())
            .args(["plan", "--ticket", "t.md", "--category", "misc", "--policy"])
            .arg(org.path().join("org.yaml")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("org.yaml") && plan.contains("policy.yaml"), "{plan}");
    // The stage asked for the secret as a file; the plan says so.
    let secret_line = plan
        .lines()
        .find(|l| l.contains("TOKEN (from env TOKEN, as the file /run/secrets/TOKEN;"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(secret_line.contains("org.yaml") && secret_line.contains("policy.yaml:"), "{secret_line}");
    // Limits show the ceiling rule of the layer that sets one.
    let limits = plan.lines().find(|l| l.trim_start().starts_with("limits")).unwrap_or_else(|| panic!("{plan}"));
    assert!(limits.contains("memory ≤ 2g at") && limits.contains("org.yaml"), "{limits}");
}

#[test]
fn an_organisation_policy_inside_the_repository_is_refused() {
    let (repo, _org) = layered("version: 1\n", "  a:\n    run: echo hi\n");
    std::fs::write(repo.path().join("org.yaml"), "version: 1\nallow_unsandboxed: true\n").expect("org");
    let (code, _, err) = output(lightsout(repo.path()).args(["validate", "--policy", "org.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the repository"), "{err}");
}
