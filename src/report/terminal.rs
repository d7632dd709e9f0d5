//! Observers of the event stream: a live view on a terminal, plain timestamped lines without
//! one (or under `CI=true`), JSON lines for machines. Everything shown is already masked and
//! has its control characters escaped.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::diag::printable;
use crate::events::{Event, Outcome, Sink, Stamped};
use crate::plan::Plan;

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

/// Whether to draw the live view: a terminal on stderr and not CI.
fn live() -> bool {
    std::io::stderr().is_terminal() && std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false")
}

/// The sinks that show a run as `output` asks, for the run's plan.
pub fn sinks(output: Output, plan: &Plan) -> Vec<Box<dyn Sink>> {
    match output {
        Output::Quiet => Vec::new(),
        Output::Json => vec![Box::new(JsonLines)],
        Output::Human if live() => vec![Box::new(LiveView::start(plan.clone()))],
        Output::Human => vec![Box::new(PlainLines)],
    }
}

/// One JSON event per line on stdout, written as it comes: a machine's view drops nothing
/// (a slow reader slows the run down instead).
struct JsonLines;

impl Sink for JsonLines {
    fn take(&mut self, e: &Stamped) -> Result<(), String> {
        if let Ok(line) = serde_json::to_string(e) {
            // A closed stdout must not stop the run.
            let _ = writeln!(std::io::stdout().lock(), "{}", crate::diag::printable_json(&line));
        }
        Ok(())
    }
}

/// Timestamped lines on stderr (without a terminal, or under `CI=true`), written as they come.
struct PlainLines;

impl Sink for PlainLines {
    fn take(&mut self, e: &Stamped) -> Result<(), String> {
        for line in lines(e) {
            // A closed stderr must not stop the run.
            let _ = writeln!(std::io::stderr().lock(), "{} {line}", &e.at.get(11..19).unwrap_or(&e.at));
        }
        Ok(())
    }
}

/// The live view on a terminal, drawn by a task of its own; it may skip a frame when the run
/// outpaces it (the record and `--format json` never do).
struct LiveView {
    tx: mpsc::Sender<Stamped>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveView {
    fn start(plan: Plan) -> LiveView {
        let (tx, mut rx) = mpsc::channel(256);
        let task = tokio::spawn(async move { live_view(&plan, &mut rx).await });
        LiveView { tx, task }
    }
}

impl Sink for LiveView {
    fn take(&mut self, e: &Stamped) -> Result<(), String> {
        let _ = self.tx.try_send(e.clone());
        Ok(())
    }

    fn close(self: Box<Self>) -> crate::events::Closing {
        let LiveView { tx, task } = *self;
        drop(tx);
        Box::pin(async move {
            let _ = task.await;
        })
    }
}

/// The human lines for one event.
fn lines(e: &Stamped) -> Vec<String> {
    match &e.event {
        Event::RunStarted { run_id, category, ticket, executor, .. } => {
            vec![format!("run {run_id}: ticket {} as {category}, on {executor}", printable(ticket))]
        }
        Event::RunResumed { .. } => vec!["resumed".into()],
        Event::StageSkipped { stage, reason } => vec![format!("{stage:<12} skipped: {}", printable(reason))],
        Event::StageStarted { stage, attempt, on } => {
            let on = on.as_ref().map(|o| format!(" in {o}")).unwrap_or_default();
            let retry = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
            vec![format!("{stage:<12} started{retry}{on}")]
        }
        Event::StageLog { stage, text, .. } => {
            text.lines().map(|l| format!("{stage:<12} | {}", printable(l))).collect()
        }
        Event::StageFinished { stage, outcome, reason, duration_ms, retrying, .. } => {
            let word = match outcome {
                Outcome::Succeeded => "ok",
                Outcome::Failed => "FAILED",
                Outcome::TimedOut => "TIMED OUT",
                Outcome::Fault => "FAULT",
                Outcome::Cancelled => "cancelled",
            };
            let again = if *retrying { ", retrying" } else { "" };
            #[expect(clippy::cast_precision_loss, reason = "seconds for display")]
            let secs = *duration_ms as f64 / 1000.0;
            vec![format!("{stage:<12} {word} in {secs:.1}s: {}{again}", printable(reason))]
        }
        Event::Warning { message } => vec![format!("warning: {}", printable(message))],
        Event::Egress { stage, host, port, allowed, why, .. } => {
            let word = if *allowed { "egress allowed" } else { "egress REFUSED" };
            let port = if *port == 0 { String::new() } else { format!(":{port}") };
            vec![format!("{stage:<12} {word}: {}{port} ({})", printable(host), printable(why))]
        }
        Event::ApprovalRequested { stage, message } => {
            vec![format!(
                "{stage:<12} waiting for approval: {}; run `lightsout approve <run>` or `reject`",
                printable(message)
            )]
        }
        Event::Approved { stage, by, reason } => {
            vec![format!("{stage:<12} approved by {}: {}", printable(by), printable(reason))]
        }
        Event::Rejected { stage, by, reason } => {
            vec![format!("{stage:<12} rejected by {}: {}", printable(by), printable(reason))]
        }
        Event::LoopRestarted { stage, attempt, .. } => {
            vec![format!("{stage:<12} graders failed: attempt {attempt}, with their feedback")]
        }
        Event::RunFinished { status, diff_stat } => {
            let mut v = vec![format!("run {status:?}").to_lowercase()];
            if let Some(stat) = diff_stat.as_ref().filter(|s| !s.is_empty()) {
                v.extend(stat.lines().map(|l| format!("  {}", printable(l))));
            }
            v
        }
    }
}

async fn live_view(plan: &Plan, events: &mut mpsc::Receiver<Stamped>) {
    let mp = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let total = plan.stages().len() as u64;
    let overall = mp.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} stages {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(e) = events.recv().await {
        match &e.event {
            Event::StageStarted { stage, .. } => {
                let bar = mp.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(stage.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bars.insert(stage.clone(), bar);
            }
            Event::StageLog { stage, text, .. } => {
                if let (Some(bar), Some(last)) = (bars.get(stage), text.lines().last()) {
                    bar.set_message(printable(last).into_owned());
                }
            }
            Event::StageFinished { stage, retrying, .. } => {
                if let Some(bar) = bars.remove(stage) {
                    bar.finish_and_clear();
                }
                if !retrying {
                    overall.inc(1);
                }
                for l in lines(&e) {
                    let _ = mp.println(l);
                }
            }
            Event::StageSkipped { .. } => {
                overall.inc(1);
                for l in lines(&e) {
                    let _ = mp.println(l);
                }
            }
            _ => {
                for l in lines(&e) {
                    let _ = mp.println(l);
                }
            }
        }
    }
    overall.finish_and_clear();
}
