//! `grade.tests` in the run: the test command on the candidate (with the base revision's test
//! files) and on the base revision, in I/O directories of their own, compared.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ctx, MAX_LOG_BYTES, clean_after, discard, ownership, run_job, scratch_of};
use crate::events::Event;
use crate::executor::{Ended, Job};
use crate::plan::{Stage, StageKind};
use crate::template::Mode;

use crate::stages::grade_tests::Unjudged;
use crate::stages::results::Format;

/// The largest `JUnit` report a test command may write.
pub(super) const MAX_JUNIT_FILE: u64 = 32 * 1024 * 1024;

/// Per-test results of one run of the test command that exited `code`, read as `format`
/// says: from its `JUnit` report (for `junit`, or without a format when it wrote one), else
/// from its output. The report is the stage's file: read as [`untrusted`] says, off the
/// scheduler's thread.
pub(super) async fn results_of(
    format: Option<Format>,
    io_dir: &Path,
    log_path: &Path,
    code: i64,
) -> Result<crate::stages::grade_tests::Results, Unjudged> {
    // A log format reads the log alone: a report the code under test wrote is not the runner's.
    let junit = if format.is_none_or(|f| f == Format::Junit) {
        crate::untrusted::read_file_async(&io_dir.join("junit.xml"), MAX_JUNIT_FILE)
            .await
            .map_err(|why| Unjudged::Fault(format!("the JUnit report {why}")))?
    } else {
        None
    };
    let log = if junit.is_none() || format.is_some() {
        crate::untrusted::read_file_async(log_path, MAX_LOG_BYTES + 4096).await.ok().flatten().unwrap_or_default()
    } else {
        Vec::new()
    };
    crate::stages::grade_tests::read_results(format, &log, junit.as_deref(), code)
}

/// `grade.tests`: the test command on the candidate (with the test files of the base
/// revision) and on the base revision (once per base and command, then reused), compared.
/// `Err(Ok(ended))` when a run timed out or was cancelled, `Err(Err(fault))` on a fault.
pub(super) async fn grade_tests(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    job: &Job,
    tctx: &serde_json::Value,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> Result<(crate::stages::Verdict, i64), Result<Ended, String>> {
    let StageKind::Tests(params) = &stage.kind else {
        return Err(Err(format!("`{}` is not a grade.tests stage", stage.id)));
    };
    let mut fail_to_pass = Vec::new();
    for t in params.fail_to_pass.iter().flatten() {
        fail_to_pass.push(crate::template::render(Mode::Text, t, tctx).map_err(|e| Err(format!("fail_to_pass: {e}")))?);
    }
    let format = params.format;
    let pass_to_pass = params.pass_to_pass.unwrap_or(false);
    let test_files =
        crate::policy::Globs::new(params.test_files.as_deref().unwrap_or_default(), crate::policy::Matching::default())
            .map_err(|e| Err(format!("test_files: {e}")))?;
    let mut env = job.env.clone();
    env.push(("LIGHTSOUT_JUNIT".into(), format!("{}/junit.xml", crate::executor::IO_DIR)));

    // The candidate, with the test files as the base revision has them.
    let candidate = ctx.workspace.head().map_err(|e| Err(e.to_string()))?;
    let cand = scratch_of(ctx, &format!("{}-{attempt}-candidate", stage.id), &candidate).map_err(Err)?;
    let prepared = cand.reset_to_base(&test_files);
    ownership::prepare(&cand.dir);
    // Scratch copies, thrown away after: the test command may write them (`target/`, a lock
    // file) and run what it built there.
    let cand_job = Job { workspace: cand.root(), writable: true, env: env.clone(), ..job.clone() };
    let log_path = ctx.dir.log_path(&stage.id, attempt);
    let (ended, log_ok) = if let Err(e) = prepared {
        (Err(e.to_string()), Ok(()))
    } else {
        run_job(ctx, &cand_job, log_path.clone(), logs, cancel).await
    };
    discard(ctx, &cand, logs).await;
    // The candidate's report is the candidate's: one that cannot be read fails the verdict.
    let (code, cand_results) = settle(ctx, &cand_job, &log_path, format, ended, log_ok, logs).await?;
    let cand_results = match cand_results {
        Ok(r) => r,
        Err(Unjudged::Fault(why)) => return Err(Err(why)),
        Err(Unjudged::NotAPass(why)) => {
            let v = crate::stages::Verdict { pass: false, reasons: vec![why], details: serde_json::Value::Null };
            return Ok((v, code));
        }
    };

    // The base revision, once per base, command and test files.
    // The image and the stage's (non-secret) environment change results as much as the command.
    // The environment as rendered for this ticket, without secret values.
    let visible: Vec<&(String, String)> = job.env.iter().filter(|(k, _)| !stage.secrets.contains(k)).collect();
    let key =
        format!("{}\n{}\n{:?}\n{:?}", job.image, job.script, visible, params.test_files.clone().unwrap_or_default());
    let cache_dir = ctx.meta.repo.join(".lightsout").join("baselines");
    let runs = params.base_runs.unwrap_or(DEFAULT_BASE_RUNS).clamp(1, MAX_BASE_RUNS);
    let cache = cache_dir.join(format!(
        "{}-{}-{runs}.json",
        ctx.meta.base,
        crate::executor::docker::image::short_hash(key.as_bytes())
    ));
    let baseline: Baseline =
        if let Some(b) = std::fs::read_to_string(&cache).ok().and_then(|t| serde_json::from_str(&t).ok()) {
            b
        } else {
            let mut all = Vec::new();
            for run in 1..=runs {
                all.push(base_run(ctx, stage, attempt, run, &cand_job, format, logs, cancel).await?);
            }
            let baseline = Baseline::of(&all);
            let _ = std::fs::create_dir_all(&cache_dir);
            // Test names and messages come from the stage's own files: masked like its log.
            let mut cached = serde_json::to_value(&baseline).unwrap_or_default();
            ctx.needles.mask_json(&mut cached);
            let _ = std::fs::write(&cache, cached.to_string());
            baseline
        };
    let mut verdict =
        crate::stages::grade_tests::judge(&baseline.results, &cand_results, &fail_to_pass, pass_to_pass, code);
    if !baseline.flaky.is_empty() {
        verdict.details["flaky_at_base"] = serde_json::json!(baseline.flaky);
        let shown: Vec<&str> = baseline.flaky.iter().take(10).map(String::as_str).collect();
        verdict.reasons.push(format!(
            "{} tests flip between runs of the base revision and are not counted as PASS_TO_PASS (flaky): {}",
            baseline.flaky.len(),
            shown.join(", ")
        ));
    }
    Ok((verdict, code))
}

/// How often the base revision runs when the stage does not say, and at most.
const DEFAULT_BASE_RUNS: u64 = 2;
const MAX_BASE_RUNS: u64 = 20;

/// The base revision's results over its runs: a test passes only if it passed every time; the
/// tests that flipped are flaky. Cached per base revision, image, command, environment, test
/// files and number of runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Baseline {
    results: crate::stages::grade_tests::Results,
    flaky: Vec<String>,
}

impl Baseline {
    fn of(runs: &[crate::stages::grade_tests::Results]) -> Baseline {
        let mut results = crate::stages::grade_tests::Results::new();
        let mut flaky = Vec::new();
        let ids: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.keys()).collect();
        for id in ids {
            let seen: Vec<Option<bool>> = runs.iter().map(|r| r.get(id).copied()).collect();
            let always = seen.iter().all(|p| *p == Some(true));
            if !always && seen.contains(&Some(true)) {
                flaky.push(id.clone());
            }
            results.insert(id.clone(), always);
        }
        Baseline { results, flaky }
    }
}

/// One run of the test command on the base revision, in a fresh scratch copy of it.
#[expect(clippy::too_many_arguments, reason = "one run of the stage's command, with the run's channels")]
async fn base_run(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    run: u64,
    cand_job: &Job,
    format: Option<Format>,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> Result<crate::stages::grade_tests::Results, Result<Ended, String>> {
    let base_ws = scratch_of(ctx, &format!("{}-{attempt}-base-{run}", stage.id), &ctx.meta.base).map_err(Err)?;
    // Beside the candidate's I/O directory, never inside it: the candidate's code ran with that
    // directory writable and could have left a forged report there.
    let dir = ctx.dir.path.join("stages").join(&stage.id);
    // The first run's files keep the names they always had (`1.base.log`); later runs are numbered.
    let name = if run == 1 { format!("{attempt}.base") } else { format!("{attempt}.base{run}") };
    let base_io = dir.join(format!("{name}.io"));
    let _ = std::fs::remove_dir_all(&base_io);
    std::fs::create_dir_all(&base_io).map_err(|e| Err(format!("{}: {e}", base_io.display())))?;
    ownership::prepare(&base_io);
    let base_job = Job { workspace: base_ws.root(), io_dir: base_io.clone(), ..cand_job.clone() };
    let base_log = dir.join(format!("{name}.log"));
    let (ended, log_ok) = run_job(ctx, &base_job, base_log.clone(), logs, cancel).await;
    discard(ctx, &base_ws, logs).await;
    let (_, r) = settle(ctx, &base_job, &base_log, format, ended, log_ok, logs).await?;
    r.map_err(|u| Err(format!("the base revision (run {run}): {}", u.reason())))
}

/// After one run of the test command: its exit code and its results, read before what it left
/// is cleaned (so that a refusal names the file), and cleaned however the run ended.
/// `Err(Ok(ended))` when it timed out or was cancelled, `Err(Err(fault))` on a fault.
async fn settle(
    ctx: &Arc<Ctx>,
    job: &Job,
    log_path: &Path,
    format: Option<Format>,
    ended: Result<Ended, String>,
    log_ok: Result<(), String>,
    logs: &mpsc::Sender<Event>,
) -> Result<(i64, Result<crate::stages::grade_tests::Results, Unjudged>), Result<Ended, String>> {
    let results = match &ended {
        Ok(Ended::Exited(code)) => Some(results_of(format, &job.io_dir, log_path, *code).await),
        _ => None,
    };
    clean_after(ctx, job, logs).await;
    log_ok.map_err(Err)?;
    match ended.map_err(Err)? {
        Ended::Exited(code) => Ok((code, results.unwrap_or_else(|| Err(Unjudged::Fault("no report".into()))))),
        other => Err(Ok(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::Baseline;

    #[test]
    fn a_base_test_passes_only_if_it_passed_every_run_and_flips_are_flaky() {
        let run = |pairs: &[(&str, bool)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let b = Baseline::of(&[
            run(&[("steady", true), ("flaky", true), ("broken", false), ("once", true)]),
            run(&[("steady", true), ("flaky", false), ("broken", false)]),
        ]);
        assert_eq!(b.results.get("steady"), Some(&true));
        assert_eq!(b.results.get("flaky"), Some(&false), "a flip is not a pass");
        assert_eq!(b.results.get("broken"), Some(&false));
        assert_eq!(b.results.get("once"), Some(&false), "a test missing from a run did not pass it");
        assert_eq!(b.flaky, ["flaky", "once"]);
    }
}
