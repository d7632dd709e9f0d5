//! Stages that only read the workspace (graders) work in a scratch copy of it: writable and
//! executable, thrown away after the attempt. The attacks: a grader (or the agent before it)
//! tries, through the copy, to change what ships or to lead the host side out of the workspace.
//! Each test fails if the attack succeeds.

use std::fmt::Write as _;

use super::support::{Repo, log_text, outcome};

/// A grader running `script` (shell lines), as YAML under `stages:`.
fn grader(name: &str, needs: &str, script: &str) -> String {
    let body = script.lines().fold(String::new(), |mut acc, l| {
        let _ = writeln!(acc, "        {l}");
        acc
    });
    format!("  {name}:\n    needs: [{needs}]\n    uses: grade.command\n    with:\n      command: |\n{body}")
}

/// The run's diff, as recorded.
fn patch(repo: &Repo) -> String {
    let run = repo.run_ids().pop().expect("run");
    std::fs::read_to_string(repo.record(&run).join("diff.patch")).unwrap_or_default()
}

/// Nothing is left of the scratch copies: only the run's own worktree (kept) is there.
fn no_scratch_left(repo: &Repo) {
    let left: Vec<String> = std::fs::read_dir(repo.path().join(".lightsout/worktrees"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.contains("scratch")), "{left:?}");
}

fn a_grader_builds_and_runs_in_its_copy_and_nothing_flows_back_on(executor: &str) {
    let stages = format!(
        "  agent:\n    run: echo fixed > fix.txt\n{}{}  after:\n    needs: [tests, lint]\n    run: ls; cat README\n",
        grader(
            "lint",
            "agent",
            "mkdir -p target && echo '[[package]]' > Cargo.lock\n\
             printf '#!/bin/sh\\necho built-and-ran\\n' > target/t && chmod +x target/t && ./target/t\n\
             cp target/t /tmp/t && /tmp/t && echo tmp-exec\n\
             echo graded >> README; rm fix.txt; echo extra > added-by-grader",
        ),
        "  tests:\n    needs: [agent]\n    uses: grade.tests\n    with:\n      command: |\n        \
         mkdir -p target && echo bin > target/test-bin && echo lock > Cargo.lock && \
         printf '<testsuite><testcase classname=\"t\" name=\"a\"/></testsuite>' > $LIGHTSOUT_JUNIT\n",
    );
    let repo = Repo::new(&stages);
    let (code, ev, err) = repo.run(&["--executor", executor, "--keep-workspace"]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    let log = log_text(&ev, "lint");
    assert!(log.contains("built-and-ran") && log.contains("tmp-exec"), "{log}");
    assert_eq!(outcome(&ev, "tests"), "succeeded", "{ev:#?}");
    // The grader saw the agent's change, and what it wrote went with its copy.
    let after = log_text(&ev, "after");
    assert!(after.contains("fix.txt") && !after.contains("graded"), "{after}");
    for gone in ["target", "Cargo.lock", "added-by-grader"] {
        assert!(!after.contains(gone), "{gone} flowed back: {after}");
    }
    let diff = patch(&repo);
    assert!(diff.contains("+fixed") && !diff.contains("graded") && !diff.contains("Cargo.lock"), "{diff}");
    no_scratch_left(&repo);
}

#[test]
fn a_grader_builds_and_runs_in_its_copy_and_nothing_flows_back() {
    a_grader_builds_and_runs_in_its_copy_and_nothing_flows_back_on("docker");
}

#[test]
fn local_a_grader_builds_and_runs_in_its_copy_and_nothing_flows_back() {
    a_grader_builds_and_runs_in_its_copy_and_nothing_flows_back_on("local");
}

/// Links out of the workspace, a hard link into it, a huge sparse file and a planted `.git`:
/// none of them carries a grader's writes anywhere, and none is followed on the host.
fn links_and_sparse_files_do_not_carry_a_graders_writes_on(executor: &str) {
    let decoy = tempfile::tempdir().expect("decoy");
    std::fs::write(decoy.path().join("keep"), "the host's\n").expect("decoy file");
    let d = decoy.path().display();
    let stages = format!(
        "  agent:\n    run: |\n      ln -s {d} out; ln -s {d}/keep keep-link; ln -s / root; ln -s ../../../.. up\n      \
         ln README hard; echo big.bin > .gitignore; busybox truncate -s 1536M big.bin; echo agent\n{}  after:\n    needs: [grader]\n    run: cat README hard; ls -a\n",
        grader(
            "grader",
            "agent",
            &format!(
                "test -e big.bin && echo HAS-BIG || echo no-big\n\
                 echo pwned > hard; echo pwned > README; echo pwned > keep-link; echo pwned > out/new 2>/dev/null\n\
                 rm -rf up/* root/workspace 2>/dev/null\n\
                 echo 'gitdir: ../../../.git/worktrees/'$LIGHTSOUT_RUN > .git\n\
                 ln -s {d} back; mkdir locked; touch locked/f; chmod 000 locked; echo done"
            ),
        ),
    );
    let repo = Repo::new(&stages);
    let (code, ev, err) = repo.run(&["--executor", executor, "--keep-workspace"]);
    assert_eq!(code, 0, "{err}\n{ev:#?}");
    assert!(log_text(&ev, "grader").contains("no-big"), "a file .gitignore excludes was copied");
    let after = log_text(&ev, "after");
    assert!(!after.contains("pwned") && after.contains("base"), "{after}");
    assert!(!after.contains("locked") && !after.contains("back"), "{after}");
    // The host's files behind the links are as they were, and nothing was added beside them.
    assert_eq!(std::fs::read_to_string(decoy.path().join("keep")).unwrap_or_default(), "the host's\n");
    let names: Vec<_> = std::fs::read_dir(decoy.path()).expect("decoy").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The run's own worktree is whole: its git file and the agent's change are there.
    let run = repo.run_ids().pop().expect("run");
    let ws = repo.path().join(".lightsout/worktrees").join(&run);
    assert_eq!(std::fs::read_to_string(ws.join("README")).unwrap_or_default(), "base\n");
    assert!(std::fs::read_to_string(ws.join(".git")).is_ok_and(|g| g.contains("worktrees")));
    assert!(ws.join("out").is_symlink() && ws.join("big.bin").exists());
    let diff = patch(&repo);
    assert!(!diff.contains("pwned") && diff.contains("+++ b/hard"), "{diff}");
    no_scratch_left(&repo);
}

#[test]
fn links_and_sparse_files_do_not_carry_a_graders_writes() {
    links_and_sparse_files_do_not_carry_a_graders_writes_on("docker");
}

#[test]
fn local_links_and_sparse_files_do_not_carry_a_graders_writes() {
    links_and_sparse_files_do_not_carry_a_graders_writes_on("local");
}
