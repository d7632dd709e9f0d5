//! Stage images: a name already on the machine, or one built through the Engine API from a
//! Dockerfile (`image: build:<path to Dockerfile>`) or from a dev container definition
//! (`image: devcontainer` or `devcontainer:<path to devcontainer.json>`; its `image` or its
//! `build.dockerfile` and `build.context`). Built images are tagged by the hash of their build
//! context, so an unchanged context is never built twice. Nothing is ever pulled.
//!
//! The Dockerfile, the devcontainer.json and the build context are read from the run's base
//! revision, never from the workspace: an agent that rewrites them changes nothing a later
//! stage runs in. Builds have no network. An image a devcontainer.json names is checked
//! against the policy when the stage starts, like an image the pipeline names.

use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt as _;

use super::Docker;

/// What a stage's `image:` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSpec {
    Named(String),
    /// A Dockerfile and its build context (default: the Dockerfile's directory).
    Dockerfile(PathBuf, Option<PathBuf>),
    DevContainer(PathBuf),
}

impl ImageSpec {
    pub fn parse(value: &str) -> ImageSpec {
        if let Some(path) = value.strip_prefix("build:") {
            ImageSpec::Dockerfile(PathBuf::from(path), None)
        } else if value == "devcontainer" {
            ImageSpec::DevContainer(PathBuf::from(".devcontainer/devcontainer.json"))
        } else if let Some(path) = value.strip_prefix("devcontainer:") {
            ImageSpec::DevContainer(PathBuf::from(path))
        } else {
            ImageSpec::Named(value.to_owned())
        }
    }
}

/// The run's base revision, which images and their definitions are read from (the run's
/// workspace gives it; the executor does not reach into it).
pub trait BaseRevision: Sync {
    /// A file, by its path relative to the factory's directory.
    fn file(&self, rel: &str) -> Result<Vec<u8>, String>;
    /// A directory (relative to the factory's directory), as a tar archive.
    fn tar(&self, rel: &Path) -> Result<Vec<u8>, String>;
}

/// Removes `//` and `/* */` comments and trailing commas outside strings (devcontainer.json is
/// JSON with comments).
fn strip_jsonc(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
            out.push(c);
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        } else if c == b',' {
            let next = b[i + 1..].iter().find(|x| !x.is_ascii_whitespace());
            if !matches!(next, Some(b'}' | b']')) {
                out.push(c);
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a devcontainer.json of the base revision: an image name, or a Dockerfile and its
/// context.
fn devcontainer(ws: &dyn BaseRevision, file: &Path) -> Result<ImageSpec, String> {
    let shown = file.display();
    let bytes = ws.file(&file.to_string_lossy())?;
    let text = String::from_utf8_lossy(&bytes);
    let json: serde_json::Value =
        serde_json::from_str(&strip_jsonc(&text)).map_err(|e| format!("{shown}: not valid JSON: {e}"))?;
    if let Some(image) = json.get("image").and_then(|v| v.as_str()) {
        return Ok(ImageSpec::Named(image.to_owned()));
    }
    let build = json.get("build").or_else(|| json.get("dockerFile").map(|_| &json));
    let dockerfile = build
        .and_then(|b| b.get("dockerfile").or_else(|| b.get("dockerFile")))
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{shown}: has neither `image` nor `build.dockerfile`"))?;
    let base = file.parent().unwrap_or(Path::new(""));
    let context = build.and_then(|b| b.get("context")).and_then(|v| v.as_str()).map(|c| normalize(&base.join(c)));
    Ok(ImageSpec::Dockerfile(normalize(&base.join(dockerfile)), context))
}

/// `a/b/../c` as `a/c`, lexically; `..` above the start is kept (and refused later).
fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<std::path::Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if matches!(out.last(), Some(std::path::Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// The sources of the Dockerfile's `COPY` and `ADD` instructions (those that read the context:
/// not `--from`, not URLs), as globs relative to the context; `None` when one of them is the
/// whole context. The legacy builder gives `RUN` no view of the context, so a context of only
/// these files builds the same image, and its hash (the image's tag) changes only when they do:
/// a Dockerfile that copies the manifests is rebuilt when the manifests change, not on every
/// commit.
fn context_sources(dockerfile: &str) -> Option<Vec<globset::GlobMatcher>> {
    let joined = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim) {
        let Some((instr, rest)) = line.split_once(char::is_whitespace) else { continue };
        if !instr.eq_ignore_ascii_case("COPY") && !instr.eq_ignore_ascii_case("ADD") {
            continue;
        }
        let rest = rest.trim();
        let args: Vec<String> = if rest.starts_with('[') {
            serde_json::from_str(rest).ok()?
        } else {
            rest.split_whitespace().map(str::to_owned).collect()
        };
        if args.iter().any(|a| a.starts_with("--from")) {
            continue;
        }
        let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
        let Some((_dest, sources)) = args.split_last() else { continue };
        for src in sources {
            if src.contains("://") {
                continue;
            }
            let src = src.trim_start_matches("./").trim_end_matches('/');
            if src.is_empty() || src == "." || src == "*" {
                return None;
            }
            // Docker matches COPY sources as Go's filepath.Match does: `*` stops at `/`.
            out.push(globset::GlobBuilder::new(src).literal_separator(true).build().ok()?.compile_matcher());
        }
    }
    Some(out)
}

/// What a Dockerfile is built from and with, for `plan`: the images its `FROM` lines name
/// (not its own stages), and the context files it copies (`None`: all of them).
pub(crate) fn describe(dockerfile: &str) -> (Vec<String>, Option<Vec<String>>) {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(image) = rest.first() else { continue };
        if !stages.iter().any(|s| s.eq_ignore_ascii_case(image)) && !bases.iter().any(|b| b == image) {
            bases.push((*image).to_owned());
        }
        if let [_, as_kw, name, ..] = rest.as_slice()
            && as_kw.eq_ignore_ascii_case("AS")
        {
            stages.push((*name).to_owned());
        }
    }
    let copied = context_sources(dockerfile).map(|v| v.iter().map(|m| m.glob().glob().to_owned()).collect());
    (bases, copied)
}

/// Whether `name` (a file of the context) is, or is under, a path one of `sources` matches.
fn copied(name: &str, sources: &[globset::GlobMatcher]) -> bool {
    let mut path = name.trim_start_matches("./");
    loop {
        if sources.iter().any(|p| p.is_match(path)) {
            return true;
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent,
            None => return false,
        }
    }
}

/// A tar of the base revision's `context` directory with fixed metadata (so equal contexts give
/// equal bytes and tags); regular files only, and only those the Dockerfile copies.
fn context_tar(
    ws: &dyn BaseRevision,
    context: &Path,
    dockerfile_name: &str,
    dockerfile: &[u8],
) -> Result<Vec<u8>, String> {
    let archive = ws.tar(context)?;
    let sources = context_sources(&String::from_utf8_lossy(dockerfile));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut reader = tar::Archive::new(archive.as_slice());
    for entry in reader.entries().map_err(|e| format!("the build context: {e}"))? {
        let mut entry = entry.map_err(|e| format!("the build context: {e}"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map_err(|e| format!("the build context: {e}"))?.to_string_lossy().into_owned();
        if sources.as_deref().is_some_and(|s| !copied(&name, s)) {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| format!("the build context: {e}"))?;
        files.push((name, data));
    }
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        append(&mut builder, name, data)?;
    }
    append(&mut builder, dockerfile_name, dockerfile)?;
    builder.into_inner().map_err(|e| e.to_string())
}

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> Result<(), String> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, data).map_err(|e| e.to_string())
}

pub use crate::executor::ImageError;

/// Resolves a stage's image to a name on the machine, building it from the base revision if
/// needed. `allowed` is the policy's check of an image a devcontainer.json names.
pub async fn ensure(
    docker: &Docker,
    ws: &dyn BaseRevision,
    value: &str,
    allowed: crate::executor::ImageCheck<'_>,
) -> Result<String, ImageError> {
    tracing::debug!(target: "lightsout::docker", image = value, "ensure image");
    let spec = match ImageSpec::parse(value) {
        ImageSpec::DevContainer(file) => {
            let spec = devcontainer(ws, &file).map_err(ImageError::Fault)?;
            if let ImageSpec::Named(name) = &spec {
                allowed(name).map_err(|e| {
                    ImageError::Refused(format!("refused by policy at run time: {} names {e}", file.display()))
                })?;
            }
            spec
        }
        other => other,
    };
    resolve(docker, ws, spec).await.map_err(ImageError::Fault)
}

async fn resolve(docker: &Docker, ws: &dyn BaseRevision, spec: ImageSpec) -> Result<String, String> {
    match spec {
        ImageSpec::Named(name) => match docker.client().inspect_image(&name).await {
            Ok(_) => Ok(name),
            Err(_) => Err(format!(
                "docker: image `{name}` is not on this machine, and lightsout never pulls; build or load it first"
            )),
        },
        ImageSpec::Dockerfile(rel, context) => build(docker, ws, &rel, context.as_deref()).await,
        ImageSpec::DevContainer(_) => Err("a devcontainer.json may not point at another one".into()),
    }
}

async fn build(docker: &Docker, ws: &dyn BaseRevision, rel: &Path, context: Option<&Path>) -> Result<String, String> {
    let outside = |p: &Path| p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir));
    if outside(rel) || context.is_some_and(outside) {
        return Err(format!("the Dockerfile `{}` and its context must be inside the repository", rel.display()));
    }
    let dockerfile = ws.file(&rel.to_string_lossy())?;
    let context = match context {
        Some(c) => c.to_path_buf(),
        None => rel.parent().unwrap_or(Path::new("")).to_path_buf(),
    };
    let name = ".lightsout.Dockerfile";
    let tar = context_tar(ws, &context, name, &dockerfile)?;
    let tag = format!("lightsout-build/{}:latest", short_hash(&tar));
    if docker.client().inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    // No network: a build reaches nothing (its base image must be on the machine already).
    let opts = BuildImageOptionsBuilder::new()
        .dockerfile(name)
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .pull("false")
        .networkmode("none")
        .build();
    let mut stream = docker.client().build_image(opts, None, Some(bollard::body_full(tar.into())));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(format!("docker build of {}: {err}", rel.display()));
                }
            }
            Err(e) => return Err(format!("docker build of {}: {e}", rel.display())),
        }
    }
    Ok(tag)
}

/// The names (`repository:tag`) of the images on this machine.
pub async fn local_names(docker: &Docker) -> Result<Vec<String>, String> {
    let list = docker
        .client()
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(|e| format!("docker: cannot list images: {e}"))?;
    Ok(list.into_iter().flat_map(|i| i.repo_tags).collect())
}

/// FNV-1a, 64 bits, hex: a cache key for build contexts, not a security boundary.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values() {
        assert_eq!(ImageSpec::parse("acme/ci:1"), ImageSpec::Named("acme/ci:1".into()));
        assert_eq!(ImageSpec::parse("build:ci/Dockerfile"), ImageSpec::Dockerfile("ci/Dockerfile".into(), None));
        assert_eq!(normalize(Path::new(".devcontainer/../ci/./Dockerfile")), PathBuf::from("ci/Dockerfile"));
        assert_eq!(ImageSpec::parse("devcontainer"), ImageSpec::DevContainer(".devcontainer/devcontainer.json".into()));
    }

    #[test]
    fn the_context_is_what_the_dockerfile_copies() {
        let df = "FROM x\nCOPY pyproject.toml ./\ncopy --chown=1:1 requirements/dev.txt \\\n  requirements/\nADD [\"lib/*.cfg\", \"/etc/\"]\nCOPY --from=builder /out /out\nADD https://example.invalid/f /f\nRUN cat src/x\n";
        let sources = context_sources(df).unwrap_or_default();
        let names: Vec<&str> = sources.iter().map(|m| m.glob().glob()).collect();
        assert_eq!(names, ["pyproject.toml", "requirements/dev.txt", "lib/*.cfg"]);
        assert!(copied("./pyproject.toml", &sources) && copied("lib/a.cfg", &sources));
        assert!(!copied("src/x", &sources) && !copied("requirements/other.txt", &sources));
        let dir = context_sources("FROM x\nCOPY conf /etc/conf\n").unwrap_or_default();
        assert!(copied("conf/a/b", &dir) && !copied("confx", &dir));
        assert!(context_sources("FROM x\nCOPY . /src\n").is_none());
        assert!(context_sources("FROM x\nCOPY ./ /src\n").is_none());
        let (bases, copied) =
            describe("FROM rust:1 AS build\nCOPY Cargo.toml ./\nFROM build\nFROM --platform=x debian:12\n");
        assert_eq!(bases, ["rust:1", "debian:12"]);
        assert_eq!(copied, Some(vec!["Cargo.toml".to_owned()]));
    }

    #[test]
    fn jsonc_comments_and_trailing_commas() {
        let text = "{\n // a comment\n \"image\": \"a//b\", /* more */\n \"x\": [1, 2,],\n}";
        let v: serde_json::Value = serde_json::from_str(&strip_jsonc(text)).unwrap_or_default();
        assert_eq!(v["image"], "a//b");
        assert_eq!(v["x"], serde_json::json!([1, 2]));
    }
}
