//! The Docker executor (bollard, Engine API 1.41 and newer): one hardened container per stage
//! attempt, always removed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod egress;
pub mod image;

use super::{Ended, IO_DIR, Job, LogSink, WORKSPACE, stage_env};
use crate::egress::Decision;
use crate::events::Stream;
use egress::Egress;

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
    /// The network egress proxies reach the outside through.
    egress_network: String,
    /// The IPv4 range stage networks take their subnets from.
    egress_subnets: String,
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

/// The labels of every container and network of one job.
pub fn labels(job: &Job) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_RUN.to_owned(), job.run_id.clone()),
        (LABEL_STAGE.to_owned(), job.stage.clone()),
        (LABEL_ATTEMPT.to_owned(), job.attempt.to_string()),
        (LABEL_RUNNER.to_owned(), job.runner.clone()),
    ])
}

/// A container name Docker accepts, unique per run, stage and attempt.
pub fn container_name(run_id: &str, stage: &str, attempt: u32) -> String {
    format!("lightsout-{}-{stage}-{attempt}", run_id.to_ascii_lowercase())
}

impl Docker {
    /// Connects to the local engine and negotiates the API version.
    pub async fn connect() -> Result<Docker, String> {
        let client = bollard::Docker::connect_with_local_defaults().map_err(|e| fault("cannot connect", &e))?;
        let client =
            client.negotiate_version().await.map_err(|e| format!("docker: the engine does not answer ({e})"))?;
        let egress_network = std::env::var("LIGHTSOUT_EGRESS_NETWORK")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| egress::DEFAULT_EGRESS_NETWORK.to_owned());
        let egress_subnets = std::env::var("LIGHTSOUT_EGRESS_SUBNETS")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| egress::DEFAULT_EGRESS_SUBNETS.to_owned());
        Ok(Docker { client, egress_network, egress_subnets })
    }

    pub fn client(&self) -> &bollard::Docker {
        &self.client
    }

    pub fn egress_network(&self) -> &str {
        &self.egress_network
    }

    pub fn egress_subnets(&self) -> &str {
        &self.egress_subnets
    }

    /// Removes containers and networks left by runs whose runner is no longer alive; returns
    /// the containers' names.
    /// `alive` tells whether the runner a label names still runs.
    pub async fn remove_orphans(&self, alive: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
        // Best effort: a leftover that cannot be removed now (say, one Docker is still removing)
        // must not stop a new run; the next sweep tries again.
        let (removed, _failed) =
            self.remove_labelled(LABEL_RUN, |labels| labels.get(LABEL_RUNNER).is_some_and(|r| alive(r))).await?;
        Ok(removed)
    }

    /// Removes every container and network of one run (a last sweep when the run ends: a
    /// container a killed runner asked for may have been created after the start-up sweep).
    pub async fn remove_run(&self, run_id: &str) -> Result<(), String> {
        let (_, failed) = self.remove_labelled(&format!("{LABEL_RUN}={run_id}"), |_| false).await?;
        failed.into_iter().next().map_or(Ok(()), Err)
    }

    /// Removes the containers, then the networks, that carry `label` and that `keep` does not
    /// keep, trying each; returns the containers' names and the removals that failed.
    async fn remove_labelled(
        &self,
        label: &str,
        keep: impl Fn(&HashMap<String, String>) -> bool,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![label])]);
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.client.list_containers(Some(opts)).await.map_err(|e| fault("listing containers", &e))?;
        let (mut removed, mut failed) = (Vec::new(), Vec::new());
        for c in list {
            if c.labels.as_ref().is_some_and(&keep) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            match not_found_is_fine(self.client.remove_container(&id, Some(opts)).await) {
                Ok(()) => removed.push(c.names.and_then(|n| n.into_iter().next()).unwrap_or(id)),
                Err(e) => failed.push(fault("removing a container", &e)),
            }
        }
        let opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let nets = self.client.list_networks(Some(opts)).await.map_err(|e| fault("listing networks", &e))?;
        for n in nets {
            if n.labels.as_ref().is_some_and(&keep) {
                continue;
            }
            if let Some(id) = n.id
                && let Err(e) = not_found_is_fine(self.client.remove_network(&id).await)
            {
                failed.push(fault("removing a network", &e));
            }
        }
        Ok((removed, failed))
    }

    /// Runs one job in a fresh container, streaming its output to `logs`; the container is
    /// removed whatever happens.
    pub async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        decisions: &mpsc::Sender<Decision>,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        let name = container_name(&job.run_id, &job.stage, job.attempt);
        tracing::debug!(target: "lightsout::docker", container = %name, image = %job.image, egress = !job.egress.is_empty(), "run");
        let egress =
            if job.egress.is_empty() { None } else { Some(self.egress_start(job, &name, decisions.clone()).await?) };
        let created = self.create(job, &name, egress.as_ref()).await;
        let result = match created {
            Ok(()) => self.start_and_wait(job, &name, logs, cancel).await,
            Err(e) => Err(e),
        };
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let removed = self.client.remove_container(&name, Some(opts)).await;
        tracing::debug!(target: "lightsout::docker", container = %name, ended = ?result, removed = removed.is_ok(), "removed");
        if let Some(egress) = egress {
            self.egress_stop(egress).await;
        }
        match (result, removed) {
            (Ok(ended), Ok(())) => Ok(ended),
            // A container that was never created has nothing to remove.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(fault(&format!("removing {name}"), &e)),
        }
    }

    async fn create(&self, job: &Job, name: &str, egress: Option<&Egress>) -> Result<(), String> {
        let (uid, gid) = stage_user(&job.workspace);
        let mode = if job.writable { "rw" } else { "ro" };
        let binds = vec![
            format!("{}:{WORKSPACE}:{mode}", job.workspace.display()),
            format!("{}:{IO_DIR}:rw", job.io_dir.display()),
        ];
        let mut binds = binds;
        binds.extend(job.files.iter().map(|(host, inside)| format!("{}:{inside}:ro", host.display())));
        // The image's own environment (`ENV`: a toolchain on `PATH`, its homes) is kept.
        let image_env = self.image_env(&job.image).await?;
        let proxy = egress.map(|e| crate::egress::proxy_env(&e.url)).unwrap_or_default();
        let env: Vec<String> = stage_env(&image_env, job, proxy).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Without an allow-list, no network at all; with one, the stage's internal network only.
        let network = egress.map_or_else(|| "none".to_owned(), |e| e.network.clone());
        let host = HostConfig {
            binds: Some(binds),
            network_mode: Some(network),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            // `exec` said outright (Docker's default for a tmpfs is `noexec`): compilers and test
            // runners build and run programs in `TMPDIR` (`go test`, doc tests). It gives a stage
            // nothing it has not got: it runs code of its choice anyway, and its workspace (or
            // scratch copy) is executable. `nosuid`, `nodev` and the size are what protect.
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,exec,nosuid,nodev,size=512m,mode=1777".to_owned())])),
            memory: Some(i64::try_from(job.limits.memory_bytes).unwrap_or(i64::MAX)),
            // Swap would let a stage exceed its memory limit.
            memory_swap: Some(i64::try_from(job.limits.memory_bytes).unwrap_or(i64::MAX)),
            #[expect(
                clippy::cast_possible_truncation,
                reason = "cpus are bounded by policy, far below i64::MAX / 1e9"
            )]
            nano_cpus: Some((job.limits.cpus * 1e9) as i64),
            pids_limit: Some(i64::from(job.limits.pids)),
            init: Some(true),
            privileged: Some(false),
            ipc_mode: Some("private".into()),
            // Output is read by attaching; the daemon keeps no copy of it.
            log_config: Some(bollard::models::HostConfigLogConfig { typ: Some("none".into()), config: None }),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(job.image.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), job.script.clone()]),
            env: Some(env),
            user: Some(format!("{uid}:{gid}")),
            working_dir: Some(WORKSPACE.into()),
            labels: Some(labels(job)),
            network_disabled: Some(egress.is_none()),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        self.client.create_container(Some(opts), body).await.map(|_| ()).map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => not_here(&job.image),
            other => fault("creating the container", &other),
        })
    }

    /// The environment an image sets (`ENV`), as `NAME=value` lines.
    async fn image_env(&self, image: &str) -> Result<Vec<String>, String> {
        match self.client.inspect_image(image).await {
            Ok(i) => Ok(i.config.and_then(|c| c.env).unwrap_or_default()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Err(not_here(image)),
            Err(e) => Err(fault(&format!("inspecting image `{image}`"), &e)),
        }
    }

    async fn start_and_wait(
        &self,
        job: &Job,
        name: &str,
        logs: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        // Attached before it starts, so nothing is missed: output comes straight from the
        // container, not through a log driver (which would keep a copy on the daemon's disk
        // and, when it rotates, drop part of it).
        let attach = AttachContainerOptionsBuilder::new().stdout(true).stderr(true).stream(true).logs(false).build();
        let attached = self
            .client
            .attach_container(name, Some(attach))
            .await
            .map_err(|e| fault("attaching to the container", &e))?;
        let mut stream = attached.output;
        drop(attached.input);
        self.client
            .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| fault("starting the container", &e))?;
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
        tokio::pin!(both);
        let ended = tokio::select! {
            code = &mut both => return code.map(Ended::Exited),
            () = tokio::time::sleep(job.timeout) => Ended::TimedOut,
            () = cancel.cancelled() => Ended::Cancelled,
        };
        // TERM (init passes it on), GRACE to end while its output is still read, then KILL.
        #[expect(clippy::cast_possible_truncation, reason = "a few seconds")]
        let stop = StopContainerOptionsBuilder::new().t(super::GRACE.as_secs() as i32).build();
        let stopping = async {
            let _ = self.client.stop_container(name, Some(stop)).await;
        };
        let _ =
            tokio::join!(stopping, tokio::time::timeout(super::GRACE + std::time::Duration::from_secs(2), &mut both));
        self.kill(name).await;
        Ok(ended)
    }

    async fn kill(&self, name: &str) {
        let opts = KillContainerOptionsBuilder::new().signal("KILL").build();
        let _ = self.client.kill_container(name, Some(opts)).await;
    }
}

/// Why a stage cannot start in `image`.
fn not_here(image: &str) -> String {
    format!(
        "docker: image `{image}` is not on this machine (lightsout never pulls); build it, or run scripts/test-images for the test images"
    )
}

/// A removal that found nothing to remove (another sweep was first) succeeded.
fn not_found_is_fine(result: Result<(), bollard::errors::Error>) -> Result<(), bollard::errors::Error> {
    match result {
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        other => other,
    }
}
