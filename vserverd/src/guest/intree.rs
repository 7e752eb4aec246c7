//! Writing into a guest's root from the host (build, clone). The tree is hostile: every path
//! is resolved with openat2 RESOLVE_IN_ROOT, so its symlinks resolve as they would inside the
//! guest and `..` stops at its root — a write can never land on a host file.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

fn resolve() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The parent folder of `rel` (inside the guest) opened, and the last component.
fn parent<'a>(root: &OwnedFd, rel: &'a str) -> std::io::Result<(OwnedFd, &'a str)> {
    let rel = rel.trim_start_matches('/');
    let (dir, leaf) = rel.rsplit_once('/').unwrap_or((".", rel));
    if leaf.is_empty() || leaf == ".." || leaf == "." {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{rel:?} names no file"),
        ));
    }
    let d = rustix::fs::openat2(
        root,
        if dir.is_empty() { "." } else { dir },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve(),
    )?;
    Ok((d, leaf))
}

/// Writes `content` to the guest's `rel` (created with `mode` if missing, else truncated),
/// as the guest would see the path. The final component must not be a symlink (a planted
/// link is removed first, so the guest gets a plain file).
pub fn write(root: &Path, rel: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
    let r = open_root(root)?;
    let (dir, leaf) = parent(&r, rel)?;
    if rustix::fs::statat(&dir, leaf, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
    }) {
        rustix::fs::unlinkat(&dir, leaf, rustix::fs::AtFlags::empty())?;
    }
    let fd = rustix::fs::openat(
        &dir,
        leaf,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    std::fs::File::from(fd).write_all(content)
}

/// Removes the guest's `rel` if it is there (a symlink itself, never its target).
pub fn remove(root: &Path, rel: &str) -> std::io::Result<bool> {
    let r = open_root(root)?;
    let (dir, leaf) = match parent(&r, rel) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match rustix::fs::unlinkat(&dir, leaf, rustix::fs::AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names in the guest's folder `rel` (empty when it is missing).
pub fn list(root: &Path, rel: &str) -> std::io::Result<Vec<String>> {
    let r = open_root(root)?;
    let d = match rustix::fs::openat2(
        &r,
        rel.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve(),
    ) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut it = rustix::fs::Dir::read_from(&d)?;
    while let Some(e) = it.read() {
        let n = e?.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            out.push(n);
        }
    }
    Ok(out)
}

/// Whether the guest's `rel` exists (as the guest would resolve it).
pub fn exists(root: &Path, rel: &str) -> bool {
    open_root(root).is_ok_and(|r| {
        rustix::fs::openat2(
            &r,
            rel.trim_start_matches('/'),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )
        .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_inside_the_root_whatever_its_symlinks_say() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let host = t.path().join("host-file");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(&host, "host\n").unwrap();
        // A link to a host path, absolute and relative: both resolve inside the root.
        std::os::unix::fs::symlink(&host, root.join("etc/hostname")).unwrap();
        std::os::unix::fs::symlink("../../../../host-file", root.join("etc/machine-id")).unwrap();
        std::os::unix::fs::symlink(t.path(), root.join("up")).unwrap();
        write(&root, "/etc/hostname", b"clone\n", 0o644).unwrap();
        write(&root, "etc/machine-id", b"", 0o444).unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "host\n");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "clone\n"
        );
        // Through a directory link: still inside (the root's own /tmp..., which is missing).
        assert!(write(&root, "up/host-file", b"x", 0o644).is_err());
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "host\n");
        assert!(!remove(&root, "up/host-file").unwrap());
        assert!(host.exists());
        assert!(remove(&root, "etc/hostname").unwrap());
        assert!(exists(&root, "etc/machine-id"));
        assert_eq!(list(&root, "etc").unwrap().len(), 1);
    }
}
