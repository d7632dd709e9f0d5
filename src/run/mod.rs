//! Running a plan: one owning async loop schedules ready stages up to `--jobs`, each attempt
//! runs on an executor, every fact becomes an [`Event`] that is recorded (fsynced) before the
//! loop acts on it, and observers (the display) see the same events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Outcome, RunStatus};
use crate::executor::{Ended, Executor, Job};
use crate::plan::{Access, Expect, Plan, Role, Stage, StageKind};
use crate::secrets::{Masker, Needles};
use crate::store::{Recorder, RunDir, RunMeta, RunState};
use crate::template::Mode;
use crate::ticket::Ticket;
use crate::workspace::{self, Workspace};

mod agent_loop;
mod attempt;
mod grade_tests;
mod host;
mod output;
mod ownership;
mod providers;
mod scheduler;
mod signals;
mod state;

use attempt::{clean_after, discard, mask_verdict, run_job, run_stage, scratch_of};
use grade_tests::grade_tests;
use host::run_host_stage;
use output::{MAX_DIFF_STAT, MAX_LOG_BYTES, capped_lines, log_tail, read_outputs, write_log};
use providers::secret_values;
use scheduler::{Action, Done, End, Msg, Scheduler};
use signals::spawn_signal_handler;
use state::{RunEnv, save_patch, snapshot, template_ctx};

/// Choices the user makes for a run.
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    pub keep_workspace: bool,
    pub base: String,
    pub observers: Observers,
}

/// The sinks the CLI builds to show a run (a terminal, JSON lines), once the plan is known: a
/// resumed run's plan is in its record. The run puts its recorder before them.
pub type Observers = Box<dyn FnOnce(&Plan) -> Vec<Box<dyn crate::events::Sink>> + Send>;

/// Why a run could not be carried out (as opposed to a stage failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input is wrong (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// Docker, git or the file system failed (exit 3).
    #[error("{0}")]
    Infra(String),
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
        Role::Grader => stage.kind.grader_command(),
        _ => None,
    }
}

/// Refuses a plan with stage kinds this engine does not run yet, before anything starts.
pub fn check_runnable(plan: &Plan) -> Result<(), RunError> {
    let missing: Vec<String> = plan
        .stages()
        .iter()
        .filter(|s| {
            !s.kind.runnable()
                || (command_of(s).is_none() && !s.kind.on_host() && s.agent.is_none() && s.role != Role::Approve)
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

/// Everything a run needs while it runs.
struct Ctx {
    plan: Plan,
    ticket: Ticket,
    meta: RunMeta,
    dir: RunDir,
    workspace: Workspace,
    executor: Box<dyn Executor>,
    needles: Arc<Needles>,
    secrets: BTreeMap<String, String>,
    /// The policy in force, enforced again before each stage starts.
    policy: crate::policy::Policy,
}

/// Starts a new run of `plan` for `ticket` in the repository holding `repo`.
pub async fn start(
    repo: &Path,
    plan: Plan,
    ticket: Ticket,
    executor: Box<dyn Executor>,
    opts: Options,
    policy: crate::policy::Policy,
) -> Result<Finished, RunError> {
    check_runnable(&plan)?;
    let factory_dir = std::fs::canonicalize(repo).map_err(|e| RunError::Invalid(format!("{}: {e}", repo.display())))?;
    let repo = workspace::repo_root(repo).map_err(|e| RunError::Invalid(e.to_string()))?;
    let repo = std::fs::canonicalize(&repo).unwrap_or(repo);
    let sub = factory_dir.strip_prefix(&repo).map(Path::to_path_buf).unwrap_or_default();
    let base = workspace::resolve(&repo, &opts.base).map_err(|e| RunError::Invalid(e.to_string()))?;
    executor.sweep_orphans(&crate::store::runner_alive).await.map_err(RunError::Infra)?;
    let run_id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let dir =
        RunDir::create(&repo, &run_id).map_err(|e| RunError::Infra(format!("cannot create the run record: {e}")))?;
    let workspace = Workspace::create(&repo, &run_id, &base, &sub).map_err(|e| RunError::Infra(e.to_string()))?;
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
    let mut opening = vec![first];
    opening.extend(uncommitted_warning(&repo, &meta.base).map(|message| Event::Warning { message }));
    let ctx = Ctx { plan, ticket, meta, dir, workspace, executor, needles, secrets, policy };
    drive(ctx, RunState::default(), opening, opts.observers).await
}

/// The one rule for what a run takes from where, said when the working tree holds changes
/// that are not committed: configuration (the factory, pipelines, policy, prompts) is what the
/// working tree has now; code (what stages see, what images are built from) is the base
/// revision's.
fn uncommitted_warning(repo: &Path, base: &str) -> Option<String> {
    const SHOWN: usize = 10;
    let files = workspace::uncommitted(repo).ok().filter(|f| !f.is_empty())?;
    let mut named: String =
        files.iter().take(SHOWN).map(|f| format!("`{}`", f.escape_debug())).collect::<Vec<_>>().join(", ");
    if files.len() > SHOWN {
        let _ = write!(named, " and {} more", files.len() - SHOWN);
    }
    Some(format!(
        "uncommitted changes in the working tree: {named}. Configuration (factory.yaml, pipelines, policy, prompts) is read from the working tree; code is taken from the base revision {}: stages do not see these changes; commit them for a run to use them",
        &base[..12.min(base.len())]
    ))
}

/// Continues a run whose runner died, from the stages that had not completed.
pub async fn resume(
    repo: &Path,
    run_id: &str,
    executor_for: impl FnOnce(&str) -> Result<Box<dyn Executor>, RunError>,
    policy_for: PolicyLoader<'_>,
    observers: Observers,
) -> Result<Finished, RunError> {
    resume_with(repo, run_id, executor_for, policy_for, observers, None).await
}

/// Reads a policy file as it is now (the compiler's job, handed in by the CLI): a tightened
/// policy binds a resumed run.
pub type PolicyLoader<'a> = &'a dyn Fn(&Path) -> Result<crate::policy::Policy, String>;

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
    executor_for: impl FnOnce(&str) -> Result<Box<dyn Executor>, RunError>,
    policy_for: PolicyLoader<'_>,
    observers: Observers,
    decision: Option<Decision>,
) -> Result<Finished, RunError> {
    let repo = workspace::repo_root(repo).map_err(|e| RunError::Invalid(e.to_string()))?;
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
    let load = |path: &Path| policy_for(path).map_err(RunError::Invalid);
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
        if !plan.has_kind(grader) {
            return Err(RunError::Invalid(format!(
                "the recorded plan of run `{run_id}` has no `{grader}` stage, which policy requires for `{}` ({rule}); it was edited since the run started, and does not continue",
                plan.category()
            )));
        }
    }
    let executor = executor_for(&meta.executor)?;
    executor.sweep_orphans(&crate::store::runner_alive).await.map_err(RunError::Infra)?;
    dir.claim().map_err(|e| RunError::Infra(e.to_string()))?;
    let workspace =
        Workspace::open(&repo, &meta.workspace, &meta.base, &meta.sub).map_err(|e| RunError::Infra(e.to_string()))?;
    // Back to the state after the last stage that completed: anything a stage wrote before
    // the runner died is dropped, and that stage runs again.
    let snapshot = state.snapshot.clone().unwrap_or_else(|| meta.base.clone());
    workspace.restore(&snapshot).map_err(|e| RunError::Infra(e.to_string()))?;
    // Secrets are read from this process's environment: a stage after a gate gets them from
    // whoever continues the run, never before.
    let secrets = secret_values(&plan);

    let needles = Arc::new(Needles::new(secrets.values().map(String::as_str)));
    let ctx = Ctx { plan, ticket, meta, dir, workspace, executor, needles, secrets, policy };
    let mut first = vec![Event::RunResumed { pid: std::process::id() }];
    first.extend(first_decision);
    drive(ctx, state, first, observers).await
}

/// The owning loop: the async shell around the [`Scheduler`]. It records what the scheduler
/// says (fsynced before it acts), runs the attempts it starts, and tells it what happened.
async fn drive(ctx: Ctx, state: RunState, first: Vec<Event>, observers: Observers) -> Result<Finished, RunError> {
    let ctx = Arc::new(ctx);
    let recorder = Recorder::open(&ctx.dir).map_err(|e| RunError::Infra(format!("cannot open the event log: {e}")))?;
    let mut sinks: Vec<Box<dyn crate::events::Sink>> = vec![Box::new(recorder)];
    sinks.extend(observers(&ctx.plan));
    let needles = Arc::clone(&ctx.needles);
    let mut fanout = crate::events::Fanout::new(Box::new(move |t: &str| needles.mask_str(t)), sinks);
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    // Stages never run as root: when the runner is, the workspace is the stages' user's.
    ownership::prepare(&ctx.workspace.dir);

    let plan = ctx.plan.clone();
    let mut sched = Scheduler::new(&plan, state, ctx.meta.jobs, ctx.meta.keep_going);
    let env = RunEnv(&ctx);
    let mut record = |e: &Event| fanout.send(e.clone()).map_err(RunError::Infra);
    let mut running: JoinSet<Done> = JoinSet::new();
    let (log_tx, mut log_rx) = mpsc::channel::<Event>(256);
    let mut act = |actions: Vec<Action>, sched: &Scheduler<'_>, running: &mut JoinSet<Done>| -> Result<(), RunError> {
        for a in actions {
            match a {
                Action::Record(e) => {
                    if let Event::StageSkipped { stage, reason } = &e {
                        tracing::debug!(target: "lightsout::scheduler", stage = %stage, reason = %reason, "skip");
                    }
                    record(&e)?;
                }
                Action::Start { index, attempt, delay } => {
                    tracing::debug!(target: "lightsout::scheduler", stage = %plan.stages()[index].id, attempt, delay_ms = delay.as_millis(), "start");
                    let tctx = template_ctx(&ctx, &sched.state, &plan.stages()[index].id);
                    let task = run_stage(Arc::clone(&ctx), index, attempt, tctx, log_tx.clone(), cancel.clone());
                    running.spawn(async move {
                        tokio::time::sleep(delay).await;
                        task.await
                    });
                }
                Action::SavePatch { index, attempt } => save_patch(&ctx, index, attempt),
                Action::Stop => {
                    tracing::debug!(target: "lightsout::scheduler", "fail-fast: stopping what runs");
                    cancel.cancel();
                }
            }
        }
        Ok(())
    };
    let mut opening = first;
    if !ctx.executor.sandboxed() {
        opening.push(Event::Warning { message: "stages run as plain processes on the host, without a sandbox".into() });
    }
    for e in opening {
        let actions = sched.on(Msg::Observed(e), &env);
        act(actions, &sched, &mut running)?;
    }
    loop {
        if cancel.is_cancelled() {
            sched.on(Msg::Cancel, &env);
        }
        let actions = sched.on(Msg::Step, &env);
        act(actions, &sched, &mut running)?;
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(log) = log_rx.recv() => {
                let actions = sched.on(Msg::Observed(log), &env);
                act(actions, &sched, &mut running)?;
            }
            Some(joined) = running.join_next() => {
                // Take every attempt that has ended by now, so that one workspace snapshot
                // covers them all (a snapshot is a git commit: not free).
                let mut dones = vec![joined.map_err(|e| RunError::Infra(format!("a stage task failed: {e}")))?];
                while let Some(more) = running.try_join_next() {
                    dones.push(more.map_err(|e| RunError::Infra(format!("a stage task failed: {e}")))?);
                }
                // The logs the tasks sent before they ended come first.
                while let Ok(log) = log_rx.try_recv() {
                    let actions = sched.on(Msg::Observed(log), &env);
                    act(actions, &sched, &mut running)?;
                }
                let snapshot = snapshot(&ctx, &mut dones).await;
                // Verdicts feed the agent loop's feedback, and so the agent's next prompt.
                for d in &mut dones {
                    d.verdict = d.verdict.take().map(|v| mask_verdict(&ctx.needles, v));
                }
                if cancel.is_cancelled() {
                    sched.on(Msg::Cancel, &env);
                }
                let actions = sched.on(Msg::Ended { dones, snapshot }, &env);
                act(actions, &sched, &mut running)?;
            }
        }
    }

    let (end, actions) = sched.end();
    act(actions, &sched, &mut running)?;
    finish(&ctx, end, fanout).await
}

/// The end of a run: the executor's leftovers removed, the workspace's change recorded, the
/// last event, the sinks closed.
async fn finish(ctx: &Ctx, end: End, mut fanout: crate::events::Fanout) -> Result<Finished, RunError> {
    let mut emit = |e: Event| fanout.send(e).map_err(RunError::Infra);
    let (status, fault) = match end {
        End::AwaitingApproval => {
            emit(Event::RunFinished { status: RunStatus::AwaitingApproval, diff_stat: None })?;
            fanout.close().await;
            return Ok(Finished { run_id: ctx.meta.run_id.clone(), status: RunStatus::AwaitingApproval, fault: false });
        }
        End::Over { status, fault } => (status, fault),
    };
    if let Err(e) = ctx.executor.remove_run(&ctx.meta.run_id).await {
        emit(Event::Warning { message: e })?;
    }
    ownership::restore(&ctx.workspace.dir, &ctx.meta.repo);
    let diff_stat = match ctx.workspace.diff() {
        Ok((stat, patch)) => {
            let _ = ctx.dir.write_text("diff.patch", &ctx.needles.mask_str(&patch));
            // File names are the stage's: masked like its output.
            Some(ctx.needles.mask_str(&capped_lines(&stat, MAX_DIFF_STAT)))
        }
        Err(_) => None,
    };
    emit(Event::RunFinished { status, diff_stat })?;
    if !ctx.meta.keep_workspace {
        let _ = ctx.workspace.remove();
    }
    fanout.close().await;
    Ok(Finished { run_id: ctx.meta.run_id.clone(), status, fault })
}

/// The repository a run record lives in, from a directory inside it.
pub fn repo_of(dir: &Path) -> Result<PathBuf, RunError> {
    workspace::repo_root(dir).map_err(|e| RunError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
