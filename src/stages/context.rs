//! `uses: context`: assembles what an agent should read into one Markdown bundle under a byte
//! budget: the ticket, the repository's agent docs (AGENTS.md, CLAUDE.md, CONTRIBUTING.md,
//! ADRs), the files the `include` globs name, files that mention identifiers named in the
//! ticket, and recent history. What did not fit, or was refused, is listed at the end.
//!
//! It runs on the host and only reads: files come from `git ls-files` (so .gitignore is
//! respected), symbolic links are never followed, and every path is checked to stay inside the
//! workspace.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::HostResult;
use crate::policy::{Globs, Matching};
use crate::ticket::Ticket;
use crate::workspace::Workspace;

/// Bundle size when the stage gives no `max_bytes`.
pub const DEFAULT_MAX_BYTES: usize = 100_000;
/// Files larger than this are never read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Agent docs, by name, anywhere at the top of the repository.
const DOC_FILES: &[&str] = &["AGENTS.md", "CLAUDE.md", "CONTRIBUTING.md"];
/// Directories whose Markdown files are architecture decision records.
const ADR_DIRS: &[&str] = &["docs/adr/", "doc/adr/", "adr/", "docs/decisions/"];

/// The stage's parameters.
#[derive(Clone, Debug)]
pub struct Params {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_bytes: usize,
    pub identifiers: bool,
    pub git_log: usize,
    pub docs: bool,
}

impl Params {
    pub fn from_plan(p: &crate::plan::kind::Context) -> Params {
        let num = |n: Option<u64>, d: usize| n.map_or(d, |n| usize::try_from(n).unwrap_or(d));
        Params {
            include: p.include.clone().unwrap_or_default(),
            exclude: p.exclude.clone().unwrap_or_default(),
            max_bytes: num(p.max_bytes, DEFAULT_MAX_BYTES),
            identifiers: p.identifiers.unwrap_or(true),
            git_log: num(p.git_log, 10),
            docs: p.docs.unwrap_or(true),
        }
    }
}

/// Words of the ticket that look like code identifiers: `snake_case`, `camelCase`,
/// `CamelCase`, `dotted.names` or `calls()`, at least four characters long.
pub fn identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            let call = bytes.get(i) == Some(&b'(');
            let has_inner_upper =
                word.chars().skip(1).any(|c| c.is_ascii_uppercase()) && word.chars().any(|c| c.is_ascii_lowercase());
            let snake = word.contains('_') && word.trim_matches('_').len() > 1;
            if word.len() >= 4 && (call || has_inner_upper || snake) {
                out.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// A fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn fenced(lang: &str, text: &str) -> String {
    let f = fence(text);
    let nl = if text.ends_with('\n') { "" } else { "\n" };
    format!("{f}{lang}\n{text}{nl}{f}\n")
}

/// Reads a workspace file as text, refusing symlinks (anywhere on its path), escapes, special,
/// large and binary files; race-free against a stage swapping a link in (see
/// [`crate::untrusted`]).
pub(crate) fn read_inside(root: &Path, rel: &str) -> Result<String, &'static str> {
    use crate::untrusted::Refusal;
    let bytes = crate::untrusted::read_under(root, Path::new(rel), MAX_FILE_BYTES).map_err(|r| match r {
        Refusal::Outside => "outside the workspace",
        Refusal::Link => "a symbolic link (not followed)",
        Refusal::NotRegular(_) => "not a regular file",
        Refusal::TooLarge(_) => "larger than 1 MiB",
        Refusal::Missing | Refusal::Unreadable(_) => "unreadable",
    })?;
    if bytes.contains(&0) {
        return Err("binary");
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8")
}

/// Assembles the bundle.
/// An agent doc (AGENTS.md, CLAUDE.md, CONTRIBUTING.md) or an architecture decision record.
fn is_agent_doc(f: &str) -> bool {
    DOC_FILES.contains(&f)
        || (ADR_DIRS.iter().any(|d| f.starts_with(d))
            && Path::new(f).extension().is_some_and(|e| e.eq_ignore_ascii_case("md")))
}

pub fn assemble(ws: &Workspace, ticket: &Ticket, p: &Params) -> Result<HostResult, String> {
    let include = Globs::new(&p.include, Matching::default())?;
    let exclude = Globs::new(&p.exclude, Matching::default())?;
    let files = ws.files()?;
    let files: Vec<&String> = files.iter().filter(|f| !exclude.is_match(f)).collect();

    let mut out = String::new();
    let mut omitted: Vec<(String, String)> = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let budget = p.max_bytes;

    // The ticket always comes first; its text is data, in a fence.
    let _ = writeln!(out, "# Ticket {}\n\n## {}\n", ticket.id, ticket.title.replace('\n', " "));
    out.push_str(&fenced("text", &ticket.body));
    if !ticket.labels.is_empty() {
        let _ = writeln!(out, "\nlabels: {}", ticket.labels.join(", "));
    }

    let mut added = 0usize;
    let mut add_file = |out: &mut String, omitted: &mut Vec<(String, String)>, rel: &str, why: &str| {
        if !taken.insert(rel.to_owned()) {
            return;
        }
        match read_inside(&ws.root(), rel) {
            Ok(text) => {
                let section = format!("\n### {rel}\n\n{}", fenced("", &text));
                if out.len() + section.len() > budget {
                    omitted.push((rel.to_owned(), format!("{why}; over the {budget}-byte budget")));
                } else {
                    out.push_str(&section);
                    added += 1;
                }
            }
            Err(reason) => omitted.push((rel.to_owned(), reason.to_owned())),
        }
    };

    if p.docs {
        let docs: Vec<&String> = files.iter().copied().filter(|f| is_agent_doc(f)).collect();
        if !docs.is_empty() {
            out.push_str("\n## Agent docs\n");
            for d in docs {
                add_file(&mut out, &mut omitted, d, "agent doc");
            }
        }
    }

    let included: Vec<&String> = files.iter().copied().filter(|f| include.is_match(f)).collect();
    if !included.is_empty() {
        out.push_str("\n## Files\n");
        for f in included {
            add_file(&mut out, &mut omitted, f, "included");
        }
    }

    if p.identifiers {
        let ids = identifiers(&format!("{}\n{}", ticket.title, ticket.body));
        if !ids.is_empty() {
            let mentioning: Vec<&String> = files
                .iter()
                .copied()
                .filter(|f| {
                    read_inside(&ws.root(), f).is_ok_and(|text| ids.iter().any(|id| text.contains(id.as_str())))
                })
                .collect();
            if !mentioning.is_empty() {
                let names: Vec<&str> = ids.iter().map(String::as_str).collect();
                let _ = write!(out, "\n## Files that mention {}\n", names.join(", "));
                for f in mentioning {
                    add_file(&mut out, &mut omitted, f, "mentions an identifier");
                }
            }
        }
    }

    if p.git_log > 0
        && let Ok(log) = ws.log(p.git_log)
    {
        let section = format!("\n## Recent history\n\n{}", fenced("text", &log));
        if out.len() + section.len() <= budget {
            out.push_str(&section);
        } else {
            omitted.push(("git log".into(), "over the budget".into()));
        }
    }

    if !omitted.is_empty() {
        out.push_str("\n## Left out\n\n");
        for (what, why) in &omitted {
            let _ = writeln!(out, "- {what}: {why}");
        }
    }

    let mut result = HostResult {
        summary: format!("context: {} bytes, {added} files, {} left out", out.len(), omitted.len()),
        ..HostResult::default()
    };
    result.outputs.insert("files".into(), added.to_string());
    result.outputs.insert("omitted".into(), omitted.len().to_string());
    result.outputs.insert("bundle".into(), out.clone());
    result.artifacts.push(("context.md".into(), out));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_look_like_code() {
        let ids = identifiers("median() of an even_length list; see StatsHelper and parse_config. The list is long.");
        assert!(ids.contains("median") && ids.contains("even_length") && ids.contains("StatsHelper"));
        assert!(ids.contains("parse_config"));
        assert!(!ids.contains("list") && !ids.contains("long") && !ids.contains("The"));
    }

    #[test]
    fn fences_outgrow_backticks_in_the_text() {
        assert_eq!(fence("no ticks"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }
}
