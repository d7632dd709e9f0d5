//! Who runs `lightsout` in a test. By default the test process's own user (the invoker). Inside
//! [`as_unprivileged_user`], every `lightsout` a [`Repo`](super::support::Repo) starts runs as an
//! unprivileged user instead: uid and gid [`UID`] when the test process is root, the invoker
//! otherwise. CI runs as root, so the local executor is tested both with a root runner and with
//! an unprivileged one.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged runner's uid and gid when the test process is root. Not 65532: that is the
/// uid a root runner gives its sandbox, and the two must not be confused.
pub(crate) const UID: u32 = 65533;

/// An [`as_unprivileged_user`] in progress on this thread (each test has its own thread).
struct Scope {
    /// When the test process is root: the unprivileged user's HOME, and where the binary is linked
    /// when that user cannot reach it where cargo built it.
    dir: Option<tempfile::TempDir>,
    /// How many `lightsout` commands were made to run as the unprivileged user.
    launched: usize,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Whether the test process runs as root (its effective uid is the owner of `/proc/self`).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).expect("/proc/self") == 0
}

/// Runs `test` with every `lightsout` a `Repo` starts run by an unprivileged user. Fails when
/// `test` started none: a variant that did not run as that user must not pass.
pub(crate) fn as_unprivileged_user(test: impl FnOnce()) {
    let dir = is_root().then(|| {
        let home = tempfile::tempdir().expect("temp dir");
        reachable_by_others(home.path());
        std::os::unix::fs::chown(home.path(), Some(UID), Some(UID)).expect("chown HOME");
        home
    });
    SCOPE.with(|s| *s.borrow_mut() = Some(Scope { dir, launched: 0 }));
    test();
    let scope = SCOPE.with(|s| s.borrow_mut().take()).expect("scope");
    assert!(scope.launched > 0, "the test ran no lightsout, so nothing ran as the unprivileged user");
}

/// A `lightsout` command run from the repository `repo` by the current runner: the invoker, or,
/// inside [`as_unprivileged_user`] as root, uid [`UID`], which then owns the whole repository
/// (so git's `safe.directory` check passes) and has a HOME of its own.
pub(crate) fn lightsout(repo: &Path) -> Command {
    SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(scope) = s.as_mut() else { return super::lightsout(repo) };
        scope.launched += 1;
        let Some(home) = &scope.dir else { return super::lightsout(repo) };
        reachable_by_others(repo);
        chown_tree(repo);
        let mut c = Command::new(binary(home.path()));
        c.current_dir(repo).env_remove("LIGHTSOUT_FACTORY");
        c.uid(UID).gid(UID).env("HOME", home.path()).env("USER", "lightsout-test").env_remove("XDG_RUNTIME_DIR");
        c
    })
}

/// The lightsout binary, at a path uid [`UID`] can execute: where cargo built it, or else a link
/// (or copy) of it in `dir`.
fn binary(dir: &Path) -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_lightsout"));
    if path_is_open(built) {
        return built.to_path_buf();
    }
    let there = dir.join("lightsout");
    if !there.exists() {
        std::fs::hard_link(built, &there)
            .or_else(|_| std::fs::copy(built, &there).map(drop))
            .unwrap_or_else(|e| panic!("cannot put the lightsout binary where uid {UID} can run it: {e}"));
    }
    there
}

/// Whether every directory above `p` can be traversed by other users.
fn path_is_open(p: &Path) -> bool {
    p.ancestors().skip(1).all(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Panics, saying what to do, when uid [`UID`] cannot reach `dir` (a temporary directory).
fn reachable_by_others(dir: &Path) {
    assert!(
        path_is_open(dir),
        "uid {UID} cannot reach {}: a directory above it is closed to other users; set TMPDIR to a \
         directory every user can traverse (such as /tmp)",
        dir.display()
    );
}

/// Hands `dir` and everything in it to uid [`UID`] (symbolic links themselves, not their targets).
fn chown_tree(dir: &Path) {
    std::os::unix::fs::lchown(dir, Some(UID), Some(UID)).unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(dir).expect("read_dir").filter_map(Result::ok) {
            chown_tree(&entry.path());
        }
    }
}
