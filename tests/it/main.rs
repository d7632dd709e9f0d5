#![expect(clippy::panic, clippy::expect_used, reason = "a test fails by panicking")]
//! Integration tests: one binary, one module per area.

mod agent_loop;
mod attack2;
mod boundary_output;
mod cli;
mod fence;
mod graders;
mod hostile;
mod layers;
mod malformed;
mod real;
mod run;
mod runner;
mod schema;
mod scratch;
mod ship;
mod support;
mod tickets;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root; tests name files relative to it so snapshots are the same everywhere.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A `lightsout` command, run from `dir`, with no inherited factory setting.
pub fn lightsout(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lightsout"));
    c.current_dir(dir).env_remove("LIGHTSOUT_FACTORY");
    c
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn output(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap_or_else(|e| panic!("cannot run lightsout: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path relative to the repository root, as shown in snapshots.
pub fn rel(p: &Path) -> PathBuf {
    p.strip_prefix(root()).map_or_else(|_| p.to_path_buf(), Path::to_path_buf)
}
