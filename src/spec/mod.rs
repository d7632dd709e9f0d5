//! The user's files as typed data, with the location of every value.
//!
//! Loading a file goes through four gates, each reporting what it finds with <file:line:column>:
//! the YAML itself (syntax, duplicate keys, budgets against alias bombs and deep nesting), the
//! `version`, the JSON Schema (every violation at once, unknown keys with "did you mean"), and
//! finally typed deserialization into [`FactoryFile`], [`PipelineFile`] or [`PolicyFile`].

pub mod factory;
pub mod node;
pub mod pipeline;
pub mod schema;

use std::path::Path;

use serde::de::DeserializeOwned;

pub use crate::diag::Located;
pub use crate::policy::PolicyFile;
pub use factory::FactoryFile;
pub use node::Node;
pub use pipeline::PipelineFile;
pub use schema::FileKind;

use crate::diag::{Code, Diagnostic, Diagnostics, Pos, code};

/// The format version this lightsout reads and writes.
pub const VERSION: u64 = 1;

/// Largest file lightsout reads. A generated 10,000-stage pipeline is about 2 MiB.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Reads a file as UTF-8 text, refusing files over [`MAX_FILE_BYTES`] before reading them whole.
pub fn read_text(path: &Path) -> Result<String, Diagnostic> {
    use std::io::Read as _;
    let whole = |code, msg: String| Diagnostic::new(path, Pos::default(), msg).code(code);
    let unreadable = |e: std::io::Error| whole(code::FILE_UNREADABLE, format!("cannot read the file: {e}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    check_size(path, bytes.len())?;
    String::from_utf8(bytes).map_err(|e| {
        whole(code::FILE_ENCODING, format!("the file is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
            .hint("save the file as UTF-8")
    })
}

fn check_size(path: &Path, len: usize) -> Result<(), Diagnostic> {
    if len > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            path,
            Pos::default(),
            format!("the file is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
        )
        .code(code::FILE_TOO_LARGE)
        .hint("split the pipeline, or generate it smaller; lightsout refuses larger files to bound memory"));
    }
    Ok(())
}

/// Reads and loads a file of the given kind.
pub fn load_file<T: DeserializeOwned + Send>(kind: FileKind, path: &Path) -> Result<T, Diagnostics> {
    let text = read_text(path)?;
    load_str(kind, path, &text)
}

/// Loads `text` (named `path` in diagnostics) as a file of the given kind.
pub fn load_str<T: DeserializeOwned + Send>(kind: FileKind, path: &Path, text: &str) -> Result<T, Diagnostics> {
    check_size(path, text.len())?;
    let typed = || serde_saphyr::from_str_with_options::<T>(text, options()).map_err(|e| yaml_error(path, &e).into());
    let checked = || {
        let root = parse_tree(path, text)?;
        check_version(kind, path, &root)?;
        schema::validate(kind, path, &root)
    };
    if text.len() < PARALLEL_LOAD_BYTES {
        checked()?;
        return typed();
    }
    // A large file is parsed twice at once: the located tree for the checks on one thread and
    // the typed value on another. The checks' errors win; the typed value is used only when
    // they pass.
    let (checks, value) = std::thread::scope(|s| {
        let value = s.spawn(typed);
        let checks = checked();
        (checks, value.join())
    });
    checks?;
    match value {
        Ok(v) => v,
        Err(_) => Err(Diagnostic::new(path, Pos::START, "internal error: the YAML reader failed")
            .code(code::INTERNAL_BUG)
            .into()),
    }
}

/// Files at least this large are parsed on two threads (see [`load_str`]).
const PARALLEL_LOAD_BYTES: usize = 256 * 1024;

/// Parses YAML into a located tree. Also used for ticket front matter.
pub fn parse_tree(path: &Path, text: &str) -> Result<Located<Node>, Diagnostics> {
    let root: Located<Node> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| Diagnostics::from(yaml_error(path, &e)))?;
    if matches!(root.value, Node::Null) {
        return Err(Diagnostic::new(path, Pos::START, "the file is empty")
            .code(code::FILE_EMPTY)
            .hint("start it with `version: 1`; `lightsout init` writes a complete example")
            .into());
    }
    Ok(root)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Bounds chosen so that a 10,000-stage pipeline fits and an alias bomb does not.
    budget.max_depth = 32;
    budget.max_nodes = 400_000;
    budget.max_events = 400_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_documents = 1;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // YAML 1.2 booleans only: `no` stays the string "no" (the Norway problem).
    o.strict_booleans = true;
    o.with_snippet = false;
    o
}

/// Turns a YAML parser error into a located diagnostic with a hint for the common cases.
fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e.location().map_or(Pos::START, |l| {
        Pos::new(u32::try_from(l.line()).unwrap_or(u32::MAX), u32::try_from(l.column()).unwrap_or(u32::MAX))
    });
    let raw = e.without_snippet().to_string();
    let (code, message, hint) = explain_yaml_error(&strip_location(&raw));
    Diagnostic::new(path, pos, message).code(code).maybe_hint(hint.map(str::to_owned))
}

/// Rewords the parser's message for the cases users meet most, with its code and a hint on how
/// to fix them.
fn explain_yaml_error(message: &str) -> (Code, String, Option<&'static str>) {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return (
            code::YAML_DUPLICATE_KEY,
            format!("duplicate key `{key}`"),
            Some("each key may appear once in a mapping (a stage id once in `stages`); rename or remove one"),
        );
    }
    if let Some(rest) = message.strip_prefix("budget breached: ") {
        let what = rest.split([' ', '{']).next().unwrap_or(rest);
        let (code, text, hint) = match what {
            "Documents" => (
                code::YAML_DOCUMENTS,
                "the file holds more than one YAML document",
                "a lightsout file holds one YAML document; remove the extra `---`",
            ),
            "Depth" => (
                code::YAML_DEPTH,
                "the YAML is nested too deeply",
                "lightsout reads at most 32 levels of nesting; flatten the structure",
            ),
            "Aliases" | "Anchors" | "RecordedAnchorEvents" | "RecordedAnchorBytes" => (
                code::YAML_ALIASES,
                "the YAML uses too many aliases (a possible alias bomb)",
                "lightsout bounds aliases to keep loading bounded; write the values out plainly",
            ),
            "Events" => (
                code::YAML_SIZE,
                "the YAML expands to too many values",
                "aliases (`*name`) count each time they are used; write the values out, or split the file",
            ),
            _ => (
                code::YAML_SIZE,
                "the YAML is too large to load",
                "lightsout bounds events, nodes and scalar sizes; split or shrink the file",
            ),
        };
        return (code, format!("invalid YAML: {text} ({what})"), Some(hint));
    }
    let hint = if message.contains("tabs") {
        Some("YAML indents with spaces only; replace the tabs with spaces")
    } else if message.contains("quote") {
        Some("close the quote on the same line, or use a block scalar (`run: |`) for text over several lines")
    } else {
        Some(
            "check the indentation and brackets here and on the line before; quote values holding `: `, `#`, or starting with `{`, `[`, `*`, `&` or `!`",
        )
    };
    (code::YAML_SYNTAX, format!("invalid YAML: {message}"), hint)
}

fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    // e.g. "line 3 column 5: mapping values are not allowed" -> the part after the colon.
    let rest = first.strip_prefix("line ").and_then(|r| r.split_once(": ")).map_or(first, |(_, m)| m);
    // ...and sometimes suffixes " at line X, column Y".
    let rest = rest.find(" at line ").map_or(rest, |i| &rest[..i]);
    rest.trim_end_matches('.').to_owned()
}

fn check_version(kind: FileKind, path: &Path, root: &Located<Node>) -> Result<(), Diagnostics> {
    let Node::Map(_) = &root.value else {
        return Err(Diagnostic::new(
            path,
            root.at,
            format!("a {} file must be a mapping, found {}", kind.name(), root.value.kind()),
        )
        .code(code::FILE_NOT_MAPPING)
        .hint("start it with `version: 1`; `lightsout init` writes a complete example")
        .into());
    };
    let Some(v) = root.value.get("version") else {
        return Err(Diagnostic::new(path, root.at, "missing `version`")
            .code(code::VERSION_MISSING)
            .hint("add `version: 1` as the first line")
            .into());
    };
    match &v.value {
        Node::Int(1) | Node::UInt(1) => Ok(()),
        Node::Int(n) if *n > 1 => Err(newer(path, v.at, &n.to_string())),
        Node::UInt(n) if *n > 1 => Err(newer(path, v.at, &n.to_string())),
        other => {
            Err(Diagnostic::new(path, v.at, format!("`version` must be the integer 1, found {}", describe(other)))
                .code(code::VERSION_INVALID)
                .hint("write `version: 1`")
                .into())
        }
    }
}

fn newer(path: &Path, at: Pos, found: &str) -> Diagnostics {
    Diagnostic::new(
        path,
        at,
        format!("this file is format version {found}, but this lightsout reads version {VERSION}"),
    )
    .code(code::VERSION_UNSUPPORTED)
    .hint("upgrade lightsout, or write the file in format version 1")
    .into()
}

fn describe(node: &Node) -> String {
    match node {
        Node::Str(s) => format!("the string {s:?}"),
        Node::Int(i) => i.to_string(),
        Node::UInt(u) => u.to_string(),
        Node::Float(f) => f.to_string(),
        other => other.kind().to_owned(),
    }
}
