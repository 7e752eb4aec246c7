//! Processes: clone and fork, signals, waiting, pidfds, and the per-process settings of a
//! guest's init (limits, priorities, personality, names, seccomp).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// fork(2). Returns 0 in the child, the child's pid in the parent.
///
/// # Safety
///
/// The calling process must be single-threaded: the child of a multi-threaded process may
/// only make async-signal-safe calls until it execs (another thread may have held a lock).
pub unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller vouches we are single-threaded.
    check(unsafe { libc::fork() }.into()).map(|p| p as i32)
}

/// clone(CLONE_PARENT): a fork whose parent is our parent. Plain clone, not clone3: a joiner
/// clones under the guest's seccomp filter, which answers clone3 ENOSYS. Returns 0 in the
/// child.
///
/// # Safety
///
/// As [`fork`]: the caller must be single-threaded.
pub unsafe fn clone_parent() -> io::Result<i32> {
    // SAFETY: clone without CLONE_VM and with no stack behaves as fork; the caller vouches we
    // are single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(pid).map(|p| p as i32)
}

/// clone3(CLONE_PARENT | CLONE_INTO_CGROUP): as [`clone_parent`], the child born in the v2
/// cgroup `cgroup` (a directory fd): no migration afterwards. Returns 0 in the child.
///
/// # Safety
///
/// As [`fork`]: the caller must be single-threaded.
pub unsafe fn clone_parent_into(cgroup: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: the caller's promise, passed on.
    unsafe { clone3_parent(0, Some(cgroup)) }
}

/// clone3(CLONE_PARENT | CLONE_NEWPID [| CLONE_INTO_CGROUP]): the child is PID 1 of a new pid
/// namespace, owned by the caller's user namespace. Returns 0 in the child.
///
/// # Safety
///
/// As [`fork`]: the caller must be single-threaded.
pub unsafe fn clone_parent_newpid(cgroup: Option<BorrowedFd<'_>>) -> io::Result<i32> {
    // SAFETY: the caller's promise, passed on.
    unsafe { clone3_parent(libc::CLONE_NEWPID as u64, cgroup) }
}

/// # Safety
///
/// As [`fork`].
unsafe fn clone3_parent(extra: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<i32> {
    // (libc's constant is an overflowing c_int.)
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let mut args = CloneArgs {
        flags: libc::CLONE_PARENT as u64
            | extra
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        cgroup: cgroup.map_or(0, |c| c.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: as clone_parent, with clone3's argument struct, valid for the call.
    // CLONE_PARENT takes the exit signal of the caller, so exit_signal stays 0 as clone3
    // requires.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(pid).map(|p| p as i32)
}

/// _exit(2): leaves at once, without running destructors or atexit handlers (a forked
/// child must not run its parent's twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; skipping destructors only leaks.
    unsafe { libc::_exit(code) }
}

/// Resets `sig` to its default disposition with the raw rt_sigaction: glibc's wrappers refuse
/// its internal signals (32, 33), which posix_spawn leaves ignored.
pub fn default_signal_raw(sig: i32) -> io::Result<()> {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction with a valid struct and the kernel's sigset size; SIG_DFL runs no
    // code of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &dfl as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        )
    };
    check(rc).map(drop)
}

extern "C" fn noop(_: libc::c_int) {}

/// Installs a handler that does nothing, with `flags`: for signals that are blocked and taken
/// with sigwaitinfo (PID 1 of a pid namespace only gets the signals it handles).
pub fn handle_noop(
    sig: nix::sys::signal::Signal,
    flags: nix::sys::signal::SaFlags,
) -> io::Result<()> {
    use nix::sys::signal::{SigAction, SigHandler, SigSet};
    let act = SigAction::new(SigHandler::Handler(noop), flags, SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(sig, &act) }?;
    Ok(())
}

/// Restores the default disposition of `sig`.
pub fn default_signal(sig: nix::sys::signal::Signal) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours.
    unsafe { nix::sys::signal::sigaction(sig, &dfl) }?;
    Ok(())
}

/// kill(2), any signal number (0 probes, real-time signals included).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// Blocks until the child `pid` changes state; returns its wait status.
pub fn waitpid(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer.
    check(unsafe { libc::waitpid(pid, &mut status, 0) }.into())?;
    Ok(status)
}

/// A pidfd on `pid` (pidfd_open(2)).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(rustix::io::Errno::INVAL)?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// A duplicate of fd `target` of the process behind `pidfd` (pidfd_getfd(2); the caller needs
/// ptrace rights over it: root over its own helpers). Close-on-exec.
pub fn pidfd_getfd(pidfd: impl AsFd, target: i32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_getfd(
        pidfd,
        target,
        rustix::process::PidfdGetfdFlags::empty(),
    )?)
}

/// pidfd_send_signal(2), any signal number (rustix's `Signal` cannot name real-time ones
/// safely, and systemd halts on SIGRTMIN+4).
pub fn pidfd_send_signal(pidfd: impl AsFd, sig: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd for the call, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(rc).map(drop)
}

/// How a waited-for child ended: (exited normally, exit code or signal).
pub type Ended = (bool, i32);

/// waitid(P_PIDFD, WEXITED | WNOHANG): reaps the child behind `pidfd` if it has exited,
/// None while it runs. ECHILD when it is not our child.
pub fn reap_pidfd(pidfd: impl AsFd) -> io::Result<Option<Ended>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid fd and out-pointer.
    let rc = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_fd().as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    check(rc.into())?;
    // SAFETY: filled in by waitid; si_pid 0 means "still running" under WNOHANG.
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some((code == libc::CLD_EXITED, status)))
}

/// The wait status of a process that ended and was reaped by someone else (an adopted init,
/// whose parent is now the host's PID 1): the kernel keeps it for the process's pidfds
/// (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15). None on older kernels, or while it has
/// not been reaped.
pub fn pidfd_exit_status(pidfd: impl AsFd) -> Option<i32> {
    /// struct pidfd_info as far as exit_code: its first published size (64 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    // _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info)
    const PIDFD_GET_INFO: libc::c_ulong =
        (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..Default::default()
    };
    // SAFETY: the ioctl fills at most the 64 bytes its number says, into our struct.
    let rc = unsafe { libc::ioctl(pidfd.as_fd().as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    if rc != 0 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    Some(info.exit_code)
}

/// Names the calling thread (PR_SET_NAME: what ps shows).
pub fn set_name(name: &CStr) -> io::Result<()> {
    Ok(rustix::thread::set_name(name)?)
}

/// Makes the process non-dumpable (PR_SET_DUMPABLE 0): no ptrace or /proc/PID/mem by those
/// lacking CAP_SYS_PTRACE.
pub fn set_not_dumpable() -> io::Result<()> {
    Ok(rustix::process::set_dumpable_behavior(
        rustix::process::DumpableBehavior::NotDumpable,
    )?)
}

/// setsid(2): a session of our own.
pub fn setsid() -> io::Result<()> {
    rustix::process::setsid()?;
    Ok(())
}

/// Makes stdin (a tty) the controlling terminal of our new session (TIOCSCTTY, not stealing
/// it from another session).
pub fn stdin_as_controlling_tty() -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is ours to use.
    check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }.into()).map(drop)
}

/// setgroups(2): the supplementary groups.
pub fn setgroups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: setgroups reads `groups.len()` ids from a live slice.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }.into()).map(drop)
}

/// setresgid(2) with one gid for real, effective and saved.
pub fn setresgid(gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::setresgid(gid, gid, gid) }.into()).map(drop)
}

/// setresuid(2) with one uid for real, effective and saved (from root: every capability
/// goes).
pub fn setresuid(uid: libc::uid_t) -> io::Result<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::setresuid(uid, uid, uid) }.into()).map(drop)
}

/// setfsuid(2) and setfsgid(2): the ids new files get and permission checks use, the real
/// and effective ids unchanged. Returns the previous pair.
pub fn set_fs_ids(uid: libc::uid_t, gid: libc::gid_t) -> (libc::uid_t, libc::gid_t) {
    // SAFETY: plain integers; both calls return the previous id and cannot fail otherwise.
    unsafe {
        (
            libc::setfsuid(uid) as libc::uid_t,
            libc::setfsgid(gid) as libc::gid_t,
        )
    }
}

/// umask(2); returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask)).as_raw_mode()
}

/// setrlimit(2).
pub fn setrlimit(
    res: libc::__rlimit_resource_t,
    soft: libc::rlim_t,
    hard: libc::rlim_t,
) -> io::Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit with a valid struct.
    check(unsafe { libc::setrlimit(res, &new) }.into()).map(drop)
}

/// getrlimit(2): (soft, hard); zeros if it fails.
pub fn getrlimit(res: libc::__rlimit_resource_t) -> (libc::rlim_t, libc::rlim_t) {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    unsafe { libc::getrlimit(res, &mut cur) };
    (cur.rlim_cur, cur.rlim_max)
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit: for the helpers that keep a
/// descriptor per guest (the /proc server's and the holder's seccomp listeners) and spawn no
/// guest process, which would inherit it. A unit's default soft limit is 1024.
pub fn raise_nofile() {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE);
    if soft < hard {
        let _ = setrlimit(libc::RLIMIT_NOFILE, hard, hard);
    }
}

/// setdomainname(2) of our uts namespace.
pub fn set_domainname(name: &[u8]) -> io::Result<()> {
    // SAFETY: a pointer and length into `name`.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }.into()).map(drop)
}

/// setpriority(PRIO_PROCESS, self, nice).
pub fn set_nice(nice: i32) -> io::Result<()> {
    Ok(rustix::process::setpriority_process(None, nice)?)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self, value).
pub fn set_ioprio(value: libc::c_long) -> io::Result<()> {
    // SAFETY: ioprio_set takes plain integers.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) }).map(drop)
}

/// personality(2).
pub fn set_personality(p: u32) -> io::Result<()> {
    // SAFETY: personality takes any value and fails with EINVAL.
    if unsafe { libc::personality(p as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a seccomp filter on the calling thread (SECCOMP_SET_MODE_FILTER).
pub fn seccomp_filter(prog: &[libc::sock_filter]) -> io::Result<()> {
    seccomp_set_filter(prog, 0).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER, `flags`, `prog`): the call's return value (a listener fd
/// with SECCOMP_FILTER_FLAG_NEW_LISTENER).
pub fn seccomp_set_filter(prog: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<i64> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid sock_fprog pointing at `prog`, which outlives the call; the kernel
    // copies the program and never writes through the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    check(rc)
}

/// sysconf(_SC_PAGESIZE).
pub fn page_size() -> i64 {
    // SAFETY: sysconf takes a plain integer.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }
}

/// sysconf(_SC_CLK_TCK): clock ticks per second.
pub fn clock_ticks() -> i64 {
    // SAFETY: sysconf takes a plain integer.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

/// posix_spawn of `path` with `argv`, an empty environment, default signal dispositions and
/// an empty mask; `fds` become its 0..fds.len(). A vfork-style clone: safe in a
/// multi-threaded process and, unlike fork, it does not copy our page tables.
pub fn spawn(path: &CStr, argv: &[&CStr], fds: &[OwnedFd]) -> io::Result<i32> {
    use std::mem::MaybeUninit;
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    let mut args: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    args.push(std::ptr::null_mut());
    let envp = [std::ptr::null_mut::<libc::c_char>()];
    // SAFETY: the posix_spawn API with initialised attribute and file-action objects, all
    // destroyed before returning; argv and envp are NULL-terminated and outlive the call.
    unsafe {
        let mut fa = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        check(libc::posix_spawn_file_actions_init(fa.as_mut_ptr()))?;
        let mut fa = fa.assume_init();
        let mut at = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        check(libc::posix_spawnattr_init(at.as_mut_ptr()))?;
        let mut at = at.assume_init();
        let result = (|| {
            for (i, fd) in fds.iter().enumerate() {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    fd.as_raw_fd(),
                    i as i32,
                ))?;
            }
            // Default dispositions (Rust ignores SIGPIPE, tokio handles others) and no mask.
            let mut all = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            let mut none = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            check(libc::posix_spawnattr_setsigdefault(&mut at, all.as_ptr()))?;
            check(libc::posix_spawnattr_setsigmask(&mut at, none.as_ptr()))?;
            check(libc::posix_spawnattr_setflags(
                &mut at,
                (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
            ))?;
            let mut pid = 0;
            check(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &fa,
                &at,
                args.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
        result
    }
}
