//! The graders end to end: context, grade.diff, grade.jsonschema, grade.tests (baselines and
//! result readers) and grade.command, on real executors.

use std::process::Command;

use super::{lightsout, output};

use super::support::{BUSYBOX, Repo, finished, log_text, outcome};

#[test]
fn context_bundles_docs_files_and_mentions_never_following_symlinks() {
    let repo = Repo::new(
        "  ctx:\n    uses: context\n    with: { include: [\"src/**\"], max_bytes: 20000, git_log: 5 }\n  after:\n    needs: [ctx]\n    run: echo files={{ stages.ctx.outputs.files }}\n",
    );
    let p = repo.path();
    std::fs::create_dir_all(p.join("src")).expect("mkdir");
    std::fs::create_dir_all(p.join("lib")).expect("mkdir");
    std::fs::write(p.join("AGENTS.md"), "Run the tests with make test.\n").expect("agents");
    std::fs::write(p.join("src/main.py"), "print('hi')\n").expect("src");
    std::fs::write(p.join("lib/util.py"), "def parse_config():\n    pass\n").expect("lib");
    std::fs::write(p.join(".gitignore"), "secret.env\n").expect("ignore");
    std::fs::write(p.join("secret.env"), "TOKEN=do-not-bundle\n").expect("env");
    std::os::unix::fs::symlink("/etc/passwd", p.join("src/passwd")).expect("symlink");
    std::fs::write(p.join("t.md"), "---\nid: T-2\ntitle: parse_config() crashes\n---\nIt crashes.\n").expect("ticket");
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(p).output().expect("git");
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "files"]);
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let run = repo.run_ids().pop().expect("run");
    let bundle = std::fs::read_to_string(repo.record(&run).join("stages/ctx/context.md")).expect("context.md");
    assert!(bundle.contains("# Ticket T-2") && bundle.contains("It crashes."), "{bundle}");
    assert!(bundle.contains("### AGENTS.md") && bundle.contains("make test"), "{bundle}");
    assert!(bundle.contains("### src/main.py"), "{bundle}");
    assert!(bundle.contains("mention parse_config") && bundle.contains("### lib/util.py"), "{bundle}");
    assert!(bundle.contains("- src/passwd: a symbolic link (not followed)"), "{bundle}");
    assert!(!bundle.contains("root:x:0:0"), "the symlink was followed");
    assert!(!bundle.contains("do-not-bundle"), "a .gitignored file was bundled");
    assert!(bundle.contains("## Recent history"), "{bundle}");
    assert!(log_text(&ev, "after").contains("files=4"), "{ev:#?}");
}

#[test]
fn grade_diff_gives_a_structured_verdict() {
    let stages = |edit: &str| {
        format!(
            "  edit:\n    run: {edit}\n  scope:\n    needs: [edit]\n    uses: grade.diff\n    with: {{ protect: [\"tests/**\"], max_changed_lines: 5 }}\n"
        )
    };
    // A small change to an unprotected file passes.
    let repo = Repo::new(&stages("echo fixed >> README"));
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let v = &finished(&ev, "scope")[0]["verdict"];
    assert_eq!(v["pass"], true, "{v:#?}");
    assert_eq!(v["details"]["changed_files"], 1);

    // Touching a protected path, adding a credential and a dependency manifest fails, with reasons.
    let repo = Repo::new(&stages(
        "mkdir -p tests && echo x > tests/test_a.py && echo AKIAABCDEFGHIJKLMNOP > creds.txt && echo '[dependencies]' > Cargo.toml",
    ));
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    let v = &finished(&ev, "scope")[0]["verdict"];
    assert_eq!(v["pass"], false);
    let reasons: Vec<&str> =
        v["reasons"].as_array().map(|a| a.iter().filter_map(|r| r.as_str()).collect()).unwrap_or_default();
    assert!(reasons.iter().any(|r| r.contains("tests/test_a.py is protected")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("creds.txt adds what looks like an AWS access key id")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("Cargo.toml changed")), "{reasons:?}");
    // The verdict is in the record, for reports.
    let run = repo.run_ids().pop().expect("run");
    let (_, show, _) = output(lightsout(repo.path()).args(["runs", "show", &run, "--format", "json"]));
    assert!(show.contains("\"verdict\""), "{show}");
}

#[test]
fn grade_jsonschema_checks_json_and_yaml_files() {
    let stages = "  edit:\n    run: |\n      printf 'name: ok\\nport: 80\\n' > conf/a.yaml; printf '{\"name\": 3}' > conf/b.json\n  valid:\n    needs: [edit]\n    uses: grade.jsonschema\n    with: { schema: \"schema/{{ ticket.id }}.json\", files: [\"{{ 'conf' }}/*\"] }\n";
    let repo = Repo::new(stages);
    let p = repo.path();
    std::fs::create_dir_all(p.join("schema")).expect("mkdir");
    std::fs::create_dir_all(p.join("conf")).expect("mkdir");
    std::fs::write(p.join("conf/.keep"), "").expect("keep");
    std::fs::write(
        // Its parameters are templates, rendered when the stage runs.
        p.join("schema/T-1.json"),
        r#"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}"#,
    )
    .expect("schema");
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(p).output().expect("git");
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "schema"]);
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    let reasons: Vec<String> = finished(&ev, "valid")[0]["verdict"]["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(reasons.iter().any(|r| r.starts_with("conf/b.json at /name:")), "{reasons:?}");
    assert!(!reasons.iter().any(|r| r.starts_with("conf/a.yaml")), "{reasons:?}");
}

#[test]
fn a_baseline_is_reused_for_the_same_image_and_command_only() {
    let pipeline = |image: &str| {
        format!(
            "  tests:\n    uses: grade.tests\n    image: \"{image}\"\n    with:\n      fail_to_pass: [t.a]\n      command: printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n"
        )
    };
    let repo = Repo::new(&pipeline(BUSYBOX));
    let base_logs = |repo: &Repo| {
        repo.run_ids().iter().filter(|r| repo.record(r).join("stages/tests/1.base.log").is_file()).count()
    };
    repo.run(&[]);
    repo.run(&[]);
    assert_eq!(base_logs(&repo), 1, "the same image and command ran the base revision twice");
    // Another image: the cached baseline does not apply.
    std::fs::write(
        repo.path().join("pipelines/misc.yaml"),
        format!("version: 1\ncategory: misc\nstages:\n{}", pipeline("lightsout-test/debian:bookworm")),
    )
    .expect("pipeline");
    repo.run(&[]);
    assert_eq!(base_logs(&repo), 2, "a baseline from another image was reused");
}

#[test]
fn grade_tests_reads_junit_reports() {
    let stages = r#"  edit:
    run: echo yes > fixed
  tests:
    needs: [edit]
    uses: grade.tests
    with:
      fail_to_pass: [t.bug]
      pass_to_pass: true
      command: |
        if [ -f fixed ]; then r=''; else r='<failure message="wrong"/>'; fi
        printf '<testsuite><testcase classname="t" name="bug">%s</testcase><testcase classname="t" name="other"/></testsuite>' "$r" > $LIGHTSOUT_JUNIT
"#;
    let repo = Repo::new(stages);
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let v = &finished(&ev, "tests")[0]["verdict"];
    assert_eq!(v["pass"], true, "{v:#?}");
    assert_eq!(v["details"]["fail_to_pass"][0]["base"], false);
    assert_eq!(v["details"]["fail_to_pass"][0]["candidate"], true);
    assert_eq!(v["details"]["base"]["passed"], 1);
}

#[test]
fn grade_tests_reads_the_format_it_is_told_and_cross_checks_it() {
    // libtest's output, printed: `candidate` is what the test command prints after the edit.
    let stages = |candidate: &str| {
        format!(
            r"  edit:
    run: echo yes > fixed
  tests:
    needs: [edit]
    uses: grade.tests
    with:
      format: libtest
      fail_to_pass: [tests::bug]
      pass_to_pass: true
      command: |
        if [ -f fixed ]; then {candidate}; fi
        printf 'test tests::bug ... FAILED\ntest tests::other ... ok\n\nfailures:\n    tests::bug\n\n'
        echo 'test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out'; exit 101
"
        )
    };
    let all_pass =
        "printf 'test tests::bug ... ok\\ntest tests::other ... ok\\n'; echo 'test result: ok. 2 passed; 0 failed'";
    // A fix: FAIL_TO_PASS flips, in its native form.
    let repo = Repo::new(&stages(&format!("{all_pass}; exit 0")));
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert_eq!(finished(&ev, "tests")[0]["verdict"]["details"]["fail_to_pass"][0]["candidate"], true);
    // Every test passed, yet the command failed: not a pass.
    let repo = Repo::new(&stages(&format!("{all_pass}; exit 1")));
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    let v = finished(&ev, "tests")[0]["verdict"].to_string();
    assert!(v.contains("exited 1, but every test read passed"), "{v}");
    // Output that cannot be read is an infrastructure fault, not the candidate's failure.
    let repo = Repo::new(&stages("echo 'Segmentation fault'; exit 139"));
    let (code, ev, _) = repo.run(&[]);
    assert_eq!((code, outcome(&ev, "tests")), (3, "fault".to_owned()), "{ev:#?}");
    assert!(finished(&ev, "tests")[0]["reason"].as_str().is_some_and(|r| r.contains("cannot tell")), "{ev:#?}");
    // A format lightsout has no reader for is refused before anything runs.
    let repo = Repo::new("  tests:\n    uses: grade.tests\n    with: { format: mocha, command: 'true' }\n");
    let (code, _, err) = repo.run(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`with.format` of `grade.tests` must be one of pytest, unittest"), "{err}");
}

#[test]
fn grade_command_gives_a_verdict_from_its_exit_status() {
    let repo =
        Repo::new("  lint:\n    uses: grade.command\n    with: { command: \"echo 'style: line too long'; exit 2\" }\n");
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    let v = &finished(&ev, "lint")[0]["verdict"];
    assert_eq!(v["pass"], false);
    assert_eq!(v["details"]["exit_code"], 2);
    assert!(v["reasons"].as_array().is_some_and(|r| r.iter().any(|x| x == "style: line too long")), "{v:#?}");
}
