//! Deleting a guest (util-vserver's `vserver NAME delete`): its root, config tree, and the
//! targets of its `run` and `cache` links. A running guest is stopped first only when asked.
//! Nothing below the root may be a mount point: removing the tree would descend into it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::ManagerError;

use crate::daemon::Daemon;
use crate::error::StepResult;
use crate::guest::progress::Progress;

/// Mount points at or below `dir` in our mount namespace.
fn mounts_below(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &d || m.starts_with(&format!("{d}/")))
        .collect()
}

pub async fn delete(d: &Arc<Daemon>, name: &str, stop: bool) -> Result<(), ManagerError> {
    let c = d.load(name).map(|l| l.config);
    if d.guests.running(name).is_some() {
        if !stop {
            return Err(ManagerError::failed(
                name,
                "the guest runs: stop it first (or delete with --stop)",
            ));
        }
        super::stop::stop(d, name, &Progress::none()).await?;
    }
    let cfg_dir = d.opts.config_root.join(name);
    if !cfg_dir.is_dir() {
        return Err(ManagerError::NoSuchGuest { name: name.into() });
    }
    let lock = d.guests.lock(name);
    let _held = lock.lock().await;
    // The physical root: the vdir link's target (canonical), not the link.
    let root: Option<PathBuf> = c
        .as_ref()
        .ok()
        .map(|c| c.vdir.canonicalize().unwrap_or_else(|_| c.vdir.clone()));
    if let Some(r) = &root {
        let busy = mounts_below(r);
        if !busy.is_empty() {
            return Err(ManagerError::failed(
                name,
                format!("mounted below the guest root: {}", busy.join(", ")),
            ));
        }
        if r == Path::new("/") || r.parent().is_none() {
            return Err(ManagerError::failed(
                name,
                format!("refusing to delete {}", r.display()),
            ));
        }
    }
    let targets: Vec<PathBuf> = root
        .into_iter()
        .chain(c.as_ref().ok().and_then(|c| c.cache.clone()))
        .chain(c.as_ref().ok().and_then(|c| c.run_file.clone()))
        .collect();
    // The guest goes first, at once: its config renamed out of the guests' names. A daemon
    // killed after this leaves `.delete-NAME`, whose parts the next one removes
    // (build::clean_leftovers); never a config whose root is half gone.
    let doomed = d.opts.config_root.join(format!(".delete-{name}"));
    std::fs::rename(&cfg_dir, &doomed)
        .step_doing("delete.rename", || cfg_dir.display().to_string())
        .map_err(|e| e.on(&cfg_dir).into_manager(name))?;
    d.catalog.reload(&d.roots(), name);
    crate::fault::point("delete.renamed").map_err(|e| e.into_manager(name))?;
    // Off the async threads, without recursion (isolate/rmtree.rs): the root is the guest's.
    let all: Vec<PathBuf> = targets.into_iter().chain([doomed]).collect();
    let removed = tokio::task::spawn_blocking(move || {
        for t in &all {
            crate::isolate::rmtree::remove_tree(t)?;
            crate::fault::point("delete.part").map_err(|what| {
                crate::isolate::rmtree::RemoveError {
                    path: t.clone(),
                    what: what.to_string(),
                }
            })?;
        }
        Ok::<(), crate::isolate::rmtree::RemoveError>(())
    })
    .await
    .map_err(|e| ManagerError::failed(name, e.to_string()))?;
    removed.map_err(|e| {
        ManagerError::failed(
            name,
            format!("partly deleted (the rest goes when vserverd next starts): {e}"),
        )
    })?;
    crate::console::remove_logs(&d.opts.run_dir, name);
    super::supervise::forget_reboot(&d.opts.run_dir, name);
    // Its host id range is free again (a guest built later under this name gets a fresh one,
    // perhaps this).
    if let Err(e) = super::idrange::release(&d.opts.state_dir, name) {
        tracing::warn!(guest = name, "user-namespace id range kept: {e}");
    }
    // List at once, not when the watcher's event arrives.
    d.catalog.reload(&d.roots(), name);
    d.guests.emit(name, "deleted", None);
    Ok(())
}

/// What deleting the guest whose config folder is `cfg` removes besides that folder: the
/// target of its `vdir` link (else `default_root`), of its `cache` link and its `run` file.
/// Only links are read, nothing in the guest's tree is followed.
pub fn parts(cfg: &Path, default_root: &Path) -> Vec<PathBuf> {
    let link = |n: &str| std::fs::read_link(cfg.join(n)).ok();
    let mut out = vec![link("vdir").unwrap_or_else(|| default_root.to_path_buf())];
    out.extend(link("cache"));
    out.extend(link("run"));
    out.retain(|p| p.is_absolute() && p.parent().is_some());
    out
}
