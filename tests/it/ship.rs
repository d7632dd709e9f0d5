//! Shipping and people: the pull request and issue comment (against a local stand-in of
//! GitHub's REST API), the report a reviewer reads, and approval gates.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::{lightsout, output};

use super::agent_loop::{bugfix_example, run_example};
use super::run::set_everywhere;
use super::support::{Repo, events, finished, outcome};

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
