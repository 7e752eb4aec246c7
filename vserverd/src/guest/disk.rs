//! A guest's disk limits (dlimits/, disk/): readied and set at start, after the prepre-start
//! hooks as util-vserver's vserver.start did, taken away at stop as its vserver.stop did.

use crate::config::GuestConfig;
use crate::disk::{apply, Applied};

/// The project id a guest's files carry: its `tag`, else its context (util-vserver's default).
pub fn project_id(c: &GuestConfig) -> u32 {
    c.tag.unwrap_or(c.context)
}

/// Readies every dlimits/ entry (nothing set yet). A file system that cannot keep one fails
/// the start: util-vserver's start stopped where vdlimit failed.
pub fn prepare(c: &GuestConfig) -> Result<(Vec<Applied>, Vec<String>), String> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for d in &c.dlimits {
        // util-vserver wrote -1 for both to mean "count, do not limit": nothing to set here
        // (the kernel counts a tree's use without a limit: du shows it).
        if d.space_total == u64::MAX && d.inodes_total == u64::MAX {
            continue;
        }
        let (a, w) = apply::prepare(d, project_id(c)).map_err(|e| format!("dlimits: {e}"))?;
        out.push(a);
        warnings.extend(w);
    }
    Ok((out, warnings))
}

pub fn set(all: &[Applied]) -> Result<(), String> {
    for a in all {
        apply::set_limit(a).map_err(|e| format!("dlimits: {e}"))?;
    }
    Ok(())
}

/// Takes every limit away; failures are logged (a stop goes on).
pub fn clear(name: &str, all: &[Applied]) {
    for a in all {
        if let Err(e) = apply::clear(a) {
            tracing::warn!(guest = name, "taking the disk limit away: {e}");
        }
    }
}

/// One line for a start's progress.
pub fn summary(all: &[Applied]) -> String {
    all.iter()
        .map(|a| {
            let how = match &a.how {
                crate::disk::How::Project { id } => format!("project {id}"),
                crate::disk::How::Qgroup { subvol, .. } => format!("qgroup 0/{subvol}"),
            };
            let lim = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            format!(
                "{} ({how}): {} bytes, {} inodes",
                a.directory.display(),
                lim(a.wanted.bytes),
                lim(a.wanted.inodes)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `vserverctl set --disk SPACE[,INODES]` on a running guest: changes the limit it has, or
/// sets one on its root if it has none (kept in its run state, so stop takes it away).
pub fn set_live(
    run_dir: &std::path::Path,
    run: &super::Running,
    c: Option<&GuestConfig>,
    bytes: Option<u64>,
    inodes: Option<u64>,
) -> Result<(), String> {
    let mut disk = run
        .disk
        .lock()
        .map_err(|_| "the disk limit's lock is poisoned".to_string())?;
    let next = match disk.first() {
        Some(a) => {
            let w = crate::disk::replan(&a.wanted, bytes, inodes, &a.how);
            apply::change(a, &w)?
        }
        None => {
            let Some(c) = c else {
                return Err("its config did not load: no root to limit".into());
            };
            let d = crate::config::resources::Dlimit {
                directory: c.vdir.display().to_string(),
                space_total: bytes.map_or(u64::MAX, |b| b.div_ceil(1024)),
                inodes_total: inodes.unwrap_or(u64::MAX),
                reserved: 0,
            };
            let (a, warnings) = apply::prepare(&d, project_id(c))?;
            for w in warnings {
                tracing::warn!(guest = c.name, "{w}");
            }
            // Named in the run state before it is set: a daemon killed in between leaves a
            // guest whose stop takes it away.
            let mut st = run.state.clone();
            st.disk = vec![a.clone()];
            super::runstate::save(run_dir, &st).map_err(|e| format!("saving run state: {e}"))?;
            apply::set_limit(&a)?;
            a
        }
    };
    let rest: Vec<_> = disk.iter().skip(1).cloned().collect();
    *disk = std::iter::once(next).chain(rest).collect();
    let mut st = run.state.clone();
    st.disk = disk.clone();
    super::runstate::save(run_dir, &st).map_err(|e| format!("saving run state: {e}"))
}

/// A running guest's dlimits/ edited by hand (the watcher saw it): the new totals and reserves
/// are applied live, as `set --disk` applies them, when the entries still name the
/// directories the guest's limits are on; true when a limit changed. Entries added, removed
/// or pointed elsewhere need a restart (Err says so; the caller marks "restart needed").
pub fn apply_edit(
    run_dir: &std::path::Path,
    run: &super::Running,
    c: &GuestConfig,
) -> Result<bool, String> {
    let mut disk = run
        .disk
        .lock()
        .map_err(|_| "the disk limit's lock is poisoned".to_string())?;
    // The entries a start would set (count-only ones set nothing).
    let wanted: Vec<_> = c
        .dlimits
        .iter()
        .filter(|d| !(d.space_total == u64::MAX && d.inodes_total == u64::MAX))
        .collect();
    let same_dirs = wanted.len() == disk.len()
        && wanted
            .iter()
            .zip(disk.iter())
            .all(|(d, a)| std::path::Path::new(&d.directory) == a.directory);
    if !same_dirs {
        return Err(
            "dlimits/ entries were added, removed or point at other directories: a restart              applies them"
                .into(),
        );
    }
    let mut next = Vec::with_capacity(disk.len());
    let mut changed = false;
    for (d, a) in wanted.iter().zip(disk.iter()) {
        let fs = match a.how {
            crate::disk::How::Project { .. } => crate::disk::FsKind::Project("project quota"),
            crate::disk::How::Qgroup { .. } => crate::disk::FsKind::Btrfs,
        };
        let (w, warnings) = crate::disk::plan(d, fs)?;
        for m in warnings {
            tracing::warn!(guest = c.name, "{m}");
        }
        if w == a.wanted {
            next.push(a.clone());
            continue;
        }
        next.push(apply::change(a, &w)?);
        changed = true;
    }
    if changed {
        *disk = next;
        let mut st = run.state.clone();
        st.disk = disk.clone();
        super::runstate::save(run_dir, &st).map_err(|e| format!("saving run state: {e}"))?;
    }
    Ok(changed)
}

/// Writes the new totals into the guest's dlimits/ entry (the first, else a new `0` for its
/// root), as util-vserver's files: space in KiB, -1 for none.
pub fn persist(
    cfg: &std::path::Path,
    vdir: &std::path::Path,
    bytes: Option<u64>,
    inodes: Option<u64>,
) -> std::io::Result<()> {
    let base = cfg.join("dlimits");
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    !e.file_name().to_string_lossy().starts_with('.')
                        && e.path().join("directory").is_file()
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let put = |dir: &std::path::Path, f: &str, v: String| -> std::io::Result<()> {
        let tmp = dir.join(format!(".{f}.tmp"));
        std::fs::write(&tmp, format!("{v}\n"))?;
        std::fs::rename(&tmp, dir.join(f))
    };
    let dir = match names.first() {
        Some(d) => d.clone(),
        None => {
            let d = base.join("0");
            std::fs::create_dir_all(&d)?;
            put(&d, "inodes_total", "-1".into())?;
            put(&d, "space_total", "-1".into())?;
            put(&d, "reserved", "0".into())?;
            put(&d, "directory", vdir.display().to_string())?;
            d
        }
    };
    if let Some(b) = bytes {
        put(&dir, "space_total", b.div_ceil(1024).to_string())?;
    }
    if let Some(i) = inodes {
        put(&dir, "inodes_total", i.to_string())?;
    }
    Ok(())
}
