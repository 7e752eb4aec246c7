//! Helpers left by an earlier package (docs/operations.md, "Upgrade"): at start-up, once the
//! guests are adopted, the daemon asks each helper that outlived the last daemon which
//! protocol it speaks (crate::detached::PROTOCOL) and replaces one that speaks another
//! without losing what guests depend on: the console keeper's ptys are taken over
//! (console::handover), the /proc server is stopped and a new one mounted, the adopted guests'
//! files bound again (guest::virtmem's supervisor, which also restarts a server that died).

use std::path::Path;
use std::sync::Arc;

use crate::daemon::Daemon;

pub async fn helpers(d: &Arc<Daemon>) {
    let guests: Vec<(String, i32)> = d
        .guests
        .running_names()
        .into_iter()
        .filter_map(|n| {
            let pid = d.guests.running(&n)?.state.init_pid;
            Some((n, pid))
        })
        .collect();
    let run_dir = d.opts.run_dir.clone();
    let done = tokio::task::spawn_blocking(move || {
        let console = crate::console::handover::ensure_current(&run_dir, &guests);
        let procfs = replace_old_procfs(&run_dir);
        (console, procfs)
    })
    .await;
    let Ok((console, procfs)) = done else { return };
    use crate::console::handover::Outcome;
    match console {
        Ok(Outcome::Kept) => {}
        Ok(Outcome::Replaced {
            protocol,
            consoles,
            lost,
        }) => {
            let was = protocol.map_or("no version".to_string(), |p| format!("protocol {p}"));
            tracing::info!(
                "replaced the console keeper ({was}, ours is {}): {consoles} consoles taken over",
                crate::detached::protocol()
            );
            if !lost.is_empty() {
                tracing::warn!(
                    "no console found in the old keeper for: {}",
                    lost.join(", ")
                );
            }
        }
        Err(e) => tracing::error!("cannot replace the old console keeper: {e}"),
    }
    match procfs {
        Ok(None) => {}
        Ok(Some(was)) => {
            let was = was.map_or("no version".to_string(), |p| format!("protocol {p}"));
            tracing::info!("stopped the /proc file server ({was}); a new one serves the guests");
        }
        Err(e) => tracing::error!("cannot replace the old /proc file server: {e}"),
    }
}

/// Stops a /proc server that speaks another protocol than ours; Some(its protocol) then. The
/// supervisor (or the next virt_mem start) mounts a new one and binds the files again.
fn replace_old_procfs(run_dir: &Path) -> Result<Option<Option<u32>>, String> {
    let Some(pid) = crate::procfs::server_pid(run_dir) else {
        return Ok(None);
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let dir = crate::procfs::mount_dir(run_dir);
    let Some(source) = crate::procfs::source_at(&mountinfo, &dir) else {
        return Ok(None);
    };
    let protocol = crate::procfs::parse_source(&source);
    if protocol == Some(crate::detached::protocol()) {
        return Ok(None);
    }
    let pidfd = crate::sys::process::pidfd_open(pid).map_err(|e| e.to_string())?;
    crate::sys::process::pidfd_send_signal(&pidfd, libc::SIGKILL).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while crate::procfs::server_pid(run_dir) == Some(pid) {
        if std::time::Instant::now() > deadline {
            return Err(format!("the old /proc file server {pid} did not exit"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(Some(protocol))
}
