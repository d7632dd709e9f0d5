//! Small settings of a stage that the pipeline and factory files write and the plan keeps as
//! they are: how it sees the workspace, what it expects, how its secrets and its agent's prompt
//! reach it, and how to read the agent's usage.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One secret's provider (exactly one of `env`, `file`, `command`) and how a stage receives it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file on the runner's machine (its whole content, without a trailing newline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A command whose standard output is the value (a password manager's CLI, say). No shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `env` (default): an environment variable of the stage. `file`: a read-only file on a
    /// tmpfs at `/run/secrets/<name>`, with `<name>_FILE` naming it.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub mount: Option<SecretMount>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecretMount {
    Env,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptMode {
    Stdin,
    File,
    Arg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UsageFormat {
    ClaudeStreamJson,
    CodexJson,
    None,
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
