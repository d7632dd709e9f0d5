//! The image `init` names, and the Dockerfile it writes when the toolchain image lacks the
//! test dependencies.
//!
//! The image is the toolchain's official one (`python:3.12-bookworm`, ...). lightsout never
//! pulls, so when that name is not on this machine and an image of the same toolchain and Debian
//! release is, under another registry or namespace (a mirror's copy, a team's build, the test
//! images), init names that one, and says so and how to get the official one instead.

use std::fmt::Write as _;

use super::detect::{Deps, Setup};

/// Where the test image's Dockerfile goes, beside factory.yaml; its build context is the
/// repository, cut to the files it copies.
pub(super) const DOCKERFILE: &str = "lightsout.Dockerfile";

/// The images on this machine, or why they are not known.
pub(super) fn local() -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(async {
        let docker = crate::executor::docker::Docker::connect().await?;
        crate::executor::docker::image::local_names(&docker).await
    })
}

/// The image to name for `official` given the images on this machine, and a line for the user
/// when it is not the official one.
pub(super) fn choose(official: &str, local: &[String]) -> (String, Option<String>) {
    if local.iter().any(|l| l == official) {
        return (official.to_owned(), None);
    }
    let (repo, tag) = official.split_once(':').unwrap_or((official, "latest"));
    let release = tag.rsplit_once('-').map_or("", |(_, r)| r);
    let mut same: Vec<&String> = local
        .iter()
        .filter(|l| {
            let (name, t) = l.rsplit_once(':').unwrap_or((l, "latest"));
            name.rsplit('/').next() == Some(repo) && name.contains('/') && (release.is_empty() || t.ends_with(release))
        })
        .collect();
    same.sort();
    match same.last() {
        Some(found) => (
            (*found).clone(),
            Some(format!(
                "{official} is not on this machine; using {found}, which is (`docker pull {official}` and edit the image to use the official one)"
            )),
        ),
        None => (official.to_owned(), None),
    }
}

/// The Dockerfile that installs the test dependencies into `base`.
pub(super) fn dockerfile(base: &str, setup: &Setup, deps: &Deps) -> String {
    let mut out = format!(
        "# The test image of this repository, written by `lightsout init`: the toolchain image with\n\
         # {what}.\n\
         # lightsout builds it from the base revision's files, with only the files COPY names as its\n\
         # context, so it is rebuilt when they change and reused while they do not. It never pulls:\n\
         # `docker pull {base}` (or build an image of that name) first. Builds have no network in\n\
         # this version: a step that downloads fails; install from a mirror on the base image instead.\n\
         FROM {base}\n\
         WORKDIR /lightsout/deps\n",
        what = deps.what,
    );
    for f in &deps.copy {
        let _ = writeln!(out, "COPY {f} {f}");
    }
    for s in &deps.steps {
        out.push_str(s);
        out.push('\n');
    }
    for n in &setup.notes {
        let _ = writeln!(out, "# note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_image_else_one_of_the_same_toolchain_and_release() {
        let local: Vec<String> =
            ["lightsout-test/python:3.11-bookworm", "lightsout-test/rust:1.63-bookworm", "python:3.12-slim"]
                .map(String::from)
                .into();
        assert_eq!(choose("rust:1-bookworm", &["rust:1-bookworm".into()]), ("rust:1-bookworm".into(), None));
        let (name, note) = choose("python:3.12-bookworm", &local);
        assert_eq!(name, "lightsout-test/python:3.11-bookworm");
        assert!(note.is_some_and(|n| n.contains("docker pull python:3.12-bookworm")));
        assert_eq!(choose("golang:1.23-bookworm", &local).0, "golang:1.23-bookworm");
        assert_eq!(choose("node:22-bookworm", &["x/node:18-bullseye".into()]).0, "node:22-bookworm");
    }
}
