//! Who may write a config tree. Everything in it is applied or run as root (hook scripts run
//! as uid 0, cgroup files set another guest's limits, `vdir` chooses what gets mounted), so a
//! user who can write one file of it is root on the host. As sshd does with its own files, a
//! tree with a file or folder that is not the daemon's user's (root's), or that users other
//! than root can write, is refused — naming the first such path.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{Code, ConfigError};

/// Links of a guest's tree whose targets are not config (the guest root, run file, cache).
const NOT_CONFIG: &[&str] = &["vdir", "run", "cache"];

/// How deep the walk goes (util-vserver's deepest folders are a few levels down).
const MAX_DEPTH: usize = 12;

fn problem(m: &std::fs::Metadata, owner: u32, is_link: bool) -> Option<String> {
    if m.uid() != owner {
        return Some(format!(
            "owned by uid {}, not {}: config files are applied and run as root, so only root \
             may write them (refused, as sshd refuses such files)",
            m.uid(),
            if owner == 0 {
                "root".into()
            } else {
                format!("uid {owner}")
            }
        ));
    }
    if is_link {
        return None;
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && m.gid() != 0) {
        return Some(format!(
            "writable by users other than root (mode {mode:04o}): refused (chmod go-w)"
        ));
    }
    None
}

/// Checks `dir` (a guest's config folder or .defaults) and everything below it, following
/// symlinks to config elsewhere (a shared interface folder), not those in NOT_CONFIG at its
/// top. `owner` is the daemon's uid (root; tests run as themselves).
pub fn check_tree(dir: &Path, owner: u32) -> Result<(), ConfigError> {
    let refuse = |p: &Path, msg: String| Err(ConfigError::file(Code::TreeUnsafe, p, msg));
    let Ok(top) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if let Some(msg) = problem(&top, owner, false) {
        return refuse(dir, msg);
    }
    let mut seen: Vec<(u64, u64)> = vec![(top.dev(), top.ino())];
    let mut todo: Vec<(PathBuf, usize)> = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(lm) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let is_link = lm.file_type().is_symlink();
            if let Some(msg) = problem(&lm, owner, is_link) {
                return refuse(&p, msg);
            }
            if is_link
                && depth == 0
                && NOT_CONFIG.contains(&e.file_name().to_string_lossy().as_ref())
            {
                continue;
            }
            // What the loader reads: a link's target, checked as if it were here.
            let m = if is_link {
                match std::fs::metadata(&p) {
                    Ok(m) => {
                        if let Some(msg) = problem(&m, owner, false) {
                            return refuse(&p, format!("its target is {msg}"));
                        }
                        m
                    }
                    Err(_) => continue,
                }
            } else {
                lm
            };
            if m.is_dir() && depth < MAX_DEPTH && !seen.contains(&(m.dev(), m.ino())) {
                seen.push((m.dev(), m.ino()));
                todo.push((p, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn a_world_writable_file_or_foreign_owner_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("g");
        std::fs::create_dir_all(g.join("scripts")).unwrap();
        std::fs::write(g.join("context"), "42\n").unwrap();
        std::fs::write(g.join("scripts/pre-start"), "#!/bin/sh\n").unwrap();
        assert!(check_tree(&g, me()).is_ok());
        std::fs::set_permissions(
            g.join("scripts/pre-start"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = check_tree(&g, me()).unwrap_err();
        assert!(e.file.ends_with("scripts/pre-start"), "{e}");
        assert!(e.message.contains("mode 0777"), "{e}");
        std::fs::set_permissions(
            g.join("scripts/pre-start"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // Another owner (as the daemon sees it: a uid that is not its own).
        let e = check_tree(&g, me() + 1).unwrap_err();
        assert!(e.message.contains("owned by uid"), "{e}");
    }

    #[test]
    fn linked_config_is_checked_and_the_guest_root_is_not() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("g");
        let shared = t.path().join("shared-if");
        let root = t.path().join("root");
        std::fs::create_dir_all(g.join("interfaces")).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(shared.join("ip"), "10.0.0.1\n").unwrap();
        std::os::unix::fs::symlink(&shared, g.join("interfaces/0")).unwrap();
        std::os::unix::fs::symlink(&root, g.join("vdir")).unwrap();
        // The guest root's own files are the guest's business.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_tree(&g, me()).is_ok());
        std::fs::set_permissions(shared.join("ip"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let e = check_tree(&g, me()).unwrap_err();
        assert!(e.file.ends_with("interfaces/0/ip"), "{e}");
    }
}
