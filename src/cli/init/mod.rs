//! `lightsout init`: a factory, a policy and the built-in pipelines, fitted to the repository.

use std::path::Path;

use super::{Exit, Failure};

/// The built-in pipelines, embedded in the binary.
pub(super) const PIPELINES: &[(&str, &str)] = &[
    ("bugfix", include_str!("../../../pipelines/bugfix.yaml")),
    ("migration", include_str!("../../../pipelines/migration.yaml")),
    ("api", include_str!("../../../pipelines/api.yaml")),
    ("codegen", include_str!("../../../pipelines/codegen.yaml")),
    ("iac", include_str!("../../../pipelines/iac.yaml")),
    ("perf", include_str!("../../../pipelines/perf.yaml")),
    ("feature", include_str!("../../../pipelines/feature.yaml")),
];

const FACTORY: &str = include_str!("factory.yaml");
const POLICY: &str = include_str!("policy.yaml");

mod detect;
mod images;
mod node;

use detect::Setup;

/// A YAML scalar for a command: JSON's quoting, which YAML reads in block and flow context.
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The built-in pipelines say `make test`, `make build`, ...; init swaps in the repository's own
/// commands, and in `bugfix` the command that runs the one failing test and the reader of the
/// results.
fn fit(text: &str, s: Option<&Setup>) -> String {
    let schema =
        |t: String| t.replace("../schema/pipeline.schema.json", "https://lightsout.dev/schema/pipeline.schema.json");
    let Some(s) = s else { return schema(text.to_owned()) };
    let reproduce = if s.reproduce.contains('\n') {
        format!("|\n{}", s.reproduce.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n"))
    } else {
        quoted(&s.reproduce)
    };
    let format = s.format.map(|f| format!(", format: {f}")).unwrap_or_default();
    let text = text
        .replace("run: make test {{ inputs.failing_test }}", &format!("run: {reproduce}"))
        .replace(
            "    description: The test id that reproduces the bug.",
            &format!("    description: {}", quoted(&format!("The test id that reproduces the bug: {}.", s.test_id))),
        )
        .replace("command: make test,", &format!("command: {}{format},", quoted(&s.grade)))
        .replace("make test", &quoted(&s.grade))
        .replace("make build", &quoted(&s.build))
        .replace("make bench", &quoted(&s.bench))
        .replace("make serve", &quoted(&s.serve))
        .replace("make run", &quoted(&s.run));
    schema(text)
}

pub(super) fn run(dir: &Path, force: bool) -> Result<Exit, Failure> {
    let io = |what: &str, p: &Path, e: std::io::Error| Failure::Io(format!("cannot {what} {}: {e}", p.display()));
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    let setup = detect::detect(dir);
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "factory".into());
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let mut said = Vec::new();
    let official = setup.as_ref().map_or("debian:bookworm", |s| s.image);
    let (base, image_note, present) = match images::local() {
        Ok(local) => {
            let (base, note) = images::choose(official, &local);
            let present = local.contains(&base);
            (base, note, present)
        }
        Err(why) => (official.to_owned(), Some(format!("could not look for images on this machine: {why}")), false),
    };
    said.extend(image_note);
    let mut files: Vec<(String, String)> = Vec::new();
    let image = match setup.as_ref().and_then(|s| s.deps.as_ref().map(|d| (s, d))) {
        Some((s, deps)) => {
            files.push((images::DOCKERFILE.into(), images::dockerfile(&base, s, deps)));
            format!("build:{}", images::DOCKERFILE)
        }
        None => base.clone(),
    };
    let allow: Vec<String> = [image.as_str(), base.as_str()].iter().map(|i| quoted(i)).collect::<Vec<_>>();
    let allow = if image == base { quoted(&base) } else { allow.join(", ") };
    files.insert(0, ("factory.yaml".into(), FACTORY.replace("@NAME@", &name).replace("@IMAGE@", &quoted(&image))));
    files.insert(1, ("policy.yaml".into(), POLICY.replace("\"@IMAGE@\"", &allow)));
    for (cat, text) in PIPELINES {
        files.push((format!("pipelines/{cat}.yaml"), fit(text, setup.as_ref())));
    }
    let existing: Vec<&str> = files.iter().filter(|(p, _)| dir.join(p).exists()).map(|(p, _)| p.as_str()).collect();
    if !existing.is_empty() && !force {
        eprintln!("error: these files exist and were left alone: {}", existing.join(", "));
        eprintln!("  = help: pass --force to overwrite them");
        return Ok(Exit::Invalid);
    }
    std::fs::create_dir_all(dir.join("pipelines")).map_err(|e| io("create", &dir.join("pipelines"), e))?;
    for (rel, text) in &files {
        let p = dir.join(rel);
        std::fs::write(&p, text).map_err(|e| io("write", &p, e))?;
        outln!("wrote {}", p.display());
    }
    if let Some(s) = &setup {
        outln!("found {}", s.found);
        outln!("  the whole suite:   {}", s.grade);
        outln!("  one failing test:  {}", s.reproduce.lines().last().unwrap_or_default());
        outln!("  name the test as:  {}", s.test_id);
        if let Some(d) = &s.deps {
            outln!("  image:             build:{} (FROM {base}, with {})", images::DOCKERFILE, d.what);
        } else {
            outln!("  image:             {base} (no dependencies to install)");
        }
        said.extend(s.notes.iter().cloned());
    } else {
        outln!("no known build file: the pipelines run `make test`, `make build`, ... in {base}");
    }
    for line in &said {
        outln!("note: {line}");
    }
    if !present {
        outln!("lightsout never pulls: `docker pull {base}` (or build an image of that name) before `lightsout run`");
    }
    outln!("the agent `claude` is a placeholder: put yours in factory.yaml's `agents`");
    outln!("next: `lightsout validate`, then `lightsout plan --ticket <ticket.md>`");
    Ok(Exit::Ok)
}
