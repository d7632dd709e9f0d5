//! Reading bytes a stage could have written (its outputs file, its `JUnit` report, files of the
//! workspace), and cleaning up what it left behind.
//!
//! A stage is hostile code, and these files are its to shape: a symbolic link to a host file
//! or to `/dev/zero`, a FIFO that never answers, a sparse file of terabytes, a link swapped in
//! between a check and a read. So every such file is opened one component at a time without
//! following links (each directory relative to the one before it), must be a regular file by
//! the descriptor that was opened, is read up to a cap, and, from async code, is read on a
//! blocking thread with a timeout.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};
use std::time::Duration;

use rustix::fs::{CWD, FileType, Mode, OFlags};

/// How long a read of one stage-written file may take before the runner gives up on it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a file was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Outside,
    Link,
    NotRegular(&'static str),
    TooLarge(u64),
    Unreadable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing => write!(f, "does not exist"),
            Refusal::Outside => write!(f, "is outside the workspace"),
            Refusal::Link => write!(f, "is a symbolic link or lies under one (not followed)"),
            Refusal::NotRegular(kind) => write!(f, "is not a regular file (a {kind})"),
            Refusal::TooLarge(cap) => write!(f, "is larger than {cap} bytes"),
            Refusal::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "special file",
    }
}

fn refusal(e: rustix::io::Errno) -> Refusal {
    match e {
        rustix::io::Errno::NOENT => Refusal::Missing,
        // O_NOFOLLOW on a link gives ELOOP; O_DIRECTORY on a link to a directory, ENOTDIR.
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Refusal::Link,
        other => Refusal::Unreadable(other.to_string()),
    }
}

/// Opens `rel` under the trusted directory `root`, never following a symbolic link on the way.
fn open_under(root: &Path, rel: &Path) -> Result<OwnedFd, Refusal> {
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(p) => Ok(Some(p)),
            Component::CurDir => Ok(None),
            _ => Err(Refusal::Outside),
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    let Some((last, dirs)) = parts.split_last() else { return Err(Refusal::Outside) };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, dir_flags, Mode::empty()).map_err(refusal)?;
    for d in dirs {
        dir = rustix::fs::openat(&dir, *d, dir_flags, Mode::empty()).map_err(refusal)?;
    }
    // NONBLOCK: opening a FIFO must not wait for a writer.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    rustix::fs::openat(&dir, *last, flags, Mode::empty()).map_err(refusal)
}

/// Reads an opened file if it is a regular file of at most `cap` bytes.
fn read_fd(fd: OwnedFd, cap: u64) -> Result<Vec<u8>, Refusal> {
    let st = rustix::fs::fstat(&fd).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Refusal::NotRegular(kind_name(kind)));
    }
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > cap {
        return Err(Refusal::TooLarge(cap));
    }
    let mut bytes = Vec::new();
    // The file may grow while it is read: never more than the cap.
    std::fs::File::from(fd).take(cap + 1).read_to_end(&mut bytes).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(Refusal::TooLarge(cap));
    }
    Ok(bytes)
}

/// Reads `rel` under the trusted directory `root`: no link followed, a regular file, at most
/// `cap` bytes.
pub fn read_under(root: &Path, rel: &Path, cap: u64) -> Result<Vec<u8>, Refusal> {
    read_fd(open_under(root, rel)?, cap)
}

/// Reads the file at `path` whose directory the runner made (a stage's I/O directory): the last
/// component is not followed if it is a link; `None` when there is no such file.
pub fn read_file(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, Refusal> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
        Ok(fd) => read_fd(fd, cap).map(Some),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(refusal(e)),
    }
}

/// [`read_file`] on a blocking thread, given up after [`READ_TIMEOUT`].
pub async fn read_file_async(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, Refusal> {
    let owned = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || read_file(&owned, cap));
    match tokio::time::timeout(READ_TIMEOUT, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(Refusal::Unreadable(e.to_string())),
        Err(_) => Err(Refusal::Unreadable(format!("no answer within {}s", READ_TIMEOUT.as_secs()))),
    }
}

/// Gives the runner (the owner of what an unprivileged runner's sandbox wrote) read, write and
/// search rights on a directory a stage may have locked (`chmod 000`), so that nothing under it
/// escapes the cleaning, the masking or the removal. A directory only, never through a link.
pub fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::symlink_metadata(dir)
        && meta.is_dir()
    {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
    }
}

/// What [`scrub`] removed or changed, as `path: what` lines (paths relative to the top).
pub type Scrubbed = Vec<String>;

/// Makes a directory a stage wrote safe for the host to keep: no file keeps a setuid, setgid
/// or sticky bit, and FIFOs, sockets and device files are removed; with `links: false`,
/// symbolic links are removed too (an I/O directory has no use for them). Never follows a link.
pub fn scrub(top: &Path, links: bool) -> Scrubbed {
    // Directory by directory, not by recursion: the stage chose the tree's depth.
    let (mut done, mut dirs) = (Vec::new(), vec![top.to_path_buf()]);
    open_up(top);
    while let Some(dir) = dirs.pop() {
        scrub_dir(top, &dir, links, &mut done, &mut dirs);
    }
    done
}

fn scrub_dir(top: &Path, dir: &Path, links: bool, done: &mut Scrubbed, dirs: &mut Vec<std::path::PathBuf>) {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(top).unwrap_or(&path).display().to_string();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let t = meta.file_type();
        let special = if t.is_fifo() {
            Some("FIFO")
        } else if t.is_socket() {
            Some("socket")
        } else if t.is_char_device() || t.is_block_device() {
            Some("device file")
        } else if t.is_symlink() && !links {
            Some("symbolic link")
        } else {
            None
        };
        if let Some(kind) = special {
            let _ = std::fs::remove_file(&path);
            done.push(format!("{rel}: a {kind}, removed"));
            continue;
        }
        if t.is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o7000 != 0 {
            // chmod on the path: it is not a link (checked above), and a swap since is the
            // stage's own file again, as the stage has ended.
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777));
            done.push(format!("{rel}: setuid/setgid/sticky bits cleared"));
        }
        if t.is_dir() {
            open_up(&path);
        }
        if t.is_dir() && path.file_name().is_none_or(|n| n != ".git" || dir != top) {
            dirs.push(path);
        }
    }
}

/// Masks every secret in the regular files under `top` (a stage's I/O directory, kept in the
/// run's record); a file over `cap` bytes (sparse or not) is removed rather than kept.
pub fn mask_files(top: &Path, needles: &crate::secrets::Needles, cap: u64) -> Scrubbed {
    let (mut done, mut dirs) = (Vec::new(), vec![top.to_path_buf()]);
    while let Some(dir) = dirs.pop() {
        mask_dir(top, &dir, needles, cap, &mut done, &mut dirs);
    }
    done
}

fn mask_dir(
    top: &Path,
    dir: &Path,
    needles: &crate::secrets::Needles,
    cap: u64,
    done: &mut Scrubbed,
    dirs: &mut Vec<std::path::PathBuf>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(top).unwrap_or(&path).display().to_string();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !needles.is_empty()
            && needles.mask(entry.file_name().as_encoded_bytes()) != entry.file_name().as_encoded_bytes()
        {
            // A name holding a secret: the record keeps neither the name nor what it names.
            let gone = if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            let rel = needles.mask_str(&rel);
            done.push(format!(
                "{rel}: its name holds a secret, {}",
                if gone.is_ok() { "removed" } else { "NOT removed" }
            ));
            continue;
        }
        if meta.is_dir() {
            dirs.push(path);
            continue;
        }
        if needles.is_empty() && meta.is_file() && meta.len() <= cap {
            continue;
        }
        match read_file(&path, cap) {
            Ok(Some(bytes)) => {
                let masked = needles.mask(&bytes);
                if masked != bytes && std::fs::write(&path, &masked).is_err() {
                    let _ = std::fs::remove_file(&path);
                    done.push(format!("{rel}: held a secret and could not be masked, removed"));
                }
            }
            Ok(None) => {}
            Err(why) => {
                let _ = std::fs::remove_file(&path);
                done.push(format!("{rel}: {why}, removed unread"));
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "test set-up: a failure here is the test failing")]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_large_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("ok"), b"hello").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("link");
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).expect("link");
        std::fs::create_dir(root.join("d")).expect("dir");
        std::os::unix::fs::symlink(root.join("d"), root.join("dlink")).expect("link");
        std::fs::write(root.join("d/f"), b"x").expect("write");
        let status = std::process::Command::new("mkfifo").arg(root.join("fifo")).status().expect("mkfifo");
        assert!(status.success());
        let sparse = std::fs::File::create(root.join("sparse")).expect("create");
        sparse.set_len(1 << 40).expect("sparse");

        assert_eq!(read_under(root, Path::new("ok"), 10), Ok(b"hello".to_vec()));
        assert_eq!(read_under(root, Path::new("d/f"), 10), Ok(b"x".to_vec()));
        assert_eq!(read_under(root, Path::new("link"), 10), Err(Refusal::Link));
        assert_eq!(read_under(root, Path::new("dlink/f"), 10), Err(Refusal::Link));
        assert_eq!(read_under(root, Path::new("../x"), 10), Err(Refusal::Outside));
        assert_eq!(read_under(root, Path::new("fifo"), 10), Err(Refusal::NotRegular("FIFO")));
        assert_eq!(read_under(root, Path::new("sparse"), 10), Err(Refusal::TooLarge(10)));
        assert_eq!(read_under(root, Path::new("ok"), 4), Err(Refusal::TooLarge(4)));
        assert_eq!(read_file(&root.join("zero"), 10), Err(Refusal::Link));
        assert_eq!(read_file(&root.join("fifo"), 10), Err(Refusal::NotRegular("FIFO")));
        assert_eq!(read_file(&root.join("none"), 10), Ok(None));
        assert_eq!(read_file(&root.join("ok"), 10), Ok(Some(b"hello".to_vec())));
    }

    #[test]
    fn scrub_clears_setuid_and_removes_special_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).expect("dir");
        std::fs::write(root.join("sub/suid"), b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(root.join("sub/suid"), std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        let status = std::process::Command::new("mkfifo").arg(root.join("sub/fifo")).status().expect("mkfifo");
        assert!(status.success());
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("link");
        let kept = scrub(root, true);
        assert_eq!(kept.len(), 2, "{kept:?}");
        let mode = std::fs::metadata(root.join("sub/suid")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(std::fs::symlink_metadata(root.join("sub/fifo")).is_err());
        assert!(std::fs::symlink_metadata(root.join("link")).is_ok());
        let gone = scrub(root, false);
        assert_eq!(gone, vec!["link: a symbolic link, removed".to_owned()]);
    }
}
