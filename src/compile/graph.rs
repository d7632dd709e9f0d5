//! Checks across stages: `needs`, cycles, the agent loop, template variables, and the policy
//! rules that concern the pipeline as a whole.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::kinds::Role;
use super::stage::Context;
use crate::diag::{Code, Diagnostic, Diagnostics, Pos, code, did_you_mean};
use crate::plan::{Stage, StageKind};
use crate::spec::Located;
use crate::spec::pipeline;
use crate::template::{self as templates, ROOTS, STAGE_FIELDS, TICKET_FIELDS};

/// Stage index by id, and for each stage the indexes of the stages it needs.
struct Deps<'a> {
    index: HashMap<&'a str, usize>,
    needs: Vec<Vec<usize>>,
}

impl Deps<'_> {
    /// Whether `ancestor` is (transitively) needed by `stage`.
    fn depends_on(&self, stage: usize, ancestor: usize) -> bool {
        let mut seen = HashSet::new();
        let mut todo = vec![stage];
        while let Some(s) = todo.pop() {
            for &n in &self.needs[s] {
                if n == ancestor {
                    return true;
                }
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        false
    }
}

pub(super) fn check(ctx: &Context<'_>, stages: &[Stage], errors: &mut Diagnostics) {
    let path = ctx.path;
    let specs: Vec<(&Located<String>, &pipeline::Stage)> = ctx.pipeline.stages.iter().collect();
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut needs = vec![Vec::new(); stages.len()];
    for (i, (id, s)) in specs.iter().enumerate() {
        for n in &s.needs {
            match index.get(n.value.as_str()) {
                Some(&j) if j == i => errors.push(
                    Diagnostic::new(path, n.at, format!("stage `{}` needs itself", id.value))
                        .code(code::NEEDS_SELF)
                        .hint("remove it from its own `needs`"),
                ),
                Some(&j) => needs[i].push(j),
                None => errors.push(
                    Diagnostic::new(path, n.at, format!("`needs` names no stage `{}`", n.value))
                        .code(code::NEEDS_UNKNOWN)
                        .maybe_hint(did_you_mean(&n.value, index.keys().copied()).or_else(|| {
                            Some(format!(
                                "stages are: {}",
                                stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                            ))
                        })),
                ),
            }
        }
    }
    let deps = Deps { index, needs };
    check_cycles(path, &specs, &deps, errors);
    check_loops(path, &specs, stages, &deps, errors);
    check_templates(ctx, &specs, stages, &deps, errors);
    check_policy(ctx, stages, &deps, errors);
    check_graded_is_shipped(path, &specs, stages, &deps, errors);
}

/// What `ship` pushes must be what its graders judged: every stage that writes the workspace and
/// may finish before `ship` must come before each of `ship`'s graders.
fn check_graded_is_shipped(
    path: &Path,
    specs: &[(&Located<String>, &pipeline::Stage)],
    stages: &[Stage],
    deps: &Deps<'_>,
    errors: &mut Diagnostics,
) {
    for (i, ship) in stages.iter().enumerate().filter(|(_, s)| s.role == Role::Ship) {
        let graders: Vec<usize> =
            (0..stages.len()).filter(|&g| stages[g].role == Role::Grader && deps.depends_on(i, g)).collect();
        for (w, writer) in stages.iter().enumerate() {
            let writes = writer.workspace == crate::spec::pipeline::Access::ReadWrite
                && !matches!(writer.role, Role::Ship | Role::Grader);
            if !writes || w == i || deps.depends_on(w, i) {
                continue;
            }
            if let Some(&g) = graders.iter().find(|&&g| !deps.depends_on(g, w)) {
                errors.push(
                    Diagnostic::new(path,
                        specs[w].0.at,
                        format!(
                            "stage `{}` writes the workspace but does not come before grader `{}`: `{}` could push a change that was not graded",
                            writer.id, stages[g].id, ship.id
                        ),
                    ).code(code::SHIP_UNGRADED)
                    .hint(format!(
                        "add `{}` to the needs of `{}`, make `{}` need `{}`, or give `{}` `workspace: read`",
                        writer.id, stages[g].id, writer.id, ship.id, writer.id
                    )),
                );
            }
        }
    }
}

fn check_cycles(
    path: &Path,
    specs: &[(&Located<String>, &pipeline::Stage)],
    deps: &Deps<'_>,
    errors: &mut Diagnostics,
) {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(specs.len(), specs.len());
    let nodes: Vec<NodeIndex> = (0..specs.len()).map(|i| g.add_node(i)).collect();
    for (i, ns) in deps.needs.iter().enumerate() {
        for &j in ns {
            g.update_edge(nodes[i], nodes[j], ());
        }
    }
    for scc in tarjan_scc(&g) {
        if scc.len() < 2 {
            continue;
        }
        let members: HashSet<usize> = scc.iter().map(|n| n.index()).collect();
        let Some(&start) = members.iter().min() else {
            continue;
        };
        let cycle = shortest_cycle(start, &members, deps);
        let names: Vec<&str> = cycle.iter().map(|&i| specs[i].0.value.as_str()).collect();
        let first_need = cycle
            .get(1)
            .and_then(|&next| specs[start].1.needs.iter().find(|n| n.value == specs[next].0.value))
            .map_or(specs[start].0.at, |n| n.at);
        errors.push(
            Diagnostic::new(path, first_need, format!("`needs` forms a cycle: {}", names.join(" -> ")))
                .code(code::NEEDS_CYCLE)
                .hint("stages form a DAG; remove one of these needs (an agent loop is `loop:`, not a cycle)"),
        );
    }
}

/// The shortest path of needs from `start` back to itself inside one strongly connected set.
fn shortest_cycle(start: usize, members: &HashSet<usize>, deps: &Deps<'_>) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(s) = queue.pop_front() {
        for &n in &deps.needs[s] {
            if n == start {
                // Walk parents back from `s` to `start`, then close the cycle.
                let mut path = vec![s];
                let mut here = s;
                while here != start {
                    here = parent[&here];
                    path.push(here);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if members.contains(&n) && n != start && !parent.contains_key(&n) {
                parent.insert(n, s);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}

fn check_loops(
    path: &Path,
    specs: &[(&Located<String>, &pipeline::Stage)],
    stages: &[Stage],
    deps: &Deps<'_>,
    errors: &mut Diagnostics,
) {
    for (i, (id, s)) in specs.iter().enumerate() {
        let Some(l) = &s.repeat else { continue };
        for u in &l.value.until {
            let Some(&g) = deps.index.get(u.value.as_str()) else {
                errors.push(
                    Diagnostic::new(path, u.at, format!("`loop.until` names no stage `{}`", u.value))
                        .code(code::LOOP_UNTIL_UNKNOWN)
                        .maybe_hint(did_you_mean(&u.value, deps.index.keys().copied())),
                );
                continue;
            };
            if stages[g].role != Role::Grader {
                errors.push(
                    Diagnostic::new(path, u.at, format!("`loop.until` names `{}`, which is not a grader", u.value))
                        .code(code::LOOP_UNTIL_NOT_GRADER)
                        .hint("name stages that `uses: grade.*`; their verdicts are the loop's feedback"),
                );
            } else if !deps.depends_on(g, i) {
                errors.push(
                    Diagnostic::new(path, u.at, format!("grader `{}` does not run after `{}`", u.value, id.value))
                        .code(code::LOOP_UNTIL_NOT_AFTER)
                        .hint(format!(
                            "add `{}` to the `needs` of `{}` (directly or through other stages)",
                            id.value, u.value
                        )),
                );
            }
        }
    }
}

/// One template found in the pipeline, and how to report a problem in it.
struct Use<'a> {
    source: &'a str,
    file: &'a Path,
    at: Pos,
    /// Line offset of the template's first line in `file` (prompt files start at line 1).
    whole_file: bool,
}

fn check_templates(
    ctx: &Context<'_>,
    specs: &[(&Located<String>, &pipeline::Stage)],
    stages: &[Stage],
    deps: &Deps<'_>,
    errors: &mut Diagnostics,
) {
    let path = ctx.path;
    let inputs: Vec<&str> = ctx.pipeline.inputs.keys().map(Located::as_str).collect();
    let mut prompt_files: Vec<(std::path::PathBuf, String, Pos)> = Vec::new();
    for (i, (_, s)) in specs.iter().enumerate() {
        let mut uses: Vec<Use<'_>> = Vec::new();
        let shell_sources = s.run.iter().map(|l| (l.value.as_str(), l.at)).chain(
            s.with
                .iter()
                .filter(|(k, _)| k.value == "command")
                .filter_map(|(_, v)| v.value.as_str().map(|t| (t, v.at))),
        );
        for (text, at) in shell_sources {
            if let Some((q, tag)) = templates::quoted_placeholder(text) {
                let what = if q == '"' { "double" } else { "single" };
                errors.push(
                    Diagnostic::new(path, at, format!("`{tag}` is inside {what} quotes in a shell command")).code(code::TEMPLATE_QUOTED).hint(
                        "remove the quotes around it: lightsout shell-quotes every value itself, and quoting it again would let its text run as code",
                    ),
                );
            }
        }
        for l in s.run.iter().chain(s.env.values()) {
            if is_template(&l.value) {
                uses.push(Use { source: &l.value, file: path, at: l.at, whole_file: false });
            }
        }
        let mut with_strings: Vec<Located<String>> = Vec::new();
        for (k, v) in &s.with {
            if k.value == "prompt_file" {
                if let Some(p) = v.value.as_str() {
                    let full = ctx.factory.dir.join(p);
                    match crate::spec::read_text(&full) {
                        Ok(text) => prompt_files.push((full, text, v.at)),
                        Err(_) => errors.push(
                            Diagnostic::new(path, v.at, format!("prompt file `{p}` does not exist or cannot be read"))
                                .code(code::PROMPT_FILE_MISSING)
                                .hint("the path is relative to factory.yaml"),
                        ),
                    }
                }
                continue;
            }
            let before = with_strings.len();
            collect_strings(&v.value, v.at, &mut with_strings);
            let literal = super::kinds::find(stages[i].kind.name())
                .and_then(|kind| kind.params.iter().find(|p| p.name == k.value))
                .is_some_and(|p| !p.templated);
            if literal && with_strings[before..].iter().any(|l| is_template(&l.value)) {
                errors.push(
                    Diagnostic::new(path, v.at, format!("`with.{}` of `{}` is not a template: lightsout uses it as it is written", k.value, stages[i].kind.name()))
                        .code(code::TEMPLATE_LITERAL)
                        .hint("write the value itself, without `{{ }}`; in a `with`, templates are rendered in commands, messages, branch names, `fail_to_pass` and the parameters of `grade.jsonschema`"),
                );
                with_strings.truncate(before);
            }
        }
        let mut uses_with: Vec<Use<'_>> = with_strings
            .iter()
            .filter(|l| is_template(&l.value))
            .map(|l| Use { source: &l.value, file: path, at: l.at, whole_file: false })
            .collect();
        uses.append(&mut uses_with);
        let cond = s.condition.as_ref().map(|c| Located::new(format!("{{{{ {} }}}}", strip_braces(&c.value)), c.at));
        if let Some(c) = &cond {
            uses.push(Use { source: &c.value, file: path, at: c.at, whole_file: false });
        }
        let prompts: Vec<(std::path::PathBuf, String, Pos)> = std::mem::take(&mut prompt_files);
        for (file, text, _) in &prompts {
            uses.push(Use { source: text, file, at: Pos::START, whole_file: true });
        }
        for u in &uses {
            check_one(u, i, stages, &inputs, deps, errors);
        }
    }
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// `if:` may be written as `{{ expr }}` or as a bare expression.
fn strip_braces(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")).map_or(t, str::trim)
}

fn collect_strings(v: &serde_json::Value, at: Pos, out: &mut Vec<Located<String>>) {
    match v {
        serde_json::Value::String(s) => out.push(Located::new(s.clone(), at)),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, at, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| collect_strings(i, at, out)),
        _ => {}
    }
}

fn check_one(u: &Use<'_>, stage: usize, stages: &[Stage], inputs: &[&str], deps: &Deps<'_>, errors: &mut Diagnostics) {
    let vars = match templates::variables(u.source) {
        Ok(v) => v,
        Err(e) => {
            let at = if u.whole_file {
                Pos::new(u32::try_from(e.line).unwrap_or(1), 1)
            } else if e.line > 1 {
                Pos::new(u.at.line + u32::try_from(e.line).unwrap_or(1) - 1, 1)
            } else {
                u.at
            };
            errors.push(
                Diagnostic::new(u.file, at, format!("template does not parse: {}", e.message))
                    .code(code::TEMPLATE_SYNTAX)
                    .hint("templates use minijinja (Jinja2) syntax: `{{ inputs.name }}`"),
            );
            return;
        }
    };
    let me = &stages[stage];
    for var in vars {
        let parts: Vec<&str> = var.split('.').collect();
        let problem: Option<(Code, String, Option<String>)> = match parts[0] {
            "inputs" => parts.get(1).filter(|n| !inputs.contains(n)).map(|n| {
                (
                    code::TEMPLATE_INPUT,
                    format!("template reads `inputs.{n}`, but the pipeline declares no input `{n}`"),
                    did_you_mean(n, inputs.iter().copied())
                        .or_else(|| Some(format!("declare it under `inputs:` (`{n}: {{ type: string }}`)"))),
                )
            }),
            "ticket" => parts.get(1).filter(|f| !TICKET_FIELDS.contains(f)).map(|f| {
                (
                    code::TEMPLATE_TICKET_FIELD,
                    format!("`ticket` has no field `{f}`"),
                    did_you_mean(f, TICKET_FIELDS.iter().copied()).or_else(|| {
                        Some(format!(
                            "ticket fields: {}; ticket-specific values are `ticket.fields.<name>`",
                            TICKET_FIELDS.join(", ")
                        ))
                    }),
                )
            }),
            "stages" => stage_ref(&parts, stage, stages, deps),
            "feedback" if me.repeat.is_none() => Some((
                code::TEMPLATE_FEEDBACK,
                format!("`feedback` is only set in stages with `loop`, and `{}` has none", me.id),
                Some("add `loop: {until: [...], max_attempts: N}` or remove `feedback`".into()),
            )),
            "attempt" | "feedback" => None,
            other => Some((
                code::TEMPLATE_UNKNOWN,
                format!("undefined template variable `{other}`"),
                did_you_mean(other, ROOTS.iter().copied())
                    .or_else(|| Some(format!("templates can read: {}", ROOTS.join(", ")))),
            )),
        };
        if let Some((code, msg, hint)) = problem {
            errors.push(Diagnostic::new(u.file, u.at, msg).code(code).maybe_hint(hint));
        }
    }
}

fn stage_ref(parts: &[&str], me: usize, stages: &[Stage], deps: &Deps<'_>) -> Option<(Code, String, Option<String>)> {
    let id = parts.get(1)?;
    let Some(&j) = deps.index.get(id) else {
        return Some((
            code::TEMPLATE_STAGE_UNKNOWN,
            format!("template reads `stages.{id}`, but there is no stage `{id}`"),
            did_you_mean(id, deps.index.keys().copied()),
        ));
    };
    if !deps.depends_on(me, j) {
        return Some((
            code::TEMPLATE_STAGE_NOT_BEFORE,
            format!("template reads `stages.{id}`, but `{}` does not run after `{id}`", stages[me].id),
            Some(format!("add `{id}` to `needs`")),
        ));
    }
    let field = parts.get(2)?;
    if !STAGE_FIELDS.contains(field) {
        return Some((
            code::TEMPLATE_STAGE_FIELD,
            format!("`stages.{id}` has no field `{field}`"),
            did_you_mean(field, STAGE_FIELDS.iter().copied()),
        ));
    }
    let out = parts.get(3)?;
    let declared = &stages[j].outputs;
    if *field == "outputs" && !declared.iter().any(|o| o == out) {
        return Some((
            code::TEMPLATE_OUTPUT,
            format!("stage `{id}` declares no output `{out}`"),
            did_you_mean(out, declared.iter().map(String::as_str))
                .or_else(|| Some(format!("add `{out}` to the `outputs` of `{id}`"))),
        ));
    }
    None
}

fn check_policy(ctx: &Context<'_>, stages: &[Stage], deps: &Deps<'_>, errors: &mut Diagnostics) {
    let path = ctx.path;
    let policy = &ctx.factory.policy;
    let cat_at = ctx.pipeline.category.at;
    for (grader, rule) in policy.required_graders(ctx.category) {
        if !stages.iter().any(|s| s.kind.name() == grader) {
            errors.push(
                Diagnostic::new(path, cat_at, format!("category `{}` must have a `{grader}` stage", ctx.category))
                    .code(code::POLICY_GRADER)
                    .hint(format!("policy requires it ({rule}); add a stage with `uses: {grader}`")),
            );
        }
    }
    let specs: Vec<(&Located<String>, &pipeline::Stage)> = ctx.pipeline.stages.iter().collect();
    if let Some(rule) = policy.approval_rule(ctx.category) {
        for (i, s) in stages.iter().enumerate().filter(|(_, s)| s.role == Role::Ship) {
            let gated = stages.iter().enumerate().any(|(j, g)| g.role == Role::Approve && deps.depends_on(i, j));
            if !gated {
                errors.push(
                    Diagnostic::new(path, specs[i].0.at, format!("`{}` ships without human approval", s.id))
                        .code(code::POLICY_APPROVAL)
                        .hint(format!(
                            "policy requires approval for `{}` ({rule}); add a `uses: approve` stage to its needs",
                            ctx.category
                        )),
                );
            }
        }
    }
    for (i, s) in stages.iter().enumerate() {
        let StageKind::Ship(crate::plan::kind::Ship { branch: Some(branch), .. }) = &s.kind else {
            continue;
        };
        if branch.contains("{{") {
            continue;
        }
        if let Some(rule) = policy.protected_branch(branch) {
            let at = specs[i].1.with.get("branch").map_or(specs[i].0.at, |b| b.at);
            errors.push(
                Diagnostic::new(path, at, format!("`{}` would push to protected branch `{branch}`", s.id))
                    .code(code::POLICY_BRANCH)
                    .hint(format!("policy protects {rule}; ship to a branch such as `lightsout/{{{{ ticket.id }}}}`")),
            );
        }
    }
}
