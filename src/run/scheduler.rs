//! The scheduler: a synchronous state machine. It is told what happened ([`Msg`]) and answers
//! with what to do ([`Action`]), in order: events to record (the shell records each, fsynced,
//! before it carries out the actions after it) and attempts to start. It owns the run's state,
//! folded from the events it emits and is told of, and decides needs, `if`, retries, the agent
//! loop, gates, fail-fast and cancellation. It does no I/O: what it must read (a condition's
//! value, a gate's message, a grader's log) it asks of its [`Env`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::events::{Event, Outcome, RunStatus};
use crate::plan::{Access, Plan, Role};
use crate::store::{RunState, StageState};

/// First delay before retrying an infrastructure fault; doubles each time.
pub(super) const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// What the scheduler reads from the run around it.
pub(super) trait Env {
    /// The value of a stage's `if:` for the run's state.
    fn condition(&self, stage: usize, state: &RunState) -> Result<bool, String>;
    /// The message a gate shows, rendered and masked.
    fn approval_message(&self, stage: usize, state: &RunState) -> String;
    /// Where an attempt runs (a container's name), for the record.
    fn unit_name(&self, stage: usize, attempt: u32) -> Option<String>;
    /// The last lines of an attempt's log, for the agent loop's feedback.
    fn log_tail(&self, stage: &str, attempt: u32) -> Vec<String>;
}

/// How one attempt ended, as its task reports it.
#[derive(Clone, Debug)]
pub(super) struct Done {
    pub index: usize,
    pub attempt: u32,
    pub outcome: Outcome,
    pub exit_code: Option<i64>,
    pub reason: String,
    pub duration: Duration,
    pub outputs: BTreeMap<String, String>,
    pub verdict: Option<crate::stages::Verdict>,
}

/// What happened.
pub(super) enum Msg {
    /// Decide what can start (after anything else, and when the run begins).
    Step,
    /// An event from outside the scheduler (a stage's log, an egress decision, a resume).
    Observed(Event),
    /// Attempts that ended, with the snapshot taken of what the writers among them left.
    Ended { dones: Vec<Done>, snapshot: Option<String> },
    /// The user asked the run to stop.
    Cancel,
}

/// What to do, in order.
#[derive(Debug, PartialEq)]
pub(super) enum Action {
    /// Record the event (the scheduler has applied it to its state already).
    Record(Event),
    /// Start attempt `attempt` of stage `index`, after `delay`.
    Start { index: usize, attempt: u32, delay: Duration },
    /// Keep the workspace's change after an agent attempt, as that attempt's patch.
    SavePatch { index: usize, attempt: u32 },
    /// Stop what is running (fail-fast).
    Stop,
}

/// How the run ends, once nothing runs.
#[derive(Debug, PartialEq)]
pub(super) enum End {
    /// Stopped at a gate: the run waits for `approve` or `reject`.
    AwaitingApproval,
    /// Over; `fault` when a stage failed for an infrastructure fault.
    Over { status: RunStatus, fault: bool },
}

pub(super) struct Scheduler<'p> {
    plan: &'p Plan,
    pub(super) state: RunState,
    in_flight: Vec<bool>,
    running: usize,
    stop_reason: Option<String>,
    cancelled: bool,
    jobs: usize,
    keep_going: bool,
}

impl<'p> Scheduler<'p> {
    pub(super) fn new(plan: &'p Plan, state: RunState, jobs: usize, keep_going: bool) -> Scheduler<'p> {
        let n = plan.stages().len();
        Scheduler {
            plan,
            state,
            in_flight: vec![false; n],
            running: 0,
            stop_reason: None,
            cancelled: false,
            jobs: jobs.max(1),
            keep_going,
        }
    }

    /// Whether the run is stopping (fail-fast or cancelled): nothing new starts.
    pub(super) fn stopping(&self) -> bool {
        self.cancelled || self.stop_reason.is_some()
    }

    pub(super) fn on(&mut self, msg: Msg, env: &dyn Env) -> Vec<Action> {
        let mut out = Vec::new();
        match msg {
            Msg::Step => self.step(env, &mut out),
            Msg::Observed(e) => self.emit(e, &mut out),
            Msg::Ended { dones, snapshot } => self.ended(dones, snapshot.as_ref(), env, &mut out),
            Msg::Cancel => self.cancelled = true,
        }
        out
    }

    fn emit(&mut self, e: Event, out: &mut Vec<Action>) {
        self.state.apply(&e);
        out.push(Action::Record(e));
    }

    fn settled(&self, id: &str) -> bool {
        self.state.stages.get(id).is_some_and(StageState::settled)
    }

    /// Starts what can start; settles stages whose needs failed or whose `if` is false; asks at
    /// gates. Goes round again while that unblocks others and nothing runs.
    fn step(&mut self, env: &dyn Env, out: &mut Vec<Action>) {
        let stages = self.plan.stages();
        while !self.stopping() {
            let mut progress = false;
            for (i, s) in stages.iter().enumerate() {
                if self.in_flight[i] || self.settled(&s.id) {
                    continue;
                }
                if !s.needs.iter().all(|n| self.settled(n)) {
                    continue;
                }
                let failed_need = s.needs.iter().find(|n| {
                    self.state
                        .stages
                        .get(n.as_str())
                        .is_some_and(|n| n.skipped.is_some() || n.outcome != Some(Outcome::Succeeded))
                });
                if let Some(bad) = failed_need {
                    let reason = format!("`{bad}` did not succeed");
                    self.emit(Event::StageSkipped { stage: s.id.clone(), reason }, out);
                    progress = true;
                    continue;
                }
                if let Some(cond) = &s.condition {
                    match env.condition(i, &self.state) {
                        Ok(true) => {}
                        Ok(false) => {
                            let reason = format!("`if: {cond}` is false");
                            self.emit(Event::StageSkipped { stage: s.id.clone(), reason }, out);
                            progress = true;
                            continue;
                        }
                        Err(e) => {
                            let reason = format!("`if: {cond}` failed: {e}");
                            self.emit(super::state::finished(&s.id, 1, Outcome::Failed, None, reason), out);
                            progress = true;
                            continue;
                        }
                    }
                }
                if s.role == Role::Approve {
                    if !self.state.stages.get(&s.id).is_some_and(|st| st.awaiting) {
                        let message = env.approval_message(i, &self.state);
                        self.emit(Event::ApprovalRequested { stage: s.id.clone(), message }, out);
                    }
                    continue;
                }
                if self.running >= self.jobs {
                    return;
                }
                let attempt = self.state.stages.get(&s.id).map_or(0, |st| st.attempts) + 1;
                self.start(i, attempt, Duration::ZERO, env, out);
            }
            // Stages settled without running may unblock others: go round again.
            if !progress || self.running > 0 {
                return;
            }
        }
    }

    fn start(&mut self, index: usize, attempt: u32, delay: Duration, env: &dyn Env, out: &mut Vec<Action>) {
        let stage = self.plan.stages()[index].id.clone();
        self.emit(Event::StageStarted { stage, attempt, on: env.unit_name(index, attempt) }, out);
        self.in_flight[index] = true;
        self.running += 1;
        out.push(Action::Start { index, attempt, delay });
    }

    fn ended(&mut self, dones: Vec<Done>, snapshot: Option<&String>, env: &dyn Env, out: &mut Vec<Action>) {
        let stages = self.plan.stages();
        for done in dones {
            let s = &stages[done.index];
            self.in_flight[done.index] = false;
            self.running = self.running.saturating_sub(1);
            if s.agent.is_some() && done.outcome.is_success() {
                out.push(Action::SavePatch { index: done.index, attempt: done.attempt });
            }
            let retry = done.outcome == Outcome::Fault && done.attempt <= s.retries && !self.stopping();
            let wrote = done.outcome.is_success() && s.workspace == Access::ReadWrite;
            self.emit(
                Event::StageFinished {
                    stage: s.id.clone(),
                    attempt: done.attempt,
                    outcome: done.outcome,
                    exit_code: done.exit_code,
                    reason: done.reason,
                    duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
                    outputs: done.outputs,
                    snapshot: if wrote { snapshot.cloned() } else { None },
                    retrying: retry,
                    verdict: done.verdict,
                },
                out,
            );
            if retry {
                // The next attempt waits out its backoff in its own task, not in the loop.
                let delay = RETRY_BACKOFF * 2u32.saturating_pow(done.attempt - 1);
                self.start(done.index, done.attempt + 1, delay, env, out);
            } else if !done.outcome.is_success()
                && !self.keep_going
                && self.stop_reason.is_none()
                && done.outcome != Outcome::Cancelled
                && !super::agent_loop::is_loop_grader(stages, &s.id)
            {
                self.stop_reason =
                    Some(format!("stopped after `{}` failed (fail-fast; --keep-going runs the rest)", s.id));
                out.push(Action::Stop);
            }
        }
        if !self.stopping() {
            let tail = |stage: &str, attempt: u32| env.log_tail(stage, attempt);
            for restart in super::agent_loop::loop_restarts(self.plan, &self.state, &tail) {
                self.emit(restart, out);
            }
        }
    }

    /// Once nothing runs: how the run ends, and the events that end it (stages that never ran
    /// are skipped, with why). The run's last event, `RunFinished`, is the shell's.
    pub(super) fn end(&mut self) -> (End, Vec<Action>) {
        let mut out = Vec::new();
        let stages = self.plan.stages();
        let waiting = stages.iter().any(|s| self.state.stages.get(&s.id).is_some_and(|st| st.awaiting));
        if waiting && !self.stopping() {
            return (End::AwaitingApproval, out);
        }
        let reason = self.stop_reason.clone().unwrap_or_else(|| "the run was cancelled".to_owned());
        for s in stages {
            if !self.settled(&s.id) {
                self.emit(Event::StageSkipped { stage: s.id.clone(), reason: reason.clone() }, &mut out);
            }
        }
        let outcome = |s: &crate::plan::Stage| self.state.stages.get(&s.id).and_then(|st| st.outcome);
        let failed = stages.iter().any(|s| outcome(s).is_some_and(|o| !o.is_success()));
        let fault = stages.iter().any(|s| outcome(s) == Some(Outcome::Fault));
        let status = if self.cancelled && self.stop_reason.is_none() {
            RunStatus::Cancelled
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        (End::Over { status, fault }, out)
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
