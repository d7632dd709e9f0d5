//! Every file under `tests/malformed/` is wrong in some way; each gets a snapshot of exactly what
//! a user reads. The file name says what it is: `factory-*` a factory, `policyfile-*` a policy,
//! anything else a pipeline compiled against `tests/fixtures/factory.yaml`.

use std::fmt::Write as _;
use std::path::Path;

use lightsout::compile::Factory;
use lightsout::diag::Diagnostics;
use lightsout::spec::{self, FileKind, PipelineFile};

use super::rel;

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The rendered diagnostics, with paths shown relative to the repository root.
fn render(ds: &Diagnostics) -> String {
    ds.render(&read).replace(&format!("{}/", super::root().display()), "")
}

/// What loading and compiling the file reports; `None` when it is (wrongly) accepted.
fn diagnose(path: &Path) -> Option<Diagnostics> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.starts_with("factory-") {
        return Factory::load(path).err();
    }
    if name.starts_with("policyfile-") {
        return lightsout::compile::load_policy(path).err();
    }
    let factory = match Factory::load(&super::root().join("tests/fixtures/factory.yaml")) {
        Ok(f) => f,
        Err(ds) => panic!("the fixture factory is invalid:\n{}", render(&ds)),
    };
    let pipeline: PipelineFile = match spec::load_file(FileKind::Pipeline, path) {
        Ok(p) => p,
        Err(ds) => return Some(ds),
    };
    // Compile as the category the file declares when the factory has it (so the policy's
    // per-category rules apply), else as `misc`.
    let declared = Some(pipeline.category.value.as_str());
    let key = factory
        .file
        .categories
        .keys()
        .find(|k| Some(k.value.as_str()) == declared)
        .or_else(|| factory.file.categories.keys().find(|k| k.value == "misc"));
    factory.compile_pipeline(path, &pipeline, key, None).err()
}

#[test]
fn malformed_files() {
    insta::glob!("../malformed", "*.yaml", |path| {
        let Some(ds) = diagnose(path) else { panic!("{} was accepted", rel(path).display()) };
        assert!(!ds.is_empty());
        insta::assert_snapshot!(render(&ds));
    });
}

#[test]
fn there_are_at_least_thirty_cases() {
    let n = std::fs::read_dir(super::root().join("tests/malformed")).map_or(0, Iterator::count);
    assert!(n >= 30, "only {n} malformed cases");
}

#[test]
fn a_ten_megabyte_file_is_refused_before_parsing() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("huge.yaml");
    let mut text = String::from("version: 1\ncategory: misc\nstages:\n");
    let mut i = 0;
    while text.len() < 10 * 1024 * 1024 {
        let _ = writeln!(text, "  s{i}: {{ run: echo {i} }}");
        i += 1;
    }
    std::fs::write(&path, &text)?;
    let err = spec::load_file::<PipelineFile>(FileKind::Pipeline, &path).err().ok_or("accepted")?;
    let msg = err.render(&|_| None).replace(&path.display().to_string(), "huge.yaml");
    insta::assert_snapshot!(msg);
    Ok(())
}

#[test]
fn binary_input_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bin.yaml");
    std::fs::write(&path, [0x76, 0x65, 0xff, 0xfe, 0x00, 0x01])?;
    let err = spec::load_file::<PipelineFile>(FileKind::Pipeline, &path).err().ok_or("accepted")?;
    let msg = err.render(&|_| None).replace(&path.display().to_string(), "bin.yaml");
    insta::assert_snapshot!(msg);
    Ok(())
}

#[test]
fn every_built_in_pipeline_compiles_under_the_init_policy() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (code, _, err) = super::output(super::lightsout(dir.path()).arg("init"));
    assert_eq!(code, 0, "{err}");
    let factory = Factory::load(&dir.path().join("factory.yaml")).map_err(|ds| ds.render(&|_| None))?;
    let plans = factory.compile_all().map_err(|ds| ds.render(&|p| std::fs::read_to_string(p).ok()))?;
    assert_eq!(plans.len(), 7);
    Ok(())
}
