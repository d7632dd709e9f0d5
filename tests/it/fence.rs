//! The fence, at every place where the host side (runner, host git, ship, the record) reads
//! bytes a stage could have written: one attack per class of escape, on both executors where
//! the class applies. Each test fails if the attack succeeds.

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::output;
use super::support::{Repo, events, finished, log_text, outcome};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Commits what the test added to the repository, so that it is part of the base revision.
fn commit_all(dir: &Path) {
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "more"]);
}

/// A bare repository as the repository's `origin`.
fn with_remote(repo: &Repo) -> tempfile::TempDir {
    let bare = tempfile::tempdir().expect("remote");
    let st = Command::new("git").args(["init", "-q", "--bare"]).arg(bare.path()).output().expect("git");
    assert!(st.status.success());
    git(repo.path(), &["remote", "add", "origin", bare.path().to_str().unwrap_or_default()]);
    bare
}

fn branches_of(bare: &Path) -> String {
    git(bare, &["for-each-ref", "--format=%(refname)"])
}

fn reason(ev: &[Value], stage: &str) -> String {
    finished(ev, stage).last().map(|f| f["reason"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

fn warnings(ev: &[Value]) -> String {
    ev.iter().filter(|e| e["event"] == "warning").filter_map(|e| e["message"].as_str()).collect::<Vec<_>>().join("\n")
}

/// A stage running `script` (a YAML block scalar: any shell text), then `extra` YAML lines.
fn stage(name: &str, script: &str, extra: &str) -> String {
    let body = script.lines().fold(String::new(), |mut acc, l| {
        acc.push_str("      ");
        acc.push_str(l);
        acc.push('\n');
        acc
    });
    format!("  {name}:\n{extra}    run: |\n{body}")
}

/// Every file under `dir`, not following links.
fn tree(dir: &Path, out: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
        if m.is_dir() {
            tree(&e.path(), out);
        }
        out.push((e.path(), m));
    }
}

// ---- Class: the sandbox's user. A stage never runs as host root, and nothing it leaves can
// give root (or anything else) to a host user. ----

const ROOT_ATTACK: &str = r#"  attacker:
    run: |
      echo "uid=$(id -u)"
      grep CapEff /proc/self/status
      cat /etc/shadow >/dev/null 2>&1 && echo READ-SHADOW
      v=$(cat /proc/sys/kernel/printk_ratelimit) && echo "$v" > /proc/sys/kernel/printk_ratelimit 2>/dev/null && echo WROTE-SYSCTL
      cp /bin/busybox /lightsout/suid && chmod 6755 /lightsout/suid
      cp /bin/busybox ws-suid && chmod 4755 ws-suid
      mkdir -p d && chmod 3777 d
      busybox mkfifo /lightsout/fifo ws-fifo
      ln -s /etc/shadow /lightsout/link
      echo attacked
"#;

fn a_stage_never_gets_host_root_nor_leaves_setuid_files_on(executor: &str) {
    let repo = Repo::new(ROOT_ATTACK);
    let (_, ev, err) = repo.run(&["--executor", executor, "--keep-workspace"]);
    let log = log_text(&ev, "attacker");
    assert!(log.contains("attacked"), "{err}\n{log}");
    assert!(!log.contains("uid=0\n"), "the stage ran as root: {log}");
    assert!(log.contains("CapEff:\t0000000000000000"), "the stage holds capabilities: {log}");
    assert!(!log.contains("READ-SHADOW") && !log.contains("WROTE-SYSCTL"), "{log}");
    let run = repo.run_ids().pop().expect("run");
    let mut files = Vec::new();
    tree(&repo.record(&run), &mut files);
    tree(&repo.path().join(".lightsout/worktrees"), &mut files);
    for (path, meta) in &files {
        let t = meta.file_type();
        assert!(meta.permissions().mode() & 0o7000 == 0 || path.ends_with(".git"), "{} kept s-bits", path.display());
        assert!(!(t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device()), "{}", path.display());
        if path.starts_with(repo.record(&run)) {
            assert!(!t.is_symlink(), "a link stayed in the record: {}", path.display());
        }
    }
    let w = warnings(&ev);
    assert!(w.contains("suid: setuid/setgid/sticky bits cleared") && w.contains("fifo: a FIFO, removed"), "{w}");
}

#[test]
fn a_stage_never_gets_host_root_nor_leaves_setuid_files() {
    a_stage_never_gets_host_root_nor_leaves_setuid_files_on("docker");
}

#[test]
pub(crate) fn local_a_stage_never_gets_host_root_nor_leaves_setuid_files() {
    a_stage_never_gets_host_root_nor_leaves_setuid_files_on("local");
}

// ---- Class: the runner's environment and other stages' secrets. Nowhere in a sandbox, and
// no secret in any process's arguments. ----

fn no_secret_in_arguments_nor_runner_environment_on(executor: &str) {
    let repo = Repo::with_policy(
        "  holder:\n    secrets: [ARGV_TOKEN]\n    run: sleep 4\n  attacker:\n    run: cat /proc/1/environ /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\\\0' '\\\\n'; echo done\n",
        Some("version: 1\nsecrets: { ARGV_TOKEN: { stages: [run] } }\n"),
    );
    // A value of this test's own: the variants run at once, and every process is scanned.
    let secret = format!("argv-secret-{executor}-{}", std::process::id());
    let mut c = repo.cmd(&["--jobs", "2", "--executor", executor]);
    c.env("ARGV_TOKEN", &secret).env("RUNNER_CANARY", "runner-canary-2201");
    let child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    // While the holder sleeps, every process's arguments are what any host user can read.
    let mut seen_args = String::new();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                seen_args.push_str(&String::from_utf8_lossy(&cmdline));
            }
        }
        assert!(!seen_args.contains(&secret), "a secret in a process's arguments");
    }
    let out = child.wait_with_output().expect("wait");
    let ev = events(&String::from_utf8_lossy(&out.stdout));
    let log = log_text(&ev, "attacker");
    assert!(log.contains("done"), "{ev:#?}");
    assert!(!log.contains(&secret) && !log.contains("runner-canary-2201"), "{log}");
    assert!(!log.contains("RUNNER_CANARY") && !log.contains("ARGV_TOKEN"), "{log}");
}

#[test]
fn no_secret_in_arguments_nor_runner_environment() {
    no_secret_in_arguments_nor_runner_environment_on("docker");
}

#[test]
pub(crate) fn local_no_secret_in_arguments_nor_runner_environment() {
    no_secret_in_arguments_nor_runner_environment_on("local");
}

// ---- Class: images. Built from the base revision only, with no network; an image a
// devcontainer.json names obeys the policy at run time. ----

#[test]
fn an_image_is_built_from_the_base_revision_without_network() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let gw = Command::new("docker")
        .args(["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"])
        .output()
        .expect("docker");
    let host = String::from_utf8_lossy(&gw.stdout).trim().to_owned();
    let repo = Repo::new(
        "  agent:\n    run: printf 'FROM lightsout-test/busybox:latest\\nRUN echo agent > /marker\\n' > img/Dockerfile\n  use:\n    needs: [agent]\n    image: \"build:img/Dockerfile\"\n    run: cat /marker\n",
    );
    std::fs::create_dir_all(repo.path().join("img")).expect("mkdir");
    let nonce = std::process::id();
    std::fs::write(
        repo.path().join("img/Dockerfile"),
        format!(
            "FROM lightsout-test/busybox:latest\nRUN (busybox nc -w 2 {host} {port} </dev/null && echo CONNECTED || echo offline) > /net\nRUN echo base-{nonce} > /marker\n"
        ),
    )
    .expect("dockerfile");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "use"), "succeeded", "{err}\n{ev:#?}");
    assert_eq!(log_text(&ev, "use").trim(), format!("base-{nonce}"));
    assert!(listener.accept().is_err(), "the image build reached the host");
}

#[test]
fn a_devcontainer_is_read_from_the_base_and_its_image_obeys_the_policy() {
    let policy = "version: 1\nimages: { allow: [\"lightsout-test/busybox:*\", devcontainer] }\n";
    let stages = stage(
        "agent",
        "printf '{\"image\": \"lightsout-test/debian:bookworm\"}' > .devcontainer/devcontainer.json",
        "",
    ) + &stage(
        "use",
        "test -f /etc/debian_version && echo DEBIAN || echo busybox",
        "    needs: [agent]\n    image: devcontainer\n",
    );
    let repo = Repo::with_policy(&stages, Some(policy));
    std::fs::create_dir_all(repo.path().join(".devcontainer")).expect("mkdir");
    std::fs::write(
        repo.path().join(".devcontainer/devcontainer.json"),
        "{ \"image\": \"lightsout-test/busybox:latest\" }",
    )
    .expect("write");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "use"), "succeeded", "{err}\n{ev:#?}");
    assert_eq!(log_text(&ev, "use").trim(), "busybox");

    // A devcontainer.json of the base naming an image the policy does not allow: refused.
    std::fs::write(
        repo.path().join(".devcontainer/devcontainer.json"),
        "{ \"image\": \"lightsout-test/debian:bookworm\" }",
    )
    .expect("write");
    commit_all(repo.path());
    let (_, ev, _) = repo.run(&[]);
    assert_eq!(outcome(&ev, "use"), "failed", "{ev:#?}");
    assert!(reason(&ev, "use").contains("refused by policy"), "{}", reason(&ev, "use"));
    assert!(!log_text(&ev, "use").contains("DEBIAN"));
}

// ---- Class: protected paths and secrets in the change, checked before ship. ----

const SHIP: &str = "  ship:\n    needs: [agent]\n    uses: ship\n    with: { remote: origin }\n";

#[test]
fn a_change_to_protected_paths_never_ships() {
    for edit in [
        "echo 'images: { allow: [\"*\"] }' >> policy.yaml",
        "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/evil.yml",
        "echo '*.py -diff' > .gitattributes",
        "echo 'stages: {}' >> pipelines/misc.yaml",
        "mkdir -p tests && echo 'def test_ok(): pass' > tests/test_new.py",
    ] {
        let repo = Repo::with_policy(&format!("{}{SHIP}", stage("agent", edit, "")), Some("version: 1\n"));
        let bare = with_remote(&repo);
        let (code, ev, err) = repo.run(&[]);
        assert_eq!(code, 1, "{edit}: {err}\n{ev:#?}");
        assert_eq!(outcome(&ev, "ship"), "failed", "{edit}");
        assert!(reason(&ev, "ship").contains("protected path"), "{edit}: {}", reason(&ev, "ship"));
        assert_eq!(branches_of(bare.path()), "", "{edit}: something was pushed");
    }
}

#[test]
fn a_change_holding_a_secret_never_ships_and_the_reason_is_masked() {
    for edit in [
        "echo \"key = $SHIP_KEY\" >> config.py",
        "echo \"$SHIP_KEY\" | base64 > blob.txt",
        "touch \"f-$SHIP_KEY\"",
        "printf 'a\\0b %s\\n' \"$SHIP_KEY\" > bin.dat",
        "echo \"++ b/$SHIP_KEY\" >> README",
    ] {
        let repo = Repo::with_policy(
            &format!("  agent:\n    secrets: [SHIP_KEY]\n    run: {edit}\n{SHIP}"),
            Some("version: 1\nsecrets: { SHIP_KEY: { stages: [run] } }\n"),
        );
        let bare = with_remote(&repo);
        let mut c = repo.cmd(&[]);
        c.env("SHIP_KEY", "ship-secret-value-7781");
        let (code, out, err) = output(&mut c);
        let ev = events(&out);
        assert_eq!(code, 1, "{edit}: {err}\n{ev:#?}");
        assert!(reason(&ev, "ship").contains("secret"), "{edit}: {}", reason(&ev, "ship"));
        assert!(!out.contains("ship-secret-value-7781"), "{edit}");
        assert_eq!(branches_of(bare.path()), "", "{edit}: something was pushed");
    }
}

#[test]
fn secrets_too_short_to_mask_are_refused() {
    let repo = Repo::with_policy(
        "  agent:\n    secrets: [TINY]\n    run: echo \"$TINY\"\n",
        Some("version: 1\nsecrets: { TINY: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&[]);
    c.env("TINY", "abc");
    let (code, out, _) = output(&mut c);
    let ev = events(&out);
    assert_eq!(code, 1);
    assert!(reason(&ev, "agent").contains("shorter than 4 bytes"), "{ev:#?}");
}

#[test]
fn secrets_are_masked_in_output_keys_malformed_lines_file_names_and_kept_files() {
    let repo = Repo::with_policy(
        "  a:\n    secrets: [MASK_KEY]\n    run: |\n      echo \"k-$MASK_KEY=v\" > $LIGHTSOUT_OUTPUT\n      echo \"$MASK_KEY\" > /lightsout/kept.txt\n      touch \"name-$MASK_KEY\"\n  b:\n    needs: [a]\n    secrets: [MASK_KEY]\n    run: echo \"no equals $MASK_KEY\" > $LIGHTSOUT_OUTPUT\n",
        Some("version: 1\nsecrets: { MASK_KEY: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&["--keep-going"]);
    c.env("MASK_KEY", "mask-secret-value-3390");
    let (_, out, err) = output(&mut c);
    let ev = events(&out);
    assert_eq!(outcome(&ev, "a"), "succeeded", "{err}\n{ev:#?}");
    assert_eq!(outcome(&ev, "b"), "failed", "{ev:#?}");
    let run = repo.run_ids().pop().expect("run");
    let mut texts = vec![out];
    let mut files = Vec::new();
    tree(&repo.record(&run), &mut files);
    for (path, meta) in files {
        assert!(!path.to_string_lossy().contains("mask-secret-value-3390"));
        if meta.is_file() {
            texts.push(String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned());
        }
    }
    for args in [&["runs", "show", run.as_str()][..], &["report", run.as_str()]] {
        texts.push(output(super::lightsout(repo.path()).args(args)).1);
    }
    for t in texts {
        assert!(!t.contains("mask-secret-value-3390"), "unmasked: {t}");
    }
}

// ---- Class: graders' evidence comes from the base revision or outside the workspace. ----

#[test]
fn the_candidate_cannot_forge_the_baseline() {
    let stages = r#"  edit:
    run: echo yes > fixed
  tests:
    needs: [edit]
    uses: grade.tests
    with:
      fail_to_pass: [t.bug]
      pass_to_pass: true
      command: |
        if [ -f fixed ]; then b=''; k='<failure/>'; else b='<failure/>'; k=''; fi
        if [ -f fixed ]; then
          mkdir -p /lightsout/base ../lightsout/base
          printf '<testsuite><testcase classname="t" name="bug"><failure/></testcase></testsuite>' > /lightsout/base/junit.xml
          chmod 444 /lightsout/base/junit.xml
        fi
        printf '<testsuite><testcase classname="t" name="bug">%s</testcase><testcase classname="t" name="keep">%s</testcase></testsuite>' "$b" "$k" > $LIGHTSOUT_JUNIT
"#;
    for executor in ["docker", "local"] {
        let repo = Repo::new(stages);
        let (_, ev, err) = repo.run(&["--executor", executor]);
        let v = &finished(&ev, "tests").first().unwrap_or_else(|| panic!("no verdict: {err}"))["verdict"];
        assert_eq!(v["pass"], false, "{executor}: the forged baseline hid a regression: {v:#?}");
        assert!(v.to_string().contains("keep"), "{executor}: {v}");
    }
}

#[test]
fn grade_jsonschema_judges_with_the_base_revisions_schema() {
    let repo = Repo::new(
        "  agent:\n    run: echo '{}' > schema.json && echo '{}' > data.json\n  check:\n    needs: [agent]\n    uses: grade.jsonschema\n    with: { schema: schema.json, files: [data.json] }\n",
    );
    std::fs::write(repo.path().join("schema.json"), r#"{"type": "object", "required": ["name"]}"#).expect("schema");
    std::fs::write(repo.path().join("data.json"), r#"{"name": "x"}"#).expect("data");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "check"), "failed", "{err}\n{ev:#?}");
    assert!(reason(&ev, "check").contains("name"), "{}", reason(&ev, "check"));
}

#[test]
fn gitattributes_do_not_blind_host_git() {
    let repo = Repo::new(
        "  agent:\n    run: |\n      printf '*.txt -diff\\n* binary\\n' > .gitattributes\n      for i in $(seq 1 60); do echo \"line $i\"; done > notes.txt\n  scope:\n    needs: [agent]\n    uses: grade.diff\n    with: { max_changed_lines: 20 }\n",
    );
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "scope"), "failed", "{err}\n{ev:#?}");
    let v = finished(&ev, "scope")[0]["verdict"].to_string();
    assert!(v.contains("62") && v.contains("20"), "{v}");
    let run = repo.run_ids().pop().expect("run");
    let patch = std::fs::read_to_string(repo.record(&run).join("diff.patch")).unwrap_or_default();
    assert!(patch.contains("+line 60") && !patch.contains("GIT binary patch"), "{patch}");
}

// ---- Class: files the runner reads after a stage: links, FIFOs, huge and sparse files, logs. ----

fn special_result_files_fail_cleanly_on(executor: &str) {
    for (attack, expect) in [
        ("busybox mkfifo $LIGHTSOUT_OUTPUT", "FIFO"),
        ("ln -s /dev/zero $LIGHTSOUT_OUTPUT", "symbolic link"),
        ("busybox truncate -s 3G $LIGHTSOUT_OUTPUT", "larger than"),
    ] {
        let repo = Repo::new(&format!("  attacker:\n    timeout: 60s\n    run: {attack}\n"));
        let (code, ev, err) = repo.run(&["--executor", executor]);
        assert_eq!(code, 1, "{attack}: {err}");
        assert!(reason(&ev, "attacker").contains(expect), "{attack}: {}", reason(&ev, "attacker"));
    }
    // A huge (sparse) file and a file named after a secret, left in the I/O directory that the
    // record keeps: neither is kept.
    let repo = Repo::with_policy(
        "  attacker:\n    secrets: [NAME_KEY]\n    run: busybox truncate -s 100M /lightsout/huge && touch \"/lightsout/n-$NAME_KEY\"\n",
        Some("version: 1\nsecrets: { NAME_KEY: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&["--executor", executor]);
    c.env("NAME_KEY", format!("name-secret-{executor}-5531"));
    let (_, out, err) = output(&mut c);
    let ev = events(&out);
    let run = repo.run_ids().pop().expect("run");
    let io = repo.record(&run).join("stages/attacker/1.io");
    assert!(!io.join("huge").exists(), "{err}\n{ev:#?}");
    let names: Vec<String> = std::fs::read_dir(&io)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("name-secret")), "{names:?}");
    assert!(warnings(&ev).contains("huge: is larger than"), "{}", warnings(&ev));
    // The JUnit report of a test command made a FIFO, a link to /dev/zero, or sparse and huge.
    for attack in [
        "busybox mkfifo $LIGHTSOUT_JUNIT",
        "ln -s /dev/zero $LIGHTSOUT_JUNIT",
        "busybox truncate -s 2G $LIGHTSOUT_JUNIT",
    ] {
        let repo = Repo::new(&format!(
            "  tests:\n    uses: grade.tests\n    timeout: 60s\n    with: {{ fail_to_pass: [t.a], command: \"{attack}\" }}\n"
        ));
        let (code, ev, err) = repo.run(&["--executor", executor]);
        assert_ne!(code, 0, "{attack}: {err}");
        assert!(reason(&ev, "tests").contains("JUnit report"), "{attack}: {ev:#?}");
    }
}

#[test]
fn special_result_files_fail_cleanly() {
    special_result_files_fail_cleanly_on("docker");
}

#[test]
pub(crate) fn local_special_result_files_fail_cleanly() {
    special_result_files_fail_cleanly_on("local");
}

fn a_huge_sparse_file_never_reaches_host_git_on(executor: &str) {
    let repo = Repo::new("  agent:\n    run: busybox truncate -s 1536M big.bin && echo done\n");
    let (code, ev, err) = repo.run(&["--executor", executor]);
    assert_eq!(code, 1, "{err}\n{ev:#?}");
    assert!(reason(&ev, "agent").contains("big.bin") && reason(&ev, "agent").contains("over the limit"), "{ev:#?}");
    assert!(ev.iter().any(|e| e["event"] == "run_finished"), "no run_finished");
}

#[test]
fn a_huge_sparse_file_never_reaches_host_git() {
    a_huge_sparse_file_never_reaches_host_git_on("docker");
}

#[test]
pub(crate) fn local_a_huge_sparse_file_never_reaches_host_git() {
    a_huge_sparse_file_never_reaches_host_git_on("local");
}

fn logs_are_capped_and_keep_their_end_on(executor: &str) {
    let repo = Repo::new(
        "  loud:\n    run: busybox yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | busybox head -c 40000000; echo; echo THE-END-OF-IT\n",
    );
    let (code, ev, err) = repo.run(&["--executor", executor]);
    assert_eq!(code, 0, "{err}");
    let run = repo.run_ids().pop().expect("run");
    let log = repo.record(&run).join("stages/loud/1.log");
    let len = std::fs::metadata(&log).expect("log").len();
    assert!(len < 9 * 1024 * 1024, "the log holds {len} bytes");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.trim_end().ends_with("THE-END-OF-IT"), "the end of the output was lost");
    assert!(text.contains("bytes of output omitted here"));
    assert!(warnings(&ev).contains("omitted"), "{}", warnings(&ev));
}

#[test]
fn logs_are_capped_and_keep_their_end() {
    logs_are_capped_and_keep_their_end_on("docker");
}

#[test]
pub(crate) fn local_logs_are_capped_and_keep_their_end() {
    logs_are_capped_and_keep_their_end_on("local");
}

// ---- Class: availability of host git. ----

#[test]
fn an_empty_nested_repository_fails_the_change_not_the_run() {
    let repo = Repo::new(&stage(
        "agent",
        "mkdir -p sub/.git/objects sub/.git/refs && echo 'ref: refs/heads/main' > sub/.git/HEAD && echo x > sub/file",
        "",
    ));
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 1, "{err}\n{ev:#?}");
    assert!(reason(&ev, "agent").contains("nested git repository"), "{}", reason(&ev, "agent"));
    assert!(ev.iter().any(|e| e["event"] == "run_finished"), "no run_finished");
    let left = std::fs::read_dir(repo.path().join(".lightsout/worktrees")).map_or(0, Iterator::count);
    assert_eq!(left, 0, "the worktree was left behind");
}

#[test]
fn host_stages_in_parallel_share_the_worktree_safely() {
    let mut stages = String::from("  agent:\n    run: for i in 1 2 3; do echo $i >> README; done\n");
    for i in 0..6 {
        let _ = write!(
            stages,
            "  scope{i}:\n    needs: [agent]\n    uses: grade.diff\n  ctx{i}:\n    needs: [agent]\n    uses: context\n"
        );
    }
    let repo = Repo::new(&stages);
    let (code, ev, err) = repo.run(&["--jobs", "12"]);
    assert_eq!(code, 0, "{err}\n{:#?}", ev.iter().filter(|e| e["event"] == "stage_finished").collect::<Vec<_>>());
}

fn a_very_deep_tree_does_not_bring_the_runner_down_on(executor: &str) {
    let repo = Repo::new(&stage(
        "agent",
        "i=0\nwhile [ $i -lt 3000 ]; do mkdir d && cd d || break; i=$((i+1)); done\necho x > leaf; echo depth $i",
        "",
    ));
    let (code, ev, err) = repo.run(&["--executor", executor]);
    assert!(code == 0 || code == 1, "{code}: {err}");
    assert!(log_text(&ev, "agent").contains("depth"), "{ev:#?}");
    assert!(ev.iter().any(|e| e["event"] == "run_finished"), "no run_finished: {err}");
}

#[test]
fn a_very_deep_tree_does_not_bring_the_runner_down() {
    a_very_deep_tree_does_not_bring_the_runner_down_on("docker");
}

#[test]
pub(crate) fn local_a_very_deep_tree_does_not_bring_the_runner_down() {
    a_very_deep_tree_does_not_bring_the_runner_down_on("local");
}

#[test]
fn a_flood_of_refused_connections_does_not_grow_the_record_without_bound() {
    let (repo, ev, log) = super::hostile::egress_attack(
        "local",
        None,
        &["allowed.test:80"],
        "i=0; while [ $i -lt 1100 ]; do\n  printf 'CONNECT denied.test:80 HTTP/1.1\\r\\n\\r\\n' | busybox nc -w 2 $PROXY 3128 >/dev/null 2>&1\n  i=$((i+1))\ndone\necho flooded",
    );
    assert!(log.contains("flooded"), "{log}");
    let run = repo.run_ids().pop().expect("run");
    let recorded = repo.recorded_events(&run).iter().filter(|e| e["event"] == "egress").count();
    assert_eq!(recorded, 1000, "{}", warnings(&ev));
    assert!(warnings(&ev).contains("more refused"), "{}", warnings(&ev));
}

#[test]
fn a_secret_split_across_streams_or_by_escape_sequences_is_masked() {
    // Two pipes keep no order between them: halves are masked when they arrive one after the
    // other (as here, where nothing else is printed until both are read), not when other output
    // comes between them (the threat model lists that among what is not protected).
    let repo = Repo::with_policy(
        &stage(
            "leak",
            "printf '%s' \"$SPLIT_KEY\" | head -c 6; printf '%s\\n' \"$SPLIT_KEY\" | tail -c +7 >&2\nsleep 1\nprintf 'SuperS\\033[0mecretValue123\\n'\nprintf 'Sup\\033]0;t\\007erSecretValue123\\n'",
            "    secrets: [SPLIT_KEY]\n",
        ),
        Some("version: 1\nsecrets: { SPLIT_KEY: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&[]);
    c.env("SPLIT_KEY", "SuperSecretValue123");
    let (code, out, err) = output(&mut c);
    assert_eq!(code, 0, "{err}");
    let run = repo.run_ids().pop().expect("run");
    let log = std::fs::read(repo.record(&run).join("stages/leak/1.log")).expect("log");
    // What a terminal shows of the log: its bytes without the escape sequences and controls.
    let shown: String = String::from_utf8_lossy(&log).chars().filter(|c| !c.is_control()).collect();
    for text in [shown, out.replace("\\u001b", "")] {
        assert!(!text.contains("ecretValue123") && !text.contains("SuperSecret"), "{text}");
    }
}

#[test]
fn env_values_are_rendered_and_ticket_text_in_them_stays_data() {
    let repo = Repo::new(
        "  a:\n    run: echo 'k=from-a' > $LIGHTSOUT_OUTPUT\n    outputs: [k]\n  b:\n    needs: [a]\n    env: { FROM_A: \"{{ stages.a.outputs.k }}\", TITLE: \"{{ ticket.title }}\" }\n    run: printf '%s|%s\\n' \"$FROM_A\" \"$TITLE\"; ls /workspace\n",
    );
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "b");
    // The ticket's title holds `$(touch /workspace/pwned)` and backticks: data, never run.
    assert!(log.contains("from-a|it $(touch /workspace/pwned) `id` works"), "{log}");
    assert!(!log.contains("pwned\n") && !log.contains("uid="), "{log}");
}

#[test]
fn protected_paths_hold_against_case_invisible_characters_and_links() {
    for edit in [
        "mkdir -p .GitHub/workflows && echo 'on: push' > .GitHub/workflows/evil.yml",
        "mkdir -p \"$(printf '.g\\342\\200\\214ithub')/workflows\" && echo x > \"$(printf '.g\\342\\200\\214ithub')/workflows/e.yml\"",
        "echo x > POLICY.yaml",
        "mkdir cfg && echo 'steps: []' > cfg/pipeline.yml && ln -s cfg .buildkite",
        "mkdir cfg && echo x > cfg/p.md && ln -s cfg prompts",
        "printf '' > .gitignore",
        "mkdir -p p/__pycache__ && echo bytecode > p/__pycache__/m.cpython-311.pyc",
    ] {
        let repo = Repo::with_policy(&format!("{}{SHIP}", stage("agent", edit, "")), Some("version: 1\n"));
        let bare = with_remote(&repo);
        let (code, ev, err) = repo.run(&[]);
        assert_eq!(code, 1, "{edit}: {err}\n{ev:#?}");
        assert!(reason(&ev, "ship").contains("protected path"), "{edit}: {}", reason(&ev, "ship"));
        assert_eq!(branches_of(bare.path()), "", "{edit}: something was pushed");
    }
}

#[test]
fn grade_diff_counts_lines_that_end_in_a_lone_carriage_return() {
    let agent = stage(
        "agent",
        "i=0; while [ $i -lt 60 ]; do printf 'import os; os.system(\"x\")\\r'; i=$((i+1)); done > mod.py",
        "",
    );
    let repo = Repo::new(
        &(agent + "  scope:\n    needs: [agent]\n    uses: grade.diff\n    with: { max_changed_lines: 20 }\n"),
    );
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "scope"), "failed", "{err}\n{ev:#?}");
    assert!(reason(&ev, "scope").contains("more than the limit of 20"), "{}", reason(&ev, "scope"));
}

#[test]
fn a_stage_that_writes_after_the_graders_is_a_compile_error() {
    let repo = Repo::with_policy(
        &format!(
            "{}  scope:\n    needs: [agent]\n    uses: grade.diff\n  fmt:\n    needs: [scope]\n    run: echo formatted >> README\n  ship:\n    needs: [fmt]\n    uses: ship\n    with: {{ remote: origin }}\n",
            stage("agent", "echo fix >> README", "")
        ),
        Some("version: 1\n"),
    );
    let (code, out, err) = output(super::lightsout(repo.path()).args(["validate"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("stage `fmt` writes the workspace but does not come before grader `scope`"), "{err}");
}

#[test]
fn ship_refuses_changes_no_successful_stage_recorded() {
    let repo = Repo::with_policy(
        &format!(
            "{}{}  ship:\n    needs: [agent]\n    uses: ship\n    with: {{ remote: origin }}\n",
            stage("agent", "echo fix >> README", ""),
            stage("bad", "echo sneaked-in > sneaky.txt; exit 1", ""),
        ),
        Some("version: 1\n"),
    );
    let bare = with_remote(&repo);
    let (code, ev, err) = repo.run(&["--keep-going", "--jobs", "1"]);
    assert_eq!(code, 1, "{err}\n{ev:#?}");
    assert_eq!(outcome(&ev, "bad"), "failed");
    assert_eq!(outcome(&ev, "ship"), "failed", "{ev:#?}");
    assert!(reason(&ev, "ship").contains("no stage's success recorded"), "{}", reason(&ev, "ship"));
    assert_eq!(branches_of(bare.path()), "", "something was pushed");
}

#[test]
fn an_edited_plan_cannot_drop_a_grader_the_policy_requires() {
    let policy = "version: 1\nrequired_graders: { misc: [grade.diff] }\n";
    let stages = format!(
        "{}  gate:\n    needs: [agent]\n    uses: approve\n  scope:\n    needs: [gate]\n    uses: grade.diff\n    with: {{ max_changed_lines: 5 }}\n",
        stage("agent", "i=0; while [ $i -lt 50 ]; do echo $i >> README; i=$((i+1)); done", "")
    );
    let repo = Repo::with_policy(&stages, Some(policy));
    let (code, ev, err) = repo.run(&[]);
    assert_eq!(code, 4, "{err}\n{ev:#?}");
    let run = repo.run_ids().pop().expect("run");
    let plan_path = repo.record(&run).join("plan.json");
    let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan")).expect("json");
    if let Some(list) = plan["stages"].as_array_mut() {
        list.retain(|s| s["kind"] != "grade.diff");
    }
    std::fs::write(&plan_path, plan.to_string()).expect("write");
    let (code, out, err) = output(super::lightsout(repo.path()).args(["approve", &run]).env("CI", "true"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("policy requires"), "{err}");
}

fn locked_directories_hide_nothing_from_the_runner_on(executor: &str) {
    let repo = Repo::with_policy(
        &stage(
            "a",
            "mkdir -p /lightsout/locked/sub && echo \"val=$LOCK_KEY\" > /lightsout/locked/sub/f\necho x > \"/lightsout/locked/sub/name-$LOCK_KEY\"\nbusybox mkfifo /lightsout/locked/sub/fifo\nchmod 0 /lightsout/locked/sub /lightsout/locked\nmkdir -p w/x && echo change > w/x/f && chmod 0 w/x w\nrm -f .git && mkdir -p .git && echo '[core] fsmonitor = touch /tmp/pwned' > .git/config\nchmod 555 /workspace",
            "    secrets: [LOCK_KEY]\n",
        ),
        Some("version: 1\nsecrets: { LOCK_KEY: { stages: [run] } }\n"),
    );
    let mut c = repo.cmd(&["--executor", executor]);
    let secret = format!("lock-secret-{executor}-{}", std::process::id());
    c.env("LOCK_KEY", &secret);
    let (_, out, err) = output(&mut c);
    let ev = events(&out);
    assert!(ev.iter().any(|e| e["event"] == "run_finished"), "{err}\n{ev:#?}");
    let run = repo.run_ids().pop().expect("run");
    let mut files = Vec::new();
    tree(&repo.record(&run), &mut files);
    for (path, meta) in &files {
        assert!(!path.to_string_lossy().contains(&secret), "{}", path.display());
        assert!(!meta.file_type().is_fifo(), "{}", path.display());
        if meta.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            assert!(!text.contains(&secret), "unmasked in {}", path.display());
        }
    }
    let left = std::fs::read_dir(repo.path().join(".lightsout/worktrees")).map_or(0, Iterator::count);
    assert_eq!(left, 0, "the worktree was left behind");
}

#[test]
fn locked_directories_hide_nothing_from_the_runner() {
    locked_directories_hide_nothing_from_the_runner_on("docker");
}

#[test]
pub(crate) fn local_locked_directories_hide_nothing_from_the_runner() {
    locked_directories_hide_nothing_from_the_runner_on("local");
}

#[test]
fn a_pull_request_that_hangs_is_bounded_by_the_stage_timeout_and_the_push_is_said() {
    // A GitHub API that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let hold = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(40));
        drop(held);
    });
    let repo = Repo::with_policy(
        &format!(
            "{}  ship:\n    needs: [agent]\n    uses: ship\n    timeout: 3s\n    secrets: [GITHUB_TOKEN]\n    with: {{ remote: origin }}\n",
            stage("agent", "echo fix >> README", "")
        ),
        Some("version: 1\nsecrets: { GITHUB_TOKEN: { stages: [ship] } }\n"),
    );
    let bare = with_remote(&repo);
    let mut c = repo.cmd(&[]);
    c.env("GITHUB_TOKEN", "ghs_neverAnsweredToken123456")
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env("GITHUB_API_URL", &api);
    let (code, out, err) = output(&mut c);
    let ev = events(&out);
    assert_eq!(code, 1, "{err}\n{ev:#?}");
    let why = reason(&ev, "ship");
    assert!(why.contains("pushed") && why.contains("as lightsout/T-1, but"), "{why}");
    let ms = finished(&ev, "ship")[0]["duration_ms"].as_u64().unwrap_or(u64::MAX);
    // The request was given what was left of the stage's 3 s, not the client's own 30 s.
    assert!(ms < 20_000, "ship took {ms} ms");
    assert!(branches_of(bare.path()).contains("refs/heads/lightsout/T-1"));
    drop(hold);
}

#[test]
fn ship_says_when_it_opens_no_pull_request() {
    let repo = Repo::with_policy(&format!("{}{SHIP}", stage("agent", "echo fix >> README", "")), Some("version: 1\n"));
    let _bare = with_remote(&repo);
    let mut c = repo.cmd(&[]);
    c.env_remove("GITHUB_REPOSITORY");
    let (code, out, err) = output(&mut c);
    let ev = events(&out);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert!(
        log_text(&ev, "ship").contains("no pull request: GITHUB_REPOSITORY is not set"),
        "{}",
        log_text(&ev, "ship")
    );
}

#[test]
fn test_runner_configuration_comes_from_the_base_revision() {
    // The candidate rewrites the test runner's configuration and adds a hook file; the test
    // command shows what it sees.
    let agent = stage(
        "agent",
        "echo '[pytest] addopts = -k nothing' > pytest.ini\necho 'import pytest  # skip-everything hook' > conftest.py\nmkdir -p pkg && echo 'HOOK' > pkg/conftest.py",
        "",
    );
    let repo = Repo::new(&format!(
        "{agent}  tests:\n    needs: [agent]\n    uses: grade.tests\n    with:\n      fail_to_pass: [t.a]\n      command: cat pytest.ini conftest.py pkg/conftest.py 2>&1; printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n"
    ));
    std::fs::write(repo.path().join("pytest.ini"), "[pytest]\n# base\n").expect("ini");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    let log = log_text(&ev, "tests");
    assert!(log.contains("# base"), "{err}\n{log}");
    assert!(!log.contains("-k nothing") && !log.contains("skip-everything") && !log.contains("HOOK"), "{log}");
}

#[test]
fn grade_diff_counts_the_lines_of_binary_files() {
    // 100 lines of code behind a NUL byte: git calls the file binary and counts it as one.
    let agent = stage(
        "agent",
        "{ printf 'PK\\0\\0'; i=0; while [ $i -lt 100 ]; do echo \"def f$i(): return $i\"; i=$((i+1)); done; } > impl.dat",
        "",
    );
    let repo = Repo::new(
        &(agent + "  scope:\n    needs: [agent]\n    uses: grade.diff\n    with: { max_changed_lines: 50 }\n"),
    );
    let (_, ev, err) = repo.run(&[]);
    assert_eq!(outcome(&ev, "scope"), "failed", "{err}\n{ev:#?}");
    assert!(reason(&ev, "scope").contains("more than the limit of 50"), "{}", reason(&ev, "scope"));
}

fn a_stage_past_its_timeout_gets_term_and_a_grace_period_on(executor: &str) {
    let repo = Repo::new(&stage(
        "slow",
        "trap 'echo cleaned-up-on-term; exit 3' TERM\necho started\nwhile true; do sleep 1; done",
        "    timeout: 2s\n",
    ));
    let (code, ev, err) = repo.run(&["--executor", executor]);
    assert_eq!(code, 1, "{err}\n{ev:#?}");
    assert_eq!(outcome(&ev, "slow"), "timed_out", "{ev:#?}");
    let log = log_text(&ev, "slow");
    assert!(log.contains("started") && log.contains("cleaned-up-on-term"), "{log}");
}

#[test]
fn a_stage_past_its_timeout_gets_term_and_a_grace_period() {
    a_stage_past_its_timeout_gets_term_and_a_grace_period_on("docker");
}

#[test]
pub(crate) fn local_a_stage_past_its_timeout_gets_term_and_a_grace_period() {
    a_stage_past_its_timeout_gets_term_and_a_grace_period_on("local");
}

#[test]
fn a_flood_of_leftover_files_does_not_grow_the_record_without_bound() {
    let repo = Repo::new(&stage(
        "flood",
        "mkdir -p /lightsout/f && cd /lightsout/f && i=0; while [ $i -lt 300 ]; do busybox mkfifo p$i; i=$((i+1)); done",
        "",
    ));
    let (_, ev, err) = repo.run(&[]);
    let count = ev.iter().filter(|e| e["event"] == "warning").count();
    assert!(count <= 101, "{count} warnings: {err}");
    assert!(warnings(&ev).contains("200 more files removed or changed"), "{}", warnings(&ev));
    let run = repo.run_ids().pop().expect("run");
    let mut files = Vec::new();
    tree(&repo.record(&run), &mut files);
    assert!(!files.iter().any(|(_, m)| m.file_type().is_fifo()), "a FIFO stayed in the record");
}

#[test]
fn pytest_configuration_outside_pytest_ini_comes_from_the_base_revision() {
    // pytest reads its configuration (and `-p plugin`, `addopts`) from `.pytest.ini`,
    // `pyproject.toml` and `setup.cfg` as well as `pytest.ini`: the candidate writes all three,
    // loading a plugin of its own that turns every failure into a pass. The test command shows
    // what it sees; the change then goes to `ship`.
    let agent = stage(
        "agent",
        "printf '[pytest]\\naddopts = -p lenient  # DOT-INI\\n' > .pytest.ini\nprintf '[tool:pytest]\\naddopts = -p lenient  # SETUP-CFG\\n' > setup.cfg\nprintf '[tool.pytest.ini_options]\\naddopts = \"-p lenient\"  # PYPROJECT\\n' > pyproject.toml\nprintf 'import pytest\\n@pytest.hookimpl(hookwrapper=True)\\ndef pytest_runtest_makereport(item, call):\\n    r = (yield).get_result()\\n    r.outcome = \"passed\"\\n' > lenient.py",
        "",
    );
    let repo = Repo::new(&format!(
        "{agent}  tests:\n    needs: [agent]\n    uses: grade.tests\n    with:\n      fail_to_pass: [t.a]\n      command: cat .pytest.ini setup.cfg pyproject.toml 2>&1; printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n"
    ));
    std::fs::write(repo.path().join("pyproject.toml"), "[project]\nname = \"base\"\n").expect("pyproject");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    let log = log_text(&ev, "tests");
    assert!(!log.is_empty(), "{err}\n{ev:#?}");
    assert!(
        !log.contains("DOT-INI") && !log.contains("SETUP-CFG") && !log.contains("PYPROJECT"),
        "the candidate's pytest configuration is what grade.tests ran with:\n{log}"
    );
}

#[test]
fn a_module_shadowing_the_test_runner_does_not_pass_the_graders_nor_ship() {
    // `python3 -m unittest` (the bundled example's command) puts the working directory first on
    // `sys.path`: a `unittest/` package in the change is the test runner. The candidate leaves
    // the bug, adds a runner that prints a clean pass, and asks to ship.
    let forged = "mkdir -p unittest && : > unittest/__init__.py\ncat > unittest/__main__.py <<'PY'\nimport sys\nfor t in ('test_add', 'test_zero'):\n    print(f'{t} (tests.test_calc.CalcTest.{t}) ... ok', file=sys.stderr)\nprint('-' * 70 + '\\nRan 2 tests in 0.001s\\n\\nOK', file=sys.stderr)\nPY";
    let repo = Repo::with_policy(
        &format!(
            "{}  tests:\n    needs: [agent]\n    image: lightsout-test/debian:bookworm\n    uses: grade.tests\n    with:\n      command: python3 -m unittest discover -v -s tests -t .\n      format: unittest\n      fail_to_pass: [tests.test_calc.CalcTest.test_add]\n      pass_to_pass: true\n  ship:\n    needs: [tests]\n    uses: ship\n    with: {{ remote: origin }}\n",
            stage("agent", forged, "")
        ),
        Some("version: 1\n"),
    );
    std::fs::create_dir_all(repo.path().join("tests")).expect("tests");
    std::fs::write(repo.path().join("calc.py"), "def add(a, b):\n    return a - b\n").expect("calc");
    std::fs::write(repo.path().join("tests/__init__.py"), "").expect("init");
    std::fs::write(
        repo.path().join("tests/test_calc.py"),
        "import unittest\nfrom calc import add\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n\n    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n",
    )
    .expect("test");
    commit_all(repo.path());
    let bare = with_remote(&repo);
    let (_, ev, err) = repo.run(&[]);
    assert!(!finished(&ev, "tests").is_empty(), "{err}\n{ev:#?}");
    assert_eq!(
        branches_of(bare.path()),
        "",
        "the unfixed change was shipped (grade.tests: {} {})",
        outcome(&ev, "tests"),
        reason(&ev, "tests")
    );
    assert_ne!(outcome(&ev, "tests"), "succeeded", "grade.tests passed a change that fixes nothing");
}

#[test]
fn a_test_file_grade_tests_took_from_the_base_never_ships() {
    // grade.tests matches its `test_files` with `*` crossing `/` (so `checks/*` takes
    // `checks/unit/case_a.py` from the base revision); the ship guard must protect the same
    // files, or the change ships a test that is not the one that graded it.
    let agent = stage("agent", "echo 'def test_a(): pass  # WEAKENED' > checks/unit/case_a.py", "");
    let repo = Repo::with_policy(
        &format!(
            "{agent}  tests:\n    needs: [agent]\n    uses: grade.tests\n    with:\n      test_files: [\"checks/*\"]\n      command: cat checks/unit/case_a.py; printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n  ship:\n    needs: [tests]\n    uses: ship\n    with: {{ remote: origin }}\n"
        ),
        Some("version: 1\n"),
    );
    std::fs::create_dir_all(repo.path().join("checks/unit")).expect("mkdir");
    std::fs::write(repo.path().join("checks/unit/case_a.py"), "def test_a(): assert real_check()  # BASE\n")
        .expect("test");
    commit_all(repo.path());
    let bare = with_remote(&repo);
    let (_, ev, err) = repo.run(&[]);
    let log = log_text(&ev, "tests");
    assert!(
        log.contains("# BASE") && !log.contains("WEAKENED"),
        "grade.tests did not use the base's test: {err}\n{log}"
    );
    assert_eq!(
        branches_of(bare.path()),
        "",
        "the weakened test grade.tests never ran was shipped (ship: {} {})",
        outcome(&ev, "ship"),
        reason(&ev, "ship")
    );
}

#[test]
fn a_test_directory_turned_into_a_link_leads_no_write_out_of_the_candidates_copy() {
    // The change replaces `tests/` with a link to a host directory; grade.tests then puts the
    // base's test files back in the candidate's copy (on the host, as the runner) and removes
    // the added ones: nothing may be written or removed through the link.
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("keep.py"), "host file\n").expect("keep");
    let agent = stage("agent", &format!("rm -rf tests && ln -s {} tests", outside.path().display()), "");
    let repo = Repo::new(&format!(
        "{agent}  tests:\n    needs: [agent]\n    uses: grade.tests\n    with:\n      command: ls -la tests; printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n"
    ));
    std::fs::create_dir_all(repo.path().join("tests")).expect("mkdir");
    std::fs::write(repo.path().join("tests/test_a.py"), "def test_a(): pass\n").expect("test");
    commit_all(repo.path());
    let (_, ev, err) = repo.run(&[]);
    assert!(log_text(&ev, "tests").contains("test_a.py"), "the base's tests were not put back: {err}\n{ev:#?}");
    let mut names: Vec<String> = std::fs::read_dir(outside.path())
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keep.py"], "the runner wrote or removed through the link: {}", log_text(&ev, "tests"));
}
