//! What the run knows of its stages, as the scheduler and templates use it: the template
//! context of a stage (ticket, inputs, earlier stages' outputs, attempt, feedback), where an
//! attempt runs, and the events of stages that end without running.

#![allow(clippy::wildcard_imports)] // the run's own types and imports, shared with its parts

use super::*;

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
