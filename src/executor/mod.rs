//! Executors: where a stage's command runs. One container per stage attempt (docker), or a
//! bubblewrap sandbox on the host (local). Both take the same [`Job`] and give the same
//! [`Ended`]; a fault of the executor itself (Docker down, image missing) is an `Err`, which
//! the scheduler may retry, never a stage failure.

pub mod docker;
pub mod local;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::Stream;
use crate::plan::Limits;

/// How long a stage has, after a timeout or a cancel, between TERM and KILL: time to clean up,
/// print what it knows, or write its report.
pub const GRACE: Duration = Duration::from_secs(5);

/// Where, inside the sandbox, the workspace is.
pub const WORKSPACE: &str = "/workspace";
/// Where, inside the sandbox, the stage's outputs file lives.
pub const IO_DIR: &str = "/lightsout";

/// One attempt of one stage, ready to run.
#[derive(Clone, Debug)]
pub struct Job {
    pub run_id: String,
    pub stage: String,
    pub attempt: u32,
    /// The image (docker); ignored by the local executor.
    pub image: String,
    /// A shell script, run with `sh -c`.
    pub script: String,
    /// Environment, secrets included. Never logged.
    pub env: Vec<(String, String)>,
    pub workspace: PathBuf,
    pub writable: bool,
    /// A host directory for this attempt, mounted at [`IO_DIR`]; holds the outputs file.
    pub io_dir: PathBuf,
    pub limits: Limits,
    pub timeout: Duration,
    /// Read-only files mounted into the sandbox: (host path, path inside). Secrets as files.
    pub files: Vec<(PathBuf, String)>,
    /// The hosts the stage may reach through the egress proxy; empty: no network at all.
    pub egress: Vec<String>,
    /// The runner's identity (`<pid> <start time>`), labelled on what the job starts so that a
    /// later runner can tell whether its owner is still alive.
    pub runner: String,
}

/// How a job ended, when the executor itself did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i64),
    TimedOut,
    Cancelled,
}

/// Where output chunks go, with backpressure (a bounded channel), so that a stage printing
/// gigabytes does not grow the runner's memory.
pub type LogSink = mpsc::Sender<(Stream, Bytes)>;

/// The executor chosen for a run.
#[derive(Clone, Debug)]
pub enum Executor {
    Docker(docker::Docker),
    Local(local::Local),
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::Docker(_) => "docker",
            Executor::Local(l) if l.sandboxed() => "local",
            Executor::Local(_) => "local-unsandboxed",
        }
    }

    /// Runs one job; the egress proxy's decisions (with an allow-list) go to `decisions`.
    pub async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        decisions: &mpsc::Sender<crate::egress::Decision>,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        match self {
            Executor::Docker(d) => d.run(job, logs, decisions, cancel).await,
            Executor::Local(l) => l.run(job, logs, decisions, cancel).await,
        }
    }
}

/// The environment every stage gets, before its own.
pub fn base_env(job: &Job) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), "/tmp".into()),
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LIGHTSOUT".into(), "1".into()),
        ("LIGHTSOUT_RUN".into(), job.run_id.clone()),
        ("LIGHTSOUT_STAGE".into(), job.stage.clone()),
        ("LIGHTSOUT_ATTEMPT".into(), job.attempt.to_string()),
        ("LIGHTSOUT_OUTPUT".into(), format!("{IO_DIR}/output")),
        ("LIGHTSOUT_WORKSPACE".into(), WORKSPACE.into()),
    ]
}
