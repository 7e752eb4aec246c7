//! Looking at a guest's files from the host before it starts: a guest path is resolved the way
//! the guest will see it — symlinks followed inside the guest root, and directories its fstab
//! binds in (a `/usr /usr none bind,ro` line) looked up at their host source. So a guest whose
//! /usr comes from a bind is still recognised as a systemd guest.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::isolate::mount::{parse_options, MountSpec};

/// The guest's bind mounts: (guest target, host source), longest target first.
pub fn binds(mounts: &[MountSpec]) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = mounts
        .iter()
        .filter(|m| parse_options(&m.options).bind)
        .map(|m| {
            (
                format!("/{}", m.target.trim_matches('/')),
                PathBuf::from(&m.source),
            )
        })
        .collect();
    v.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
    v
}

/// Where the guest path `guest` (absolute, no symlinks left) is on the host.
pub fn host_path(vdir: &Path, binds: &[(String, PathBuf)], guest: &str) -> PathBuf {
    for (target, source) in binds {
        if guest == target {
            return source.clone();
        }
        if let Some(rest) = guest.strip_prefix(target.as_str()) {
            if let Some(rest) = rest.strip_prefix('/') {
                return source.join(rest);
            }
        }
    }
    vdir.join(guest.trim_start_matches('/'))
}

/// `guest` with every symlink resolved as inside the guest (absolute links start again at the
/// guest's root; `..` never climbs above it). None on a symlink loop.
pub fn resolve(vdir: &Path, binds: &[(String, PathBuf)], guest: &str) -> Option<String> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = guest.split('/').map(String::from).collect();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = format!(
            "/{}",
            [done.join("/"), part.clone()]
                .join("/")
                .trim_start_matches('/')
        );
        match std::fs::read_link(host_path(vdir, binds, &candidate)) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                let mut next: VecDeque<String> = t.split('/').map(String::from).collect();
                next.extend(todo);
                todo = next;
            }
            Err(_) => done.push(part),
        }
    }
    Some(format!("/{}", done.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_guest_and_through_binds() {
        let t = tempfile::tempdir().unwrap();
        let vdir = t.path().join("guest");
        let usr = t.path().join("host-usr");
        std::fs::create_dir_all(vdir.join("usr")).unwrap();
        std::fs::create_dir_all(usr.join("lib/systemd")).unwrap();
        std::fs::create_dir_all(usr.join("sbin")).unwrap();
        std::fs::write(usr.join("lib/systemd/systemd"), "").unwrap();
        symlink("usr/sbin", vdir.join("sbin")).unwrap();
        symlink("../lib/systemd/systemd", usr.join("sbin/init")).unwrap();
        let binds = vec![("/usr".to_string(), usr.clone())];
        let r = resolve(&vdir, &binds, "/sbin/init").unwrap();
        assert_eq!(r, "/usr/lib/systemd/systemd");
        assert!(host_path(&vdir, &binds, &r).is_file());
        // Without the bind the guest's own (empty) /usr is looked at.
        assert_eq!(resolve(&vdir, &[], "/sbin/init").unwrap(), "/usr/sbin/init");
        // An absolute link and `..` stay inside the guest.
        symlink("/../../etc/passwd", vdir.join("escape")).unwrap();
        assert_eq!(resolve(&vdir, &[], "/escape").unwrap(), "/etc/passwd");
        symlink("loop", vdir.join("loop")).unwrap();
        assert_eq!(resolve(&vdir, &[], "/loop"), None);
    }
}
