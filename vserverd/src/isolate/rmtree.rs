//! Removing a tree a guest may have shaped (delete, build rollback, leftovers). Guest root can
//! make a directory chain tens of thousands deep in a second; a recursive removal (std's
//! remove_dir_all holds one fd and one stack frame per level) then overflows a thread's stack
//! or runs out of fds half-way. This walks with an explicit stack of names and holds two
//! directory fds at a time; going back up it opens `..` and checks it is the directory it came
//! from. It never follows a symlink (they are unlinked like files) and never crosses into
//! another file system (a mount point below is left, and said). Blocking: call it from a
//! blocking thread.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What could not be removed.
#[derive(Debug, thiserror::Error)]
#[error("removing {}: {what}", .path.display())]
pub struct RemoveError {
    pub path: PathBuf,
    pub what: String,
}

fn err(path: &Path, what: impl std::fmt::Display) -> RemoveError {
    RemoveError {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn open_dir(at: &OwnedFd, name: &CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn id(fd: &OwnedFd) -> rustix::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// The first entry of `dir` still to be handled, skipping `kept` (directories left behind).
fn next_entry(
    dir: &OwnedFd,
    kept: &[(u64, u64)],
    here: (u64, u64),
) -> rustix::io::Result<Option<(CString, FileType)>> {
    let mut d = Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if e.file_type() == FileType::Directory
            && kept.iter().any(|k| k.0 == here.0 && k.1 == e.ino())
        {
            continue;
        }
        return Ok(Some((name.to_owned(), e.file_type())));
    }
    Ok(None)
}

/// Removes `path` and everything below it; a symlink at `path` is removed itself. Returns
/// the number of entries removed. A partial failure (a mount below, a file that cannot be
/// removed) removes everything else and says what was left.
pub fn remove_tree(path: &Path) -> Result<u64, RemoveError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(path, e)),
    };
    if !meta.is_dir() {
        std::fs::remove_file(path).map_err(|e| err(path, e))?;
        return Ok(1);
    }
    let top = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(path, e))?;
    let top_id = id(&top).map_err(|e| err(path, e))?;
    let dev = top_id.0;
    let mut removed = 0u64;
    let mut left: Vec<String> = Vec::new();
    let mut kept: Vec<(u64, u64)> = Vec::new();
    // Names from `top` down to `cur`, and the identity of each directory above `cur`.
    let mut names: Vec<CString> = Vec::new();
    let mut above: Vec<(u64, u64)> = Vec::new();
    let mut cur = top;
    let mut cur_id = top_id;
    let where_ = |names: &[CString], leaf: &CStr| {
        let mut p = path.to_path_buf();
        for n in names {
            p.push(n.to_string_lossy().as_ref());
        }
        p.push(leaf.to_string_lossy().as_ref());
        p
    };
    loop {
        match next_entry(&cur, &kept, cur_id).map_err(|e| err(&where_(&names, c""), e))? {
            Some((name, ft)) if ft != FileType::Directory && ft != FileType::Unknown => {
                match rustix::fs::unlinkat(&cur, name.as_c_str(), AtFlags::empty()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        return Err(err(&where_(&names, &name), e));
                    }
                }
            }
            Some((name, _)) => {
                // A directory (or an entry of unknown type): empty ones go at once.
                match rustix::fs::unlinkat(&cur, name.as_c_str(), AtFlags::REMOVEDIR) {
                    Ok(()) => {
                        removed += 1;
                        continue;
                    }
                    Err(Errno::NOTDIR) => {
                        rustix::fs::unlinkat(&cur, name.as_c_str(), AtFlags::empty())
                            .map_err(|e| err(&where_(&names, &name), e))?;
                        removed += 1;
                        continue;
                    }
                    Err(Errno::NOTEMPTY) | Err(Errno::EXIST) | Err(Errno::BUSY) => {}
                    Err(e) => return Err(err(&where_(&names, &name), e)),
                }
                let child = open_dir(&cur, &name).map_err(|e| err(&where_(&names, &name), e))?;
                let child_id = id(&child).map_err(|e| err(&where_(&names, &name), e))?;
                if child_id.0 != dev {
                    left.push(format!(
                        "{} (another file system)",
                        where_(&names, &name).display()
                    ));
                    kept.push((cur_id.0, child_id.1));
                    continue;
                }
                names.push(name);
                above.push(cur_id);
                cur = child;
                cur_id = child_id;
            }
            None => {
                // `cur` is as empty as it gets: go up and remove it.
                let (Some(name), Some(parent_id)) = (names.pop(), above.pop()) else {
                    break;
                };
                let parent = open_dir(&cur, c"..").map_err(|e| err(&where_(&names, c".."), e))?;
                if id(&parent).ok() != Some(parent_id) {
                    return Err(err(
                        &where_(&names, &name),
                        "the tree changed while it was removed (a directory was moved)",
                    ));
                }
                match rustix::fs::unlinkat(&parent, name.as_c_str(), AtFlags::REMOVEDIR) {
                    Ok(()) => removed += 1,
                    Err(Errno::NOTEMPTY) | Err(Errno::BUSY) => {
                        kept.push((parent_id.0, cur_id.1));
                    }
                    Err(e) => return Err(err(&where_(&names, &name), e)),
                }
                cur = parent;
                cur_id = parent_id;
            }
        }
    }
    if !left.is_empty() {
        return Err(err(
            path,
            format!(
                "removed {removed} entries; left what lies on another file system: {}",
                left.join(", ")
            ),
        ));
    }
    std::fs::remove_dir(path).map_err(|e| err(path, e))?;
    Ok(removed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_chain_goes_with_two_fds_and_no_recursion() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("root");
        std::fs::create_dir(&top).unwrap();
        // 5000 levels through dirfds (a path that long would pass PATH_MAX).
        let mut fd = rustix::fs::open(&top, OFlags::DIRECTORY, Mode::empty()).unwrap();
        for i in 0..5000 {
            rustix::fs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).unwrap();
            if i % 100 == 0 {
                std::fs::write(
                    format!("/proc/self/fd/{}/f", {
                        use std::os::fd::AsRawFd;
                        fd.as_raw_fd()
                    }),
                    "x",
                )
                .unwrap();
            }
            fd = open_dir(&fd, c"d").unwrap();
        }
        drop(fd);
        // Run on a small stack: a recursive removal would overflow it.
        let top2 = top.clone();
        let n = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&top2))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(n, 5000 + 50 + 1);
        assert!(!top.exists());
    }

    #[test]
    fn symlinks_are_removed_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        let top = t.path().join("root");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("a/b/link")).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("toplink")).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert!(outside.join("keep").exists());
        // A symlink given as the tree is removed, its target kept.
        std::os::unix::fs::symlink(&outside, t.path().join("l")).unwrap();
        remove_tree(&t.path().join("l")).unwrap();
        assert!(outside.join("keep").exists());
        assert_eq!(remove_tree(&t.path().join("nothing")).unwrap(), 0);
    }
}
