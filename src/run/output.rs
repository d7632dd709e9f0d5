//! What a stage attempt prints and the outputs file it writes: its log (masked, its start
//! and end kept), the end of it for verdicts and feedback, and the outputs read as untrusted.

use super::*;

/// Largest outputs file read back from a stage.
pub(super) const MAX_OUTPUT_FILE: u64 = 1024 * 1024;

/// What a stage attempt's log keeps of its output: its start and its end.
pub(super) const LOG_HEAD: u64 = 4 * 1024 * 1024;

pub(super) const LOG_TAIL: usize = 4 * 1024 * 1024;

pub(super) const MAX_LOG_BYTES: u64 = LOG_HEAD + LOG_TAIL as u64;

/// The last `n` lines of a stage's log, read from its last 64 KiB only (a log may be huge).
pub(super) fn log_tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else { return Vec::new() };
    let len = file.metadata().map_or(0, |m| m.len());
    if file.seek(SeekFrom::Start(len.saturating_sub(WINDOW))).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(WINDOW).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().rev().take(n).map(str::to_owned).collect();
    lines.reverse();
    lines
}

/// Writes a stage's output, masked, to its log file and to the observers. A log keeps at most
/// [`LOG_HEAD`] bytes from its start and [`LOG_TAIL`] from its end: what lies between is
/// dropped, and the log says where and how much, as does a warning in the run's record.
pub(super) async fn write_log(
    path: &Path,
    stage: &str,
    needles: Arc<Needles>,
    chunks: &mut mpsc::Receiver<(crate::events::Stream, bytes::Bytes)>,
    logs: &mpsc::Sender<Event>,
) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| e.to_string())?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
    // One masker for both streams, in the order they arrive (the order of the log file): a
    // secret printed half on stdout and half on stderr is still one secret in the file.
    let mut masker = Masker::new(needles);
    let mut written: u64 = 0;
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut omitted: u64 = 0;
    // Every line reaches the sinks (`--format json` drops none): a full channel makes the
    // stage's output wait, as a full pipe would.
    let event = |which, bytes: &[u8]| Event::StageLog {
        stage: stage.to_owned(),
        stream: which,
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    let mut keep = async |which, safe: Vec<u8>, file: &mut tokio::fs::File| -> Result<(), String> {
        let room = usize::try_from(LOG_HEAD.saturating_sub(written)).unwrap_or(usize::MAX).min(safe.len());
        if room > 0 {
            file.write_all(&safe[..room]).await.map_err(|e| e.to_string())?;
            let _ = logs.send(event(which, &safe[..room])).await;
            written += room as u64;
        }
        tail.extend(&safe[room..]);
        if tail.len() > LOG_TAIL {
            let excess = tail.len() - LOG_TAIL;
            tail.drain(..excess);
            omitted += excess as u64;
        }
        Ok(())
    };
    let mut last = crate::events::Stream::Stdout;
    while let Some((which, chunk)) = chunks.recv().await {
        let safe = masker.push(&chunk);
        last = which;
        if !safe.is_empty() {
            keep(which, safe, &mut file).await?;
        }
    }
    let rest = masker.finish();
    if !rest.is_empty() {
        keep(last, rest, &mut file).await?;
    }
    if omitted > 0 {
        let note = format!(
            "\n[lightsout: {omitted} bytes of output omitted here; a log keeps its first {LOG_HEAD} and last {LOG_TAIL} bytes]\n"
        );
        file.write_all(note.as_bytes()).await.map_err(|e| e.to_string())?;
        let _ = logs.send(event(crate::events::Stream::Stderr, note.as_bytes())).await;
        let message =
            format!("`{stage}`: its output was longer than a log keeps; {omitted} bytes in the middle were omitted");
        let _ = logs.send(Event::Warning { message }).await;
    }
    let (a, b) = tail.as_slices();
    file.write_all(a).await.map_err(|e| e.to_string())?;
    file.write_all(b).await.map_err(|e| e.to_string())?;
    file.sync_data().await.map_err(|e| e.to_string())
}

/// Reads `$LIGHTSOUT_OUTPUT`: a JSON object, or `key=value` lines. The file is the stage's:
/// it is read as [`untrusted`] says, and every key, value and error quoting it is masked.
pub(super) async fn read_outputs(path: &Path, needles: &Needles) -> Result<BTreeMap<String, String>, String> {
    let bytes = match crate::untrusted::read_file_async(path, MAX_OUTPUT_FILE).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(BTreeMap::new()),
        Err(why) => return Err(format!("$LIGHTSOUT_OUTPUT {why}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut out = BTreeMap::new();
    if text.trim_start().starts_with('{') {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| needles.mask_str(&format!("$LIGHTSOUT_OUTPUT is not a JSON object: {e}")))?;
        for (k, v) in obj {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.insert(needles.mask_str(&k), needles.mask_str(&v));
        }
    } else {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| {
                needles.mask_str(&format!("$LIGHTSOUT_OUTPUT: `{}` is not `key=value`", line.escape_debug()))
            })?;
            out.insert(needles.mask_str(k.trim()), needles.mask_str(v));
        }
    }
    Ok(out)
}

/// The diff stat recorded with the run's end: a change of a million files keeps its start.
pub(super) const MAX_DIFF_STAT: usize = 64 * 1024;

/// `text` cut at a line boundary to at most `max` bytes, saying how many lines were left out.
pub(super) fn capped_lines(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end].rfind('\n').unwrap_or(0);
    let left = text[cut..].lines().filter(|l| !l.is_empty()).count();
    format!("{}\n... {left} more lines", &text[..cut])
}
