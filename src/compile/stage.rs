//! Resolving one stage: its kind and parameters, image, limits, secrets and network, each
//! checked against policy.

use std::path::Path;

use indexmap::IndexMap;

use super::access::{image_of, limits, network_of, secret_sources_of, secrets_of, timeout};
use super::kinds::{self, Role};
use super::{Factory, check_name};
use crate::diag::{Diagnostic, Diagnostics, code, did_you_mean};
use crate::plan::{Loop, Stage, StageKind};
use crate::spec::pipeline::{self, Access, Expect};
use crate::spec::{Located, PipelineFile};

pub(super) struct Context<'a> {
    pub factory: &'a Factory,
    pub path: &'a Path,
    pub pipeline: &'a PipelineFile,
    pub category: &'a str,
    pub category_image: Option<&'a Located<String>>,
}

pub(super) fn resolve_all(ctx: &Context<'_>, errors: &mut Diagnostics) -> Vec<Stage> {
    if ctx.pipeline.stages.is_empty() {
        errors.push(
            Diagnostic::new(ctx.path, ctx.pipeline.version.at, "the pipeline has no stages")
                .code(code::STAGES_EMPTY)
                .hint("add at least one stage under `stages:`"),
        );
    }
    ctx.pipeline.stages.iter().map(|(id, s)| resolve(ctx, id, s, errors)).collect()
}

fn resolve(ctx: &Context<'_>, id: &Located<String>, s: &pipeline::Stage, errors: &mut Diagnostics) -> Stage {
    check_name(ctx.path, id, "stage", errors);
    let kind = kind_of(ctx, id, s, errors);
    let kind_name = s.uses.as_ref().map_or("run", |u| u.value.as_str()).to_owned();
    let role = kind.map_or(Role::Command, |k| k.role);
    check_with_of(ctx, id, s, kind, errors);
    let agent = agent_of(ctx, s, role, errors);
    let image = image_of(ctx, id, s, role, agent, &kind_name, errors);
    let (secrets, mounts) = secrets_of(ctx, id, s, agent, &kind_name, errors);
    let network = network_of(ctx, id, s, errors);
    let timeout_secs = timeout(ctx, s, errors);
    let resources = limits(ctx, s.resources.as_ref(), errors);
    let (expect, repeat, workspace) = expect_loop_workspace(ctx, id, s, role, &kind_name, errors);
    check_outputs_and_env(ctx, s, errors);
    let stage_kind = stage_kind(ctx, id, &kind_name, s, errors);
    let implied = stage_kind.implied_outputs();
    let factory_dir = &ctx.factory.dir;
    let agent_call = agent.and_then(|a| {
        let name = s.with.get("agent").and_then(|v| v.value.as_str()).unwrap_or_default().to_owned();
        let prompt = match (s.with.get("prompt"), s.with.get("prompt_file")) {
            (Some(p), _) => p.value.as_str().unwrap_or_default().to_owned(),
            (None, Some(f)) => crate::spec::read_text(&factory_dir.join(f.value.as_str().unwrap_or_default())).ok()?,
            (None, None) => String::new(),
        };
        Some(agent_call(name, a, prompt))
    });
    let secret_sources = secret_sources_of(ctx, &secrets, &mounts);
    Stage {
        secret_sources,
        agent: agent_call,
        id: id.value.clone(),
        kind: stage_kind,
        role,
        needs: dedup(s.needs.iter().map(|n| n.value.clone())),
        condition: s.condition.as_ref().map(|c| c.value.clone()),
        run: s.run.as_ref().map(|r| r.value.clone()),
        image,
        env: s.env.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect(),
        secrets,
        network,
        timeout_secs,
        retries: s.retries.as_ref().map_or(0, |r| r.value),
        expect,
        repeat,
        outputs: {
            let mut outs: Vec<String> = s.outputs.iter().map(|o| o.value.clone()).collect();
            for implied in implied {
                if !outs.iter().any(|o| o == implied) {
                    outs.push((*implied).to_owned());
                }
            }
            outs
        },
        resources,
        workspace,
    }
}

/// The stage's kind: exactly one of `run` and `uses`, and a `uses` that names a kind.
fn kind_of(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    errors: &mut Diagnostics,
) -> Option<&'static kinds::Kind> {
    let path = ctx.path;
    match (&s.run, &s.uses) {
        (Some(_), Some(uses)) => {
            errors.push(
                Diagnostic::new(path, uses.at, format!("stage `{}` has both `run` and `uses`", id.value))
                    .code(code::STAGE_RUN_AND_USES)
                    .hint("a stage is either a command (`run`) or a built-in kind (`uses`); split it in two"),
            );
            None
        }
        (None, None) => {
            errors.push(
                Diagnostic::new(path, id.at, format!("stage `{}` has neither `run` nor `uses`", id.value))
                    .code(code::STAGE_NO_RUN_OR_USES)
                    .hint("add `run: <command>` or `uses: <kind>` (see `lightsout schema pipeline`)"),
            );
            None
        }
        (Some(_), None) => None,
        (None, Some(uses)) => {
            let k = kinds::find(&uses.value);
            if k.is_none() {
                errors.push(
                    Diagnostic::new(path, uses.at, format!("unknown stage kind `{}`", uses.value))
                        .code(code::KIND_UNKNOWN)
                        .maybe_hint(did_you_mean(&uses.value, kinds::names()).or_else(|| {
                            Some(format!("known kinds: {}", kinds::names().collect::<Vec<_>>().join(", ")))
                        })),
                );
            }
            k
        }
    }
}

/// `with` parameters: those of the kind, of the right types; none on a `run` stage.
fn check_with_of(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    kind: Option<&'static kinds::Kind>,
    errors: &mut Diagnostics,
) {
    let path = ctx.path;
    match kind {
        Some(k) => check_with(path, id, k, &s.with, errors),
        None if s.run.is_some() => {
            if let Some((first, _)) = s.with.first() {
                errors.push(
                    Diagnostic::new(
                        path,
                        first.at,
                        format!("stage `{}` has `with`, but `with` belongs to `uses` stages", id.value),
                    )
                    .code(code::WITH_ON_RUN)
                    .hint("pass values to a command through `env:` or the command line"),
                );
            }
        }
        None => {}
    }
}

/// An agent stage's agent, which factory.yaml must define.
fn agent_of<'f>(
    ctx: &Context<'f>,
    s: &pipeline::Stage,
    role: Role,
    errors: &mut Diagnostics,
) -> Option<&'f crate::spec::factory::Agent> {
    let path = ctx.path;
    let factory = &ctx.factory.file;
    if role == Role::Agent {
        s.with.get("agent").and_then(|v| v.value.as_str().map(|name| (name, v.at))).and_then(|(name, at)| {
            let found = factory.agents.get(name);
            if found.is_none() {
                errors.push(
                    Diagnostic::new(path, at, format!("agent `{name}` is not defined in factory.yaml"))
                        .code(code::AGENT_UNKNOWN)
                        .maybe_hint(
                            did_you_mean(name, factory.agents.keys().map(Located::as_str))
                                .or_else(|| Some("define it under `agents:` in factory.yaml".into())),
                        ),
                );
            }
            found
        })
    } else {
        None
    }
}

/// `expect`, `loop` and `workspace`, each where it belongs.
fn expect_loop_workspace(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    role: Role,
    kind_name: &str,
    errors: &mut Diagnostics,
) -> (Expect, Option<Loop>, Access) {
    let path = ctx.path;
    let expect = s.expect.as_ref().map_or(Expect::Success, |e| e.value);
    if let Some(e) = s.expect.as_ref().filter(|e| e.value == Expect::Failure)
        && !matches!(kind_name, "run" | "grade.command")
    {
        errors.push(
            Diagnostic::new(path, e.at, format!("`expect: failure` is for commands, not `{kind_name}` stages"))
                .code(code::EXPECT_NOT_COMMAND)
                .hint("use it on a `run` or `grade.command` stage, such as the reproducing test"),
        );
    }
    let repeat = s.repeat.as_ref().map(|l| {
        if role != Role::Agent {
            errors.push(
                Diagnostic::new(
                    path,
                    l.at,
                    format!("`loop` re-runs an agent, but stage `{}` is `{kind_name}`", id.value),
                )
                .code(code::LOOP_NOT_AGENT)
                .hint("put `loop` on the `uses: agent` stage whose work the graders check"),
            );
        }
        if l.value.until.is_empty() {
            errors.push(
                Diagnostic::new(path, l.at, "`loop.until` names no grader")
                    .code(code::LOOP_UNTIL_EMPTY)
                    .hint("list the grader stages that must pass"),
            );
        }
        Loop {
            until: l.value.until.iter().map(|u| u.value.clone()).collect(),
            max_attempts: l.value.max_attempts.value,
        }
    });
    let workspace = match (&s.workspace, role) {
        (Some(w), Role::Grader) if w.value == Access::ReadWrite => {
            errors.push(
                Diagnostic::new(path, w.at, "graders see the workspace read-only")
                    .code(code::WORKSPACE_GRADER_WRITES)
                    .hint("remove `workspace: read-write`; a grader that could write could make itself pass"),
            );
            Access::ReadOnly
        }
        (Some(w), _) => w.value,
        (None, Role::Grader | Role::Context | Role::Approve) => Access::ReadOnly,
        (None, _) => Access::ReadWrite,
    };
    (expect, repeat, workspace)
}

/// Output names are identifiers; `env` names can be set and are not lightsout's.
fn check_outputs_and_env(ctx: &Context<'_>, s: &pipeline::Stage, errors: &mut Diagnostics) {
    let path = ctx.path;
    for out in &s.outputs {
        check_name(path, out, "output", errors);
    }
    for key in s.env.keys() {
        let ok = key.value.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok || key.value.starts_with("LIGHTSOUT_") {
            errors.push(
                Diagnostic::new(
                    path,
                    key.at,
                    format!("`{}` cannot be set as an environment variable", key.value.escape_debug()),
                )
                .code(code::ENV_NAME)
                .hint("use letters, digits and `_`; names starting with LIGHTSOUT_ are reserved"),
            );
        }
    }
}

/// The stage's typed kind, from `with:` as checked against the kinds table.
fn stage_kind(
    ctx: &Context<'_>,
    id: &Located<String>,
    kind_name: &str,
    s: &pipeline::Stage,
    errors: &mut Diagnostics,
) -> StageKind {
    let mut with: indexmap::IndexMap<String, serde_json::Value> =
        s.with.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    // The tests a candidate is graded with are never the agent's: unless the stage names
    // them, they are the usual test locations and the policy's protected paths, both.
    if kind_name == "grade.tests" && !with.contains_key("test_files") {
        let mut files: Vec<String> = crate::plan::DEFAULT_TEST_FILES.iter().map(|s| (*s).to_owned()).collect();
        files.extend(ctx.factory.policy.protected_paths().into_iter().map(str::to_owned));
        files.dedup();
        with.insert("test_files".into(), serde_json::json!(files));
    }
    if s.uses.is_none() {
        with.clear();
    }
    StageKind::from_parts(kind_name, with).unwrap_or_else(|e| {
        // The kinds table has reported what is wrong with `with`; this is only what it missed.
        if errors.is_empty() {
            errors.push(Diagnostic::new(ctx.path, id.at, format!("stage `{}`: {e}", id.value)).code(code::WITH_TYPE));
        }
        StageKind::Run
    })
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn check_with(
    path: &Path,
    id: &Located<String>,
    kind: &kinds::Kind,
    with: &IndexMap<Located<String>, Located<serde_json::Value>>,
    errors: &mut Diagnostics,
) {
    for (key, value) in with {
        match kind.params.iter().find(|p| p.name == key.value) {
            None => errors.push(
                Diagnostic::new(path, key.at, format!("`{}` takes no parameter `{}`", kind.name, key.value))
                    .code(code::WITH_UNKNOWN)
                    .maybe_hint(did_you_mean(&key.value, kind.params.iter().map(|p| p.name)).or_else(|| {
                        Some(format!(
                            "`{}` takes: {}",
                            kind.name,
                            kind.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                        ))
                    })),
            ),
            Some(p) if !p.ty.accepts(&value.value) => errors.push(
                Diagnostic::new(
                    path,
                    value.at,
                    format!("`with.{}` of `{}` must be {}", p.name, kind.name, p.ty.describe()),
                )
                .code(code::WITH_TYPE),
            ),
            Some(p)
                if kind.name == "grade.tests"
                    && p.name == "format"
                    && value.value.as_str().and_then(crate::plan::kind::TestFormat::parse).is_none() =>
            {
                errors.push(
                    Diagnostic::new(
                        path,
                        value.at,
                        format!(
                            "`with.format` of `grade.tests` must be one of {}",
                            crate::plan::kind::TestFormat::NAMES.join(", ")
                        ),
                    )
                    .code(code::WITH_TYPE),
                );
            }
            Some(_) => {}
        }
    }
    for p in kind.params.iter().filter(|p| p.required) {
        if !with.contains_key(p.name) {
            errors.push(
                Diagnostic::new(
                    path,
                    id.at,
                    format!("stage `{}` (`{}`) is missing `with.{}`", id.value, kind.name, p.name),
                )
                .code(code::WITH_MISSING)
                .hint(format!("add `{}: ...` under `with:`", p.name)),
            );
        }
    }
    if kind.name == "agent" && !with.contains_key("prompt") && !with.contains_key("prompt_file") {
        errors.push(
            Diagnostic::new(path, id.at, format!("agent stage `{}` has no prompt", id.value))
                .code(code::AGENT_NO_PROMPT)
                .hint("add `prompt:` or `prompt_file:` under `with:`"),
        );
    }
}

/// The invocation of an agent: its preset's, with the factory's `command`, `prompt` and `usage`
/// overriding. Presets use each CLI's documented non-interactive mode.
fn agent_call(name: String, a: &crate::spec::factory::Agent, prompt: String) -> crate::plan::AgentCall {
    use crate::spec::factory::{AgentPreset, PromptMode, UsageFormat};
    let preset = a.preset.as_ref().map(|p| p.value);
    let (argv, mode, usage): (Vec<&str>, PromptMode, UsageFormat) = match preset {
        Some(AgentPreset::ClaudeCode) => (
            vec!["claude", "-p", "--output-format", "stream-json", "--verbose"],
            PromptMode::Stdin,
            UsageFormat::ClaudeStreamJson,
        ),
        Some(AgentPreset::Codex) => (vec!["codex", "exec", "--json", "-"], PromptMode::Stdin, UsageFormat::CodexJson),
        Some(AgentPreset::Aider) => {
            (vec!["aider", "--yes-always", "--no-auto-commits", "--message-file"], PromptMode::File, UsageFormat::None)
        }
        None => (Vec::new(), PromptMode::Stdin, UsageFormat::None),
    };
    crate::plan::AgentCall {
        name,
        argv: a.command.as_ref().map_or_else(|| argv.iter().map(|s| (*s).to_owned()).collect(), |c| c.value.clone()),
        prompt_mode: a.prompt.as_ref().map_or(mode, |p| p.value),
        usage: a.usage.as_ref().map_or(usage, |u| u.value),
        prompt,
    }
}
