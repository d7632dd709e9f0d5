//! A pipeline file: the stages one work category runs, as the user wrote them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::Located;
pub use crate::plan::{Access, Expect};

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
    /// Secrets this stage needs: a name, or `{name, as: env|file}`; policy decides whether it
    /// gets them.
    #[serde(default)]
    pub secrets: Vec<Located<SecretRef>>,
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

/// A secret a stage asks for: `NAME`, or `{ name: NAME, as: file }` to choose how it receives
/// it (over the provider's `as:` in factory.yaml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub mount: Option<super::factory::SecretMount>,
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret's name, or a map with `name` and `as`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretRef, E> {
                Ok(SecretRef { name: v.to_owned(), mount: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let (mut name, mut mount) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "as" => mount = Some(map.next_value::<super::factory::SecretMount>()?),
                        other => return Err(serde::de::Error::unknown_field(other, &["name", "as"])),
                    }
                }
                let name = name.ok_or_else(|| serde::de::Error::missing_field("name"))?;
                Ok(SecretRef { name, mount })
            }
        }
        d.deserialize_any(Visit)
    }
}

impl JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mount = generator.subschema_for::<super::factory::SecretMount>();
        schemars::json_schema!({
            "description": "A secret's name, or `{name, as}` to receive it as an environment variable or a file.",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": { "name": { "type": "string" }, "as": mount },
                    "required": ["name"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// Network access for a stage: only the listed `host:port`s, through the runner's proxy.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Host names (optionally `host:port`, default port 443) the stage may reach.
    pub allow: Vec<Located<String>>,
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
