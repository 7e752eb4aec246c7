//! Walking a guest's tree, which the guest controls: every directory is opened one name at a
//! time beneath its parent (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS, O_NOFOLLOW), checked with fstat to be a directory on the guest
//! root's file system, and entries are looked at with fstatat(AT_SYMLINK_NOFOLLOW). Symlinks,
//! devices, FIFOs and sockets are never opened; other file systems mounted inside are not
//! entered. What the walk records is checked again when a file is opened (same device and
//! inode, still a regular file), so a guest swapping things meanwhile gains nothing.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::exclude::{Rules, Verdict};
use crate::sys::fs as sysfs;

/// Directories deeper than this are not entered (a guest can nest directories to exhaust
/// the daemon's fds; real trees stay far below).
pub const MAX_DEPTH: usize = 256;

/// Files a walk records per guest at most: a guest can make millions of files cheaply, and
/// each costs the daemon memory while a run lasts (~150 bytes). Beyond it the guest's walk
/// stops with an error; real trees stay far below.
pub const MAX_FILES: u64 = 2_000_000;

/// A regular file as the walk saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index of the guest in the run's list.
    pub guest: u16,
    /// Relative to the guest root, without a leading `/`.
    pub rel: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub nlink: u64,
    /// Allocated bytes (st_blocks × 512).
    pub allocated: u64,
    /// st_mode, owner and group: hard-link unification links only files that agree on them.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the walk of one guest found besides its files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Entries (files and directories) an exclude rule kept out.
    pub excluded: u64,
    /// Directories not entered: another file system, too deep, or unreadable.
    pub not_entered: u64,
    /// Symlinks, devices, FIFOs, sockets.
    pub special: u64,
    /// Regular files recorded.
    pub files: u64,
    /// Empty regular files: nothing to share or count, so not recorded.
    pub empty: u64,
    /// The walk stopped at [`MAX_FILES`].
    pub capped: bool,
    /// Errors met (the first few are kept in `errors`).
    pub errors: Vec<String>,
    /// Entries (of any type, empty files too) whose owner or group is 65536 or more: ids a
    /// user-namespace guest cannot map (`check --deep`), with the first few named.
    pub unmappable: u64,
    pub unmappable_named: Vec<(String, u32, u32)>,
}

pub fn ns(sec: i64, nsec: u64) -> i128 {
    sec as i128 * 1_000_000_000 + nsec as i128
}

/// Opens a guest root (a path the admin configured, so it may be reached through symlinks
/// on the host side) as a directory.
pub fn open_root(vdir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        vdir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Walks the tree under `root` (an fd from [`open_root`]), calling `file` for every regular
/// file the rules include.
pub fn walk(
    guest: u16,
    root: &OwnedFd,
    rules: &Rules,
    file: &mut dyn FnMut(Seen),
) -> std::io::Result<Counts> {
    let st = sysfs::fstat(root)?;
    let mut counts = Counts::default();
    let mut rel = PathBuf::new();
    dir(
        guest,
        root,
        st.st_dev,
        &mut rel,
        0,
        rules,
        file,
        &mut counts,
    );
    Ok(counts)
}

fn note(counts: &mut Counts, msg: String) {
    if counts.errors.len() < 20 {
        counts.errors.push(msg);
    }
}

#[allow(clippy::too_many_arguments)]
fn dir(
    guest: u16,
    fd: &OwnedFd,
    dev: u64,
    rel: &mut PathBuf,
    depth: usize,
    rules: &Rules,
    file: &mut dyn FnMut(Seen),
    counts: &mut Counts,
) {
    if counts.capped {
        return;
    }
    let mut entries = match rustix::fs::Dir::read_from(fd) {
        Ok(d) => d,
        Err(e) => {
            counts.not_entered += 1;
            note(counts, format!("/{}: cannot read: {e}", rel.display()));
            return;
        }
    };
    // Names first, then recursion: one fd open per level, not one per entry.
    let mut subdirs: Vec<std::ffi::CString> = Vec::new();
    while let Some(ent) = entries.read() {
        let ent = match ent {
            Ok(e) => e,
            Err(e) => {
                note(counts, format!("/{}: reading: {e}", rel.display()));
                break;
            }
        };
        let name = ent.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let path = rel.join(OsStr::from_bytes(bytes));
        let guest_path = format!("/{}", path.display());
        match rules.verdict(&guest_path) {
            Verdict::Include => {}
            Verdict::Exclude | Verdict::Skip => {
                counts.excluded += 1;
                continue;
            }
        }
        let st = match sysfs::lstat_at(fd, name) {
            Ok(st) => st,
            Err(e) => {
                note(counts, format!("{guest_path}: {e}"));
                continue;
            }
        };
        if st.st_uid >= crate::guest::idrange::RANGE || st.st_gid >= crate::guest::idrange::RANGE {
            counts.unmappable += 1;
            if counts.unmappable_named.len() < 5 {
                counts
                    .unmappable_named
                    .push((guest_path.clone(), st.st_uid, st.st_gid));
            }
        }
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                if st.st_dev != dev {
                    counts.not_entered += 1;
                    continue;
                }
                if st.st_size == 0 {
                    counts.empty += 1;
                    continue;
                }
                if counts.files >= MAX_FILES {
                    counts.capped = true;
                    note(
                        counts,
                        format!("more than {MAX_FILES} files: the rest of the tree was not walked"),
                    );
                    return;
                }
                counts.files += 1;
                file(Seen {
                    guest,
                    rel: path,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    size: st.st_size as u64,
                    mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as u64),
                    ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as u64),
                    nlink: st.st_nlink,
                    allocated: st.st_blocks as u64 * 512,
                    mode: st.st_mode,
                    uid: st.st_uid,
                    gid: st.st_gid,
                });
            }
            FileType::Directory => subdirs.push(name.to_owned()),
            _ => counts.special += 1,
        }
    }
    drop(entries);
    for name in subdirs {
        let os = OsStr::from_bytes(name.to_bytes());
        rel.push(os);
        if depth + 1 >= MAX_DEPTH {
            counts.not_entered += 1;
            note(
                counts,
                format!("/{}: deeper than {MAX_DEPTH} levels", rel.display()),
            );
            rel.pop();
            continue;
        }
        match sysfs::open_beneath(fd.as_fd(), Path::new(os), true) {
            Ok(sub) => match sysfs::fstat(&sub) {
                // Another file system (a mount inside the tree) is not this guest's data.
                Ok(st) if st.st_dev == dev => {
                    dir(guest, &sub, dev, rel, depth + 1, rules, file, counts);
                }
                Ok(_) => counts.not_entered += 1,
                Err(e) => note(counts, format!("/{}: {e}", rel.display())),
            },
            Err(e) => {
                counts.not_entered += 1;
                note(counts, format!("/{}: cannot open: {e}", rel.display()));
            }
        }
        rel.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk on a tree a guest could have made: symlinks (to files, to folders, out of the
    /// tree) are not followed, a FIFO is not opened (the walk would hang), excluded folders
    /// are not entered, empty files are not recorded.
    #[test]
    fn a_hostile_tree_is_walked_without_following_or_opening_anything_but_folders() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), b"binary").unwrap();
        std::fs::write(r.join("usr/empty"), b"").unwrap();
        std::fs::write(r.join("var/log/syslog"), b"log").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("usr/passwd")).unwrap();
        std::os::unix::fs::symlink("/", r.join("usr/host")).unwrap();
        std::os::unix::fs::symlink("bin", r.join("usr/bin2")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("usr/fifo"),
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let rules = super::super::exclude::parse("/var\n", Path::new("x")).unwrap();
        let root = open_root(r).unwrap();
        let mut seen = Vec::new();
        let c = walk(3, &root, &rules, &mut |f| seen.push(f)).unwrap();
        let rels: Vec<String> = seen.iter().map(|s| s.rel.display().to_string()).collect();
        assert_eq!(rels, ["usr/bin/tool"]);
        assert_eq!(seen[0].guest, 3);
        assert_eq!(seen[0].size, 6);
        assert_eq!(c.excluded, 1, "/var");
        assert_eq!(c.special, 4, "three symlinks and a FIFO");
        assert_eq!(c.empty, 1);
        assert_eq!(c.files, 1);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
    }
}
