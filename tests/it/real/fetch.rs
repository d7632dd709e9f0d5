//! Sources of real projects, fetched at test time through the package registries' own clients
//! (pip, cargo, apt), pinned by version and sha256, and cached by checksum under
//! `target/real-projects/` so that a rerun needs no network. Nothing of them is in the
//! repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a project's source comes from.
#[expect(clippy::enum_variant_names, reason = "the Debian package kinds are named as Debian names them")]
pub(super) enum Source {
    /// A `PyPI` sdist: `pip download --no-deps --no-binary :all: NAME==VERSION`; the checksum is
    /// the sdist's.
    Pypi(&'static str, &'static str),
    /// A crate's source through `cargo vendor`; the checksum is the `.crate`'s, which cargo checks
    /// against the registry's index and records in `.cargo-checksum.json`.
    Crate(&'static str, &'static str),
    /// A Debian binary package (`apt-get download`), and the directory in it that holds the
    /// source (Go's `-dev` packages ship it under /usr/share/gocode); the checksum is the .deb's.
    DebBinary(&'static str, &'static str, &'static str),
    /// A Debian source package (`apt-get source --download-only`); the checksum is the upstream
    /// tarball's (`.orig.tar.*`), the tree is what it unpacks to.
    DebSource(&'static str, &'static str),
}

/// The cache directory of one checksum.
fn cache(sha256: &str) -> PathBuf {
    super::super::root().join("target/real-projects").join(sha256)
}

fn run(c: &mut Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256_of(file: &Path) -> Result<String, String> {
    let out = run(Command::new("sha256sum").arg(file), "sha256sum")?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// The one file in `dir` whose name ends with `suffix` and contains `name`.
fn one_file(dir: &Path, name: &str, suffix: &str) -> Result<PathBuf, String> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(suffix) && n.to_string_lossy().contains(name))
        })
        .collect();
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one {name}*{suffix} in {}, found {files:?}", dir.display())),
    }
}

fn check(file: &Path, sha256: &str) -> Result<(), String> {
    let got = sha256_of(file)?;
    if got == sha256 {
        Ok(())
    } else {
        Err(format!("{}: sha256 {got}, pinned {sha256}: not the pinned artifact", file.display()))
    }
}

/// The single top directory an archive unpacked to in `dir`.
fn single_dir(dir: &Path) -> Result<PathBuf, String> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one directory in {}, found {dirs:?}", dir.display())),
    }
}

/// The Debian mirror apt is configured with on this machine (its sources, never written down).
fn mirror() -> Result<String, String> {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    for e in std::fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().filter_map(Result::ok) {
        texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("URIs:").or_else(|| l.strip_prefix("deb ")).map(|r| {
                r.split_whitespace()
                    .find(|w| w.starts_with("http"))
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_owned()
            })
        })
        .find(|u| u.ends_with("/debian"))
        .ok_or_else(|| "no Debian mirror in the apt sources of this machine".into())
}

/// apt with lists of its own (bookworm's packages and sources) in `dir`: the machine's apt state
/// is neither needed nor touched.
fn apt(dir: &Path) -> Result<Vec<String>, String> {
    let etc = dir.join("etc");
    for d in [etc.clone(), dir.join("lists/partial"), dir.join("cache/archives/partial")] {
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    }
    let m = mirror()?;
    std::fs::write(etc.join("sources.list"), format!("deb {m} bookworm main\ndeb-src {m} bookworm main\n"))
        .map_err(|e| e.to_string())?;
    let opts = vec![
        format!("-oDir::Etc::SourceList={}", etc.join("sources.list").display()),
        "-oDir::Etc::SourceParts=/nonexistent".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
        "-oDebug::NoLocking=1".into(),
        "-oAPT::Sandbox::User=root".into(),
        "-qq".into(),
    ];
    run(Command::new("apt-get").args(&opts).arg("update"), "apt-get update (own lists)")?;
    Ok(opts)
}

/// Downloads into a fresh directory and returns the unpacked tree.
fn download(source: &Source, sha256: &str, work: &Path) -> Result<PathBuf, String> {
    let unpacked = work.join("tree");
    std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    match source {
        Source::Pypi(name, version) => {
            run(
                Command::new("python3")
                    .args(["-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d"])
                    .arg(work)
                    .arg(format!("{name}=={version}")),
                "pip download",
            )?;
            let sdist = one_file(work, "", ".tar.gz")?;
            check(&sdist, sha256)?;
            run(Command::new("tar").arg("-xf").arg(&sdist).arg("-C").arg(&unpacked), "tar")?;
            single_dir(&unpacked)
        }
        Source::Crate(name, version) => {
            let p = work.join("fetch");
            std::fs::create_dir_all(p.join("src")).map_err(|e| e.to_string())?;
            std::fs::write(p.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
            std::fs::write(
                p.join("Cargo.toml"),
                format!("[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[dependencies]\n{name} = \"={version}\"\n\n[workspace]\n"),
            )
            .map_err(|e| e.to_string())?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(
                Command::new(cargo).args(["vendor", "--versioned-dirs", "-q"]).arg(&unpacked).current_dir(&p),
                "cargo vendor",
            )?;
            let tree = unpacked.join(format!("{name}-{version}"));
            let sums = std::fs::read_to_string(tree.join(".cargo-checksum.json")).map_err(|e| e.to_string())?;
            let sums: serde_json::Value = serde_json::from_str(&sums).map_err(|e| e.to_string())?;
            if sums["package"] != sha256 {
                return Err(format!("{name} {version}: .crate sha256 {}, pinned {sha256}", sums["package"]));
            }
            std::fs::remove_file(tree.join(".cargo-checksum.json")).map_err(|e| e.to_string())?;
            Ok(tree)
        }
        Source::DebBinary(package, version, subdir) => {
            let opts = apt(&work.join("apt"))?;
            run(
                Command::new("apt-get")
                    .args(&opts)
                    .arg("download")
                    .arg(format!("{package}={version}"))
                    .current_dir(work),
                "apt-get download",
            )?;
            let deb = one_file(work, package, ".deb")?;
            check(&deb, sha256)?;
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked), "dpkg-deb -x")?;
            Ok(unpacked.join(subdir))
        }
        Source::DebSource(package, version) => {
            let opts = apt(&work.join("apt"))?;
            // Only the upstream tarball: apt names it and its hash, and apt's own downloader
            // fetches it and checks that hash (the packaging tarball is not needed).
            let uris = run(
                Command::new("apt-get")
                    .args(&opts)
                    .args(["source", "--print-uris"])
                    .arg(format!("{package}={version}")),
                "apt-get source --print-uris",
            )?;
            let line = uris
                .lines()
                .find(|l| l.contains(".orig.tar."))
                .ok_or_else(|| format!("apt-get source names no upstream tarball of {package} {version}:\n{uris}"))?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [uri, name, _size, hash, ..] = fields.as_slice() else {
                return Err(format!("cannot read apt's line `{line}`"));
            };
            let orig = work.join(name);
            run(
                Command::new("/usr/lib/apt/apt-helper")
                    .arg("download-file")
                    .arg(uri.trim_matches('\''))
                    .arg(&orig)
                    .arg(hash),
                "apt-helper download-file",
            )?;

            check(&orig, sha256)?;
            run(Command::new("tar").arg("-xf").arg(&orig).arg("-C").arg(&unpacked), "tar")?;
            single_dir(&unpacked)
        }
    }
}

/// The project's pristine source tree, from the cache or downloaded into it.
pub(super) fn fetch(source: &Source, sha256: &str) -> Result<PathBuf, String> {
    let dir = cache(sha256);
    let done = dir.join("tree");
    if done.is_dir() {
        return Ok(done);
    }
    let work = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let tree = download(source, sha256, &work)?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::rename(&tree, &done).map_err(|e| format!("{}: {e}", done.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(done)
}
