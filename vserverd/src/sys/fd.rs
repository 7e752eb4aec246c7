//! File descriptors: ranges, pipes, the sealed memfd, fcntl flags, locks, stdio.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Closes every fd from `first` up (close_range(2)).
///
/// # Safety
///
/// No fd at or above `first` may be owned by anything (an `OwnedFd`, a `File`, a library's
/// handle): it would be closed under its owner, who could then act on a reused number.
pub unsafe fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes plain integers; the caller vouches nothing owns these fds.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets close-on-exec on every fd from `first` up (close_range(2), CLOSE_RANGE_CLOEXEC): only
/// a flag changes, the fds and their owners stay as they were.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it takes plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new pty: `master` is a fresh open of a multiplexer (the host's /dev/ptmx, or a guest's
/// devpts instance's), opened close-on-exec; returns (master, slave), the slave close-on-exec
/// too and neither our controlling terminal. A pty fd without close-on-exec would reach every
/// process the daemon spawns meanwhile (a helper started then kept a guest's console alive
/// for good).
pub fn new_pty(master: OwnedFd) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::OpenptFlags;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    Ok((master, slave))
}

/// Opens the host's /dev/ptmx for [`new_pty`].
/// The path of the pty slave whose master is `master` (TIOCGPTN): /dev/pts/N.
pub fn ptsname(master: impl AsFd) -> io::Result<std::path::PathBuf> {
    let name = rustix::pty::ptsname(master, Vec::new())?;
    let name: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(name.into_bytes());
    Ok(name.into())
}

pub fn open_ptmx() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        "/dev/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Makes `cmd`'s process start with no fd but its stdio: every fd from 3 up is close-on-exec
/// in the child before it execs (an fd the daemon opened without the flag, or that another
/// thread is handing over right then, never reaches a helper or a hook).
pub fn no_inherited_fds(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure makes one system call (close_range), which is async-signal-safe, as
    // code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| cloexec_from(3));
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Resizes a pipe's buffer (F_SETPIPE_SZ); returns the size the kernel chose.
pub fn set_pipe_size(fd: impl AsFd, size: usize) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_setpipe_size(fd, size)?)
}

/// A close-on-exec duplicate numbered `min` or above (F_DUPFD_CLOEXEC).
pub fn dup_at_least(fd: impl AsFd, min: i32) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

/// Sets close-on-exec (F_SETFD).
pub fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
}

/// Adds O_NONBLOCK to the file's status flags (F_GETFL, F_SETFL).
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let fl = rustix::fs::fcntl_getfl(&fd)?;
    Ok(rustix::fs::fcntl_setfl(
        &fd,
        fl | rustix::fs::OFlags::NONBLOCK,
    )?)
}

/// An empty close-on-exec memfd that can be sealed.
pub fn memfd_sealable(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    Ok(rustix::fs::memfd_create(
        name,
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// Seals a memfd for good: no write, no resize, no more seals.
pub fn seal_contents(fd: impl AsFd) -> io::Result<()> {
    use rustix::fs::SealFlags;
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?)
}

/// An exclusive flock(2), without waiting: EWOULDBLOCK when someone else holds it.
pub fn lock_exclusive_now(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::flock(
        fd,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )?)
}

/// Points fds 0, 1 and 2 at /dev/null.
pub fn stdio_to_null() -> io::Result<()> {
    // SAFETY: open with a static NUL-terminated path; returns a new fd or -1.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null < 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in 0..3 {
        // SAFETY: dup2 of the fd just opened onto stdio, which std treats as always open.
        unsafe { libc::dup2(null, fd) };
    }
    if null > 2 {
        // SAFETY: the fd opened above, owned by nothing else.
        unsafe { libc::close(null) };
    }
    Ok(())
}

/// Registers `fd` with tokio's reactor, to await its readiness (a pidfd turns readable when
/// its process exits).
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns its OwnedFd, which stays open, and the same number, for as long
    // as it lives.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}
