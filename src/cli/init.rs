//! `lightsout init`: a factory, a policy and the built-in pipelines, fitted to the repository.

use std::path::Path;

use super::{Exit, Failure};

/// The built-in pipelines, embedded in the binary.
pub(super) const PIPELINES: &[(&str, &str)] = &[
    ("bugfix", include_str!("../../pipelines/bugfix.yaml")),
    ("migration", include_str!("../../pipelines/migration.yaml")),
    ("api", include_str!("../../pipelines/api.yaml")),
    ("codegen", include_str!("../../pipelines/codegen.yaml")),
    ("iac", include_str!("../../pipelines/iac.yaml")),
    ("perf", include_str!("../../pipelines/perf.yaml")),
    ("feature", include_str!("../../pipelines/feature.yaml")),
];

const FACTORY: &str = include_str!("init/factory.yaml");
const POLICY: &str = include_str!("init/policy.yaml");

/// What the repository is built with, found from its marker file.
struct Toolchain {
    marker: &'static str,
    image: &'static str,
    test: &'static str,
    build: &'static str,
    bench: &'static str,
    run: &'static str,
    serve: &'static str,
}

const TOOLCHAINS: &[Toolchain] = &[
    Toolchain {
        marker: "Cargo.toml",
        image: "rust:1-bookworm",
        test: "cargo test",
        build: "cargo build --all-targets",
        bench: "cargo bench",
        run: "cargo run --",
        serve: "cargo run",
    },
    Toolchain {
        marker: "pyproject.toml",
        image: "python:3.12-bookworm",
        test: "python3 -m pytest",
        build: "python3 -m compileall -q .",
        bench: "python3 -m pytest --benchmark-only",
        run: "python3 -m app",
        serve: "python3 -m app serve",
    },
    Toolchain {
        marker: "package.json",
        image: "node:22-bookworm",
        test: "npm test",
        build: "npm run build",
        bench: "npm run bench",
        run: "npm start --",
        serve: "npm start",
    },
    Toolchain {
        marker: "go.mod",
        image: "golang:1.23-bookworm",
        test: "go test ./...",
        build: "go build ./...",
        bench: "go test -run '^$' -bench . ./...",
        run: "go run .",
        serve: "go run .",
    },
];

const GENERIC: Toolchain = Toolchain {
    marker: "",
    image: "debian:bookworm",
    test: "make test",
    build: "make build",
    bench: "make bench",
    run: "make run",
    serve: "make serve",
};

fn detect(dir: &Path) -> &'static Toolchain {
    TOOLCHAINS.iter().find(|t| dir.join(t.marker).is_file()).unwrap_or(&GENERIC)
}

/// The built-in pipelines say `make test`, `make build`, ...; init swaps in the repository's own
/// commands.
fn fit(text: &str, t: &Toolchain) -> String {
    text.replace("make test", t.test)
        .replace("make build", t.build)
        .replace("make bench", t.bench)
        .replace("make serve", t.serve)
        .replace("make run", t.run)
        .replace("../schema/pipeline.schema.json", "https://lightsout.dev/schema/pipeline.schema.json")
}

pub(super) fn run(dir: &Path, force: bool) -> Result<Exit, Failure> {
    let io = |what: &str, p: &Path, e: std::io::Error| Failure::Io(format!("cannot {what} {}: {e}", p.display()));
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    let t = detect(dir);
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "factory".into());
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let mut files: Vec<(String, String)> = vec![
        ("factory.yaml".into(), FACTORY.replace("@NAME@", &name).replace("@IMAGE@", t.image)),
        ("policy.yaml".into(), POLICY.replace("@IMAGE@", t.image)),
    ];
    for (cat, text) in PIPELINES {
        files.push((format!("pipelines/{cat}.yaml"), fit(text, t)));
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
    let detected =
        if t.marker.is_empty() { "no known build file; using make".to_owned() } else { format!("found {}", t.marker) };
    outln!("{detected}: tests run with `{}` in image {}", t.test, t.image);
    outln!("next: `lightsout validate`, then `lightsout plan --ticket <ticket.md>`");
    Ok(Exit::Ok)
}
