//! Tickets: the intent a run starts from.
//!
//! A ticket comes from a Markdown file with YAML front matter (for people and tests) or from a
//! GitHub `issues` webhook event (for CI); reading one is the compiler's (`compile/ticket.rs`).
//! Its text is data: it is never parsed as a template and reaches commands only as shell-quoted
//! values.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Ticket {
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub url: Option<String>,
    pub author: Option<String>,
    /// A category the ticket asks for, overriding the match rules.
    pub category: Option<String>,
    /// Structured fields: front-matter keys, or the sections of a GitHub issue form.
    pub fields: BTreeMap<String, Value>,
}
