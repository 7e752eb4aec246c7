//! The reaper: PID 1 of guests whose start command returns (sysv `rc 3`, gentoo, arch), as
//! util-vserver's fakeinit was. It runs the command as its child, reports how it returned,
//! then reaps orphans until SIGTERM or SIGINT ends the guest.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};

use super::plan::Report;
use super::Reporter;

static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_quit(_: libc::c_int) {
    QUIT.store(true, Ordering::SeqCst);
}

pub fn run(
    argv: &[String],
    env: &[CString],
    out: &mut Reporter,
) -> Result<std::convert::Infallible, String> {
    // A handler (not SIG_IGN) so that the host can end the guest with SIGTERM: PID 1 of a pid
    // namespace only gets the signals it handles. No SA_RESTART: waitpid returns EINTR.
    let act = SigAction::new(
        SigHandler::Handler(on_quit),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGPWR] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(s, &act) }.map_err(|e| format!("sigaction: {e}"))?;
    }
    // SAFETY: prctl on ourselves: the guest's ps shows what this is.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"vserverd-init".as_ptr()) };
    // SAFETY: single-threaded: the child may run ordinary code until it execs.
    let rc = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            // Its own session: Debian's sendsigs spares the session it runs in.
            let _ = nix::unistd::setsid();
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGPWR] {
                // SAFETY: restoring defaults before exec.
                let _ = unsafe {
                    sigaction(
                        s,
                        &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
                    )
                };
            }
            let e = super::exec(argv, env, false);
            out.send(&Report::Error(e));
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let mut reported = false;
    loop {
        if QUIT.load(Ordering::SeqCst) {
            std::process::exit(0);
        }
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == rc && !reported => {
                out.send(&Report::Returned(code << 8));
                out.close();
                reported = true;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == rc && !reported => {
                out.send(&Report::Returned(sig as i32));
                out.close();
                reported = true;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            // No children left: wait for a signal instead of spinning.
            Err(nix::errno::Errno::ECHILD) => {
                if reported {
                    // SAFETY: pause(2) until a signal.
                    unsafe { libc::pause() };
                }
            }
            Err(_) => {}
        }
    }
}
