//! Taking over guests a previous daemon started (it crashed, was killed or upgraded): each
//! run state whose init is still that process (same pid, start time and namespaces, not a
//! zombie) is adopted; what is left of the others is removed.

use std::sync::Arc;

use super::runstate::{self, RunState};
use super::{supervise, Running};
use crate::daemon::Daemon;
use crate::isolate::pidfd;

/// Whether `s` still describes a live init; the reason if not.
pub fn check(s: &RunState) -> Result<(), String> {
    if !s.boot_id.is_empty() && s.boot_id != runstate::boot_id() {
        return Err("it was recorded before the host last booted".into());
    }
    let pid = s.init_pid;
    match pidfd::state(pid) {
        None => return Err(format!("init {pid} is gone")),
        Some('Z') | Some('X') => return Err(format!("init {pid} has exited")),
        Some(_) => {}
    }
    if pidfd::start_time(pid) != Some(s.init_start_time) {
        return Err(format!("pid {pid} is another process now"));
    }
    for (kind, want) in [("pid", s.pid_ns), ("mnt", s.mnt_ns)] {
        if pidfd::ns_inode(pid, kind) != Some(want) {
            return Err(format!("pid {pid} is not in the guest's {kind} namespace"));
        }
    }
    Ok(())
}

pub async fn adopt_all(d: &Arc<Daemon>) {
    recover_pending(d).await;
    for (name, state) in runstate::load_all(&d.opts.run_dir) {
        let s = match state {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(guest = name, "unreadable run state, left alone: {e}");
                continue;
            }
        };
        let adopted = check(&s).and_then(|()| {
            // Opened after the check; the start time is checked again against the pidfd's
            // process so a pid recycled in between is not taken.
            let fd = pidfd::open(s.init_pid).map_err(|e| e.to_string())?;
            check(&s)?;
            Ok(fd)
        });
        match adopted {
            Ok(fd) => {
                // A shared-stack guest keeps its mode and rules; should a pin have gone (an
                // admin's rm in RUN_DIR/bpf), the programs are linked again from the state.
                if let Some(sn) = &s.shared_net {
                    if !crate::isolate::sockbpf::complete(&d.opts.run_dir, &name) {
                        let v2 = s.cgroup.dirs.iter().find(|d| d.v2).map(|d| d.path.clone());
                        let (rd, n, sn) = (d.opts.run_dir.clone(), name.clone(), sn.clone());
                        let r = tokio::task::spawn_blocking(move || {
                            super::sharednet::relink(&rd, &n, v2.as_deref(), &sn)
                        })
                        .await;
                        tracing::warn!(guest = name, "socket programs linked again: {r:?}");
                    }
                }
                let cfg = d.load(&name).ok().map(|l| Arc::new(l.config));
                let (run, tx) = Running::new(s.clone(), cfg, fd, true);
                d.guests.set_running(&name, Some(run.clone()));
                supervise::spawn(d.clone(), name.clone(), run, tx);
                tracing::info!(guest = name, "adopted: init {} runs", s.init_pid);
            }
            Err(why) => {
                tracing::info!(
                    guest = name,
                    "ended while vserverd was away ({why}): cleaning up"
                );
                let cg = s.cgroup.clone();
                let _ =
                    tokio::task::spawn_blocking(move || cg.kill().and_then(|()| cg.remove())).await;
                if let Some(f) = &s.run_file {
                    let _ = std::fs::remove_file(f);
                }
                if let Some(n) = super::network::of_state(&s) {
                    let _ = tokio::task::spawn_blocking(move || super::network::remove(&n)).await;
                }
                if let Some(sn) = s.shared_net.clone() {
                    let (rd, n) = (d.opts.run_dir.clone(), name.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || super::sharednet::remove(&rd, &n, &sn))
                            .await;
                }
                runstate::remove(&d.opts.run_dir, &name);
                if let Ok(l) = d.load(&name) {
                    let _ = super::start::run_hook(&l.config, "post-stop", false).await;
                    let _ = super::start::run_hook(&l.config, "postpost-stop", false).await;
                }
                d.guests.set_last(
                    &name,
                    Some(format!("ended while vserverd was away ({why})")),
                );
            }
        }
    }
}

/// Takes back what starts cut short by a daemon's death made (their journals, pending.rs):
/// the guest's processes and cgroups, its network, its console. A start that got
/// as far as its run state is adoption's, not ours.
async fn recover_pending(d: &Arc<Daemon>) {
    let run_dir = d.opts.run_dir.clone();
    for (name, p) in super::pending::load_all(&run_dir) {
        if runstate::path(&run_dir, &name).exists() {
            super::pending::remove(&run_dir, &name);
            continue;
        }
        tracing::warn!(
            guest = name,
            "a start was cut short (the daemon ended mid-way): taking back what it made"
        );
        let (rd, n) = (run_dir.clone(), name.clone());
        let p2 = p.clone();
        let undone = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(cg) = &p2.cgroup {
                cg.kill().map_err(|e| e.to_string())?;
            }
            crate::console::close(&rd, &n);
            if let Some(net) = p2.net() {
                super::network::remove(&net);
            }
            if let Some(s) = &p2.shared_net {
                super::sharednet::remove(&rd, &n, s);
            }
            if let Some(cg) = &p2.cgroup {
                cg.remove().map_err(|e| e.to_string())?;
            }
            super::disk::clear(&n, &p2.disk);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match undone {
            Ok(()) => {
                super::pending::remove(&run_dir, &name);
                d.guests
                    .set_last(&name, Some("a start was cut short; rolled back".into()));
            }
            // Kept: the next daemon tries again; a start meanwhile fails on the busy cgroup.
            Err(e) => tracing::error!(guest = name, "rolling back a cut-short start: {e}"),
        }
    }
}
