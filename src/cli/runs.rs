//! The commands that execute: `run`, `resume`, `runs`, `runs show`, `logs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::{FactoryArg, Failure, TicketArgs};
use crate::cli::exit::Exit;
use crate::events::{Event, RunStatus};
use crate::executor::{Executor, docker, local};
use crate::report::terminal::Output;
use crate::run::{self, Observers, Options, RunError};
use crate::store::{self, RunDir};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum ExecutorChoice {
    /// One hardened container per stage.
    Docker,
    /// A bubblewrap sandbox on the host.
    Local,
    /// Docker; bubblewrap only when no stage names an image. A plan whose stages name images
    /// stops when Docker does not answer, rather than run them on the host's tools.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum RunFormat {
    /// A live view on a terminal; timestamped lines otherwise.
    Human,
    /// One JSON event per line.
    Json,
}

#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    #[command(flatten)]
    ticket: TicketArgs,
    /// Stages run at once [default: the number of cores].
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Auto)]
    executor: ExecutorChoice,
    /// With `--executor local`: run stages as plain processes, without a sandbox (the policy
    /// must set `allow_unsandboxed: true`).
    #[arg(long)]
    unsandboxed: bool,
    /// After a stage fails, go on with the stages that do not depend on it.
    #[arg(long)]
    keep_going: bool,
    /// Keep the run's worktree afterwards, for inspection.
    #[arg(long)]
    keep_workspace: bool,
    /// The revision the workspace starts from.
    #[arg(long, default_value = "HEAD")]
    base: String,
    #[arg(long, value_enum, default_value_t = RunFormat::Human)]
    format: RunFormat,
}

#[derive(clap::Args, Debug)]
pub(super) struct ResumeArgs {
    #[command(flatten)]
    factory: FactoryArg,
    /// The run to continue (see `lightsout runs`).
    run: String,
    #[arg(long, value_enum, default_value_t = RunFormat::Human)]
    format: RunFormat,
}

#[derive(clap::Args, Debug)]
pub(super) struct DecideArgs {
    #[command(flatten)]
    factory: FactoryArg,
    /// The run waiting at a gate.
    run: String,
    /// Why, recorded with the decision.
    #[arg(long, default_value = "")]
    reason: String,
    /// Who decides [default: $USER, else git's user.name].
    #[arg(long)]
    by: Option<String>,
    #[arg(long, value_enum, default_value_t = RunFormat::Human)]
    format: RunFormat,
}

#[derive(clap::Args, Debug)]
pub(super) struct RunsArgs {
    #[command(flatten)]
    factory: FactoryArg,
    #[command(subcommand)]
    command: Option<RunsCommand>,
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum RunsCommand {
    /// One run: its stages, their outcomes, times and outputs.
    Show {
        run: String,
        #[arg(long, value_enum, default_value_t = RunFormat::Human)]
        format: RunFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum ReportFormat {
    /// The summary a reviewer reads.
    Md,
    /// `JUnit` XML, one test case per stage, for CI test views.
    Junit,
    Json,
}

#[derive(clap::Args, Debug)]
pub(super) struct ReportArgs {
    #[command(flatten)]
    factory: FactoryArg,
    run: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    format: ReportFormat,
}

#[derive(clap::Args, Debug)]
pub(super) struct LogsArgs {
    #[command(flatten)]
    factory: FactoryArg,
    run: String,
    stage: String,
    /// Which attempt [default: the last].
    #[arg(long)]
    attempt: Option<u32>,
    /// Keep printing while the stage runs.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// How the run is shown, as sinks of its events.
fn observers(format: RunFormat) -> Observers {
    let output = output(format);
    Box::new(move |plan| crate::report::terminal::sinks(output, plan))
}

fn output(format: RunFormat) -> Output {
    match format {
        RunFormat::Human => Output::Human,
        RunFormat::Json => Output::Json,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Io(format!("cannot start the async runtime: {e}")))
}

/// The stages of `plan` that run in an image, each with it: what `auto` needs Docker for.
fn stages_with_images(plan: &crate::plan::Plan) -> Vec<String> {
    plan.stages()
        .iter()
        .filter(|s| s.role.in_container())
        .filter_map(|s| s.image.as_ref().map(|i| format!("{} (`{}`)", s.id, i.value)))
        .collect()
}

/// Why `auto` does not fall back to the host's tools: the stages name images, and running them
/// without would ignore `image:` and the policy's `images.allow`.
fn docker_needed(why: &str, staged: &[String]) -> RunError {
    const SHOWN: usize = 5;
    let mut named = staged.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if staged.len() > SHOWN {
        let _ = write!(named, " and {} more", staged.len() - SHOWN);
    }
    RunError::Infra(format!(
        "Docker is not reachable ({why}), and stages name images to run in: {named}; lightsout does not run them with this machine's own tools unasked. Start Docker (or point DOCKER_HOST at it), or run with `--executor local` to run them knowingly with this machine's tools in a bubblewrap sandbox, where `image:` is not used"
    ))
}

async fn pick_executor(
    choice: ExecutorChoice,
    unsandboxed: bool,
    policy_allows: bool,
    staged: &[String],
) -> Result<Box<dyn Executor>, RunError> {
    if unsandboxed {
        if choice != ExecutorChoice::Local {
            return Err(RunError::Invalid("--unsandboxed goes with --executor local".into()));
        }
        if !policy_allows {
            return Err(RunError::Invalid(
                "the policy does not allow unsandboxed stages; set `allow_unsandboxed: true` in policy.yaml if you mean it".into(),
            ));
        }
        eprintln!("warning: stages will run as plain processes on this machine, with no sandbox");
        return Ok(Box::new(local::Local::unsandboxed()));
    }
    match choice {
        ExecutorChoice::Docker => docker::Docker::connect()
            .await
            .map(|d| Box::new(d) as Box<dyn Executor>)
            .map_err(|e| RunError::Infra(format!("{e}; start it, or run with --executor local"))),
        ExecutorChoice::Local => {
            local::Local::bubblewrap().map(|l| Box::new(l) as Box<dyn Executor>).map_err(RunError::Invalid)
        }
        ExecutorChoice::Auto => match docker::Docker::connect().await {
            Ok(d) => Ok(Box::new(d)),
            Err(e) if !staged.is_empty() => Err(docker_needed(&e, staged)),
            Err(e) => local::Local::bubblewrap()
                .map(|l| Box::new(l) as Box<dyn Executor>)
                .map_err(|l| RunError::Infra(format!("no executor: {e}; and {l}"))),
        },
    }
}

fn exit_for(f: &run::Finished) -> Exit {
    match f.status {
        RunStatus::Succeeded => Exit::Ok,
        RunStatus::Cancelled => Exit::Cancelled,
        RunStatus::AwaitingApproval => Exit::AwaitingApproval,
        _ if f.fault => Exit::Infra,
        _ => Exit::Failed,
    }
}

pub(super) fn run_cmd(a: &RunArgs) -> Result<Exit, Failure> {
    let (factory, ticket, _, plan) = a.ticket.compile()?;
    run::check_runnable(&plan)?;
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let opts = Options {
        jobs,
        keep_going: a.keep_going,
        keep_workspace: a.keep_workspace,
        base: a.base.clone(),
        observers: observers(a.format),
    };
    let dir = factory.dir.clone();
    let rt = runtime()?;
    let finished = rt.block_on(async {
        let staged = stages_with_images(&plan);
        let executor = pick_executor(a.executor, a.unsandboxed, factory.policy.allows_unsandboxed(), &staged).await?;
        run::start(&absolute(&dir), plan, ticket, executor, opts, factory.policy.clone()).await
    });
    let finished = finished?;
    if a.format == RunFormat::Human {
        eprintln!("run {}: {}", finished.run_id, format!("{:?}", finished.status).to_lowercase());
    }
    Ok(exit_for(&finished))
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The repository the factory lives in.
fn repo(arg: &FactoryArg) -> Result<PathBuf, Failure> {
    let factory = super::factory_path(arg)?;
    let dir = factory.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    run::repo_of(&absolute(&dir)).map_err(Failure::from)
}

/// The executor a recorded run used.
async fn executor_of(repo: &Path, run_id: &str) -> Result<Box<dyn Executor>, RunError> {
    match RunDir::open(repo, run_id).and_then(|d| d.meta().ok()).map(|m| m.executor) {
        Some(name) if name == "docker" => docker::Docker::connect()
            .await
            .map(|d| Box::new(d) as Box<dyn Executor>)
            .map_err(|e| RunError::Infra(format!("{e}; the run started on Docker and continues only there: start it"))),
        Some(name) if name == "local" => {
            local::Local::bubblewrap().map(|l| Box::new(l) as Box<dyn Executor>).map_err(RunError::Invalid)
        }
        Some(_) => Ok(Box::new(local::Local::unsandboxed())),
        None => Err(RunError::Invalid(format!("there is no run `{run_id}`; `lightsout runs` lists them"))),
    }
}

pub(super) fn resume_cmd(a: &ResumeArgs) -> Result<Exit, Failure> {
    let repo = repo(&a.factory)?;
    let rt = runtime()?;
    let finished = rt.block_on(async {
        let executor = executor_of(&repo, &a.run).await?;
        run::resume(&repo, &a.run, |_| Ok(executor), &load_policy, observers(a.format)).await
    });
    let finished = finished?;
    Ok(exit_for(&finished))
}

/// `approve` or `reject`: records who and why, then continues the run.
pub(super) fn decide_cmd(a: &DecideArgs, approve: bool) -> Result<Exit, Failure> {
    let repo = repo(&a.factory)?;
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| {
                std::process::Command::new("git")
                    .args(["config", "user.name"])
                    .current_dir(&repo)
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "unknown".into());
    let decision = run::Decision { approve, by, reason: a.reason.clone() };
    let rt = runtime()?;
    let finished = rt.block_on(async {
        let executor = executor_of(&repo, &a.run).await?;
        run::resume_with(&repo, &a.run, |_| Ok(executor), &load_policy, observers(a.format), Some(decision)).await
    });
    let finished = finished?;
    Ok(exit_for(&finished))
}

/// Prints text made from a run's record: every line escaped for the terminal, whatever
/// the record holds (it is written from what stages printed and may have been edited).
fn print_record(text: &str) {
    out!("{}", crate::diag::printable_lines(text));
}

pub(super) fn runs_cmd(a: &RunsArgs) -> Result<Exit, Failure> {
    use std::fmt::Write as _;
    let repo = repo(&a.factory)?;
    let mut text = String::new();
    match &a.command {
        None => {
            let runs = store::list(&repo);
            if runs.is_empty() {
                text.push_str("no runs yet\n");
            }
            for dir in runs {
                let state = dir.state();
                let status = match state.status {
                    Some(s) => format!("{s:?}").to_lowercase(),
                    None if dir.owner_alive() => "running".into(),
                    None => "interrupted (lightsout resume)".into(),
                };
                let started = dir.events().first().map(|e| e.at.clone()).unwrap_or_default();
                // One run per line: a line break inside a field is shown escaped, not obeyed.
                let field = |t: &str| crate::diag::printable(t).into_owned();
                let _ = writeln!(
                    text,
                    "{}  {}  {:<10} {:<12} {}",
                    field(&state.run_id),
                    field(&started),
                    field(&state.category),
                    field(&state.ticket),
                    status
                );
            }
        }
        Some(RunsCommand::Show { run, format }) => {
            let dir = RunDir::open(&repo, run).ok_or_else(|| Failure::Message(format!("there is no run `{run}`")))?;
            let state = dir.state();
            if *format == RunFormat::Json {
                let json = serde_json::to_string_pretty(&state).unwrap_or_default();
                outln!("{}", crate::diag::printable_json(&json));
                return Ok(Exit::Ok);
            }
            let field = |t: &str| crate::diag::printable(t).into_owned();
            let _ = writeln!(text, "run       {}", field(&state.run_id));
            let _ = writeln!(text, "ticket    {}", field(&state.ticket));
            let _ = writeln!(text, "category  {}", field(&state.category));
            let status = state.status.map_or("not finished".into(), |s| format!("{s:?}").to_lowercase());
            let _ = writeln!(text, "status    {status}");
            for (id, st) in &state.stages {
                let what = match (&st.skipped, st.outcome) {
                    (Some(r), _) => format!("skipped ({})", field(r)),
                    (None, Some(o)) => format!("{o:?}").to_lowercase(),
                    (None, None) if st.running => "running".into(),
                    (None, None) => "pending".into(),
                };
                let _ = writeln!(
                    text,
                    "  {:<14} {what:<12} attempts {}  {} ms  {}",
                    field(id),
                    st.attempts,
                    st.duration_ms,
                    field(&st.reason)
                );
                for (k, v) in &st.outputs {
                    let _ = writeln!(text, "  {:<14}   output {} = {}", "", field(k), field(v));
                }
            }
            for e in dir.events() {
                if let Event::RunFinished { diff_stat: Some(stat), .. } = e.event {
                    let _ = writeln!(text, "{stat}");
                }
            }
        }
    }
    print_record(&text);
    Ok(Exit::Ok)
}

pub(super) fn report_cmd(a: &ReportArgs) -> Result<Exit, Failure> {
    let repo = repo(&a.factory)?;
    let dir = RunDir::open(&repo, &a.run).ok_or_else(|| Failure::Message(format!("there is no run `{}`", a.run)))?;
    let text = match a.format {
        ReportFormat::Md => crate::report::markdown(&dir),
        ReportFormat::Junit => crate::report::junit(&dir),
        ReportFormat::Json => crate::report::json(&dir),
    }
    .map_err(Failure::Io)?;
    match a.format {
        ReportFormat::Json => out!("{}", crate::diag::printable_json(&text)),
        // Markdown and XML hold no control character but line breaks (and tabs, in XML).
        ReportFormat::Md => print_record(&text),
        ReportFormat::Junit => out!("{text}"),
    }
    Ok(Exit::Ok)
}

pub(super) fn logs_cmd(a: &LogsArgs) -> Result<Exit, Failure> {
    use std::io::{Read as _, Seek as _, Write as _};
    let repo = repo(&a.factory)?;
    let dir = RunDir::open(&repo, &a.run).ok_or_else(|| Failure::Message(format!("there is no run `{}`", a.run)))?;
    let state = dir.state();
    let Some(st) = state.stages.get(&a.stage) else {
        let names: Vec<&str> = state.stages.keys().map(String::as_str).collect();
        return Err(Failure::Message(format!(
            "run `{}` has no started stage `{}` (started: {})",
            a.run,
            a.stage,
            names.join(", ")
        )));
    };
    let attempt = a.attempt.unwrap_or(st.attempts.max(1));
    let path = dir.log_path(&a.stage, attempt);
    // A stage that has just started may not have its log file yet.
    while a.follow && !path.exists() && dir.owner_alive() && dir.state().stages.get(&a.stage).is_some_and(|s| s.running)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut file = std::fs::File::open(&path).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        file.read_to_end(&mut buf).map_err(|e| Failure::Io(e.to_string()))?;
        // The log is masked already, and kept as the stage wrote it; what reaches the terminal
        // has its control characters escaped (an invalid byte shows as U+FFFD).
        let _ = write!(out, "{}", crate::diag::printable_lines(&String::from_utf8_lossy(&buf)));
        let _ = out.flush();
        let running = dir.state().stages.get(&a.stage).is_some_and(|s| s.running) && dir.owner_alive();
        if !a.follow || !running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = file.stream_position();
    }
    Ok(Exit::Ok)
}

/// A policy file as it is now, for a resumed run.
fn load_policy(path: &Path) -> Result<crate::policy::Policy, String> {
    crate::compile::load_policy(path).map_err(|ds| ds.render(&|p: &Path| std::fs::read_to_string(p).ok()))
}
