//! What `validate` and `plan` check of this machine before a run, which the compiler cannot
//! know: stage kinds this version cannot run yet, secrets whose provider gives nothing here,
//! and images Docker does not have (when it answers). Each finding is a warning at the stage in
//! its pipeline file: the files are valid, the run would stop on it. Secret values are never
//! read, only whether their variable is set or their file exists.

use std::path::Path;

use crate::diag::{Diagnostic, Pos, code};
use crate::executor::docker::image::ImageSpec;
use crate::plan::{Plan, Stage};
use crate::spec::{self, FileKind, PipelineFile};

/// The warnings for one plan; `docker` says whether an image is on this machine (`None`: Docker
/// does not answer, and images are not checked).
pub(super) fn warnings(plan: &Plan, factory_dir: &Path, docker: Option<&dyn Fn(&str) -> bool>) -> Vec<Diagnostic> {
    let file = plan.pipeline();
    let spec: Option<PipelineFile> = spec::load_file(FileKind::Pipeline, file).ok();
    let at = |s: &Stage| -> Pos {
        spec.as_ref().and_then(|p| p.stages.keys().find(|k| k.value == s.id)).map_or(Pos::default(), |k| k.at)
    };
    let mut out = Vec::new();
    for s in plan.stages() {
        if !s.kind.runnable() {
            out.push(
                Diagnostic::new(
                    file,
                    at(s),
                    format!("stage `{}`: this version of lightsout cannot run `{}` stages yet", s.id, s.kind),
                )
                .code(code::PREFLIGHT_KIND)
                .hint("`lightsout run` refuses this pipeline before it starts; remove the stage or replace it with `grade.command`"),
            );
        }
        for name in &s.secrets {
            if let Some(why) = secret_missing(s, name) {
                out.push(
                    Diagnostic::new(
                        file,
                        at(s),
                        format!("stage `{}`: secret `{name}` is not available here: {why}", s.id),
                    )
                    .code(code::PREFLIGHT_SECRET)
                    .hint("the stage fails when it starts without it; provide it before `lightsout run`"),
                );
            }
        }
        let Some(image) = s.image.as_ref().filter(|_| s.role.in_container()) else { continue };
        let missing = match ImageSpec::parse(&image.value) {
            ImageSpec::Named(name) => docker.is_some_and(|have| !have(&name)).then(|| {
                format!("image `{name}` is not on this machine (lightsout never pulls): pull, load or build it before `lightsout run`")
            }),
            ImageSpec::Dockerfile(path, _) => match std::fs::read_to_string(factory_dir.join(&path)) {
                Err(_) => Some(format!("`{}` does not exist: the image cannot be built", path.display())),
                Ok(text) => {
                    let (bases, _) = crate::executor::docker::image::describe(&text);
                    let absent: Vec<String> = bases.into_iter().filter(|b| docker.is_some_and(|have| !have(b))).collect();
                    (!absent.is_empty()).then(|| {
                        format!(
                            "`{}` builds FROM {}, which is not on this machine (lightsout never pulls): pull, load or build it before `lightsout run`",
                            path.display(),
                            absent.join(", ")
                        )
                    })
                }
            },
            ImageSpec::DevContainer(path) => {
                (!factory_dir.join(&path).is_file()).then(|| format!("`{}` does not exist: the image cannot be built", path.display()))
            }
        };
        if let Some(why) = missing {
            out.push(
                Diagnostic::new(file, at(s), format!("stage `{}`: {why}", s.id))
                    .code(code::PREFLIGHT_IMAGE)
                    .hint(format!("its image comes from {}", image.from)),
            );
        }
    }
    out
}

/// Why secret `name` of stage `s` would be missing at run time, from its provider; `None` when
/// it is there (or is a command's output, which only running it can tell).
fn secret_missing(s: &Stage, name: &str) -> Option<String> {
    match s.secret_sources.get(name) {
        Some(src) if src.env.is_some() => {
            let var = src.env.as_deref().unwrap_or_default();
            std::env::var_os(var).is_none().then(|| format!("the environment variable `{var}` is not set"))
        }
        Some(src) if src.file.is_some() => {
            let path = src.file.as_deref().unwrap_or_default();
            (!Path::new(path).is_file()).then(|| format!("the file `{path}` does not exist"))
        }
        Some(_) => None,
        None => std::env::var_os(name).is_none().then(|| format!("the environment variable `{name}` is not set")),
    }
}

/// The images the plan's stages run in, one line each, for `plan`: a named image as it is; one
/// built from a Dockerfile with what it is built from and the files of the base revision it
/// copies (its test dependencies come from those).
pub(super) fn image_lines(plan: &Plan, factory_dir: &Path) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for s in plan.stages().iter().filter(|s| s.role.in_container()) {
        let Some(image) = &s.image else { continue };
        if seen.contains(&image.value.as_str()) {
            continue;
        }
        seen.push(&image.value);
        let line = match ImageSpec::parse(&image.value) {
            ImageSpec::Dockerfile(path, _) => match std::fs::read_to_string(factory_dir.join(&path)) {
                Ok(text) => {
                    let (bases, copied) = crate::executor::docker::image::describe(&text);
                    let copied = copied.map_or_else(|| "the whole repository".to_owned(), |c| c.join(", "));
                    format!(
                        "{}: built from {} at the base revision, FROM {}, with {copied} (rebuilt when they change)",
                        image.value,
                        path.display(),
                        bases.join(", ")
                    )
                }
                Err(_) => format!("{}: {} does not exist", image.value, path.display()),
            },
            _ => image.value.clone(),
        };
        out.push(line);
    }
    out
}

/// Asks Docker, if it answers within a few seconds, which images it has.
pub(super) fn docker_images() -> Option<impl Fn(&str) -> bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let docker = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(3), crate::executor::docker::Docker::connect()).await
    });
    let docker = docker.ok()?.ok()?;
    Some(move |name: &str| {
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), docker.client().inspect_image(name))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    })
}

/// Prints warnings to stderr, located, as people read them.
pub(super) fn print(ws: &[Diagnostic]) {
    for w in ws {
        let at = if w.pos == Pos::default() { String::new() } else { format!(":{}:{}", w.pos.line, w.pos.column) };
        eprintln!("warning: {}\n  --> {}{at}", crate::diag::printable(&w.message), w.file.display());
        if let Some(h) = &w.hint {
            eprintln!("  = help: {}", crate::diag::printable(h));
        }
    }
}

/// The warnings for `plans`, asking Docker about images once; one more when Docker does not
/// answer and a stage names an image.
pub(super) fn check(plans: &[Plan], factory_dir: &Path) -> Vec<Diagnostic> {
    let docker = docker_images();
    let have = docker.as_ref().map(|f| f as &dyn Fn(&str) -> bool);
    let mut out: Vec<Diagnostic> = plans.iter().flat_map(|p| warnings(p, factory_dir, have)).collect();
    let named = plans.iter().flat_map(Plan::stages).any(|s| s.role.in_container() && s.image.is_some());
    if docker.is_none() && named {
        let file = plans.first().map_or(Path::new("factory.yaml"), |p| p.pipeline());
        out.push(
            Diagnostic::new(file, Pos::default(), "Docker is not reachable here: the images stages name are not checked")
                .code(code::PREFLIGHT_DOCKER)
                .hint("`lightsout run` stops unless Docker answers, or runs them with this machine's tools with `--executor local`"),
        );
    }
    out
}
