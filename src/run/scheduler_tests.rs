//! The scheduler against a fake executor: attempts end as a script says, in the order they
//! started, with no container, sandbox or workspace. What only real executors can show stays
//! in the end-to-end tests.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::*;
use crate::plan::{AgentCall, Expect, Limits, Loop, PromptMode, Stage, StageKind, UsageFormat};

fn stage(id: &str, needs: &[&str]) -> Stage {
    Stage {
        id: id.to_owned(),
        kind: StageKind::Run,
        role: Role::Command,
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        condition: None,
        run: Some("true".to_owned()),
        image: None,
        env: indexmap::IndexMap::new(),
        secrets: Vec::new(),
        network: Vec::new(),
        timeout_secs: 60,
        retries: 0,
        expect: Expect::Success,
        repeat: None,
        outputs: Vec::new(),
        resources: Limits { memory_bytes: 1 << 30, cpus: 1.0, pids: 256 },
        workspace: Access::ReadOnly,
        secret_sources: BTreeMap::new(),
        agent: None,
    }
}

fn agent(id: &str, until: &[&str], max_attempts: u32) -> Stage {
    Stage {
        kind: StageKind::Agent(crate::plan::kind::Agent { agent: "fake".into(), ..Default::default() }),
        role: Role::Agent,
        run: None,
        workspace: Access::ReadWrite,
        repeat: Some(Loop { until: until.iter().map(|u| (*u).to_owned()).collect(), max_attempts }),
        agent: Some(AgentCall {
            name: "fake".into(),
            argv: vec!["fake".into()],
            prompt_mode: PromptMode::Stdin,
            usage: UsageFormat::None,
            prompt: String::new(),
        }),
        ..stage(id, &[])
    }
}

fn grader(id: &str, needs: &[&str]) -> Stage {
    Stage {
        kind: StageKind::Command(crate::plan::kind::Command { command: "true".into() }),
        role: Role::Grader,
        run: None,
        ..stage(id, needs)
    }
}

#[expect(clippy::expect_used, reason = "a test's own plan is a DAG")]
fn plan(stages: Vec<Stage>) -> Plan {
    Plan::seal("f".into(), "bugfix".into(), "p.yaml".into(), stages, BTreeMap::new()).expect("a DAG")
}

/// Conditions by stage id; everything else as a run would have it.
#[derive(Default)]
struct FakeEnv {
    conditions: HashMap<String, Result<bool, String>>,
    ids: Vec<String>,
}

impl Env for FakeEnv {
    fn condition(&self, stage: usize, _: &RunState) -> Result<bool, String> {
        self.conditions.get(&self.ids[stage]).cloned().unwrap_or(Ok(true))
    }
    fn approval_message(&self, _: usize, _: &RunState) -> String {
        "approve?".into()
    }
    fn unit_name(&self, _: usize, _: u32) -> Option<String> {
        None
    }
    fn log_tail(&self, stage: &str, attempt: u32) -> Vec<String> {
        vec![format!("{stage} log of attempt {attempt}")]
    }
}

/// The fake executor: each started attempt ends, first started first, as `script` says for
/// (stage, attempt), else it succeeds. `cancel_after` ends that many attempts, then cancels.
struct Fake {
    plan: Plan,
    env: FakeEnv,
    script: HashMap<(String, u32), Outcome>,
    jobs: usize,
    keep_going: bool,
    cancel_after: Option<usize>,
    state: RunState,
}

/// What a fake run did: every action in order, and how it ended.
struct Ran {
    actions: Vec<Action>,
    end: End,
    state: RunState,
}

impl Ran {
    fn events(&self) -> Vec<&Event> {
        self.actions.iter().filter_map(|a| if let Action::Record(e) = a { Some(e) } else { None }).collect()
    }
    /// The attempts started, as `stage#attempt`, in order.
    fn started(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::StageStarted { stage, attempt, .. } => Some(format!("{stage}#{attempt}")),
                _ => None,
            })
            .collect()
    }
    fn skipped(&self, id: &str) -> Option<String> {
        self.state.stages.get(id).and_then(|s| s.skipped.clone())
    }
    fn outcome(&self, id: &str) -> Option<Outcome> {
        self.state.stages.get(id).and_then(|s| s.outcome)
    }
}

impl Fake {
    fn new(stages: Vec<Stage>) -> Fake {
        let ids = stages.iter().map(|s| s.id.clone()).collect();
        Fake {
            plan: plan(stages),
            env: FakeEnv { ids, ..FakeEnv::default() },
            script: HashMap::new(),
            jobs: 4,
            keep_going: false,
            cancel_after: None,
            state: RunState::default(),
        }
    }
    fn ends(mut self, stage: &str, attempt: u32, outcome: Outcome) -> Fake {
        self.script.insert((stage.to_owned(), attempt), outcome);
        self
    }
    fn run(self) -> Ran {
        let mut sched = Scheduler::new(&self.plan, self.state.clone(), self.jobs, self.keep_going);
        let mut actions = Vec::new();
        let mut running: VecDeque<(usize, u32)> = VecDeque::new();
        let mut ended = 0;
        let mut take = |new: Vec<Action>, running: &mut VecDeque<(usize, u32)>| {
            for a in &new {
                if let Action::Start { index, attempt, .. } = a {
                    running.push_back((*index, *attempt));
                }
            }
            actions.extend(new);
        };
        for _ in 0..1000 {
            if self.cancel_after == Some(ended) {
                sched.on(Msg::Cancel, &self.env);
            }
            take(sched.on(Msg::Step, &self.env), &mut running);
            let Some((index, attempt)) = running.pop_front() else { break };
            let id = &self.plan.stages()[index].id;
            let outcome = self.script.get(&(id.clone(), attempt)).copied().unwrap_or(Outcome::Succeeded);
            let done = Done {
                index,
                attempt,
                outcome,
                exit_code: Some(i64::from(outcome != Outcome::Succeeded)),
                reason: format!("{outcome:?}"),
                duration: Duration::ZERO,
                outputs: BTreeMap::new(),
                verdict: None,
            };
            ended += 1;
            take(sched.on(Msg::Ended { dones: vec![done], snapshot: None }, &self.env), &mut running);
        }
        let (end, more) = sched.end();
        actions.extend(more);
        Ran { actions, end, state: sched.state }
    }
}

const FAILED: Outcome = Outcome::Failed;
const SUCCEEDED: RunStatus = RunStatus::Succeeded;

#[test]
fn needs_order_the_attempts_and_a_failed_need_skips_its_dependants() {
    let ran = Fake::new(vec![stage("a", &[]), stage("b", &["a"]), stage("c", &["b"])]).run();
    assert_eq!(ran.started(), ["a#1", "b#1", "c#1"]);
    assert_eq!(ran.end, End::Over { status: SUCCEEDED, fault: false });

    let mut fake = Fake::new(vec![stage("a", &[]), stage("b", &["a"]), stage("c", &["b"]), stage("d", &[])]);
    fake.keep_going = true;
    let ran = fake.ends("a", 1, FAILED).run();
    assert!(!ran.started().contains(&"b#1".to_owned()));
    assert_eq!(ran.skipped("b").as_deref(), Some("`a` did not succeed"));
    assert_eq!(ran.skipped("c").as_deref(), Some("`b` did not succeed"));
    assert_eq!(ran.outcome("d"), Some(Outcome::Succeeded), "--keep-going runs what does not depend on it");
    assert_eq!(ran.end, End::Over { status: RunStatus::Failed, fault: false });
}

#[test]
fn independent_stages_start_together_up_to_the_jobs_limit() {
    let stages = vec![stage("a", &[]), stage("b", &[]), stage("c", &[]), stage("d", &["a", "b", "c"])];
    let mut fake = Fake::new(stages.clone());
    fake.jobs = 2;
    let ran = fake.run();
    let first_starts: Vec<usize> = ran
        .actions
        .iter()
        .take_while(|a| !matches!(a, Action::Record(Event::StageFinished { .. })))
        .filter(|a| matches!(a, Action::Start { .. }))
        .map(|a| if let Action::Start { index, .. } = a { *index } else { 99 })
        .collect();
    assert_eq!(first_starts, [0, 1], "two at once with two jobs");
    assert_eq!(ran.started().last().map(String::as_str), Some("d#1"));
    let ran = Fake::new(stages).run();
    assert_eq!(ran.started()[..3], ["a#1", "b#1", "c#1"]);
}

#[test]
fn a_false_condition_skips_and_a_broken_one_fails() {
    let mut fake =
        Fake::new(vec![Stage { condition: Some("x".into()), ..stage("a", &[]) }, stage("b", &["a"]), stage("c", &[])]);
    fake.env.conditions.insert("a".into(), Ok(false));
    let ran = fake.run();
    assert_eq!(ran.skipped("a").as_deref(), Some("`if: x` is false"));
    assert_eq!(ran.skipped("b").as_deref(), Some("`a` did not succeed"));
    assert_eq!(ran.started(), ["c#1"]);

    let mut fake = Fake::new(vec![Stage { condition: Some("x".into()), ..stage("a", &[]) }]);
    fake.env.conditions.insert("a".into(), Err("undefined".into()));
    let ran = fake.run();
    assert_eq!(ran.outcome("a"), Some(FAILED));
    assert!(ran.started().is_empty());
}

#[test]
fn faults_are_retried_with_a_doubling_backoff_and_failures_are_not() {
    let ran = Fake::new(vec![Stage { retries: 2, ..stage("a", &[]) }])
        .ends("a", 1, Outcome::Fault)
        .ends("a", 2, Outcome::Fault)
        .run();
    let delays: Vec<Duration> = ran
        .actions
        .iter()
        .filter_map(|a| if let Action::Start { delay, .. } = a { Some(*delay) } else { None })
        .collect();
    assert_eq!(delays, [Duration::ZERO, RETRY_BACKOFF, RETRY_BACKOFF * 2]);
    assert_eq!(ran.outcome("a"), Some(Outcome::Succeeded));

    let ran = Fake::new(vec![Stage { retries: 2, ..stage("a", &[]) }]).ends("a", 1, FAILED).run();
    assert_eq!(ran.started(), ["a#1"], "a failure of the stage itself is not retried");
    let ran = Fake::new(vec![Stage { retries: 1, ..stage("a", &[]) }])
        .ends("a", 1, Outcome::Fault)
        .ends("a", 2, Outcome::Fault)
        .run();
    assert_eq!(ran.started(), ["a#1", "a#2"]);
    assert_eq!(ran.end, End::Over { status: RunStatus::Failed, fault: true });
}

#[test]
fn the_first_failure_stops_the_run_and_skips_what_never_ran() {
    let mut fake = Fake::new(vec![stage("a", &[]), stage("b", &[]), stage("c", &["a"])]);
    fake.jobs = 1;
    let ran = fake.ends("a", 1, FAILED).run();
    assert!(ran.actions.contains(&Action::Stop));
    assert_eq!(ran.started(), ["a#1"]);
    let why = "stopped after `a` failed (fail-fast; --keep-going runs the rest)";
    assert_eq!(ran.skipped("b").as_deref(), Some(why));
    assert_eq!(ran.end, End::Over { status: RunStatus::Failed, fault: false });
}

#[test]
#[expect(clippy::expect_used, reason = "the test fails when there is no restart")]
fn the_agent_loop_runs_again_with_the_graders_feedback_until_they_pass() {
    let stages = || vec![agent("fix", &["tests"], 3), grader("tests", &["fix"]), stage("ship", &["tests"])];
    let ran = Fake::new(stages()).ends("tests", 1, FAILED).run();
    assert_eq!(ran.started(), ["fix#1", "tests#1", "fix#2", "tests#2", "ship#1"]);
    assert!(!ran.actions.contains(&Action::Stop), "a loop grader's failure does not stop the run");
    let feedback = ran.events().into_iter().find_map(|e| match e {
        Event::LoopRestarted { stage, attempt, feedback, .. } => Some((stage.clone(), *attempt, feedback.clone())),
        _ => None,
    });
    let (stage, attempt, feedback) = feedback.expect("a restart");
    assert_eq!((stage.as_str(), attempt), ("fix", 2));
    assert!(feedback.contains("tests log of attempt 1"), "{feedback}");
    let patches = ran.actions.iter().filter(|a| matches!(a, Action::SavePatch { index: 0, .. })).count();
    assert_eq!(patches, 2, "each agent attempt's change is kept");
    assert_eq!(ran.end, End::Over { status: SUCCEEDED, fault: false });

    let ran = Fake::new(stages()).ends("tests", 1, FAILED).ends("tests", 2, FAILED).ends("tests", 3, FAILED).run();
    assert_eq!(ran.started(), ["fix#1", "tests#1", "fix#2", "tests#2", "fix#3", "tests#3"]);
    assert_eq!(ran.skipped("ship").as_deref(), Some("`tests` did not succeed"));
    assert_eq!(ran.end, End::Over { status: RunStatus::Failed, fault: false });
}

#[test]
fn a_gate_asks_once_and_the_run_waits_for_a_person() {
    let gate = Stage {
        kind: StageKind::Approve(crate::plan::kind::Approve::default()),
        role: Role::Approve,
        run: None,
        ..stage("gate", &["a"])
    };
    let ran = Fake::new(vec![stage("a", &[]), gate, stage("ship", &["gate"])]).run();
    assert_eq!(ran.started(), ["a#1"]);
    let asked = ran.events().into_iter().filter(|e| matches!(e, Event::ApprovalRequested { .. })).count();
    assert_eq!(asked, 1);
    assert_eq!(ran.end, End::AwaitingApproval);
    assert!(ran.skipped("ship").is_none(), "what follows the gate waits, it is not skipped");
}

#[test]
fn a_cancel_starts_nothing_new_and_the_run_is_cancelled() {
    let mut fake = Fake::new(vec![stage("a", &[]), stage("b", &["a"])]);
    fake.cancel_after = Some(1);
    let ran = fake.run();
    assert_eq!(ran.started(), ["a#1"]);
    assert_eq!(ran.skipped("b").as_deref(), Some("the run was cancelled"));
    assert_eq!(ran.end, End::Over { status: RunStatus::Cancelled, fault: false });
}

#[test]
fn a_resumed_run_starts_from_what_had_not_completed() {
    let stages = vec![stage("a", &[]), stage("b", &["a"]), stage("c", &["b"])];
    let before = [
        Event::StageStarted { stage: "a".into(), attempt: 1, on: None },
        super::super::state::finished("a", 1, Outcome::Succeeded, Some(0), "ok".into()),
        // `b` was running when its runner died.
        Event::StageStarted { stage: "b".into(), attempt: 1, on: None },
    ];
    let mut fake = Fake::new(stages);
    fake.state = RunState::fold(before.iter());
    let ran = fake.run();
    assert_eq!(ran.started(), ["b#2", "c#1"]);
    assert_eq!(ran.end, End::Over { status: SUCCEEDED, fault: false });
}
