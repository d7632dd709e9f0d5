//! A pipeline file: the stages one work category runs, as the user wrote them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::located::Located;

/// A pipeline: the stages that turn one ticket of a category into a graded, shippable change.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lightsout pipeline", extend("$id" = "https://lightsout.dev/schema/pipeline.schema.json"))]
pub struct PipelineFile {
    /// Format version of this file; `1` is the only one this lightsout reads.
    #[schemars(range(min = 1, max = 1))]
    pub version: Located<u32>,
    /// The work category this pipeline serves (bugfix, migration, api, codegen, iac, perf, feature, ...).
    pub category: Located<String>,
    /// What this pipeline is for, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// Values a ticket must provide (from its fields), available to templates as `inputs.<name>`.
    #[serde(default)]
    pub inputs: IndexMap<Located<String>, InputSpec>,
    /// The stages, by id. `needs` orders them into a DAG; the rest run in parallel.
    pub stages: IndexMap<Located<String>, Stage>,
}

/// One input a ticket must (or may) provide.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The type the ticket's value must have.
    #[serde(rename = "type", default)]
    pub ty: Option<Located<InputType>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Whether a ticket without this field is refused (default: true unless a default is given).
    #[serde(default)]
    pub required: Option<Located<bool>>,
    /// The value used when the ticket does not give one.
    #[serde(default)]
    pub default: Option<Located<serde_json::Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Number,
    Boolean,
    List,
}

impl InputType {
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::List => "list",
        }
    }
}

/// One stage: either a shell command (`run`) or a built-in kind (`uses` with `with`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default)]
    pub description: Option<String>,
    /// Stages that must finish before this one starts.
    #[serde(default)]
    pub needs: Vec<Located<String>>,
    /// A template expression; the stage is skipped (and recorded as skipped) when it is false.
    #[serde(rename = "if", default)]
    pub condition: Option<Located<String>>,
    /// A shell command run in the stage's container. Template values are shell-quoted.
    #[serde(default)]
    pub run: Option<Located<String>>,
    /// A built-in stage kind: context, agent, grade.tests, grade.diff, grade.jsonschema, grade.command, ..., approve, ship.
    #[serde(default)]
    pub uses: Option<Located<String>>,
    /// Parameters of the `uses` kind.
    #[serde(default)]
    pub with: IndexMap<Located<String>, Located<serde_json::Value>>,
    /// Container image (defaults to the category's, then the factory's).
    #[serde(default)]
    pub image: Option<Located<String>>,
    /// Environment variables; values are templates.
    #[serde(default)]
    pub env: IndexMap<Located<String>, Located<String>>,
    /// Names of secrets this stage needs; policy decides whether it gets them.
    #[serde(default)]
    pub secrets: Vec<Located<String>>,
    /// Network access. Absent means no network at all.
    #[serde(default)]
    pub network: Option<Network>,
    /// Longest the stage may run, such as `90s`, `20m`, `1h`.
    #[serde(default)]
    pub timeout: Option<Located<String>>,
    /// How often to retry after an infrastructure fault (never after a failing command).
    #[serde(default)]
    #[schemars(range(max = 10))]
    pub retries: Option<Located<u32>>,
    /// Whether the stage is expected to succeed (default) or to fail, like a reproducing test.
    #[serde(default)]
    pub expect: Option<Located<Expect>>,
    /// Re-run this (agent) stage with the failing graders' feedback until they pass.
    #[serde(rename = "loop", default)]
    pub repeat: Option<Located<LoopSpec>>,
    /// Names of the outputs this stage writes to `$LIGHTSOUT_OUTPUT`.
    #[serde(default)]
    pub outputs: Vec<Located<String>>,
    /// Resource limits for the stage's container.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Access to `/workspace` (graders default to read-only, others to read-write).
    #[serde(default)]
    pub workspace: Option<Located<Access>>,
}

/// Network access for a stage: only the listed `host:port`s, through the runner's proxy.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Host names (optionally `host:port`, default port 443) the stage may reach.
    pub allow: Vec<Located<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Success,
    Failure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// The bounded agent loop.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    /// Grader stages downstream of this one that must all pass.
    pub until: Vec<Located<String>>,
    /// Attempts in all, the first included.
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: Located<u32>,
}

/// Resource limits; policy sets the ceilings.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory, such as `512m` or `2g`.
    #[serde(default)]
    pub memory: Option<Located<String>>,
    /// CPUs, such as `1.5`.
    #[serde(default)]
    pub cpus: Option<Located<f64>>,
    /// Most processes and threads at once.
    #[serde(default)]
    pub pids: Option<Located<u32>>,
}
