//! util-vserver's process tools on guests: which host process is in which guest (vps),
//! signals to a guest's processes (vkill), and a running guest's UTS names (vuname).

use std::sync::Arc;

use proto::{GuestProcess, ManagerError};

use crate::daemon::Daemon;
use crate::isolate::pidfd;

/// Every process of every running guest, by host pid (vps's CONTEXT and VSERVER columns).
pub fn processes(d: &Daemon) -> Vec<GuestProcess> {
    let mut out: Vec<GuestProcess> = Vec::new();
    for name in d.guests.running_names() {
        let Some(run) = d.guests.running(&name) else {
            continue;
        };
        for pid in run.state.cgroup.pids() {
            out.push(GuestProcess {
                pid: pid as u32,
                name: name.clone(),
                context: run.state.context,
            });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Sends `signal` to `pids` of guest `name` (every process of it when `pids` is empty);
/// returns how many were signalled.
///
/// A pid is only a number the caller (or a guest) chose: each is pinned with a pidfd first,
/// then checked to be in the guest's cgroups, then signalled through that pidfd. Had the
/// process died and its pid gone to another process after the pidfd was taken, the pidfd
/// still names the dead one and the signal fails; a guest process cannot leave the guest's
/// cgroup subtree, so a checked process stays the guest's.
pub fn kill(d: &Arc<Daemon>, name: &str, pids: &[i64], signal: i64) -> Result<u32, ManagerError> {
    d.check_name(name)?;
    let Some(run) = d.guests.running(name) else {
        return Err(ManagerError::NotRunning { name: name.into() });
    };
    let signal = i32::try_from(signal)
        .ok()
        .filter(|s| (0..=libc::SIGRTMAX()).contains(s))
        .ok_or_else(|| ManagerError::failed(name, format!("{signal} is not a signal number")))?;
    let cg = &run.state.cgroup;
    let all = pids.is_empty();
    let wanted: Vec<i32> = if all {
        cg.pids()
    } else {
        pids.iter()
            .map(|&p| {
                i32::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ManagerError::failed(name, format!("{p} is not a process id")))
            })
            .collect::<Result<_, _>>()?
    };
    // Every process pinned first, then one look at the guest's cgroups: a pinned process
    // still alive at that look is the one the pid named then, and a dead one takes no signal.
    let mut refused = Vec::new();
    let mut pinned = Vec::with_capacity(wanted.len());
    for pid in wanted {
        match pidfd::open(pid) {
            Ok(fd) => pinned.push((pid, fd)),
            // Gone already: only an error when the caller named it.
            Err(_) if !all => refused.push(format!("{pid}: no such process")),
            Err(_) => {}
        }
    }
    let members: std::collections::HashSet<i32> = cg.pids().into_iter().collect();
    let mut sent = 0u32;
    for (pid, fd) in pinned {
        if !members.contains(&pid) {
            refused.push(format!("{pid}: not a process of guest {name}"));
            continue;
        }
        match pidfd::send_signal(&fd, signal) {
            Ok(()) => sent += 1,
            Err(e) if !all => refused.push(format!("{pid}: {e}")),
            Err(_) => {}
        }
    }
    if !refused.is_empty() {
        return Err(ManagerError::failed(name, refused.join("; ")));
    }
    Ok(sent)
}

/// The longest UTS name the kernel takes (__NEW_UTS_LEN).
const UTS_LEN: usize = 64;

/// Sets a running guest's nodename and/or domainname from a thread that entered the UTS
/// namespace of the guest's init (through the daemon's own pidfd of it) and ends right after,
/// so no other thread of the daemon ever runs in a guest's namespace.
pub async fn set_uts(
    d: &Arc<Daemon>,
    name: &str,
    nodename: Option<String>,
    domainname: Option<String>,
) -> Result<(), ManagerError> {
    d.check_name(name)?;
    for v in [&nodename, &domainname].into_iter().flatten() {
        if v.len() > UTS_LEN || v.contains('\0') {
            return Err(ManagerError::failed(
                name,
                format!("{v:?}: at most {UTS_LEN} bytes and no NUL"),
            ));
        }
    }
    if nodename.is_none() && domainname.is_none() {
        return Err(ManagerError::failed(
            name,
            "nothing to set (nodename or domainname)",
        ));
    }
    let Some(run) = d.guests.running(name) else {
        return Err(ManagerError::NotRunning { name: name.into() });
    };
    let fd = run
        .pidfd
        .try_clone()
        .map_err(|e| ManagerError::failed(name, e.to_string()))?;
    let r = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> Result<(), String> {
            // On this thread only (a fresh one that exits next): the UTS namespace of the
            // process behind our pidfd.
            crate::sys::ns::setns_pidfd(&fd, libc::CLONE_NEWUTS)
                .map_err(|e| format!("entering the guest's UTS namespace: {e}"))?;
            crate::isolate::process::set_uts(nodename.as_deref(), domainname.as_deref())
                .map_err(|e| e.0)
        })
        .join()
        .unwrap_or_else(|_| Err("the UTS thread panicked".into()))
    })
    .await
    .map_err(|e| ManagerError::failed(name, e.to_string()))?;
    r.map_err(|m| ManagerError::failed(name, m))
}
