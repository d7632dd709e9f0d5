//! Diagnostics: what a user reads when a file is wrong.
//!
//! Every problem found in a user's file becomes one [`Diagnostic`] with the file, line and column,
//! a one-line reason and, where we know it, a hint. The loader and the compiler collect them all
//! and report them sorted, so that a user fixes a file in one pass instead of one error per run.

mod located;

pub use located::Located;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

pub mod code;

pub use code::Code;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};
use serde::Serialize;

/// A 1-based line and column in a file; `0:0` means "the file as a whole".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    pub fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    #[serde(flatten)]
    pub pos: Pos,
    /// What kind of problem it is, for scripts and tests; the message may change, the code not.
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at `pos` in `file`, which becomes a diagnostic once [`Uncoded::code`] says what
    /// kind it is: `Diagnostic::new(file, pos, "...").code(code::NEEDS_UNKNOWN).hint("...")`.
    #[expect(clippy::new_ret_no_self, reason = "no diagnostic without a code: `.code()` makes the Diagnostic")]
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> Uncoded {
        Uncoded { file: file.to_path_buf(), pos, message: message.into() }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    fn sort_key(&self) -> (&Path, Pos, &str) {
        (&self.file, self.pos, &self.message)
    }
}

/// A [`Diagnostic`] still without its [`Code`]: nothing takes one until [`Uncoded::code`] is called.
#[must_use = "a diagnostic needs its code: `.code(code::...)`"]
#[derive(Debug)]
pub struct Uncoded {
    file: PathBuf,
    pos: Pos,
    message: String,
}

impl Uncoded {
    /// The diagnostic, of kind `code` (one of the constants in [`code`]).
    pub fn code(self, code: Code) -> Diagnostic {
        let Uncoded { file, pos, message } = self;
        Diagnostic { file, pos, code, message, hint: None }
    }
}

/// A sorted, de-duplicated set of diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, position and message, and drops exact repeats.
    #[must_use]
    pub fn finish(mut self) -> Self {
        self.0.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.0.dedup();
        self
    }

    /// `Ok(value)` when there is nothing to report, the sorted diagnostics otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() { Ok(value) } else { Err(self.finish()) }
    }

    /// Renders every diagnostic with a snippet of its line, reading the sources it needs.
    pub fn render(&self, sources: &dyn Fn(&Path) -> Option<String>) -> String {
        self.render_with(sources, false)
    }

    /// [`Diagnostics::render`], in colour when `styled` (for a terminal that wants colour).
    pub fn render_with(&self, sources: &dyn Fn(&Path) -> Option<String>, styled: bool) -> String {
        let renderer = if styled { Renderer::styled() } else { Renderer::plain() };
        let mut out = String::new();
        let mut cache: Option<(&Path, Option<String>)> = None;
        for d in &self.0 {
            if cache.as_ref().is_none_or(|(p, _)| *p != d.file.as_path()) {
                cache = Some((d.file.as_path(), sources(&d.file)));
            }
            let text = cache.as_ref().and_then(|(_, t)| t.as_deref());
            out.push_str(&render_one(&renderer, d, text));
            out.push_str("\n\n");
        }
        let n = self.0.len();
        let _ = writeln!(out, "{n} error{} found", if n == 1 { "" } else { "s" });
        out
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.file.display().to_string()))?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        write!(f, ": error[{}]: {}", self.code, printable(&self.message))?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {})", printable(h))?;
        }
        Ok(())
    }
}

/// `text` with every control character escaped (`\u{1b}`, `\t`, ...), so that file contents
/// quoted in a message cannot move the cursor, recolour or rewrite the user's terminal.
#[must_use]
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().collect() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// `text` for a terminal, line by line: each line through [`printable`], the line breaks kept.
/// Everything a command prints from a run's record goes through this (or [`printable_json`]).
#[must_use]
pub fn printable_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) => {
                out.push_str(&printable(body.strip_suffix('\r').unwrap_or(body)));
                out.push('\n');
            }
            None => out.push_str(&printable(line)),
        }
    }
    out
}

/// A JSON text for a terminal: the control characters a JSON encoder may leave raw inside
/// strings (DEL and C1) written as `\u` escapes, which is the same JSON.
#[must_use]
pub fn printable_json(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(char::is_control) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.into()
}

fn render_one(renderer: &Renderer, d: &Diagnostic, source: Option<&str>) -> String {
    let message = printable(&d.message);
    let path = printable(&d.file.display().to_string()).into_owned();
    let mut group = Group::with_title(Level::ERROR.primary_title(message).id(d.code.as_str()));
    let line = source.filter(|_| d.pos.line > 0).and_then(|s| s.lines().nth(d.pos.line as usize - 1));
    group = match line {
        Some(line) => {
            let (shown, span) = snippet_line(line, d.pos.column.saturating_sub(1) as usize);
            group.element(
                Snippet::source(shown)
                    .line_start(d.pos.line as usize)
                    .path(path)
                    .annotation(AnnotationKind::Primary.span(span)),
            )
        }
        None if d.pos.line > 0 => group
            .element(Origin::path(path).line(d.pos.line as usize).char_column(d.pos.column.saturating_sub(1) as usize)),
        None => group.element(Origin::path(path)),
    };
    if let Some(h) = &d.hint {
        group = group.element(Level::HELP.message(printable(h)));
    }
    renderer.render(&[group])
}

/// The line as a snippet shows it, and the byte span of the character at the 0-based character
/// `column` in it (empty past the end of the line). Every control character but the tab becomes
/// one visible character (`␛` for ESC, as rustc shows them; `�` for C1), so the renderer, which
/// expands tabs and measures wide characters itself, puts the caret and the column where they are
/// in the file.
fn snippet_line(line: &str, column: usize) -> (String, std::ops::Range<usize>) {
    let mut shown = String::with_capacity(line.len());
    let mut span = None;
    for (i, c) in line.chars().enumerate() {
        let start = shown.len();
        shown.push(match c {
            '\t' => c,
            '\u{7f}' => '\u{2421}',
            c if c < ' ' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'),
            c if c.is_control() => '\u{fffd}',
            c => c,
        });
        if i == column {
            span = Some(start..shown.len());
        }
    }
    let span = span.unwrap_or(shown.len()..shown.len());
    (shown, span)
}

/// The nearest of `candidates` to `name`, when it is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the nearest candidate, if any.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(nearest("biuld", ["build", "test", "ship"]), Some("build"));
        assert_eq!(nearest("zzz", ["build", "test"]), None);
    }

    #[test]
    fn record_text_and_json_reach_the_terminal_without_control_characters() {
        let text = "a\u{1b}[2J\tb\r\n\u{9b}31m\u{7}\nlast\u{1b}";
        let shown = printable_lines(text);
        assert_eq!(shown, "a\\u{1b}[2J\\tb\n\\u{9b}31m\\u{7}\nlast\\u{1b}");
        let json = serde_json::json!({ "k\u{1b}": "v\u{9b}\u{7f}\u{85}" }).to_string();
        let shown = printable_json(&json);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&shown).ok(), serde_json::from_str(&json).ok());
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let f = Path::new("p.yaml");
        let ds: Diagnostics =
            Diagnostic::new(f, Pos::new(1, 1), "key `a\u{1b}[2Jb`").code(code::FIELD_UNKNOWN).hint("x\u{7}").into();
        let text = ds.render(&|_| Some("a\u{1b}[2Jb: 1\n".into()));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.contains("a\\u{1b}[2Jb"), "{text}");
    }

    #[test]
    fn renders_sorted_with_snippet() {
        let f = Path::new("p.yaml");
        let mut ds = Diagnostics::default();
        ds.push(Diagnostic::new(f, Pos::new(2, 3), "second").code(code::NEEDS_UNKNOWN));
        ds.push(Diagnostic::new(f, Pos::new(1, 1), "first").code(code::YAML_SYNTAX).hint("fix it"));
        let text = ds.finish().render(&|_| Some("a: 1\n  b: 2\n".into()));
        let first = text.find("first").unwrap_or(usize::MAX);
        let second = text.find("second").unwrap_or(0);
        assert!(first < second, "{text}");
        assert!(text.contains("2 |   b: 2\n  |   ^"), "{text}");
        assert!(text.contains("= help: fix it"));
        assert!(text.starts_with("error[yaml.syntax]: first\n"), "{text}");
        assert!(text.contains("error[needs.unknown]: second\n"), "{text}");
    }

    #[test]
    fn control_characters_are_escaped_in_snippets() {
        let (shown, span) = snippet_line("\tkey: \u{1b}[31m\u{9b}\u{7f}\u{0}", 6);
        assert_eq!(shown, "\tkey: \u{241b}[31m\u{fffd}\u{2421}\u{2400}");
        assert_eq!(&shown[span], "\u{241b}");
        assert_eq!(snippet_line("ab", 5).1, 2..2);
        // The column in the header is the file's, whatever came before it on the line.
        let ds: Diagnostics =
            Diagnostic::new(Path::new("p.yaml"), Pos::new(1, 4), "bad").code(code::YAML_SYNTAX).into();
        let text = ds.render(&|_| Some("\u{1b}\u{9b}\u{7}x\n".into()));
        assert!(text.contains("p.yaml:1:4\n") && text.contains("| \u{241b}\u{fffd}\u{2407}x\n"), "{text}");
    }

    #[test]
    fn the_caret_stays_under_the_column_after_wide_characters_and_tabs() -> Result<(), String> {
        // (line, 1-based character column of the error, display columns before it)
        for (line, column, width) in
            [("名前: {{ nope }}", 5, 6), ("- 😀😀 [y]", 6, 7), ("\tk: v", 2, 4), ("a\t名\tb", 5, 11)]
        {
            let ds: Diagnostics =
                Diagnostic::new(Path::new("p.yaml"), Pos::new(1, column), "bad").code(code::NEEDS_UNKNOWN).into();
            let text = ds.render(&|_| Some(format!("{line}\n")));
            let lines: Vec<&str> = text.lines().collect();
            let src = lines.iter().position(|l| l.starts_with("1 | ")).ok_or_else(|| text.clone())?;
            let caret = lines.get(src + 1).and_then(|l| l.find('^')).ok_or_else(|| text.clone())?;
            assert_eq!(caret - "1 | ".len(), width, "{line:?}:\n{text}");
            assert!(lines.iter().any(|l| l.ends_with(&format!("p.yaml:1:{column}"))), "{text}");
        }
        Ok(())
    }
}
