//! Marks a tree with a project id: every folder and regular file gets it, folders also the
//! inherit flag, so what is made there later gets it from the kernel. The tree is a guest's
//! (hostile): entered with openat2 beneath its root, no symlink followed, never leaving its
//! file system. Symlinks and device nodes cannot be opened to be marked and stay in project 0
//! (a few inodes the limit does not count).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::sys::fs as sysfs;
use crate::sys::quota;

/// What a marking did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Marked {
    pub inodes: u64,
    /// Folders on another file system (mount points), not entered.
    pub skipped: u64,
}

fn mark(fd: impl AsFd, id: u32, dir: bool) -> std::io::Result<bool> {
    let mut x = quota::fsx_get(&fd)?;
    let want_flags = if dir {
        x.xflags | quota::FS_XFLAG_PROJINHERIT
    } else {
        x.xflags
    };
    if x.projid == id && x.xflags == want_flags {
        return Ok(false);
    }
    x.projid = id;
    x.xflags = want_flags;
    quota::fsx_set(&fd, &x)?;
    Ok(true)
}

/// Whether `root` (an open folder) is marked with `id` already: a tree marked once stays so,
/// since guests cannot change project ids (seccomp) and the kernel refuses renames and links
/// into it from other projects (EXDEV).
pub fn is_marked(root: impl AsFd, id: u32) -> std::io::Result<bool> {
    let x = quota::fsx_get(root)?;
    Ok(x.projid == id && x.xflags & quota::FS_XFLAG_PROJINHERIT != 0)
}

/// Marks everything below `root` (an open folder), the folder itself last: a marking cut
/// short is done again at the next start.
pub fn mark_tree(root: &OwnedFd, id: u32) -> Result<Marked, String> {
    let dev = sysfs::fstat(root).map_err(|e| e.to_string())?.st_dev;
    let mut m = Marked::default();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel.as_path()
        };
        let fd = sysfs::open_beneath(root, here, true)
            .map_err(|e| format!("/{}: {e}", rel.display()))?;
        let mut entries = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| format!("/{}: cannot read: {e}", rel.display()))?;
        while let Some(ent) = entries.read() {
            let ent = ent.map_err(|e| format!("/{}: reading: {e}", rel.display()))?;
            let name = ent.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let path = rel.join(OsStr::from_bytes(bytes));
            let st = match sysfs::lstat_at(&fd, name) {
                Ok(st) => st,
                // Gone meanwhile.
                Err(_) => continue,
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory if st.st_dev == dev => stack.push(path),
                FileType::Directory => m.skipped += 1,
                FileType::RegularFile if st.st_dev == dev => {
                    let f = match sysfs::open_beneath(root, &path, false) {
                        Ok(f) => f,
                        Err(_) => continue,
                    };
                    if mark(&f, id, false).map_err(|e| format!("/{}: {e}", path.display()))? {
                        m.inodes += 1;
                    }
                }
                _ => {}
            }
        }
        if !rel.as_os_str().is_empty()
            && mark(&fd, id, true).map_err(|e| format!("/{}: {e}", rel.display()))?
        {
            m.inodes += 1;
        }
    }
    if mark(root, id, true).map_err(|e| format!("/: {e}"))? {
        m.inodes += 1;
    }
    Ok(m)
}
