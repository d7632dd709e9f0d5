//! A run's workspace: its own git worktree of the repository at the base revision.
//!
//! Every git command the runner issues names the worktree's git directory and work tree
//! explicitly and disables hooks, so that files a stage writes into the workspace (a `.git`
//! file pointing elsewhere, a hook) cannot redirect what the runner does on the host.
//!
//! Host git sees the workspace's bytes as bytes: attributes are read from the empty tree, never
//! from `.gitattributes` files (so no `-diff`, `binary`, `filter`, `eol`, `text` or
//! `working-tree-encoding` a stage wrote has an effect), and diffs never run textconv or
//! external diff programs. Before git reads the workspace, the runner walks it: a file over
//! [`MAX_FILE_BYTES`] (sparse or not), a nested git repository, or a FIFO, socket or device
//! file that git would take in fails the operation with its path, before git opens anything.
//! Operations that write the worktree's index hold its lock, one at a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

/// git's empty tree: where host git reads attributes from (git 2.42 and newer; older gits
/// ignore it, and the protected paths refuse a change to `.gitattributes` either way).
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// A changed file: its path and (added, removed) lines, `None` when git takes it for binary.
pub type ChangedFile = (String, Option<(u64, u64)>);

/// The largest file host git reads from a workspace (GitHub refuses files over 100 MiB too).
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// A git worktree owned by one run.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The repository's main working tree.
    pub repo: PathBuf,
    /// The worktree's directory, mounted at `/workspace`.
    pub dir: PathBuf,
    /// The worktree's private git directory (inside the main repository's `.git`).
    git_dir: PathBuf,
    /// The base revision, a full commit id.
    pub base: String,
    /// Where the factory lives inside the repository (empty at its top): stages see this
    /// directory as `/workspace`, and paths in pipelines are relative to it.
    pub sub: PathBuf,
    /// Held by every operation that writes the worktree's index (host stages run in parallel).
    lock: Arc<Mutex<()>>,
}

/// What went wrong with the run's repository or worktree. Its text is what the user reads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// git could not be started.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// git ran and failed.
    #[error("git {command} failed: {stderr}")]
    Git { command: String, stderr: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the workspace refuses (a path out of it, a change it cannot record), and why.
    #[error("{0}")]
    Refused(String),
}

/// A workspace operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// Every git command the runner runs: hooks and fsmonitor off, attributes from the empty tree,
/// no prompt, no `GIT_DIR`/`GIT_WORK_TREE` from the runner's environment.
fn git_command(args: &[&str], cwd: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    // Hooks off; and the worktree may belong to the sandbox user while the runner is root.
    cmd.args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "safe.directory=*"]).args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0").env_remove("GIT_DIR").env_remove("GIT_WORK_TREE");
    cmd.env("GIT_ATTR_SOURCE", EMPTY_TREE);
    cmd
}

fn run_git_bytes(args: &[&str], cwd: Option<&Path>) -> Result<Vec<u8>> {
    let started = std::time::Instant::now();
    let out = git_command(args, cwd).output().map_err(Error::Spawn)?;
    // The subcommand only: arguments can hold commit messages and paths a stage chose.
    let command = args.iter().find(|a| !a.starts_with('-')).copied().unwrap_or_default();
    tracing::debug!(target: "lightsout::git", command, status = out.status.code(), elapsed_ms = started.elapsed().as_millis(), "git");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Git { command: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

fn run_git(args: &[&str], cwd: Option<&Path>) -> Result<String> {
    run_git_bytes(args, cwd).map(|out| String::from_utf8_lossy(&out).trim_end().to_owned())
}

/// `git worktree <args>` in `repo`, one at a time across the runner's stages and every other
/// runner in the repository: git writes a new worktree's administrative files in steps, and a
/// `worktree add` or `prune` beside it can read them half-written.
fn worktrees(repo: &Path, args: &[&str]) -> Result<String> {
    let lock = repo.join(".lightsout").join("worktrees.lock");
    let file = std::fs::create_dir_all(repo.join(".lightsout"))
        .and_then(|()| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock))
        .map_err(|e| Error::Io { path: lock.clone(), source: e })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::Io { path: lock.clone(), source: e.into() })?;
    let mut all = vec!["worktree"];
    all.extend_from_slice(args);
    // The lock goes with `file`, when it is dropped at the end.
    run_git(&all, Some(repo))
}

/// The top of the git repository holding `dir`.
pub fn repo_root(dir: &Path) -> Result<PathBuf> {
    run_git(&["rev-parse", "--show-toplevel"], Some(dir)).map(PathBuf::from).map_err(|_| {
        Error::Refused(format!("{} is not inside a git repository; lightsout runs in a worktree of one", dir.display()))
    })
}

/// The full commit id `rev` names in `repo`.
pub fn resolve(repo: &Path, rev: &str) -> Result<String> {
    if rev.starts_with('-') {
        return Err(Error::Refused(format!("`{rev}` is not a revision")));
    }
    run_git(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")], Some(repo))
        .map_err(|_| Error::Refused(format!("`{rev}` names no commit in {}", repo.display())))
}

/// The files of `repo`'s working tree that differ from its `HEAD` (changed, added, deleted or
/// untracked and not ignored), as paths relative to its top; sorted.
pub fn uncommitted(repo: &Path) -> Result<Vec<String>> {
    let out =
        run_git_bytes(&["status", "--porcelain=v1", "-z", "--untracked-files=normal", "--no-renames"], Some(repo))?;
    let text = String::from_utf8_lossy(&out);
    // `XY path`, each entry ended by NUL.
    let mut files: Vec<String> =
        text.split('\0').filter_map(|e| e.get(3..)).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    files.sort();
    Ok(files)
}

impl Workspace {
    /// Adds a detached worktree at `base` under `<repo>/.lightsout/worktrees/<name>`.
    pub fn create(repo: &Path, name: &str, base: &str, sub: &Path) -> Result<Workspace> {
        let root = repo.join(".lightsout");
        std::fs::create_dir_all(root.join("worktrees")).map_err(|e| Error::Io { path: root.clone(), source: e })?;
        // The runner's own directory never shows up in the user's `git status`.
        let ignore = root.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "*\n").map_err(|e| Error::Io { path: ignore.clone(), source: e })?;
        }
        let dir = root.join("worktrees").join(name);
        let dir_s = dir.to_string_lossy().into_owned();
        worktrees(repo, &["add", "--quiet", "--detach", &dir_s, base])?;
        Workspace::open(repo, &dir, base, sub)
    }

    /// An existing worktree (for resume).
    pub fn open(repo: &Path, dir: &Path, base: &str, sub: &Path) -> Result<Workspace> {
        let common = run_git(&["rev-parse", "--path-format=absolute", "--git-common-dir"], Some(repo))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let git_dir = PathBuf::from(common).join("worktrees").join(name);
        if !git_dir.is_dir() || !dir.is_dir() {
            return Err(Error::Refused(format!("the workspace {} is gone", dir.display())));
        }
        if sub.is_absolute() || sub.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(Error::Refused(format!("{} is not inside the repository", sub.display())));
        }
        Ok(Workspace {
            repo: repo.to_path_buf(),
            dir: dir.to_path_buf(),
            git_dir,
            base: base.to_owned(),
            sub: sub.to_path_buf(),
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// The directory stages see as `/workspace`: the factory's directory in this worktree.
    pub fn root(&self) -> PathBuf {
        self.dir.join(&self.sub)
    }

    /// Runs git on this worktree with its git directory named explicitly.
    fn git(&self, args: &[&str]) -> Result<String> {
        let gd = format!("--git-dir={}", self.git_dir.display());
        let wt = format!("--work-tree={}", self.dir.display());
        let mut all = vec![gd.as_str(), wt.as_str()];
        all.extend_from_slice(args);
        run_git(&all, Some(&self.repo))
    }

    /// Runs git inside the worktree directory (paths relative to its top).
    fn git_here(&self, args: &[&str]) -> Result<String> {
        let gd = format!("--git-dir={}", self.git_dir.display());
        let wt = format!("--work-tree={}", self.dir.display());
        let mut all = vec![gd.as_str(), wt.as_str()];
        all.extend_from_slice(args);
        run_git(&all, Some(&self.root()))
    }

    fn locked(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock leaves nothing half-done that a later git call minds.
        self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stages the whole worktree (`git add --all`), after checking that git will read nothing
    /// it should not: see the module's documentation.
    fn stage_all(&self) -> Result<()> {
        // Directory by directory, not by recursion: the stage chose the tree's depth.
        let (mut suspects, mut dirs) = (Vec::new(), vec![self.dir.clone()]);
        while let Some(dir) = dirs.pop() {
            walk(&self.dir, &dir, &mut suspects, &mut dirs);
        }
        if !suspects.is_empty() {
            // What .gitignore excludes, git never reads.
            let paths: Vec<&str> = suspects.iter().map(|(p, _)| p.as_str()).collect();
            let ignored = self.ignored(&paths)?;
            let refused: Vec<String> = suspects
                .iter()
                .filter(|(p, _)| !ignored.iter().any(|i| i == p))
                .map(|(p, why)| format!("`{}` {why}", p.escape_debug()))
                .collect();
            if !refused.is_empty() {
                return Err(Error::Refused(format!("the change cannot be recorded: {}", refused.join("; "))));
            }
        }
        self.git(&["add", "--all", "--", "."]).map(|_| ())
    }

    /// Which of `paths` (relative to the worktree's top) `.gitignore` excludes.
    fn ignored(&self, paths: &[&str]) -> Result<Vec<String>> {
        let gd = format!("--git-dir={}", self.git_dir.display());
        let wt = format!("--work-tree={}", self.dir.display());
        let mut cmd =
            git_command(&[gd.as_str(), wt.as_str(), "check-ignore", "--no-index", "-z", "--stdin"], Some(&self.dir));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().map_err(Error::Spawn)?;
        let input: Vec<u8> = paths.iter().flat_map(|p| p.bytes().chain([0])).collect();
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, &input).map_err(Error::Spawn)?;
        }
        let out = child.wait_with_output().map_err(Error::Spawn)?;
        // Exit 1: none is ignored.
        Ok(String::from_utf8_lossy(&out.stdout).split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    /// A file of the base revision (a path relative to the factory's directory), as bytes.
    pub fn base_file(&self, rel: &str) -> Result<Vec<u8>> {
        let path = self.sub.join(rel);
        let spec = format!("{}:{}", self.base, path.display());
        run_git_bytes(&["cat-file", "blob", &spec], Some(&self.repo)).map_err(|_| {
            Error::Refused(format!(
                "`{}` is not a file of the base revision {}",
                rel.escape_debug(),
                &self.base[..12.min(self.base.len())]
            ))
        })
    }

    /// A directory of the base revision (relative to the factory's directory; empty for the
    /// factory's directory itself), as a tar archive with paths relative to it.
    pub fn base_tar(&self, rel: &Path) -> Result<Vec<u8>> {
        let path = self.sub.join(rel);
        let tree =
            if path.as_os_str().is_empty() { self.base.clone() } else { format!("{}:{}", self.base, path.display()) };
        run_git_bytes(&["archive", "--format=tar", &tree], Some(&self.repo))
            .map_err(|_| Error::Refused(format!("`{}` is not a directory of the base revision", rel.display())))
    }

    /// Files of the workspace, tracked and untracked, without those .gitignore excludes.
    pub fn files(&self) -> Result<Vec<String>> {
        let out = self.git_here(&["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
        let mut files: Vec<String> = out.split('\0').filter(|f| !f.is_empty()).map(str::to_owned).collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// The last `n` commits of the base revision, one line each.
    pub fn log(&self, n: usize) -> Result<String> {
        self.git(&["log", &format!("-n{n}"), "--format=%h %ad %s", "--date=short", &self.base])
    }

    /// Records the workspace as it is now as a commit on the detached HEAD; returns its id.
    /// When nothing changed since HEAD, HEAD itself is the snapshot (no new commit).
    pub fn snapshot(&self, label: &str) -> Result<String> {
        let _held = self.locked();
        self.stage_all()?;
        // `diff --cached --quiet` exits 1 when the index differs from HEAD.
        if self.git(&["diff", "--cached", "--quiet", "HEAD"]).is_ok() {
            return self.git(&["rev-parse", "HEAD"]);
        }
        self.git(&[
            "-c",
            "user.name=lightsout",
            "-c",
            "user.email=lightsout@localhost",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "--no-verify",
            "--allow-empty",
            "-m",
            label,
        ])?;
        self.git(&["rev-parse", "HEAD"])
    }

    /// Puts the workspace back to a snapshot (or the base), dropping anything newer.
    pub fn restore(&self, commit: &str) -> Result<()> {
        let _held = self.locked();
        self.git(&["reset", "--quiet", "--hard", commit])?;
        // Twice --force: nested repositories a stage made go too.
        self.git(&["clean", "--quiet", "-d", "--force", "--force", "-x"])?;
        Ok(())
    }

    /// `git diff --cached` of the staged worktree against the base in the factory's directory,
    /// bytes as bytes (no textconv, no external diff).
    fn cached_diff(&self, extra: &[&str]) -> Result<String> {
        let mut args = vec!["diff", "--cached", "--relative", "--no-textconv", "--no-ext-diff"];
        args.extend_from_slice(extra);
        args.push(&self.base);
        self.git_here(&args)
    }

    /// The change against the base revision, as `git diff --stat` and as a patch.
    pub fn diff(&self) -> Result<(String, String)> {
        let _held = self.locked();
        self.stage_all()?;
        let stat = self.cached_diff(&["--stat"])?;
        let patch = self.cached_diff(&["--binary"])?;
        Ok((stat, patch))
    }

    /// Per changed file against the base: (path, added lines, removed lines); `None` for a file
    /// git takes for binary (count its lines from [`Workspace::added_lines`]).
    pub fn numstat(&self) -> Result<Vec<ChangedFile>> {
        let _held = self.locked();
        self.stage_all()?;
        let out = self.cached_diff(&["--numstat", "-z", "--no-renames"])?;
        let mut rows = Vec::new();
        for rec in out.split('\0').filter(|r| !r.is_empty()) {
            let mut parts = rec.splitn(3, '\t');
            let (Some(a), Some(d), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            rows.push((path.to_owned(), a.parse().ok().zip(d.parse().ok())));
        }
        Ok(rows)
    }

    /// The lines the change adds in the factory's directory, per file (`git diff -U0`, `+`
    /// lines only).
    pub fn added_lines(&self) -> Result<Vec<(String, String)>> {
        let _held = self.locked();
        self.stage_all()?;
        // --text: a file git takes for binary still shows its lines (a secret in a file with a
        // NUL byte is still a secret).
        let out = self.cached_diff(&["--text", "-U0", "--no-renames", "--no-color"])?;
        Ok(parse_added(&out))
    }

    /// The commit the worktree's HEAD is at.
    pub fn head(&self) -> Result<String> {
        self.git(&["rev-parse", "HEAD"])
    }

    /// A second, scratch worktree of the same repository at `commit` (for graders).
    pub fn scratch(&self, name: &str, commit: &str) -> Result<Workspace> {
        let dir =
            self.dir.parent().map_or_else(|| self.repo.join(".lightsout/worktrees"), Path::to_path_buf).join(name);
        let dir_s = dir.to_string_lossy().into_owned();
        worktrees(&self.repo, &["add", "--quiet", "--detach", "--force", &dir_s, commit])?;
        let mut ws = Workspace::open(&self.repo, &dir, &self.base, &self.sub)?;
        ws.base.clone_from(&self.base);
        Ok(ws)
    }

    /// Makes the files matching `globs` what they are at the base revision: changed ones are
    /// checked out from it, ones the base does not have are deleted.
    pub fn reset_to_base(&self, globs: &crate::policy::Globs) -> Result<Vec<String>> {
        let _held = self.locked();
        let matches = |f: &str| globs.is_match(f);
        let prefix = if self.sub.as_os_str().is_empty() { String::new() } else { format!("{}/", self.sub.display()) };
        let in_base: Vec<String> = self
            .git(&["ls-tree", "-r", "--name-only", "--full-tree", "-z", &self.base])?
            .split('\0')
            .filter_map(|f| f.strip_prefix(prefix.as_str()))
            .filter(|f| !f.is_empty() && matches(f))
            .map(str::to_owned)
            .collect();
        let mut touched = Vec::new();
        for f in self.files()?.into_iter().filter(|f| matches(f)) {
            if !in_base.contains(&f) {
                let p = self.root().join(&f);
                if std::fs::symlink_metadata(&p).is_ok() {
                    std::fs::remove_file(&p).map_err(|e| Error::Io { path: PathBuf::from(f.as_str()), source: e })?;
                    touched.push(f);
                }
            }
        }
        if !in_base.is_empty() {
            let mut args = vec!["checkout", self.base.as_str(), "--"];
            args.extend(in_base.iter().map(String::as_str));
            self.git_here(&args)?;
        }
        Ok(touched)
    }

    /// Refuses a branch name git would not accept (or that reads as an option).
    pub fn check_branch(&self, branch: &str) -> Result<()> {
        // `--branch` expands `@{-1}` to the branch checked out before: only a name that stays
        // itself is a branch name.
        let normal = run_git(&["check-ref-format", "--branch", branch], Some(&self.repo));
        if branch.starts_with('-') || normal.as_ref().ok().map(String::as_str) != Some(branch) {
            return Err(Error::Refused(format!("`{}` is not a valid branch name", branch.escape_debug())));
        }
        Ok(())
    }

    /// The whole change as a tree (the worktree staged, then written): what the last checks
    /// before `ship` judge and what `ship` commits are this one tree, whatever a stage still
    /// running writes meanwhile.
    pub fn change_tree(&self) -> Result<String> {
        let _held = self.locked();
        self.stage_all()?;
        self.git(&["write-tree"])
    }

    /// The tree of the last snapshot (the worktree's HEAD).
    pub fn head_tree(&self) -> Result<String> {
        self.git(&["rev-parse", "HEAD^{tree}"])
    }

    /// Every path `tree` adds, changes or deletes against the base, repository-relative.
    pub fn tree_paths(&self, tree: &str) -> Result<Vec<String>> {
        let out = self.git(&[
            "diff",
            "--no-textconv",
            "--no-ext-diff",
            "--name-only",
            "-z",
            "--no-renames",
            &self.base,
            tree,
        ])?;
        Ok(out.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    /// The lines `tree` adds against the base, per file, anywhere in the repository.
    pub fn tree_added_lines(&self, tree: &str) -> Result<Vec<(String, String)>> {
        let args =
            ["diff", "--no-textconv", "--no-ext-diff", "--text", "-U0", "--no-renames", "--no-color", &self.base, tree];
        Ok(parse_added(&self.git(&args)?))
    }

    /// One commit on top of the base holding `tree` (from [`Workspace::change_tree`]).
    pub fn commit_tree(&self, tree: &str, message: &str) -> Result<String> {
        let ident = ["-c", "user.name=lightsout", "-c", "user.email=lightsout@localhost", "-c", "commit.gpgsign=false"];
        let mut args: Vec<&str> = ident.to_vec();
        args.extend(["commit-tree", tree, "-p", self.base.as_str(), "-m", message]);
        self.git(&args)
    }

    /// Pushes `commit` to `branch` on `remote` (a remote name or URL of the main repository).
    pub fn push(&self, remote: &str, commit: &str, branch: &str) -> Result<()> {
        if remote.starts_with('-') {
            return Err(Error::Refused(format!("`{remote}` is not a remote")));
        }
        // Branches under `lightsout/` belong to lightsout: running a ticket again replaces its
        // branch. Any other branch is only ever moved forward.
        let force = if branch.starts_with("lightsout/") { "+" } else { "" };
        let refspec = format!("{force}{commit}:refs/heads/{branch}");
        run_git(&["push", "--quiet", "--no-verify", remote, &refspec], Some(&self.repo)).map(|_| ())
    }

    /// The branch the main working tree has checked out (the pull request's base).
    pub fn current_branch(&self) -> Result<String> {
        run_git(&["symbolic-ref", "--short", "HEAD"], Some(&self.repo)).map_err(|_| {
            Error::Refused("the repository is on a detached HEAD; a pull request needs a base branch".to_owned())
        })
    }

    /// Removes the worktree and its git directory.
    pub fn remove(&self) -> Result<()> {
        let dir = self.dir.to_string_lossy().into_owned();
        worktrees(&self.repo, &["remove", "--force", "--force", &dir]).map(|_| ()).or_else(|_| {
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::Io { path: self.dir.clone(), source: e })
        })?;
        let _ = worktrees(&self.repo, &["prune"]);
        Ok(())
    }
}

/// The `+` lines of a unified diff, with their file. Headers (`+++ b/...`) are read only
/// between `diff --git` and the first hunk, so that an added line that looks like one (`++ b/x`
/// added shows as `+++ b/x`) is still a line.
fn parse_added(diff: &str) -> Vec<(String, String)> {
    let mut file = String::new();
    let mut in_header = false;
    let mut lines = Vec::new();
    for l in diff.lines() {
        if l.starts_with("diff --git ") {
            in_header = true;
            file.clear();
        } else if in_header {
            if let Some(path) = l.strip_prefix("+++ b/") {
                path.clone_into(&mut file);
            } else if l.starts_with("@@") {
                in_header = false;
            }
        } else if let Some(added) = l.strip_prefix('+') {
            lines.push((file.clone(), added.to_owned()));
        }
    }
    lines
}

/// Collects, under `dir`, what host git must not read: files over [`MAX_FILE_BYTES`], nested
/// git repositories, FIFOs, sockets and device files (as paths relative to `top`, with why).
/// Never follows a link; does not descend into nested repositories or the top's `.git`.
fn walk(top: &Path, dir: &Path, out: &mut Vec<(String, String)>, dirs: &mut Vec<PathBuf>) {
    use std::os::unix::fs::FileTypeExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let rel = path.strip_prefix(top).unwrap_or(&path).to_string_lossy().into_owned();
        let t = meta.file_type();
        if entry.file_name() == ".git" {
            if dir != top {
                let parent = dir.strip_prefix(top).unwrap_or(dir).to_string_lossy().into_owned();
                out.push((parent, "is a nested git repository (lightsout commits files, not repositories)".into()));
            }
            continue;
        }
        if t.is_dir() {
            dirs.push(path);
        } else if t.is_file() && meta.len() > MAX_FILE_BYTES {
            out.push((rel, format!("is {} bytes, over the limit of {MAX_FILE_BYTES}", meta.len())));
        } else if t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device() {
            out.push((rel, "is not a regular file".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_added_line_that_looks_like_a_header_is_a_line() {
        let diff = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n+++ b/hidden\n+plain\ndiff --git a/g b/g\n+++ b/g\n@@ -1 +1 @@\n+x\n";
        let got = super::parse_added(diff);
        let want: Vec<(String, String)> = [("f", "++ b/hidden"), ("f", "plain"), ("g", "x")]
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        assert_eq!(got, want);
    }
}
