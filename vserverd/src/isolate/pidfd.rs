//! pidfds and what /proc says about a process: the handles the daemon keeps on guest inits.

use std::os::fd::OwnedFd;

use crate::sys::process as sys;

pub fn open(pid: i32) -> std::io::Result<OwnedFd> {
    sys::pidfd_open(pid)
}

pub fn send_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    sys::pidfd_send_signal(pidfd, signal)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "signal {s} ({})", signal_name(*s)),
        }
    }
}

pub fn signal_name(s: i32) -> String {
    match nix::sys::signal::Signal::try_from(s) {
        Ok(sig) => sig.as_str().to_string(),
        // Real-time signals (systemd's SIGRTMIN+4 halt) have no name of their own.
        Err(_) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&s) => {
            format!("SIGRTMIN+{}", s - libc::SIGRTMIN())
        }
        Err(_) => "?".to_string(),
    }
}

/// Reaps a child through its pidfd without blocking: None while it runs. ECHILD (not our
/// child, e.g. adopted after a daemon restart) is an error the caller handles.
pub fn try_reap(pidfd: &OwnedFd) -> std::io::Result<Option<Exit>> {
    Ok(sys::reap_pidfd(pidfd)?.map(|(exited, status)| {
        if exited {
            Exit::Code(status)
        } else {
            Exit::Signal(status)
        }
    }))
}

/// How a process that ended and was reaped by someone else (an adopted init, whose parent is
/// now the host's PID 1) ended: the kernel keeps it for the process's pidfds (PIDFD_INFO_EXIT,
/// Linux 6.15). None on older kernels, or while it has not been reaped.
pub fn exit_info(pidfd: &OwnedFd) -> Option<Exit> {
    let raw = sys::pidfd_exit_status(pidfd)?;
    Some(if raw & 0x7f == 0 {
        Exit::Code((raw >> 8) & 0xff)
    } else {
        Exit::Signal(raw & 0x7f)
    })
}

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The process's start time in clock ticks since boot (field 22): with the pid, it names a
/// process uniquely, so a recycled pid is never mistaken for a guest's init.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The parent's pid (field 4).
pub fn parent(pid: i32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The state letter (R, S, Z…).
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// A zombie's exit status, as waitpid would give it (field 52).
pub fn zombie_exit(pid: i32) -> Option<Exit> {
    let raw: i32 = stat_fields(pid)?.get(49)?.parse().ok()?;
    Some(if raw & 0x7f == 0 {
        Exit::Code((raw >> 8) & 0xff)
    } else {
        Exit::Signal(raw & 0x7f)
    })
}

/// The inode of one of a process's namespaces (`pid`, `mnt`, …).
pub fn ns_inode(pid: i32, ns: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_stat() {
        let me = std::process::id() as i32;
        assert!(start_time(me).unwrap() > 0);
        assert!(matches!(state(me), Some('R' | 'S')));
        assert!(ns_inode(me, "pid").is_some());
    }

    #[test]
    fn reaps_a_child_through_its_pidfd() {
        #[allow(clippy::zombie_processes)] // reaped through the pidfd below
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let fd = open(child.id() as i32).unwrap();
        let mut got = None;
        for _ in 0..500 {
            if let Some(e) = try_reap(&fd).unwrap() {
                got = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, Some(Exit::Code(7)));
    }
}
