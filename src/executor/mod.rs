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

/// A boxed future, so that [`Executor`] is object-safe: the run holds a `dyn Executor`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why a stage's image could not be had.
#[derive(Debug)]
pub enum ImageError {
    /// The policy does not allow the image a devcontainer.json names: the stage fails.
    Refused(String),
    /// Anything else (a missing image, a failed build): an infrastructure fault.
    Fault(String),
}

/// The policy's check of an image name, for images an executor finds itself (a devcontainer.json).
pub type ImageCheck<'a> = &'a (dyn Fn(&str) -> Result<(), String> + Sync);

/// Whether the runner of a label (`<pid> <start time>`) is still alive.
pub type RunnerAlive<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// Where a stage's command runs: Docker, a bubblewrap sandbox, or (in the scheduler's unit tests)
/// a fake. The run engine knows executors only through this trait.
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The name a run record keeps (`docker`, `local`, `local-unsandboxed`).
    fn name(&self) -> &'static str;

    /// Whether stages run in a sandbox; `false` only when policy allowed plain host processes.
    fn sandboxed(&self) -> bool {
        true
    }

    /// Runs one job; the egress proxy's decisions (with an allow-list) go to `decisions`.
    fn run<'a>(
        &'a self,
        job: &'a Job,
        logs: &'a LogSink,
        decisions: &'a mpsc::Sender<crate::egress::Decision>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ended, String>>;

    /// The image a stage's `image:` names, ready to run: pulled, or built from the base
    /// revision. Executors without images run the stage as it is.
    fn prepare_image<'a>(
        &'a self,
        _base: &'a dyn docker::image::BaseRevision,
        image: &'a str,
        _allowed: ImageCheck<'a>,
    ) -> BoxFuture<'a, Result<String, ImageError>> {
        Box::pin(std::future::ready(Ok(image.to_owned())))
    }

    /// Removes what runners that are no longer `alive` left behind, before a run starts.
    fn sweep_orphans<'a>(&'a self, _alive: RunnerAlive<'a>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Removes what this run made (networks, proxies), when it ends.
    fn remove_run<'a>(&'a self, _run_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The name of what one attempt runs in (a container), for the display and the record.
    fn unit_name(&self, _run_id: &str, _stage: &str, _attempt: u32) -> Option<String> {
        None
    }
}

impl Executor for docker::Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn run<'a>(
        &'a self,
        job: &'a Job,
        logs: &'a LogSink,
        decisions: &'a mpsc::Sender<crate::egress::Decision>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ended, String>> {
        Box::pin(docker::Docker::run(self, job, logs, decisions, cancel))
    }

    fn prepare_image<'a>(
        &'a self,
        base: &'a dyn docker::image::BaseRevision,
        image: &'a str,
        allowed: ImageCheck<'a>,
    ) -> BoxFuture<'a, Result<String, ImageError>> {
        Box::pin(docker::image::ensure(self, base, image, allowed))
    }

    fn sweep_orphans<'a>(&'a self, alive: RunnerAlive<'a>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.remove_orphans(alive).await.map(drop) })
    }

    fn remove_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(docker::Docker::remove_run(self, run_id))
    }

    fn unit_name(&self, run_id: &str, stage: &str, attempt: u32) -> Option<String> {
        Some(docker::container_name(run_id, stage, attempt))
    }
}

impl Executor for local::Local {
    fn name(&self) -> &'static str {
        if local::Local::sandboxed(self) { "local" } else { "local-unsandboxed" }
    }

    fn sandboxed(&self) -> bool {
        local::Local::sandboxed(self)
    }

    fn run<'a>(
        &'a self,
        job: &'a Job,
        logs: &'a LogSink,
        decisions: &'a mpsc::Sender<crate::egress::Decision>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ended, String>> {
        Box::pin(local::Local::run(self, job, logs, decisions, cancel))
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
