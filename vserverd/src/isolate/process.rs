//! Per-process settings of the guest's init: ulimits, uts names, nice, ionice, personality.

use crate::config::limits::{Limit, Ulimit};
use crate::sys::process as sys;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// RLIMIT_* of a ulimits/ name.
pub fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "stack" => libc::RLIMIT_STACK,
        "as" => libc::RLIMIT_AS,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        _ => return None,
    })
}

fn raw(l: Limit) -> libc::rlim_t {
    match l {
        Limit::Unlimited => libc::RLIM_INFINITY,
        Limit::Value(v) => v as libc::rlim_t,
    }
}

/// setrlimit for each ulimits/ file. Raising a hard limit needs CAP_SYS_RESOURCE, which a
/// daemon started without it cannot give: that is reported with both numbers.
pub fn apply_ulimits(cfg_dir: &std::path::Path, ulimits: &[Ulimit]) -> Result<(), ProcessError> {
    for u in ulimits {
        let file = cfg_dir.join("ulimits").join(&u.name);
        let Some(res) = resource(&u.name) else {
            return Err(ProcessError(format!(
                "{}: unknown resource {:?}",
                file.display(),
                u.name
            )));
        };
        let (soft, hard) = (raw(u.soft), raw(u.hard));
        if let Err(err) = sys::setrlimit(res, soft, hard) {
            let (_, cur_hard) = sys::getrlimit(res);
            let show = |v: libc::rlim_t| {
                if v == libc::RLIM_INFINITY {
                    "inf".to_string()
                } else {
                    v.to_string()
                }
            };
            let why = if err.raw_os_error() == Some(libc::EPERM) && hard > cur_hard {
                format!(
                    "cannot raise the hard limit to {} above vserverd's own {}: that needs \
                     CAP_SYS_RESOURCE, which vserverd does not have here",
                    show(hard),
                    show(cur_hard)
                )
            } else {
                err.to_string()
            };
            return Err(ProcessError(format!("{}: {why}", file.display())));
        }
    }
    Ok(())
}

pub fn set_uts(nodename: Option<&str>, domainname: Option<&str>) -> Result<(), ProcessError> {
    if let Some(n) = nodename {
        nix::unistd::sethostname(n)
            .map_err(|e| ProcessError(format!("uts/nodename {n:?}: {e}")))?;
    }
    if let Some(d) = domainname {
        sys::set_domainname(d.as_bytes())
            .map_err(|e| ProcessError(format!("uts/domainname {d:?}: {e}")))?;
    }
    Ok(())
}

pub fn set_nice(nice: i32) -> Result<(), ProcessError> {
    sys::set_nice(nice).map_err(|e| ProcessError(format!("nice {nice}: {e}")))
}

pub fn set_ionice(class: u8, prio: Option<u8>) -> Result<(), ProcessError> {
    let value = ((class as libc::c_long) << 13) | prio.unwrap_or(4) as libc::c_long;
    sys::set_ioprio(value).map_err(|e| ProcessError(format!("ionice class {class}: {e}")))
}

pub fn set_personality(p: u32) -> Result<(), ProcessError> {
    sys::set_personality(p).map_err(|e| ProcessError(format!("personality {p:#x}: {e}")))?;
    Ok(())
}

/// Starts a time namespace for the children of the caller whose monotonic and boot clocks
/// read (about) zero now: the guest's uptime counts from its start (virt_uptime). The offsets
/// can only be written before any process lives in the namespace, by a writer holding
/// CAP_SYS_TIME in the user namespace that owns it (the caller's: it just made it).
pub fn unshare_time() -> std::io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
        libc::CLONE_NEWTIME,
    ))?;
    let now = |clock| {
        nix::time::clock_gettime(clock)
            .map(|t| t.tv_sec())
            .unwrap_or(0)
    };
    let mono = now(nix::time::ClockId::CLOCK_MONOTONIC);
    let boot = now(nix::time::ClockId::CLOCK_BOOTTIME);
    let offsets = format!("monotonic {} 0\nboottime {} 0\n", -mono, -boot);
    std::fs::write("/proc/self/timens_offsets", offsets)
}

/// Writes a fresh utmp at `path` (inside the guest, after pivot) holding a boot record and a
/// RUN_LVL record for runlevel `rl` (previous N), as sysvinit's init and util-vserver's
/// fakerunlevel wrote them: `runlevel` prints "N 3", `who -b` the boot time.
pub fn write_runlevel(path: &str, rl: char) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let record = |ty: libc::c_short, pid: i32, user: &str| {
        // SAFETY: utmpx is plain data; all-zero is a valid value.
        let mut u: libc::utmpx = unsafe { std::mem::zeroed() };
        u.ut_type = ty;
        u.ut_pid = pid;
        for (d, s) in u.ut_line.iter_mut().zip(b"~") {
            *d = *s as libc::c_char;
        }
        for (d, s) in u.ut_id.iter_mut().zip(b"~~") {
            *d = *s as libc::c_char;
        }
        for (d, s) in u.ut_user.iter_mut().zip(user.as_bytes()) {
            *d = *s as libc::c_char;
        }
        u.ut_tv.tv_sec = now.as_secs() as i32;
        u.ut_tv.tv_usec = now.subsec_micros() as i32;
        // SAFETY: the bytes of a plain-data struct.
        unsafe {
            std::slice::from_raw_parts(
                (&u as *const libc::utmpx).cast::<u8>(),
                std::mem::size_of::<libc::utmpx>(),
            )
        }
        .to_vec()
    };
    let mut data = record(libc::BOOT_TIME, 0, "reboot");
    data.extend(record(
        libc::RUN_LVL,
        rl as i32 + 256 * 'N' as i32,
        "runlevel",
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o664)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(&data)
}
