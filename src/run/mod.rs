//! Running a plan: one owning async loop schedules ready stages up to `--jobs`, each attempt
//! runs on an executor, every fact becomes an [`Event`] that is recorded (fsynced) before the
//! loop acts on it, and observers (the display) see the same events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::compile::kinds::Role;
use crate::events::{Event, Outcome, RunStatus, Stamped};
use crate::executor::{Ended, Executor, Job};
use crate::plan::{Plan, Stage};
use crate::secrets::{Masker, Needles};
use crate::spec::pipeline::{Access, Expect};
use crate::store::{Recorder, RunDir, RunMeta, RunState};
use crate::template::Mode;
use crate::ticket::Ticket;
use crate::workspace::{self, Workspace};

/// Largest outputs file read back from a stage.
const MAX_OUTPUT_FILE: u64 = 1024 * 1024;
/// What a stage attempt's log keeps of its output: its start and its end.
const LOG_HEAD: u64 = 4 * 1024 * 1024;
const LOG_TAIL: usize = 4 * 1024 * 1024;
const MAX_LOG_BYTES: u64 = LOG_HEAD + LOG_TAIL as u64;
/// Network decisions of one attempt recorded one by one; the rest are counted.
const MAX_EGRESS_EVENTS: usize = 1000;
/// The largest file a stage's I/O directory keeps in the record.
const MAX_KEPT_FILE: u64 = 64 * 1024 * 1024;
/// The largest `JUnit` report a test command may write.
const MAX_JUNIT_FILE: u64 = 32 * 1024 * 1024;
/// First delay before retrying an infrastructure fault; doubles each time.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// How the run reports what happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A live view on a terminal, plain timestamped lines otherwise (or under `CI=true`).
    Human,
    /// One JSON event per line on stdout.
    Json,
    /// Nothing (tests, benchmarks).
    Quiet,
}

/// Choices the user makes for a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    pub keep_workspace: bool,
    pub base: String,
    pub output: Output,
}

/// Why a run could not be carried out (as opposed to a stage failing).
#[derive(Debug)]
pub enum RunError {
    /// The input is wrong (exit 2).
    Invalid(String),
    /// Docker, git or the file system failed (exit 3).
    Infra(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Invalid(m) | RunError::Infra(m) => f.write_str(m),
        }
    }
}

/// How a run ended, for the exit code.
#[derive(Clone, Debug)]
pub struct Finished {
    pub run_id: String,
    pub status: RunStatus,
    /// Whether a stage failed for an infrastructure fault (exit 3 rather than 1).
    pub fault: bool,
}

/// Stage kinds this engine runs, and the command each runs.
fn command_of(stage: &Stage) -> Option<&str> {
    match stage.role {
        Role::Command => stage.run.as_deref(),
        Role::Grader if matches!(stage.kind.as_str(), "grade.command" | "grade.tests") => {
            stage.with.get("command").and_then(|v| v.as_str())
        }
        _ => None,
    }
}

/// Refuses a plan with stage kinds this engine does not run yet, before anything starts.
pub fn check_runnable(plan: &Plan) -> Result<(), RunError> {
    let missing: Vec<String> = plan
        .stages()
        .iter()
        .filter(|s| {
            command_of(s).is_none()
                && !crate::stages::is_host_kind(&s.kind)
                && s.agent.is_none()
                && s.role != Role::Approve
        })
        .map(|s| format!("{} (`{}`)", s.id, s.kind))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::Invalid(format!(
            "this version of lightsout cannot run these stages yet: {}; `lightsout plan` shows the plan without running it",
            missing.join(", ")
        )))
    }
}

/// Secret values, by name, from their providers (the environment variable of the same name when
/// factory.yaml names none). A secret whose provider fails is left out: the stage that needs it
/// fails with the reason when it starts, and no other stage is affected.
fn secret_values(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in plan.stages() {
        for name in &s.secrets {
            if out.contains_key(name) {
                continue;
            }
            let value = match s.secret_sources.get(name) {
                Some(src) => fetch_secret(src).ok(),
                None => std::env::var(name).ok(),
            };
            if let Some(v) = value {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

/// Reads one secret from its provider.
fn fetch_secret(src: &crate::spec::factory::SecretSource) -> Result<String, String> {
    if let Some(var) = &src.env {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(path) = &src.file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Some(argv) = src.command.as_ref().filter(|a| !a.is_empty()) {
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        if !out.status.success() {
            return Err(format!("{} exited {}", argv[0], out.status.code().unwrap_or(-1)));
        }
        return Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches(['\n', '\r']).to_owned());
    }
    Err("no provider".into())
}

/// Everything a run needs while it runs.
struct Ctx {
    plan: Plan,
    ticket: Ticket,
    meta: RunMeta,
    dir: RunDir,
    workspace: Workspace,
    executor: Executor,
    needles: Arc<Needles>,
    secrets: BTreeMap<String, String>,
    output: Output,
    /// The policy in force, enforced again before each stage starts.
    policy: crate::policy::Policy,
}

/// Starts a new run of `plan` for `ticket` in the repository holding `repo`.
pub async fn start(
    repo: &Path,
    plan: Plan,
    ticket: Ticket,
    executor: Executor,
    opts: &Options,
    policy: crate::policy::Policy,
) -> Result<Finished, RunError> {
    check_runnable(&plan)?;
    let factory_dir = std::fs::canonicalize(repo).map_err(|e| RunError::Invalid(format!("{}: {e}", repo.display())))?;
    let repo = workspace::repo_root(repo).map_err(RunError::Invalid)?;
    let repo = std::fs::canonicalize(&repo).unwrap_or(repo);
    let sub = factory_dir.strip_prefix(&repo).map(Path::to_path_buf).unwrap_or_default();
    let base = workspace::resolve(&repo, &opts.base).map_err(RunError::Invalid)?;
    if let Executor::Docker(d) = &executor {
        d.remove_orphans().await.map_err(RunError::Infra)?;
    }
    let run_id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let dir =
        RunDir::create(&repo, &run_id).map_err(|e| RunError::Infra(format!("cannot create the run record: {e}")))?;
    let workspace = Workspace::create(&repo, &run_id, &base, &sub).map_err(RunError::Infra)?;
    let secrets = secret_values(&plan);
    let meta = RunMeta {
        run_id: run_id.clone(),
        repo: repo.clone(),
        workspace: workspace.dir.clone(),
        sub,
        base: base.clone(),
        executor: executor.name().to_owned(),
        jobs: opts.jobs.max(1),
        keep_going: opts.keep_going,
        keep_workspace: opts.keep_workspace,
        secrets: secrets.keys().cloned().collect(),
        policy: policy.file().and_then(|f| std::fs::canonicalize(f).ok()),
        org_policy: policy.org_file().and_then(|f| std::fs::canonicalize(f).ok()),
    };
    let infra = |e: std::io::Error| RunError::Infra(format!("cannot write the run record: {e}"));
    dir.write_json("plan.json", &plan).map_err(infra)?;
    dir.write_json("ticket.json", &ticket).map_err(infra)?;
    dir.write_json("run.json", &meta).map_err(infra)?;
    dir.claim().map_err(infra)?;
    let needles = Arc::new(Needles::new(secrets.values().map(String::as_str)));
    let first = Event::RunStarted {
        run_id: run_id.clone(),
        factory: plan.factory().to_owned(),
        category: plan.category().to_owned(),
        ticket: ticket.id.clone(),
        base,
        executor: executor.name().to_owned(),
        pid: std::process::id(),
    };
    let ctx = Ctx { plan, ticket, meta, dir, workspace, executor, needles, secrets, output: opts.output, policy };
    drive(ctx, RunState::default(), vec![first]).await
}

/// Continues a run whose runner died, from the stages that had not completed.
pub async fn resume(
    repo: &Path,
    run_id: &str,
    executor_for: impl FnOnce(&str) -> Result<Executor, RunError>,
    output: Output,
) -> Result<Finished, RunError> {
    resume_with(repo, run_id, executor_for, output, None).await
}

/// A person's answer at an `approve` gate.
#[derive(Clone, Debug)]
pub struct Decision {
    pub approve: bool,
    pub by: String,
    pub reason: String,
}

/// Continues a run: after its runner died, or (with a decision) at an `approve` gate.
pub async fn resume_with(
    repo: &Path,
    run_id: &str,
    executor_for: impl FnOnce(&str) -> Result<Executor, RunError>,
    output: Output,
    decision: Option<Decision>,
) -> Result<Finished, RunError> {
    let repo = workspace::repo_root(repo).map_err(RunError::Invalid)?;
    let dir = RunDir::open(&repo, run_id)
        .ok_or_else(|| RunError::Invalid(format!("there is no run `{run_id}`; `lightsout runs` lists them")))?;
    if dir.owner_alive() {
        return Err(RunError::Invalid(format!("run `{run_id}` is still running (its runner is alive)")));
    }
    let state = dir.state();
    let gate = state.stages.iter().find(|(_, st)| st.awaiting).map(|(id, _)| id.clone());
    let first_decision = match (state.status, &decision, gate) {
        (Some(RunStatus::AwaitingApproval), Some(answer), Some(gate_id)) => {
            let Decision { approve: yes, by, reason: why } = answer.clone();
            Some(if yes {
                Event::Approved { stage: gate_id, by, reason: why }
            } else {
                Event::Rejected { stage: gate_id, by, reason: why }
            })
        }
        (Some(RunStatus::AwaitingApproval), None, _) => {
            return Err(RunError::Invalid(format!(
                "run `{run_id}` waits for approval; `lightsout approve {run_id}` or `lightsout reject {run_id}`"
            )));
        }
        (_, Some(_), _) => return Err(RunError::Invalid(format!("run `{run_id}` is not waiting for approval"))),
        (Some(status), None, _) => {
            return Err(RunError::Invalid(format!("run `{run_id}` already ended ({status:?}); nothing to resume")));
        }
        (None, None, _) => None,
    };
    let meta = dir.meta().map_err(RunError::Infra)?;
    let plan_text = std::fs::read_to_string(dir.path.join("plan.json")).map_err(|e| RunError::Infra(e.to_string()))?;
    let plan = Plan::from_record(&plan_text).map_err(RunError::Infra)?;
    let ticket: Ticket = dir.read_json("ticket.json").map_err(RunError::Infra)?;
    // The policy as it is now, not as it was when the run started: a tightened policy binds.
    let load = |path: &Path| {
        crate::policy::Policy::load(path)
            .map_err(|ds| RunError::Invalid(ds.render(&|p: &Path| std::fs::read_to_string(p).ok())))
    };
    let mut policy = match &meta.policy {
        Some(path) => load(path)?,
        None => crate::policy::Policy::default(),
    };
    if let Some(org) = &meta.org_policy {
        policy = policy.under(load(org)?);
    }
    // The recorded plan may have been edited since: it must still hold every grader the
    // policy requires for its category.
    for (grader, rule) in policy.required_graders(plan.category()) {
        if !plan.stages().iter().any(|s| s.kind == grader) {
            return Err(RunError::Invalid(format!(
                "the recorded plan of run `{run_id}` has no `{grader}` stage, which policy requires for `{}` ({rule}); it was edited since the run started, and does not continue",
                plan.category()
            )));
        }
    }
    let executor = executor_for(&meta.executor)?;
    if let Executor::Docker(d) = &executor {
        d.remove_orphans().await.map_err(RunError::Infra)?;
    }
    dir.claim().map_err(|e| RunError::Infra(e.to_string()))?;
    let workspace = Workspace::open(&repo, &meta.workspace, &meta.base, &meta.sub).map_err(RunError::Infra)?;
    // Back to the state after the last stage that completed: anything a stage wrote before
    // the runner died is dropped, and that stage runs again.
    let snapshot = state.snapshot.clone().unwrap_or_else(|| meta.base.clone());
    workspace.restore(&snapshot).map_err(RunError::Infra)?;
    // Secrets are read from this process's environment: a stage after a gate gets them from
    // whoever continues the run, never before.
    let secrets = secret_values(&plan);

    let needles = Arc::new(Needles::new(secrets.values().map(String::as_str)));
    let ctx = Ctx { plan, ticket, meta, dir, workspace, executor, needles, secrets, output, policy };
    let mut first = vec![Event::RunResumed { pid: std::process::id() }];
    first.extend(first_decision);
    drive(ctx, state, first).await
}

/// What a stage task reports back to the loop.
struct Done {
    index: usize,
    attempt: u32,
    outcome: Outcome,
    exit_code: Option<i64>,
    reason: String,
    duration: Duration,
    outputs: BTreeMap<String, String>,
    verdict: Option<crate::stages::Verdict>,
}

/// The owning loop.
async fn drive(ctx: Ctx, mut state: RunState, first: Vec<Event>) -> Result<Finished, RunError> {
    let ctx = Arc::new(ctx);
    let mut recorder =
        Recorder::open(&ctx.dir).map_err(|e| RunError::Infra(format!("cannot open the event log: {e}")))?;
    let (obs_tx, obs_rx) = mpsc::channel::<Stamped>(256);
    let display = tokio::spawn(crate::report::terminal::show(ctx.output, ctx.plan.clone(), obs_rx));
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    // Stages never run as root: when the runner is, the workspace is the stages' user's.
    ownership::prepare(&ctx.workspace.dir);

    let mut emit = |e: Event, state: &mut RunState| -> Result<(), RunError> {
        let stamped = Stamped::now(e);
        if stamped.event.is_recorded() {
            recorder.append(&stamped).map_err(|e| RunError::Infra(format!("cannot append to the event log: {e}")))?;
        }
        state.apply(&stamped.event);
        let _ = obs_tx.try_send(stamped);
        Ok(())
    };
    for e in first {
        emit(e, &mut state)?;
    }
    if let Executor::Local(l) = &ctx.executor
        && !l.sandboxed()
    {
        emit(
            Event::Warning { message: "stages run as plain processes on the host, without a sandbox".into() },
            &mut state,
        )?;
    }

    let stages = ctx.plan.stages();
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut in_flight: Vec<bool> = vec![false; stages.len()];
    let mut stop_reason: Option<String> = None;
    let (log_tx, mut log_rx) = mpsc::channel::<Event>(256);
    let jobs = ctx.meta.jobs.max(1);

    loop {
        // Settle what can be settled, start what can be started.
        if stop_reason.is_none() && !cancel.is_cancelled() {
            for (i, s) in stages.iter().enumerate() {
                let st = state.stages.get(&s.id);
                if in_flight[i] || st.is_some_and(crate::store::StageState::settled) {
                    continue;
                }
                let needs: Vec<&crate::store::StageState> =
                    s.needs.iter().filter_map(|n| state.stages.get(n.as_str())).collect();
                if needs.len() < s.needs.len() || needs.iter().any(|n| !n.settled()) {
                    continue;
                }
                if let Some(bad) = s.needs.iter().find(|n| {
                    state
                        .stages
                        .get(n.as_str())
                        .is_some_and(|n| n.skipped.is_some() || n.outcome != Some(Outcome::Succeeded))
                }) {
                    emit(
                        Event::StageSkipped { stage: s.id.clone(), reason: format!("`{bad}` did not succeed") },
                        &mut state,
                    )?;
                    continue;
                }
                let tctx = template_ctx(&ctx, &state, &s.id);
                if let Some(cond) = &s.condition {
                    match crate::template::eval_condition(cond, &tctx) {
                        Ok(true) => {}
                        Ok(false) => {
                            emit(
                                Event::StageSkipped { stage: s.id.clone(), reason: format!("`if: {cond}` is false") },
                                &mut state,
                            )?;
                            continue;
                        }
                        Err(e) => {
                            emit(
                                finished(&s.id, 1, Outcome::Failed, None, format!("`if: {cond}` failed: {e}")),
                                &mut state,
                            )?;
                            continue;
                        }
                    }
                }
                if s.role == Role::Approve {
                    if !state.stages.get(&s.id).is_some_and(|st| st.awaiting) {
                        let message = s.with.get("message").and_then(|m| m.as_str()).unwrap_or("a person must approve");
                        let message =
                            crate::template::render(Mode::Text, message, &tctx).unwrap_or_else(|_| message.to_owned());
                        emit(
                            Event::ApprovalRequested { stage: s.id.clone(), message: ctx.needles.mask_str(&message) },
                            &mut state,
                        )?;
                    }
                    continue;
                }
                if running.len() >= jobs {
                    break;
                }
                let attempt = state.stages.get(&s.id).map_or(0, |st| st.attempts) + 1;
                emit(
                    Event::StageStarted { stage: s.id.clone(), attempt, on: on_name(&ctx, &s.id, attempt) },
                    &mut state,
                )?;
                in_flight[i] = true;
                running.spawn(run_stage(Arc::clone(&ctx), i, attempt, tctx, log_tx.clone(), cancel.clone()));
            }
            // Stages the loop skipped may unblock others: go round again before waiting.
            if running.is_empty()
                && stages.iter().any(|s| !state.stages.get(&s.id).is_some_and(crate::store::StageState::settled))
            {
                let progress = stages.iter().enumerate().any(|(i, s)| {
                    !in_flight[i]
                        && !state.stages.get(&s.id).is_some_and(|st| st.awaiting)
                        && !state.stages.get(&s.id).is_some_and(crate::store::StageState::settled)
                        && s.needs
                            .iter()
                            .all(|n| state.stages.get(n.as_str()).is_some_and(crate::store::StageState::settled))
                });
                if progress {
                    continue;
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(log) = log_rx.recv() => { emit(log, &mut state)?; }
            Some(joined) = running.join_next() => {
                // Take every stage that has finished by now, so that one workspace snapshot
                // covers them all (a snapshot is a git commit: not free).
                let mut dones = vec![joined.map_err(|e| RunError::Infra(format!("a stage task failed: {e}")))?];
                while let Some(more) = running.try_join_next() {
                    dones.push(more.map_err(|e| RunError::Infra(format!("a stage task failed: {e}")))?);
                }
                // Drain the logs the tasks sent before they finished, so they come first.
                while let Ok(log) = log_rx.try_recv() { emit(log, &mut state)?; }
                let writers: Vec<String> = dones
                    .iter()
                    .filter(|d| d.outcome.is_success() && stages[d.index].workspace == Access::ReadWrite)
                    .map(|d| stages[d.index].id.clone())
                    .collect();
                let snapshot = if writers.is_empty() {
                    None
                } else {
                    // Host git walks and reads what the stages wrote: off the scheduler's thread.
                    let ws = ctx.workspace.clone();
                    let label = format!("lightsout: after {}", writers.join(", "));
                    let taken = tokio::task::spawn_blocking(move || ws.snapshot(&label))
                        .await
                        .unwrap_or_else(|e| Err(format!("the snapshot failed: {e}")));
                    match taken {
                        Ok(commit) => Some(commit),
                        Err(e) => {
                            // What the stages left cannot be recorded (a nested repository, a
                            // huge file): their change fails, the run goes on to its end.
                            let reason = ctx.needles.mask_str(&e);
                            for d in dones.iter_mut().filter(|d| d.outcome.is_success() && stages[d.index].workspace == Access::ReadWrite) {
                                d.outcome = Outcome::Failed;
                                d.reason.clone_from(&reason);
                            }
                            None
                        }
                    }
                };
                for done in dones {
                    let s = &stages[done.index];
                    in_flight[done.index] = false;
                    if s.agent.is_some() && done.outcome.is_success() {
                        // Each agent attempt's change, as a patch against the base.
                        if let Ok((_, patch)) = ctx.workspace.diff() {
                            let path = ctx.dir.path.join("stages").join(&s.id).join(format!("{}.diff", done.attempt));
                            let _ = std::fs::write(path, ctx.needles.mask_str(&patch));
                        }
                    }
                    let retry = done.outcome == Outcome::Fault && done.attempt <= s.retries && !cancel.is_cancelled();
                    let wrote = done.outcome.is_success() && s.workspace == Access::ReadWrite;
                    emit(Event::StageFinished {
                        stage: s.id.clone(),
                        attempt: done.attempt,
                        outcome: done.outcome,
                        exit_code: done.exit_code,
                        reason: done.reason,
                        duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
                        outputs: done.outputs,
                        snapshot: if wrote { snapshot.clone() } else { None },
                        retrying: retry,
                        verdict: done.verdict.map(|v| mask_verdict(&ctx.needles, v)),
                    }, &mut state)?;
                    if retry {
                        // The next attempt waits out its backoff in its own task, not in the loop.
                        let attempt = done.attempt + 1;
                        let delay = RETRY_BACKOFF * 2u32.saturating_pow(done.attempt - 1);
                        emit(Event::StageStarted { stage: s.id.clone(), attempt, on: on_name(&ctx, &s.id, attempt) }, &mut state)?;
                        in_flight[done.index] = true;
                        let task = run_stage(Arc::clone(&ctx), done.index, attempt, template_ctx(&ctx, &state, &s.id), log_tx.clone(), cancel.clone());
                        running.spawn(async move {
                            tokio::time::sleep(delay).await;
                            task.await
                        });
                    } else if !done.outcome.is_success()
                        && !ctx.meta.keep_going
                        && stop_reason.is_none()
                        && done.outcome != Outcome::Cancelled
                        && !is_loop_grader(stages, &s.id)
                    {
                        stop_reason = Some(format!("stopped after `{}` failed (fail-fast; --keep-going runs the rest)", s.id));
                        cancel.cancel();
                    }
                }
                if !cancel.is_cancelled() {
                    for restart in loop_restarts(&ctx, &state) {
                        emit(restart, &mut state)?;
                    }
                }
            }
        }
    }

    // Stopped at a gate: the run waits, its workspace kept, until `approve` or `reject`.
    let waiting = stages.iter().any(|s| state.stages.get(&s.id).is_some_and(|st| st.awaiting));
    if waiting && stop_reason.is_none() && !cancel.is_cancelled() {
        emit(Event::RunFinished { status: RunStatus::AwaitingApproval, diff_stat: None }, &mut state)?;
        drop(obs_tx);
        let _ = display.await;
        return Ok(Finished { run_id: ctx.meta.run_id.clone(), status: RunStatus::AwaitingApproval, fault: false });
    }
    // Stages that never ran.
    let reason = if let Some(r) = &stop_reason { r.clone() } else { "the run was cancelled".to_owned() };
    for s in stages {
        if !state.stages.get(&s.id).is_some_and(crate::store::StageState::settled) {
            emit(Event::StageSkipped { stage: s.id.clone(), reason: reason.clone() }, &mut state)?;
        }
    }
    let interrupted = cancel.is_cancelled() && stop_reason.is_none();
    let failed =
        stages.iter().any(|s| state.stages.get(&s.id).is_some_and(|st| st.outcome.is_some_and(|o| !o.is_success())));
    let fault = stages.iter().any(|s| state.stages.get(&s.id).is_some_and(|st| st.outcome == Some(Outcome::Fault)));
    let status = if interrupted {
        RunStatus::Cancelled
    } else if failed {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    if let Executor::Docker(d) = &ctx.executor
        && let Err(e) = d.remove_run(&ctx.meta.run_id).await
    {
        emit(Event::Warning { message: e }, &mut state)?;
    }
    ownership::restore(&ctx.workspace.dir, &ctx.meta.repo);
    let diff_stat = match ctx.workspace.diff() {
        Ok((stat, patch)) => {
            let _ = ctx.dir.write_text("diff.patch", &ctx.needles.mask_str(&patch));
            // File names are the stage's: masked like its output.
            Some(ctx.needles.mask_str(&stat))
        }
        Err(_) => None,
    };
    emit(Event::RunFinished { status, diff_stat }, &mut state)?;
    if !ctx.meta.keep_workspace {
        let _ = ctx.workspace.remove();
    }
    drop(obs_tx);
    let _ = display.await;
    Ok(Finished { run_id: ctx.meta.run_id.clone(), status, fault })
}

fn finished(stage: &str, attempt: u32, outcome: Outcome, exit_code: Option<i64>, reason: String) -> Event {
    Event::StageFinished {
        stage: stage.to_owned(),
        attempt,
        outcome,
        exit_code,
        reason,
        duration_ms: 0,
        outputs: BTreeMap::new(),
        snapshot: None,
        retrying: false,
        verdict: None,
    }
}

/// The container a stage attempt runs in (docker), for the display and the record.
fn on_name(ctx: &Ctx, stage: &str, attempt: u32) -> Option<String> {
    let on_host = ctx.plan.stage(stage).is_some_and(|s| crate::stages::is_host_kind(&s.kind));
    match &ctx.executor {
        Executor::Docker(_) if !on_host => {
            Some(crate::executor::docker::container_name(&ctx.meta.run_id, stage, attempt))
        }
        _ => None,
    }
}

/// What templates see: the ticket, the inputs, the outputs of stages that completed, and for
/// a looping stage its attempt and the graders' feedback.
fn template_ctx(ctx: &Ctx, state: &RunState, for_stage: &str) -> serde_json::Value {
    let (attempt, feedback) = state.loops.get(for_stage).cloned().unwrap_or((1, String::new()));
    let stages: serde_json::Map<String, serde_json::Value> = state
        .stages
        .iter()
        .map(|(id, st)| {
            let status = match (&st.skipped, st.outcome) {
                (Some(_), _) => "skipped",
                (None, Some(Outcome::Succeeded)) => "succeeded",
                (None, Some(_)) => "failed",
                (None, None) => "pending",
            };
            (id.clone(), json!({ "outputs": st.outputs, "status": status }))
        })
        .collect();
    let t = &ctx.ticket;
    json!({
        "ticket": {
            "id": t.id, "title": t.title, "body": t.body, "labels": t.labels, "url": t.url,
            "author": t.author, "fields": t.fields, "category": ctx.plan.category(),
        },
        "inputs": ctx.plan.inputs(),
        "stages": stages,
        "attempt": attempt,
        "feedback": feedback,
    })
}

/// Runs one attempt of one stage.
async fn run_stage(
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
    // The plan was checked against policy when it was compiled; a recorded plan may have been
    // edited since, so every stage is checked again before it starts.
    if let Err(refusal) = enforce(&ctx.policy, stage) {
        return done(Outcome::Failed, None, format!("refused by policy at run time: {refusal}"), BTreeMap::new());
    }
    if crate::stages::is_host_kind(&stage.kind) {
        let result = run_host_stage(&ctx, stage, attempt, &tctx, &logs).await;
        return match result {
            Ok((outputs, None)) => done(Outcome::Succeeded, None, "done on the host".into(), outputs),
            Ok((outputs, Some(v))) => {
                let (outcome, reason) = if v.pass {
                    (Outcome::Succeeded, "pass".to_owned())
                } else {
                    (Outcome::Failed, ctx.needles.mask_str(&v.reasons.join("; ")))
                };
                Done { verdict: Some(v), ..done(outcome, None, reason, outputs) }
            }
            Err(e) => done(Outcome::Failed, None, ctx.needles.mask_str(&e), BTreeMap::new()),
        };
    }
    let io_dir = ctx.dir.path.join("stages").join(&stage.id).join(format!("{attempt}.io"));
    if let Err(e) = std::fs::create_dir_all(&io_dir) {
        return done(Outcome::Fault, None, format!("cannot create {}: {e}", io_dir.display()), BTreeMap::new());
    }
    let script = if let Some(agent) = &stage.agent {
        // The prompt is text (ticket values inserted as they are, never evaluated); it reaches
        // the agent as a file, on stdin or as one argument, never through a shell word.
        let prompt = match crate::template::render(Mode::Text, &agent.prompt, &tctx) {
            Ok(p) => p,
            Err(e) => return done(Outcome::Failed, None, format!("the prompt template failed: {e}"), BTreeMap::new()),
        };
        if let Err(e) = std::fs::write(io_dir.join("prompt.md"), &prompt) {
            return done(Outcome::Fault, None, format!("cannot write the prompt: {e}"), BTreeMap::new());
        }
        agent_script(agent)
    } else {
        let Some(source) = command_of(stage) else {
            return done(Outcome::Failed, None, format!("`{}` stages cannot run yet", stage.kind), BTreeMap::new());
        };
        // Ticket text reaches the command only as shell-quoted values.
        match crate::template::render(Mode::Shell, source, &tctx) {
            Ok(s) => s,
            Err(e) => return done(Outcome::Failed, None, format!("the command template failed: {e}"), BTreeMap::new()),
        }
    };
    // `env:` values are templates, rendered as text: an environment variable is one value,
    // never shell-parsed, so ticket text in it stays data.
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &stage.env {
        match crate::template::render(Mode::Text, v, &tctx) {
            Ok(value) => env.push((k.clone(), value)),
            Err(e) => {
                return done(Outcome::Failed, None, format!("the template of `env.{k}` failed: {e}"), BTreeMap::new());
            }
        }
    }
    // Secrets as files live on a tmpfs of the host for the attempt only, never on disk.
    let secret_dir = SecretDir::new(&ctx.meta.run_id, &stage.id, attempt);
    let mut files = Vec::new();
    for name in &stage.secrets {
        let Some(value) = ctx.secrets.get(name) else {
            return done(
                Outcome::Failed,
                None,
                format!("secret `{name}` is not available to the runner"),
                BTreeMap::new(),
            );
        };
        if value.trim_end_matches(['\n', '\r']).len() < crate::secrets::MIN_NEEDLE {
            return done(
                Outcome::Failed,
                None,
                format!(
                    "secret `{name}` is shorter than {} bytes: lightsout cannot mask it in logs and records without masking ordinary text, so no stage gets it; use a longer value",
                    crate::secrets::MIN_NEEDLE
                ),
                BTreeMap::new(),
            );
        }
        let as_file =
            stage.secret_sources.get(name).and_then(|s| s.mount) == Some(crate::spec::factory::SecretMount::File);
        if as_file {
            match secret_dir.write(name, value) {
                Ok(host) => {
                    let inside = format!("/run/secrets/{name}");
                    env.push((format!("{name}_FILE"), inside.clone()));
                    files.push((host, inside));
                }
                Err(e) => return done(Outcome::Fault, None, format!("secret `{name}`: {e}"), BTreeMap::new()),
            }
        } else {
            env.push((name.clone(), value.clone()));
        }
    }
    ownership::prepare(&io_dir);
    let image = match (&ctx.executor, &stage.image) {
        (Executor::Docker(d), Some(img)) => {
            let allowed = |name: &str| ctx.policy.check_image(name).map(|_| ()).map_err(|r| r.message);
            match crate::executor::docker::image::ensure(d, &ctx.workspace, &img.value, allowed).await {
                Ok(name) => name,
                Err(crate::executor::docker::image::ImageError::Refused(e)) => {
                    return done(Outcome::Failed, None, e, BTreeMap::new());
                }
                Err(crate::executor::docker::image::ImageError::Fault(e)) => {
                    return done(Outcome::Fault, None, e, BTreeMap::new());
                }
            }
        }
        (_, img) => img.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
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
        io_dir: io_dir.clone(),
        limits: stage.resources,
        timeout: Duration::from_secs(stage.timeout_secs.max(1)),
        files,
        egress: stage.network.clone(),
    };
    if stage.kind == "grade.tests" {
        return match grade_tests(&ctx, stage, attempt, &job, &tctx, &logs, &cancel).await {
            Ok((v, code)) => {
                let (outcome, reason) = if v.pass {
                    (Outcome::Succeeded, "pass".to_owned())
                } else {
                    (Outcome::Failed, ctx.needles.mask_str(&v.reasons.join("; ")))
                };
                Done { verdict: Some(v), ..done(outcome, Some(code), reason, BTreeMap::new()) }
            }
            Err(Ok(Ended::TimedOut)) => done(
                Outcome::TimedOut,
                None,
                format!("ran past its timeout of {}s", stage.timeout_secs),
                BTreeMap::new(),
            ),
            Err(Ok(_)) => done(Outcome::Cancelled, None, "cancelled".into(), BTreeMap::new()),
            Err(Err(fault)) => done(Outcome::Fault, None, ctx.needles.mask_str(&fault), BTreeMap::new()),
        };
    }
    let (ended, log_ok) = run_job(&ctx, &job, ctx.dir.log_path(&stage.id, attempt), &logs, &cancel).await;
    // The outputs file first (read as untrusted: a link there fails the stage, and says so),
    // then what the stage left is cleaned.
    let outputs = read_outputs(&io_dir.join("output"), &ctx.needles).await;
    clean_after(&ctx, &job, &logs).await;
    let (outcome, code, reason) = match ended {
        Err(fault) => (Outcome::Fault, None, fault),
        Ok(Ended::TimedOut) => {
            (Outcome::TimedOut, None, format!("ran past its timeout of {}s and was stopped", stage.timeout_secs))
        }
        Ok(Ended::Cancelled) => (Outcome::Cancelled, None, "cancelled".to_owned()),
        Ok(Ended::Exited(code)) => match (stage.expect, code) {
            (Expect::Success, 0) => (Outcome::Succeeded, Some(code), "exited 0".to_owned()),
            (Expect::Success, c) => (Outcome::Failed, Some(c), format!("exited {c}")),
            (Expect::Failure, 0) => (Outcome::Failed, Some(0), "exited 0, but `expect: failure`".to_owned()),
            (Expect::Failure, c) => (Outcome::Succeeded, Some(c), format!("exited {c}, as `expect: failure` wants")),
        },
    };
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

/// A verdict with every secret value masked: its reasons and details come from the stage's own
/// output and files.
fn mask_verdict(needles: &Needles, v: crate::stages::Verdict) -> crate::stages::Verdict {
    let reasons = v.reasons.iter().map(|r| needles.mask_str(r)).collect();
    let mut details = v.details;
    needles.mask_json(&mut details);
    crate::stages::Verdict { pass: v.pass, reasons, details }
}

fn command_verdict(outcome: Outcome, code: Option<i64>, reason: &str, log: &Path) -> crate::stages::Verdict {
    let pass = outcome.is_success();
    let mut reasons = Vec::new();
    if !pass {
        reasons.push(reason.to_owned());
        reasons.extend(log_tail(log, 5));
    }
    crate::stages::Verdict { pass, reasons, details: serde_json::json!({ "exit_code": code }) }
}

/// The last `n` lines of a stage's log, read from its last 64 KiB only (a log may be huge).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else { return Vec::new() };
    let len = file.metadata().map_or(0, |m| m.len());
    if file.seek(SeekFrom::Start(len.saturating_sub(WINDOW))).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(WINDOW).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().rev().take(n).map(str::to_owned).collect();
    lines.reverse();
    lines
}

/// Runs one job, writing its masked output to `log_path` and to the observers.
async fn run_job(
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
async fn clean_after(ctx: &Arc<Ctx>, job: &Job, logs: &mpsc::Sender<Event>) {
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
    for d in done {
        let message = ctx.needles.mask_str(&format!("`{}` attempt {}: {d}", job.stage, job.attempt));
        let _ = logs.send(Event::Warning { message }).await;
    }
}

/// Per-test results of one run of the test command: `JUnit` if it wrote one, else its output.
/// The report is the stage's file: read as [`untrusted`] says, off the scheduler's thread.
async fn results_of(io_dir: &Path, log_path: &Path) -> Result<crate::stages::grade_tests::Results, String> {
    match crate::untrusted::read_file_async(&io_dir.join("junit.xml"), MAX_JUNIT_FILE).await {
        Ok(Some(xml)) => crate::stages::grade_tests::parse_junit(&String::from_utf8_lossy(&xml)),
        Ok(None) => {
            let log = crate::untrusted::read_file_async(log_path, MAX_LOG_BYTES + 4096)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            Ok(crate::stages::grade_tests::parse_log(&String::from_utf8_lossy(&log)))
        }
        Err(why) => Err(format!("the JUnit report {why}")),
    }
}

/// `grade.tests`: the test command on the candidate (with the test files of the base
/// revision) and on the base revision (once per base and command, then reused), compared.
/// `Err(Ok(ended))` when a run timed out or was cancelled, `Err(Err(fault))` on a fault.
async fn grade_tests(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    job: &Job,
    tctx: &serde_json::Value,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> Result<(crate::stages::Verdict, i64), Result<Ended, String>> {
    let strings = |k: &str| crate::stages::string_list(&stage.with, k);
    let mut fail_to_pass = Vec::new();
    for t in strings("fail_to_pass") {
        fail_to_pass
            .push(crate::template::render(Mode::Text, &t, tctx).map_err(|e| Err(format!("fail_to_pass: {e}")))?);
    }
    let pass_to_pass = stage.with.get("pass_to_pass").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let test_files: Vec<glob::Pattern> = strings("test_files")
        .iter()
        .map(|g| glob::Pattern::new(g).map_err(|e| Err(format!("test_files `{g}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let io_dir = job.io_dir.clone();
    let mut env = job.env.clone();
    env.push(("LIGHTSOUT_JUNIT".into(), format!("{}/junit.xml", crate::executor::IO_DIR)));

    // The candidate, with the test files as the base revision has them.
    let candidate = ctx.workspace.head().map_err(Err)?;
    let run = &ctx.meta.run_id;
    let cand = ctx.workspace.scratch(&format!("{run}-{}-{attempt}-candidate", stage.id), &candidate).map_err(Err)?;
    let prepared = cand.reset_to_base(&test_files);
    ownership::prepare(&cand.dir);
    let cand_job = Job { workspace: cand.root(), writable: false, env: env.clone(), ..job.clone() };
    let log_path = ctx.dir.log_path(&stage.id, attempt);
    let (ended, log_ok) = if let Err(e) = prepared {
        (Err(e), Ok(()))
    } else {
        run_job(ctx, &cand_job, log_path.clone(), logs, cancel).await
    };
    ownership::restore(&cand.dir, &ctx.meta.repo);
    let _ = cand.remove();
    // The candidate's report is the candidate's: one that cannot be read fails the verdict.
    // It is read before what the candidate left is cleaned (so that the reason names it), and
    // that is cleaned however the run ended.
    let cand_results = match &ended {
        Ok(Ended::Exited(_)) => Some(results_of(&io_dir, &log_path).await),
        _ => None,
    };
    clean_after(ctx, &cand_job, logs).await;
    log_ok.map_err(Err)?;
    let code = match ended.map_err(Err)? {
        Ended::Exited(c) => c,
        other => return Err(Ok(other)),
    };
    let cand_results = match cand_results.unwrap_or_else(|| Err("no report".into())) {
        Ok(r) => r,
        Err(why) => {
            let v = crate::stages::Verdict { pass: false, reasons: vec![why], details: serde_json::Value::Null };
            return Ok((v, code));
        }
    };

    // The base revision, once per base, command and test files.
    // The image and the stage's (non-secret) environment change results as much as the command.
    // The environment as rendered for this ticket, without secret values.
    let visible: Vec<&(String, String)> = job.env.iter().filter(|(k, _)| !stage.secrets.contains(k)).collect();
    let key = format!("{}\n{}\n{:?}\n{:?}", job.image, job.script, visible, strings("test_files"));
    let cache_dir = ctx.meta.repo.join(".lightsout").join("baselines");
    let cache = cache_dir.join(format!(
        "{}-{}.json",
        ctx.meta.base,
        crate::executor::docker::image::short_hash(key.as_bytes())
    ));
    let base_results: crate::stages::grade_tests::Results =
        if let Some(r) = std::fs::read_to_string(&cache).ok().and_then(|t| serde_json::from_str(&t).ok()) {
            r
        } else {
            let base_ws =
                ctx.workspace.scratch(&format!("{run}-{}-{attempt}-base", stage.id), &ctx.meta.base).map_err(Err)?;
            ownership::prepare(&base_ws.dir);
            // Beside the candidate's I/O directory, never inside it: the candidate's code ran
            // with that directory writable and could have left a forged report there.
            let base_io = ctx.dir.path.join("stages").join(&stage.id).join(format!("{attempt}.base.io"));
            let _ = std::fs::remove_dir_all(&base_io);
            std::fs::create_dir_all(&base_io).map_err(|e| Err(format!("{}: {e}", base_io.display())))?;
            ownership::prepare(&base_io);
            let base_job = Job { workspace: base_ws.root(), io_dir: base_io.clone(), ..cand_job.clone() };
            let base_log = ctx.dir.path.join("stages").join(&stage.id).join(format!("{attempt}.base.log"));
            let (ended, log_ok) = run_job(ctx, &base_job, base_log.clone(), logs, cancel).await;
            ownership::restore(&base_ws.dir, &ctx.meta.repo);
            let _ = base_ws.remove();
            let r = match &ended {
                Ok(Ended::Exited(_)) => Some(results_of(&base_io, &base_log).await),
                _ => None,
            };
            clean_after(ctx, &base_job, logs).await;
            log_ok.map_err(Err)?;
            match ended.map_err(Err)? {
                Ended::Exited(_) => {}
                other => return Err(Ok(other)),
            }
            let r = r.unwrap_or_else(|| Err("no report".into())).map_err(Err)?;
            let _ = std::fs::create_dir_all(&cache_dir);
            // Test names and messages come from the stage's own files: masked like its log.
            let mut cached = serde_json::to_value(&r).unwrap_or_default();
            ctx.needles.mask_json(&mut cached);
            let _ = std::fs::write(&cache, cached.to_string());
            r
        };
    Ok((crate::stages::grade_tests::judge(&base_results, &cand_results, &fail_to_pass, pass_to_pass, code), code))
}

/// A directory on the host's tmpfs (`/dev/shm`) holding one attempt's secret files, removed
/// when the attempt ends, whatever happens.
struct SecretDir {
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
fn enforce(policy: &crate::policy::Policy, stage: &Stage) -> Result<(), String> {
    let where_ = Path::new("policy");
    if let Some(img) = stage.image.as_ref().filter(|_| stage.role.in_container()) {
        policy.check_image(&img.value).map_err(|r| r.message)?;
    }
    for name in &stage.secrets {
        policy.check_secret(name, &stage.kind).map_err(|r| r.message)?;
    }
    for host in &stage.network {
        policy.check_host(host).map_err(|r| r.message)?;
    }
    for policy in policy.layers() {
        if let Some(c) = policy.ceiling_memory() {
            let max = crate::compile::units::size(where_, c).map_err(|d| d.message)?;
            if stage.resources.memory_bytes > max {
                return Err(format!(
                    "memory {} bytes is over the ceiling of {}",
                    stage.resources.memory_bytes, c.value
                ));
            }
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
        if let Some(c) = policy.ceiling_timeout() {
            let max = crate::compile::units::duration(where_, c).map_err(|d| d.message)?;
            if stage.timeout_secs > max.as_secs() {
                return Err(format!("timeout {}s is over the ceiling of {}", stage.timeout_secs, c.value));
            }
        }
    }
    Ok(())
}

/// The shell script that starts an agent with its prompt (at `/lightsout/prompt.md`).
fn agent_script(agent: &crate::plan::AgentCall) -> String {
    use crate::spec::factory::PromptMode;
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
fn usage(format: crate::spec::factory::UsageFormat, log: &str) -> BTreeMap<String, String> {
    use crate::spec::factory::UsageFormat;
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

/// Whether `grader` is one of a loop's graders. Its failure does not stop the run at once: the
/// loop answers it with another attempt, or, after the last one, the loop's other graders still
/// finish so that every verdict is recorded (stages after them are skipped either way).
fn is_loop_grader(stages: &[Stage], grader: &str) -> bool {
    stages.iter().any(|l| l.repeat.as_ref().is_some_and(|r| r.until.iter().any(|u| u == grader)))
}

/// Loops whose graders have all settled with at least one failure, and attempts left.
fn loop_restarts(ctx: &Ctx, state: &RunState) -> Vec<Event> {
    let stages = ctx.plan.stages();
    let mut events = Vec::new();
    for (i, l) in stages.iter().enumerate() {
        let Some(r) = &l.repeat else { continue };
        let attempt = state.loops.get(&l.id).map_or(1, |(a, _)| *a);
        let agent_ok = state.stages.get(&l.id).is_some_and(|s| s.outcome == Some(Outcome::Succeeded));
        let graders: Vec<(&String, Option<&crate::store::StageState>)> =
            r.until.iter().map(|g| (g, state.stages.get(g))).collect();
        let all_settled = graders.iter().all(|(_, s)| s.is_some_and(crate::store::StageState::settled));
        let failed: Vec<&String> = graders
            .iter()
            .filter(|(_, s)| s.is_some_and(|s| s.outcome != Some(Outcome::Succeeded)))
            .map(|(g, _)| *g)
            .collect();
        if !agent_ok || !all_settled || failed.is_empty() || attempt >= r.max_attempts {
            continue;
        }
        // Everything downstream of the agent runs again.
        let graph = ctx.plan.graph();
        let mut reset = vec![l.id.clone()];
        let mut seen = vec![false; stages.len()];
        let mut stack = vec![petgraph::graph::NodeIndex::new(i)];
        while let Some(n) = stack.pop() {
            for next in graph.neighbors(n) {
                if !seen[next.index()] {
                    seen[next.index()] = true;
                    reset.push(stages[next.index()].id.clone());
                    stack.push(next);
                }
            }
        }
        let mut feedback = String::new();
        for g in failed {
            let Some(st) = state.stages.get(g) else { continue };
            let _ = writeln!(feedback, "## {g}: {}", st.reason);
            if let Some(v) = &st.verdict {
                for reason in &v.reasons {
                    let _ = writeln!(feedback, "- {reason}");
                }
            }
            let tail = log_tail(&ctx.dir.log_path(g, st.attempts), 40);
            if !tail.is_empty() {
                feedback.push_str("\nlast lines of its log:\n");
                for line in &tail {
                    let _ = writeln!(feedback, "    {line}");
                }
            }
            feedback.push('\n');
        }
        events.push(Event::LoopRestarted { stage: l.id.clone(), attempt: attempt + 1, reset, feedback });
    }
    events
}

/// What `ship` needs: its rendered parameters, GitHub, the run summary and the ticket's issue.
fn ship_inputs(
    ctx: &Ctx,
    stage: &Stage,
    tctx: &serde_json::Value,
) -> Result<(crate::stages::ship::Params, Option<crate::stages::ship::GitHub>, String, Option<u64>), String> {
    let text = |k: &str, default: &str| -> Result<String, String> {
        let source = stage.with.get(k).and_then(|v| v.as_str()).unwrap_or(default);
        crate::template::render(Mode::Text, source, tctx).map_err(|e| format!("ship `{k}`: {e}"))
    };
    let flag = |k: &str, d: bool| stage.with.get(k).and_then(serde_json::Value::as_bool).unwrap_or(d);
    let params = crate::stages::ship::Params {
        branch: text("branch", crate::stages::ship::DEFAULT_BRANCH)?,
        message: text("message", "{{ ticket.title }}\n\nMade by lightsout for ticket {{ ticket.id }}.")?,
        remote: text("remote", "origin")?,
        pull_request: flag("pull_request", true),
        comment: flag("comment", false),
    };
    crate::stages::ship::check_branch(&params.branch, &ctx.policy)?;
    let github = if params.pull_request || params.comment {
        crate::stages::ship::GitHub::from_env(
            ctx.secrets.get("GITHUB_TOKEN").filter(|_| stage.secrets.iter().any(|s| s == "GITHUB_TOKEN")),
        )?
    } else {
        None
    };
    let issue = ctx.ticket.id.trim_start_matches('#').parse().ok();
    Ok((params, github, ctx.needles.mask_str(&run_summary(ctx, tctx)), issue))
}

/// The Markdown summary of the run so far, for the pull request and the issue comment.
fn run_summary(ctx: &Ctx, tctx: &serde_json::Value) -> String {
    let mut out = String::new();
    let t = &ctx.ticket;
    let _ =
        writeln!(out, "Ticket {}: {}\n", crate::report::markdown::code(&t.id), crate::report::markdown::code(&t.title));
    let _ = writeln!(out, "| stage | kind | status |\n|---|---|---|");
    for s in ctx.plan.stages() {
        let status = tctx["stages"][&s.id]["status"].as_str().unwrap_or("pending");
        let _ = writeln!(out, "| {} | {} | {status} |", s.id, s.kind);
    }
    if let Ok((stat, _)) = ctx.workspace.diff() {
        let _ = writeln!(out, "\n{}", crate::report::markdown::fenced(&ctx.needles.mask_str(&stat)));
    }
    let _ = writeln!(out, "\nRun `{}` by lightsout.", ctx.meta.run_id);
    out
}

/// Runs a built-in kind on the host (in a blocking thread): its outputs, artifacts and summary
/// are masked and recorded like a container stage's.
async fn run_host_stage(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    tctx: &serde_json::Value,
    logs: &mpsc::Sender<Event>,
) -> Result<(BTreeMap<String, String>, Option<crate::stages::Verdict>), String> {
    let ship = if stage.kind == "ship" { Some(ship_inputs(ctx, stage, tctx)?) } else { None };
    let guard = (stage.kind == "ship").then(|| guard_rules(ctx));
    let work = {
        let ctx = Arc::clone(ctx);
        let with = stage.with.clone();
        let kind = stage.kind.clone();
        tokio::task::spawn_blocking(move || match kind.as_str() {
            "ship" => match (ship, guard) {
                (Some((params, github, summary, issue)), Some(rules)) => {
                    // One tree: what the guard judges is what ship commits.
                    let tree = ctx.workspace.change_tree()?;
                    // The graders judged the last snapshot; anything written since (by a stage
                    // that failed, or one still running) was not graded.
                    if tree != ctx.workspace.head_tree()? {
                        return Err("not shipped: the workspace holds changes that no stage's success recorded (a stage that failed or is still running wrote them), so no grader judged them".to_owned());
                    }
                    crate::stages::guard::check(&ctx.workspace, &tree, &rules, &ctx.needles)?;
                    crate::stages::ship::ship(&ctx.workspace, &tree, &params, github.as_ref(), &summary, issue)
                }
                _ => Err("ship: no parameters".into()),
            },
            "context" => crate::stages::context::assemble(
                &ctx.workspace,
                &ctx.ticket,
                &crate::stages::context::Params::from_with(&with),
            ),

            other => match crate::stages::host_grader(other) {
                Some(grader) => grader.grade(&ctx.workspace, &with),
                None => Err(format!("`{other}` does not run on the host")),
            },
        })
    };
    let result = work.await.map_err(|e| format!("the stage failed: {e}"))??;
    let dir = ctx.dir.path.join("stages").join(&stage.id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in &result.artifacts {
        std::fs::write(dir.join(name), ctx.needles.mask_str(text)).map_err(|e| format!("{name}: {e}"))?;
    }
    let summary = ctx.needles.mask_str(&result.summary);
    std::fs::write(ctx.dir.log_path(&stage.id, attempt), format!("{summary}\n")).map_err(|e| e.to_string())?;
    let _ = logs.try_send(Event::StageLog {
        stage: stage.id.clone(),
        stream: crate::events::Stream::Stdout,
        text: format!("{summary}\n"),
    });
    let outputs = result.outputs.into_iter().map(|(k, v)| (k, ctx.needles.mask_str(&v))).collect();
    let verdict = result.verdict.map(|mut v| {
        v.reasons = v.reasons.iter().map(|r| ctx.needles.mask_str(r)).collect();
        v
    });
    Ok((outputs, verdict))
}

/// What the last check before `ship` protects: see [`crate::stages::guard`].
fn guard_rules(ctx: &Ctx) -> crate::stages::guard::Rules {
    let repo_relative = |p: &Path| {
        let abs = if p.is_absolute() { p.to_path_buf() } else { ctx.meta.repo.join(ctx.meta.sub.join(p)) };
        abs.strip_prefix(&ctx.meta.repo).ok().map(|r| r.to_string_lossy().into_owned())
    };
    let mut files: Vec<String> = [Some(ctx.plan.pipeline()), ctx.meta.policy.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(repo_relative)
        .collect();
    files.sort();
    let mut tests: Vec<String> = crate::plan::DEFAULT_TEST_FILES.iter().map(|s| (*s).to_owned()).collect();
    for s in ctx.plan.stages().iter().filter(|s| s.kind == "grade.tests") {
        tests.extend(crate::stages::string_list(&s.with, "test_files"));
    }
    crate::stages::guard::Rules::new(&ctx.policy.protected_paths(), &files, &tests)
}

/// Writes a stage's output, masked, to its log file and to the observers. A log keeps at most
/// [`LOG_HEAD`] bytes from its start and [`LOG_TAIL`] from its end: what lies between is
/// dropped, and the log says where and how much, as does a warning in the run's record.
async fn write_log(
    path: &Path,
    stage: &str,
    needles: Arc<Needles>,
    chunks: &mut mpsc::Receiver<(crate::events::Stream, bytes::Bytes)>,
    logs: &mpsc::Sender<Event>,
) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| e.to_string())?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
    // One masker for both streams, in the order they arrive (the order of the log file): a
    // secret printed half on stdout and half on stderr is still one secret in the file.
    let mut masker = Masker::new(needles);
    let mut written: u64 = 0;
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut omitted: u64 = 0;
    let send = |which, bytes: &[u8]| {
        let event = Event::StageLog {
            stage: stage.to_owned(),
            stream: which,
            text: String::from_utf8_lossy(bytes).into_owned(),
        };
        // The display is best effort: a full channel drops lines rather than slowing the stage.
        let _ = logs.try_send(event);
    };
    let mut keep = async |which, safe: Vec<u8>, file: &mut tokio::fs::File| -> Result<(), String> {
        let room = usize::try_from(LOG_HEAD.saturating_sub(written)).unwrap_or(usize::MAX).min(safe.len());
        if room > 0 {
            file.write_all(&safe[..room]).await.map_err(|e| e.to_string())?;
            send(which, &safe[..room]);
            written += room as u64;
        }
        tail.extend(&safe[room..]);
        if tail.len() > LOG_TAIL {
            let excess = tail.len() - LOG_TAIL;
            tail.drain(..excess);
            omitted += excess as u64;
        }
        Ok(())
    };
    let mut last = crate::events::Stream::Stdout;
    while let Some((which, chunk)) = chunks.recv().await {
        let safe = masker.push(&chunk);
        last = which;
        if !safe.is_empty() {
            keep(which, safe, &mut file).await?;
        }
    }
    let rest = masker.finish();
    if !rest.is_empty() {
        keep(last, rest, &mut file).await?;
    }
    if omitted > 0 {
        let note = format!(
            "\n[lightsout: {omitted} bytes of output omitted here; a log keeps its first {LOG_HEAD} and last {LOG_TAIL} bytes]\n"
        );
        file.write_all(note.as_bytes()).await.map_err(|e| e.to_string())?;
        send(crate::events::Stream::Stderr, note.as_bytes());
        let message =
            format!("`{stage}`: its output was longer than a log keeps; {omitted} bytes in the middle were omitted");
        let _ = logs.send(Event::Warning { message }).await;
    }
    let (a, b) = tail.as_slices();
    file.write_all(a).await.map_err(|e| e.to_string())?;
    file.write_all(b).await.map_err(|e| e.to_string())?;
    file.sync_data().await.map_err(|e| e.to_string())
}

/// Reads `$LIGHTSOUT_OUTPUT`: a JSON object, or `key=value` lines. The file is the stage's:
/// it is read as [`untrusted`] says, and every key, value and error quoting it is masked.
async fn read_outputs(path: &Path, needles: &Needles) -> Result<BTreeMap<String, String>, String> {
    let bytes = match crate::untrusted::read_file_async(path, MAX_OUTPUT_FILE).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(BTreeMap::new()),
        Err(why) => return Err(format!("$LIGHTSOUT_OUTPUT {why}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut out = BTreeMap::new();
    if text.trim_start().starts_with('{') {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| needles.mask_str(&format!("$LIGHTSOUT_OUTPUT is not a JSON object: {e}")))?;
        for (k, v) in obj {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.insert(needles.mask_str(&k), needles.mask_str(&v));
        }
    } else {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| {
                needles.mask_str(&format!("$LIGHTSOUT_OUTPUT: `{}` is not `key=value`", line.escape_debug()))
            })?;
            out.insert(needles.mask_str(k.trim()), needles.mask_str(v));
        }
    }
    Ok(out)
}

/// Ctrl-C and SIGTERM cancel the run.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        cancel.cancel();
    });
}

/// File ownership between the host and a sandbox: when the runner is root, stages (containers
/// and bubblewrap sandboxes alike) run as an unprivileged user, so the workspace is handed to
/// that user for the run and back after.
mod ownership {
    use std::os::unix::fs::MetadataExt as _;
    use std::path::Path;

    use crate::executor::docker::FALLBACK_UID;

    /// Never follows a link; directory by directory, not by recursion (a stage chose the
    /// tree's depth).
    fn chown_tree(path: &Path, uid: u32, gid: u32) {
        let mut todo = vec![path.to_path_buf()];
        while let Some(p) = todo.pop() {
            let _ = std::os::unix::fs::lchown(&p, Some(uid), Some(gid));
            if let Ok(meta) = std::fs::symlink_metadata(&p)
                && meta.is_dir()
                && let Ok(entries) = std::fs::read_dir(&p)
            {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }

    fn is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    pub fn prepare(path: &Path) {
        if is_root() {
            chown_tree(path, FALLBACK_UID, FALLBACK_UID);
        }
    }

    pub fn restore(path: &Path, repo: &Path) {
        if is_root() {
            let (uid, gid) = std::fs::metadata(repo).map_or((0, 0), |m| (m.uid(), m.gid()));
            chown_tree(path, uid, gid);
        }
    }
}

/// The repository a run record lives in, from a directory inside it.
pub fn repo_of(dir: &Path) -> Result<PathBuf, RunError> {
    workspace::repo_root(dir).map_err(RunError::Invalid)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test set-up: a failing temp dir or write is the test failing
mod tests {
    use super::*;
    use crate::spec::factory::{PromptMode, UsageFormat};

    #[test]
    fn claude_stream_json_usage_and_cost() {
        let log = concat!(
            r#"{"type":"system","subtype":"init","session_id":"s"}"#,
            "\n",
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"done"}]}}"#,
            "\n",
            r#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.0421,"usage":{"input_tokens":12,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":85}}"#,
            "\n"
        );
        let u = usage(UsageFormat::ClaudeStreamJson, log);
        assert_eq!(u.get("tokens_in").map(String::as_str), Some("1312"));
        assert_eq!(u.get("tokens_out").map(String::as_str), Some("85"));
        assert_eq!(u.get("cost_usd").map(String::as_str), Some("0.042100"));
    }

    #[test]
    fn codex_json_events_usage_summed_over_turns() {
        let log = concat!(
            r#"{"type":"thread.started","thread_id":"t"}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":26549,"cached_input_tokens":22272,"output_tokens":1590}}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":10}}"#,
            "\n"
        );
        let u = usage(UsageFormat::CodexJson, log);
        assert_eq!(u.get("tokens_in").map(String::as_str), Some("26649"));
        assert_eq!(u.get("tokens_out").map(String::as_str), Some("1600"));
        assert!(!u.contains_key("cost_usd"));
        assert!(usage(UsageFormat::None, log).is_empty());
    }

    #[test]
    fn a_log_tail_reads_only_the_end() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("log");
        let mut text = "x".repeat(200 * 1024);
        text.push_str("\nsecond to last\nlast\n");
        std::fs::write(&path, text).expect("write");
        assert_eq!(log_tail(&path, 2), ["second to last", "last"]);
        assert_eq!(log_tail(&dir.path().join("missing"), 2), Vec::<String>::new());
    }

    #[test]
    fn agent_scripts_quote_every_word() {
        let call = |argv: &[&str], mode| crate::plan::AgentCall {
            name: "a".into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            prompt_mode: mode,
            usage: UsageFormat::None,
            prompt: String::new(),
        };
        let s = agent_script(&call(&["my agent", "--flag=$(id)"], PromptMode::Stdin));
        assert!(s.ends_with("exec 'my agent' '--flag=$(id)' < /lightsout/prompt.md"), "{s}");
        let s = agent_script(&call(&["aider", "--message-file"], PromptMode::File));
        assert!(s.contains("exec aider --message-file /lightsout/prompt.md"), "{s}");
        let s = agent_script(&call(&["tool", "{prompt_file}"], PromptMode::File));
        assert!(s.contains("exec tool /lightsout/prompt.md < /dev/null"), "{s}");
        let s = agent_script(&call(&["tool"], PromptMode::Arg));
        assert!(s.contains(r#"exec tool "$(cat /lightsout/prompt.md)""#), "{s}");
    }
}
