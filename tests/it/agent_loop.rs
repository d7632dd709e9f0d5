//! The agent loop and the bundled bugfix example, end to end: a stand-in agent, its graders'
//! feedback, and what a correct, a wrong and a cheating fix get.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{lightsout, output, root};

use super::support::{Repo, events, finished, images, outcome};

/// A stand-in agent (no LLM here): it reads its prompt, notes each attempt, and fixes the file
/// only once the prompt carries the grader's feedback, unless told never to.
const AGENT: &str = r#"agents:
  scripted:
    command: ["sh", "-c", "n=$(cat attempts 2>/dev/null || echo 0); echo $((n + 1)) > attempts; cp $LIGHTSOUT_PROMPT_FILE prompt-$((n + 1)).md; if grep -q 'not fixed yet' $LIGHTSOUT_PROMPT_FILE && ! grep -q NEVER $LIGHTSOUT_PROMPT_FILE; then echo fixed > state; else echo broken > state; fi; echo '{\"type\":\"result\",\"total_cost_usd\":0.0123,\"usage\":{\"input_tokens\":100,\"output_tokens\":20}}'"]
    prompt: stdin
    usage: claude-stream-json
"#;

fn loop_pipeline(max: u32, extra: &str) -> String {
    format!(
        "  fix:\n    uses: agent\n    with:\n      agent: scripted\n      prompt: \"Fix {{{{ ticket.title }}}}{extra} (attempt {{{{ attempt }}}})\\n{{{{ feedback }}}}\"\n    loop: {{ until: [check], max_attempts: {max} }}\n  check:\n    needs: [fix]\n    uses: grade.command\n    with: {{ command: \"grep -q fixed state || (echo not fixed yet; exit 1)\" }}\n"
    )
}

#[test]
fn an_agent_loop_feeds_the_graders_verdicts_back() {
    let repo = Repo::full(&loop_pipeline(3, ""), None, AGENT);
    let (code, ev, err) = repo.run(&["--keep-workspace"]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert_eq!(finished(&ev, "fix").len(), 2, "{ev:#?}");
    assert_eq!(finished(&ev, "check").len(), 2);
    assert_eq!(outcome(&ev, "check"), "succeeded");
    assert!(ev.iter().any(|e| e["event"] == "loop_restarted" && e["attempt"] == 2));
    let run = repo.run_ids().pop().expect("run");
    let ws = repo.path().join(".lightsout/worktrees").join(&run);
    // The second attempt got the grader's output as feedback, and kept the first one's edits.
    let second = std::fs::read_to_string(ws.join("prompt-2.md")).expect("prompt 2");
    assert!(
        second.contains("(attempt 2)") && second.contains("## check") && second.contains("not fixed yet"),
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(ws.join("attempts")).expect("attempts").trim(), "2");
    // Token usage and cost read from the agent's stream-json; each attempt's diff recorded.
    let fix = finished(&ev, "fix")[1];
    assert_eq!(fix["outputs"]["tokens_in"], "100");
    assert_eq!(fix["outputs"]["cost_usd"], "0.012300");
    assert!(
        repo.record(&run).join("stages/fix/1.diff").is_file() && repo.record(&run).join("stages/fix/2.diff").is_file()
    );
}

#[test]
fn an_agent_loop_gives_up_after_max_attempts() {
    let repo = Repo::full(&loop_pipeline(2, " NEVER"), None, AGENT);
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    assert_eq!(finished(&ev, "fix").len(), 2);
    assert_eq!(finished(&ev, "check").len(), 2);
    assert_eq!(outcome(&ev, "check"), "failed");
    assert_eq!(ev.last().map(|e| e["status"].clone()), Some(Value::from("failed")));
}

/// The bundled bugfix example, copied into a fresh repository, with the stand-in agent set to
/// `mode` and the pipeline cut before `ship`.
pub(crate) fn bugfix_example(mode: &str) -> tempfile::TempDir {
    bugfix_example_with(mode, false)
}

/// The bundled example; with `ship`, the whole pipeline and a bare repository as `origin`.
fn bugfix_example_with(mode: &str, ship: bool) -> tempfile::TempDir {
    images();
    let dir = tempfile::tempdir().expect("temp dir");
    let src = root().join("examples/bugfix");
    let st = Command::new("cp").arg("-r").arg(format!("{}/.", src.display())).arg(dir.path()).status().expect("cp");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(dir.path().join(".lightsout"));
    std::fs::write(dir.path().join("agent/mode"), mode).expect("mode");
    if !ship {
        let pipeline = std::fs::read_to_string(dir.path().join("pipelines/bugfix.yaml")).expect("pipeline");
        let cut = pipeline.split("\n  ship:").next().unwrap_or(&pipeline).to_owned() + "\n";
        std::fs::write(dir.path().join("pipelines/bugfix.yaml"), cut).expect("pipeline");
    }
    let remote = dir.path().join(".lightsout-test-remote.git");
    let st = Command::new("git").args(["init", "-q", "--bare"]).arg(&remote).output().expect("git");
    assert!(st.status.success());
    let remote_s = remote.to_string_lossy().into_owned();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["remote", "add", "origin", remote_s.as_str()],
        &["add", "-A", "--", ".", ":!.lightsout-test-remote.git"],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "example"],
    ] {
        let st = Command::new("git").args(args).current_dir(dir.path()).output().expect("git");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }
    dir
}

pub(crate) fn run_example(dir: &Path) -> (i32, Vec<Value>, String) {
    let (code, out, err) = output(
        lightsout(dir)
            .args(["run", "--ticket", "tickets/BUG-1.md", "--format", "json", "--executor", "docker"])
            .env("CI", "true"),
    );
    (code, events(&out), err)
}

pub(crate) fn verdict_reasons(ev: &[Value], stage: &str) -> Vec<String> {
    finished(ev, stage)
        .last()
        .and_then(|f| f["verdict"]["reasons"].as_array())
        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn bugfix_example_a_correct_fix_passes_every_grader() {
    let dir = bugfix_example("correct");
    let (code, ev, err) = run_example(dir.path());
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert_eq!(outcome(&ev, "reproduce"), "succeeded", "the test must fail on the base revision");
    let tests = finished(&ev, "tests")[0];
    assert_eq!(tests["verdict"]["pass"], true, "{tests:#?}");
    assert_eq!(tests["verdict"]["details"]["fail_to_pass"][0]["base"], false);
    assert_eq!(tests["verdict"]["details"]["fail_to_pass"][0]["candidate"], true);
    assert_eq!(finished(&ev, "fix").len(), 1);
    let run = ev[0]["run_id"].as_str().expect("run id").to_owned();
    let patch =
        std::fs::read_to_string(dir.path().join(".lightsout/runs").join(&run).join("diff.patch")).expect("patch");
    assert!(patch.contains("+        return (ordered[middle - 1] + ordered[middle]) / 2"), "{patch}");
}

#[test]
fn bugfix_example_a_wrong_fix_fails_after_max_attempts_with_reasons() {
    let dir = bugfix_example("wrong");
    let (code, ev, err) = run_example(dir.path());
    assert_eq!(code, 1, "{err}");
    assert_eq!(finished(&ev, "fix").len(), 2, "max_attempts is 2");
    let reasons = verdict_reasons(&ev, "tests");
    assert!(
        reasons.iter().any(|r| r.contains("FAIL_TO_PASS tests.test_stats.MedianTest.test_even_length still fails")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("PASS_TO_PASS") && r.contains("test_odd_length")), "{reasons:?}");
    // The base revision was tested once and the result reused for the second attempt.
    let run = ev[0]["run_id"].as_str().expect("run id").to_owned();
    let stage_dir = dir.path().join(".lightsout/runs").join(&run).join("stages/tests");
    assert!(stage_dir.join("1.base.log").is_file() && !stage_dir.join("2.base.log").exists());
}

#[test]
fn bugfix_example_editing_the_reproducing_test_is_rejected() {
    let dir = bugfix_example("cheat");
    let (code, ev, err) = run_example(dir.path());
    assert_eq!(code, 1, "{err}");
    // The tests ran with the base revision's test file, so the "fix" fixed nothing...
    let reasons = verdict_reasons(&ev, "tests");
    assert!(reasons.iter().any(|r| r.contains("still fails")), "{reasons:?}");
    // ...and the diff grader names the protected file.
    let reasons = verdict_reasons(&ev, "scope");
    assert!(reasons.iter().any(|r| r.contains("tests/test_stats.py is protected")), "{reasons:?}");
}

#[test]
fn bugfix_example_a_library_that_patches_the_test_framework_is_rejected() {
    let dir = bugfix_example("patch");
    let (code, ev, err) = run_example(dir.path());
    assert_eq!(code, 1, "{err}");
    // The no-op assertEqual fools the tests themselves; the diff grader reads the patch.
    let reasons = verdict_reasons(&ev, "scope");
    assert!(reasons.iter().any(|r| r.contains("stats/__init__.py") && r.contains("test framework")), "{reasons:?}");
}

#[test]
fn bugfix_example_a_correct_fix_ships_on_its_own_branch() {
    let dir = bugfix_example_with("correct", true);
    let (code, ev, err) = run_example(dir.path());
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let ship = finished(&ev, "ship")[0];
    assert_eq!(ship["outputs"]["branch"], "lightsout/BUG-1");
    // The branch is in the repository (the example pushes to `.`), one commit on top of the
    // base, holding the fix and only it.
    let show = Command::new("git")
        .args(["show", "--stat", "--format=%s", "lightsout/BUG-1"])
        .current_dir(dir.path())
        .output()
        .expect("git");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("median() of an even-length list") && text.contains("stats/__init__.py"), "{text}");
    assert!(!text.contains("tests/"), "{text}");
}
