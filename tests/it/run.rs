//! `lightsout run` against the real Docker Engine (and bubblewrap): hardening, outputs,
//! failures, timeouts, masking, cancellation, resume after SIGKILL, cleanup, the record and its
//! observers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{lightsout, output};

use super::support::{BUSYBOX, Repo, containers_of, events, finished, images, log_text, outcome};

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

/// Sets `key` to `value` in every object of `v` that has it; whether there was one.
pub(crate) fn set_everywhere(v: &mut Value, key: &str, value: &Value) -> bool {
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
