//! The command line: the only code that parses arguments, reads the environment, prints and
//! exits.

/// `println!` that does not panic when stdout is closed (`lightsout runs | head -1`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that does not panic when stdout is closed.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

mod exit;
mod init;
mod internal;
mod preflight;
mod runs;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

pub use exit::Exit;

use crate::compile::{Factory, Route, route};
use crate::diag::{Diagnostic, Diagnostics, Pos, code};
use crate::plan::{Plan, render};
use crate::spec::{self, FileKind, PipelineFile};
use crate::ticket::Ticket;

#[derive(Parser, Debug)]
#[command(name = "lightsout", version, about = "Declarative pipeline-as-code runner for dark software factories", after_help = exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write factory.yaml, a policy and the built-in pipelines into a repository.
    Init(InitArgs),
    /// Check factory.yaml, its policy and every pipeline; report every problem at once.
    Validate(ValidateArgs),
    /// Show a pipeline's stage graph.
    Graph(GraphArgs),
    /// Show what a ticket would run: category, stages in order, image, secrets, network, timeout.
    Plan(PlanArgs),
    /// Run a ticket's pipeline for real, in containers (or a local sandbox).
    Run(runs::RunArgs),
    /// Continue a run whose runner was killed, from the stages that had not completed.
    Resume(runs::ResumeArgs),
    /// List the runs of this repository (or show one).
    Runs(runs::RunsArgs),
    /// Print a stage's log from a run.
    Logs(runs::LogsArgs),
    /// A run's report: Markdown for a reviewer, `JUnit` XML for CI, or JSON.
    Report(runs::ReportArgs),
    /// Approve the gate a run waits at, and continue it.
    Approve(runs::DecideArgs),
    /// Reject the gate a run waits at: the stages after it are skipped and the run fails.
    Reject(runs::DecideArgs),
    /// Print the JSON Schema of a file kind (or write all of them to a directory).
    Schema(SchemaArgs),
    /// The egress proxy, as the Docker executor starts it in a container of its own.
    #[command(hide = true)]
    EgressProxy(internal::EgressProxyArgs),
    /// Inside a local sandbox: carries loopback connections to the egress proxy's socket while
    /// running a command.
    #[command(hide = true)]
    EgressForward(internal::EgressForwardArgs),
    /// Inside a local sandbox started by root: drops to an unprivileged uid and gid (no
    /// supplementary groups) and execs a command.
    #[command(hide = true)]
    SandboxExec(internal::SandboxExecArgs),
    /// Print shell completions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// The factory, a ticket and how to route it: what `plan` and `run` start from.
#[derive(clap::Args, Debug)]
struct TicketArgs {
    #[command(flatten)]
    factory: FactoryArg,
    /// The ticket: a Markdown file with front matter, or a GitHub `issues` event (.json).
    #[arg(long, value_name = "PATH")]
    ticket: PathBuf,
    /// Use this category instead of the match rules.
    #[arg(long)]
    category: Option<String>,
}

impl TicketArgs {
    /// Loads the factory and the ticket, routes the ticket to a category and compiles its plan.
    fn compile(&self) -> Result<(Factory, Ticket, Route, Plan), Failure> {
        let factory = load_factory(&self.factory)?;
        let ticket = Ticket::load(&self.ticket)?;
        let route = route(&factory, &ticket, self.category.as_deref())?;
        let plan = factory.compile(&route.category, Some(&ticket))?;
        Ok((factory, ticket, route, plan))
    }
}

#[derive(clap::Args, Debug)]
struct FactoryArg {
    /// factory.yaml to use [default: the nearest factory.yaml in this or a parent directory]
    #[arg(long, env = "LIGHTSOUT_FACTORY", value_name = "PATH")]
    factory: Option<PathBuf>,
    /// The organisation's policy, from outside the repository; it takes precedence, and the
    /// repository's policy.yaml can only tighten it.
    #[arg(long, env = "LIGHTSOUT_POLICY", value_name = "PATH")]
    policy: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// The repository to initialise.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DiagFormat {
    Human,
    Json,
}

#[derive(clap::Args, Debug)]
struct ValidateArgs {
    #[command(flatten)]
    factory: FactoryArg,
    /// Validate only these pipeline files (against the factory and its policy).
    #[arg(long, value_name = "PATH")]
    pipeline: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    format: DiagFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

#[derive(clap::Args, Debug)]
struct GraphArgs {
    #[command(flatten)]
    factory: FactoryArg,
    /// The category whose pipeline to show [default: every category].
    #[arg(long)]
    category: Option<String>,
    /// A pipeline file to show instead of a category's.
    #[arg(long, value_name = "PATH", conflicts_with = "category")]
    pipeline: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    ticket: TicketArgs,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

#[derive(clap::Args, Debug)]
struct SchemaArgs {
    /// Which file's schema to print.
    #[arg(value_enum, default_value_t = FileKind::Pipeline)]
    kind: FileKind,
    /// Write every schema into this directory instead (as `<kind>.schema.json`).
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
}

/// Runs the command line and returns the exit code.
pub fn main() -> Exit {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::Invalid } else { Exit::Ok };
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(failure) => {
            match &failure {
                Failure::Invalid(ds, format) => report(ds, *format),
                other => eprintln!("error: {}", crate::diag::printable(&other.to_string())),
            }
            failure.exit()
        }
    }
}

/// Why a command could not do its work; [`Failure::exit`] is the one place that maps it to an
/// exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Invalid input, each problem located (exit 2).
    #[error("{} problems in the input", .0.len())]
    Invalid(Diagnostics, DiagFormat),
    /// Invalid input that has no file position (exit 2).
    #[error("{0}")]
    Message(String),
    /// Docker, git or the file system failed (exit 3).
    #[error("{0}")]
    Io(String),
}

impl From<crate::run::RunError> for Failure {
    fn from(e: crate::run::RunError) -> Failure {
        match e {
            crate::run::RunError::Invalid(m) => Failure::Message(m),
            crate::run::RunError::Infra(m) => Failure::Io(m),
        }
    }
}

impl From<Diagnostic> for Failure {
    fn from(d: Diagnostic) -> Self {
        Failure::Invalid(d.into(), DiagFormat::Human)
    }
}

impl From<Diagnostics> for Failure {
    fn from(ds: Diagnostics) -> Self {
        Failure::Invalid(ds, DiagFormat::Human)
    }
}

fn run(command: Command) -> Result<Exit, Failure> {
    match command {
        Command::Init(a) => init::run(&a.dir, a.force),
        Command::Validate(a) => validate(&a).map_err(|f| match f {
            Failure::Invalid(ds, _) => Failure::Invalid(ds, a.format),
            other @ (Failure::Io(_) | Failure::Message(_)) => other,
        }),
        Command::Graph(a) => graph(&a),
        Command::Plan(a) => plan(&a),
        Command::Run(a) => runs::run_cmd(&a),
        Command::Resume(a) => runs::resume_cmd(&a),
        Command::Runs(a) => runs::runs_cmd(&a),
        Command::Logs(a) => runs::logs_cmd(&a),
        Command::Report(a) => runs::report_cmd(&a),
        Command::Approve(a) => runs::decide_cmd(&a, true),
        Command::Reject(a) => runs::decide_cmd(&a, false),
        Command::Schema(a) => schema(&a),
        Command::EgressProxy(a) => internal::egress_proxy(a),
        Command::EgressForward(a) => internal::egress_forward(&a),
        Command::SandboxExec(a) => internal::sandbox_exec(&a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lightsout", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
}

/// Prints diagnostics to stderr, as people read them or as JSON.
fn report(ds: &Diagnostics, format: DiagFormat) {
    match format {
        DiagFormat::Human => eprint!("{}", ds.render_with(&|p: &Path| std::fs::read_to_string(p).ok(), colour())),
        DiagFormat::Json => {
            let v = serde_json::json!({ "ok": false, "errors": ds });
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
}

/// Whether diagnostics are coloured: only on a terminal, and never under `NO_COLOR`.
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The factory file: `--factory`, `$LIGHTSOUT_FACTORY`, or the nearest `factory.yaml` upwards.
fn factory_path(arg: &FactoryArg) -> Result<PathBuf, Failure> {
    if let Some(p) = &arg.factory {
        return Ok(p.clone());
    }
    let cwd = std::env::current_dir().map_err(|e| Failure::Io(format!("cannot read the current directory: {e}")))?;
    for dir in cwd.ancestors() {
        let candidate = dir.join("factory.yaml");
        if candidate.is_file() {
            // Show paths relative to where the user is, as they would type them.
            return Ok(candidate.strip_prefix(&cwd).map_or(candidate.clone(), Path::to_path_buf));
        }
    }
    Err(Diagnostic::new(Path::new("factory.yaml"), Pos::default(), "no factory.yaml here or in any parent directory")
        .code(code::FACTORY_MISSING)
        .hint("run `lightsout init` to create one, or pass --factory PATH")
        .into())
}

fn load_factory(arg: &FactoryArg) -> Result<Factory, Failure> {
    let path = factory_path(arg)?;
    if !path.is_file() {
        return Err(Diagnostic::new(&path, Pos::default(), "the factory file does not exist")
            .code(code::FACTORY_MISSING)
            .hint("run `lightsout init` to create one, or pass --factory PATH")
            .into());
    }
    if let Some(org) = &arg.policy {
        // The organisation's policy must be out of reach of a change to the repository.
        let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        if let (Ok(org_abs), Ok(repo)) = (std::fs::canonicalize(org), crate::run::repo_of(&dir)) {
            let repo = std::fs::canonicalize(&repo).unwrap_or(repo);
            if org_abs.starts_with(&repo) {
                return Err(Failure::Message(format!(
                    "the organisation policy {} is inside the repository; keep it outside, where a change to the repository cannot edit it",
                    org.display()
                )));
            }
        }
    }
    Ok(Factory::load_with(&path, arg.policy.as_deref())?)
}

fn validate(a: &ValidateArgs) -> Result<Exit, Failure> {
    let factory = load_factory(&a.factory)?;
    let plans = if a.pipeline.is_empty() {
        factory.compile_all()?
    } else {
        let mut plans = Vec::new();
        let mut errors = Diagnostics::default();
        for p in &a.pipeline {
            match compile_file(&factory, p) {
                Ok(plan) => plans.push(plan),
                Err(ds) => errors.extend(ds),
            }
        }
        errors.into_result(plans)?
    };
    let warnings = preflight::check(&plans, &factory.dir);
    match a.format {
        DiagFormat::Human => {
            preflight::print(&warnings);
            for p in &plans {
                outln!("ok  {} ({}): {} stages", p.category(), p.pipeline().display(), p.stages().len());
            }
        }
        DiagFormat::Json => {
            let cats: Vec<_> = plans
                .iter()
                .map(|p| serde_json::json!({ "category": p.category(), "pipeline": p.pipeline(), "stages": p.stages().len() }))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "ok": true, "pipelines": cats, "warnings": warnings })
                )
                .unwrap_or_default()
            );
        }
    }
    Ok(Exit::Ok)
}

/// Compiles one pipeline file against a factory, under the category factory.yaml gives it.
fn compile_file(factory: &Factory, path: &Path) -> Result<Plan, Diagnostics> {
    let pipeline: PipelineFile = spec::load_file(FileKind::Pipeline, path)?;
    let key = factory.file.categories.keys().find(|k| k.value == pipeline.category.value);
    factory.compile_pipeline(path, &pipeline, key, None)
}

fn graph(a: &GraphArgs) -> Result<Exit, Failure> {
    let factory = load_factory(&a.factory)?;
    let plans = match (&a.pipeline, &a.category) {
        (Some(p), _) => vec![compile_file(&factory, p)?],
        (None, Some(c)) => vec![factory.compile(c, None)?],
        (None, None) => factory.compile_all()?,
    };
    let mut out = String::new();
    for (i, p) in plans.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match a.format {
            GraphFormat::Text => {
                let _ = writeln!(out, "# {} ({})", p.category(), p.pipeline().display());
                out.push_str(&render::text(p));
            }
            GraphFormat::Dot => out.push_str(&render::dot(p)),
            GraphFormat::Mermaid => out.push_str(&render::mermaid(p)),
        }
    }
    print_out(&out)
}

fn plan(a: &PlanArgs) -> Result<Exit, Failure> {
    let (factory, ticket, route, plan) = a.ticket.compile()?;
    preflight::print(&preflight::check(std::slice::from_ref(&plan), &factory.dir));
    let out = match a.format {
        PlanFormat::Json => {
            let v = serde_json::json!({ "ticket": ticket, "route": { "category": route.category, "reason": route.reason }, "plan": plan });
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        PlanFormat::Text => {
            let mut text = plan_text(&ticket, &route, &plan, &factory.policy);
            let images = preflight::image_lines(&plan, &factory.dir);
            if !images.is_empty() {
                text.push_str("\nimages (lightsout never pulls; `validate` says which are missing here):\n");
                for line in images {
                    let _ = writeln!(text, "  {line}");
                }
            }
            text
        }
    };
    print_out(&out)
}

fn plan_text(ticket: &Ticket, route: &Route, plan: &Plan, policy: &crate::policy::Policy) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Ticket text is printed as data: escaped, so that control sequences cannot reach the terminal.
    let _ = writeln!(out, "ticket    {}: {}", ticket.id.escape_debug(), ticket.title.escape_debug());
    let _ = writeln!(out, "category  {} ({})", plan.category(), crate::diag::printable(&route.reason));
    let _ = writeln!(out, "pipeline  {}", plan.pipeline().display());
    for (k, v) in plan.inputs() {
        let _ = writeln!(out, "input     {k} = {}", crate::diag::printable(&v.to_string()));
    }
    let _ = writeln!(out, "\nstages, in order:");
    for (i, s) in plan.stages().iter().enumerate() {
        let _ = writeln!(out, "{:>3}. {} ({})", i + 1, s.id, s.kind);
        if !s.needs.is_empty() {
            let _ = writeln!(out, "       needs    {}", s.needs.join(", "));
        }
        if let Some(c) = &s.condition {
            let _ = writeln!(out, "       if       {c}");
        }
        match &s.image {
            Some(img) => {
                let _ = writeln!(out, "       image    {} ({})", img.value, img.from);
            }
            None => {
                let _ = writeln!(out, "       runs on  the host (lightsout itself)");
            }
        }
        // Each decision with the rule that made it.
        stage_secrets(&mut out, s, policy);
        if s.network.is_empty() {
            let _ = writeln!(out, "       network  none");
        }
        for (i, host) in s.network.iter().enumerate() {
            let label = if i == 0 { "network " } else { "        " };
            let rule = policy.check_host(host).unwrap_or_else(|r| r.message);
            let _ = writeln!(out, "       {label} {host} ({rule})");
        }
        let (limit_rules, timeout_rules) = policy.ceiling_rules();
        let within = |rules: Vec<String>| {
            if rules.is_empty() {
                format!("{}: no ceiling", policy.name())
            } else {
                format!("within {}", rules.join(", "))
            }
        };
        #[expect(clippy::cast_precision_loss, reason = "mebibytes, for reading")]
        let mib = s.resources.memory_bytes as f64 / f64::from(1u32 << 20);
        let _ = writeln!(
            out,
            "       limits   memory {mib:.0} MiB, {} cpus, {} pids ({})",
            s.resources.cpus,
            s.resources.pids,
            within(limit_rules)
        );
        let _ = writeln!(
            out,
            "       timeout  {} ({})",
            humantime::format_duration(std::time::Duration::from_secs(s.timeout_secs)),
            within(timeout_rules)
        );
        let _ = writeln!(
            out,
            "       workspace {}",
            match s.workspace {
                crate::spec::pipeline::Access::ReadOnly => "read-only",
                crate::spec::pipeline::Access::ReadWrite => "read-write",
            }
        );
        if let crate::plan::StageKind::Ship(ship) = &s.kind {
            let branch = ship.branch.as_deref().unwrap_or(crate::stages::ship::DEFAULT_BRANCH);
            let check = if branch.contains("{{") {
                "a template: checked against the protected branches once rendered, before ship pushes".to_owned()
            } else {
                policy
                    .protected_branch(branch)
                    .map_or_else(|| "not protected".to_owned(), |r| format!("protected by {r}"))
            };
            let _ = writeln!(out, "       branch   {branch} ({check})");
        }
        if let Some(l) = &s.repeat {
            let _ =
                writeln!(out, "       loop     until {} pass, at most {} attempts", l.until.join(", "), l.max_attempts);
        }
    }
    let _ = writeln!(
        out,
        "\ncritical path: {} (at most {})",
        plan.critical_path().join(" -> "),
        humantime::format_duration(std::time::Duration::from_secs(plan.critical_path_secs()))
    );
    out
}

/// A stage's secrets in `plan`: where each comes from, how it is received, the rule that gives it.
fn stage_secrets(out: &mut String, s: &crate::plan::Stage, policy: &crate::policy::Policy) {
    use std::fmt::Write as _;
    if s.secrets.is_empty() {
        let _ = writeln!(out, "       secrets  none");
    }
    for (i, name) in s.secrets.iter().enumerate() {
        let label = if i == 0 { "secrets " } else { "        " };
        let rule = policy.check_secret(name, s.kind.name()).unwrap_or_else(|r| r.message);
        let from = s.secret_sources.get(name).map_or_else(
            || format!("env {name}"),
            |src| {
                src.env
                    .as_ref()
                    .map(|v| format!("env {v}"))
                    .or_else(|| src.file.as_ref().map(|f| format!("file {f}")))
                    .unwrap_or_else(|| "command".into())
            },
        );
        let file =
            s.secret_sources.get(name).and_then(|src| src.mount) == Some(crate::spec::factory::SecretMount::File);
        let how = if file { format!(", as the file /run/secrets/{name}") } else { String::new() };
        let _ = writeln!(out, "       {label} {name} (from {from}{how}; {rule})");
    }
}

fn schema(a: &SchemaArgs) -> Result<Exit, Failure> {
    if let Some(dir) = &a.write {
        std::fs::create_dir_all(dir).map_err(|e| Failure::Io(format!("cannot create {}: {e}", dir.display())))?;
        for kind in FileKind::ALL {
            let path = dir.join(kind.schema_file());
            std::fs::write(&path, kind.schema_text())
                .map_err(|e| Failure::Io(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(Exit::Ok);
    }
    print_out(&a.kind.schema_text())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_out(s: &str) -> Result<Exit, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(e) => Err(Failure::Io(format!("cannot write to standard output: {e}"))),
    }
}

/// Traces of lightsout's own work (Docker calls, git, the egress proxy, the scheduler's
/// decisions) on stderr, for people debugging lightsout itself: off unless `LIGHTSOUT_LOG` sets a
/// filter (`debug`, `lightsout::egress=debug,info`, ...). Never stage output or secret values.
fn init_tracing() {
    let Some(filter) = std::env::var_os("LIGHTSOUT_LOG") else { return };
    let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(filter.to_string_lossy());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
