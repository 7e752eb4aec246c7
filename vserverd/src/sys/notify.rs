//! seccomp user notification (Linux 5.0; SECCOMP_USER_NOTIF_FLAG_CONTINUE 5.5): a filter whose
//! rule returns SECCOMP_RET_USER_NOTIF hands the call to whoever holds the filter's listener fd,
//! which answers in the caller's place (procfs/sysinfo.rs answers sysinfo(2)).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A call waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub id: u64,
    /// The caller's pid in the listener holder's pid namespace (0 when it is not visible).
    pub pid: u32,
    pub nr: i32,
    /// The caller's AUDIT_ARCH_* (an i386 program on x86-64 has its own).
    pub arch: u32,
    pub args: [u64; 6],
}

/// Installs `prog` on the calling thread and returns the filter's listener (close-on-exec).
pub fn install_with_listener(prog: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let fd = super::process::seccomp_set_filter(prog, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: the kernel just returned this new fd, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The next waiting call (blocks unless the listener is non-blocking; ENOENT when the caller
/// went away between the wake-up and the receive).
pub fn receive(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed and fills it.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: a valid listener fd and a pointer to a seccomp_notif the kernel writes.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut n as *mut libc::seccomp_notif,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Notification {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        arch: n.data.arch,
        args: n.data.args,
    })
}

/// Whether call `id` still waits: its caller has not died or been interrupted. Checked after
/// opening the caller's memory, so the file opened is the caller's.
pub fn still_waiting(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: a valid listener fd and a pointer to a u64 the kernel reads.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    rc == 0
}

/// Answers call `id`: returns `val` to the caller, or, with `proceed`, lets the kernel run the
/// real call after all (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
pub fn answer(listener: BorrowedFd<'_>, id: u64, val: i64, proceed: bool) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val: if proceed { 0 } else { val },
        error: 0,
        flags: if proceed {
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
        } else {
            0
        },
    };
    // SAFETY: a valid listener fd and a pointer to a seccomp_notif_resp the kernel reads.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &resp as *const libc::seccomp_notif_resp,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to wake a caller on the answering thread's CPU when its answer is sent
/// (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6): a sysinfo call's round trip then costs no
/// extra scheduling. Older kernels refuse it; the answers work all the same.
pub fn sync_wakeups(listener: BorrowedFd<'_>) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: a valid listener fd; the flags are passed by value.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sysinfo(2) as the calling process sees it.
pub fn sysinfo() -> io::Result<libc::sysinfo> {
    // SAFETY: struct sysinfo is plain data the kernel fills.
    let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a pointer to a struct sysinfo.
    if unsafe { libc::sysinfo(&mut s) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}
