//! Reports of a run, from its record: the Markdown summary a reviewer reads (ticket, verdicts,
//! attempts, diff stat, network connections, cost, time), `JUnit` XML for CI test views, and JSON.

pub mod junit;
pub mod markdown;
pub mod terminal;

pub use junit::junit;

use std::fmt::Write as _;

use crate::events::{Event, Outcome};
use crate::plan::Plan;
use crate::store::RunDir;
use crate::ticket::Ticket;
use markdown::{cell, code};

/// Totals over every attempt of every agent stage.
#[derive(Debug, Default, serde::Serialize)]
pub struct Cost {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usd: f64,
    pub agent_attempts: u32,
}

fn cost(dir: &RunDir) -> Cost {
    let mut c = Cost::default();
    for e in dir.events() {
        if let Event::StageFinished { outputs, .. } = &e.event
            && let Some(t) = outputs.get("tokens_in")
        {
            c.agent_attempts += 1;
            c.tokens_in += t.parse::<u64>().unwrap_or(0);
            c.tokens_out += outputs.get("tokens_out").and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            c.usd += outputs.get("cost_usd").and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    c
}

fn seconds_between(a: &str, b: &str) -> f64 {
    match (humantime::parse_rfc3339(a), humantime::parse_rfc3339(b)) {
        (Ok(a), Ok(b)) => b.duration_since(a).map_or(0.0, |d| d.as_secs_f64()),
        _ => 0.0,
    }
}

fn diff_stat(dir: &RunDir) -> Option<String> {
    dir.events().into_iter().rev().find_map(|e| match e.event {
        Event::RunFinished { diff_stat, .. } => diff_stat,
        _ => None,
    })
}

/// The egress proxy's decisions of a run, one row per stage, target and decision, with counts.
#[derive(Debug, serde::Serialize)]
pub struct EgressRow {
    pub stage: String,
    pub target: String,
    pub allowed: bool,
    pub count: u64,
    /// The rule that admitted it, or why it was refused (the first time).
    pub why: String,
}

fn egress(dir: &RunDir) -> Vec<EgressRow> {
    let mut rows: Vec<EgressRow> = Vec::new();
    for e in dir.events() {
        if let Event::Egress { stage, host, port, allowed, why, .. } = e.event {
            // Port 0: a request that named no valid target; the text asked for is the host.
            let target = if port == 0 { host } else { format!("{host}:{port}") };
            match rows.iter_mut().find(|r| r.stage == stage && r.target == target && r.allowed == allowed) {
                Some(r) => r.count += 1,
                None => rows.push(EgressRow { stage, target, allowed, count: 1, why }),
            }
        }
    }
    rows
}

/// Most rows of the network table in Markdown; the rest are counted.
const EGRESS_ROWS: usize = 50;

fn load(dir: &RunDir) -> Result<(Plan, Ticket), String> {
    let plan_text = std::fs::read_to_string(dir.path.join("plan.json")).map_err(|e| e.to_string())?;
    Ok((Plan::from_record(&plan_text)?, dir.read_json("ticket.json")?))
}

/// Markdown for a reviewer. Ticket text is shown inside code spans or fences, never as markup.
pub fn markdown(dir: &RunDir) -> Result<String, String> {
    let (plan, ticket) = load(dir)?;
    let state = dir.state();
    let events = dir.events();
    let mut out = String::new();
    let status = state.status.map_or_else(|| "not finished".to_owned(), |s| format!("{s:?}").to_lowercase());
    let _ = writeln!(out, "# lightsout run `{}`: {status}\n", state.run_id);
    // Ticket text and whatever a stage wrote are data: each in a code span (`markdown::code`).
    let _ = writeln!(out, "**Ticket** {}: {}", code(&ticket.id), code(&ticket.title));
    if let Some(url) = &ticket.url {
        // A link only when it is plainly one to a web page; otherwise the text, as data.
        let web_page = url.starts_with("https://") && url.chars().all(|c| c.is_ascii_graphic() && !"<>`\\".contains(c));
        let _ = writeln!(out, "{}", if web_page { format!("<{url}>") } else { code(url) });
    }
    let _ = writeln!(out, "\n**Category** {} ({})\n", plan.category(), plan.pipeline().display());
    let _ = writeln!(out, "| stage | kind | result | attempts | time |\n|---|---|---|---|---|");
    for s in plan.stages() {
        let st = state.stages.get(&s.id);
        let result = match st {
            Some(st) if st.skipped.is_some() => "skipped".to_owned(),
            Some(st) => st.outcome.map_or("not run".into(), |o| format!("{o:?}").to_lowercase()),
            None => "not run".into(),
        };
        let attempts = st.map_or(0, |s| s.attempts);
        #[expect(clippy::cast_precision_loss, reason = "milliseconds for display")]
        let secs = st.map_or(0.0, |s| s.duration_ms as f64 / 1000.0);
        let _ = writeln!(out, "| {} | {} | {result} | {attempts} | {secs:.1}s |", s.id, s.kind);
    }
    let _ = writeln!(out, "\n## Why the factory believes the change is right\n");
    let mut any = false;
    for s in plan.stages().iter().filter(|s| s.role == crate::plan::Role::Grader) {
        let Some(st) = state.stages.get(&s.id) else { continue };
        any = true;
        let mark = if st.outcome == Some(Outcome::Succeeded) { "passed" } else { "did not pass" };
        let _ = writeln!(out, "- **{}** (`{}`) {mark}: {}", s.id, s.kind, code(&st.reason));
        if let Some(v) = &st.verdict {
            for r in &v.reasons {
                let _ = writeln!(out, "  - {}", code(r));
            }
        }
        if let Some(skip) = &st.skipped {
            let _ = writeln!(out, "  - skipped: {}", code(skip));
        }
    }
    if !any {
        let _ = writeln!(out, "No grader ran.");
    }
    let loops: Vec<&Event> =
        events.iter().map(|e| &e.event).filter(|e| matches!(e, Event::LoopRestarted { .. })).collect();
    if !loops.is_empty() {
        let _ = writeln!(out, "\n## Attempts\n");
        for e in loops {
            if let Event::LoopRestarted { stage, attempt, .. } = e {
                let _ = writeln!(out, "- `{stage}` ran again (attempt {attempt}) with the graders' feedback");
            }
        }
    }
    let _ = writeln!(out, "\n## Change\n");
    match diff_stat(dir).filter(|s| !s.is_empty()) {
        Some(stat) => {
            let _ = writeln!(out, "{}", markdown::fenced(&stat));
        }
        None => {
            let _ = writeln!(out, "No change.");
        }
    }
    let _ = writeln!(out, "\n## Network\n");
    let rows = egress(dir);
    if plan.stages().iter().all(|s| s.network.is_empty()) {
        let _ = writeln!(out, "No stage had network access.");
    } else if rows.is_empty() {
        let _ = writeln!(out, "No connection was attempted through the egress proxy.");
    } else {
        let _ = writeln!(out, "| stage | host | decision | times | rule or reason |\n|---|---|---|---|---|");
        for r in rows.iter().take(EGRESS_ROWS) {
            let word = if r.allowed { "allowed" } else { "**refused**" };
            let _ = writeln!(out, "| {} | {} | {word} | {} | {} |", r.stage, cell(&r.target), r.count, cell(&r.why));
        }
        if rows.len() > EGRESS_ROWS {
            let _ = writeln!(out, "\nand {} more (see `lightsout report --format json`)", rows.len() - EGRESS_ROWS);
        }
    }
    let c = cost(dir);
    let total = match (events.first(), events.last()) {
        (Some(a), Some(b)) => seconds_between(&a.at, &b.at),
        _ => 0.0,
    };
    let _ = writeln!(out, "\n## Cost and time\n");
    let _ = writeln!(
        out,
        "- agent attempts: {}; tokens: {} in, {} out; cost: ${:.4}\n- wall time: {total:.1}s",
        c.agent_attempts, c.tokens_in, c.tokens_out, c.usd
    );
    Ok(out)
}

/// Everything, as JSON.
pub fn json(dir: &RunDir) -> Result<String, String> {
    let (plan, ticket) = load(dir)?;
    let v = serde_json::json!({
        "run": dir.state(),
        "ticket": ticket,
        "plan": plan,
        "diff_stat": diff_stat(dir),
        "egress": egress(dir),
        "cost": cost(dir),
    });
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}
