//! Changing a guest's limits: live (SetLimits, or an edited config tree the watcher saw) and,
//! with persist, in its config tree.

use std::path::Path;
use std::sync::Arc;

use proto::{Limits, ManagerError};

use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::isolate::cgroup::GuestCgroup;
use crate::isolate::limits;

/// Writes `files` into CFG/cgroup/. CFG/cgroup replaces .defaults/cgroup as a whole, so a
/// guest without its own folder gets a copy of the defaults' first.
fn persist(cfg: &Path, defaults: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    let dir = cfg.join("cgroup");
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        if let Ok(rd) = std::fs::read_dir(defaults.join("cgroup")) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    std::fs::copy(e.path(), dir.join(e.file_name()))?;
                }
            }
        }
    }
    for (f, v) in files {
        // Atomic, so the watcher never reads half a value.
        let tmp = dir.join(format!(".{f}.tmp"));
        std::fs::write(&tmp, format!("{v}\n"))?;
        std::fs::rename(&tmp, dir.join(f))?;
    }
    Ok(())
}

pub async fn set(
    d: &Arc<Daemon>,
    name: &str,
    l: Limits,
    persist_too: bool,
) -> Result<Limits, ManagerError> {
    d.check_name(name)?;
    if let Some(c) = l.cpus {
        if !(c > 0.0 && c.is_finite()) {
            return Err(ManagerError::failed(
                name,
                format!("cpus must be a positive number, got {c}"),
            ));
        }
    }
    let files = limits::limit_files(l.memory, l.cpus, l.pids);
    let disk = l.disk_bytes.is_some() || l.disk_inodes.is_some();
    if files.is_empty() && !disk {
        return Err(ManagerError::failed(
            name,
            "no limit given (memory, cpus, pids or disk)",
        ));
    }
    let lock = d.guests.lock(name);
    let _held = lock.lock().await;
    let run = d.guests.running(name);
    if run.is_none() && !persist_too {
        return Err(ManagerError::NotRunning { name: name.into() });
    }
    // What the live limits were, to put back should persisting fail: a set either happens
    // whole or leaves the guest as it was.
    let mut before: Option<(&GuestCgroup, Vec<limits::Knob>)> = None;
    if let (true, Some(run)) = (disk, &run) {
        let (rd, r, (b, i)) = (
            d.opts.run_dir.clone(),
            run.clone(),
            (l.disk_bytes, l.disk_inodes),
        );
        let c = d.load(name).ok().map(|l| l.config);
        tokio::task::spawn_blocking(move || super::disk::set_live(&rd, &r, c.as_ref(), b, i))
            .await
            .map_err(|e| ManagerError::failed(name, e.to_string()))?
            .map_err(|e| ManagerError::failed(name, format!("disk limit: {e}")))?;
    }
    if let (false, Some(run)) = (files.is_empty(), &run) {
        let cg = &run.state.cgroup;
        let v1 = files
            .iter()
            .map(|(f, v)| (f.clone(), v.clone(), format!("SetLimits {f}")))
            .collect();
        let mut knobs =
            limits::lower(v1, &|c| cg.flavor_of(c)).map_err(|e| ManagerError::failed(name, e))?;
        // v2's memory.high follows the hard limit where it did (limits::high_follows).
        if let (Some(m), Some(limits::Flavor::V2)) = (l.memory, cg.flavor_of("memory")) {
            if let (Some(max), Some(high)) = (cg.read("memory.max"), cg.read("memory.high")) {
                if let Some(v) = limits::high_follows(m, &max, &high) {
                    knobs.push(limits::high_knob(v));
                }
            }
        }
        let old: Vec<limits::Knob> = knobs
            .iter()
            .filter_map(|k| {
                let value = cg.read(&k.file)?.trim().to_string();
                Some(limits::Knob { value, ..k.clone() })
            })
            .collect();
        cg.apply(&knobs).map_err(|e| {
            crate::error::Cause::from(e)
                .at("set.limits")
                .into_manager(name)
        })?;
        before = Some((cg, old));
    }
    if persist_too {
        let cfg = d.opts.config_root.join(name);
        let written = crate::fault::point("set.applied")
            .map_err(std::io::Error::other)
            .and_then(|()| match files.is_empty() {
                true => Ok(()),
                false => persist(&cfg, &d.opts.config_root.join(".defaults"), &files),
            })
            .and_then(|()| match disk {
                false => Ok(()),
                true => {
                    let vdir = d.load(name).map(|l| l.config.vdir).unwrap_or_default();
                    super::disk::persist(&cfg, &vdir, l.disk_bytes, l.disk_inodes)
                }
            });
        if let Err(e) = written {
            if let Some((cg, old)) = before {
                let _ = cg.apply(&old);
            }
            return Err(ManagerError::failed(
                name,
                format!(
                    "writing {}/cgroup: {e} (the live limits were put back)",
                    cfg.display()
                ),
            ));
        }
    }
    Ok(l)
}

/// The config with everything that can change live (limits) taken out: two configs equal under
/// this need no restart between them.
pub fn without_limits(c: &GuestConfig) -> GuestConfig {
    let mut c = without_orchestration(c);
    c.cgroup.settings.clear();
    c.rlimits.clear();
    c.sched.clear();
    c.cpuset = None;
    // Changed live by `set --disk`, and a hand edit of the totals too (guest/disk.rs
    // apply_edit; entries added or moved need a restart, which it says).
    c.dlimits.clear();
    c
}

/// `c` without what only the orchestrator reads (marks, dependencies, `disabled`): changing
/// those changes nothing in a running guest, so it needs no restart.
pub fn without_orchestration(c: &GuestConfig) -> GuestConfig {
    let mut c = c.clone();
    c.init.mark.clear();
    c.init.depends.clear();
    c.disabled = false;
    c
}

/// Applies a running guest's changed limits (from its edited config tree) live.
pub fn apply_live(run: &super::Running, c: &GuestConfig) -> Result<(), String> {
    let page = crate::sys::process::page_size().max(4096) as u64;
    let cg = &run.state.cgroup;
    let knobs = limits::plan(c, page, &|ctl| cg.flavor_of(ctl))?;
    cg.apply(&knobs).map_err(|e| e.to_string())
}
