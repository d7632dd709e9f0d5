//! The compiler: a factory, its policy and a pipeline in; an immutable [`Plan`] out.
//!
//! Every check runs and every problem is collected, so one `validate` shows all of them, sorted,
//! each with <file:line:column>, a reason and a hint.

mod access;
mod graph;
pub mod kinds;
mod route;
mod stage;
mod ticket;
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use route::{Route, fill_inputs, route};

use crate::diag::{Diagnostic, Diagnostics, code, did_you_mean};
use crate::plan::Plan;
use crate::policy::Policy;
use crate::spec::{self, FactoryFile, FileKind, Located, PipelineFile};
use crate::ticket::Ticket;

/// Reads and checks a policy file: its rules, and its memory and timeout ceilings as numbers.
pub fn load_policy(path: &Path) -> Result<Policy, Diagnostics> {
    let rules: crate::policy::PolicyFile = spec::load_file(FileKind::Policy, path)?;
    let mut errors = Diagnostics::default();
    let ceilings = rules.resources.as_ref();
    let memory_bytes =
        ceilings.and_then(|c| c.memory.as_ref()).and_then(|m| units::size(path, m).map_err(|d| errors.push(d)).ok());
    let timeout_secs = ceilings
        .and_then(|c| c.timeout.as_ref())
        .and_then(|t| units::duration(path, t).map(|d| d.as_secs()).map_err(|d| errors.push(d)).ok());
    errors.into_result(Policy::from_file(path, rules, crate::policy::Limits { memory_bytes, timeout_secs }))
}

/// A loaded factory: `factory.yaml` and the policy it names.
#[derive(Debug)]
pub struct Factory {
    /// The directory of factory.yaml; pipeline and prompt paths are relative to it.
    pub dir: PathBuf,
    pub path: PathBuf,
    pub file: FactoryFile,
    pub policy: Policy,
}

impl Factory {
    /// Loads factory.yaml and its policy, checking what can be checked without a pipeline.
    pub fn load(path: &Path) -> Result<Factory, Diagnostics> {
        Factory::load_with(path, None)
    }

    /// Loads factory.yaml and its policy under an organisation's policy (`--policy`), which takes
    /// precedence: the repository's policy can only tighten it.
    pub fn load_with(path: &Path, org_policy: Option<&Path>) -> Result<Factory, Diagnostics> {
        let file: FactoryFile = spec::load_file(FileKind::Factory, path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut errors = Diagnostics::default();
        let policy = match &file.policy {
            None => Policy::default(),
            Some(p) => {
                let policy_path = dir.join(&p.value);
                if policy_path.is_file() {
                    load_policy(&policy_path).unwrap_or_else(|ds| {
                        errors.extend(ds);
                        Policy::default()
                    })
                } else {
                    errors.push(
                        Diagnostic::new(path, p.at, format!("policy file `{}` does not exist", p.value))
                            .code(code::POLICY_FILE_MISSING)
                            .hint("create it (`lightsout init` writes one) or fix the path, relative to factory.yaml"),
                    );
                    Policy::default()
                }
            }
        };
        let policy = match org_policy {
            None => policy,
            Some(org) => match load_policy(org) {
                Ok(o) => policy.under(o),
                Err(ds) => {
                    errors.extend(ds);
                    policy
                }
            },
        };
        let factory = Factory { dir, path: path.to_path_buf(), file, policy };
        factory.check(&mut errors);
        errors.into_result(factory)
    }

    fn check(&self, errors: &mut Diagnostics) {
        let f = &self.file;
        for (name, src) in &f.secrets {
            let n =
                usize::from(src.env.is_some()) + usize::from(src.file.is_some()) + usize::from(src.command.is_some());
            if n != 1 {
                errors.push(
                    Diagnostic::new(&self.path, name.at, format!("secret `{}` needs exactly one provider", name.value))
                        .code(code::SECRET_PROVIDER)
                        .hint("give one of `env: VAR`, `file: PATH` or `command: [program, args...]`"),
                );
            }
            if src.command.as_ref().is_some_and(Vec::is_empty) {
                errors.push(
                    Diagnostic::new(&self.path, name.at, format!("secret `{}` has an empty command", name.value))
                        .code(code::SECRET_EMPTY_COMMAND),
                );
            }
        }
        for key in [&f.defaults.timeout].into_iter().flatten() {
            if let Err(d) = units::duration(&self.path, key) {
                errors.push(d);
            }
        }
        for (name, agent) in &f.agents {
            if agent.preset.is_none() && agent.command.is_none() {
                errors.push(
                    Diagnostic::new(
                        &self.path,
                        name.at,
                        format!("agent `{}` has neither `preset` nor `command`", name.value),
                    )
                    .code(code::AGENT_NO_COMMAND)
                    .hint("set `preset: claude-code` (or codex, aider), or give the `command` to run"),
                );
            }
            if let Some(cmd) = &agent.command
                && cmd.value.is_empty()
            {
                errors.push(
                    Diagnostic::new(&self.path, cmd.at, format!("agent `{}` has an empty `command`", name.value))
                        .code(code::AGENT_EMPTY_COMMAND),
                );
            }
        }
        for (name, cat) in &f.categories {
            check_name(&self.path, name, "category", errors);
            if !self.dir.join(&cat.pipeline.value).is_file() {
                errors.push(
                    Diagnostic::new(
                        &self.path,
                        cat.pipeline.at,
                        format!("pipeline file `{}` does not exist", cat.pipeline.value),
                    )
                    .code(code::PIPELINE_FILE_MISSING)
                    .hint(
                        "fix the path (relative to factory.yaml), or run `lightsout init` for the built-in pipelines",
                    ),
                );
            }
        }
    }

    pub fn category_names(&self) -> impl Iterator<Item = &str> {
        self.file.categories.keys().map(Located::as_str)
    }

    /// Compiles the pipeline of `category`, with inputs from `ticket` when one is given.
    pub fn compile(&self, category: &str, ticket: Option<&Ticket>) -> Result<Plan, Diagnostics> {
        let Some((key, cat)) = self.file.categories.get_key_value(category) else {
            return Err(Diagnostic::new(&self.path, self.file.name.at, format!("there is no category `{category}`"))
                .code(code::CATEGORY_UNKNOWN)
                .maybe_hint(did_you_mean(category, self.category_names()).or_else(|| {
                    Some(format!("categories are: {}", self.category_names().collect::<Vec<_>>().join(", ")))
                }))
                .into());
        };
        let path = self.dir.join(&cat.pipeline.value);
        let pipeline: PipelineFile = spec::load_file(FileKind::Pipeline, &path)?;
        self.compile_pipeline(&path, &pipeline, Some(key), ticket)
    }

    /// Compiles a loaded pipeline. `category` is the factory's key that names it, if any.
    pub fn compile_pipeline(
        &self,
        path: &Path,
        pipeline: &PipelineFile,
        category: Option<&Located<String>>,
        ticket: Option<&Ticket>,
    ) -> Result<Plan, Diagnostics> {
        let mut errors = Diagnostics::default();
        if let Some(key) = category
            && key.value != pipeline.category.value
        {
            errors.push(
                Diagnostic::new(
                    path,
                    pipeline.category.at,
                    format!(
                        "this pipeline says `category: {}`, but factory.yaml uses it for `{}`",
                        pipeline.category.value, key.value
                    ),
                )
                .code(code::CATEGORY_MISMATCH)
                .hint("make the two names agree"),
            );
        }
        let cat_name = category.map_or(pipeline.category.value.as_str(), |k| k.value.as_str());
        let cat_spec = self.file.categories.get(cat_name);
        let ctx = stage::Context {
            factory: self,
            path,
            pipeline,
            category: cat_name,
            category_image: cat_spec.and_then(|c| c.image.as_ref()),
        };
        let stages = stage::resolve_all(&ctx, &mut errors);
        graph::check(&ctx, &stages, &mut errors);
        let inputs = match ticket {
            Some(t) => fill_inputs(path, pipeline, t).unwrap_or_else(|ds| {
                errors.extend(ds);
                BTreeMap::new()
            }),
            None => BTreeMap::new(),
        };
        if !errors.is_empty() {
            return Err(errors.finish());
        }
        let plan = Plan::seal(self.file.name.value.clone(), cat_name.to_owned(), path.to_path_buf(), stages, inputs);
        // `graph::check` reported any cycle or dangling need, so sealing cannot fail here; if it
        // ever does, say so instead of panicking.
        plan.ok_or_else(|| {
            Diagnostic::new(path, pipeline.category.at, "internal error: the stages do not form a DAG after checking")
                .code(code::INTERNAL_BUG)
                .into()
        })
    }

    /// Compiles every category's pipeline, collecting the problems of all of them.
    pub fn compile_all(&self) -> Result<Vec<Plan>, Diagnostics> {
        let mut plans = Vec::new();
        let mut errors = Diagnostics::default();
        for name in self.category_names() {
            match self.compile(name, None) {
                Ok(p) => plans.push(p),
                Err(ds) => errors.extend(ds),
            }
        }
        errors.into_result(plans)
    }
}

/// Stage ids, category and output names are identifiers, so templates can say `stages.x.outputs.y`.
pub(crate) fn check_name(path: &Path, name: &Located<String>, what: &str, errors: &mut Diagnostics) {
    let ok = name.value.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        let fixed: String = name.value.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        errors.push(
            Diagnostic::new(path, name.at, format!("{what} name `{}` is not an identifier", name.value.escape_debug())).code(code::NAME_INVALID)
                .hint(format!("use letters, digits and `_`, starting with a letter, such as `{fixed}`; templates refer to it as a name")),
        );
    }
}
