//! The local executor: a bubblewrap sandbox on the host (no network, the host's system
//! directories read-only, the workspace read-write or read-only, a private `/tmp`, a private
//! pid namespace, all capabilities dropped; it dies with the runner). A plain, unsandboxed
//! process only when the user asks for it and the policy allows it, with a warning.
//!
//! A sandboxed stage with a network allow-list still has no network: it reaches the egress
//! proxy, which runs in the runner, through a Unix socket bound into the sandbox, by way of a
//! forwarder on the sandbox's loopback (`lightsout egress-forward`, this binary, bound in
//! read-only) that its `HTTP_PROXY` names.
//!
//! The sandbox never runs a stage as host root. A runner started by an ordinary user starts
//! bwrap as itself (bwrap then maps it into a user namespace). A runner started as root starts
//! bwrap as root, without a user namespace, with every capability dropped but the two it needs
//! to change uids; the first thing inside is this binary (`lightsout sandbox-exec`), which
//! drops to an unprivileged uid (the one the docker executor uses, [`FALLBACK_UID`]) and execs
//! the stage: so `/proc/sys`, `/etc/shadow` and root's files are out of its reach.
//!
//! The stage's environment (secrets included) reaches bwrap as its environment, never as
//! arguments: every user of the host can read a process's arguments, only its owner its
//! environment. Nothing of the runner's own environment enters the sandbox. There is no image,
//! so no image environment: a stage gets `PATH` [`DEFAULT_PATH`](super::DEFAULT_PATH) (the
//! host's usual directories) and `HOME=/tmp`, then lightsout's variables and its own.
//!
//! Resource limits (memory, cpus, pids) are not enforced here; that needs cgroups, which the
//! docker executor has.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::docker::FALLBACK_UID;
use super::{Ended, IO_DIR, Job, LogSink, WORKSPACE, stage_env};
use crate::egress::Decision;
use crate::events::Stream;

/// Host directories the sandbox sees, read-only, when they exist.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

/// Inside the sandbox: the directory holding the proxy's socket, and this binary.
const EGRESS_DIR: &str = "/run/lightsout-egress";
const SELF: &str = "/run/lightsout/lightsout";
/// The forwarder's address, inside the sandbox.
const FORWARD_ADDR: &str = "127.0.0.1:3128";

/// The egress proxy of one sandboxed job: served by the runner on a Unix socket in a private
/// directory, until dropped.
struct Egress {
    dir: PathBuf,
    stop: CancellationToken,
}

impl Egress {
    fn start(job: &Job, decisions: mpsc::Sender<Decision>, user: Option<(u32, u32)>) -> Result<Egress, String> {
        use std::os::unix::fs::DirBuilderExt as _;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lightsout-egress-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("local: {}: {e}", dir.display()))?;
        let egress = Egress { dir, stop: CancellationToken::new() };
        let listener = tokio::net::UnixListener::bind(egress.dir.join("egress.sock"))
            .map_err(|e| format!("local: cannot listen for the egress proxy: {e}"))?;
        if let Some((uid, gid)) = user {
            // The sandbox's user must reach the socket: the directory and the socket are its.
            for p in [egress.dir.clone(), egress.dir.join("egress.sock")] {
                std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
                    .map_err(|e| format!("local: {}: {e}", p.display()))?;
            }
        }
        let gate = crate::egress::allow_list(job.egress.clone());
        tokio::spawn(crate::egress::serve_unix(listener, gate, decisions, egress.stop.clone()));
        Ok(egress)
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Debug)]
pub struct Local {
    /// The bwrap binary; `None` for the unsandboxed mode.
    bwrap: Option<PathBuf>,
    /// The uid and gid stages run as when the runner is root; `None`: as the runner.
    user: Option<(u32, u32)>,
}

/// Whether this process runs as root.
pub fn runner_is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
            .map(|b| Local { bwrap: Some(b), user: runner_is_root().then_some((FALLBACK_UID, FALLBACK_UID)) })
            .ok_or_else(|| "bwrap (bubblewrap) is not installed; install it, or use --executor docker".to_owned())
    }

    /// A plain process: only for a user who asked and a policy that allows it.
    pub fn unsandboxed() -> Local {
        Local { bwrap: None, user: None }
    }

    fn command(&self, job: &Job, egress: Option<&Path>) -> Result<Command, String> {
        // No image here: the host's tools, on the usual `PATH`, with `HOME` at the private `/tmp`.
        let proxy =
            if egress.is_some() { crate::egress::proxy_env(&format!("http://{FORWARD_ADDR}")) } else { Vec::new() };
        let env = stage_env(&[], job, proxy);
        if let Some(bwrap) = &self.bwrap {
            let mut c = Command::new(bwrap);
            // The stage's environment is bwrap's, which passes it on: never in arguments.
            c.env_clear().envs(env);
            if self.user.is_some() {
                // Root: no user namespace (its root would be host root), and only the
                // capabilities `sandbox-exec` needs to drop to the stage's uid.
                c.args(["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]);
                c.args(["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]);
            } else {
                c.args(["--unshare-all", "--cap-drop", "ALL"]);
            }
            c.args(["--die-with-parent", "--new-session"]);
            for d in SYSTEM_DIRS {
                c.args(["--ro-bind-try", d, d]);
            }
            // `/tmp` open to everyone, sticky, like a system's: a tmpfs is made 0755 and root's
            // otherwise, which a stage dropped to its own uid could not write.
            c.args(["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]);
            // bwrap makes missing mount points' parents 0700 (root's, when the runner is root):
            // the stage's user must reach this binary and its secrets under /run.
            c.args(["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", "/run/lightsout"]);
            let ws = job.workspace.to_string_lossy().into_owned();
            c.args([if job.writable { "--bind" } else { "--ro-bind" }, &ws, WORKSPACE]);
            c.args(["--bind", &job.io_dir.to_string_lossy(), IO_DIR]);
            for (host, inside) in &job.files {
                if let Some(parent) = Path::new(inside).parent().filter(|p| *p != Path::new("/")) {
                    c.args(["--perms", "0755", "--dir", &parent.to_string_lossy()]);
                }
                c.args(["--ro-bind", &host.to_string_lossy(), inside]);
            }
            c.args(["--chdir", WORKSPACE]);
            if egress.is_some() || self.user.is_some() {
                let exe = std::env::current_exe().map_err(|e| format!("local: cannot find this executable: {e}"))?;
                c.args(["--ro-bind", &exe.to_string_lossy(), SELF]);
            }
            if let Some(dir) = egress {
                c.args(["--ro-bind", &dir.to_string_lossy(), EGRESS_DIR]);
            }
            c.arg("--");
            if let Some((uid, gid)) = self.user {
                c.args([SELF, "sandbox-exec", "--uid", &uid.to_string(), "--gid", &gid.to_string(), "--"]);
            }
            if egress.is_some() {
                // The forwarder starts the stage's command once it listens.
                c.args([SELF, "egress-forward", "--listen", FORWARD_ADDR, "--to"]);
                c.args([&format!("{EGRESS_DIR}/egress.sock"), "--"]);
            }
            c.args(["sh", "-c", &job.script]);
            Ok(c)
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
            Ok(c)
        }
    }

    /// Runs one job; with an allow-list (sandboxed), the egress proxy's decisions go to
    /// `decisions`.
    pub async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        decisions: &mpsc::Sender<Decision>,
        cancel: &CancellationToken,
    ) -> Result<Ended, String> {
        // Unsandboxed, the process has the host's network anyway (the run warns of it).
        let egress = if job.egress.is_empty() || !self.sandboxed() {
            None
        } else {
            Some(Egress::start(job, decisions.clone(), self.user)?)
        };
        let mut cmd = self.command(job, egress.as_ref().map(|e| e.dir.as_path()))?;
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
        tokio::pin!(wait);
        let ended = tokio::select! {
            status = &mut wait => {
                let status = status.map_err(|e| format!("local: waiting for the stage: {e}"))?;
                return Ok(Ended::Exited(status.code().map_or(128 + 9, i64::from)));
            }
            () = tokio::time::sleep(job.timeout) => Ended::TimedOut,
            () = cancel.cancelled() => Ended::Cancelled,
        };
        if let Some(pid) = pid {
            // TERM to the stage's processes (bwrap does not pass signals on: its descendants;
            // unsandboxed: the process group), GRACE to end while the output is still read,
            // then KILL to the sandbox (or the group) and everything in it.
            let mut targets = descendants(pid, if self.sandboxed() { 2 } else { 1 });
            if !self.sandboxed() {
                targets.push(format!("-{pid}"));
            }
            if !targets.is_empty() {
                let _ = Command::new("kill").arg("-TERM").arg("--").args(&targets).stderr(Stdio::null()).status().await;
                let _ = tokio::time::timeout(super::GRACE, &mut wait).await;
            }
            // Quietly: what already ended is no news.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status().await;
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status().await;
        }
        Ok(ended)
    }
}

/// The processes below `pid` (from `/proc/<pid>/task/*/children`), as `kill` arguments, from
/// `depth` levels down: a sandbox's first process is bwrap's own init for the pid namespace,
/// whose end would end everything in it at once.
fn descendants(pid: u32, depth: usize) -> Vec<String> {
    let children = |p: u32| -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { return Vec::new() };
        tasks
            .flatten()
            .flat_map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut out = Vec::new();
    let mut todo = vec![(pid, 0usize)];
    while let Some((p, d)) = todo.pop() {
        if d >= depth && d > 0 {
            out.push(p.to_string());
        }
        if out.len() < 10_000 {
            todo.extend(children(p).into_iter().map(|c| (c, d + 1)));
        }
    }
    out
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
