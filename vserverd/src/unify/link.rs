//! Hard-link unification: on a file system without reflinks (ext4) where the running kernel
//! breaks copy-on-write links (kernel-patch/0002, CONFIG_COWLINK), identical files of stopped
//! guests become one inode marked `trusted.cowlink`; the first write, truncate or attribute
//! change by path through any of its names gives that name a private copy (docs/unify.md).
//!
//! The kernel does not compare anything here (unlike the dedupe ioctl), so this step does:
//! each destination is opened beneath its guest root (the hostile-tree rules of the walk),
//! checked to be the inode the walk saw, compared byte for byte and extended attribute for
//! extended attribute with the source, and only then replaced, one name at a time: a link of
//! the source under a temporary name in the same folder, renamed over the name. rename(2)
//! replaces a name atomically, so a SIGKILL at any moment leaves every name with its old
//! content or the source's identical one (and at worst a temporary name, removed by the next
//! run).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, XattrFlags};

use super::plan::{Group, Inode};
use super::walk;
use crate::isolate::kfeatures::COWLINK_XATTR;
use crate::sys::fs as sysfs;

/// Temporary names start with this; the next link-mode run removes leftovers (a second
/// name of a marked inode: only unify makes those under this prefix).
pub const TMP_PREFIX: &str = ".vserverd-unify.";

/// What linking one group did.
#[derive(Debug, Default)]
pub struct Linked {
    /// Destinations all of whose names now point at the source.
    pub done: Vec<usize>,
    pub bytes: u64,
    /// Destinations that differ now, or changed since the walk (the next run looks again).
    pub changed: u64,
    /// Destinations left alone on purpose, with the reason (project ids, xattrs).
    pub left_alone: Vec<String>,
    /// The source's ctime after marking and linking (for the hash store), if it was reached.
    pub source_ctime: Option<i128>,
}

/// A file's extended attributes, sorted, without the cowlink mark.
fn xattrs(fd: &OwnedFd) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let n = rustix::fs::flistxattr_query(fd)?;
    let mut names = vec![0u8; n];
    let n = rustix::fs::flistxattr(fd, &mut names[..])?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name == COWLINK_XATTR.as_bytes() {
            continue;
        }
        let cname = CString::new(name).expect("split on NUL");
        let len = rustix::fs::fgetxattr_query(fd, cname.as_c_str())?;
        let mut v = vec![0u8; len];
        let len = rustix::fs::fgetxattr(fd, cname.as_c_str(), &mut v[..])?;
        v.truncate(len);
        out.push((name.to_vec(), v));
    }
    out.sort();
    Ok(out)
}

/// Whether the two open files have the same `size` bytes.
fn same_bytes(a: &OwnedFd, b: &OwnedFd, size: u64, buf: &mut [u8]) -> std::io::Result<bool> {
    let half = buf.len() / 2;
    let (ba, bb) = buf.split_at_mut(half);
    let mut off = 0u64;
    while off < size {
        let want = (size - off).min(half as u64) as usize;
        let na = read_full(a, &mut ba[..want], off)?;
        let nb = read_full(b, &mut bb[..want], off)?;
        if na != want || nb != want || ba[..want] != bb[..want] {
            return Ok(false);
        }
        off += want as u64;
    }
    // Nothing past the end either (a file grown since the walk).
    Ok(read_full(b, &mut bb[..1], size)? == 0 && read_full(a, &mut ba[..1], size)? == 0)
}

fn read_full(fd: &OwnedFd, buf: &mut [u8], mut off: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(fd, &mut buf[got..], off) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                off += n as u64;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

fn marked(fd: &OwnedFd) -> std::io::Result<bool> {
    match rustix::fs::fgetxattr_query(fd, COWLINK_XATTR) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NODATA) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Marks the source, through its fd: by path, setting an attribute on a marked shared file
/// would itself break the link (the daemon's CAP_SYS_ADMIN lets the fd call through).
fn mark(fd: &OwnedFd) -> std::io::Result<()> {
    if !marked(fd)? {
        rustix::fs::fsetxattr(fd, COWLINK_XATTR, b"1", XattrFlags::empty())?;
    }
    Ok(())
}

/// The folder holding `rel` (opened beneath `root`) and the name in it.
fn parent_of(root: &OwnedFd, rel: &Path) -> std::io::Result<(OwnedFd, CString)> {
    let name = rel
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => sysfs::open_beneath(root.as_fd(), p, true)?,
        _ => sysfs::open_beneath(root.as_fd(), Path::new("."), true)?,
    };
    Ok((dir, name))
}

/// A temporary name not taken yet in this daemon's life (the pid and a counter; a name that
/// exists anyway makes the link fail with EEXIST and the next number is tried).
fn tmp_name() -> CString {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    CString::new(format!("{TMP_PREFIX}{}.{n}", std::process::id())).expect("no NUL")
}

/// What happened to one name.
enum Name {
    Linked,
    /// It is not the inode the walk saw any more.
    Changed,
    /// Different project ids (ext4 project quotas): EXDEV.
    OtherProject,
}

/// Replaces the name `rel` (beneath `root`), which must still be inode `dest`, by a hard link
/// to `src`: link under a temporary name, check, rename over. `ctime` is the destination's
/// ctime as expected now: the walk's, then what replacing its earlier names left (each
/// rename drops a link, which changes the ctime).
fn replace_name(
    root: &OwnedFd,
    rel: &Path,
    dest: &Inode,
    dest_fd: &OwnedFd,
    src: &OwnedFd,
    ctime: &mut i128,
) -> std::io::Result<Name> {
    let (dir, name) = parent_of(root, rel)?;
    let st = sysfs::lstat_at(&dir, &name)?;
    if st.st_dev != dest.dev || st.st_ino != dest.ino {
        return Ok(Name::Changed);
    }
    let mut tmp = tmp_name();
    let mut tries = 0;
    loop {
        match rustix::fs::linkat(src, c"", &dir, tmp.as_c_str(), AtFlags::EMPTY_PATH) {
            Ok(()) => break,
            Err(rustix::io::Errno::EXIST) if tries < 8 => {
                tries += 1;
                tmp = tmp_name();
            }
            Err(rustix::io::Errno::XDEV) => return Ok(Name::OtherProject),
            Err(e) => return Err(e.into()),
        }
    }
    crate::fault::point("unify.link").map_err(|e| std::io::Error::other(e.to_string()))?;
    // The destination unchanged since it was compared (a host process writing into a stopped
    // guest's tree meanwhile keeps its file).
    let now = sysfs::fstat(dest_fd)?;
    let unchanged = walk::ns(now.st_mtime, now.st_mtime_nsec as u64) == dest.mtime_ns
        && walk::ns(now.st_ctime, now.st_ctime_nsec as u64) == *ctime
        && now.st_size as u64 == dest.size;
    let st = sysfs::lstat_at(&dir, &name)?;
    if !unchanged || st.st_dev != dest.dev || st.st_ino != dest.ino {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_c_str(), AtFlags::empty());
        return Ok(Name::Changed);
    }
    if let Err(e) = rustix::fs::renameat(&dir, tmp.as_c_str(), &dir, name.as_c_str()) {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_c_str(), AtFlags::empty());
        return Err(e.into());
    }
    let after = sysfs::fstat(dest_fd)?;
    *ctime = walk::ns(after.st_ctime, after.st_ctime_nsec as u64);
    Ok(Name::Linked)
}

/// Links one group's destinations (every name of each) to its source.
#[allow(clippy::too_many_arguments)]
pub fn link_group(
    roots: &[OwnedFd],
    inodes: &[Inode],
    extra: &HashMap<(u64, u64), Vec<(u16, PathBuf)>>,
    g: &Group,
    reopen: &dyn Fn(&Inode) -> Result<OwnedFd, String>,
    at: &dyn Fn(u16, &Path) -> String,
    errors: &dyn Fn(String),
    buf: &mut [u8],
) -> Linked {
    let mut out = Linked::default();
    let src_i = &inodes[g.source];
    let src = match reopen(src_i) {
        Ok(fd) => fd,
        Err(e) => {
            if !e.starts_with("changed") {
                errors(format!("{}: {e}", at(src_i.guest, &src_i.rel)));
            }
            out.changed += 1;
            return out;
        }
    };
    let src_x = match xattrs(&src) {
        Ok(x) => x,
        Err(e) => {
            errors(format!("{}: xattrs: {e}", at(src_i.guest, &src_i.rel)));
            return out;
        }
    };
    let mut marked_yet = false;
    for &k in &g.dests {
        let d = &inodes[k];
        let here = at(d.guest, &d.rel);
        let fd = match reopen(d) {
            Ok(fd) => fd,
            Err(e) => {
                if !e.starts_with("changed") {
                    errors(format!("{here}: {e}"));
                }
                out.changed += 1;
                continue;
            }
        };
        match xattrs(&fd) {
            Ok(x) if x == src_x => {}
            Ok(_) => {
                out.left_alone.push(format!(
                    "{here}: its extended attributes differ from {}'s",
                    at(src_i.guest, &src_i.rel)
                ));
                continue;
            }
            Err(e) => {
                errors(format!("{here}: xattrs: {e}"));
                continue;
            }
        }
        match same_bytes(&src, &fd, src_i.size, buf) {
            Ok(true) => {}
            Ok(false) => {
                out.changed += 1;
                continue;
            }
            Err(e) => {
                errors(format!("{here}: comparing: {e}"));
                continue;
            }
        }
        if !marked_yet {
            if let Err(e) = mark(&src) {
                errors(format!(
                    "{}: marking {COWLINK_XATTR}: {e}",
                    at(src_i.guest, &src_i.rel)
                ));
                return out;
            }
            marked_yet = true;
        }
        let names = std::iter::once((d.guest, d.rel.clone()))
            .chain(extra.get(&d.id()).into_iter().flatten().cloned());
        let mut all = true;
        let mut ctime = d.ctime_ns;
        for (guest, rel) in names {
            match replace_name(&roots[guest as usize], &rel, d, &fd, &src, &mut ctime) {
                Ok(Name::Linked) => {}
                Ok(Name::Changed) => {
                    all = false;
                    out.changed += 1;
                }
                Ok(Name::OtherProject) => {
                    all = false;
                    out.left_alone.push(format!(
                        "{}: another project id than {} (ext4 project quotas: links across \
                         projects fail with EXDEV; the disk limit wins)",
                        at(guest, &rel),
                        at(src_i.guest, &src_i.rel)
                    ));
                    break;
                }
                Err(e) => {
                    all = false;
                    errors(format!("{}: linking: {e}", at(guest, &rel)));
                }
            }
        }
        if all {
            out.done.push(k);
            out.bytes += d.size;
        }
    }
    if marked_yet {
        out.source_ctime = sysfs::fstat(&src)
            .ok()
            .map(|st| walk::ns(st.st_ctime, st.st_ctime_nsec));
    }
    out
}

/// Whether a walked name is a temporary name of an earlier, interrupted run: our prefix on a
/// second name of a marked inode (a guest cannot set the mark).
pub fn leftover(root: &OwnedFd, rel: &Path, nlink: u64) -> bool {
    let is_tmp = rel
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(TMP_PREFIX.as_bytes()));
    is_tmp
        && nlink > 1
        && sysfs::open_beneath(root.as_fd(), rel, false)
            .and_then(|fd| marked(&fd))
            .unwrap_or(false)
}

/// Removes such a leftover name.
pub fn remove(root: &OwnedFd, rel: &Path) -> std::io::Result<()> {
    let (dir, name) = parent_of(root, rel)?;
    rustix::fs::unlinkat(&dir, name.as_c_str(), AtFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_compared_to_the_end_and_past_it() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, &data).unwrap();
        let mut other = data.clone();
        other[299_999] ^= 1;
        std::fs::write(&c, &other).unwrap();
        let open = |p: &Path| {
            walk::open_root(t.path()).and_then(|r| {
                sysfs::open_beneath(r.as_fd(), Path::new(p.file_name().unwrap()), false)
            })
        };
        let (fa, fb, fc) = (open(&a).unwrap(), open(&b).unwrap(), open(&c).unwrap());
        let mut buf = vec![0u8; 64 << 10];
        assert!(same_bytes(&fa, &fb, data.len() as u64, &mut buf).unwrap());
        assert!(!same_bytes(&fa, &fc, data.len() as u64, &mut buf).unwrap());
        // b grew after the walk: not the same any more.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&b)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
            .unwrap();
        assert!(!same_bytes(&fa, &fb, data.len() as u64, &mut buf).unwrap());
    }

    #[test]
    fn user_xattrs_are_part_of_the_comparison() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), b"x").unwrap();
        let r = walk::open_root(t.path()).unwrap();
        let fd = sysfs::open_beneath(r.as_fd(), Path::new("a"), false).unwrap();
        let before = xattrs(&fd).unwrap();
        if rustix::fs::fsetxattr(&fd, "user.t", b"v", XattrFlags::empty()).is_err() {
            return; // a file system without user xattrs (tmpfs before 6.6)
        }
        let after = xattrs(&fd).unwrap();
        assert_ne!(before, after);
        assert!(after.contains(&(b"user.t".to_vec(), b"v".to_vec())));
    }
}
