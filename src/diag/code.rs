//! The stable code of every kind of diagnostic (`needs.unknown`, `policy.image`), which scripts,
//! editors and tests match instead of the message's words. A code names one kind of problem
//! wherever it is found; it never changes once released, and a new kind of problem gets a new one.
//! `docs/diagnostics.md` lists them, and a test keeps it in step with [`ALL`].

use serde::Serialize;

/// A diagnostic's code: lowercase words joined by dots. Only the constants here make one, so every
/// code in use is listed in [`ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Code(&'static str);

impl Code {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

macro_rules! codes {
    ($($name:ident = $code:literal: $what:literal,)*) => {
        $(#[doc = $what] pub const $name: Code = Code($code);)*
        /// Every code with what it means, in the order `docs/diagnostics.md` lists them.
        pub const ALL: &[(Code, &str)] = &[$(($name, $what)),*];
    };
}

codes! {
    INTERNAL_BUG = "internal.bug": "lightsout failed itself where it should not; please report it",
    FILE_UNREADABLE = "file.unreadable": "the file cannot be opened or read",
    FILE_TOO_LARGE = "file.too_large": "the file is larger than 8 MiB",
    FILE_ENCODING = "file.encoding": "the file is not UTF-8",
    FILE_EMPTY = "file.empty": "the file is empty",
    FILE_NOT_MAPPING = "file.not_mapping": "the file's top level is not a mapping of keys to values",
    YAML_SYNTAX = "yaml.syntax": "the file is not valid YAML (indentation, tabs, quotes, brackets)",
    YAML_DUPLICATE_KEY = "yaml.duplicate_key": "a key appears twice in one mapping",
    YAML_DOCUMENTS = "yaml.documents": "the file holds more than one YAML document",
    YAML_DEPTH = "yaml.depth": "the YAML is nested more than 32 levels deep",
    YAML_ALIASES = "yaml.aliases": "the YAML uses too many aliases or anchors (a possible alias bomb)",
    YAML_SIZE = "yaml.size": "the YAML expands to too many values or too much text",
    VERSION_MISSING = "version.missing": "the file has no `version`",
    VERSION_INVALID = "version.invalid": "`version` is not the integer 1",
    VERSION_UNSUPPORTED = "version.unsupported": "the file is of a newer format version than this lightsout reads",
    FIELD_UNKNOWN = "field.unknown": "a key that is not allowed where it is",
    FIELD_MISSING = "field.missing": "a required key is missing",
    FIELD_TYPE = "field.type": "a value of the wrong type (a string where a list goes, ...)",
    FIELD_VALUE = "field.value": "a value that is not one of the allowed ones",
    FIELD_INVALID = "field.invalid": "a value the file format does not allow otherwise",
    FACTORY_MISSING = "factory.missing": "there is no factory.yaml to read",
    POLICY_FILE_MISSING = "policy_file.missing": "the policy file named in factory.yaml does not exist",
    PIPELINE_FILE_MISSING = "pipeline_file.missing": "a category's pipeline file does not exist",
    PROMPT_FILE_MISSING = "prompt_file.missing": "an agent stage's `prompt_file` does not exist or cannot be read",
    SECRET_PROVIDER = "secret.provider": "a secret has no provider, or more than one",
    SECRET_EMPTY_COMMAND = "secret.empty_command": "a secret's `command` is empty",
    AGENT_NO_COMMAND = "agent.no_command": "an agent has neither `preset` nor `command`",
    AGENT_EMPTY_COMMAND = "agent.empty_command": "an agent's `command` is empty",
    AGENT_UNKNOWN = "agent.unknown": "a stage names an agent factory.yaml does not define",
    AGENT_NO_PROMPT = "agent.no_prompt": "an agent stage has no `prompt` or `prompt_file`",
    CATEGORY_UNKNOWN = "category.unknown": "there is no category of that name",
    CATEGORY_MISMATCH = "category.mismatch": "the pipeline's `category` is not the category it is the pipeline of",
    NAME_INVALID = "name.invalid": "a stage, input or output name that is not an identifier",
    TIMEOUT_INVALID = "timeout.invalid": "a timeout that is not a duration such as `90s` or `20m`",
    TIMEOUT_TOO_SHORT = "timeout.too_short": "a timeout under one second",
    MEMORY_INVALID = "memory.invalid": "a memory limit that is not a size such as `512m`",
    MEMORY_TOO_SMALL = "memory.too_small": "a memory limit under 4 MiB",
    CPUS_INVALID = "cpus.invalid": "`cpus` is not greater than 0",
    STAGES_EMPTY = "stages.empty": "the pipeline has no stages",
    STAGE_RUN_AND_USES = "stage.run_and_uses": "a stage has both `run` and `uses`",
    STAGE_NO_RUN_OR_USES = "stage.no_run_or_uses": "a stage has neither `run` nor `uses`",
    KIND_UNKNOWN = "kind.unknown": "`uses` names no stage kind",
    WITH_ON_RUN = "with.on_run": "a `run` stage has `with`, which belongs to `uses` stages",
    WITH_UNKNOWN = "with.unknown": "a `with` parameter the stage kind does not take",
    WITH_TYPE = "with.type": "a `with` parameter of the wrong type",
    WITH_MISSING = "with.missing": "a required `with` parameter is missing",
    IMAGE_MISSING = "image.missing": "a stage that runs in a container has no image",
    IMAGE_ON_HOST = "image.on_host": "a stage kind that runs on the host has an `image`",
    EXPECT_NOT_COMMAND = "expect.not_command": "`expect: failure` on a stage that is not a command",
    ENV_NAME = "env.name": "an `env` name that cannot be set (not a name, or reserved)",
    WORKSPACE_GRADER_WRITES = "workspace.grader_writes": "a grader asks to write the workspace",
    LOOP_NOT_AGENT = "loop.not_agent": "`loop` on a stage that is not an agent",
    LOOP_UNTIL_EMPTY = "loop.until_empty": "`loop.until` names no grader",
    LOOP_UNTIL_UNKNOWN = "loop.until_unknown": "`loop.until` names a stage that does not exist",
    LOOP_UNTIL_NOT_GRADER = "loop.until_not_grader": "`loop.until` names a stage that is not a grader",
    LOOP_UNTIL_NOT_AFTER = "loop.until_not_after": "a grader in `loop.until` does not run after the looping stage",
    NEEDS_SELF = "needs.self": "a stage needs itself",
    NEEDS_UNKNOWN = "needs.unknown": "`needs` names a stage that does not exist",
    NEEDS_CYCLE = "needs.cycle": "`needs` forms a cycle",
    SHIP_UNGRADED = "ship.ungraded": "a stage could change the workspace after the graders of a `ship` stage ran",
    TEMPLATE_SYNTAX = "template.syntax": "a template does not parse",
    TEMPLATE_QUOTED = "template.quoted": "a template inside shell quotes in a command",
    TEMPLATE_UNKNOWN = "template.unknown": "a template reads a variable that does not exist",
    TEMPLATE_INPUT = "template.input": "a template reads an input the pipeline does not declare",
    TEMPLATE_TICKET_FIELD = "template.ticket_field": "a template reads a field tickets do not have",
    TEMPLATE_FEEDBACK = "template.feedback": "a template reads `feedback` in a stage without `loop`",
    TEMPLATE_STAGE_UNKNOWN = "template.stage_unknown": "a template reads a stage that does not exist",
    TEMPLATE_STAGE_NOT_BEFORE = "template.stage_not_before": "a template reads a stage that does not run before it",
    TEMPLATE_STAGE_FIELD = "template.stage_field": "a template reads a field stages do not have",
    TEMPLATE_OUTPUT = "template.output": "a template reads an output the stage does not declare",
    TEMPLATE_LITERAL = "template.literal": "a template in a `with` parameter that is used as it is written",
    POLICY_IMAGE = "policy.image": "the policy does not allow the image",
    POLICY_SECRET = "policy.secret": "the policy does not give the secret to the stage",
    POLICY_NETWORK = "policy.network": "the policy does not allow the network access",
    POLICY_TIMEOUT = "policy.timeout": "a timeout over the policy's ceiling",
    POLICY_MEMORY = "policy.memory": "a memory limit over the policy's ceiling",
    POLICY_CPUS = "policy.cpus": "a CPU limit over the policy's ceiling",
    POLICY_PIDS = "policy.pids": "a process limit over the policy's ceiling",
    POLICY_GRADER = "policy.grader": "the category lacks a grader the policy requires",
    POLICY_APPROVAL = "policy.approval": "a `ship` stage without the human approval the policy requires",
    POLICY_BRANCH = "policy.branch": "a `ship` stage would push to a branch the policy protects",
    ROUTE_NO_MATCH = "route.no_match": "the ticket matches no category",
    INPUT_MISSING = "input.missing": "the ticket gives no value for a required input",
    INPUT_TYPE = "input.type": "the ticket gives an input a value of the wrong type",
    TICKET_FRONT_MATTER = "ticket.front_matter": "the ticket's front matter is not a mapping",
    TICKET_ID = "ticket.id": "the ticket's `id` is empty or not a string or number",
    TICKET_TITLE = "ticket.title": "the ticket's `title` is not a string",
    TICKET_NO_TITLE = "ticket.no_title": "the ticket has no title",
    TICKET_LABELS = "ticket.labels": "the ticket's `labels` is not a list",
    TICKET_JSON = "ticket.json": "the GitHub event is not valid JSON",
    TICKET_NOT_ISSUE_EVENT = "ticket.not_issue_event": "the GitHub event is not an `issues` event",
    TICKET_ISSUE_NUMBER = "ticket.issue_number": "the GitHub event's issue has no number",
    PREFLIGHT_KIND = "preflight.kind": "a stage kind this version cannot run yet (a warning of `validate` and `plan`)",
    PREFLIGHT_SECRET = "preflight.secret": "a secret that is not available here (a warning)",
    PREFLIGHT_IMAGE = "preflight.image": "an image that is neither here nor buildable (a warning)",
    PREFLIGHT_DOCKER = "preflight.docker": "Docker is not reachable, so images were not checked (a warning)",
}

/// Whether `code` is lowercase words (letters, digits, `_`) joined by dots, at least two.
pub fn well_formed(code: &str) -> bool {
    let word = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    code.split('.').count() >= 2 && code.split('.').all(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_well_formed_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, what) in ALL {
            assert!(well_formed(code.as_str()), "{code}");
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(!what.is_empty() && !what.ends_with('.'), "{code}: {what:?}");
        }
        assert!(!well_formed("needs") && !well_formed("Needs.unknown") && !well_formed("needs..x"));
        assert!(!well_formed("needs.un-known") && !well_formed("needs.1x") && well_formed("needs.unknown"));
    }

    #[test]
    fn the_documentation_lists_every_code() {
        let doc = include_str!("../../docs/diagnostics.md");
        let listed: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(code, _)| code))
            .collect();
        let all: Vec<&str> = ALL.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            listed, all,
            "docs/diagnostics.md is stale: its table should list the codes of diag/code.rs in order"
        );
        for (code, what) in ALL {
            assert!(doc.contains(&format!("| `{code}` | {what} |")), "{code}: {what}");
        }
    }
}
