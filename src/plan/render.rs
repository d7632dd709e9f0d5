//! The plan's DAG as text, Graphviz DOT and Mermaid.

use std::fmt::Write as _;

use super::Plan;

/// One line per stage in topological order, with what it needs.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let width = plan.stages().iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in plan.stages() {
        let _ = write!(out, "{:width$}  {:<17}", s.id, s.kind);
        if !s.needs.is_empty() {
            let _ = write!(out, "  <- {}", s.needs.join(", "));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "critical path: {} ({}s by timeouts)",
        plan.critical_path().join(" -> "),
        plan.critical_path_secs()
    );
    out
}

/// Graphviz DOT; ids are quoted so any stage id is valid.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(plan.category()));
    out.push_str("  rankdir=LR;\n  node [shape=box];\n");
    for s in plan.stages() {
        let _ = writeln!(out, "  {} [label={}];", quote(&s.id), quote(&format!("{}\n{}", s.id, s.kind)));
    }
    for s in plan.stages() {
        for n in &s.needs {
            let _ = writeln!(out, "  {} -> {};", quote(n), quote(&s.id));
        }
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart, for Markdown pull request bodies.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for s in plan.stages() {
        let _ = writeln!(out, "  {}[\"{}<br/>{}\"]", s.id, s.id, s.kind);
    }
    for s in plan.stages() {
        for n in &s.needs {
            let _ = writeln!(out, "  {n} --> {}", s.id);
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}
