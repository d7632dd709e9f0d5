//! File ownership between the host and a sandbox: when the runner is root, stages (containers
//! and bubblewrap sandboxes alike) run as an unprivileged user, so the workspace is handed to
//! that user for the run and back after.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::executor::docker::FALLBACK_UID;

/// Gives every file of the tree to `owner` (when the runner is root) and opens every directory
/// to its owner (a stage may have locked one, `chmod 000`, to keep what is under it from the
/// runner). Never follows a link; directory by directory, not by recursion (a stage chose the
/// tree's depth).
fn reclaim_tree(path: &Path, owner: Option<(u32, u32)>) {
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::lchown(&p, Some(uid), Some(gid));
        }
        if let Ok(meta) = std::fs::symlink_metadata(&p)
            && meta.is_dir()
        {
            crate::untrusted::open_up(&p);
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
}

use crate::executor::local::runner_is_root as is_root;

pub(super) fn prepare(path: &Path) {
    if is_root() {
        reclaim_tree(path, Some((FALLBACK_UID, FALLBACK_UID)));
    }
}

/// Hands a tree a stage could write back to the repository's owner (when the runner is root)
/// and opens its directories: before host git reads it and before it is removed.
pub(super) fn restore(path: &Path, repo: &Path) {
    let owner = is_root().then(|| std::fs::metadata(repo).map_or((0, 0), |m| (m.uid(), m.gid())));
    reclaim_tree(path, owner);
}
