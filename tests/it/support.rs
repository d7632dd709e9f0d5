//! The builder the integration tests share: a throwaway git repository holding a factory with
//! one pipeline (`Repo`), `lightsout run` in it with `--format json`, and readers of the events
//! it printed. Runs need Docker and the locally built test images, made on first use; a test
//! fails, never skips, when Docker is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::{output, root};

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
