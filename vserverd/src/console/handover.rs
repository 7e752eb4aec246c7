//! Replacing a console keeper this daemon cannot talk to (another protocol version: one left
//! by an older or newer package, docs/operations.md) without losing a guest's console.
//!
//! The keeper's state that matters is the pty masters (and the slaves it holds, see mod.rs);
//! whoever holds them keeps the guests' consoles alive. So the daemon does not need the old
//! keeper's cooperation, only root's right to copy another process's fds (pidfd_getfd(2)):
//! it copies every pty master and slave the old keeper holds, tells them apart by guest
//! through the kernel's view (the device behind each running guest's /dev/console), starts a
//! new keeper and hands it each console with its log going on, then kills the old keeper.
//! Clients attached to the old keeper are cut off and attach again.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sys;

/// What a takeover did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// No keeper runs, or it speaks our protocol.
    Kept,
    /// The old keeper (its protocol, None: from before versions) was replaced; `consoles`
    /// guests' consoles went on with the new one, `lost` names the running guests whose
    /// console was not found in it.
    Replaced {
        protocol: Option<u32>,
        consoles: usize,
        lost: Vec<String>,
    },
}

/// Checks the running keeper's protocol and replaces it if it is not ours. `guests`: every
/// running guest's name and init pid (adopted ones included). Blocking.
pub fn ensure_current(run_dir: &Path, guests: &[(String, i32)]) -> Result<Outcome, String> {
    let Some(pid) = super::keeper_pid(run_dir) else {
        return Ok(Outcome::Kept);
    };
    let protocol = super::keeper_protocol(run_dir);
    if protocol == Some(crate::detached::protocol()) {
        return Ok(Outcome::Kept);
    }
    let pidfd = sys::process::pidfd_open(pid).map_err(|e| format!("the old keeper {pid}: {e}"))?;
    let (masters, slaves) = ptys_of(pid, &pidfd)?;
    let mut consoles = Vec::new();
    let mut lost = Vec::new();
    // Each guest's /dev/console is a bind of its pty slave that a guest without CAP_SYS_ADMIN
    // cannot move. A device claimed by several guests (one that could make device nodes
    // pointing at another's pty) goes to none of them: a console is never handed to a guest
    // whose own it may not be.
    let claims: Vec<(String, Option<u64>)> = guests
        .iter()
        .map(|(name, init)| {
            let rdev = std::fs::metadata(format!("/proc/{init}/root/dev/console"))
                .ok()
                .map(|m| m.rdev());
            (name.clone(), rdev)
        })
        .collect();
    for (name, rdev) in &claims {
        let Some(rdev) = rdev else {
            lost.push(name.clone());
            continue;
        };
        if claims.iter().filter(|(_, r)| r == &Some(*rdev)).count() > 1 {
            lost.push(name.clone());
            continue;
        }
        let found = masters.iter().position(|(r, _)| r == rdev);
        match found {
            Some(i) => {
                let (rdev, master) = &masters[i];
                let Some(slave) = slaves.get(rdev) else {
                    lost.push(name.clone());
                    continue;
                };
                let (master, slave) = (
                    master.try_clone().map_err(|e| e.to_string())?,
                    slave.try_clone().map_err(|e| e.to_string())?,
                );
                consoles.push((name.clone(), master, slave));
            }
            None => lost.push(name.clone()),
        }
    }
    // A new keeper first, given every console, and only then the old one stopped: at no
    // moment does no process hold a guest's pty (a daemon that dies in between leaves both
    // keepers, and the next daemon talks to the new one, whose pid file is in place). The old
    // keeper's socket goes first, so that `keeper` starts a new one instead of reaching it.
    let _ = std::fs::remove_file(super::socket(run_dir));
    let n = super::resume(run_dir, &consoles)?;
    crate::fault::point("handover.console").map_err(|e| e.to_string())?;
    // SIGKILL: it has nothing to save (the pty buffers stay with the masters).
    sys::process::pidfd_send_signal(&pidfd, libc::SIGKILL)
        .map_err(|e| format!("stopping the old keeper {pid}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim() == super::NAME)
    {
        if Instant::now() > deadline {
            return Err(format!("the old keeper {pid} did not exit"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Outcome::Replaced {
        protocol,
        consoles: n,
        lost,
    })
}

/// Copies of the pty masters (with their slave's device number) and of the slaves (by device
/// number) that process `pid` holds.
type Ptys = (Vec<(u64, OwnedFd)>, HashMap<u64, OwnedFd>);

fn ptys_of(pid: i32, pidfd: &OwnedFd) -> Result<Ptys, String> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let (mut masters, mut slaves) = (Vec::new(), HashMap::new());
    for e in entries.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let is_master = target == "/dev/ptmx" || target == "/dev/pts/ptmx";
        if !is_master && !target.starts_with("/dev/pts/") {
            continue;
        }
        let copy = sys::process::pidfd_getfd(pidfd, fd).map_err(|e| format!("{dir}/{fd}: {e}"))?;
        if is_master {
            let pts = sys::fd::ptsname(&copy).map_err(|e| format!("{dir}/{fd}: {e}"))?;
            let rdev = std::fs::metadata(&pts)
                .map_err(|e| format!("{}: {e}", pts.display()))?
                .rdev();
            masters.push((rdev, copy));
        } else {
            let rdev = std::fs::metadata(format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                copy.as_raw_fd()
            }))
            .map_err(|e| format!("{dir}/{fd}: {e}"))?
            .rdev();
            slaves.insert(rdev, copy);
        }
    }
    Ok((masters, slaves))
}
