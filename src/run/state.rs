//! What the run knows of its stages, as the scheduler and templates use it: the template
//! context of a stage (ticket, inputs, earlier stages' outputs, attempt, feedback), where an
//! attempt runs, and the events of stages that end without running.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{Ctx, log_tail};
use crate::events::{Event, Outcome};
use crate::plan::{Access, StageKind};
use crate::store::RunState;
use crate::template::Mode;

pub(super) fn finished(stage: &str, attempt: u32, outcome: Outcome, exit_code: Option<i64>, reason: String) -> Event {
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
pub(super) fn on_name(ctx: &Ctx, stage: &str, attempt: u32) -> Option<String> {
    let on_host = ctx.plan.stage(stage).is_some_and(|s| s.kind.on_host());
    if on_host { None } else { ctx.executor.unit_name(&ctx.meta.run_id, stage, attempt) }
}

/// What templates see: the ticket, the inputs, the outputs of stages that completed, and for
/// a looping stage its attempt and the graders' feedback.
pub(super) fn template_ctx(ctx: &Ctx, state: &RunState, for_stage: &str) -> serde_json::Value {
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

/// The scheduler's view of the run: conditions and messages rendered with the stage's template
/// context, where attempts run, and the logs in the record.
pub(super) struct RunEnv<'a>(pub(super) &'a Ctx);

impl super::scheduler::Env for RunEnv<'_> {
    fn condition(&self, index: usize, state: &RunState) -> Result<bool, String> {
        let s = &self.0.plan.stages()[index];
        let Some(cond) = &s.condition else { return Ok(true) };
        crate::template::eval_condition(cond, &template_ctx(self.0, state, &s.id)).map_err(|e| e.to_string())
    }

    fn approval_message(&self, index: usize, state: &RunState) -> String {
        let s = &self.0.plan.stages()[index];
        let message = match &s.kind {
            StageKind::Approve(a) => a.message.as_deref(),
            _ => None,
        }
        .unwrap_or("a person must approve");
        let tctx = template_ctx(self.0, state, &s.id);
        crate::template::render(Mode::Text, message, &tctx).unwrap_or_else(|_| message.to_owned())
    }

    fn unit_name(&self, stage: usize, attempt: u32) -> Option<String> {
        on_name(self.0, &self.0.plan.stages()[stage].id, attempt)
    }

    fn log_tail(&self, stage: &str, attempt: u32) -> Vec<String> {
        log_tail(&self.0.dir.log_path(stage, attempt), 40)
    }
}

/// An agent attempt's change, as a patch against the base, in the stage's record.
pub(super) fn save_patch(ctx: &Ctx, index: usize, attempt: u32) {
    let s = &ctx.plan.stages()[index];
    if let Ok((_, patch)) = ctx.workspace.diff() {
        let path = ctx.dir.path.join("stages").join(&s.id).join(format!("{attempt}.diff"));
        let _ = std::fs::write(path, ctx.needles.mask_str(&patch));
    }
}

/// One snapshot of what the attempts that ended and wrote the workspace left. When it cannot
/// be taken (a nested repository, a huge file), their change fails; the run goes on to its end.
pub(super) async fn snapshot(ctx: &Arc<Ctx>, dones: &mut [super::scheduler::Done]) -> Option<String> {
    let stages = ctx.plan.stages();
    let wrote = |d: &super::scheduler::Done| d.outcome.is_success() && stages[d.index].workspace == Access::ReadWrite;
    let writers: Vec<String> = dones.iter().filter(|d| wrote(d)).map(|d| stages[d.index].id.clone()).collect();
    if writers.is_empty() {
        return None;
    }
    // Host git walks and reads what the stages wrote: off the scheduler's thread.
    let ws = ctx.workspace.clone();
    let label = format!("lightsout: after {}", writers.join(", "));
    let taken = tokio::task::spawn_blocking(move || ws.snapshot(&label).map_err(String::from))
        .await
        .unwrap_or_else(|e| Err(format!("the snapshot failed: {e}")));
    match taken {
        Ok(commit) => Some(commit),
        Err(e) => {
            let reason = ctx.needles.mask_str(&e);
            for d in dones.iter_mut().filter(|d| wrote(d)) {
                d.outcome = Outcome::Failed;
                d.reason.clone_from(&reason);
            }
            None
        }
    }
}
