//! The agent loop: when a loop's graders fail, the agent stage and what follows it run again
//! with the graders' output as feedback, up to `max_attempts`, inside one node of the DAG.

use super::*;

/// Whether `grader` is one of a loop's graders. Its failure does not stop the run at once: the
/// loop answers it with another attempt, or, after the last one, the loop's other graders still
/// finish so that every verdict is recorded (stages after them are skipped either way).
pub(super) fn is_loop_grader(stages: &[Stage], grader: &str) -> bool {
    stages.iter().any(|l| l.repeat.as_ref().is_some_and(|r| r.until.iter().any(|u| u == grader)))
}

/// Loops whose graders have all settled with at least one failure, and attempts left.
/// `tail` gives the last lines of a grader attempt's log, for the feedback.
pub(super) fn loop_restarts(plan: &Plan, state: &RunState, tail: &dyn Fn(&str, u32) -> Vec<String>) -> Vec<Event> {
    let stages = plan.stages();
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
        let graph = plan.graph();
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
            let tail = tail(g, st.attempts);
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
