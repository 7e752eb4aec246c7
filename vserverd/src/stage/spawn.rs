//! The daemon's side of the stage: a sealed in-memory copy of our own binary, and running it
//! with a plan. A guest can reach a stage's or reaper's /proc/PID/exe, so the file behind it
//! must be one nobody can write (the runc CVE-2019-5736 class): a memfd with write seals.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use super::plan::{Plan, Report};
use crate::sys;

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
        let fd = sys::fd::memfd_sealable(c"vserverd-stage").map_err(SpawnError::Image)?;
        let mut src = std::fs::File::open(Self::source()).map_err(SpawnError::Image)?;
        let mut dst = std::fs::File::from(fd.try_clone().map_err(SpawnError::Image)?);
        std::io::copy(&mut src, &mut dst).map_err(SpawnError::Image)?;
        sys::fd::seal_contents(&fd).map_err(SpawnError::Image)?;
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

/// A close-on-exec duplicate at 10 or above, so that placing fds at 3 and 4 in the child
/// never overwrites a source still to be placed.
fn high(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    sys::fd::dup_at_least(fd, 10)
}

/// What a stage said: the pid of the process it made and, for a reaper, how the start command
/// returned; or the error that ended it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub pid: Option<i32>,
    pub returned: Option<i32>,
    pub error: Option<crate::error::StepError>,
}

/// How long the daemon reads the guest channel (stage/report.rs) of a stage: until the guest's
/// process exec'd (or, for a reaper, its start command returned). `what` names the wait in the
/// error when the bound passes: "the start command", "the command".
#[derive(Debug, Clone, Copy)]
pub struct GuestWait {
    pub limit: std::time::Duration,
    pub what: &'static str,
}

impl GuestWait {
    /// A process that only has to reach execve: guest root could stop it on the way.
    pub const EXEC: GuestWait = GuestWait {
        limit: std::time::Duration::from_secs(30),
        what: "the command",
    };
}

/// Runs a stage to completion: blocking, so call it from a blocking thread. Reads the trusted
/// reports until every trusted writer (the stage, its helpers) is gone, and the guest channel
/// until the guest's process exec'd, reported, or `wait` passed. `on_pid` sees the pid at
/// once, so the caller can take a pidfd on it before anything else can happen.
pub fn run(
    image: &StageImage,
    plan: &Plan,
    stdio: StageStdio,
    label: &str,
    wait: GuestWait,
    mut on_pid: impl FnMut(i32),
) -> Result<Outcome, SpawnError> {
    let (plan_low, plan_w) = sys::fd::pipe().map_err(SpawnError::Run)?;
    let (rep_r, rep_low) = sys::fd::pipe().map_err(SpawnError::Run)?;
    let (guest_r, guest_low) = sys::fd::pipe().map_err(SpawnError::Run)?;
    let plan_r = high(&plan_low).map_err(SpawnError::Run)?;
    let rep_w = high(&rep_low).map_err(SpawnError::Run)?;
    let guest_w = high(&guest_low).map_err(SpawnError::Run)?;
    // Every copy of the write ends must be gone from the daemon, or the reports never end.
    drop((plan_low, rep_low, guest_low));
    // The plan goes into the pipe before the stage exists, so the stage never waits for it.
    let json = serde_json::to_vec(plan).expect("plans serialize");
    if json.len() > 60_000 {
        // A bigger buffer so the write below cannot block.
        let _ = sys::fd::set_pipe_size(&plan_w, json.len() + 4096);
    }
    let mut w = std::fs::File::from(plan_w);
    w.write_all(&json).map_err(SpawnError::Run)?;
    drop(w);
    let null = || {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .and_then(|f| high(&f))
    };
    let mut sources = Vec::with_capacity(6);
    for fd in [stdio.stdin, stdio.stdout, stdio.stderr] {
        sources.push(match fd {
            Some(f) => high(&f).map_err(SpawnError::Run)?,
            None => null().map_err(SpawnError::Run)?,
        });
    }
    sources.push(plan_r);
    sources.push(rep_w);
    sources.push(guest_w);
    let spawned_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let pid = posix_spawn(image, label, &sources).map_err(SpawnError::Run)?;
    // The stage has its copies now.
    drop(sources);
    let stage = crate::isolate::pidfd::open(pid).map_err(SpawnError::Run)?;
    let mut reader = Reader {
        label,
        spawned_at,
        out: Outcome::default(),
        helpers: Vec::new(),
    };
    let r = reader.read(rep_r, guest_r, stage, wait, &mut on_pid);
    for h in std::mem::take(&mut reader.helpers) {
        reap(h);
    }
    let status = reap(pid);
    r.map_err(SpawnError::Run)?;
    let mut out = reader.out;
    if out.error.is_none() && out.pid.is_none() && out.returned.is_none() {
        out.error = Some(crate::error::StepError::refused(
            "stage.report",
            format!("the stage ended without a report (wait status {status})"),
        ));
    }
    Ok(out)
}

/// One stage's reports as they come in.
struct Reader<'a> {
    label: &'a str,
    spawned_at: u128,
    out: Outcome,
    helpers: Vec<i32>,
}

impl Reader<'_> {
    /// The poll loop over both channels and the trusted writers' pidfds. The trusted channel
    /// ends at its EOF or once every trusted writer exited (a guest process that has not closed
    /// its inherited copy yet cannot hold it open); the guest channel at its EOF, its first
    /// error or wait status, its byte bound or `wait`.
    fn read(
        &mut self,
        trusted: OwnedFd,
        guest: OwnedFd,
        stage: OwnedFd,
        wait: GuestWait,
        on_pid: &mut impl FnMut(i32),
    ) -> std::io::Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + wait.limit;
        let mut trusted = Some(trusted);
        let mut guest = Some(guest);
        let mut writers = vec![stage];
        let mut t_lines = super::report::Lines::new(1 << 20);
        let mut g_lines = super::report::Lines::new(super::report::GUEST_BYTES);
        let mut buf = [0u8; 4096];
        let mut tracked = 0;
        while trusted.is_some() || guest.is_some() {
            // Helpers the stage reported write on the trusted channel too.
            while tracked < self.helpers.len() {
                writers.push(crate::isolate::pidfd::open(self.helpers[tracked])?);
                tracked += 1;
            }
            let timeout = match &guest {
                Some(_) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        guest = None;
                        self.error(crate::error::StepError::refused(
                            "stage.wait",
                            format!(
                                "{} did not start within {} s",
                                wait.what,
                                wait.limit.as_secs()
                            ),
                        ));
                        continue;
                    }
                    PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let ev = PollFlags::POLLIN;
            let mut fds: Vec<PollFd> = Vec::with_capacity(2 + writers.len());
            if let Some(t) = &trusted {
                fds.push(PollFd::new(t.as_fd(), ev));
            }
            if let Some(g) = &guest {
                fds.push(PollFd::new(g.as_fd(), ev));
            }
            if trusted.is_some() {
                fds.extend(writers.iter().map(|w| PollFd::new(w.as_fd(), ev)));
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let mut i = 0;
            if let Some(t) = &trusted {
                if ready[i] {
                    let n = read_some(t, &mut buf)?;
                    if n == 0 {
                        trusted = None;
                    }
                    for l in t_lines.push(&buf[..n]) {
                        self.trusted_line(&l, on_pid);
                    }
                }
                i += 1;
            }
            if let Some(g) = &guest {
                if ready[i] {
                    let n = read_some(g, &mut buf)?;
                    let mut done = n == 0;
                    for l in g_lines.push(&buf[..n]) {
                        done |= self.guest_line(&l);
                    }
                    if g_lines.overflowed() {
                        self.error(crate::error::StepError::refused(
                            "stage.report",
                            "the guest wrote too much on its report channel",
                        ));
                        done = true;
                    }
                    if done {
                        guest = None;
                    }
                }
                i += 1;
            }
            if let Some(t) = &trusted {
                // A trusted writer that exited wrote all it had: what is left is in the pipe.
                let before = writers.len();
                let mut k = i;
                writers.retain(|_| {
                    k += 1;
                    !ready[k - 1]
                });
                if before > 0 && writers.is_empty() {
                    set_nonblocking(t)?;
                    loop {
                        match read_some(t, &mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                for l in t_lines.push(&buf[..n]) {
                                    self.trusted_line(&l, on_pid);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    // A helper reported in the drain keeps the channel open for its reports.
                    if tracked == self.helpers.len() {
                        trusted = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn error(&mut self, e: crate::error::StepError) {
        if self.out.error.is_none() {
            self.out.error = Some(e);
        }
    }

    fn trusted_line(&mut self, line: &[u8], on_pid: &mut impl FnMut(i32)) {
        match serde_json::from_slice::<Report>(line) {
            // CLONE_PARENT makes every process a stage makes our child: anything else is a
            // report we did not expect, never a pid to act on.
            Ok(Report::Pid(p) | Report::Helper(p)) if !is_our_child(p) => {
                self.error(crate::error::StepError::refused(
                    "stage.report",
                    format!("the stage reported pid {p}, not a child of the daemon"),
                ))
            }
            Ok(Report::Pid(p)) => {
                on_pid(p);
                self.out.pid = Some(p);
            }
            Ok(Report::Returned(s)) => self.out.returned = Some(s),
            Ok(Report::Helper(p)) => self.helpers.push(p),
            Ok(Report::Mark(step, at)) => self.mark(&step, at),
            Ok(Report::Error(e)) => self.error(e),
            Err(_) => {}
        }
    }

    /// Returns true once the guest channel said what it had to say.
    fn guest_line(&mut self, line: &[u8]) -> bool {
        match super::report::from_guest(line) {
            Some(Report::Mark(step, at)) => {
                self.mark(&step, at);
                false
            }
            Some(Report::Returned(s)) => {
                if self.out.returned.is_none() {
                    self.out.returned = Some(s);
                }
                true
            }
            Some(Report::Error(e)) => {
                self.error(e);
                true
            }
            _ => false,
        }
    }

    fn mark(&self, step: &str, at: u128) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .saturating_sub(at);
        tracing::debug!(
            guest = self.label,
            "stage: {step} at +{:.2} ms (read {:.2} ms later)",
            (at.saturating_sub(self.spawned_at)) as f64 / 1e6,
            since as f64 / 1e6
        );
    }
}

/// Whether the kernel says `pid`'s parent is this process.
fn is_our_child(pid: i32) -> bool {
    pid > 0 && crate::isolate::pidfd::parent(pid) == Some(std::process::id())
}

fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    sys::fd::set_nonblocking(fd)
}

/// Waits for `pid`, a child of ours that nothing else reaps; returns its wait status.
fn reap(pid: i32) -> i32 {
    loop {
        match sys::process::waitpid(pid) {
            Ok(status) => return status,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => return 0,
        }
    }
}

/// Starts the stage with posix_spawn: a vfork-style clone that is safe in a multi-threaded
/// process and, unlike fork, does not copy the daemon's page tables. `fds` become 0..fds.len().
fn posix_spawn(image: &StageImage, label: &str, fds: &[OwnedFd]) -> std::io::Result<i32> {
    use std::ffi::CString;
    let path = CString::new(image.path()).expect("no NUL");
    let arg0 = CString::new(format!("vserverd-stage {label}"))
        .unwrap_or_else(|_| c"vserverd-stage".into());
    let arg1 = CString::new(super::ARG).expect("no NUL");
    sys::process::spawn(&path, &[&arg0, &arg1], fds)
}
