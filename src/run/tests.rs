//! Unit tests of the run's parts: usage, log tails, agent scripts, capped text.

#![expect(clippy::expect_used, reason = "test set-up: a failing temp dir or write is the test failing")]

use super::attempt::{agent_script, usage};
use super::*;
use crate::plan::{PromptMode, UsageFormat};

#[test]
fn claude_stream_json_usage_and_cost() {
    let log = concat!(
        r#"{"type":"system","subtype":"init","session_id":"s"}"#,
        "\n",
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"done"}]}}"#,
        "\n",
        r#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.0421,"usage":{"input_tokens":12,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":85}}"#,
        "\n"
    );
    let u = usage(UsageFormat::ClaudeStreamJson, log);
    assert_eq!(u.get("tokens_in").map(String::as_str), Some("1312"));
    assert_eq!(u.get("tokens_out").map(String::as_str), Some("85"));
    assert_eq!(u.get("cost_usd").map(String::as_str), Some("0.042100"));
}

#[test]
fn codex_json_events_usage_summed_over_turns() {
    let log = concat!(
        r#"{"type":"thread.started","thread_id":"t"}"#,
        "\n",
        r#"{"type":"turn.completed","usage":{"input_tokens":26549,"cached_input_tokens":22272,"output_tokens":1590}}"#,
        "\n",
        r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":10}}"#,
        "\n"
    );
    let u = usage(UsageFormat::CodexJson, log);
    assert_eq!(u.get("tokens_in").map(String::as_str), Some("26649"));
    assert_eq!(u.get("tokens_out").map(String::as_str), Some("1600"));
    assert!(!u.contains_key("cost_usd"));
    assert!(usage(UsageFormat::None, log).is_empty());
}

#[test]
fn a_long_diff_stat_keeps_its_start() {
    let stat = (0..1000).fold(String::new(), |mut acc, i| {
        let _ = writeln!(acc, " f{i} | 1 +");
        acc
    });
    let capped = capped_lines(&stat, 100);
    assert!(capped.len() < 150 && capped.starts_with(" f0 | 1 +") && capped.ends_with("more lines"), "{capped}");
    assert_eq!(capped_lines("short\n", 100), "short\n");
}

#[test]
fn a_log_tail_reads_only_the_end() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("log");
    let mut text = "x".repeat(200 * 1024);
    text.push_str("\nsecond to last\nlast\n");
    std::fs::write(&path, text).expect("write");
    assert_eq!(log_tail(&path, 2), ["second to last", "last"]);
    assert_eq!(log_tail(&dir.path().join("missing"), 2), Vec::<String>::new());
}

#[test]
fn agent_scripts_quote_every_word() {
    let call = |argv: &[&str], mode| crate::plan::AgentCall {
        name: "a".into(),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        prompt_mode: mode,
        usage: UsageFormat::None,
        prompt: String::new(),
    };
    let s = agent_script(&call(&["my agent", "--flag=$(id)"], PromptMode::Stdin));
    assert!(s.ends_with("exec 'my agent' '--flag=$(id)' < /lightsout/prompt.md"), "{s}");
    let s = agent_script(&call(&["aider", "--message-file"], PromptMode::File));
    assert!(s.contains("exec aider --message-file /lightsout/prompt.md"), "{s}");
    let s = agent_script(&call(&["tool", "{prompt_file}"], PromptMode::File));
    assert!(s.contains("exec tool /lightsout/prompt.md < /dev/null"), "{s}");
    let s = agent_script(&call(&["tool"], PromptMode::Arg));
    assert!(s.contains(r#"exec tool "$(cat /lightsout/prompt.md)""#), "{s}");
}
