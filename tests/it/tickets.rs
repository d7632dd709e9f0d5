//! Tickets from Markdown and from GitHub webhook events; routing; inputs.

use std::path::Path;

use lightsout::compile::{Factory, route};
use lightsout::ticket::Ticket;

fn example() -> Factory {
    Factory::load(&super::root().join("examples/bugfix/factory.yaml")).unwrap_or_else(|ds| panic!("{ds:?}"))
}

#[test]
fn github_issues_event_becomes_a_ticket() {
    let t = Ticket::load(&super::root().join("tests/fixtures/github-issues-opened.json"))
        .unwrap_or_else(|ds| panic!("{ds:?}"));
    assert_eq!(t.id, "42");
    assert_eq!(t.title, "median() is wrong for even-length input");
    assert_eq!(t.labels, vec!["bug"]);
    assert_eq!(t.author.as_deref(), Some("octo-qa"));
    assert_eq!(t.url.as_deref(), Some("https://github.com/acme/stats/issues/42"));
    assert_eq!(
        t.fields.get("failing_test").and_then(|v| v.as_str()),
        Some("tests.test_stats.MedianTest.test_even_length")
    );
    assert!(!t.fields.contains_key("notes"), "empty issue-form answers are not fields");
}

#[test]
fn github_event_routes_and_fills_inputs() {
    let f = example();
    let t = Ticket::load(&super::root().join("tests/fixtures/github-issues-opened.json"))
        .unwrap_or_else(|ds| panic!("{ds:?}"));
    let r = route(&f, &t, None).unwrap_or_else(|ds| panic!("{ds:?}"));
    assert_eq!(r.category, "bugfix");
    let plan = f.compile(&r.category, Some(&t)).unwrap_or_else(|ds| panic!("{ds:?}"));
    assert_eq!(
        plan.inputs().get("failing_test").and_then(|v| v.as_str()),
        Some("tests.test_stats.MedianTest.test_even_length")
    );
}

#[test]
fn a_ticket_without_a_required_input_is_refused_at_the_input() {
    let f = example();
    let t = Ticket::from_markdown(Path::new("t.md"), "---\nid: 7\nlabels: [bug]\n---\n# Broken\n")
        .unwrap_or_else(|ds| panic!("{ds:?}"));
    let ds = f.compile("bugfix", Some(&t)).err().unwrap_or_else(|| panic!("accepted"));
    let text = ds.render(&|_| None).replace(&super::root().display().to_string(), "<root>");
    insta::assert_snapshot!(text);
}

#[test]
fn an_unmatched_ticket_says_how_to_route_it() {
    let f = example();
    let t = Ticket::from_markdown(Path::new("t.md"), "---\nid: 8\nlabels: [question]\n---\n# How?\n")
        .unwrap_or_else(|ds| panic!("{ds:?}"));
    let ds = route(&f, &t, None).err().unwrap_or_else(|| panic!("routed"));
    let text = ds.render(&|_| None).replace(&super::root().display().to_string(), "<root>");
    insta::assert_snapshot!(text);
    assert_eq!(route(&f, &t, Some("bugfix")).map(|r| r.category).ok().as_deref(), Some("bugfix"));
    assert!(route(&f, &t, Some("bugfx")).is_err());
}

#[test]
fn typed_inputs_are_checked() {
    use lightsout::compile::fill_inputs;
    use lightsout::spec::{self, FileKind, PipelineFile};
    let text = "version: 1\ncategory: perf\ninputs:\n  runs: { type: integer }\n  fast: { type: boolean, default: false }\nstages:\n  a: { run: x }\n";
    let p: PipelineFile =
        spec::load_str(FileKind::Pipeline, Path::new("p.yaml"), text).unwrap_or_else(|ds| panic!("{ds:?}"));
    let ok =
        Ticket::from_markdown(Path::new("t.md"), "---\nruns: \"12\"\n---\n# t\n").unwrap_or_else(|ds| panic!("{ds:?}"));
    let v = fill_inputs(Path::new("p.yaml"), &p, &ok).unwrap_or_else(|ds| panic!("{ds:?}"));
    assert_eq!(v.get("runs"), Some(&serde_json::json!(12)));
    assert_eq!(v.get("fast"), Some(&serde_json::json!(false)));
    let bad =
        Ticket::from_markdown(Path::new("t.md"), "---\nruns: many\n---\n# t\n").unwrap_or_else(|ds| panic!("{ds:?}"));
    let ds = fill_inputs(Path::new("p.yaml"), &p, &bad).err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        ds.iter().next().map(|d| (d.pos.line, d.message.clone())),
        Some((4, "ticket `t` gives input `runs` a value that is not integer".into()))
    );
}

#[test]
fn hostile_ticket_text_stays_inert_in_plan_output() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ticket = dir.path().join("evil.md");
    std::fs::write(
        &ticket,
        "---\nid: \"9\"\nlabels: [bug]\nfailing_test: \"x; rm -rf / $(id) `id` {{ 7*7 }}\"\n---\n# {{ 7*7 }} \u{1b}[2J $(reboot)\n\nbody {% raw %}\n",
    )?;
    let (code, out, err) =
        super::output(super::lightsout(&super::root().join("examples/bugfix")).args(["plan", "--ticket"]).arg(&ticket));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("{{ 7*7 }}"), "{out}");
    assert!(!out.contains("49"), "ticket text was evaluated: {out}");
    assert!(!out.contains('\u{1b}'), "an escape sequence reached the terminal: {out:?}");
    Ok(())
}
