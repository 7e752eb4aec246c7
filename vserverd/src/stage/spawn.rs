//! The daemon's side of the stage: a sealed in-memory copy of our own binary, and running it
//! with a plan. A guest can reach a stage's or reaper's /proc/PID/exe, so the file behind it
//! must be one nobody can write (the runc CVE-2019-5736 class): a memfd with write seals.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::plan::{Plan, Report};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("preparing the stage binary: {0}")]
    Image(std::io::Error),
    #[error("running the stage: {0}")]
    Run(std::io::Error),
}

/// The sealed copy of /proc/self/exe the stages run from.
pub struct StageImage {
    fd: OwnedFd,
}

impl StageImage {
    pub fn new() -> Result<StageImage, SpawnError> {
        // SAFETY: memfd_create with a static name; the fd is ours.
        let raw = unsafe {
            libc::memfd_create(
                c"vserverd-stage".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(SpawnError::Image(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut src = std::fs::File::open(Self::source()).map_err(SpawnError::Image)?;
        let mut dst = std::fs::File::from(fd.try_clone().map_err(SpawnError::Image)?);
        std::io::copy(&mut src, &mut dst).map_err(SpawnError::Image)?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our memfd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(SpawnError::Image(std::io::Error::last_os_error()));
        }
        Ok(StageImage { fd })
    }

    /// The binary to seal: `vserverd-stage` beside ours (installed together), else our own
    /// (which runs the stage as `vserverd __stage` just the same).
    fn source() -> std::path::PathBuf {
        let sibling = std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("vserverd-stage")))
            .filter(|p| p.is_file());
        match sibling {
            Some(p) => p,
            None => {
                tracing::info!(
                    "no vserverd-stage beside the daemon: stages run the daemon's binary"
                );
                "/proc/self/exe".into()
            }
        }
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

/// The stage's stdio: what init (or the joined command) inherits; None is /dev/null.
#[derive(Default)]
pub struct StageStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl StageStdio {
    pub fn null() -> StageStdio {
        StageStdio::default()
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec duplicate at 10 or above, so that placing fds at 3 and 4 in the child
/// never overwrites a source still to be placed.
fn high(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// What a stage said: the pid of the process it made and, for a reaper, how the start command
/// returned; or the error that ended it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub pid: Option<i32>,
    pub returned: Option<i32>,
    pub error: Option<String>,
}

/// Runs a stage to completion: blocking, so call it from a blocking thread. Reads reports
/// until every writer is gone (the stage exited and its child exec'd, failed or, for a
/// reaper, closed the pipe after its command returned). `on_pid` sees the pid at once, so
/// the caller can take a pidfd on it before anything else can happen.
pub fn run(
    image: &StageImage,
    plan: &Plan,
    stdio: StageStdio,
    label: &str,
    mut on_pid: impl FnMut(i32),
) -> Result<Outcome, SpawnError> {
    let (plan_low, plan_w) = pipe().map_err(SpawnError::Run)?;
    let (rep_r, rep_low) = pipe().map_err(SpawnError::Run)?;
    let plan_r = high(&plan_low).map_err(SpawnError::Run)?;
    let rep_w = high(&rep_low).map_err(SpawnError::Run)?;
    // Every copy of the write end must be gone from the daemon, or the reports never end.
    drop((plan_low, rep_low));
    // The plan goes into the pipe before the stage exists, so the stage never waits for it.
    let json = serde_json::to_vec(plan).expect("plans serialize");
    if json.len() > 60_000 {
        // SAFETY: fcntl on our pipe; a bigger buffer so the write below cannot block.
        unsafe { libc::fcntl(plan_w.as_raw_fd(), libc::F_SETPIPE_SZ, json.len() + 4096) };
    }
    let mut w = std::fs::File::from(plan_w);
    w.write_all(&json).map_err(SpawnError::Run)?;
    drop(w);
    let null = || {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .and_then(|f| high(&f))
    };
    let mut sources = Vec::with_capacity(5);
    for fd in [stdio.stdin, stdio.stdout, stdio.stderr] {
        sources.push(match fd {
            Some(f) => high(&f).map_err(SpawnError::Run)?,
            None => null().map_err(SpawnError::Run)?,
        });
    }
    sources.push(plan_r);
    sources.push(rep_w);
    let spawned_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let pid = posix_spawn(image, label, &sources).map_err(SpawnError::Run)?;
    // The stage has its copies now.
    drop(sources);
    let mut out = Outcome::default();
    let mut helpers = Vec::new();
    for line in BufReader::new(std::fs::File::from(rep_r)).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Pid(p)) => {
                on_pid(p);
                out.pid = Some(p);
            }
            Ok(Report::Returned(s)) => out.returned = Some(s),
            Ok(Report::Helper(p)) => helpers.push(p),
            Ok(Report::Mark(step, at)) => {
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
                    .saturating_sub(at);
                tracing::debug!(
                    guest = label,
                    "stage: {step} at +{:.2} ms (read {:.2} ms later)",
                    (at.saturating_sub(spawned_at)) as f64 / 1e6,
                    since as f64 / 1e6
                );
            }
            Ok(Report::Error(e)) => {
                if out.error.is_none() {
                    out.error = Some(e);
                }
            }
            Err(_) => {}
        }
    }
    for h in helpers {
        reap(h);
    }
    let status = reap(pid);
    if out.error.is_none() && out.pid.is_none() && out.returned.is_none() {
        out.error = Some(format!(
            "the stage ended without a report (wait status {status})"
        ));
    }
    Ok(out)
}

/// Waits for `pid`, a child of ours that nothing else reaps; returns its wait status.
fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a child of ours.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    status
}

/// Starts the stage with posix_spawn: a vfork-style clone that is safe in a multi-threaded
/// process and, unlike fork, does not copy the daemon's page tables. `fds` become 0..fds.len().
fn posix_spawn(image: &StageImage, label: &str, fds: &[OwnedFd]) -> std::io::Result<i32> {
    use std::ffi::CString;
    use std::mem::MaybeUninit;
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    };
    let path = CString::new(image.path()).expect("no NUL");
    let arg0 = CString::new(format!("vserverd-stage {label}"))
        .unwrap_or_else(|_| c"vserverd-stage".into());
    let arg1 = CString::new(super::ARG).expect("no NUL");
    let argv = [
        arg0.as_ptr() as *mut libc::c_char,
        arg1.as_ptr() as *mut _,
        std::ptr::null_mut(),
    ];
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
                argv.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
        result
    }
}
