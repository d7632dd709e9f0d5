//! `factory.yaml`: the repository's factory, its agents and its categories.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pipeline::Resources;
use crate::diag::Located;
pub use crate::plan::{PromptMode, SecretMount, SecretSource, UsageFormat};

/// The factory of one repository: which pipeline serves which kind of ticket, with which agents.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lightsout factory", extend("$id" = "https://lightsout.dev/schema/factory.schema.json"))]
pub struct FactoryFile {
    /// Format version of this file; `1` is the only one this lightsout reads.
    #[schemars(range(min = 1, max = 1))]
    pub version: Located<u32>,
    /// The factory's name, used in run records and reports.
    pub name: Located<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Values every stage gets unless it says otherwise.
    #[serde(default)]
    pub defaults: Defaults,
    /// Agent command lines, by name; `uses: agent` stages pick one with `with.agent`.
    #[serde(default)]
    pub agents: IndexMap<Located<String>, Agent>,
    /// Work categories, tried in order against a ticket.
    pub categories: IndexMap<Located<String>, Category>,
    /// Path of the repository's policy file, relative to this file.
    #[serde(default)]
    pub policy: Option<Located<String>>,
    /// Where each secret's value comes from, by name. A secret named by a stage but not here
    /// comes from the environment variable of the same name.
    #[serde(default)]
    pub secrets: IndexMap<Located<String>, SecretSource>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Container image of stages that name none.
    #[serde(default)]
    pub image: Option<Located<String>>,
    /// Timeout of stages that set none, such as `20m`.
    #[serde(default)]
    pub timeout: Option<Located<String>>,
    /// Resource limits of stages that set none.
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// How to run one agent CLI non-interactively.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// A known agent CLI whose invocation and output format lightsout knows.
    #[serde(default)]
    pub preset: Option<Located<AgentPreset>>,
    /// The command line (overrides the preset's). No shell is involved.
    #[serde(default)]
    pub command: Option<Located<Vec<String>>>,
    /// How the rendered prompt reaches the agent.
    #[serde(default)]
    pub prompt: Option<Located<PromptMode>>,
    /// The format of the agent's output, read for token usage and cost.
    #[serde(default)]
    pub usage: Option<Located<UsageFormat>>,
    /// Image with the agent CLI installed.
    #[serde(default)]
    pub image: Option<Located<String>>,
    /// Secrets the agent needs (an API key), subject to policy.
    #[serde(default)]
    pub secrets: Vec<Located<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentPreset {
    ClaudeCode,
    Codex,
    Aider,
}

/// One work category.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Path of the category's pipeline file, relative to factory.yaml.
    pub pipeline: Located<String>,
    /// Which tickets this category takes. A category without `match` is only chosen by name.
    #[serde(rename = "match", default)]
    pub matcher: Option<Match>,
    /// Image of this category's stages (overrides `defaults.image`).
    #[serde(default)]
    pub image: Option<Located<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A ticket matches when it has any of `labels`, or its title contains any of `title`
/// (case-insensitive).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub labels: Vec<Located<String>>,
    #[serde(default)]
    pub title: Vec<Located<String>>,
}
