//! The built-in stage kinds (`uses:`), their role and the `with` parameters each accepts.
//!
//! One table, so that adding a kind is one entry here plus its implementation.

pub use crate::plan::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Str,
    StrList,
    Int,
    Number,
    Bool,
}

impl ParamType {
    pub fn describe(self) -> &'static str {
        match self {
            ParamType::Str => "a string",
            ParamType::StrList => "a list of strings",
            ParamType::Int => "a non-negative integer",
            ParamType::Number => "a number",
            ParamType::Bool => "true or false",
        }
    }

    pub fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            ParamType::Str => v.is_string(),
            ParamType::StrList => v.as_array().is_some_and(|a| a.iter().all(serde_json::Value::is_string)),
            ParamType::Int => v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Bool => v.is_boolean(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamType,
    pub required: bool,
    /// Whether the run renders its strings as templates; a template anywhere else would be
    /// used as it is written, so the compiler refuses it.
    pub templated: bool,
}

/// A required parameter whose strings are templates.
const fn req(name: &'static str, ty: ParamType) -> Param {
    Param { name, ty, required: true, templated: true }
}
/// An optional parameter whose strings are templates.
const fn opt(name: &'static str, ty: ParamType) -> Param {
    Param { name, ty, required: false, templated: true }
}
/// The same parameter taken as it is written: no template in it.
const fn literal(p: Param) -> Param {
    Param { templated: false, ..p }
}

#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub name: &'static str,
    pub role: Role,
    pub params: &'static [Param],
    pub summary: &'static str,
}

use ParamType::{Bool, Int, Number, Str, StrList};

/// Every `uses:` kind lightsout knows. (The parameters of the kinds this version cannot run
/// yet are templates, as the built-in pipelines write them: their runners are to render them.)
pub const KINDS: &[Kind] = &[
    Kind {
        name: "context",
        role: Role::Context,
        summary: "assemble the ticket, matching files, git log and agent docs into one bundle",
        params: &[
            literal(opt("include", StrList)),
            literal(opt("exclude", StrList)),
            opt("max_bytes", Int),
            opt("identifiers", Bool),
            opt("git_log", Int),
            opt("docs", Bool),
        ],
    },
    Kind {
        name: "agent",
        role: Role::Agent,
        summary: "run an AI agent CLI on the rendered prompt",
        params: &[literal(req("agent", Str)), opt("prompt", Str), literal(opt("prompt_file", Str))],
    },
    Kind {
        name: "grade.tests",
        role: Role::Grader,
        summary: "run the tests; FAIL_TO_PASS must flip, PASS_TO_PASS must hold",
        params: &[
            req("command", Str),
            literal(opt("junit", Str)),
            literal(opt("format", Str)),
            opt("base_runs", Int),
            opt("fail_to_pass", StrList),
            opt("pass_to_pass", Bool),
            literal(opt("test_files", StrList)),
        ],
    },
    Kind {
        name: "grade.diff",
        role: Role::Grader,
        summary: "protected paths untouched, change size under limits, no new dependencies or credentials",
        params: &[
            literal(opt("protect", StrList)),
            opt("max_changed_files", Int),
            opt("max_changed_lines", Int),
            opt("allow_dependencies", Bool),
            literal(opt("allow_framework_in", StrList)),
        ],
    },
    Kind {
        name: "grade.jsonschema",
        role: Role::Grader,
        summary: "JSON or YAML files valid against a JSON Schema",
        params: &[req("schema", Str), req("files", StrList)],
    },
    Kind {
        name: "grade.command",
        role: Role::Grader,
        summary: "any command; its exit status is the verdict",
        params: &[req("command", Str)],
    },
    Kind {
        name: "grade.openapi",
        role: Role::Grader,
        summary: "the running service conforms to its OpenAPI document",
        params: &[req("spec", Str), req("start", Str), req("base_url", Str)],
    },
    Kind {
        name: "grade.equivalence",
        role: Role::Grader,
        summary: "base and candidate give equal outputs on a recorded input set",
        params: &[req("command", Str), req("inputs", Str)],
    },
    Kind {
        name: "grade.bench",
        role: Role::Grader,
        summary: "noise-aware base vs candidate benchmark comparison",
        params: &[req("command", Str), opt("runs", Int), opt("max_ratio", Number)],
    },
    Kind {
        name: "grade.policy",
        role: Role::Grader,
        summary: "Rego policy over manifests",
        params: &[req("policy", Str), req("files", StrList), opt("query", Str)],
    },
    Kind {
        name: "grade.flags",
        role: Role::Grader,
        summary: "run a command with the feature flag off and on; both must pass",
        params: &[req("flag", Str), req("command", Str)],
    },
    Kind {
        name: "approve",
        role: Role::Approve,
        summary: "wait for a human to approve or reject",
        params: &[opt("message", Str)],
    },
    Kind {
        name: "ship",
        role: Role::Ship,
        summary: "commit on a branch, push, open a pull request",
        params: &[
            opt("branch", Str),
            opt("message", Str),
            opt("remote", Str),
            opt("pull_request", Bool),
            opt("comment", Bool),
            // Not used yet (the feature-flag check is to come); the built-in pipeline fills it from the inputs.
            opt("flag", Str),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}
