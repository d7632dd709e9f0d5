//! The fence holds where an agent's bytes leave the sandbox: the egress proxy checks every
//! request, the terminal never gets a raw control character from a record, Markdown and HTML
//! carry ticket and stage text inert, and `ship` pushes to no protected branch however its
//! branch template renders. Each test is an attack that fails the test if it succeeds.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::hostile::{Lab, egress_attack, egress_events};
use super::output;
use super::support::{Repo, finished};

/// An HTTP/1.1 server of the test's own that keeps connections open and answers every request
/// head it gets; returns its port and every byte it received.
fn keep_alive_server(bind: &str) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(bind).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let (mut mine, mut answered) = (Vec::new(), 0);
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    mine.extend_from_slice(&buf[..n]);
                    log.lock().expect("lock").extend_from_slice(&buf[..n]);
                    let heads = mine.windows(4).filter(|w| w == b"\r\n\r\n").count();
                    while answered < heads {
                        answered += 1;
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nBODY-kept");
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn egress_checks_every_request_of_a_connection() {
    let lab = Lab::new();
    // A server that keeps its connections open, on this machine, reached by the proxy at the
    // lab network's gateway.
    let (port, seen) = keep_alive_server("0.0.0.0:0");
    let gateway = lab.gateway();
    let kept = format!("{gateway}:{port}");
    let (_, ev, log) = lab.attack(
        &["allowed.test:80", &kept],
        &format!(
            r"printf 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n' | nc -w 3 $PROXY 3128; echo
(printf 'GET http://{kept}/one HTTP/1.1\r\nHost: {gateway}\r\n\r\n'; sleep 1; printf 'GET http://denied.test/two HTTP/1.1\r\nHost: denied.test\r\n\r\n'; sleep 3) | nc -w 5 $PROXY 3128; echo
echo end"
        ),
    );
    assert!(log.contains("BODY-allowed") && log.contains("BODY-kept") && log.contains("end"), "{log}");
    assert!(!log.contains("BODY-denied"), "{log}");
    let got = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(got.contains("GET /one ") && !got.contains("two") && !got.contains("denied"), "{got}");
    let decisions = egress_events(&ev);
    assert!(decisions.contains(&("allowed.test:80".to_owned(), true)), "{decisions:?}");
    assert!(decisions.contains(&(kept, true)), "{decisions:?}");
    // The pipelined request (another Host on the allowed target) and the one on the kept-alive
    // connection (a denied host) are refused, and recorded.
    assert!(decisions.contains(&("allowed.test:80".to_owned(), false)), "{decisions:?}");
    assert!(decisions.contains(&("denied.test:80".to_owned(), false)), "{decisions:?}");
}

#[test]
fn local_egress_checks_every_request_of_a_connection() {
    let (port, seen) = keep_alive_server("127.0.0.1:0");
    let (_, ev, log) = egress_attack(
        "local",
        None,
        &[&format!("localhost:{port}")],
        &format!(
            r"printf 'GET http://localhost:{port}/one HTTP/1.1\r\nHost: localhost\r\n\r\nGET http://localhost:{port}/two HTTP/1.1\r\nHost: other.invalid\r\n\r\n' | busybox nc -w 3 $PROXY 3128; echo
(printf 'GET http://localhost:{port}/three HTTP/1.1\r\nHost: localhost\r\n\r\n'; sleep 1; printf 'GET http://denied.invalid/four HTTP/1.1\r\nHost: denied.invalid\r\n\r\n'; sleep 2) | busybox nc -w 4 $PROXY 3128; echo
echo end"
        ),
    );
    assert!(log.contains("BODY-kept") && log.contains("end"), "{log}");
    // The server got the first request of each connection, and nothing after it.
    let got = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(got.contains("GET /one ") && got.contains("GET /three "), "{got}");
    assert!(!got.contains("/two") && !got.contains("/four") && !got.contains("invalid"), "{got}");
    let decisions = egress_events(&ev);
    let target = format!("localhost:{port}");
    assert_eq!(decisions.iter().filter(|(h, allowed)| *h == target && *allowed).count(), 2, "{decisions:?}");
    assert!(decisions.contains(&(target, false)), "{decisions:?}");
    assert!(decisions.contains(&("denied.invalid:80".to_owned(), false)), "{decisions:?}");
}

/// Runs `git` in `dir`; its trimmed output.
fn git_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn ship_refuses_a_branch_that_renders_to_a_protected_one() {
    let policy = "version: 1\nprotected: { branches: [main, \"release/*\"] }\n";
    let by_field = "  ship:\n    uses: ship\n    with: { branch: \"{{ ticket.fields.target }}\", remote: origin, pull_request: false }\n";
    let repo = Repo::with_policy(by_field, Some(policy));
    let p = repo.path();
    let bare = tempfile::tempdir().expect("remote");
    git_in(bare.path(), &["init", "-q", "--bare"]);
    git_in(p, &["remote", "add", "origin", bare.path().to_str().unwrap_or_default()]);
    git_in(p, &["push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/release/1.0"]);
    let refs_before = git_in(bare.path(), &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let run = |id: &str, target: &str| {
        std::fs::write(p.join("t.md"), format!("---\nid: \"{id}\"\ntitle: Ship it\ntarget: \"{target}\"\n---\nbody\n"))
            .expect("ticket");
        let (code, ev, err) = repo.run(&["--executor", "local"]);
        let reason = finished(&ev, "ship").first().map(|f| f["reason"].as_str().unwrap_or_default().to_owned());
        (code, reason.unwrap_or_else(|| format!("ship did not finish: {err}")))
    };
    for (target, why) in [
        ("main", "protects"),
        ("release/1.0", "protects"),
        ("Main", "protects"),
        ("refs/heads/main", "another ref"),
        ("heads/main", "another ref"),
        ("HEAD", "another ref"),
    ] {
        let (code, reason) = run("T-9", target);
        assert_ne!(code, 0, "{target}: {reason}");
        assert!(reason.contains(target) && reason.contains(why), "{target}: {reason}");
    }
    // The ticket's id, through the default-like template `{{ ticket.id }}`.
    std::fs::write(
        p.join("pipelines/misc.yaml"),
        "version: 1\ncategory: misc\nstages:\n  ship:\n    uses: ship\n    with: { branch: \"{{ ticket.id }}\", remote: origin, pull_request: false }\n",
    )
    .expect("pipeline");
    let (code, reason) = run("main", "x");
    assert_ne!(code, 0, "{reason}");
    assert!(reason.contains("`main`") && reason.contains("protects"), "{reason}");
    // Nothing reached the remote: its branches are where they were, and there is no other.
    assert_eq!(git_in(bare.path(), &["for-each-ref", "--format=%(refname) %(objectname)"]), refs_before);
    // `plan` says that a templated branch is checked when it is rendered.
    let (_, plan, err) = output(super::lightsout(p).args(["plan", "--ticket", "t.md", "--category", "misc"]));
    assert!(
        plan.contains("branch   {{ ticket.id }} (a template: checked against the protected branches"),
        "{plan}{err}"
    );
}

/// The control characters in `text` a terminal would obey (all but line feed and tab).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\t')).collect()
}

#[test]
fn escape_sequences_from_a_record_never_reach_the_terminal() {
    // Escape sequences (CSI, OSC, C1) in output keys and values, in a reason (a malformed
    // outputs line is quoted in it), in a verdict (a test's name) and in a log.
    let stages = r#"  outs:
    run: |
      printf '{"k\\u001b[31m\\n\\u009b": "v\\u001b]0;pwn\\u0007\\u0085 x", "plain": "\\u001b[2J"}' > $LIGHTSOUT_OUTPUT
      printf 'log \033[2J\302\233 \033]0;t\007 \r\n'
  bad:
    run: printf '\033[31mnot a pair\302\233\n' > $LIGHTSOUT_OUTPUT
  tests:
    uses: grade.tests
    with:
      fail_to_pass: [t.bug]
      command: printf '<testsuite><testcase classname="t" name="bug\033[31m\302\233"><failure message="\033]0;x\007"/></testcase></testsuite>' > $LIGHTSOUT_JUNIT
"#;
    let repo = Repo::new(stages);
    let (_, out, err) = output(&mut repo.cmd(&["--keep-going"]));
    let ev = super::support::events(&out);
    let outs = finished(&ev, "outs");
    assert!(outs.first().is_some_and(|f| f["outputs"].to_string().contains("\\u001b")), "{err}\n{ev:#?}");
    // The malformed line is quoted in the reason, escaped there already or as JSON escapes it.
    let quoted = |f: &&serde_json::Value| {
        f["reason"].to_string().contains("\\u001b") || f["reason"].to_string().contains("\\u{1b}")
    };
    assert!(finished(&ev, "bad").first().is_some_and(quoted), "{ev:#?}");
    assert!(raw_controls(&out).is_empty(), "the run's own JSON lines: {:?}", raw_controls(&out));
    let run = repo.run_ids().pop().expect("run");
    for args in [
        vec!["runs"],
        vec!["runs", "show", &run],
        vec!["runs", "show", &run, "--format", "json"],
        vec!["report", &run],
        vec!["report", &run, "--format", "json"],
        vec!["report", &run, "--format", "junit"],
        vec!["logs", &run, "outs"],
        vec!["logs", &run, "bad"],
        vec!["logs", &run, "tests"],
    ] {
        let (code, out, err) = output(super::lightsout(repo.path()).args(&args).env("CI", "true"));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(raw_controls(&out).is_empty() && raw_controls(&err).is_empty(), "{args:?}: {out:?} {err:?}");
        if args == ["runs", "show", &run] {
            // Shown, escaped: the key, the value and the reason.
            assert!(out.contains("output k\\u{1b}[31m\\n\\u{9b} = v\\u{1b}]0;pwn"), "{out}");
            assert!(out.contains("`\\u{1b}[31mnot a pair\\u{9b}`"), "{out}");
        }
    }
    // The log file itself is kept as the stage wrote it.
    let log = std::fs::read(repo.record(&run).join("stages/outs/1.log")).unwrap_or_default();
    assert!(log.windows(4).any(|w| w == b"\x1b[2J"), "{:?}", String::from_utf8_lossy(&log));
}

/// `md` without its code spans and fenced blocks: what GitHub would render as Markdown.
fn outside_code(md: &str) -> String {
    let (mut out, mut rest) = (String::new(), md);
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let after = &rest[start + run..];
        // The span ends at the next run of exactly as many backticks.
        let mut end = None;
        let mut i = 0;
        while let Some(j) = after[i..].find('`') {
            let at = i + j;
            let n = after[at..].len() - after[at..].trim_start_matches('`').len();
            if n == run {
                end = Some(at + n);
                break;
            }
            i = at + n;
        }
        if let Some(e) = end {
            rest = &after[e..];
        } else {
            out.push_str(&rest[start..]);
            rest = "";
        }
    }
    out.push_str(rest);
    out
}

/// Markup that would be live in `md`: images, links, HTML tags, mentions, issue references,
/// table cells made of ticket text.
fn live_markup(md: &str) -> Vec<&'static str> {
    let md = outside_code(md);
    ["![", "](", "<img", "<b>", "@octocat", "#1", "javascript:", "| table", "http://evil"]
        .into_iter()
        .filter(|m| md.contains(m))
        .collect()
}

#[test]
fn ticket_and_stage_text_is_inert_in_the_pull_request_the_comment_and_the_report() {
    let title =
        "![x](http://evil/p.png) <img src=x onerror=alert(1)> @octocat #1 [link](javascript:alert(1)) | table |";
    let (api, seen) = super::ship::fake_github();
    let repo = Repo::full(
        "  edit:\n    run: |\n      echo fixed >> README\n      touch '![f](http:evil)<b>@octocat #1<i>.txt'\n  ship:\n    needs: [edit]\n    uses: ship\n    secrets: [GITHUB_TOKEN]\n    with: { remote: origin, comment: true }\n",
        Some("version: 1\nsecrets: { GITHUB_TOKEN: { stages: [ship] } }\n"),
        "",
    );
    let p = repo.path();
    std::fs::write(p.join("t.md"), format!("---\nid: \"5\"\ntitle: \"{title}\"\n---\nPlease.\n")).expect("ticket");
    let bare = tempfile::tempdir().expect("remote");
    git_in(bare.path(), &["init", "-q", "--bare"]);
    git_in(p, &["remote", "add", "origin", bare.path().to_str().unwrap_or_default()]);
    let mut c = repo.cmd(&[]);
    c.env("GITHUB_TOKEN", "ghs_fakeTokenForTheLocalServer123456")
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env("GITHUB_API_URL", &api);
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "{err}\n{out}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let (pr, comment) = (&seen[0].body, &seen[1].body);
    // The title: GitHub shows it as text, but makes mentions and references in it.
    let pr_title = pr["title"].as_str().unwrap_or_default();
    assert!(
        !pr_title.contains("@octocat") && !pr_title.contains("#1") && pr_title.contains("<img src=x"),
        "{pr_title}"
    );
    // The body and the comment: the ticket's title is in a code span, the file names in a fence.
    for body in [pr["body"].as_str().unwrap_or_default(), comment["body"].as_str().unwrap_or_default()] {
        assert!(body.contains(&format!("Ticket `5`: `{title}`")), "{body}");
        assert!(body.contains("<b>@octocat #1<i>.txt"), "the file name is not shown: {body}");
        assert_eq!(live_markup(body), Vec::<&str>::new(), "{body}");
    }
    let run = repo.run_ids().pop().expect("run");
    let (_, md, _) = output(super::lightsout(p).args(["report", &run]));
    assert!(md.contains(&format!("`{title}`")), "{md}");
    assert_eq!(live_markup(&md), Vec::<&str>::new(), "{md}");
}

#[test]
fn plan_prints_ticket_inputs_escaped() {
    // A ticket input holding ESC and a C1 CSI (U+009B) in the bundled example's ticket.
    let dir = tempfile::tempdir().expect("dir");
    let src = super::root().join("examples/bugfix");
    let st = std::process::Command::new("cp").arg("-r").arg(format!("{}/.", src.display())).arg(dir.path()).status();
    assert!(st.is_ok_and(|s| s.success()));
    let ticket = "---\nid: BUG-9\nlabels: [bug]\nfailing_test: \"t\\e[2J\\u009b31m\"\n---\n# t\n";
    std::fs::write(dir.path().join("tickets/evil.md"), ticket).expect("ticket");
    let (code, out, err) = output(super::lightsout(dir.path()).args(["plan", "--ticket", "tickets/evil.md"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input"), "{out}");
    assert!(raw_controls(&out).is_empty(), "{:?}", raw_controls(&out));
}
