//! Text from outside (a ticket, an agent, anything a stage wrote) made inert where Markdown
//! and HTML are rendered: the pull request's title and body, the issue comment, the Markdown
//! report. Everything such text passes through one of these functions, so it reads as the
//! characters it is, never as an image, a link, an HTML tag, a heading, a table cell, a
//! mention or an issue reference.

/// Joins `@` and `#` to what follows in a title, so that GitHub makes no mention and no
/// reference.
const JOINER: char = '\u{200d}';

/// `text` as an inline code span, in which Markdown, HTML, links, images, mentions and
/// references are all literal: on one line, control characters escaped (`\u{1b}`), delimited
/// by a run of backticks longer than any inside it.
pub fn code(text: &str) -> String {
    let flat = text.replace(['\n', '\r', '\t'], " ");
    let flat = crate::diag::printable(&flat);
    let longest = flat.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // A space on each side is taken off again when rendered; it is needed when the text starts
    // or ends with a backtick, or with spaces on both ends (which would be taken instead).
    let pad = flat.starts_with('`') || flat.ends_with('`') || (flat.starts_with(' ') && flat.ends_with(' '));
    let pad = if pad { " " } else { "" };
    format!("{fence}{pad}{flat}{pad}{fence}")
}

/// [`code`] for a table cell: a `|` would end the cell, even inside a code span, so it is
/// escaped (GitHub renders `\|` in a cell as `|`).
pub fn cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// `text` for a pull request's title, which GitHub shows as text but for code spans and
/// references: one line, control characters as spaces, backticks as quotes, and `@` and `#`
/// joined to what follows by a zero-width joiner (no mention, no reference).
pub fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '@' | '#' => {
                out.push(c);
                out.push(JOINER);
            }
            '`' => out.push('\''),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a fenced code block that nothing in it can close: the fence is longer than any
/// run of backticks in the text, and control characters other than line breaks are escaped.
pub fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let body: Vec<String> = text.lines().map(|l| crate::diag::printable(l).into_owned()).collect();
    format!("{fence}\n{}\n{fence}", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_inert_in_a_code_span() {
        let hostile = "![x](http://evil/p.png) <img src=x onerror=alert(1)> @octocat #1 [link](javascript:alert(1)) | table |\n# h\u{1b}[31m";
        assert_eq!(code(hostile), format!("`{}`", hostile.replace('\n', " ").replace('\u{1b}', "\\u{1b}")));
        assert_eq!(code("a `b` c"), "``a `b` c``");
        assert_eq!(code("`b` ``c"), "``` `b` ``c ```");
        assert_eq!(code(" x "), "`  x  `");
        assert_eq!(cell("a|b`|"), r"``a\|b`\|``");
    }

    #[test]
    fn titles_make_no_mention_nor_reference() {
        assert_eq!(title("fix `x` for @octocat #1\u{1b}"), "fix 'x' for @\u{200d}octocat #\u{200d}1 ");
    }

    #[test]
    fn a_fence_cannot_be_closed_from_inside() {
        let out = fenced("a.rs | 1 +\n```\n````` | 2 +\n\u{1b}[2J");
        assert!(out.starts_with("``````\n") && out.ends_with("\n``````"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }
}
