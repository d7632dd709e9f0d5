//! `lightsout run` against the real Docker Engine (and bubblewrap): hardening, outputs,
//! failures, timeouts, masking, cancellation, resume after SIGKILL, cleanup.
//!
//! These tests need Docker and the locally built test images (`scripts/test-images`, run
//! automatically when an image is missing). They fail, never skip, when Docker is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{lightsout, output, root};

pub(crate) const BUSYBOX: &str = "lightsout-test/busybox:latest";

/// Makes sure Docker answers and the test images exist; panics with what to do otherwise.
pub(crate) fn images() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let ok = |args: &[&str]| Command::new("docker").args(args).output().is_ok_and(|o| o.status.success());
        if !ok(&["info"]) {
            return Err("Docker is not running: these tests need the Docker Engine (scripts/test starts it)".into());
        }
        if !ok(&["image", "inspect", BUSYBOX]) || !ok(&["image", "inspect", "lightsout-test/debian:bookworm"]) {
            let st = Command::new(root().join("scripts/test-images")).status().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err("scripts/test-images failed".into());
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// A throwaway git repository holding a factory with one pipeline.
pub(crate) struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub(crate) fn new(stages: &str) -> Repo {
        Repo::with_policy(stages, None)
    }

    pub(crate) fn with_policy(stages: &str, policy: Option<&str>) -> Repo {
        Repo::full(stages, policy, "")
    }

    pub(crate) fn full(stages: &str, policy: Option<&str>, factory_extra: &str) -> Repo {
        images();
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("pipelines")).expect("mkdir");
        let policy_line = if policy.is_some() { "policy: policy.yaml\n" } else { "" };
        std::fs::write(
            p.join("factory.yaml"),
            format!(
                "version: 1\nname: t\ndefaults: {{ image: \"{BUSYBOX}\", timeout: 1m }}\ncategories:\n  misc: {{ pipeline: pipelines/misc.yaml }}\n{policy_line}{factory_extra}"
            ),
        )
        .expect("factory");
        if let Some(pol) = policy {
            std::fs::write(p.join("policy.yaml"), pol).expect("policy");
        }
        std::fs::write(p.join("pipelines/misc.yaml"), format!("version: 1\ncategory: misc\nstages:\n{stages}"))
            .expect("pipeline");
        std::fs::write(p.join("t.md"), "---\nid: T-1\ntitle: \"it $(touch /workspace/pwned) `id` works\"\n---\nbody\n")
            .expect("ticket");
        std::fs::write(p.join("README"), "base\n").expect("readme");
        let git = |args: &[&str]| {
            let st = Command::new("git").args(args).current_dir(p).output().expect("git");
            assert!(st.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&st.stderr));
        };
        git(&["init", "-q"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]);
        Repo { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = super::runner::lightsout(self.path());
        c.args(["run", "--ticket", "t.md", "--category", "misc", "--format", "json"]).args(extra);
        c.env("CI", "true");
        c
    }

    /// Runs and returns (exit code, events, stderr).
    pub(crate) fn run(&self, extra: &[&str]) -> (i32, Vec<Value>, String) {
        let (code, out, err) = output(&mut self.cmd(extra));
        (code, events(&out), err)
    }

    pub(crate) fn run_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path().join(".lightsout/runs")) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }

    pub(crate) fn record(&self, run: &str) -> PathBuf {
        self.path().join(".lightsout/runs").join(run)
    }

    pub(crate) fn recorded_events(&self, run: &str) -> Vec<Value> {
        events(&std::fs::read_to_string(self.record(run).join("events.jsonl")).unwrap_or_default())
    }
}

pub(crate) fn events(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub(crate) fn finished<'a>(events: &'a [Value], stage: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == "stage_finished" && e["stage"] == stage).collect()
}

pub(crate) fn outcome(events: &[Value], stage: &str) -> String {
    finished(events, stage).last().map(|e| e["outcome"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

pub(crate) fn log_text(events: &[Value], stage: &str) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "stage_log" && e["stage"] == stage)
        .filter_map(|e| e["text"].as_str())
        .collect()
}

/// Containers of a run still known to Docker.
pub(crate) fn containers_of(run: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label=dev.lightsout.run={run}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn a_stage_runs_in_a_hardened_container_and_leaves_nothing() {
    let repo = Repo::new(
        r"  probe:
    run: >-
      echo uid=$(id -u);
      grep CapEff /proc/self/status;
      grep NoNewPrivs /proc/self/status;
      (touch /etc/x 2>/dev/null && echo rootfs=writable) || echo rootfs=read-only;
      touch /tmp/ok && echo tmp=writable;
      echo ifaces=$(ls /sys/class/net | tr '\n' ' ');
      (nc -w 2 10.0.0.1 80 </dev/null 2>/dev/null && echo net=open) || echo net=none;
      test -S /var/run/docker.sock && echo sock=present || echo sock=absent;
      echo v=42 > $LIGHTSOUT_OUTPUT;
      echo {{ ticket.title }} > title.txt
    outputs: [v]
  after:
    needs: [probe]
    run: echo got {{ stages.probe.outputs.v }}
",
    );
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "probe");
    assert!(!log.contains("uid=0"), "{log}");
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    assert!(log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(log.contains("rootfs=read-only") && log.contains("tmp=writable"), "{log}");
    assert!(log.contains("ifaces=lo\n"), "{log}");
    assert!(log.contains("net=none") && log.contains("sock=absent"), "{log}");
    assert!(log_text(&ev, "after").contains("got 42"));
    // The ticket's title arrived as data: nothing ran, and the text is intact.
    let run = repo.run_ids().pop().expect("a run record");
    let patch = std::fs::read_to_string(repo.record(&run).join("diff.patch")).expect("diff.patch");
    assert!(patch.contains("+it $(touch /workspace/pwned) `id` works"), "{patch}");
    assert!(!patch.contains("pwned\n+++"), "{patch}");
    assert!(containers_of(&run).is_empty(), "containers left behind");
    assert!(!repo.path().join(".lightsout/worktrees").join(&run).exists(), "workspace left behind");
    for f in ["plan.json", "ticket.json", "run.json", "events.jsonl", "stages/probe/1.log"] {
        assert!(repo.record(&run).join(f).is_file(), "{f} missing");
    }
}

#[test]
fn failures_fail_fast_and_expect_failure_inverts() {
    let repo = Repo::new(
        "  repro:\n    run: exit 3\n    expect: failure\n  broken:\n    needs: [repro]\n    run: exit 4\n  slow:\n    needs: [repro]\n    run: sleep 20\n  later:\n    needs: [broken]\n    run: echo never\n",
    );
    let started = Instant::now();
    let (code, ev, err) = repo.run(&["--jobs", "4"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(outcome(&ev, "repro"), "succeeded");
    assert_eq!(outcome(&ev, "broken"), "failed");
    assert_eq!(finished(&ev, "broken")[0]["exit_code"], 4);
    // Fail-fast stops the sibling that was running and skips the rest.
    assert_eq!(outcome(&ev, "slow"), "cancelled");
    assert!(ev.iter().any(|e| e["event"] == "stage_skipped" && e["stage"] == "later"));
    assert!(started.elapsed() < Duration::from_secs(15), "fail-fast did not stop `slow`");

    let (code, ev, _) = repo.run(&["--keep-going", "--jobs", "4"]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&ev, "slow"), "succeeded", "--keep-going lets the sibling finish");
}

#[test]
fn expect_failure_is_not_met_by_a_command_that_never_ran() {
    for (run, says) in [
        ("no-such-test-runner -k test_x", "exited 127"),
        ("printf 'echo hi' > /tmp/t; /tmp/t", "exited 126"),
        ("kill -KILL $$", "SIGKILL"),
    ] {
        let repo = Repo::new(&format!(
            "  repro:\n    run: \"{run}\"\n    expect: failure\n  fix:\n    needs: [repro]\n    run: echo fixing\n"
        ));
        let (code, ev, err) = repo.run(&[]);
        assert_eq!(code, 3, "`{run}` is the environment's fault: {err}\n{ev:#?}");
        assert_eq!(outcome(&ev, "repro"), "fault", "{run}");
        let reason = finished(&ev, "repro")[0]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(says) && reason.contains("reproduced"), "{run}: {reason}");
        assert!(
            ev.iter().any(|e| e["event"] == "stage_skipped" && e["stage"] == "fix"),
            "{run}: the fix must not start"
        );
    }
}

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let repo =
        Repo::new("  a:\n    run: exit 1\n  b:\n    run: echo fine\n  c:\n    needs: [a]\n    run: echo never\n");
    let (code, ev, _) = repo.run(&["--keep-going", "--jobs", "1"]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&ev, "b"), "succeeded");
    let skipped: Vec<&Value> = ev.iter().filter(|e| e["event"] == "stage_skipped").collect();
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    assert_eq!(skipped[0]["stage"], "c");
}

#[test]
fn a_stage_past_its_timeout_is_stopped() {
    let repo = Repo::new("  sleepy:\n    run: sleep 60\n    timeout: 2s\n");
    let started = Instant::now();
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&ev, "sleepy"), "timed_out");
    assert!(started.elapsed() < Duration::from_secs(20));
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty());
}

#[test]
fn if_false_skips_with_the_reason() {
    let repo = Repo::new(
        "  a:\n    run: echo go=no > $LIGHTSOUT_OUTPUT\n    outputs: [go]\n  b:\n    needs: [a]\n    if: stages.a.outputs.go == \"yes\"\n    run: echo never\n",
    );
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 0);
    let skip = ev.iter().find(|e| e["event"] == "stage_skipped" && e["stage"] == "b").expect("b skipped");
    assert!(skip["reason"].as_str().unwrap_or_default().contains("is false"));
}

#[test]
fn secrets_are_masked_everywhere() {
    let secret = "s3cr3t-Value-9137";
    let repo = Repo::with_policy(
        r#"  leak:
    secrets: [LEAKY_TOKEN]
    run: >-
      echo plain $LEAKY_TOKEN;
      printf '%s' "$LEAKY_TOKEN" | head -c 6; sleep 0.3; printf '%s\n' "$LEAKY_TOKEN" | tail -c +7;
      printf 'x%s' "$LEAKY_TOKEN" | base64;
      echo "$LEAKY_TOKEN" | sed 's/./&\n/g';
      echo tok=$LEAKY_TOKEN > $LIGHTSOUT_OUTPUT
    outputs: [tok]
"#,
        Some("version: 1\nimages: { allow: [\"lightsout-test/*\"] }\nsecrets: { LEAKY_TOKEN: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&[]);
    c.env("LEAKY_TOKEN", secret);
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(secret) && !out.contains("s3cr3t"), "{out}");
    assert!(out.contains("***"));
    let run = repo.run_ids().pop().expect("run");
    for f in ["events.jsonl", "stages/leak/1.log", "plan.json", "run.json"] {
        let text = std::fs::read_to_string(repo.record(&run).join(f)).unwrap_or_default();
        assert!(!text.contains(secret), "{f} holds the secret");
        let b64 = base64_of(&format!("x{secret}"));
        assert!(!text.contains(&b64[4..b64.len() - 4]), "{f} holds it base64-encoded");
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Starts a run in the background and returns the child and the run id once `stage` started.
#[expect(clippy::zombie_processes, reason = "the caller waits for the child")]
fn start_and_wait_for(repo: &Repo, stage: &str, event: &str) -> (Child, String) {
    let mut c = repo.cmd(&["--jobs", "1"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "{stage} never reached {event}");
        if let Some(run) = repo.run_ids().pop() {
            let ev = repo.recorded_events(&run);
            if ev.iter().any(|e| e["event"] == event && e["stage"] == stage) {
                return (child, run);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn resume_after_sigkill_ends_as_an_uninterrupted_run() {
    let stages = "  first:\n    run: echo n=1 > $LIGHTSOUT_OUTPUT; echo one >> log.txt\n    outputs: [n]\n  second:\n    needs: [first]\n    run: sleep 2; echo two >> log.txt\n  third:\n    needs: [second]\n    run: echo n={{ stages.first.outputs.n }} > $LIGHTSOUT_OUTPUT; cat log.txt\n    outputs: [n]\n";
    // Killed at several points: as `first` starts, while `second` runs, after `second` ended.
    for (stage, event) in [("first", "stage_started"), ("second", "stage_started"), ("second", "stage_finished")] {
        let repo = Repo::new(stages);
        let (mut child, run) = start_and_wait_for(&repo, stage, event);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let (code, listing, _) = output(lightsout(repo.path()).arg("runs"));
        assert_eq!(code, 0);
        assert!(listing.contains("interrupted"), "{listing}");
        let (code, out, err) =
            output(lightsout(repo.path()).args(["resume", &run, "--format", "json"]).env("CI", "true"));
        assert_eq!(code, 0, "killed at {stage} {event}: {err}\n{out}");
        let ev = repo.recorded_events(&run);
        assert_eq!(ev.last().map(|e| e["status"].clone()), Some(Value::from("succeeded")), "{ev:#?}");
        for s in ["first", "second", "third"] {
            assert_eq!(outcome(&ev, s), "succeeded", "{s} after a kill at {stage} {event}");
        }
        // Completed stages are not run again; the workspace holds each line once.
        let firsts = ev.iter().filter(|e| e["event"] == "stage_finished" && e["stage"] == "first").count();
        assert_eq!(firsts, 1, "`first` ran twice");
        let third = finished(&ev, "third")[0];
        assert_eq!(third["outputs"]["n"], "1");
        let attempt = third["attempt"].as_u64().unwrap_or(1);
        let log =
            std::fs::read_to_string(repo.record(&run).join(format!("stages/third/{attempt}.log"))).unwrap_or_default();
        assert_eq!(log, "one\ntwo\n", "killed at {stage} {event}");
        assert!(containers_of(&run).is_empty(), "containers left after resume");
    }
}

#[test]
fn sigterm_cancels_removes_containers_and_exits_130() {
    let repo = Repo::new("  long:\n    run: sleep 60\n");
    let (child, run) = start_and_wait_for(&repo, "long", "stage_started");
    std::thread::sleep(Duration::from_millis(500));
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let ev = repo.recorded_events(&run);
    assert_eq!(ev.last().map(|e| e["status"].clone()), Some(Value::from("cancelled")));
    assert!(containers_of(&run).is_empty());
}

#[test]
fn an_image_is_built_from_a_dockerfile_and_cached() {
    let repo = Repo::new("  built:\n    image: build:ci/Dockerfile\n    run: cat /marker\n");
    std::fs::create_dir_all(repo.path().join("ci")).expect("mkdir");
    std::fs::write(repo.path().join("ci/Dockerfile"), format!("FROM {BUSYBOX}\nCOPY marker /marker\n")).expect("df");
    std::fs::write(repo.path().join("ci/marker"), "built-by-lightsout\n").expect("marker");
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(repo.path()).output().expect("git");
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "df"]);
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert!(log_text(&ev, "built").contains("built-by-lightsout"));
}

#[test]
pub(crate) fn the_local_executor_sandboxes_with_bubblewrap() {
    use std::os::unix::fs::MetadataExt as _;
    let repo = Repo::new(
        "  here:\n    run: >-\n      echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ');\n      (touch /usr/x 2>/dev/null && echo host=writable) || echo host=read-only;\n      ls /home >/dev/null 2>&1 && echo home=visible || echo home=hidden;\n      echo v=7 > $LIGHTSOUT_OUTPUT; echo w > written.txt\n    outputs: [v]\n",
    );
    let (code, ev, err) = repo.run(&["--executor", "local", "--keep-workspace"]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "here");
    assert!(log.contains("ifaces=lo\n"), "{log}");
    assert!(log.contains("host=read-only") && log.contains("home=hidden"), "{log}");
    assert_eq!(finished(&ev, "here")[0]["outputs"]["v"], "7");
    // Files the stage wrote belong to the invoking user.
    let run = repo.run_ids().pop().expect("run");
    let written = repo.path().join(".lightsout/worktrees").join(&run).join("written.txt");
    let meta = std::fs::metadata(&written).expect("kept workspace");
    let me = std::fs::metadata(repo.path()).expect("repo");
    assert_eq!(meta.uid(), me.uid());
}

/// An image laid out like the official toolchain images: its tool in a directory of its own,
/// on `PATH` through `ENV`, with more `ENV` beside it. Built from the busybox test image once,
/// cached by its tag (the tag names the recipe).
fn toolchain_image() -> String {
    images();
    let recipe = format!(
        "FROM {BUSYBOX}\nRUN mkdir -p /opt/toolchain/bin && printf '#!/bin/sh\\necho toolchain-ran\\n' > /opt/toolchain/bin/toolchain-test && chmod 755 /opt/toolchain/bin/toolchain-test\nENV PATH=/opt/toolchain/bin:$PATH TOOLCHAIN_HOME=/opt/toolchain\n"
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in recipe.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let tag = format!("lightsout-test/toolchain:{h:016x}");
    let have = Command::new("docker").args(["image", "inspect", &tag]).output().is_ok_and(|o| o.status.success());
    if !have {
        let mut child = Command::new("docker")
            .args(["build", "-q", "--network", "none", "-t", &tag, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), recipe.as_bytes()).expect("recipe");
        let out = child.wait_with_output().expect("docker build");
        assert!(out.status.success(), "docker build of {tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    tag
}

#[test]
fn stages_keep_the_environment_of_their_image() {
    let image = toolchain_image();
    let repo = Repo::new(&format!(
        "  tool:\n    image: {image}\n    run: toolchain-test; echo \"path=$PATH home=$HOME th=$TOOLCHAIN_HOME\"\n  own:\n    image: {image}\n    env: {{ TOOLCHAIN_HOME: mine }}\n    run: echo \"th=$TOOLCHAIN_HOME\"\n  plain:\n    run: echo \"path=$PATH home=$HOME\"\n"
    ));
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "tool");
    assert!(log.contains("toolchain-ran"), "the image's PATH finds its tool: {log}");
    assert!(log.contains("path=/opt/toolchain/bin:/usr/local/sbin:"), "{log}");
    // The image sets no HOME: a writable one, since the root file system is read-only.
    assert!(log.contains("home=/tmp th=/opt/toolchain\n"), "{log}");
    assert!(log_text(&ev, "own").contains("th=mine"), "the stage's env wins");
    assert!(
        log_text(&ev, "plain").contains("path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin home=/tmp")
    );
}

#[test]
fn uncommitted_changes_are_named_with_the_rule_of_what_comes_from_where() {
    let repo = Repo::new("  a:\n    run: cat README; ls\n");
    let (_, ev, _) = repo.run(&[]);
    assert!(!ev.iter().any(|e| e["event"] == "warning"), "a clean tree: {ev:#?}");
    std::fs::write(repo.path().join("README"), "edited\n").expect("edit");
    std::fs::write(repo.path().join("agent.sh"), "echo new\n").expect("new file");
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ev.get(1).map(|e| e["event"].clone()), Some(Value::from("warning")), "right after the start: {ev:#?}");
    let said = ev[1]["message"].as_str().unwrap_or_default();
    assert!(said.contains("`README`") && said.contains("`agent.sh`"), "{said}");
    assert!(said.contains("read from the working tree") && said.contains("taken from the base revision"), "{said}");
    let log = log_text(&ev, "a");
    assert!(log.contains("base") && !log.contains("edited") && !log.contains("agent.sh"), "{log}");
}

#[test]
fn validate_and_plan_warn_of_what_the_run_would_stop_on() {
    let repo = Repo::with_policy(
        "  a:\n    image: lightsout-test/not-built-here:0\n    run: echo a\n  b:\n    secrets: [PREFLIGHT_UNSET_TOKEN]\n    run: echo b\n  c:\n    image: build:ci/Dockerfile\n    run: echo c\n  d:\n    uses: grade.bench\n    with: { command: echo d }\n",
        Some(
            "version: 1\nimages: { allow: [\"lightsout-test/*\", \"build:*\"] }\nsecrets: { PREFLIGHT_UNSET_TOKEN: { stages: [run] } }\n",
        ),
    );
    for args in [&["validate"][..], &["plan", "--ticket", "t.md", "--category", "misc"]] {
        let (code, _, err) = output(super::lightsout(repo.path()).args(args).env_remove("PREFLIGHT_UNSET_TOKEN"));
        assert_eq!(code, 0, "warnings, not errors: {err}");
        for (said, line) in [
            ("stage `a`: image `lightsout-test/not-built-here:0` is not on this machine", 4),
            (
                "stage `b`: secret `PREFLIGHT_UNSET_TOKEN` is not available here: the environment variable `PREFLIGHT_UNSET_TOKEN` is not set",
                7,
            ),
            ("stage `c`: `ci/Dockerfile` does not exist", 10),
            ("stage `d`: this version of lightsout cannot run `grade.bench` stages yet", 13),
        ] {
            assert!(err.contains(&format!("warning: {said}")), "{args:?}: {said}\n{err}");
            assert!(err.contains(&format!("pipelines/misc.yaml:{line}:3")), "{args:?}: located at line {line}\n{err}");
        }
        assert!(!err.contains("lightsout-test/busybox"), "images that are here are not named: {err}");
    }
    let (_, _, err) =
        output(super::lightsout(repo.path()).arg("validate").env("PREFLIGHT_UNSET_TOKEN", "a-value-never-printed"));
    assert!(!err.contains("PREFLIGHT_UNSET_TOKEN") && !err.contains("a-value-never-printed"), "{err}");
}

#[test]
fn docker_down_stops_the_run_unless_local_is_chosen() {
    let repo = Repo::new("  a:\n    run: echo ran-on-the-host\n");
    // A socket nobody listens on: connections to it are refused, as when the engine is down.
    let sock_dir = tempfile::tempdir().expect("temp dir");
    let dead = sock_dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let host = format!("unix://{}", dead.display());
    let (code, ev, err) = output(repo.cmd(&[]).env("DOCKER_HOST", &host));
    assert_eq!(code, 3, "{err}\n{ev}");
    assert!(err.contains("Docker is not reachable"), "{err}");
    assert!(err.contains(&format!("a (`{BUSYBOX}`)")), "names the stage and its image: {err}");
    assert!(err.contains("--executor local"), "names the fix: {err}");
    assert!(repo.run_ids().is_empty(), "no run started");
    let (code, ev, err) = repo.run(&["--executor", "local"]);
    assert_eq!(code, 0, "{err}");
    assert!(log_text(&ev, "a").contains("ran-on-the-host"));
    let (code, _, err) = output(repo.cmd(&["--executor", "docker"]).env("DOCKER_HOST", &host));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("start it, or run with --executor local"), "{err}");
}

#[test]
fn unsandboxed_needs_the_policy() {
    let repo = Repo::new("  a:\n    run: echo hi\n");
    let (code, _, err) = repo.run(&["--executor", "local", "--unsandboxed"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allow_unsandboxed"), "{err}");
    let repo = Repo::with_policy("  a:\n    run: echo hi\n", Some("version: 1\nallow_unsandboxed: true\n"));
    let (code, ev, err) = repo.run(&["--executor", "local", "--unsandboxed"]);
    assert_eq!(code, 0, "{err}");
    assert!(ev.iter().any(|e| e["event"] == "warning"), "no warning");
}

#[test]
fn containers_and_networks_of_dead_runs_are_removed_at_start() {
    images();
    let ghost = format!("lightsout-ghost-{}", std::process::id());
    let st = Command::new("docker")
        .args([
            "create",
            "--name",
            &ghost,
            "--label",
            "dev.lightsout.run=ghost",
            "--label",
            "dev.lightsout.runner=1 1",
            BUSYBOX,
            "true",
        ])
        .output()
        .expect("docker create");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    // A dead runner's egress network, too.
    let net = Command::new("docker")
        .args(["network", "create", "--internal", "--label", "dev.lightsout.run=ghost"])
        .args(["--label", "dev.lightsout.runner=1 1", &ghost])
        .output()
        .expect("docker network create");
    assert!(net.status.success(), "{}", String::from_utf8_lossy(&net.stderr));
    let repo = Repo::new("  a:\n    run: echo hi\n");
    let (code, _, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}");
    let left = Command::new("docker").args(["inspect", &ghost]).output().expect("inspect");
    assert!(!left.status.success(), "the orphan container is still there");
    let left = Command::new("docker").args(["network", "inspect", &ghost]).output().expect("inspect");
    assert!(!left.status.success(), "the orphan network is still there");
}

#[test]
fn infrastructure_faults_are_retried_and_each_attempt_recorded() {
    let repo = Repo::new("  a:\n    image: lightsout-test/not-built:1\n    retries: 2\n    run: echo hi\n");
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 3, "{err}");
    let attempts = finished(&ev, "a");
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    assert!(attempts.iter().all(|a| a["outcome"] == "fault"));
    assert_eq!(attempts.iter().filter(|a| a["retrying"] == true).count(), 2);
    assert!(attempts[0]["reason"].as_str().unwrap_or_default().contains("never pulls"), "{attempts:#?}");
}

#[test]
fn plain_timestamped_lines_without_a_terminal_and_the_record_commands() {
    let repo = Repo::new("  hello:\n    run: echo hello from the stage\n");
    let (code, _, err) =
        output(lightsout(repo.path()).args(["run", "--ticket", "t.md", "--category", "misc"]).env("CI", "true"));
    assert_eq!(code, 0, "{err}");
    let line = err.lines().find(|l| l.contains("hello from the stage")).unwrap_or_else(|| panic!("{err}"));
    let stamp = line.split(' ').next().unwrap_or_default();
    assert!(stamp.len() == 8 && stamp.as_bytes()[2] == b':' && stamp.as_bytes()[5] == b':', "{line}");
    assert!(line.contains("hello        | hello from the stage"), "{line}");

    let run = repo.run_ids().pop().expect("run");
    let (code, list, _) = output(lightsout(repo.path()).arg("runs"));
    assert_eq!(code, 0);
    assert!(list.contains(&run) && list.contains("succeeded"), "{list}");
    let (code, show, _) = output(lightsout(repo.path()).args(["runs", "show", &run]));
    assert_eq!(code, 0);
    assert!(show.contains("hello") && show.contains("succeeded"), "{show}");
    let (code, log, _) = output(lightsout(repo.path()).args(["logs", &run, "hello"]));
    assert_eq!(code, 0);
    assert_eq!(log, "hello from the stage\n");
    let (code, _, err) = output(lightsout(repo.path()).args(["logs", &run, "nope"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn logs_follow_streams_a_running_stage() {
    let repo = Repo::new("  slow:\n    run: echo first; sleep 2; echo second\n");
    let (mut child, run) = start_and_wait_for(&repo, "slow", "stage_started");
    let (code, log, err) = output(lightsout(repo.path()).args(["logs", &run, "slow", "--follow"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(log, "first\nsecond\n");
    let _ = child.wait();
}

#[test]
fn an_image_is_built_from_a_devcontainer_definition() {
    let repo = Repo::new("  dev:\n    image: devcontainer\n    run: cat /from-devcontainer\n");
    std::fs::create_dir_all(repo.path().join(".devcontainer")).expect("mkdir");
    std::fs::write(
        repo.path().join(".devcontainer/devcontainer.json"),
        "{\n  // JSON with comments, as VS Code writes it\n  \"name\": \"t\",\n  \"build\": { \"dockerfile\": \"../ci/dev.Dockerfile\", \"context\": \"..\" },\n}\n",
    )
    .expect("devcontainer.json");
    std::fs::create_dir_all(repo.path().join("ci")).expect("mkdir");
    std::fs::write(repo.path().join("ci/dev.Dockerfile"), format!("FROM {BUSYBOX}\nCOPY README /from-devcontainer\n"))
        .expect("dockerfile");
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(repo.path()).output().expect("git");
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dev"]);
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert!(log_text(&ev, "dev").contains("base"), "{ev:#?}");
}

#[test]
fn a_terminal_gets_the_live_view() {
    let repo = Repo::new("  a:\n    run: echo one; sleep 1; echo two\n  b:\n    needs: [a]\n    run: echo three\n");
    // `script` gives the run a pseudo-terminal, as a user's shell would.
    let cmdline = format!("{} run --ticket t.md --category misc", env!("CARGO_BIN_EXE_lightsout"));
    let out = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .current_dir(repo.path())
        .env_remove("CI")
        .env("TERM", "xterm")
        .output()
        .expect("script (bsdutils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The progress bar over the DAG, and the finished stages printed above it.
    assert!(text.contains("stages"), "{text}");
    assert!(text.contains("a            ok") && text.contains("b            ok"), "{text}");
    // The live view does not print timestamped lines.
    assert!(!text.lines().any(|l| l.len() > 8 && l.as_bytes()[2] == b':' && l.as_bytes()[5] == b':'), "{text}");
}

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
fn two_runs_in_one_repository_do_not_collide() {
    let repo = Repo::new("  w:\n    run: echo $LIGHTSOUT_RUN > mine.txt; sleep 1; cat mine.txt\n");
    let spawn = || {
        let mut c = repo.cmd(&["--keep-workspace"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    assert_eq!(a.status.code(), Some(0), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", String::from_utf8_lossy(&b.stderr));
    let mut ids = repo.run_ids();
    ids.sort();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        // Each run saw only its own file in its own worktree.
        let kept = repo.path().join(".lightsout/worktrees").join(id).join("mine.txt");
        assert_eq!(std::fs::read_to_string(kept).expect("kept").trim(), id.as_str());
        let log = std::fs::read_to_string(repo.record(id).join("stages/w/1.log")).expect("log");
        assert_eq!(log.trim(), id.as_str());
    }
}

#[test]
fn resource_limits_bind_the_container() {
    let repo = Repo::new(
        "  limited:\n    resources: { memory: 64m, pids: 32 }\n    run: >-\n      cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max;\n      cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n",
    );
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "limited");
    assert!(log.contains("32\n"), "{log}");
    assert!(log.contains(&(64 * 1024 * 1024).to_string()), "{log}");
}

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
fn bugfix_example(mode: &str) -> tempfile::TempDir {
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

fn run_example(dir: &Path) -> (i32, Vec<Value>, String) {
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

/// One request the fake GitHub received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

/// A stand-in for GitHub's REST API on a local port. It answers `POST .../pulls` and
/// `POST .../issues/{n}/comments` with 201 and the fields GitHub documents for those
/// endpoints, and anything else with 404, recording every request.
pub(crate) fn fake_github() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) =
                (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, answer) = if method == "POST" && path == "/repos/acme/widgets/pulls" {
                (
                    201,
                    serde_json::json!({
                        "id": 1, "number": 42, "state": "open", "title": body["title"],
                        "html_url": "https://github.com/acme/widgets/pull/42",
                        "head": {"ref": body["head"]}, "base": {"ref": body["base"]}, "draft": false
                    }),
                )
            } else if method == "POST" && path.starts_with("/repos/acme/widgets/issues/") && path.ends_with("/comments")
            {
                (
                    201,
                    serde_json::json!({"id": 7, "html_url": "https://github.com/acme/widgets/issues/5#issuecomment-7", "body": body["body"]}),
                )
            } else {
                (404, serde_json::json!({"message": "Not Found"}))
            };
            log.lock().expect("lock").push(Seen { method, path, headers, body });
            let text = answer.to_string();
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (addr, seen)
}

#[test]
fn ship_opens_a_pull_request_and_comments_on_the_issue() {
    let (api, seen) = fake_github();
    let repo = Repo::full(
        "  edit:\n    run: echo fixed >> README\n  ship:\n    needs: [edit]\n    uses: ship\n    secrets: [GITHUB_TOKEN]\n    with: { remote: origin, comment: true }\n",
        Some("version: 1\nsecrets: { GITHUB_TOKEN: { stages: [ship] } }\n"),
        "",
    );
    let p = repo.path();
    std::fs::write(p.join("t.md"), "---\nid: \"5\"\ntitle: Fix the README\n---\nPlease.\n").expect("ticket");
    let bare = tempfile::tempdir().expect("remote");
    let init = Command::new("git").args(["init", "-q", "--bare"]).arg(bare.path()).output().expect("git");
    assert!(init.status.success());
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(p).output().expect("git");
    git(&["remote", "add", "origin", bare.path().to_str().unwrap_or_default()]);
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ticket"]);
    let branch = String::from_utf8_lossy(&git(&["symbolic-ref", "--short", "HEAD"]).stdout).trim().to_owned();
    let mut c = repo.cmd(&[]);
    c.env("GITHUB_TOKEN", "ghs_fakeTokenForTheLocalServer123456")
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env("GITHUB_API_URL", &api);
    let (code, out, err) = output(&mut c);
    let ev = events(&out);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let ship = finished(&ev, "ship")[0];
    assert_eq!(ship["outputs"]["pr_url"], "https://github.com/acme/widgets/pull/42");
    assert_eq!(ship["outputs"]["pr_number"], "42");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let pr = &seen[0];
    assert_eq!((pr.method.as_str(), pr.path.as_str()), ("POST", "/repos/acme/widgets/pulls"));
    let header = |s: &Seen, k: &str| s.headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(header(pr, "authorization"), "Bearer ghs_fakeTokenForTheLocalServer123456");
    assert_eq!(header(pr, "accept"), "application/vnd.github+json");
    assert_eq!(header(pr, "x-github-api-version"), "2022-11-28");
    assert!(header(pr, "user-agent").starts_with("lightsout/"));
    assert_eq!(pr.body["head"], "lightsout/5");
    assert_eq!(pr.body["base"], branch.as_str());
    assert_eq!(pr.body["title"], "Fix the README");
    let body = pr.body["body"].as_str().unwrap_or_default();
    assert!(body.contains("| edit | run | succeeded |") && body.contains("README"), "{body}");
    assert_eq!(seen[1].path, "/repos/acme/widgets/issues/5/comments");
    // The token never reaches the record.
    let run = repo.run_ids().pop().expect("run");
    let events_text = std::fs::read_to_string(repo.record(&run).join("events.jsonl")).unwrap_or_default();
    assert!(!events_text.contains("ghs_fakeToken"));
}

#[test]
fn the_report_tells_a_reviewer_what_happened() {
    let dir = bugfix_example("wrong");
    let (code, ev, _) = run_example(dir.path());
    assert_eq!(code, 1);
    let run = ev[0]["run_id"].as_str().expect("run id").to_owned();
    let (code, md, err) = output(lightsout(dir.path()).args(["report", &run]));
    assert_eq!(code, 0, "{err}");
    assert!(md.contains(&format!("# lightsout run `{run}`: failed")), "{md}");
    assert!(md.contains("**Ticket** `BUG-1`"), "{md}");
    assert!(md.contains("| fix | agent | succeeded | 2 |"), "{md}");
    assert!(md.contains("FAIL_TO_PASS tests.test_stats.MedianTest.test_even_length still fails"), "{md}");
    assert!(md.contains("`fix` ran again (attempt 2)"), "{md}");
    assert!(md.contains("stats/__init__.py"), "{md}");
    assert!(md.contains("agent attempts:") && md.contains("wall time:"), "{md}");
    assert!(md.contains("## Network\n\nNo stage had network access."), "{md}");

    let (code, xml, _) = output(lightsout(dir.path()).args(["report", &run, "--format", "junit"]));
    assert_eq!(code, 0);
    let doc = well_formed_xml(&xml);
    assert!(doc.contains("tests=\"5\"") && doc.contains("<failure"), "{xml}");
    let (code, json, _) = output(lightsout(dir.path()).args(["report", &run, "--format", "json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).expect("json report");
    assert_eq!(v["run"]["stages"]["tests"]["verdict"]["pass"], false);
}

/// The `JUnit` report must be well-formed XML: parse it with python's parser, a second opinion.
fn well_formed_xml(xml: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom as m; m.parseString(sys.stdin.read()); print('ok')"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(xml.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "not XML: {xml}");
    xml.to_owned()
}

const GATED: &str = "  build:\n    run: echo built > out.txt\n  gate:\n    needs: [build]\n    uses: approve\n    with: { message: \"ship {{ ticket.id }}?\" }\n  after:\n    needs: [gate]\n    secrets: [DEPLOY_KEY]\n    run: test -n \"$DEPLOY_KEY\" && cat out.txt\n";
const GATED_POLICY: &str = "version: 1\nsecrets: { DEPLOY_KEY: { stages: [run] } }\n";

#[test]
fn an_approval_gate_stops_the_run_and_approve_continues_it() {
    let repo = Repo::with_policy(GATED, Some(GATED_POLICY));
    // No secret in the environment: the stage after the gate must not need it yet.
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 4, "{err}\n{ev:#?}");
    assert!(ev.iter().any(|e| e["event"] == "approval_requested" && e["message"] == "ship T-1?"), "{ev:#?}");
    assert!(
        !ev.iter().any(|e| e["event"] == "stage_started" && e["stage"] == "after"),
        "a stage after the gate started"
    );
    let run = repo.run_ids().pop().expect("run");
    let (_, list, _) = output(lightsout(repo.path()).arg("runs"));
    assert!(list.contains("awaitingapproval") || list.contains("awaiting"), "{list}");
    let (code, _, err) = output(lightsout(repo.path()).args(["resume", &run]));
    assert_eq!(code, 2, "resume alone must not pass a gate: {err}");

    let (code, out, err) = output(
        lightsout(repo.path())
            .args(["approve", &run, "--by", "lead", "--reason", "looks right", "--format", "json"])
            .env("DEPLOY_KEY", "k-123456789")
            .env("CI", "true"),
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let ev = repo.recorded_events(&run);
    let approved = ev.iter().find(|e| e["event"] == "approved").expect("approved event");
    assert_eq!((approved["by"].as_str(), approved["reason"].as_str()), (Some("lead"), Some("looks right")));
    assert_eq!(outcome(&ev, "after"), "succeeded");
    assert_eq!(ev.last().map(|e| e["status"].clone()), Some(Value::from("succeeded")));
    let (_, md, _) = output(lightsout(repo.path()).args(["report", &run]));
    assert!(md.contains("| gate | approve | succeeded |"), "{md}");
}

#[test]
fn rejecting_a_gate_skips_what_follows_and_fails_the_run() {
    let repo = Repo::with_policy(GATED, Some(GATED_POLICY));
    let (code, _, _) = repo.run(&[]);
    assert_eq!(code, 4);
    let run = repo.run_ids().pop().expect("run");
    let (code, _, err) =
        output(lightsout(repo.path()).args(["reject", &run, "--by", "lead", "--reason", "not now"]).env("CI", "true"));
    assert_eq!(code, 1, "{err}");
    let ev = repo.recorded_events(&run);
    assert!(ev.iter().any(|e| e["event"] == "rejected" && e["by"] == "lead"));
    assert!(ev.iter().any(|e| e["event"] == "stage_skipped" && e["stage"] == "after"));
    assert_eq!(ev.last().map(|e| e["status"].clone()), Some(Value::from("failed")));
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

/// Runs the gated pipeline up to its gate; returns the repository and the run id.
fn run_to_gate(policy: &str) -> (Repo, String) {
    let repo = Repo::with_policy(GATED, Some(policy));
    let (code, _, _) = repo.run(&[]);
    assert_eq!(code, 4);
    let run = repo.run_ids().pop().expect("run");
    (repo, run)
}

/// Approves the gate (with the secret the stage after it needs); returns why `after` ended.
fn approve_and_reason(repo: &Repo, run: &str) -> String {
    let (code, _, _) = output(
        lightsout(repo.path())
            .args(["approve", run, "--by", "lead"])
            .env("DEPLOY_KEY", "k-123456789")
            .env("CI", "true"),
    );
    assert_eq!(code, 1);
    let ev = repo.recorded_events(run);
    finished(&ev, "after")[0]["reason"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn policy_is_enforced_again_when_a_stage_starts() {
    let policy = "version: 1\nimages: { allow: [\"lightsout-test/*\"] }\nsecrets: { DEPLOY_KEY: { stages: [run] } }\n";
    // The recorded plan is edited while the run waits at its gate.
    let (repo, run) = run_to_gate(policy);
    let plan_path = repo.record(&run).join("plan.json");
    let plan = std::fs::read_to_string(&plan_path).expect("plan");
    let tampered = plan.replacen("\"value\": \"lightsout-test/busybox:latest\"", "\"value\": \"evil/miner:latest\"", 3);
    assert_ne!(plan, tampered);
    std::fs::write(&plan_path, tampered).expect("tamper");
    let reason = approve_and_reason(&repo, &run);
    assert!(reason.contains("refused by policy at run time") && reason.contains("evil/miner"), "{reason}");

    // A policy tightened while the run waits binds the stages that have not run.
    let (repo, run) = run_to_gate(policy);
    std::fs::write(repo.path().join("policy.yaml"), "version: 1\nimages: { allow: [\"lightsout-test/*\"] }\n")
        .expect("tighten");
    let reason = approve_and_reason(&repo, &run);
    assert!(reason.contains("refused by policy at run time") && reason.contains("DEPLOY_KEY"), "{reason}");

    // A host or a limit written into the recorded plan is refused as well.
    let ceiling = format!("{policy}resources: {{ memory: 4g }}\n");
    for (key, value, refused) in [
        ("network", serde_json::json!(["evil.example:443"]), "evil.example"),
        ("memory_bytes", serde_json::json!(64u64 << 30), "over the ceiling"),
    ] {
        let (repo, run) = run_to_gate(&ceiling);
        let plan_path = repo.record(&run).join("plan.json");
        let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan")).expect("json");
        assert!(set_everywhere(&mut plan, key, &value), "no `{key}` in the plan");
        std::fs::write(&plan_path, plan.to_string()).expect("tamper");
        let reason = approve_and_reason(&repo, &run);
        assert!(reason.contains("refused by policy at run time") && reason.contains(refused), "{reason}");
    }
}

/// Sets `key` to `value` in every object of `v` that has it; whether there was one.
fn set_everywhere(v: &mut Value, key: &str, value: &Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut found = false;
            if let Some(slot) = map.get_mut(key) {
                *slot = value.clone();
                found = true;
            }
            for child in map.values_mut() {
                found |= set_everywhere(child, key, value);
            }
            found
        }
        Value::Array(items) => items.iter_mut().fold(false, |found, item| set_everywhere(item, key, value) | found),
        _ => false,
    }
}

#[test]
fn secrets_come_from_their_providers_and_files_live_on_tmpfs_only() {
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("deploy.key");
    std::fs::write(&key_file, "file-secret-5521\n").expect("key");
    let extra = format!(
        "secrets:\n  FROM_FILE: {{ file: \"{}\", as: file }}\n  FROM_CMD: {{ command: [\"sh\", \"-c\", \"printf cmd-secret-%s 7734\"] }}\n",
        key_file.display()
    );
    // The command computes the values it checks, so that the plan (which holds the command)
    // does not hold them.
    let stages = "  use:\n    secrets: [FROM_FILE, FROM_CMD]\n    run: |\n      test \"$(cat $FROM_FILE_FILE)\" = file-secret-$((5500+21)) && echo file-ok\n      test \"$FROM_CMD\" = cmd-secret-$((7700+34)) && echo cmd-ok\n      env | grep -c file-secret-$((5500+21)) || true\n      touch $FROM_FILE_FILE 2>/dev/null && echo WRITABLE || echo read-only\n  asks:\n    secrets: [{ name: FROM_CMD, as: file }]\n    run: |\n      test \"$(cat $FROM_CMD_FILE)\" = cmd-secret-$((7700+34)) && echo as-file-ok\n      echo \"env=${FROM_CMD:-unset}\"\n";
    let policy = "version: 1\nsecrets: { FROM_FILE: { stages: [run] }, FROM_CMD: { stages: [run] } }\n";
    let repo = Repo::full(stages, Some(policy), &extra);
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "use");
    assert!(log.contains("file-ok") && log.contains("cmd-ok") && log.contains("read-only"), "{log}");
    assert!(log.lines().any(|l| l.trim() == "0"), "the file secret leaked into the environment: {log}");
    // The same secret, as another stage asked: a file, not an environment variable.
    let asks = log_text(&ev, "asks");
    assert!(asks.contains("as-file-ok") && asks.contains("env=unset"), "{asks}");
    let run = repo.run_ids().pop().expect("run");
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().contains(&run)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "secret files left on /dev/shm: {left:?}");
    for f in ["events.jsonl", "plan.json", "run.json", "stages/use/1.log"] {
        let text = std::fs::read_to_string(repo.record(&run).join(f)).unwrap_or_default();
        assert!(!text.contains("file-secret-5521") && !text.contains("cmd-secret-7734"), "{f} holds a secret value");
    }
    let plan = std::fs::read_to_string(repo.record(&run).join("plan.json")).unwrap_or_default();
    assert!(plan.contains("deploy.key") && plan.contains("printf cmd-secret-%s"), "the plan names the providers");
}

#[test]
fn json_lines_drop_no_event_of_a_stage_that_prints_fast() {
    // Far more chunks than the run's channels hold: every one reaches `--format json`, in order.
    let repo = Repo::new(
        "  loud:\n    run: \"i=0; while [ $i -lt 40000 ]; do echo line $i of a stage that prints fast; i=$((i+1)); done\"\n",
    );
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}");
    let run = repo.run_ids().pop().expect("a run");
    let file = std::fs::read_to_string(repo.record(&run).join("stages/loud/1.log")).expect("log");
    assert_eq!(file.lines().count(), 40000);
    let shown = log_text(&ev, "loud");
    assert_eq!(shown.len(), file.len(), "the JSON lines hold {} of {} bytes", shown.len(), file.len());
    assert!(shown == file, "the JSON lines show the log as written");
}

#[test]
fn lightsout_log_traces_the_boundaries_and_is_off_by_default() {
    let repo = Repo::new("  a:\n    run: echo the stage says hello\n");
    let (code, out, err) = output(repo.cmd(&[]).env("LIGHTSOUT_LOG", "lightsout=debug"));
    assert_eq!(code, 0, "{err}");
    for target in ["lightsout::scheduler", "lightsout::git", "lightsout::docker"] {
        assert!(err.contains(target), "no `{target}` trace in:\n{err}");
    }
    assert!(!err.contains("the stage says hello"), "traces never carry stage output:\n{err}");
    assert!(!events(&out).is_empty(), "the JSON lines stay on stdout");
    let (code, _, err) = output(&mut repo.cmd(&[]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("lightsout::"), "off unless LIGHTSOUT_LOG is set:\n{err}");
}
