//! The `JUnit` XML report: one test case per stage, for CI test views. Written with quick-junit,
//! which escapes and formats; what a stage wrote reaches it only through [`xml_text`].

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::events::Outcome;
use crate::store::{RunDir, StageState};

/// `JUnit` XML: one test case per stage.
pub fn junit(dir: &RunDir) -> Result<String, String> {
    let (plan, _) = super::load(dir)?;
    let state = dir.state();
    let stages = plan.stages().iter().map(|s| (s.id.as_str(), state.stages.get(&s.id)));
    to_xml(&state.run_id, plan.category(), stages)
}

/// The report of run `run_id` of `category`, from each stage's id and state (`None`: not run).
fn to_xml<'a>(
    run_id: &str,
    category: &str,
    stages: impl Iterator<Item = (&'a str, Option<&'a StageState>)>,
) -> Result<String, String> {
    let mut suite = TestSuite::new(xml_text(&format!("lightsout run {run_id}")));
    let classname = xml_text(&format!("lightsout.{category}"));
    for (id, st) in stages {
        let status = match st {
            Some(st) if st.skipped.is_some() => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(xml_text(st.skipped.as_deref().unwrap_or_default()));
                s
            }
            Some(st) if st.outcome == Some(Outcome::Succeeded) => TestCaseStatus::success(),
            Some(st) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(xml_text(&st.reason));
                let detail = st.verdict.as_ref().map(|v| v.reasons.join("\n")).unwrap_or_default();
                if !detail.is_empty() {
                    s.set_description(xml_text(&detail));
                }
                s
            }
            None => {
                let mut s = TestCaseStatus::skipped();
                s.set_message("not run");
                s
            }
        };
        let mut case = TestCase::new(xml_text(id), status);
        case.set_classname(classname.as_str());
        case.set_time(Duration::from_millis(st.map_or(0, |s| s.duration_ms)));
        suite.add_test_case(case);
    }
    let mut report = Report::unnamed();
    report.add_test_suite(suite);
    report.to_string().map_err(|e| format!("cannot write the JUnit report: {e}"))
}

/// `text` without what XML 1.0 cannot hold (most control characters, U+FFFE, U+FFFF) and without
/// the C1 controls it could, so that the report reaches a terminal inert; quick-junit escapes the
/// rest (`<`, `&`, `]]>`, quotes).
fn xml_text(text: &str) -> String {
    text.chars()
        .filter(|&c| (!c.is_control() || matches!(c, '\n' | '\t')) && !matches!(c, '\u{fffe}' | '\u{ffff}'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Verdict;

    const HOSTILE: &str =
        "a]]>b<c>&\"'\u{0}\u{1b}[31m\u{7}\u{9b}\u{7f}\u{fffe}\u{ffff}\r\n\u{d7ff}\u{1f600}<![CDATA[x]]>";

    fn failed(reason: &str) -> StageState {
        StageState {
            outcome: Some(Outcome::Failed),
            reason: reason.into(),
            duration_ms: 1234,
            verdict: Some(Verdict {
                pass: false,
                reasons: vec![reason.into(), "two".into()],
                details: serde_json::Value::Null,
            }),
            ..StageState::default()
        }
    }

    #[test]
    fn hostile_names_and_output_make_well_formed_xml() -> Result<(), String> {
        let bad = failed(HOSTILE);
        let skipped = StageState { skipped: Some(HOSTILE.into()), ..StageState::default() };
        let ok = StageState { outcome: Some(Outcome::Succeeded), ..StageState::default() };
        let stages = [(HOSTILE, Some(&bad)), ("skip", Some(&skipped)), ("ok", Some(&ok)), ("later", None)];
        let xml = to_xml(HOSTILE, HOSTILE, stages.into_iter())?;
        assert!(!xml.chars().any(|c| c.is_control() && c != '\n'), "{xml:?}");
        let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("{e}: {xml}"))?;
        let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).ok_or("no testsuite")?;
        assert_eq!(suite.attribute("tests"), Some("4"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        assert_eq!(suite.attribute("skipped"), Some("2"));
        let clean = xml_text(HOSTILE);
        assert!(clean.contains("a]]>b<c>&") && clean.contains('\u{1f600}'), "{clean:?}");
        let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        // A parser reads line breaks in an attribute as spaces.
        let attr = clean.replace('\n', " ");
        assert_eq!(cases[0].attribute("name"), Some(attr.as_str()));
        assert_eq!(cases[0].attribute("time"), Some("1.234"));
        assert_eq!(cases[0].attribute("classname").map(str::to_owned), Some(format!("lightsout.{attr}")));
        let failure = cases[0].children().find(|n| n.has_tag_name("failure")).ok_or("no failure")?;
        assert_eq!(failure.attribute("message"), Some(attr.as_str()));
        assert_eq!(failure.text(), Some(format!("{clean}\ntwo").as_str()));
        let skip =
            |i: usize| cases[i].children().find(|n| n.has_tag_name("skipped")).and_then(|n| n.attribute("message"));
        assert_eq!(skip(1), Some(attr.as_str()));
        assert_eq!(skip(3), Some("not run"));
        assert!(cases[2].children().all(|n| !n.is_element()));
        Ok(())
    }
}
