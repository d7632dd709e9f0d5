//! Stages that run on the host, in lightsout itself: context, the host graders, and `ship`
//! with the last guard before it.

use super::*;

/// What `ship` needs: its rendered parameters, GitHub, the run summary and the ticket's issue.
pub(super) fn ship_inputs(
    ctx: &Ctx,
    stage: &Stage,
    ship: &crate::plan::kind::Ship,
    tctx: &serde_json::Value,
) -> Result<(crate::stages::ship::Params, Option<crate::stages::ship::GitHub>, String, Option<u64>), String> {
    let text = |k: &str, source: Option<&String>, default: &str| -> Result<String, String> {
        let source = source.map_or(default, String::as_str);
        crate::template::render(Mode::Text, source, tctx).map_err(|e| format!("ship `{k}`: {e}"))
    };
    let mut params = crate::stages::ship::Params {
        branch: text("branch", ship.branch.as_ref(), crate::stages::ship::DEFAULT_BRANCH)?,
        message: text(
            "message",
            ship.message.as_ref(),
            "{{ ticket.title }}\n\nMade by lightsout for ticket {{ ticket.id }}.",
        )?,
        remote: text("remote", ship.remote.as_ref(), "origin")?,
        pull_request: ship.pull_request.unwrap_or(true),
        comment: ship.comment.unwrap_or(false),
        title: String::new(),
    };
    params.title = crate::report::markdown::title(params.message.lines().next().unwrap_or("lightsout change"));
    crate::stages::ship::check_branch(&params.branch, &ctx.policy)?;
    let github = if params.pull_request || params.comment {
        crate::stages::ship::GitHub::from_env(
            ctx.secrets.get("GITHUB_TOKEN").filter(|_| stage.secrets.iter().any(|s| s == "GITHUB_TOKEN")),
        )?
    } else {
        None
    };
    let issue = ctx.ticket.id.trim_start_matches('#').parse().ok();
    Ok((params, github, ctx.needles.mask_str(&run_summary(ctx, tctx)), issue))
}

/// The Markdown summary of the run so far, for the pull request and the issue comment.
pub(super) fn run_summary(ctx: &Ctx, tctx: &serde_json::Value) -> String {
    let mut out = String::new();
    let t = &ctx.ticket;
    let _ =
        writeln!(out, "Ticket {}: {}\n", crate::report::markdown::code(&t.id), crate::report::markdown::code(&t.title));
    let _ = writeln!(out, "| stage | kind | status |\n|---|---|---|");
    for s in ctx.plan.stages() {
        let status = tctx["stages"][&s.id]["status"].as_str().unwrap_or("pending");
        let _ = writeln!(out, "| {} | {} | {status} |", s.id, s.kind);
    }
    if let Ok((stat, _)) = ctx.workspace.diff() {
        let _ = writeln!(out, "\n{}", crate::report::markdown::fenced(&ctx.needles.mask_str(&stat)));
    }
    let _ = writeln!(out, "\nRun `{}` by lightsout.", ctx.meta.run_id);
    out
}

/// Runs a built-in kind on the host (in a blocking thread): its outputs, artifacts and summary
/// are masked and recorded like a container stage's.
pub(super) async fn run_host_stage(
    ctx: &Arc<Ctx>,
    stage: &Stage,
    attempt: u32,
    tctx: &serde_json::Value,
    logs: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> Result<(BTreeMap<String, String>, Option<crate::stages::Verdict>), String> {
    let stop = crate::stages::Stop::new(cancel.clone(), Duration::from_secs(stage.timeout_secs.max(1)));
    let ship = match &stage.kind {
        StageKind::Ship(p) => Some((ship_inputs(ctx, stage, p, tctx)?, guard_rules(ctx))),
        _ => None,
    };
    let kind = rendered(&stage.kind, tctx)?;
    let grader = crate::stages::graders::host_grader(&kind);
    let work = {
        let ctx = Arc::clone(ctx);
        tokio::task::spawn_blocking(move || match (kind, ship, grader) {
            (StageKind::Ship(_), Some(((params, github, summary, issue), rules)), _) => {
                // One tree: what the guard judges is what ship commits.
                let tree = ctx.workspace.change_tree()?;
                // The graders judged the last snapshot; anything written since (by a stage
                // that failed, or one still running) was not graded.
                if tree != ctx.workspace.head_tree()? {
                    return Err("not shipped: the workspace holds changes that no stage's success recorded (a stage that failed or is still running wrote them), so no grader judged them".to_owned());
                }
                crate::stages::guard::check(&ctx.workspace, &tree, &rules, &ctx.needles)?;
                crate::stages::ship::ship(&ctx.workspace, &tree, &params, github.as_ref(), &summary, issue, &stop)
            }
            (StageKind::Context(p), _, _) => crate::stages::context::assemble(
                &ctx.workspace,
                &ctx.ticket,
                &crate::stages::context::Params::from_plan(&p),
            ),
            (_, _, Some(grader)) => grader.grade(&ctx.workspace),
            (other, _, None) => Err(format!("`{other}` does not run on the host")),
        })
    };
    let result = work.await.map_err(|e| format!("the stage failed: {e}"))??;
    let dir = ctx.dir.path.join("stages").join(&stage.id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in &result.artifacts {
        std::fs::write(dir.join(name), ctx.needles.mask_str(text)).map_err(|e| format!("{name}: {e}"))?;
    }
    let summary = ctx.needles.mask_str(&result.summary);
    std::fs::write(ctx.dir.log_path(&stage.id, attempt), format!("{summary}\n")).map_err(|e| e.to_string())?;
    let _ = logs
        .send(Event::StageLog {
            stage: stage.id.clone(),
            stream: crate::events::Stream::Stdout,
            text: format!("{summary}\n"),
        })
        .await;
    let outputs = result.outputs.into_iter().map(|(k, v)| (k, ctx.needles.mask_str(&v))).collect();
    let verdict = result.verdict.map(|mut v| {
        v.reasons = v.reasons.iter().map(|r| ctx.needles.mask_str(r)).collect();
        v
    });
    Ok((outputs, verdict))
}

/// A host stage's parameters with their templates rendered (as text: each is one value, never
/// shell-parsed): `grade.jsonschema`'s schema and files, which pipelines take from the inputs.
fn rendered(kind: &StageKind, tctx: &serde_json::Value) -> Result<StageKind, String> {
    let text = |k: &str, t: &str| crate::template::render(Mode::Text, t, tctx).map_err(|e| format!("`with.{k}`: {e}"));
    Ok(match kind {
        StageKind::JsonSchema(p) => StageKind::JsonSchema(crate::plan::kind::JsonSchema {
            schema: text("schema", &p.schema)?,
            files: p.files.iter().map(|f| text("files", f)).collect::<Result<_, _>>()?,
        }),
        other => other.clone(),
    })
}

/// What the last check before `ship` protects: see [`crate::stages::guard`].
pub(super) fn guard_rules(ctx: &Ctx) -> crate::stages::guard::Rules {
    let repo_relative = |p: &Path| {
        let abs = if p.is_absolute() { p.to_path_buf() } else { ctx.meta.repo.join(ctx.meta.sub.join(p)) };
        abs.strip_prefix(&ctx.meta.repo).ok().map(|r| r.to_string_lossy().into_owned())
    };
    let mut files: Vec<String> = [Some(ctx.plan.pipeline()), ctx.meta.policy.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(repo_relative)
        .collect();
    files.sort();
    let mut tests: Vec<String> = crate::plan::DEFAULT_TEST_FILES.iter().map(|s| (*s).to_owned()).collect();
    for s in ctx.plan.stages() {
        if let StageKind::Tests(t) = &s.kind {
            tests.extend(t.test_files.iter().flatten().cloned());
        }
    }
    crate::stages::guard::Rules::new(&ctx.policy.protected_paths(), &files, &tests)
}
