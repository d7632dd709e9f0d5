//! One attempt of one stage: its command or agent in the executor, its log (masked, capped),
//! its outputs file and what it left (read and cleaned as untrusted), its secrets, and the
//! policy checked again before it starts.

use super::*;

/// Network decisions of one attempt recorded one by one; the rest are counted.
pub(super) const MAX_EGRESS_EVENTS: usize = 1000;

/// The largest file a stage's I/O directory keeps in the record.
pub(super) const MAX_KEPT_FILE: u64 = 64 * 1024 * 1024;

/// What ended an attempt before its command ran, or a part of it that failed.
type Early = (Outcome, String);

/// Secrets as files: (host path, path inside the sandbox).
type SecretFiles = Vec<(PathBuf, String)>;

/// An attempt's environment variables, in order.
type Env = Vec<(String, String)>;

/// Runs one attempt of one stage.
pub(super) async fn run_stage(
    ctx: Arc<Ctx>,
    index: usize,
    attempt: u32,
    tctx: serde_json::Value,
    logs: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Done {
    let started = Instant::now();
    let stage = &ctx.plan.stages()[index];
    let done = |outcome, exit_code, reason: String, outputs| Done {
        index,
        attempt,
        outcome,
        exit_code,
        reason,
        duration: started.elapsed(),
        outputs,
        verdict: None,
    };
    let early = |(outcome, reason): Early| done(outcome, None, reason, BTreeMap::new());
    // The plan was checked against policy when it was compiled; a recorded plan may have been
    // edited since, so every stage is checked again before it starts.
    if let Err(refusal) = enforce(&ctx.policy, stage) {
        return early((Outcome::Failed, format!("refused by policy at run time: {refusal}")));
    }
    if stage.kind.on_host() {
        let (outcome, reason, outputs, verdict) = on_host(&ctx, stage, attempt, &tctx, &logs, &cancel).await;
        return Done { verdict, ..done(outcome, None, reason, outputs) };
    }
    let io_dir = ctx.dir.path.join("stages").join(&stage.id).join(format!("{attempt}.io"));
    // The secret files live (on a tmpfs) until the attempt ends, and go with `_secrets`.
    let (job, _secrets) = match prepare(&ctx, stage, attempt, &tctx, &io_dir).await {
        Ok(prepared) => prepared,
        Err(e) => return early(e),
    };
    if let StageKind::Tests(_) = &stage.kind {
        return match grade_tests(&ctx, stage, attempt, &job, &tctx, &logs, &cancel).await {
            Ok((v, code)) => {
                let (outcome, reason) = verdict_outcome(&ctx, &v);
                Done { verdict: Some(v), ..done(outcome, Some(code), reason, BTreeMap::new()) }
            }
            Err(Ok(Ended::TimedOut)) => {
                early((Outcome::TimedOut, format!("ran past its timeout of {}s", stage.timeout_secs)))
            }
            Err(Ok(_)) => early((Outcome::Cancelled, "cancelled".into())),
            Err(Err(fault)) => early((Outcome::Fault, ctx.needles.mask_str(&fault))),
        };
    }
    // A stage that only reads the workspace works in a scratch copy of it, writable and
    // executable (a test command writes `target/`, a lock file, and runs what it built): the
    // workspace's last snapshot, which is what ships, thrown away after the attempt, so nothing
    // it writes reaches the workspace.
    let scratch = if job.writable {
        None
    } else {
        match scratch_at(&ctx, &format!("{}-{attempt}-scratch", stage.id)) {
            Ok(ws) => Some(ws),
            Err(e) => return early((Outcome::Fault, format!("cannot make the scratch copy: {e}"))),
        }
    };
    let run_as =
        scratch.as_ref().map_or_else(|| job.clone(), |ws| Job { workspace: ws.root(), writable: true, ..job.clone() });
    let (ended, log_ok) = run_job(&ctx, &run_as, ctx.dir.log_path(&stage.id, attempt), &logs, &cancel).await;
    if let Some(ws) = scratch {
        discard(&ctx, &ws, &logs).await;
    }
    // The outputs file first (read as untrusted: a link there fails the stage, and says so),
    // then what the stage left is cleaned.
    let outputs = read_outputs(&io_dir.join("output"), &ctx.needles).await;
    clean_after(&ctx, &job, &logs).await;
    let (outcome, code, reason) = ended_outcome(stage, ended);
    let (outcome, reason) = match (outcome, log_ok) {
        (o, Ok(())) => (o, reason),
        (_, Err(e)) => (Outcome::Fault, format!("cannot write the stage log: {e}")),
    };
    let outputs = match outputs {
        Ok(mut o) => {
            if let Some(agent) = &stage.agent {
                let log = std::fs::read_to_string(ctx.dir.log_path(&stage.id, attempt)).unwrap_or_default();
                o.extend(usage(agent.usage, &log));
            }
            o
        }
        Err(e) if outcome.is_success() => return done(Outcome::Failed, code, e, BTreeMap::new()),
        Err(_) => BTreeMap::new(),
    };
    let reason = ctx.needles.mask_str(&reason);
    if stage.role == Role::Grader {
        // A command grader's verdict: its exit status, with the end of its output as the reason.
        let verdict = command_verdict(outcome, code, &reason, &ctx.dir.log_path(&stage.id, attempt));
        return Done { verdict: Some(verdict), ..done(outcome, code, reason, outputs) };
    }
    done(outcome, code, reason, outputs)
}

/// A grader's verdict as the attempt's outcome and reason.
fn verdict_outcome(ctx: &Ctx, v: &crate::stages::Verdict) -> (Outcome, String) {
    if v.pass {
        (Outcome::Succeeded, "pass".to_owned())
    } else {
        (Outcome::Failed, ctx.needles.mask_str(&v.reasons.join("; ")))
    }
}

/// A built-in kind on the host: its outcome, reason, outputs and verdict.
async fn on_host(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    tctx: &serde_json::Value,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> (Outcome, String, BTreeMap<String, String>, Option<crate::stages::Verdict>) {
    match run_host_stage(ctx, stage, attempt, tctx, logs, cancel).await {
        Ok((outputs, None)) => (Outcome::Succeeded, "done on the host".into(), outputs, None),
        Ok((outputs, Some(v))) => {
            let (outcome, reason) = verdict_outcome(ctx, &v);
            (outcome, reason, outputs, Some(v))
        }
        Err(e) if cancel.is_cancelled() => (Outcome::Cancelled, ctx.needles.mask_str(&e), BTreeMap::new(), None),
        Err(e) => (Outcome::Failed, ctx.needles.mask_str(&e), BTreeMap::new(), None),
    }
}

/// The job of one attempt: its script (the rendered command, or the agent with its prompt
/// written to the attempt's directory), environment, secrets and image; and the directory of
/// its secret files, removed when it is dropped.
async fn prepare(
    ctx: &Ctx,
    stage: &Stage,
    attempt: u32,
    tctx: &serde_json::Value,
    io_dir: &Path,
) -> Result<(Job, SecretDir), Early> {
    std::fs::create_dir_all(io_dir)
        .map_err(|e| (Outcome::Fault, format!("cannot create {}: {e}", io_dir.display())))?;
    let script = script_of(stage, tctx, io_dir)?;
    let (env, files, secrets) = environment(ctx, stage, attempt, tctx)?;
    ownership::prepare(io_dir);
    let image = match &stage.image {
        Some(img) => {
            let allowed = |name: &str| ctx.policy.check_image(name).map(|_| ()).map_err(|r| r.message);
            ctx.executor.prepare_image(&ctx.workspace, &img.value, &allowed).await.map_err(|e| match e {
                crate::executor::ImageError::Refused(e) => (Outcome::Failed, e),
                crate::executor::ImageError::Fault(e) => (Outcome::Fault, e),
            })?
        }
        None => String::new(),
    };
    let job = Job {
        run_id: ctx.meta.run_id.clone(),
        stage: stage.id.clone(),
        attempt,
        image,
        script,
        env,
        workspace: ctx.workspace.root(),
        writable: stage.workspace == Access::ReadWrite,
        io_dir: io_dir.to_path_buf(),
        limits: stage.resources,
        timeout: Duration::from_secs(stage.timeout_secs.max(1)),
        files,
        egress: stage.network.clone(),
        runner: crate::store::runner_id(),
    };
    Ok((job, secrets))
}

/// The shell script an attempt runs.
fn script_of(stage: &Stage, tctx: &serde_json::Value, io_dir: &Path) -> Result<String, Early> {
    let failed = |why: String| (Outcome::Failed, why);
    if let Some(agent) = &stage.agent {
        // The prompt is text (ticket values inserted as they are, never evaluated); it reaches
        // the agent as a file, on stdin or as one argument, never through a shell word.
        let prompt = crate::template::render(Mode::Text, &agent.prompt, tctx)
            .map_err(|e| failed(format!("the prompt template failed: {e}")))?;
        std::fs::write(io_dir.join("prompt.md"), &prompt)
            .map_err(|e| (Outcome::Fault, format!("cannot write the prompt: {e}")))?;
        return Ok(agent_script(agent));
    }
    let source = command_of(stage).ok_or_else(|| failed(format!("`{}` stages cannot run yet", stage.kind)))?;
    // Ticket text reaches the command only as shell-quoted values.
    crate::template::render(Mode::Shell, source, tctx).map_err(|e| failed(format!("the command template failed: {e}")))
}

/// The attempt's environment (its `env:` rendered, then its secrets) and the secret files it
/// mounts.
fn environment(
    ctx: &Ctx,
    stage: &Stage,
    attempt: u32,
    tctx: &serde_json::Value,
) -> Result<(Env, SecretFiles, SecretDir), Early> {
    // `env:` values are templates, rendered as text: an environment variable is one value,
    // never shell-parsed, so ticket text in it stays data.
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &stage.env {
        let value = crate::template::render(Mode::Text, v, tctx)
            .map_err(|e| (Outcome::Failed, format!("the template of `env.{k}` failed: {e}")))?;
        env.push((k.clone(), value));
    }
    // Secrets as files live on a tmpfs of the host for the attempt only, never on disk.
    let secret_dir = SecretDir::new(&ctx.meta.run_id, &stage.id, attempt);
    let mut files = Vec::new();
    for name in &stage.secrets {
        let Some(value) = ctx.secrets.get(name) else {
            return Err((Outcome::Failed, format!("secret `{name}` is not available to the runner")));
        };
        if value.trim_end_matches(['\n', '\r']).len() < crate::secrets::MIN_NEEDLE {
            return Err((
                Outcome::Failed,
                format!(
                    "secret `{name}` is shorter than {} bytes: lightsout cannot mask it in logs and records without masking ordinary text, so no stage gets it; use a longer value",
                    crate::secrets::MIN_NEEDLE
                ),
            ));
        }
        let as_file = stage.secret_sources.get(name).and_then(|s| s.mount) == Some(crate::plan::SecretMount::File);
        if as_file {
            let host = secret_dir.write(name, value).map_err(|e| (Outcome::Fault, format!("secret `{name}`: {e}")))?;
            let inside = format!("/run/secrets/{name}");
            env.push((format!("{name}_FILE"), inside.clone()));
            files.push((host, inside));
        } else {
            env.push((name.clone(), value.clone()));
        }
    }
    Ok((env, files, secret_dir))
}

/// How an attempt that ran ended, as `expect` reads its exit.
fn ended_outcome(stage: &Stage, ended: Result<Ended, String>) -> (Outcome, Option<i64>, String) {
    match ended {
        Err(fault) => (Outcome::Fault, None, fault),
        Ok(Ended::TimedOut) => {
            (Outcome::TimedOut, None, format!("ran past its timeout of {}s and was stopped", stage.timeout_secs))
        }
        Ok(Ended::Cancelled) => (Outcome::Cancelled, None, "cancelled".to_owned()),
        Ok(Ended::Exited(code)) => match (stage.expect, code) {
            (Expect::Success, 0) => (Outcome::Succeeded, Some(code), "exited 0".to_owned()),
            (Expect::Success, c) => (Outcome::Failed, Some(c), format!("exited {c}")),
            (Expect::Failure, 0) => (Outcome::Failed, Some(0), "exited 0, but `expect: failure`".to_owned()),
            // Only a command that ran and failed is the failure expected.
            (Expect::Failure, c) => match crate::stages::expect::expected_failure(c) {
                crate::stages::expect::Failure::Expected(why) => (Outcome::Succeeded, Some(c), why),
                crate::stages::expect::Failure::NotRun(why) => (Outcome::Fault, Some(c), why),
            },
        },
    }
}

/// A verdict with every secret value masked: its reasons and details come from the stage's own
/// output and files.
pub(super) fn mask_verdict(needles: &Needles, v: crate::stages::Verdict) -> crate::stages::Verdict {
    let reasons = v.reasons.iter().map(|r| needles.mask_str(r)).collect();
    let mut details = v.details;
    needles.mask_json(&mut details);
    crate::stages::Verdict { pass: v.pass, reasons, details }
}

pub(super) fn command_verdict(outcome: Outcome, code: Option<i64>, reason: &str, log: &Path) -> crate::stages::Verdict {
    let pass = outcome.is_success();
    let mut reasons = Vec::new();
    if !pass {
        reasons.push(reason.to_owned());
        reasons.extend(log_tail(log, 5));
    }
    crate::stages::Verdict { pass, reasons, details: serde_json::json!({ "exit_code": code }) }
}

/// Runs one job, writing its masked output to `log_path` and to the observers.
pub(super) async fn run_job(
    ctx: &Arc<Ctx>,
    job: &Job,
    log_path: PathBuf,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> (Result<Ended, String>, Result<(), String>) {
    let (chunk_tx, mut chunk_rx) = mpsc::channel(64);
    let (egress_tx, mut egress_rx) = mpsc::channel::<crate::egress::Decision>(64);
    let egress = {
        let needles = Arc::clone(&ctx.needles);
        let logs = logs.clone();
        let (stage, attempt) = (job.stage.clone(), job.attempt);
        tokio::spawn(async move {
            // The first decisions of an attempt are recorded one by one; past that, a stage
            // flooding the proxy would only grow the record: the rest are counted.
            let (mut seen, mut allowed_over, mut refused_over) = (0usize, 0u64, 0u64);
            while let Some(d) = egress_rx.recv().await {
                seen += 1;
                if seen > MAX_EGRESS_EVENTS {
                    if d.allowed {
                        allowed_over += 1;
                    } else {
                        refused_over += 1;
                    }
                    continue;
                }
                let event = Event::Egress {
                    stage: stage.clone(),
                    attempt,
                    host: needles.mask_str(&d.host),
                    port: d.port,
                    allowed: d.allowed,
                    why: needles.mask_str(&d.why),
                };
                // Each recorded decision waits for room rather than being dropped.
                if logs.send(event).await.is_err() {
                    break;
                }
            }
            if allowed_over + refused_over > 0 {
                let message = format!(
                    "`{stage}` attempt {attempt}: past {MAX_EGRESS_EVENTS} network decisions, {allowed_over} more were allowed and {refused_over} more refused (counted, not recorded one by one)"
                );
                let _ = logs.send(Event::Warning { message }).await;
            }
        })
    };
    let writer = {
        let needles = Arc::clone(&ctx.needles);
        let stage_id = job.stage.clone();
        let logs = logs.clone();
        tokio::spawn(async move { write_log(&log_path, &stage_id, needles, &mut chunk_rx, &logs).await })
    };
    let ended = ctx.executor.run(job, &chunk_tx, &egress_tx, cancel).await;
    drop(chunk_tx);
    drop(egress_tx);
    let _ = egress.await;
    let log_ok = writer.await.map_err(|e| e.to_string()).and_then(|r| r);
    (ended, log_ok)
}

/// After a stage: what it left in its I/O directory (kept in the record) and the workspace
/// loses every setuid, setgid and sticky bit and every FIFO, socket and device file; the I/O
/// directory loses its links too, and its files are masked. Each removal is a warning in the
/// record.
pub(super) async fn clean_after(ctx: &Arc<Ctx>, job: &Job, logs: &mpsc::Sender<Event>) {
    let (io, ws, writable, needles) =
        (job.io_dir.clone(), job.workspace.clone(), job.writable, Arc::clone(&ctx.needles));
    let work = tokio::task::spawn_blocking(move || {
        let mut done: Vec<String> =
            crate::untrusted::scrub(&io, false).into_iter().map(|d| format!("I/O directory: {d}")).collect();
        done.extend(
            crate::untrusted::mask_files(&io, &needles, MAX_KEPT_FILE)
                .into_iter()
                .map(|d| format!("I/O directory: {d}")),
        );
        if writable {
            done.extend(crate::untrusted::scrub(&ws, true).into_iter().map(|d| format!("workspace: {d}")));
        }
        done
    });
    let done = work.await.unwrap_or_default();
    // The first ones one by one; past that, a stage that left a million FIFOs would only grow
    // the record (and the time to write it): the rest are counted.
    for d in done.iter().take(MAX_CLEAN_WARNINGS) {
        let message = ctx.needles.mask_str(&format!("`{}` attempt {}: {d}", job.stage, job.attempt));
        let _ = logs.send(Event::Warning { message }).await;
    }
    if done.len() > MAX_CLEAN_WARNINGS {
        let message = format!(
            "`{}` attempt {}: {} more files removed or changed the same way (counted, not recorded one by one)",
            job.stage,
            job.attempt,
            done.len() - MAX_CLEAN_WARNINGS
        );
        let _ = logs.send(Event::Warning { message }).await;
    }
}

/// A scratch worktree of the run's repository at the workspace's last snapshot (`HEAD`), for
/// one attempt, handed to the stages' user. It is made by git from the snapshot's objects, never
/// copied from the workspace: its files are new files (no hard link to a workspace file), its
/// symbolic links are links, never followed, and what the snapshot refused (files over
/// [`workspace::MAX_FILE_BYTES`], FIFOs, devices, nested repositories) or `.gitignore` excludes is
/// not in it. Its git directory stays on the host, outside what the stage sees.
pub(super) fn scratch_at(ctx: &Ctx, name: &str) -> Result<Workspace, String> {
    scratch_of(ctx, name, &ctx.workspace.head()?)
}

/// A scratch worktree at `commit` (see [`scratch_at`]), named `<run>-<name>`.
pub(super) fn scratch_of(ctx: &Ctx, name: &str, commit: &str) -> Result<Workspace, String> {
    let ws = ctx.workspace.scratch(&format!("{}-{name}", ctx.meta.run_id), commit)?;
    ownership::prepare(&ws.dir);
    Ok(ws)
}

/// Throws a scratch worktree away, and with it whatever the stage wrote there (its links are
/// removed, never followed); one that cannot be removed is a warning, and is left on disk.
pub(super) async fn discard(ctx: &Ctx, ws: &Workspace, logs: &mpsc::Sender<Event>) {
    ownership::restore(&ws.dir, &ctx.meta.repo);
    if let Err(e) = ws.remove() {
        let message = format!("cannot remove the scratch copy {}: {e}", ws.dir.display());
        let _ = logs.send(Event::Warning { message }).await;
    }
}

/// Cleaning warnings of one attempt recorded one by one; the rest are counted.
const MAX_CLEAN_WARNINGS: usize = 100;

/// A directory on the host's tmpfs (`/dev/shm`) holding one attempt's secret files, removed
/// when the attempt ends, whatever happens.
pub(super) struct SecretDir {
    path: PathBuf,
}

impl SecretDir {
    fn new(run: &str, stage: &str, attempt: u32) -> SecretDir {
        SecretDir { path: PathBuf::from(format!("/dev/shm/lightsout-{run}-{stage}-{attempt}")) }
    }

    /// Writes one secret, readable by its owner only (the stage's user when the runner is root).
    fn write(&self, name: &str, value: &str) -> Result<PathBuf, String> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        if !self.path.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        let file = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        std::io::Write::write_all(&mut f, value.as_bytes()).map_err(|e| e.to_string())?;
        ownership::prepare(&self.path);
        Ok(file)
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Checks a stage against the policy: image, secrets, network hosts and resource ceilings.
pub(super) fn enforce(policy: &crate::policy::Policy, stage: &Stage) -> Result<(), String> {
    if let Some(img) = stage.image.as_ref().filter(|_| stage.role.in_container()) {
        policy.check_image(&img.value).map_err(|r| r.message)?;
    }
    for name in &stage.secrets {
        policy.check_secret(name, stage.kind.name()).map_err(|r| r.message)?;
    }
    for host in &stage.network {
        policy.check_host(host).map_err(|r| r.message)?;
    }
    for policy in policy.layers() {
        if let (Some(c), Some(max)) = (policy.ceiling_memory(), policy.limits().memory_bytes)
            && stage.resources.memory_bytes > max
        {
            return Err(format!("memory {} bytes is over the ceiling of {}", stage.resources.memory_bytes, c.value));
        }
        if let Some(c) = policy.ceiling_cpus()
            && stage.resources.cpus > c.value
        {
            return Err(format!("{} cpus is over the ceiling of {}", stage.resources.cpus, c.value));
        }
        if let Some(c) = policy.ceiling_pids()
            && stage.resources.pids > c.value
        {
            return Err(format!("{} pids is over the ceiling of {}", stage.resources.pids, c.value));
        }
        if let (Some(c), Some(max)) = (policy.ceiling_timeout(), policy.limits().timeout_secs)
            && stage.timeout_secs > max
        {
            return Err(format!("timeout {}s is over the ceiling of {}", stage.timeout_secs, c.value));
        }
    }
    Ok(())
}

/// The shell script that starts an agent with its prompt (at `/lightsout/prompt.md`).
pub(super) fn agent_script(agent: &crate::plan::AgentCall) -> String {
    use crate::plan::PromptMode;
    let prompt = format!("{}/prompt.md", crate::executor::IO_DIR);
    let quote = |s: &str| shlex::try_quote(s).map_or_else(|_| "''".to_owned(), std::borrow::Cow::into_owned);
    let argv: Vec<String> = agent.argv.iter().map(|a| quote(&a.replace("{prompt_file}", &prompt))).collect();
    let argv = argv.join(" ");
    match agent.prompt_mode {
        PromptMode::Stdin => format!("export LIGHTSOUT_PROMPT_FILE={prompt}; exec {argv} < {prompt}"),
        PromptMode::File if agent.argv.iter().any(|a| a.contains("{prompt_file}")) => {
            format!("export LIGHTSOUT_PROMPT_FILE={prompt}; exec {argv} < /dev/null")
        }
        PromptMode::File => format!("export LIGHTSOUT_PROMPT_FILE={prompt}; exec {argv} {prompt} < /dev/null"),
        // Command substitution inside double quotes is one word and is not evaluated again.
        PromptMode::Arg => format!("exec {argv} \"$(cat {prompt})\" < /dev/null"),
    }
}

/// Token usage and cost, from the agent's own output where it reports them.
pub(super) fn usage(format: crate::plan::UsageFormat, log: &str) -> BTreeMap<String, String> {
    use crate::plan::UsageFormat;
    let mut out = BTreeMap::new();
    let (mut input, mut output, mut cost): (u64, u64, Option<f64>) = (0, 0, None);
    let mut seen = false;
    for line in log.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        match format {
            // Claude Code's stream-json ends with a `result` event carrying the run's totals.
            UsageFormat::ClaudeStreamJson if v["type"] == "result" => {
                input = v["usage"]["input_tokens"].as_u64().unwrap_or(0)
                    + v["usage"]["cache_creation_input_tokens"].as_u64().unwrap_or(0)
                    + v["usage"]["cache_read_input_tokens"].as_u64().unwrap_or(0);
                output = v["usage"]["output_tokens"].as_u64().unwrap_or(0);
                cost = v["total_cost_usd"].as_f64().or_else(|| v["cost_usd"].as_f64());
                seen = true;
            }
            // Codex's JSON events report usage per turn.
            UsageFormat::CodexJson if v["type"] == "turn.completed" => {
                input += v["usage"]["input_tokens"].as_u64().unwrap_or(0);
                output += v["usage"]["output_tokens"].as_u64().unwrap_or(0);
                seen = true;
            }
            _ => {}
        }
    }
    if seen {
        out.insert("tokens_in".into(), input.to_string());
        out.insert("tokens_out".into(), output.to_string());
        if let Some(c) = cost {
            out.insert("cost_usd".into(), format!("{c:.6}"));
        }
    }
    out
}

/// Images are built from the base revision, as the workspace gives it.
impl crate::executor::docker::image::BaseRevision for Workspace {
    fn file(&self, rel: &str) -> Result<Vec<u8>, String> {
        self.base_file(rel).map_err(String::from)
    }
    fn tar(&self, rel: &Path) -> Result<Vec<u8>, String> {
        self.base_tar(rel).map_err(String::from)
    }
}
