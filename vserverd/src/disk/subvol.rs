//! A new guest root on btrfs is a subvolume of its own: a btrfs disk limit is the limit of a
//! subvolume's qgroup, so only such a root can get one (docs/resources.md, Disk limits).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys::{fs as sysfs, quota};

/// Makes the folder `root` (and its parents; an empty `root` is made again): a btrfs
/// subvolume where the parent is on btrfs, else a plain folder. True when it made a subvolume.
pub fn create_root(root: &Path) -> std::io::Result<bool> {
    let parent = root.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)?;
    let name = root
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = rustix::fs::open(
        parent,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // An empty folder of that name (a build's leftover) is replaced.
    match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    if sysfs::fs_type(&dir)? == sysfs::BTRFS_SUPER_MAGIC {
        let name = CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        quota::btrfs_subvol_create(&dir, &name)?;
        // The subvolume's root folder is 0755 root:root, as a new folder would be under umask
        // 022; a guest root wants the same.
        return Ok(true);
    }
    rustix::fs::mkdirat(&dir, name, rustix::fs::Mode::from_raw_mode(0o755))?;
    Ok(false)
}

/// Whether `dir` is the root folder of a btrfs subvolume.
pub fn is_subvolume(dir: &Path) -> std::io::Result<bool> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(sysfs::fs_type(&fd)? == sysfs::BTRFS_SUPER_MAGIC
        && sysfs::fstat(&fd)?.st_ino == quota::BTRFS_FIRST_FREE_OBJECTID)
}
