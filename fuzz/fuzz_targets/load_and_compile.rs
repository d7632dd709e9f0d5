//! Any bytes, as any of the three file kinds: loading, validating, compiling and rendering the
//! diagnostics must never panic, hang or run out of memory.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lightsout::compile::Factory;
use lightsout::spec::{self, FactoryFile, FileKind, PipelineFile, PolicyFile};

/// A factory on disk (with a policy and an agent) that fuzzed pipelines compile against.
fn factory() -> Option<&'static Factory> {
    static FACTORY: OnceLock<Option<Factory>> = OnceLock::new();
    FACTORY
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("lightsout-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("pipelines")).ok()?;
            std::fs::write(dir.join("pipelines/misc.yaml"), "version: 1\ncategory: misc\nstages:\n  a: { run: x }\n").ok()?;
            std::fs::write(
                dir.join("policy.yaml"),
                "version: 1\nimages: { allow: [\"t/*\"] }\nsecrets: { T: { stages: [ship] } }\nrequired_graders: { misc: [grade.tests] }\napproval: [misc]\n",
            )
            .ok()?;
            std::fs::write(
                dir.join("factory.yaml"),
                "version: 1\nname: f\ndefaults: { image: t/x }\nagents: { c: { preset: claude-code } }\ncategories:\n  misc: { pipeline: pipelines/misc.yaml }\npolicy: policy.yaml\n",
            )
            .ok()?;
            Factory::load(&dir.join("factory.yaml")).ok()
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let path = PathBuf::from("fuzz.yaml");
    let source = |_: &Path| Some(text.to_owned());
    let errors = match selector % 3 {
        0 => spec::load_str::<FactoryFile>(FileKind::Factory, &path, text).err(),
        1 => spec::load_str::<PolicyFile>(FileKind::Policy, &path, text).err(),
        _ => match spec::load_str::<PipelineFile>(FileKind::Pipeline, &path, text) {
            Err(ds) => Some(ds),
            Ok(pipeline) => {
                let factory = factory().expect("the fixture factory is valid");
                let key = factory.file.categories.keys().next();
                factory.compile_pipeline(&path, &pipeline, key, None).err()
            }
        },
    };
    if let Some(ds) = errors {
        let _ = ds.render(&source);
    }
});
