//! The reaper: PID 1 of guests whose start command returns (sysv `rc 3`, gentoo, arch), as
//! util-vserver's fakeinit was. It runs the command as its child, reports how it returned on
//! the guest channel (untrusted: a wait status, nothing more), then reaps whatever is
//! reparented to it for the guest's whole life, until SIGTERM, SIGINT or SIGPWR ends it.
//!
//! The signals it cares about are blocked and taken with sigwaitinfo, so a SIGCHLD that
//! arrives between a reap and the wait is never lost (a pause() after "no children left"
//! slept through every later orphan's exit, leaving zombies that held the pids limit).

use std::ffi::CString;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::plan::Report;
use super::Reporter;

const ENDS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGPWR];

extern "C" fn ignore(_: libc::c_int) {}

pub fn run(
    argv: &[String],
    env: &[CString],
    out: &mut Reporter,
) -> Result<std::convert::Infallible, String> {
    // Handlers (not SIG_DFL): PID 1 of a pid namespace only gets the signals it handles.
    // They never run: the signals are blocked and waited for.
    let act = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    let mut waited = SigSet::empty();
    for s in ENDS.into_iter().chain([Signal::SIGCHLD]) {
        // SAFETY: the handler does nothing.
        unsafe { sigaction(s, &act) }.map_err(|e| format!("sigaction: {e}"))?;
        waited.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    // SAFETY: prctl on ourselves: the guest's ps shows what this is.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"vserverd-init".as_ptr()) };
    // SAFETY: single-threaded: the child may run ordinary code until it execs.
    let rc = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            // Its own session: Debian's sendsigs spares the session it runs in.
            let _ = nix::unistd::setsid();
            let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            for s in ENDS.into_iter().chain([Signal::SIGCHLD]) {
                // SAFETY: restoring defaults before exec.
                let _ = unsafe { sigaction(s, &dfl) };
            }
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            let e = super::exec(argv, env, false);
            out.send(&Report::Error(e));
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let mut reported = false;
    loop {
        reap_all(rc, &mut reported, out);
        match waited.wait() {
            Ok(s) if ENDS.contains(&s) => std::process::exit(0),
            _ => {}
        }
    }
}

/// Reaps every child that has exited; reports the start command's status once.
fn reap_all(rc: nix::unistd::Pid, reported: &mut bool, out: &mut Reporter) {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Ok(s) => s,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let wait_status = match status {
            WaitStatus::Exited(pid, code) if pid == rc => code << 8,
            WaitStatus::Signaled(pid, sig, _) if pid == rc => sig as i32,
            _ => continue,
        };
        if !*reported {
            out.send(&Report::Returned(wait_status));
            out.close();
            *reported = true;
        }
    }
}
