//! `uses: ship`: commits the change on a branch of its own (`lightsout/<ticket-id>` unless the
//! stage says), pushes it to the configured remote, and opens a pull request through GitHub's
//! REST API with the run summary as its body; optionally posts the summary as a comment on the
//! ticket's issue. It runs on the host; git runs with hooks off.
//!
//! GitHub is found as GitHub Actions names it: `GITHUB_REPOSITORY` (`owner/name`) and
//! `GITHUB_API_URL` (default `https://api.github.com`); the token is the stage's secret
//! `GITHUB_TOKEN`, which the policy must give to `ship` stages.

use std::fmt::Write as _;
use std::time::Duration;

use super::HostResult;
use crate::workspace::Workspace;

/// The branch a ship stage pushes to when it names none.
pub const DEFAULT_BRANCH: &str = "lightsout/{{ ticket.id }}";

/// Refuses a rendered branch that `ship` must not push to, before anything is committed: a
/// branch any layer of the policy protects, compared without regard to case (on a file system
/// that ignores case, as a remote's may, `Main` is `main`), and a name git would read as
/// another ref than the branch of that name (`HEAD`, `FETCH_HEAD`, a leading `-`, `refs/`,
/// `heads/`, `tags/` or `remotes/`).
pub fn check_branch(branch: &str, policy: &crate::policy::Policy) -> Result<(), String> {
    let lower = branch.to_lowercase();
    let other_ref = lower == "head"
        || (lower.ends_with("_head") && !lower.contains('/'))
        || lower.starts_with('-')
        || ["refs/", "heads/", "tags/", "remotes/"].iter().any(|p| lower.starts_with(p));
    if other_ref {
        return Err(format!(
            "ship: the branch renders to `{}`, which git reads as another ref than a branch of that name; \
             ship to a branch such as `lightsout/{{{{ ticket.id }}}}`",
            branch.escape_debug()
        ));
    }
    if let Some(rule) = policy.protected_branch(branch) {
        return Err(format!(
            "ship: the branch renders to `{}`, which the policy protects ({rule}); nothing was pushed",
            branch.escape_debug()
        ));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Params {
    pub branch: String,
    pub message: String,
    pub remote: String,
    pub pull_request: bool,
    pub comment: bool,
    /// The pull request's title, already made inert (GitHub shows it as text, but links
    /// mentions and references in it).
    pub title: String,
}

/// Where and how to reach GitHub.
#[derive(Clone, Debug)]
pub struct GitHub {
    pub api: String,
    pub repository: String,
    pub token: String,
}

impl GitHub {
    /// From the environment and the stage's secrets; `None` when the repository is not named.
    pub fn from_env(token: Option<&String>) -> Result<Option<GitHub>, String> {
        let Ok(repository) = std::env::var("GITHUB_REPOSITORY") else { return Ok(None) };
        if repository.split('/').count() != 2 || repository.contains(['?', '#', ' ']) {
            return Err(format!("GITHUB_REPOSITORY `{repository}` is not `owner/name`"));
        }
        let api = std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
        let token = token.cloned().ok_or("a pull request needs the secret GITHUB_TOKEN on this ship stage")?;
        Ok(Some(GitHub { api: api.trim_end_matches('/').to_owned(), repository, token }))
    }

    fn post(&self, path: &str, body: &serde_json::Value, stop: &super::Stop) -> Result<serde_json::Value, String> {
        stop.check(&format!("POST {path}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(stop.remaining(Duration::from_secs(30))))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/repos/{}/{path}", self.api, self.repository);
        let mut resp = agent
            .post(&url)
            .header("Accept", "application/vnd.github+json")
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", concat!("lightsout/", env!("CARGO_PKG_VERSION")))
            .send_json(body)
            .map_err(|e| format!("GitHub: POST {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| format!("GitHub: reading the answer: {e}"))?;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status != 201 {
            let msg = json["message"].as_str().unwrap_or("no message");
            return Err(format!("GitHub: POST {path} answered {status}: {msg}"));
        }
        Ok(json)
    }
}

/// Commits, pushes, and opens the pull request.
pub fn ship(
    ws: &Workspace,
    tree: &str,
    p: &Params,
    github: Option<&GitHub>,
    summary: &str,
    issue: Option<u64>,
    stop: &super::Stop,
) -> Result<HostResult, String> {
    ws.check_branch(&p.branch)?;
    stop.check("committing")?;
    let commit = ws.commit_tree(tree, &p.message)?;
    stop.check("pushing")?;
    ws.push(&p.remote, &commit, &p.branch)?;
    let mut result = HostResult {
        summary: format!("ship: {commit} pushed to {} as {}", p.remote, p.branch),
        ..HostResult::default()
    };
    // From here on the change is pushed: a failure says so, so that the record does not hide it.
    let pushed = format!("pushed {commit} to {} as {}, but", p.remote, p.branch);
    result.outputs.insert("commit".into(), commit);
    result.outputs.insert("branch".into(), p.branch.clone());
    // Pushed: what follows only adds to it, so a stop from here on is said, not an error that
    // would hide the push from the record.
    if let (Some(_), Err(why)) = (github, stop.check("opening the pull request")) {
        let _ = write!(result.summary, "\nship: pushed, but {why}: no pull request, no comment");
        return Ok(result);
    }
    if p.pull_request && github.is_none() {
        let _ = write!(
            result.summary,
            "\nship: no pull request: GITHUB_REPOSITORY is not set (pull_request: false says so)"
        );
    }
    if let Some(gh) = github.filter(|_| p.pull_request) {
        let base = ws.current_branch().map_err(|e| format!("{pushed} {e}"))?;
        let title = &p.title;
        let pr = gh
            .post(
                "pulls",
                &serde_json::json!({ "title": title, "head": p.branch, "base": base, "body": summary }),
                stop,
            )
            .map_err(|e| format!("{pushed} {e}"))?;
        let url = pr["html_url"].as_str().unwrap_or_default().to_owned();
        result.outputs.insert("pr_number".into(), pr["number"].as_u64().map(|n| n.to_string()).unwrap_or_default());
        result.outputs.insert("pr_url".into(), url.clone());
        let _ = write!(result.summary, "\nship: pull request {url}");
    }
    if let (Some(gh), Some(n), true) = (github, issue, p.comment) {
        let c = gh
            .post(&format!("issues/{n}/comments"), &serde_json::json!({ "body": summary }), stop)
            .map_err(|e| format!("{pushed} {e}"))?;
        result.outputs.insert("comment_url".into(), c["html_url"].as_str().unwrap_or_default().to_owned());
    }
    Ok(result)
}
