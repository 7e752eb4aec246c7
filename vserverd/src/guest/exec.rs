//! Processes inside a running guest (the stage's join mode): the stop command of an init
//! style, `vserverctl exec`, `enter`. The daemon is their parent and waits through a pidfd.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::plan;
use super::Running;
use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::error::{StepError, StepResult};
use crate::isolate::pidfd::{self, Exit};
use crate::stage::plan::Plan;
use crate::stage::spawn::{self, StageStdio};

/// Waits (without blocking a thread) until the process behind `fd` exits, and reaps it.
pub async fn wait_child(fd: &OwnedFd) -> std::io::Result<Exit> {
    let afd = crate::sys::fd::async_fd(fd.try_clone()?)?;
    loop {
        if let Some(e) = pidfd::try_reap(fd)? {
            return Ok(e);
        }
        let mut g = afd.readable().await?;
        g.clear_ready();
    }
}

/// What to run in a guest: the command, its whole environment, whether fd 0 is its
/// controlling terminal, and the guest's user to run it as (root when None).
pub struct GuestCommand {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub user: Option<String>,
}

/// Starts a command inside the guest; returns its pid and pidfd once it runs (or the error).
pub async fn spawn_in_guest(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    run: &Running,
    cmd: GuestCommand,
    stdio: StageStdio,
) -> Result<(i32, OwnedFd), StepError> {
    const STEP: &str = "join.spawn";
    let mut jp = plan::join_plan(
        c,
        &run.state.cgroup,
        (run.state.init_pid, run.state.init_start_time),
        cmd.argv,
        cmd.env,
        cmd.tty,
        cmd.user,
    );
    jp.confinement.sysinfo = super::virtmem::sysinfo_notify(&d.opts.run_dir, c);
    let init_v2 = std::fs::read_to_string(format!("/proc/{}/cgroup", run.state.init_pid))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(String::from)
        });
    jp.cgroups = run.state.cgroup.join_dirs(init_v2.as_deref());
    let image = d.image().step(STEP)?;
    let label = c.name.clone();
    let (outcome, fd) = tokio::task::spawn_blocking(move || {
        let mut fd = None;
        let r = spawn::run(
            &image,
            &Plan::Join(jp),
            stdio,
            &label,
            spawn::GuestWait::EXEC,
            |pid| fd = pidfd::open(pid).ok(),
        );
        (r, fd)
    })
    .await
    .step(STEP)?;
    let outcome = outcome.step(STEP)?;
    match (outcome.error, outcome.pid, fd) {
        (Some(e), _, fd) => {
            // The process may have been made and failed its exec, or be held on its way there
            // by guest root: end it and reap it.
            if let Some(fd) = fd {
                let _ = pidfd::send_signal(&fd, libc::SIGKILL);
                let _ = wait_child(&fd).await;
            }
            Err(e)
        }
        (None, Some(pid), Some(fd)) => Ok((pid, fd)),
        _ => Err(StepError::refused(STEP, "the stage reported no process")),
    }
}

/// A process started in a guest for a client: the client's ends of its stdio (stdin, stdout,
/// stderr; or one pty master), and the pidfd to wait on.
pub struct Session {
    pub pid: i32,
    pub client_fds: Vec<OwnedFd>,
    pub pidfd: OwnedFd,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(std::io::Error::from)
}

/// A pty pair from the guest's own devpts instance (so `tty` in the guest names a node that
/// exists there), reached through init's root with no symlink followed; the host's ptmx if
/// the guest has no devpts.
/// Opens `rel` inside the running guest whose init is `init_pid`, through init's root with no
/// symlink followed (guest root may have planted any).
fn open_in_guest(init_pid: i32, rel: &str, flags: rustix::fs::OFlags) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        format!("/proc/{init_pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(rustix::fs::openat2(
        &root,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

fn guest_pty(init_pid: i32) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let ptmx = match open_in_guest(init_pid, "dev/pts/ptmx", flags) {
        Ok(m) => m,
        Err(_) => rustix::fs::open("/dev/ptmx", flags, Mode::empty())?,
    };
    crate::sys::fd::new_pty(ptmx)
}

/// The guest's /dev/console (its console pty, logged by the keeper) opened for writing
/// (open_in_guest): where the output of the style's stop
/// command (sysv `rc 6`) goes, as it went to the console under util-vserver.
pub fn guest_console(init_pid: i32) -> Option<OwnedFd> {
    use rustix::fs::OFlags;
    open_in_guest(
        init_pid,
        "dev/console",
        OFlags::WRONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
    )
    .ok()
}

/// Starts `argv` in a running guest with fresh pipes (or a pty) for its stdio, as root or as
/// `user` of the guest.
pub async fn open_session(
    d: &Arc<Daemon>,
    name: &str,
    argv: Vec<String>,
    env: Vec<String>,
    tty: bool,
    user: Option<String>,
) -> Result<Session, proto::ManagerError> {
    let failed = |m: String| proto::ManagerError::failed(name.to_string(), m);
    d.check_name(name)?;
    let Some(run) = d.guests.running(name) else {
        return Err(proto::ManagerError::NotRunning { name: name.into() });
    };
    let c = d.load(name)?.config;
    if argv.is_empty() {
        return Err(failed("no command given".into()));
    }
    let io = |e: std::io::Error| failed(format!("making the command's stdio: {e}"));
    let (stdio, client_fds) = if tty {
        let (master, slave) = guest_pty(run.state.init_pid).map_err(io)?;
        let s2 = slave.try_clone().map_err(io)?;
        let s3 = slave.try_clone().map_err(io)?;
        (
            StageStdio {
                stdin: Some(slave),
                stdout: Some(s2),
                stderr: Some(s3),
            },
            vec![master],
        )
    } else {
        let (in_r, in_w) = pipe().map_err(io)?;
        let (out_r, out_w) = pipe().map_err(io)?;
        let (err_r, err_w) = pipe().map_err(io)?;
        (
            StageStdio {
                stdin: Some(in_r),
                stdout: Some(out_w),
                stderr: Some(err_w),
            },
            vec![in_w, out_r, err_r],
        )
    };
    if let Some(u) = &user {
        // The name is looked up in the guest; here only its shape is checked.
        if u.is_empty() || u.len() > 256 || u.contains([':', '\n', '\0']) {
            return Err(failed(format!("{u:?} is not a user name or uid")));
        }
    }
    let cmd = GuestCommand {
        argv,
        env,
        tty,
        user,
    };
    let (pid, pidfd) = spawn_in_guest(d, &c, &run, cmd, stdio)
        .await
        .map_err(|e| e.into_manager(name))?;
    Ok(Session {
        pid,
        client_fds,
        pidfd,
    })
}

/// The shell of `enter`: the guest's `shell` file, else /bin/bash where it exists, else /bin/sh.
pub fn enter_shell(c: &GuestConfig) -> Vec<String> {
    if let Some(s) = &c.shell {
        return s.clone();
    }
    let bash = c.vdir.join("bin/bash");
    if std::fs::symlink_metadata(bash).is_ok() {
        vec!["/bin/bash".into()]
    } else {
        vec!["/bin/sh".into()]
    }
}
