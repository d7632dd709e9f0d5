//! Run records: `.lightsout/runs/<run-id>/`, crash-safe by construction.
//!
//! - `plan.json`, `ticket.json`, `run.json` (what resume needs), written once, atomically
//!   (a temporary file, fsync, rename).
//! - `events.jsonl`: the append-only event log. Each event is written and fsynced before the
//!   scheduler acts on it, so after a crash the log says at least everything that happened.
//!   A torn last line (the crash hit mid-write) is ignored when reading.
//! - `stages/<id>/<attempt>.log`: each attempt's masked output.
//! - `runner.pid`: the process that owns the run, with its start time (pids get reused).
//! - `diff.patch`: the change, at the end.
//!
//! Plain files were chosen over an embedded database: every file is readable with `cat` and
//! `jq`, appends are the only writes after creation, and fsync on a small file is all the
//! durability needed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{Event, Outcome, RunStatus, Stamped};

/// What `resume` needs besides the plan and the ticket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub repo: PathBuf,
    pub workspace: PathBuf,
    /// The factory's directory inside the repository (see `Workspace::sub`).
    #[serde(default)]
    pub sub: PathBuf,
    pub base: String,
    pub executor: String,
    pub jobs: usize,
    pub keep_going: bool,
    pub keep_workspace: bool,
    /// Names of the secrets the run's stages were given (never their values).
    pub secrets: Vec<String>,
    /// The policy file, read again when the run continues.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The organisation's policy file, read again when the run continues.
    #[serde(default)]
    pub org_policy: Option<PathBuf>,
}

/// The directory of one run.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

/// Where the runs of a repository are kept.
pub fn runs_root(repo: &Path) -> PathBuf {
    repo.join(".lightsout").join("runs")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl RunDir {
    pub fn create(repo: &Path, run_id: &str) -> std::io::Result<RunDir> {
        let path = runs_root(repo).join(run_id);
        fs::create_dir_all(path.join("stages"))?;
        Ok(RunDir { path })
    }

    pub fn open(repo: &Path, run_id: &str) -> Option<RunDir> {
        let path = runs_root(repo).join(run_id);
        path.join("run.json").is_file().then_some(RunDir { path })
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        write_atomic(&self.path.join(name), &text)
    }

    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, String> {
        let p = self.path.join(name);
        let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    pub fn write_text(&self, name: &str, text: &str) -> std::io::Result<()> {
        write_atomic(&self.path.join(name), text.as_bytes())
    }

    pub fn meta(&self) -> Result<RunMeta, String> {
        self.read_json("run.json")
    }

    /// The events recorded so far; a torn last line is skipped.
    pub fn events(&self) -> Vec<Stamped> {
        let Ok(text) = fs::read_to_string(self.path.join("events.jsonl")) else { return Vec::new() };
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn log_path(&self, stage: &str, attempt: u32) -> PathBuf {
        self.path.join("stages").join(stage).join(format!("{attempt}.log"))
    }

    /// The run's state, folded from its events.
    pub fn state(&self) -> RunState {
        RunState::fold(self.events().iter().map(|s| &s.event))
    }

    /// Marks this process as the run's owner.
    pub fn claim(&self) -> std::io::Result<()> {
        write_atomic(&self.path.join("runner.pid"), runner_id().as_bytes())
    }

    /// Whether the process that owns the run is alive.
    pub fn owner_alive(&self) -> bool {
        fs::read_to_string(self.path.join("runner.pid")).is_ok_and(|text| runner_alive(&text))
    }
}

/// This process as `<pid> <start time>`: unlike a pid alone, never the name of a later process.
pub fn runner_id() -> String {
    let me = std::process::id();
    format!("{me} {}", start_time(me).unwrap_or(0))
}

/// Whether the process a [`runner_id`] names is still running.
pub fn runner_alive(id: &str) -> bool {
    let mut parts = id.split_whitespace();
    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let started: Option<u64> = parts.next().and_then(|p| p.parse().ok());
    match (pid, started) {
        (Some(pid), Some(started)) => start_time(pid) == Some(started),
        _ => false,
    }
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Appends events to `events.jsonl`, fsyncing each one.
#[derive(Debug)]
pub struct Recorder {
    file: File,
}

impl Recorder {
    pub fn open(dir: &RunDir) -> std::io::Result<Recorder> {
        let path = dir.path.join("events.jsonl");
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // After a crash mid-write the file may end in a torn line; start on a fresh one.
        let len = file.metadata()?.len();
        if len > 0 {
            let text = fs::read(&path)?;
            if text.last() != Some(&b'\n') {
                file.write_all(b"\n")?;
            }
        }
        Ok(Recorder { file })
    }

    pub fn append(&mut self, event: &Stamped) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

impl crate::events::Sink for Recorder {
    /// Appends the events that belong in the log, fsynced before the run goes on.
    fn take(&mut self, event: &Stamped) -> Result<(), String> {
        if event.event.is_recorded() {
            self.append(event).map_err(|e| format!("cannot append to the event log: {e}"))?;
        }
        Ok(())
    }
}

/// One stage's state in a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageState {
    /// `None` while it has not ended.
    pub outcome: Option<Outcome>,
    pub skipped: Option<String>,
    pub attempts: u32,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub reason: String,
    pub duration_ms: u64,
    pub outputs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::events::Verdict>,
    /// An `approve` gate waiting for a person.
    pub awaiting: bool,
}

impl StageState {
    /// Whether the stage is settled (done, failed for good, or skipped) and will not run again.
    pub fn settled(&self) -> bool {
        self.skipped.is_some() || self.outcome.is_some_and(|o| o != Outcome::Cancelled)
    }
}

/// A run's state, folded from its events.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunState {
    pub run_id: String,
    pub category: String,
    pub ticket: String,
    pub started_at: Option<String>,
    pub status: Option<RunStatus>,
    pub stages: BTreeMap<String, StageState>,
    /// The last workspace snapshot, to restore on resume.
    pub snapshot: Option<String>,
    /// Per looping stage: the loop attempt now running and the feedback it got.
    pub loops: BTreeMap<String, (u32, String)>,
}

impl RunState {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> RunState {
        let mut s = RunState::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::RunStarted { run_id, category, ticket, .. } => {
                self.run_id.clone_from(run_id);
                self.category.clone_from(category);
                self.ticket.clone_from(ticket);
            }
            Event::RunResumed { .. } => self.status = None,
            Event::StageSkipped { stage, reason } => {
                self.stages.entry(stage.clone()).or_default().skipped = Some(reason.clone());
            }
            Event::StageStarted { stage, attempt, .. } => {
                let st = self.stages.entry(stage.clone()).or_default();
                st.running = true;
                st.attempts = *attempt;
                st.outcome = None;
            }
            Event::StageFinished {
                stage,
                outcome,
                exit_code,
                reason,
                duration_ms,
                outputs,
                snapshot,
                retrying,
                verdict,
                ..
            } => {
                let st = self.stages.entry(stage.clone()).or_default();
                st.running = false;
                if !retrying {
                    st.outcome = Some(*outcome);
                }
                st.exit_code = *exit_code;
                st.reason.clone_from(reason);
                st.duration_ms = *duration_ms;
                st.outputs.clone_from(outputs);
                st.verdict.clone_from(verdict);
                if snapshot.is_some() {
                    self.snapshot.clone_from(snapshot);
                }
            }
            Event::LoopRestarted { stage, attempt, reset, feedback } => {
                for id in reset {
                    let st = self.stages.entry(id.clone()).or_default();
                    st.outcome = None;
                    st.skipped = None;
                    st.running = false;
                    st.verdict = None;
                }
                self.loops.insert(stage.clone(), (*attempt, feedback.clone()));
            }
            Event::ApprovalRequested { stage, message } => {
                let st = self.stages.entry(stage.clone()).or_default();
                st.awaiting = true;
                st.reason.clone_from(message);
            }
            Event::Approved { stage, by, reason } | Event::Rejected { stage, by, reason } => {
                let st = self.stages.entry(stage.clone()).or_default();
                st.awaiting = false;
                let approved = matches!(e, Event::Approved { .. });
                st.outcome = Some(if approved { Outcome::Succeeded } else { Outcome::Failed });
                let word = if approved { "approved" } else { "rejected" };
                st.reason =
                    if reason.is_empty() { format!("{word} by {by}") } else { format!("{word} by {by}: {reason}") };
            }
            Event::RunFinished { status, .. } => self.status = Some(*status),
            Event::StageLog { .. } | Event::Warning { .. } | Event::Egress { .. } => {}
        }
    }
}

/// Every run of a repository, newest first.
pub fn list(repo: &Path) -> Vec<RunDir> {
    let Ok(entries) = fs::read_dir(runs_root(repo)) else { return Vec::new() };
    let mut runs: Vec<RunDir> = entries
        .filter_map(Result::ok)
        .map(|e| RunDir { path: e.path() })
        .filter(|d| d.path.join("run.json").is_file())
        .collect();
    // Run ids are ULIDs: lexical order is time order.
    runs.sort_by(|a, b| b.path.cmp(&a.path));
    runs
}
