//! The acceptance suite: `init, swap in your agent, run` on real open-source projects, one or
//! more per ecosystem (Python with pytest and with unittest, Rust, Go, Node), as a new user
//! meets them.
//!
//! Each project's source is fetched at test time by pinned version and sha256 (see [`fetch`]),
//! a regression of ours is committed on top (`<label>.bug.patch`, beside this file), and then,
//! as a user would: `lightsout init` with no flags, the agent swapped for a script that applies
//! the fix (the reverse of the regression), `run`: it must pass every grader and ship. The same
//! with a wrong fix (`<label>.wrong.patch` on the regression) must fail, for the reason named.
//! Shipping goes to a local bare remote and a stand-in for GitHub's API on loopback.
//!
//! The projects' test images are the local toolchain images (`scripts/test-images`), which
//! `init` finds in place of the official ones it would name. These tests fail, never skip, when
//! Docker, an image or a download is missing.

mod fetch;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use fetch::Source;
use serde_json::Value;

use super::agent_loop::verdict_reasons;
use super::ship::fake_github;
use super::support::{events, finished, images};
use super::{lightsout, output, root};

/// One real project and the regression it gets.
struct Project {
    /// A unique name: the patch files' prefix.
    label: &'static str,
    source: Source,
    sha256: &'static str,
    /// What `init` must say it found (its runner).
    found: &'static str,
    /// The upstream test that catches the regression, as the ticket names it.
    failing_test: &'static str,
    bug: &'static str,
    wrong: &'static str,
    /// A reason the wrong fix's verdict must give.
    red: &'static str,
}

/// The toolchain images the projects run in.
const TOOLCHAIN_IMAGES: &[&str] = &[
    "lightsout-test/python:3.11-bookworm",
    "lightsout-test/rust:1.63-bookworm",
    "lightsout-test/golang:1.19-bookworm",
    "lightsout-test/node:18-bookworm",
];

fn toolchain_images() {
    images();
    let have =
        |i: &str| Command::new("docker").args(["image", "inspect", i]).output().is_ok_and(|o| o.status.success());
    if !TOOLCHAIN_IMAGES.iter().all(|i| have(i)) {
        let st =
            Command::new(root().join("scripts/test-images")).arg("--toolchains").status().expect("scripts/test-images");
        assert!(st.success(), "scripts/test-images failed");
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(dir: &Path, patch: &str) {
    let file = dir.join(".lightsout-test.patch");
    std::fs::write(&file, patch).expect("patch");
    git(dir, &["apply", ".lightsout-test.patch"]);
    std::fs::remove_file(file).expect("patch");
}

/// The files a patch changes.
fn files_of(patch: &str) -> Vec<&str> {
    patch.lines().filter_map(|l| l.strip_prefix("+++ b/")).collect()
}

/// A shell script that writes `files` (path, contents): the agent.
fn agent_script(files: &[(String, String)]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# The stand-in agent of the acceptance suite: writes the fixed files.\nset -e\ncat >/dev/null\n",
    );
    for (path, text) in files {
        assert!(!text.contains("__LIGHTSOUT_FIX__"), "{path}");
        let _ = write!(s, "cat > '{path}' <<'__LIGHTSOUT_FIX__'\n{text}__LIGHTSOUT_FIX__\n");
    }
    s
}

/// Swaps the agent init wrote (the placeholder `claude`) for the script at `script`.
fn swap_agent(repo: &Path, script: &str) {
    let path = repo.join("factory.yaml");
    let text = std::fs::read_to_string(&path).expect("factory.yaml");
    let placeholder = "  claude:\n    preset: claude-code\n    secrets: [ANTHROPIC_API_KEY]\n";
    let base = if text.contains(placeholder) {
        text.replace(placeholder, &format!("  claude:\n    command: [\"sh\", \"{script}\"]\n    prompt: stdin\n"))
    } else {
        let (head, _) = text.split_once("  claude:\n    command:").expect("an agent init wrote, or one swapped in");
        let rest = text.split_once("    prompt: stdin\n").map(|(_, r)| r).unwrap_or_default();
        format!("{head}  claude:\n    command: [\"sh\", \"{script}\"]\n    prompt: stdin\n{rest}")
    };
    std::fs::write(path, base).expect("factory.yaml");
}

/// Runs the ticket; (exit code, events, stderr).
fn run(repo: &Path, ticket: &Path, api: &str) -> (i32, Vec<Value>, String) {
    let (code, out, err) = output(
        lightsout(repo)
            .args(["run", "--format", "json", "--ticket"])
            .arg(ticket)
            .env("CI", "true")
            .env("GITHUB_TOKEN", "ghs_fakeTokenForTheLocalServer123456")
            .env("GITHUB_REPOSITORY", "acme/widgets")
            .env("GITHUB_API_URL", api),
    );
    (code, events(&out), err)
}

/// Why a run ended as it did: each finished stage's outcome and verdict reasons.
fn story(ev: &[Value]) -> String {
    ev.iter()
        .filter(|e| e["event"] == "stage_finished")
        .map(|e| if e["outcome"] == "succeeded" { format!("{} succeeded", e["stage"]) } else { e.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(p: &Project) {
    let started = Instant::now();
    toolchain_images();
    let tree =
        fetch::fetch(&p.source, p.sha256).unwrap_or_else(|e| panic!("{}: cannot fetch the source: {e}", p.label));
    let dir = tempfile::Builder::new().prefix(&format!("lightsout-real-{}-", p.label)).tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    let st = Command::new("cp").arg("-a").arg(&tree).arg(&repo).status().expect("cp");
    assert!(st.success());
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "upstream"]);

    // The fixes, as the files they leave: the upstream files, and the regression plus the wrong fix.
    let changed = files_of(p.bug);
    let read = |rel: &str| std::fs::read_to_string(repo.join(rel)).expect("source file");
    let good: Vec<(String, String)> = changed.iter().map(|f| ((*f).to_owned(), read(f))).collect();
    apply(&repo, p.bug);
    apply(&repo, p.wrong);
    let wrong: Vec<(String, String)> = files_of(p.wrong).iter().map(|f| ((*f).to_owned(), read(f))).collect();
    git(&repo, &["checkout", "-q", "--", "."]);
    apply(&repo, p.bug);
    git(&repo, &["commit", "-qam", "regression"]);

    // A new user: init with no flags.
    let (code, out, err) = output(lightsout(&repo).arg("init"));
    assert_eq!(code, 0, "{}: init: {out}{err}", p.label);
    assert!(out.contains(p.found), "{}: init should say it found {:?}:\n{out}", p.label, p.found);
    eprintln!("{}: init said:\n{out}", p.label);

    // ... swaps in an agent, commits, and runs.
    std::fs::create_dir_all(repo.join(".agent")).expect("mkdir");
    std::fs::write(repo.join(".agent/fix.sh"), agent_script(&good)).expect("agent");
    std::fs::write(repo.join(".agent/wrong.sh"), agent_script(&wrong)).expect("agent");
    swap_agent(&repo, ".agent/fix.sh");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "lightsout init, and an agent"]);
    let remote = dir.path().join("remote.git");
    let st = Command::new("git").args(["init", "-q", "--bare"]).arg(&remote).output().expect("git");
    assert!(st.status.success());
    git(&repo, &["remote", "add", "origin", &remote.to_string_lossy()]);
    let ticket = dir.path().join("ticket.md");
    std::fs::write(
        &ticket,
        format!(
            "---\nid: BUG-{label}\nlabels: [bug]\nfailing_test: \"{t}\"\n---\n# A regression in {label}\n\nThe test `{t}` fails.\n",
            label = p.label,
            t = p.failing_test
        ),
    )
    .expect("ticket");
    let (api, _seen) = fake_github();

    let (code, ev, err) = run(&repo, &ticket, &api);
    let told = story(&ev);
    assert_eq!(code, 0, "{}: the right fix must pass every grader and ship:\n{told}\n{err}", p.label);
    let tests = finished(&ev, "tests")[0];
    assert_eq!(tests["verdict"]["pass"], true, "{}: {told}", p.label);
    assert_eq!(tests["verdict"]["details"]["fail_to_pass"][0]["base"], false, "{}: {told}", p.label);
    assert_eq!(finished(&ev, "ship")[0]["outcome"], "succeeded", "{}: {told}", p.label);

    // The same with a wrong fix (the configuration comes from the working tree).
    swap_agent(&repo, ".agent/wrong.sh");
    let (code, ev, err) = run(&repo, &ticket, &api);
    let told = story(&ev);
    assert_eq!(code, 1, "{}: a wrong fix must fail:\n{told}\n{err}", p.label);
    assert_eq!(finished(&ev, "reproduce")[0]["outcome"], "succeeded", "{}: {told}", p.label);
    assert!(finished(&ev, "ship").is_empty(), "{}: a wrong fix must not ship: {told}", p.label);
    let why = verdict_reasons(&ev, "tests");
    assert!(why.iter().any(|r| r.contains(p.red)), "{}: the verdict should say {:?}: {why:#?}", p.label, p.red);
    eprintln!("{}: green and red in {:.1} s", p.label, started.elapsed().as_secs_f64());
}

#[test]
fn python_idna_with_pytest() {
    check(&Project {
        label: "idna",
        source: Source::Pypi("idna", "3.10"),
        sha256: "12f65c9b470abda6dc35cf8e63cc574b1c52b11df2c86030af0ac09b01b13ea9",
        found: "tests with pytest",
        failing_test: "tests/test_idna.py::IDNATests::test_check_hyphen_ok",
        bug: include_str!("idna.bug.patch"),
        wrong: include_str!("idna.wrong.patch"),
        red: "FAIL_TO_PASS tests/test_idna.py::IDNATests::test_check_hyphen_ok still fails",
    });
}

#[test]
fn python_more_itertools_with_unittest() {
    check(&Project {
        label: "more-itertools",
        source: Source::Pypi("more-itertools", "10.5.0"),
        sha256: "5482bfef7849c25dc3c6dd53a6173ae4795da2a41a80faea6700d9f5846c5da6",
        found: "tests with unittest",
        failing_test: "tests.test_more.FirstTests.test_default",
        bug: include_str!("more-itertools.bug.patch"),
        wrong: include_str!("more-itertools.wrong.patch"),
        red: "FAIL_TO_PASS tests.test_more.FirstTests.test_default still fails",
    });
}

#[test]
fn rust_strsim() {
    check(&Project {
        label: "strsim",
        source: Source::Crate("strsim", "0.11.1"),
        sha256: "7da8b5736845d9f2fcb837ea5d9e2628564b3b043a70948a3f0b778838c5fb4f",
        found: "tests with cargo test",
        failing_test: "tests::hamming_unequal_length",
        bug: include_str!("strsim.bug.patch"),
        wrong: include_str!("strsim.wrong.patch"),
        red: "PASS_TO_PASS",
    });
}

#[test]
fn rust_shlex() {
    check(&Project {
        label: "shlex",
        source: Source::Crate("shlex", "1.3.0"),
        sha256: "0fda2ff0d084019ba4d7c6f371c95d8fd75ce3524c3cb8fb653a3023f6323e64",
        found: "tests with cargo test",
        failing_test: "test_lineno",
        bug: include_str!("shlex.bug.patch"),
        wrong: include_str!("shlex.wrong.patch"),
        red: "FAIL_TO_PASS test_lineno still fails",
    });
}

#[test]
fn go_uuid_from_debian() {
    check(&Project {
        label: "uuid",
        source: Source::DebBinary(
            "golang-github-google-uuid-dev",
            "1.3.0-1",
            "usr/share/gocode/src/github.com/google/uuid",
        ),
        sha256: "f79ead959ee04842fcb410347e7023a3c4c357c17f77b9bb13cff30ef4353351",
        found: "tests with go test",
        failing_test: "TestUUID",
        bug: include_str!("uuid.bug.patch"),
        wrong: include_str!("uuid.wrong.patch"),
        red: "FAIL_TO_PASS TestUUID still fails",
    });
}

#[test]
fn node_pend_from_debian() {
    check(&Project {
        label: "pend",
        source: Source::DebSource("node-pend", "1.2.0-5"),
        sha256: "15856716655f1fd8d9696b47b2d3e13a5e17847ee94ef142b954bdfb4f7344fa",
        found: "tests with node, a test script",
        failing_test: "test.js",
        bug: include_str!("pend.bug.patch"),
        wrong: include_str!("pend.wrong.patch"),
        red: "FAIL_TO_PASS test.js still fails",
    });
}
