//! The local executor: a bubblewrap sandbox on the host (no network, the host's system
//! directories read-only, the workspace read-write or read-only, a private `/tmp`, a private
//! pid namespace, all capabilities dropped; it dies with the runner). A plain, unsandboxed
//! process only when the user asks for it and the policy allows it, with a warning.
//!
//! Resource limits (memory, cpus, pids) are not enforced here; that needs cgroups, which the
//! docker executor has.

use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{Ended, IO_DIR, Job, LogSink, WORKSPACE, base_env};
use crate::run::event::Stream;

/// Host directories the sandbox sees, read-only, when they exist.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

#[derive(Clone, Debug)]
pub struct Local {
    /// The bwrap binary; `None` for the unsandboxed mode.
    bwrap: Option<PathBuf>,
}

/// Where `bwrap` is on `PATH`.
pub fn find_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("bwrap")).find(|p| p.is_file())
}

impl Local {
    pub fn sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The sandboxed executor, or why it is not available.
    pub fn bubblewrap() -> Result<Local, String> {
        find_bwrap()
            .map(|b| Local { bwrap: Some(b) })
            .ok_or_else(|| "bwrap (bubblewrap) is not installed; install it, or use --executor docker".to_owned())
    }

    /// A plain process: only for a user who asked and a policy that allows it.
    pub fn unsandboxed() -> Local {
        Local { bwrap: None }
    }

    fn command(&self, job: &Job) -> Command {
        let env: Vec<(String, String)> = base_env(job).into_iter().chain(job.env.iter().cloned()).collect();
        if let Some(bwrap) = &self.bwrap {
            let mut c = Command::new(bwrap);
            c.args(["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]);
            for d in SYSTEM_DIRS {
                c.args(["--ro-bind-try", d, d]);
            }
            c.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
            let ws = job.workspace.to_string_lossy().into_owned();
            c.args([if job.writable { "--bind" } else { "--ro-bind" }, &ws, WORKSPACE]);
            c.args(["--bind", &job.io_dir.to_string_lossy(), IO_DIR]);
            for (host, inside) in &job.files {
                c.args(["--ro-bind", &host.to_string_lossy(), inside]);
            }
            c.args(["--chdir", WORKSPACE]);
            for (k, v) in &env {
                c.args(["--setenv", k, v]);
            }
            c.args(["--", "sh", "-c", &job.script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &job.script]).current_dir(&job.workspace).env_clear();
            for (k, v) in env {
                // Paths inside the sandbox mean host paths here.
                let v = match k.as_str() {
                    "LIGHTSOUT_OUTPUT" => job.io_dir.join("output").to_string_lossy().into_owned(),
                    "LIGHTSOUT_WORKSPACE" => job.workspace.to_string_lossy().into_owned(),
                    _ => v,
                };
                c.env(k, v);
            }
            c.process_group(0);
            c
        }
    }

    pub async fn run(&self, job: &Job, logs: &LogSink, cancel: &CancellationToken) -> Result<Ended, String> {
        let mut cmd = self.command(job);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("local: cannot start the stage: {e}"))?;
        let pid = child.id();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let read_out = forward(out, Stream::Stdout, logs.clone());
        let read_err = forward(err, Stream::Stderr, logs.clone());
        let wait = async {
            let (status, (), ()) = tokio::join!(child.wait(), read_out, read_err);
            status
        };
        let kill = |pid: Option<u32>| async move {
            if let Some(pid) = pid {
                // The sandbox (or the unsandboxed process group) and everything in it.
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status().await;
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status().await;
            }
        };
        tokio::select! {
            status = wait => {
                let status = status.map_err(|e| format!("local: waiting for the stage: {e}"))?;
                Ok(Ended::Exited(status.code().map_or(128 + 9, i64::from)))
            }
            () = tokio::time::sleep(job.timeout) => { kill(pid).await; Ok(Ended::TimedOut) }
            () = cancel.cancelled() => { kill(pid).await; Ok(Ended::Cancelled) }
        }
    }
}

async fn forward<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, which: Stream, logs: LogSink) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if logs.send((which, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        }
    }
}
