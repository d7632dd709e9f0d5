//! Policy: the rules humans set, checked when a pipeline is compiled and again at run time.
//!
//! Every check returns either the rule that allowed the thing (for `plan` to show) or a
//! [`Refusal`] naming the rule that refused it, so an error can point at both the stage and the
//! policy line.

use std::path::{Path, PathBuf};

mod file;
mod globs;

use crate::diag::{Code, Located, Pos, code};

pub use file::*;
pub use globs::{Globs, Matching, wildcard};

/// Why policy refused something, and where the deciding rule is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The diagnostic code of this kind of refusal (`policy.image`, ...).
    pub code: Code,
    pub message: String,
    pub hint: String,
}

/// The policy in force. Without a policy file: any image, no secrets, no network, no ceilings
/// beyond the built-in defaults.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    file: Option<PathBuf>,
    rules: Option<PolicyFile>,
    /// The organisation's policy, from outside the repository. It takes precedence: a thing is
    /// allowed only when every layer allows it, so the repository's policy can only tighten it.
    org: Option<Box<Policy>>,
    limits: Limits,
}

/// A layer's memory and timeout ceilings, parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub timeout_secs: Option<u64>,
}

impl Policy {
    /// The policy of `path`, read and checked by the compiler; `limits` are its memory and
    /// timeout ceilings in bytes and seconds, parsed from what the file writes.
    pub fn from_file(path: &Path, rules: PolicyFile, limits: Limits) -> Policy {
        Policy { file: Some(path.to_path_buf()), rules: Some(rules), org: None, limits }
    }

    /// This (repository) policy under an organisation's.
    #[must_use]
    pub fn under(mut self, org: Policy) -> Policy {
        self.org = Some(Box::new(Policy { org: None, ..org }));
        self
    }

    /// The organisation's policy file, if one is in force.
    pub fn org_file(&self) -> Option<&Path> {
        self.org.as_ref().and_then(|o| o.file())
    }

    /// The layers that decide, organisation first. A repository without a policy file adds no
    /// layer of its own when an organisation policy is in force (it cannot loosen it, and has
    /// nothing to tighten).
    pub fn layers(&self) -> Vec<&Policy> {
        let mut v: Vec<&Policy> = self.org.iter().map(AsRef::as_ref).collect();
        if self.org.is_none() || self.rules.is_some() {
            v.push(self);
        }
        v
    }

    /// Whether stages may run as plain host processes, with no sandbox: every layer must say so.
    pub fn allows_unsandboxed(&self) -> bool {
        self.layers().iter().all(|l| l.rules.as_ref().is_some_and(|r| r.allow_unsandboxed))
    }

    /// Every layer's decision; the first refusal wins, else the rules that allowed it.
    fn all_layers(&self, check: impl Fn(&Policy) -> Result<String, Refusal>) -> Result<String, Refusal> {
        let mut rules = Vec::new();
        for layer in self.layers() {
            rules.push(check(layer)?);
        }
        Ok(rules.join("; "))
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn rules(&self) -> Option<&PolicyFile> {
        self.rules.as_ref()
    }

    fn at(&self, pos: Pos) -> String {
        match &self.file {
            Some(f) => format!("{}:{}:{}", f.display(), pos.line, pos.column),
            None => "the default policy".into(),
        }
    }

    pub fn name(&self) -> String {
        self.file.as_ref().map_or_else(|| "the default policy (no policy file)".into(), |f| f.display().to_string())
    }

    /// Whether a stage may run `image`.
    fn check_image_one(&self, image: &str) -> Result<String, Refusal> {
        let Some(allow) = self.rules.as_ref().and_then(|r| r.images.as_ref()) else {
            return Ok(format!("{}: no image rule", self.name()));
        };
        if let Some(rule) = allow.allow.iter().find(|p| wildcard(&p.value, image)) {
            return Ok(format!("allowed by `{}` at {}", rule.value, self.at(rule.at)));
        }
        let list: Vec<&str> = allow.allow.iter().map(|p| p.value.as_str()).collect();
        Err(Refusal {
            code: code::POLICY_IMAGE,
            message: format!("image `{image}` is not allowed by policy"),
            hint: format!("policy allows only {} (images.allow in {})", list.join(", "), self.name()),
        })
    }

    /// Whether a stage of kind `kind` (`run`, `agent`, `grade.tests`, ...) may receive `secret`.
    fn check_secret_one(&self, secret: &str, kind: &str) -> Result<String, Refusal> {
        let rule = self.rules.as_ref().and_then(|r| r.secrets.get(secret));
        let Some(rule) = rule else {
            return Err(Refusal {
                code: code::POLICY_SECRET,
                message: format!("secret `{secret}` is not allowed by policy"),
                hint: format!("{} gives secrets only when listed under `secrets:`; ask the policy owner", self.name()),
            });
        };
        if let Some(k) = rule.stages.iter().find(|k| wildcard(&k.value, kind)) {
            return Ok(format!("allowed for `{}` at {}", k.value, self.at(k.at)));
        }
        let list: Vec<&str> = rule.stages.iter().map(|k| k.value.as_str()).collect();
        Err(Refusal {
            code: code::POLICY_SECRET,
            message: format!("secret `{secret}` is not allowed for `{kind}` stages"),
            hint: format!("policy gives `{secret}` only to {} stages", list.join(", ")),
        })
    }

    /// Whether a stage may reach `host` (`name` or `name:port`) through the egress proxy.
    fn check_host_one(&self, host: &str) -> Result<String, Refusal> {
        let allow = self.rules.as_ref().and_then(|r| r.network.as_ref());
        let (name, port) = split_host(host);
        if let Some(rule) = allow.and_then(|a| {
            a.allow.iter().find(|p| {
                let (pn, pp) = split_host(&p.value);
                wildcard(pn, name) && (pp == port)
            })
        }) {
            return Ok(format!("allowed by `{}` at {}", rule.value, self.at(rule.at)));
        }
        Err(Refusal {
            code: code::POLICY_NETWORK,
            message: format!("network access to `{host}` is not allowed by policy"),
            hint: match allow {
                Some(a) => format!(
                    "policy allows only {}",
                    a.allow.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(", ")
                ),
                None => format!("{} allows no network; add the host under `network.allow`", self.name()),
            },
        })
    }

    /// Whether a stage may run `image`.
    pub fn check_image(&self, image: &str) -> Result<String, Refusal> {
        self.all_layers(|l| l.check_image_one(image))
    }

    /// Whether a stage of kind `kind` may receive `secret`.
    pub fn check_secret(&self, secret: &str, kind: &str) -> Result<String, Refusal> {
        self.all_layers(|l| l.check_secret_one(secret, kind))
    }

    /// Whether a stage may reach `host` through the egress proxy.
    pub fn check_host(&self, host: &str) -> Result<String, Refusal> {
        self.all_layers(|l| l.check_host_one(host))
    }

    /// The grader kinds a category must have, each with where the rule is.
    pub fn required_graders(&self, category: &str) -> Vec<(&str, String)> {
        self.layers().into_iter().flat_map(|l| l.required_graders_one(category)).collect()
    }

    fn required_graders_one(&self, category: &str) -> Vec<(&str, String)> {
        self.rules
            .as_ref()
            .and_then(|r| r.required_graders.get(category))
            .map(|gs| gs.iter().map(|g| (g.value.as_str(), self.at(g.at))).collect())
            .unwrap_or_default()
    }

    /// Where the rule is, when a category needs human approval before ship.
    pub fn approval_rule(&self, category: &str) -> Option<String> {
        self.layers().into_iter().find_map(|l| l.approval_rule_one(category))
    }

    fn approval_rule_one(&self, category: &str) -> Option<String> {
        let rules = self.rules.as_ref()?;
        rules.approval.iter().find(|c| c.value == category).map(|c| self.at(c.at))
    }

    /// A protected branch pattern matching `branch`, with its location.
    pub fn protected_branch(&self, branch: &str) -> Option<String> {
        self.layers().into_iter().find_map(|l| l.protected_branch_one(branch))
    }

    fn protected_branch_one(&self, branch: &str) -> Option<String> {
        let p = self.rules.as_ref()?.protected.as_ref()?;
        // Without regard to case: where refs live on a file system that ignores case, `Main` is `main`.
        let branch = branch.to_lowercase();
        p.branches
            .iter()
            .find(|b| wildcard(&b.value.to_lowercase(), &branch))
            .map(|b| format!("`{}` at {}", b.value, self.at(b.at)))
    }

    pub fn protected_paths(&self) -> Vec<&str> {
        self.layers().into_iter().flat_map(Policy::protected_paths_one).collect()
    }

    fn protected_paths_one(&self) -> Vec<&str> {
        self.rules
            .as_ref()
            .and_then(|r| r.protected.as_ref())
            .map(|p| p.paths.iter().map(|x| x.value.as_str()).collect())
            .unwrap_or_default()
    }

    /// The ceilings of this layer, as written (callers check every layer of [`Policy::layers`]).
    pub fn ceiling_memory(&self) -> Option<&Located<String>> {
        self.rules.as_ref()?.resources.as_ref()?.memory.as_ref()
    }
    pub fn ceiling_cpus(&self) -> Option<&Located<f64>> {
        self.rules.as_ref()?.resources.as_ref()?.cpus.as_ref()
    }
    pub fn ceiling_pids(&self) -> Option<&Located<u32>> {
        self.rules.as_ref()?.resources.as_ref()?.pids.as_ref()
    }
    pub fn ceiling_timeout(&self) -> Option<&Located<String>> {
        self.rules.as_ref()?.resources.as_ref()?.timeout.as_ref()
    }
    /// This layer's memory and timeout ceilings in bytes and seconds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Every layer's resource ceilings, as `what ≤ value at file:line:column`: (limits, timeout).
    pub fn ceiling_rules(&self) -> (Vec<String>, Vec<String>) {
        let (mut limits, mut timeout) = (Vec::new(), Vec::new());
        for l in self.layers() {
            if let Some(c) = l.ceiling_memory() {
                limits.push(format!("memory ≤ {} at {}", c.value, l.at(c.at)));
            }
            if let Some(c) = l.ceiling_cpus() {
                limits.push(format!("cpus ≤ {} at {}", c.value, l.at(c.at)));
            }
            if let Some(c) = l.ceiling_pids() {
                limits.push(format!("pids ≤ {} at {}", c.value, l.at(c.at)));
            }
            if let Some(c) = l.ceiling_timeout() {
                timeout.push(format!("timeout ≤ {} at {}", c.value, l.at(c.at)));
            }
        }
        (limits, timeout)
    }

    /// Where a rule at `pos` is, for hints.
    pub fn rule_at(&self, pos: Pos) -> String {
        self.at(pos)
    }
}

fn split_host(h: &str) -> (&str, &str) {
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => (name, port),
        _ => (h, "443"),
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        assert!(wildcard("acme/*", "acme/dev:1"));
        assert!(!wildcard("acme/*", "evil/acme"));
        assert!(wildcard("grade.*", "grade.tests"));
        assert!(!wildcard("a?c", "abc"));
    }
}
