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

/// `PATH` where the image sets none (and always with the local executor).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `HOME` where the image sets none (and always with the local executor): a stage runs as a
/// user the image may not know, on a read-only root file system; `/tmp` is its own to write.
pub const DEFAULT_HOME: &str = "/tmp";

/// The environment of one stage, later layers replacing a name an earlier one set: the image's
/// own (its `ENV` lines; none with the local executor), `PATH` and `HOME` when the image sets
/// none, lightsout's variables (`LIGHTSOUT_*`, and the egress proxy's in `proxy`), then the
/// stage's own (`env:` and secrets).
pub fn stage_env(image: &[String], job: &Job, proxy: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: indexmap::IndexMap<String, String> =
        image.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    for (k, v) in [("PATH", DEFAULT_PATH), ("HOME", DEFAULT_HOME)] {
        env.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    }
    let ours = [
        ("LIGHTSOUT", "1".to_owned()),
        ("LIGHTSOUT_RUN", job.run_id.clone()),
        ("LIGHTSOUT_STAGE", job.stage.clone()),
        ("LIGHTSOUT_ATTEMPT", job.attempt.to_string()),
        ("LIGHTSOUT_OUTPUT", format!("{IO_DIR}/output")),
        ("LIGHTSOUT_WORKSPACE", WORKSPACE.to_owned()),
    ];
    env.extend(ours.into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(proxy);
    env.extend(job.env.iter().cloned());
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(env: &[(&str, &str)]) -> Job {
        Job {
            run_id: "r".into(),
            stage: "s".into(),
            attempt: 1,
            image: String::new(),
            script: String::new(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            workspace: PathBuf::new(),
            writable: false,
            io_dir: PathBuf::new(),
            limits: Limits { memory_bytes: 1, cpus: 1.0, pids: 1 },
            timeout: Duration::from_secs(1),
            files: Vec::new(),
            egress: Vec::new(),
            runner: String::new(),
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_image_environment_is_kept_and_only_lightsouts_added() {
        let image = ["PATH=/usr/local/cargo/bin:/usr/bin".to_owned(), "CARGO_HOME=/usr/local/cargo".to_owned()];
        let env = stage_env(&image, &job(&[("CARGO_HOME", "/mine")]), Vec::new());
        assert_eq!(get(&env, "PATH"), Some("/usr/local/cargo/bin:/usr/bin"));
        assert_eq!(get(&env, "HOME"), Some(DEFAULT_HOME), "the image sets no HOME");
        assert_eq!(get(&env, "CARGO_HOME"), Some("/mine"), "the stage's own env wins");
        assert_eq!(get(&env, "LIGHTSOUT_STAGE"), Some("s"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.len(), names.iter().collect::<std::collections::BTreeSet<_>>().len(), "{names:?}");
        // No image environment (the local executor, or an image made with `docker import`).
        let env = stage_env(&[], &job(&[]), crate::egress::proxy_env("http://p"));
        assert_eq!(get(&env, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://p"));
        let env = stage_env(&["HOME=/home/ci".to_owned(), "LIGHTSOUT_OUTPUT=/x".to_owned()], &job(&[]), Vec::new());
        assert_eq!(get(&env, "HOME"), Some("/home/ci"));
        assert_eq!(get(&env, "LIGHTSOUT_OUTPUT"), Some("/lightsout/output"), "lightsout's variables are lightsout's");
    }
}
