//! `policy.yaml`: the rules humans set and pipelines cannot override.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::diag::Located;

/// Policy the factory obeys. Anything not allowed here is refused.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lightsout policy", extend("$id" = "https://lightsout.dev/schema/policy.schema.json"))]
pub struct PolicyFile {
    /// Format version of this file; `1` is the only one this lightsout reads.
    #[schemars(range(min = 1, max = 1))]
    pub version: Located<u32>,
    /// Images stages may use, as patterns (`*` matches anything). Absent: any image.
    #[serde(default)]
    pub images: Option<ImagePolicy>,
    /// Secrets by name, with the stage kinds (`run`, `agent`, `ship`, `grade.*`, ...) that may see each.
    /// A secret not listed here is given to no stage.
    #[serde(default)]
    pub secrets: IndexMap<Located<String>, SecretRule>,
    /// Hosts stages may reach through the egress proxy. Absent: no stage gets a network.
    #[serde(default)]
    pub network: Option<NetworkPolicy>,
    /// Ceilings on every stage's resources and timeout.
    #[serde(default)]
    pub resources: Option<Ceilings>,
    /// Grader kinds each category's pipeline must contain.
    #[serde(default)]
    pub required_graders: IndexMap<Located<String>, Vec<Located<String>>>,
    /// Categories whose pipelines must pass an `approve` gate before `ship`.
    #[serde(default)]
    pub approval: Vec<Located<String>>,
    /// Paths and branches agents must not touch.
    #[serde(default)]
    pub protected: Option<Protected>,
    /// Whether `--executor local --unsandboxed` may run stages as plain host processes
    /// (no sandbox at all). Off unless set.
    #[serde(default)]
    pub allow_unsandboxed: bool,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    pub allow: Vec<Located<String>>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRule {
    /// Stage kinds that may receive this secret.
    pub stages: Vec<Located<String>>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Host names (or `*.domain`), optionally with `:port`.
    pub allow: Vec<Located<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceilings {
    #[serde(default)]
    pub memory: Option<Located<String>>,
    #[serde(default)]
    pub cpus: Option<Located<f64>>,
    #[serde(default)]
    pub pids: Option<Located<u32>>,
    #[serde(default)]
    pub timeout: Option<Located<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protected {
    #[serde(default)]
    pub paths: Vec<Located<String>>,
    #[serde(default)]
    pub branches: Vec<Located<String>>,
}
