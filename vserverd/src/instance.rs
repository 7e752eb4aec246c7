//! One daemon per host state. Two daemons on the same run directory, config root or cgroup
//! prefix would each believe they own the same guests (one would adopt, the other clean up
//! "leftovers" the first is using). Each daemon holds an exclusive flock(2) on its run
//! directory, its config root and its cgroup prefix directory for its whole life; the kernel
//! drops them when it dies, however it dies, so there is nothing stale to clean. A second
//! daemon refuses to start before it touches anything (even the socket).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::isolate::cgroup::Layout;

/// The held locks: dropping it releases them.
pub struct Instance {
    _held: Vec<File>,
}

/// The directory of the cgroup prefix in one hierarchy (the first without cpuset, whose new
/// directories need cpus and mems before they take anything): made if missing, empty.
pub fn prefix_dir(layout: &Layout, prefix: &str) -> Option<PathBuf> {
    let h = layout
        .hierarchies
        .iter()
        .find(|h| !h.controllers.iter().any(|c| c == "cpuset"))?;
    Some(h.mount.join(&h.own).join(prefix))
}

fn lock(dir: &Path, what: &str) -> Result<File, String> {
    let f = File::open(dir).map_err(|e| format!("{what} {}: {e}", dir.display()))?;
    if let Err(e) = crate::sys::fd::lock_exclusive_now(&f) {
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            format!(
                "another vserverd already uses {what} {}: refusing to run beside it",
                dir.display()
            )
        } else {
            format!("locking {what} {}: {e}", dir.display())
        });
    }
    Ok(f)
}

/// Takes the locks, in this order: run directory, config root, cgroup prefix.
pub fn acquire(
    run_dir: &Path,
    config_root: &Path,
    cgroup_prefix: Option<&Path>,
) -> Result<Instance, String> {
    let mut held = vec![lock(run_dir, "the run directory")?];
    if config_root.is_dir() {
        held.push(lock(config_root, "the config root")?);
    }
    if let Some(dir) = cgroup_prefix {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        held.push(lock(dir, "the cgroup prefix")?);
    }
    Ok(Instance { _held: held })
}
