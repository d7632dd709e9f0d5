//! What a stage may use, as the policy allows it: its image, secrets, network, resources and
//! timeout, each decided with the rule that decided it.

use std::path::Path;

use super::kinds::Role;
use super::stage::Context;
use super::units;
use crate::diag::{Diagnostic, Diagnostics, Pos, code};
use crate::plan::{Decided, Limits};
use crate::spec::Located;
use crate::spec::factory::SecretSource;
use crate::spec::pipeline::{self, Resources};

/// Built-in defaults, below the factory's `defaults` and policy's ceilings.
const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;
const DEFAULT_MEMORY: u64 = 2 << 30;
const DEFAULT_CPUS: f64 = 2.0;
const DEFAULT_PIDS: u32 = 512;

/// The image: the stage's, its agent's, its category's or the factory's default, as policy
/// allows; host stages take none.
pub(super) fn image_of(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    role: Role,
    agent: Option<&crate::spec::factory::Agent>,
    kind_name: &str,
    errors: &mut Diagnostics,
) -> Option<Decided<String>> {
    let path = ctx.path;
    let factory = &ctx.factory.file;
    let policy = &ctx.factory.policy;
    if role.in_container() {
        let chosen = s
            .image
            .as_ref()
            .map(|i| (i, "stage `image`"))
            .or_else(|| agent.and_then(|a| a.image.as_ref()).map(|i| (i, "agent `image`")))
            .or_else(|| ctx.category_image.map(|i| (i, "category `image`")))
            .or_else(|| factory.defaults.image.as_ref().map(|i| (i, "`defaults.image`")));
        match chosen {
            None => {
                errors.push(
                    Diagnostic::new(path, id.at, format!("stage `{}` has no image", id.value))
                        .code(code::IMAGE_MISSING)
                        .hint("set `image:` on the stage, on its category, or `defaults.image` in factory.yaml"),
                );
                None
            }
            Some((img, from)) => {
                let file = if from == "stage `image`" { path } else { ctx.factory.path.as_path() };
                match policy.check_image(&img.value) {
                    Ok(decision) => Some(Decided { value: img.value.clone(), from: format!("{from}; {decision}") }),
                    Err(r) => {
                        let at = if file == path { img.at } else { id.at };
                        errors.push(
                            Diagnostic::new(path, at, format!("stage `{}`: {}", id.value, r.message))
                                .code(r.code)
                                .hint(r.hint),
                        );
                        None
                    }
                }
            }
        }
    } else {
        if let Some(img) = &s.image {
            errors.push(
                Diagnostic::new(path, img.at, format!("`{kind_name}` stages run on the host and take no `image`"))
                    .code(code::IMAGE_ON_HOST)
                    .hint("remove `image:`"),
            );
        }
        None
    }
}

/// The stage's secrets and its agent's, each allowed by policy for this kind, with how the
/// stage asked to receive each.
pub(super) fn secrets_of(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    agent: Option<&crate::spec::factory::Agent>,
    kind_name: &str,
    errors: &mut Diagnostics,
) -> (Vec<String>, std::collections::BTreeMap<String, crate::plan::SecretMount>) {
    let path = ctx.path;
    let policy = &ctx.factory.policy;
    let mut secrets = Vec::new();
    let mut mounts = std::collections::BTreeMap::new();
    let asked = s.secrets.iter().map(|r| (r.value.name.as_str(), r.value.mount, r.at));
    let agents = agent.map(|a| a.secrets.iter()).into_iter().flatten().map(|n| (n.value.as_str(), None, id.at));
    for (name, mount, at) in asked.chain(agents) {
        match policy.check_secret(name, kind_name) {
            Ok(_) => {
                if !secrets.iter().any(|s| s == name) {
                    secrets.push(name.to_owned());
                }
                if let Some(m) = mount {
                    mounts.insert(name.to_owned(), m);
                }
            }
            Err(r) => {
                errors.push(
                    Diagnostic::new(path, at, format!("stage `{}`: {}", id.value, r.message)).code(r.code).hint(r.hint),
                );
            }
        }
    }

    (secrets, mounts)
}

/// The hosts the stage may reach, as policy allows.
pub(super) fn network_of(
    ctx: &Context<'_>,
    id: &Located<String>,
    s: &pipeline::Stage,
    errors: &mut Diagnostics,
) -> Vec<String> {
    let path = ctx.path;
    let policy = &ctx.factory.policy;
    let mut network = Vec::new();
    for host in s.network.iter().flat_map(|n| n.allow.iter()) {
        match policy.check_host(&host.value) {
            Ok(_) => network.push(host.value.clone()),
            Err(r) => {
                errors.push(
                    Diagnostic::new(path, host.at, format!("stage `{}`: {}", id.value, r.message))
                        .code(r.code)
                        .hint(r.hint),
                );
            }
        }
    }

    network
}

/// Each secret's provider, with how the stage asked to receive it over the provider's default.
pub(super) fn secret_sources_of(
    ctx: &Context<'_>,
    secrets: &[String],
    mounts: &std::collections::BTreeMap<String, crate::plan::SecretMount>,
) -> std::collections::BTreeMap<String, SecretSource> {
    let factory = &ctx.factory.file;
    secrets
        .iter()
        .filter_map(|name| {
            let provider = factory.secrets.get(name.as_str()).cloned();
            let mount = mounts.get(name).copied();
            let src = match (provider, mount) {
                (Some(src), None) => src,
                (Some(src), Some(m)) => SecretSource { mount: Some(m), ..src },
                // No provider: the runner's variable of the same name, received as asked.
                (None, Some(m)) => SecretSource { env: Some(name.clone()), mount: Some(m), ..SecretSource::default() },
                (None, None) => return None,
            };
            Some((name.clone(), src))
        })
        .collect()
}

pub(super) fn timeout(ctx: &Context<'_>, s: &pipeline::Stage, errors: &mut Diagnostics) -> u64 {
    let policy = &ctx.factory.policy;
    let (own, file) = match (&s.timeout, &ctx.factory.file.defaults.timeout) {
        (Some(t), _) => (Some(t), ctx.path),
        (None, Some(t)) => (Some(t), ctx.factory.path.as_path()),
        (None, None) => (None, ctx.path),
    };
    let secs = own.map_or(Ok(DEFAULT_TIMEOUT_SECS), |t| units::duration(file, t).map(|d| d.as_secs()));
    let secs = secs.unwrap_or_else(|d| {
        // The factory's default is reported once, by the factory check.
        if file == ctx.path {
            errors.push(d);
        }
        DEFAULT_TIMEOUT_SECS
    });
    for policy in policy.layers() {
        if let Some(max) = policy.ceiling_timeout()
            && let Some(max_secs) = policy.limits().timeout_secs
            && secs > max_secs
        {
            let at = s.timeout.as_ref().map_or(Pos::START, |t| t.at);
            errors.push(
                Diagnostic::new(
                    ctx.path,
                    at,
                    format!("timeout of {secs}s exceeds the policy ceiling of {}", max.value),
                )
                .code(code::POLICY_TIMEOUT)
                .hint(format!("lower it; the ceiling is set at {}", policy.rule_at(max.at))),
            );
        }
    }
    secs
}

pub(super) fn limits(ctx: &Context<'_>, own: Option<&Resources>, errors: &mut Diagnostics) -> Limits {
    let defaults = ctx.factory.file.defaults.resources.as_ref();
    let policy = &ctx.factory.policy;
    let path = ctx.path;
    let pick = |f: fn(&Resources) -> bool| -> (Option<&Resources>, &Path) {
        match (own, defaults) {
            (Some(r), _) if f(r) => (Some(r), path),
            (_, Some(d)) if f(d) => (Some(d), ctx.factory.path.as_path()),
            _ => (None, path),
        }
    };
    let (mr, mfile) = pick(|r| r.memory.is_some());
    let memory_bytes = match mr.and_then(|r| r.memory.as_ref()) {
        Some(m) => units::size(mfile, m).unwrap_or_else(|d| {
            errors.push(d);
            DEFAULT_MEMORY
        }),
        None => DEFAULT_MEMORY,
    };
    let (cr, _) = pick(|r| r.cpus.is_some());
    let cpus = cr.and_then(|r| r.cpus.as_ref()).map_or(DEFAULT_CPUS, |c| c.value);
    let (pr, _) = pick(|r| r.pids.is_some());
    let pids = pr.and_then(|r| r.pids.as_ref()).map_or(DEFAULT_PIDS, |p| p.value);

    let at_of = |f: fn(&Resources) -> Option<Pos>| own.and_then(f).unwrap_or(Pos::START);
    for policy in policy.layers() {
        if let Some(max) = policy.ceiling_memory()
            && let Some(max_b) = policy.limits().memory_bytes
            && memory_bytes > max_b
        {
            errors.push(
                Diagnostic::new(
                    path,
                    at_of(|r| r.memory.as_ref().map(|m| m.at)),
                    format!("memory limit exceeds the policy ceiling of {}", max.value),
                )
                .code(code::POLICY_MEMORY)
                .hint(format!("lower it; the ceiling is set at {}", policy.rule_at(max.at))),
            );
        }
        if let Some(max) = policy.ceiling_cpus()
            && cpus > max.value
        {
            errors.push(
                Diagnostic::new(
                    path,
                    at_of(|r| r.cpus.as_ref().map(|c| c.at)),
                    format!("{cpus} CPUs exceed the policy ceiling of {}", max.value),
                )
                .code(code::POLICY_CPUS)
                .hint(format!("lower it; the ceiling is set at {}", policy.rule_at(max.at))),
            );
        }
        if let Some(max) = policy.ceiling_pids()
            && pids > max.value
        {
            errors.push(
                Diagnostic::new(
                    path,
                    at_of(|r| r.pids.as_ref().map(|p| p.at)),
                    format!("{pids} pids exceed the policy ceiling of {}", max.value),
                )
                .code(code::POLICY_PIDS)
                .hint(format!("lower it; the ceiling is set at {}", policy.rule_at(max.at))),
            );
        }
    }
    if !(cpus > 0.0 && cpus.is_finite()) {
        errors.push(
            Diagnostic::new(path, at_of(|r| r.cpus.as_ref().map(|c| c.at)), "`cpus` must be greater than 0")
                .code(code::CPUS_INVALID),
        );
    }
    Limits { memory_bytes, cpus, pids }
}
