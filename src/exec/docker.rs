//! The Docker executor (bollard, Engine API 1.41 and newer): one hardened container per stage
//! attempt, always removed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Ended, IO_DIR, Job, LogSink, WORKSPACE, base_env};
use crate::run::event::Stream;
use crate::run::record::start_time;

/// Label keys on every container lightsout starts.
pub const LABEL_RUN: &str = "dev.lightsout.run";
pub const LABEL_STAGE: &str = "dev.lightsout.stage";
pub const LABEL_ATTEMPT: &str = "dev.lightsout.attempt";
/// `<pid> <start time>` of the runner, to find containers whose runner died.
pub const LABEL_RUNNER: &str = "dev.lightsout.runner";

/// The unprivileged user stages run as when the invoking user is root.
pub const FALLBACK_UID: u32 = 65532;

#[derive(Clone, Debug)]
pub struct Docker {
    client: bollard::Docker,
}

fn fault(what: &str, e: &bollard::errors::Error) -> String {
    format!("docker: {what}: {e}")
}

/// The uid:gid a stage runs as: the owner of the workspace, or an unprivileged one for root.
pub fn stage_user(workspace: &std::path::Path) -> (u32, u32) {
    match std::fs::metadata(workspace) {
        Ok(m) if m.uid() != 0 => (m.uid(), m.gid()),
        _ => (FALLBACK_UID, FALLBACK_UID),
    }
}

/// A container name Docker accepts, unique per run, stage and attempt.
pub fn container_name(run_id: &str, stage: &str, attempt: u32) -> String {
    format!("lightsout-{}-{stage}-{attempt}", run_id.to_ascii_lowercase())
}

impl Docker {
    /// Connects to the local engine and negotiates the API version.
    pub async fn connect() -> Result<Docker, String> {
        let client = bollard::Docker::connect_with_local_defaults().map_err(|e| fault("cannot connect", &e))?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| format!("docker: the engine does not answer ({e}); start it, or run with --executor local"))?;
        Ok(Docker { client })
    }

    pub fn client(&self) -> &bollard::Docker {
        &self.client
    }

    /// Removes containers left by runs whose runner is no longer alive; returns their names.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, String> {
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![LABEL_RUN])]);
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.client.list_containers(Some(opts)).await.map_err(|e| fault("listing containers", &e))?;
        let mut removed = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let alive = labels.get(LABEL_RUNNER).is_some_and(|r| runner_alive(r));
            if alive {
                continue;
            }
            let Some(id) = c.id else { continue };
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            if self.client.remove_container(&id, Some(opts)).await.is_ok() {
                removed.push(c.names.and_then(|n| n.into_iter().next()).unwrap_or(id));
            }
        }
        Ok(removed)
    }

    /// Removes every container of one run (a last sweep when the run ends: a container a killed
    /// runner asked for may have been created after the start-up sweep).
    pub async fn remove_run(&self, run_id: &str) -> Result<(), String> {
        let label = format!("{LABEL_RUN}={run_id}");
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![label.as_str()])]);
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.client.list_containers(Some(opts)).await.map_err(|e| fault("listing containers", &e))?;
        for id in list.into_iter().filter_map(|c| c.id) {
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            self.client.remove_container(&id, Some(opts)).await.map_err(|e| fault("removing a container", &e))?;
        }
        Ok(())
    }

    /// Runs one job in a fresh container, streaming its output to `logs`; the container is
    /// removed whatever happens.
    pub async fn run(&self, job: &Job, logs: &LogSink, cancel: &CancellationToken) -> Result<Ended, String> {
        let name = container_name(&job.run_id, &job.stage, job.attempt);
        let created = self.create(job, &name).await;
        let result = match created {
            Ok(()) => self.start_and_wait(job, &name, logs, cancel).await,
            Err(e) => Err(e),
        };
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let removed = self.client.remove_container(&name, Some(opts)).await;
        match (result, removed) {
            (Ok(ended), Ok(())) => Ok(ended),
            // A container that was never created has nothing to remove.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(fault(&format!("removing {name}"), &e)),
        }
    }

    async fn create(&self, job: &Job, name: &str) -> Result<(), String> {
        let (uid, gid) = stage_user(&job.workspace);
        let me = std::process::id();
        let runner = format!("{me} {}", start_time(me).unwrap_or(0));
        let labels = HashMap::from([
            (LABEL_RUN.to_owned(), job.run_id.clone()),
            (LABEL_STAGE.to_owned(), job.stage.clone()),
            (LABEL_ATTEMPT.to_owned(), job.attempt.to_string()),
            (LABEL_RUNNER.to_owned(), runner),
        ]);
        let mode = if job.writable { "rw" } else { "ro" };
        let binds = vec![
            format!("{}:{WORKSPACE}:{mode}", job.workspace.display()),
            format!("{}:{IO_DIR}:rw", job.io_dir.display()),
        ];
        let mut binds = binds;
        binds.extend(job.files.iter().map(|(host, inside)| format!("{}:{inside}:ro", host.display())));
        let env: Vec<String> =
            base_env(job).into_iter().chain(job.env.iter().cloned()).map(|(k, v)| format!("{k}={v}")).collect();
        let host = HostConfig {
            binds: Some(binds),
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,size=512m,mode=1777".to_owned())])),
            memory: Some(i64::try_from(job.limits.memory_bytes).unwrap_or(i64::MAX)),
            // Swap would let a stage exceed its memory limit.
            memory_swap: Some(i64::try_from(job.limits.memory_bytes).unwrap_or(i64::MAX)),
            #[allow(clippy::cast_possible_truncation)] // cpus are bounded by policy, far below i64::MAX / 1e9
            nano_cpus: Some((job.limits.cpus * 1e9) as i64),
            pids_limit: Some(i64::from(job.limits.pids)),
            init: Some(true),
            privileged: Some(false),
            ipc_mode: Some("private".into()),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(job.image.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), job.script.clone()]),
            env: Some(env),
            user: Some(format!("{uid}:{gid}")),
            working_dir: Some(WORKSPACE.into()),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        self.client.create_container(Some(opts), body).await.map(|_| ()).map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => format!(
                "docker: image `{}` is not on this machine (lightsout never pulls); build it, or run scripts/test-images for the test images",
                job.image
            ),
            other => fault("creating the container", &other),
        })
    }

    async fn start_and_wait(
        &self,
        job: &Job,
        name: &str,
        logs: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        self.client
            .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| fault("starting the container", &e))?;
        let log_opts = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
        let mut stream = self.client.logs(name, Some(log_opts));
        let pump = async {
            while let Some(item) = stream.next().await {
                let (which, bytes) = match item {
                    Ok(bollard::container::LogOutput::StdErr { message }) => (Stream::Stderr, message),
                    Ok(
                        bollard::container::LogOutput::StdOut { message }
                        | bollard::container::LogOutput::Console { message },
                    ) => (Stream::Stdout, message),
                    Ok(bollard::container::LogOutput::StdIn { .. }) => continue,
                    Err(_) => break,
                };
                if logs.send((which, bytes)).await.is_err() {
                    break;
                }
            }
        };
        let wait = async {
            let opts = WaitContainerOptionsBuilder::new().condition("not-running").build();
            let mut w = self.client.wait_container(name, Some(opts));
            match w.next().await {
                Some(Ok(r)) => Ok(r.status_code),
                // bollard reports a non-zero exit as an error: it is the stage's exit code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
                Some(Err(e)) => Err(fault("waiting for the container", &e)),
                None => Err("docker: the wait stream ended without an exit code".to_owned()),
            }
        };
        let both = async {
            let (code, ()) = tokio::join!(wait, pump);
            code
        };
        tokio::select! {
            code = both => code.map(Ended::Exited),
            () = tokio::time::sleep(job.timeout) => {
                self.kill(name).await;
                Ok(Ended::TimedOut)
            }
            () = cancel.cancelled() => {
                self.kill(name).await;
                Ok(Ended::Cancelled)
            }
        }
    }

    async fn kill(&self, name: &str) {
        let opts = KillContainerOptionsBuilder::new().signal("KILL").build();
        let _ = self.client.kill_container(name, Some(opts)).await;
    }
}

fn runner_alive(label: &str) -> bool {
    let mut parts = label.split_whitespace();
    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let started: Option<u64> = parts.next().and_then(|p| p.parse().ok());
    match (pid, started) {
        (Some(pid), Some(started)) => start_time(pid) == Some(started),
        _ => false,
    }
}
