//! The helper processes that outlive the daemon (the /proc server, the console keeper): how
//! the daemon starts one (its own binary with a hidden first argument, waited for until the
//! helper has set itself up), and how a helper leaves its starter behind (fork; the parent
//! writes the pid file and exits 0, the child serves in a session of its own).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// Runs `/proc/self/exe ARG PATH` as `name` (its argv[0], what ps shows) and waits for it: it
/// returns once the helper is ready. `what` names the helper in errors.
pub fn start(name: &str, arg: &str, path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let out = Command::new("/proc/self/exe")
        .arg0(name)
        .arg(arg)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("starting the {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the {what} did not start ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// In the helper, once it is ready: names the process `name` (before the fork, so the pid in
/// `pid_file` carries that name from its first instant), forks, and runs `serve` in the child
/// — a new session, stdio on /dev/null, cwd / — while the parent writes the child's pid to
/// `pid_file` and leaves at once, without running destructors (a FUSE session's would unmount).
/// Must be called while the process is single-threaded.
pub fn serve(name: &std::ffi::CStr, pid_file: &Path, serve: impl FnOnce()) -> ExitCode {
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    // SAFETY: single-threaded, as documented.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("fork: {}", std::io::Error::last_os_error());
            ExitCode::FAILURE
        }
        0 => {
            // SAFETY: plain syscalls on our own process and fds.
            unsafe {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
                if null > 2 {
                    libc::close(null);
                }
            }
            let _ = std::env::set_current_dir("/");
            serve();
            ExitCode::SUCCESS
        }
        child => {
            // Written before the starter hears of success, so it always finds the new pid.
            let _ = std::fs::write(pid_file, format!("{child}\n"));
            // SAFETY: leave without running destructors; the child owns what was set up.
            unsafe { libc::_exit(0) }
        }
    }
}
