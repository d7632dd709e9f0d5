//! Secret masking for streamed output.
//!
//! Every value of every secret given to a run is replaced by `***` in terminal output, logs and
//! records, also when it arrives split across writes (the masker holds back a tail as long as
//! the longest possible match), on several lines (each line of a multi-line secret is a needle,
//! and a needle matches with line breaks between its bytes), or base64-encoded (standard and
//! URL-safe alphabets, at each of the three alignments a secret can take inside a longer text).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// What replaces a secret.
pub const MASK: &[u8] = b"***";
/// Shortest needle masked: shorter fragments would mask ordinary text without protecting much.
pub const MIN_NEEDLE: usize = 4;
/// Invisible pieces (line breaks, control bytes, escape sequences) allowed between two bytes of
/// a secret for it still to match, and the longest escape sequence skipped.
const MAX_BREAKS: usize = 2;
const MAX_ESCAPE: usize = 24;

/// The length of the invisible piece `text` starts with: a control byte, or an escape sequence
/// of at most [`MAX_ESCAPE`] bytes; `None` when it starts with a visible byte.
fn invisible_len(text: &[u8]) -> Option<usize> {
    let first = *text.first()?;
    if first != 0x1b {
        return (first < 0x20 || first == 0x7f).then_some(1);
    }
    match text.get(1) {
        // CSI: parameters and intermediates, then one final byte.
        Some(b'[') => text
            .iter()
            .enumerate()
            .skip(2)
            .take(MAX_ESCAPE - 2)
            .find(|(_, c)| (0x40..=0x7e).contains(*c))
            .map(|(n, _)| n + 1),
        // OSC: up to BEL or ESC \.
        Some(b']') => text.iter().enumerate().skip(2).take(MAX_ESCAPE - 2).find_map(|(n, &c)| match c {
            0x07 => Some(n + 1),
            b'\\' if text[n - 1] == 0x1b => Some(n + 1),
            _ => None,
        }),
        Some(_) => Some(2),
        None => Some(1),
    }
}

/// The set of byte strings to mask, derived from secret values.
#[derive(Clone, Debug, Default)]
pub struct Needles {
    needles: Vec<Vec<u8>>,
    /// Longest span a match can take in the stream (needle bytes plus allowed line breaks).
    max_span: usize,
}

impl Needles {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Needles {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            let secret = secret.trim_end_matches(['\n', '\r']);
            let mut add = |n: &[u8]| {
                if n.len() >= MIN_NEEDLE && !needles.iter().any(|m| m == n) {
                    needles.push(n.to_vec());
                }
            };
            add(secret.as_bytes());
            for line in secret.lines() {
                add(line.trim().as_bytes());
            }
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                for (offset, skip) in [(0usize, 0usize), (1, 2), (2, 3)] {
                    // Base64 of the secret preceded by `offset` unknown bytes: the first `skip`
                    // characters depend on those bytes, and the last may depend on what follows.
                    let mut padded = vec![0u8; offset];
                    padded.extend_from_slice(secret.as_bytes());
                    let enc = engine.encode(&padded);
                    let stable_end = enc.len() - usize::from((padded.len() % 3) != 0);
                    if stable_end > skip {
                        add(&enc.as_bytes()[skip..stable_end]);
                    }
                }
            }
        }
        // Longest first, so that a secret is masked whole rather than by one of its lines.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let max_span = needles.iter().map(|n| n.len() + (n.len() - 1) * MAX_BREAKS * MAX_ESCAPE).max().unwrap_or(0);
        Needles { needles, max_span }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Length of a match of `needle` at `text[at..]`, allowing, between two of its bytes, up to
    /// [`MAX_BREAKS`] pieces a terminal does not show as text: line breaks, other control bytes,
    /// and escape sequences (`ESC [ ... final`, `ESC ] ... BEL`, two-byte `ESC x`).
    fn match_len(needle: &[u8], text: &[u8], at: usize) -> Option<usize> {
        let mut i = at;
        for (k, &b) in needle.iter().enumerate() {
            if k > 0 {
                let mut breaks = 0;
                while i < text.len() && text[i] != b && breaks < MAX_BREAKS {
                    let Some(len) = invisible_len(&text[i..]) else { break };
                    i += len;
                    breaks += 1;
                }
            }
            if i >= text.len() || text[i] != b {
                return None;
            }
            i += 1;
        }
        Some(i - at)
    }

    /// Masks every complete match in `text`.
    pub fn mask(&self, text: &[u8]) -> Vec<u8> {
        if self.needles.is_empty() {
            return text.to_vec();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let hit = self.needles.iter().filter(|n| n[0] == text[i]).find_map(|n| Self::match_len(n, text, i));
            if let Some(len) = hit {
                out.extend_from_slice(MASK);
                i += len;
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    }

    pub fn mask_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.mask(text.as_bytes())).into_owned()
    }

    /// Masks every string (and every key) of a JSON value, such as a grader's verdict.
    pub fn mask_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.mask_str(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.mask_json(i)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut item) in entries {
                    self.mask_json(&mut item);
                    map.insert(self.mask_str(&k), item);
                }
            }
            _ => {}
        }
    }
}

/// A streaming masker: feed chunks as they arrive, get back what is safe to show.
#[derive(Debug)]
pub struct Masker {
    needles: std::sync::Arc<Needles>,
    pending: Vec<u8>,
}

impl Masker {
    pub fn new(needles: std::sync::Arc<Needles>) -> Masker {
        Masker { needles, pending: Vec::new() }
    }

    /// Takes a chunk; returns the masked bytes that can no longer be part of a match.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.needles.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        // Mask complete matches; keep back the last `max_span - 1` bytes, which may begin a
        // match that the next chunk completes. A match beginning before that tail would
        // already be complete, so it has been masked.
        let hold = self.needles.max_span.saturating_sub(1);
        if self.pending.len() <= hold {
            return Vec::new();
        }
        let masked = self.mask_pending();
        self.pending = masked;
        if self.pending.len() <= hold {
            return Vec::new();
        }
        let cut = self.safe_cut(hold);
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }

    /// Everything still held back, masked: call at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let masked = self.needles.mask(&self.pending);
        self.pending.clear();
        masked
    }

    fn mask_pending(&self) -> Vec<u8> {
        self.needles.mask(&self.pending)
    }

    /// Where to cut so the held tail is `hold` bytes, not splitting a mask just written.
    fn safe_cut(&self, hold: usize) -> usize {
        let mut cut = self.pending.len() - hold;
        // Do not leave part of a `***` in the tail, where it could join a later match.
        while cut > 0 && cut < self.pending.len() && self.pending[cut] == b'*' && self.pending[cut - 1] == b'*' {
            cut += 1;
        }
        cut.min(self.pending.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SECRET: &str = "hunter2-s3cr3t-value";

    fn stream(chunks: &[&[u8]]) -> String {
        let mut m = Masker::new(Arc::new(Needles::new([SECRET, "line-one-key\nline-two-key"])));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.push(c));
        }
        out.extend(m.finish());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn whole_and_split_across_writes() {
        assert_eq!(stream(&[b"token=hunter2-s3cr3t-value done"]), "token=*** done");
        let bytes = format!("a {SECRET} b");
        let chunks: Vec<&[u8]> = bytes.as_bytes().chunks(1).collect();
        assert_eq!(stream(&chunks), "a *** b");
    }

    #[test]
    fn spread_over_lines() {
        let spread: String = SECRET.chars().flat_map(|c| [c, '\n']).collect();
        assert!(!stream(&[spread.as_bytes()]).contains("hunter"), "{}", stream(&[spread.as_bytes()]));
        assert_eq!(stream(&[b"x line-two-key y"]), "x *** y");
    }

    #[test]
    fn base64_at_every_alignment() {
        for prefix in ["", "a", "ab", "abc"] {
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let enc = engine.encode(format!("{prefix}{SECRET}!"));
                let out = stream(&[enc.as_bytes()]);
                assert!(out.contains("***"), "{prefix:?}: {enc} -> {out}");
                let inner = engine.encode(SECRET);
                assert!(!out.contains(&inner[4..inner.len() - 4]), "{out}");
            }
        }
    }

    #[test]
    fn escape_sequences_and_control_bytes_inside_a_secret() {
        for broken in [
            "hunter2-\x1b[0ms3cr3t-value",
            "hunter2-\x1b[38;5;196ms3cr3t-value",
            "hun\x1b]0;title\x07ter2-s3cr3t-value",
            "hunter2\x08-s3cr3t\x00-value",
            "h\x1b[0mu\x1b[0mn\x1b[0mt\x1b[0mer2-s3cr3t-value",
        ] {
            let out = stream(&[broken.as_bytes()]);
            assert_eq!(out, "***", "{broken:?} -> {out:?}");
        }
    }

    #[test]
    fn ordinary_text_passes_unchanged() {
        assert_eq!(stream(&[b"nothing secret here\n", b"at all\n"]), "nothing secret here\nat all\n");
    }
}
