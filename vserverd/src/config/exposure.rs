//! Whether host users can reach a guest's files. Guest root can make setuid-root and
//! file-capability binaries in its own tree; a host user who can walk down to them runs them
//! as root. util-vserver's answer was the barrier: the directory above the guest roots is
//! mode 000 (the daemon makes its own vdir base so, guest/barrier.rs), so only root passes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether the directory `m` lets users other than root search it.
fn searchable_by_others(m: &std::fs::Metadata) -> bool {
    let mode = m.mode();
    mode & 0o001 != 0 || (mode & 0o010 != 0 && m.gid() != 0)
}

/// The directory just above `path` when every directory from `/` down to it lets non-root
/// users through, so `path` itself is reachable by host users; None when one of them stops
/// them (or cannot be read).
pub fn reachable_parent(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    for dir in parent.ancestors() {
        let m = std::fs::metadata(dir).ok()?;
        if !searchable_by_others(&m) {
            return None;
        }
    }
    Some(parent.to_path_buf())
}

/// The warning `check` gives for a guest root that host users can reach.
pub fn root_warning(vdir: &Path) -> Option<String> {
    let parent = reachable_parent(vdir)?;
    Some(format!(
        "host users can reach the guest root {}: a setuid file its root plants there runs as \
         root for them; make {} mode 000 (util-vserver's barrier)",
        vdir.display(),
        parent.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_mode_000_parent_is_a_barrier() {
        let t = tempfile::tempdir().unwrap();
        // Above the tempdir (/tmp) anyone may pass; the tempdir itself decides.
        let base = t.path().join("base");
        std::fs::create_dir_all(base.join("g")).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(reachable_parent(&base.join("g")), Some(base.clone()));
        assert!(root_warning(&base.join("g")).unwrap().contains("mode 000"));
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(reachable_parent(&base.join("g")), None);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(reachable_parent(&base.join("g")), None);
    }
}
