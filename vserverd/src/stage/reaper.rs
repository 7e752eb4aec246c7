//! The reaper: PID 1 of guests whose start command returns (sysv `rc 3`, gentoo, arch), as
//! util-vserver's fakeinit was. It runs the command as its child, reports how it returned on
//! the guest channel (untrusted: a wait status, nothing more), then reaps whatever is
//! reparented to it for the guest's whole life, until SIGTERM, SIGINT or SIGPWR ends it.
//!
//! The signals it cares about are blocked and taken with sigwaitinfo, so a SIGCHLD that
//! arrives between a reap and the wait is never lost (a pause() after "no children left"
//! slept through every later orphan's exit, leaving zombies that held the pids limit).

use std::ffi::CString;

use nix::sys::signal::{SaFlags, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::plan::Report;
use super::Reporter;
use crate::error::{StepError, StepResult};
use crate::sys::process as sys;

const ENDS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGPWR];

pub fn run(
    argv: &[String],
    env: &[CString],
    out: &mut Reporter,
) -> Result<std::convert::Infallible, StepError> {
    // Handlers (not SIG_DFL): PID 1 of a pid namespace only gets the signals it handles.
    // They never run: the signals are blocked and waited for.
    let mut waited = SigSet::empty();
    for s in ENDS.into_iter().chain([Signal::SIGCHLD]) {
        sys::handle_noop(s, SaFlags::SA_NOCLDSTOP)
            .step_doing("stage.reaper", || "sigaction".into())?;
        waited.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .step_doing("stage.reaper", || "sigprocmask".into())?;
    // The guest's ps shows what this is.
    let _ = sys::set_name(c"vserverd-init");
    // SAFETY: single-threaded: the child may run ordinary code until it execs.
    let rc = match unsafe { sys::fork() }.step_doing("stage.reaper", || "fork".into())? {
        0 => {
            // Its own session: Debian's sendsigs spares the session it runs in.
            let _ = sys::setsid();
            for s in ENDS.into_iter().chain([Signal::SIGCHLD]) {
                let _ = sys::default_signal(s);
            }
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            let e = super::exec(argv, env, false);
            out.send(&Report::Error(e));
            // Leave the forked child at once.
            sys::exit_now(127)
        }
        child => nix::unistd::Pid::from_raw(child),
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
