//! Unification (util-vserver's vunify and vhashify) on mainline file systems: identical
//! regular files of the guests share their blocks copy-on-write through the kernel's dedupe
//! ioctl, and `du` shows each guest's own and shared space (docs/unify.md).
//!
//! `exclude` (the lists) and `plan` (what to hash and share) are pure; `walk` reads the
//! hostile trees, `store` keeps the hashes between runs, `run` does one run, `du` measures.

pub mod du;
pub mod exclude;
pub mod link;
pub mod plan;
pub mod run;
pub mod store;
pub mod walk;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::ManagerError;

use crate::config::{Code, ConfigError};
use crate::daemon::Daemon;

/// The exclude list of a guest: its own `apps/vunify/exclude`, else the one in `.defaults`,
/// else util-vserver's built-in list (as util-vserver looked them up).
pub fn rules_for(config_dir: &Path, defaults: &Path) -> Result<exclude::Rules, ConfigError> {
    for f in [
        config_dir.join("apps/vunify/exclude"),
        defaults.join("apps/vunify/exclude"),
    ] {
        match std::fs::read(&f) {
            Ok(b) => {
                let text = String::from_utf8(b)
                    .map_err(|_| ConfigError::file(Code::ExcludeSyntax, &f, "not UTF-8 text"))?;
                return exclude::parse(&text, &f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ConfigError::file(Code::FileUnreadable, &f, e.to_string())),
        }
    }
    Ok(exclude::Rules::builtin())
}

/// Which guests a call names: `names`, or every guest with `all`.
fn selection(d: &Daemon, names: Vec<String>, all: bool) -> Result<Vec<String>, ManagerError> {
    if all {
        if !names.is_empty() {
            return Err(ManagerError::failed(
                "",
                "give guest names or all, not both",
            ));
        }
        return Ok(d.guest_names());
    }
    if names.is_empty() {
        return Err(ManagerError::failed("", "name at least one guest (or all)"));
    }
    let mut out: Vec<String> = Vec::new();
    for n in names {
        d.check_name(&n)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// One run at a time: they share the hash store.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Unify call: resolves the guests and their exclude lists, then runs on a blocking
/// thread, sending progress through `tx`.
pub async fn unify(
    d: &Arc<Daemon>,
    names: Vec<String>,
    all: bool,
    dry_run: bool,
    excludes: bool,
    ignore_mtime: bool,
    tx: tokio::sync::mpsc::UnboundedSender<proto::UnifyReply>,
) -> Result<proto::UnifyReport, ManagerError> {
    let names = selection(d, names, all)?;
    let Ok(_one) = RUNNING.try_lock() else {
        return Err(ManagerError::failed(
            "",
            "a unify runs already; try again when it has finished",
        ));
    };
    let roots = d.roots();
    let mut guests = Vec::new();
    for n in &names {
        let c = d.load(n)?.config;
        let rules = if excludes {
            rules_for(&roots.config_root.join(n), &roots.defaults()).map_err(|e| {
                ManagerError::InvalidConfig {
                    file: e.file.display().to_string(),
                    line: e.line,
                    message: e.message,
                    code: Some(e.code.as_str().into()),
                }
            })?
        } else {
            exclude::Rules::none()
        };
        guests.push(run::GuestRoot {
            name: n.clone(),
            vdir: c.vdir.clone(),
            rules,
        });
    }
    let vdirs: Vec<(String, PathBuf)> = guests
        .iter()
        .map(|g| (g.name.clone(), g.vdir.clone()))
        .collect();
    let state_dir = d.opts.state_dir.clone();
    let mode = tokio::task::spawn_blocking(move || {
        run::mode(&vdirs, &|| crate::isolate::kfeatures::cowlink(&state_dir))
    })
    .await
    .map_err(|e| ManagerError::failed("", format!("unify: {e}")))?
    .map_err(|e| ManagerError::failed("", e.0))?;
    // Hard links: a running guest's open files keep the inode a name pointed at, so its
    // writes would land in a file no name shows any more. Stopped guests only, and they stay
    // stopped for the run: their lifecycle locks are held (a start waits for the run).
    let mut held = Vec::new();
    if mode == run::Mode::Link && !dry_run {
        for g in &guests {
            let lock = d.guests.lock(&g.name).try_lock_owned();
            let busy = lock.is_err() || d.guests.running(&g.name).is_some();
            if busy {
                return Err(ManagerError::failed(
                    &g.name,
                    format!(
                        "{} is running (or starting or stopping): on ext4 unify replaces files by \
                         hard links, and a running guest's open files would keep their old inode, \
                         so writes to them would be lost; stop it and unify again (on XFS with \
                         reflinks or btrfs running guests can be unified)",
                        g.name
                    ),
                ));
            }
            held.extend(lock.ok());
        }
    }
    let req = run::Request {
        guests,
        mode,
        ignore_mtime,
        dry_run,
        store: store::Store::path(&d.opts.state_dir),
        alive: d.guest_names(),
    };
    let t = tx.clone();
    let r = tokio::task::spawn_blocking(move || {
        let report = move |step: &str, message: String| {
            tracing::debug!(step, "unify: {message}");
            let _ = t.send(proto::UnifyReply {
                step: step.into(),
                message,
                report: None,
            });
        };
        run::run(&req, &report)
    })
    .await;
    drop(held);
    r.map_err(|e| ManagerError::failed("", format!("unify: {e}")))?
        .map_err(|e| ManagerError::failed("", e.0))
}

/// The Du call: each guest's usage, measured on blocking threads.
pub async fn du(d: &Arc<Daemon>, names: Vec<String>) -> Result<proto::DiskUsageList, ManagerError> {
    let names = selection(d, names, false)?;
    let mut roots: Vec<(String, PathBuf, Option<crate::disk::Applied>)> = Vec::new();
    for n in names {
        let c = d.load(&n)?.config;
        // The limit's figures: a running guest's as set, a stopped one's where they are kept.
        let running = d
            .guests
            .running(&n)
            .and_then(|r| r.disk.lock().ok().and_then(|v| v.first().cloned()));
        let quota = running.or_else(|| {
            let l = c.dlimits.first()?;
            let id = crate::guest::disk::project_id(&c);
            crate::disk::apply::locate(std::path::Path::new(&l.directory), id).ok()
        });
        roots.push((n, c.vdir, quota));
    }
    let mut out = Vec::new();
    for (n, vdir, quota) in roots {
        let name = n.clone();
        let u = tokio::task::spawn_blocking(move || {
            let mut u = du::usage(&name, &vdir)?;
            if let Some(q) = quota.and_then(|a| crate::disk::apply::usage(&a).ok()) {
                u.quota_used_bytes = Some(q.bytes);
                u.quota_limit_bytes = q.bytes_limit;
                u.quota_inodes = q.inodes;
                u.quota_inodes_limit = q.inodes_limit;
            }
            Ok::<_, String>(u)
        })
        .await
        .map_err(|e| ManagerError::failed(&n, format!("du: {e}")))?
        .map_err(|e| ManagerError::failed(&n, e))?;
        out.push(u);
    }
    Ok(proto::DiskUsageList { guests: out })
}
