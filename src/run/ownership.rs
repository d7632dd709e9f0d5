//! File ownership between the host and a sandbox: when the runner is root, stages (containers
//! and bubblewrap sandboxes alike) run as an unprivileged user, so the workspace is handed to
//! that user for the run and back after.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::executor::docker::FALLBACK_UID;

/// Never follows a link; directory by directory, not by recursion (a stage chose the
/// tree's depth).
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let _ = std::os::unix::fs::lchown(&p, Some(uid), Some(gid));
        if let Ok(meta) = std::fs::symlink_metadata(&p)
            && meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn prepare(path: &Path) {
    if is_root() {
        chown_tree(path, FALLBACK_UID, FALLBACK_UID);
    }
}

pub fn restore(path: &Path, repo: &Path) {
    if is_root() {
        let (uid, gid) = std::fs::metadata(repo).map_or((0, 0), |m| (m.uid(), m.gid()));
        chown_tree(path, uid, gid);
    }
}
