//! virt_mem's /proc server (crate::procfs), kept alive for the guests that use it: started on
//! the first such guest's start, and supervised — should it die (killed, OOM), a new one is
//! mounted and its file bound again over /proc/meminfo inside every running guest that had it
//! (a rebind stage: the bind is made in the host's mount namespace and moved into the guest's),
//! so no guest is left with "Transport endpoint is not connected".

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::isolate::pidfd;
use crate::procfs;
use crate::stage::plan::SysinfoNotify;
use crate::stage::plan::{Plan, RebindPlan};
use crate::stage::spawn::{self, StageStdio};

/// The files guest `c` gets from the server, as (where in the guest, host path): virt_mem's
/// meminfo, swaps and diskstats, virt_cpu's cpuinfo, stat and CPU online list, virt_load's loadavg — files of its
/// own folder in the server (procfs/server.rs: no page cache shared with another guest). A
/// name without a leading `/` is under /proc. Starts the server (and its supervisor) if any.
pub async fn files(d: &Arc<Daemon>, c: &GuestConfig) -> Result<Vec<(String, PathBuf)>, String> {
    use crate::config::names::{FLAG_VIRT_CPU, FLAG_VIRT_LOAD, FLAG_VIRT_MEM};
    let mut want: Vec<(&str, &str)> = Vec::new();
    if c.cflags & FLAG_VIRT_MEM != 0 {
        want.push(("meminfo", "meminfo"));
        want.push(("swaps", "swaps"));
        want.push(("diskstats", "diskstats"));
    }
    if c.cflags & FLAG_VIRT_CPU != 0 {
        want.push(("cpuinfo", "cpuinfo"));
        want.push(("stat", "stat"));
        want.push((ONLINE, "online"));
    }
    if c.cflags & FLAG_VIRT_LOAD != 0 {
        want.push(("loadavg", "loadavg"));
    }
    if want.is_empty() && sysinfo_flags(c) == 0 {
        return Ok(Vec::new());
    }
    let run_dir = d.opts.run_dir.clone();
    let path = tokio::task::spawn_blocking(move || procfs::ensure(&run_dir))
        .await
        .map_err(|e| e.to_string())??;
    supervise(d);
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let folder = dir.join(&c.name);
    Ok(want
        .into_iter()
        .map(|(at, file)| (at.to_string(), folder.join(file)))
        .collect())
}

/// What guest `c` wants its sysinfo(2) to show (procfs/sysinfo.rs): 0 when the host's.
fn sysinfo_flags(c: &GuestConfig) -> u32 {
    use crate::config::names::{FLAG_VIRT_LOAD, FLAG_VIRT_MEM, FLAG_VIRT_UPTIME};
    use crate::procfs::sysinfo::{LOAD, MEM, UPTIME};
    let has = |f: u64| c.cflags & f != 0;
    // The kernel's own sysinfo already shows a time namespace's uptime (virt_uptime, on by
    // default): only the memory and the load need the server.
    if !has(FLAG_VIRT_MEM) && !has(FLAG_VIRT_LOAD) {
        return 0;
    }
    [
        (FLAG_VIRT_MEM, MEM),
        (FLAG_VIRT_UPTIME, UPTIME),
        (FLAG_VIRT_LOAD, LOAD),
    ]
    .into_iter()
    .filter(|(f, _)| has(*f))
    .fold(0, |acc, (_, bit)| acc | bit)
}

/// Where guest `c`'s sysinfo listener goes, if its sysinfo(2) is answered by the /proc server
/// (virt_mem, virt_load). Call after [`files`], which
/// starts the server.
pub fn sysinfo_notify(run_dir: &std::path::Path, c: &GuestConfig) -> Option<SysinfoNotify> {
    let flags = sysinfo_flags(c);
    (flags != 0).then(|| SysinfoNotify {
        socket: procfs::sysinfo::socket_path(&procfs::mount_dir(run_dir)),
        flags,
    })
}

/// Where virt_cpu's CPU list goes in the guest (glibc's sysconf(_SC_NPROCESSORS_ONLN) reads
/// it).
pub const ONLINE: &str = "/sys/devices/system/cpu/online";

/// Starts the supervisor once. Called at start-up when adopted guests use the server.
pub fn supervise(d: &Arc<Daemon>) {
    if d.procfs_supervised.swap(true, Ordering::SeqCst) {
        return;
    }
    let d = d.clone();
    tokio::spawn(async move {
        loop {
            if let Some(pid) = procfs::server_pid(&d.opts.run_dir) {
                if let Ok(fd) = pidfd::open(pid) {
                    wait_exit(fd).await;
                    tracing::warn!("the /proc file server (pid {pid}) died; starting a new one");
                }
            }
            let run_dir = d.opts.run_dir.clone();
            match tokio::task::spawn_blocking(move || procfs::ensure(&run_dir)).await {
                Ok(Ok(_)) => {
                    rebind_all(&d).await;
                    // A server we cannot watch (no pid file naming it): look again later
                    // rather than spin.
                    if procfs::server_pid(&d.opts.run_dir).is_none() {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
                r => {
                    tracing::error!("cannot restart the /proc file server: {r:?}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
}

/// Returns when the process behind `fd` has exited (a pidfd turns readable).
async fn wait_exit(fd: OwnedFd) {
    match crate::sys::fd::async_fd(fd) {
        Ok(a) => {
            let _ = a.readable().await;
        }
        // Not pollable: fall back to looking now and then.
        Err(e) => {
            tracing::warn!("watching the /proc file server: {e}");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Binds the (new) server's files again in every running guest that had them.
async fn rebind_all(d: &Arc<Daemon>) {
    let Ok(image) = d.image() else { return };
    for name in d.guests.running_names() {
        let Some(run) = d.guests.running(&name) else {
            continue;
        };
        if run.state.proc_files.is_empty() {
            continue;
        }
        let plan = Plan::Rebind(RebindPlan {
            name: name.clone(),
            init_pid: run.state.init_pid,
            init_start_time: run.state.init_start_time,
            proc_files: run.state.proc_files.clone(),
        });
        let image = image.clone();
        let label = name.clone();
        let r = tokio::task::spawn_blocking(move || {
            spawn::run(
                &image,
                &plan,
                StageStdio::null(),
                &label,
                spawn::GuestWait::EXEC,
                |_| {},
            )
        })
        .await;
        match r {
            Ok(Ok(o)) if o.error.is_none() => {
                tracing::info!(guest = name, "its /proc files are bound to the new server")
            }
            other => tracing::warn!(guest = name, "rebinding its /proc files: {other:?}"),
        }
    }
}
