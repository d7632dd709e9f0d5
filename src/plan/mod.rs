//! The validated, immutable plan: resolved stages in topological order and their DAG.
//!
//! A `Plan` is only made by the compiler, after every check passed; nothing changes it
//! afterwards. It serializes to JSON for `plan --format json` and for run records.

pub mod kind;
mod settings;

pub mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

pub use kind::StageKind;
pub use settings::{Access, Expect, PromptMode, SecretMount, SecretSource, UsageFormat};

/// One resolved stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stage {
    pub id: String,
    /// What the stage does, with its parameters (`kind` and `with` in the JSON).
    #[serde(flatten)]
    pub kind: StageKind,
    pub role: Role,
    pub needs: Vec<String>,
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The image and where it came from; `None` for stages that run on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Decided<String>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    pub secrets: Vec<String>,
    /// Hosts reachable through the egress proxy; empty means no network.
    pub network: Vec<String>,
    pub timeout_secs: u64,
    pub retries: u32,
    pub expect: Expect,
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Loop>,
    pub outputs: Vec<String>,
    pub resources: Limits,
    pub workspace: Access,
    /// Where this stage's secrets come from (names and providers only, never values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_sources: BTreeMap<String, SecretSource>,
    /// For `agent` stages: how to invoke the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCall>,
}

/// How an agent stage runs its agent: the command, how the prompt reaches it, and which
/// output format to read token usage and cost from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentCall {
    pub name: String,
    pub argv: Vec<String>,
    pub prompt_mode: PromptMode,
    pub usage: UsageFormat,
    /// The prompt template (from `prompt`, or the contents of `prompt_file`).
    pub prompt: String,
}

/// A value with the rule that decided it, for `plan` to show.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decided<T> {
    pub value: T,
    pub from: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Loop {
    pub until: Vec<String>,
    pub max_attempts: u32,
}

/// Resource limits of one stage's container.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u32,
}

/// What a stage is for; decides where it runs and how the compiler checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A plain `run:` command.
    Command,
    /// Gathers context on the host.
    Context,
    /// An AI agent that edits the workspace.
    Agent,
    /// Grades the candidate; cannot change the workspace (it works in a scratch copy).
    Grader,
    /// A human gate.
    Approve,
    /// Commits, pushes and opens the pull request on the host.
    Ship,
}

impl Role {
    /// Whether stages of this role run in a container (and so need an image).
    pub fn in_container(self) -> bool {
        matches!(self, Role::Command | Role::Agent | Role::Grader)
    }
}

/// Where tests usually live, for `grade.tests` (with the policy's protected paths) when the stage does not say, and
/// protected from the change before `ship`: what can change how tests are collected or run is
/// taken from the base revision when the candidate is graded, and never ships changed.
/// Test runners' own configuration is among them: a change that adds a `conftest.py` hook or
/// edits `pytest.ini` decides which tests run and what they see; and so is compiled bytecode,
/// which Python runs instead of the source a reviewer reads.
pub const DEFAULT_TEST_FILES: &[&str] = &[
    "tests/**",
    "test/**",
    "spec/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/*_test.go",
    "**/*.test.*",
    "**/*_spec.rb",
    "**/conftest.py",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "**/__pycache__/**",
    "**/*.pyc",
    "**/*.pyo",
    "pytest.ini",
    ".pytest.ini",
    "tox.ini",
    // pytest reads its settings (and plugins to load) from these too.
    "setup.cfg",
    "pyproject.toml",
    "**/*.pth",
    // A module of the change's named like the runner shadows it (`python -m unittest` puts the
    // working directory first on the import path).
    "unittest.py",
    "unittest/**",
    "pytest.py",
    "pytest/**",
    "_pytest/**",
    "nose/**",
    "nose2/**",
    "**/jest.config.*",
    "**/vitest.config.*",
    "**/.mocharc*",
    "phpunit.xml*",
];

/// The immutable, compiled plan of one pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    factory: String,
    category: String,
    pipeline: PathBuf,
    /// Stages in a topological order (declaration order among independent stages).
    stages: Vec<Stage>,
    critical_path: Vec<String>,
    critical_path_secs: u64,
    inputs: BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    graph: DiGraph<usize, ()>,
}

impl Plan {
    /// Builds a plan from stages already checked to form a DAG (the compiler's job).
    /// Returns `None` when they do not, which the compiler has then already reported.
    pub(crate) fn seal(
        factory: String,
        category: String,
        pipeline: PathBuf,
        stages: Vec<Stage>,
        inputs: BTreeMap<String, serde_json::Value>,
    ) -> Option<Plan> {
        let (graph, nodes) = build_graph(&stages)?;
        let order = topo_order(&graph, stages.len())?;
        // Reorder stages and rebuild the graph so that node i is stage i.
        let mut slots: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
        let stages: Vec<Stage> = order.iter().filter_map(|&i| slots[i].take()).collect();
        drop(nodes);
        let (graph, _) = build_graph(&stages)?;
        let (critical_path, critical_path_secs) = critical_path(&graph, &stages);
        Some(Plan { factory, category, pipeline, stages, critical_path, critical_path_secs, inputs, graph })
    }

    /// Reads back a plan written by a run record (`plan.json`), rebuilding its graph.
    pub fn from_record(json: &str) -> Result<Plan, String> {
        let mut plan: Plan = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let (graph, _) = build_graph(&plan.stages).ok_or("the recorded plan names a stage it does not have")?;
        plan.graph = graph;
        Ok(plan)
    }

    pub fn factory(&self) -> &str {
        &self.factory
    }
    pub fn category(&self) -> &str {
        &self.category
    }
    pub fn pipeline(&self) -> &std::path::Path {
        &self.pipeline
    }
    /// Stages in topological order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
    pub fn critical_path(&self) -> &[String] {
        &self.critical_path
    }
    pub fn critical_path_secs(&self) -> u64 {
        self.critical_path_secs
    }
    /// Whether a stage of the kind named `name` is in the plan (policy names required graders).
    pub fn has_kind(&self, name: &str) -> bool {
        self.stages.iter().any(|s| s.kind.name() == name)
    }
    pub fn inputs(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.inputs
    }
    /// The DAG: node weights are indexes into [`Plan::stages`], edges go from a need to its dependant.
    pub fn graph(&self) -> &DiGraph<usize, ()> {
        &self.graph
    }
}

/// Edges from each need to the stage that needs it. `None` if a need names no stage.
pub(crate) fn build_graph(stages: &[Stage]) -> Option<(DiGraph<usize, ()>, Vec<NodeIndex>)> {
    let mut graph = DiGraph::with_capacity(stages.len(), stages.len());
    let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
    let index: std::collections::HashMap<&str, usize> =
        stages.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for need in &s.needs {
            let j = *index.get(need.as_str())?;
            graph.update_edge(nodes[j], nodes[i], ());
        }
    }
    Some((graph, nodes))
}

/// Kahn's algorithm, taking the earliest-declared ready stage first, so the order is stable.
fn topo_order(graph: &DiGraph<usize, ()>, n: usize) -> Option<Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut indegree: Vec<usize> =
        (0..n).map(|i| graph.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors(NodeIndex::new(i)) {
            let j = next.index();
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// The longest chain of stages, weighted by their timeouts: the bound on a run's makespan.
/// Stages are already in topological order.
fn critical_path(graph: &DiGraph<usize, ()>, stages: &[Stage]) -> (Vec<String>, u64) {
    let n = stages.len();
    let mut best = vec![0u64; n];
    let mut prev: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let start = graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
            .map(|p| (best[p.index()], p.index()))
            .max();
        if let Some((b, p)) = start {
            best[i] = b;
            prev[i] = Some(p);
        }
        best[i] += stages[i].timeout_secs;
    }
    let Some((end, &total)) = best.iter().enumerate().max_by_key(|(i, b)| (**b, std::cmp::Reverse(*i))) else {
        return (Vec::new(), 0);
    };
    let mut path = vec![stages[end].id.clone()];
    let mut here = end;
    while let Some(p) = prev[here] {
        path.push(stages[p].id.clone());
        here = p;
    }
    path.reverse();
    (path, total)
}
