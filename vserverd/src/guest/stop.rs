//! Stopping a guest (docs/lifecycle.md, Stop): disarm the reboot helper →
//! pre-stop hooks → the style's stop (SIGINT to a plain init, `rc 6` for sysv, cmd.stop) →
//! wait up to sync-timeout → killseq → cgroup-wide kill → remove cgroup and run state →
//! post-stop and postpost-stop hooks. No guest process outlives it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{GuestState, ManagerError};

use super::{exec, plan, runstate, Running};
use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::error::StepResult;
use crate::guest::progress::Progress;
use crate::isolate::pidfd;
use crate::stage::spawn::StageStdio;

#[tracing::instrument(name = "stop", skip_all, fields(guest = name, context, step))]
pub async fn stop(d: &Arc<Daemon>, name: &str, p: &Progress) -> Result<(), ManagerError> {
    d.check_name(name)?;
    let t0 = std::time::Instant::now();
    let lock = d.guests.lock(name);
    let _held = lock.lock().await;
    let Some(run) = d.guests.running(name) else {
        p.send(
            name,
            "not-running",
            &format!("vserver '{name}' is not running"),
            GuestState::Stopped,
        );
        return Ok(());
    };
    tracing::Span::current().record("context", run.state.context);
    run.disarm();
    d.guests.set_transition(name, Some(GuestState::Stopping));
    d.guests.emit(name, "stopping", None);
    // A guest whose config broke while it ran is still stopped, with the defaults.
    let cfg = d.load(name).ok().map(|l| l.config);
    shut_down(d, &run, cfg.as_ref(), p).await;
    let _ = crate::fault::point("stop.ended");
    let t1 = t0.elapsed();
    teardown(d, name, &run, cfg.as_ref()).await;
    tracing::info!(
        guest = name,
        "stopped in {:.1} ms ({:.1} ms until its processes were gone)",
        t0.elapsed().as_secs_f64() * 1e3,
        t1.as_secs_f64() * 1e3
    );
    d.guests.set_transition(name, None);
    d.guests.set_last(name, None);
    d.guests.emit(name, "stopped", None);
    p.send(
        name,
        "stopped",
        "no process of the guest is left",
        GuestState::Stopped,
    );
    Ok(())
}

/// Ends every process of the guest, politely first.
async fn shut_down(d: &Arc<Daemon>, run: &Arc<Running>, c: Option<&GuestConfig>, p: &Progress) {
    let name = run.state.name.as_str();
    let timeout = Duration::from_secs(c.map_or(30, |c| c.vshelper.sync_timeout as u64));
    if let Some(c) = c {
        if let Err(e) = super::start::run_hook(c, "pre-stop", false).await {
            tracing::warn!(guest = name, "{e}");
        }
    }
    let cmds = c.and_then(|c| plan::init_commands(c).ok());
    // The stop signal, when the style stops by signal: sent again while we wait, since a pid
    // namespace's init drops a signal it has no handler for yet (a guest stopped right after
    // it started), and /proc cannot tell (busybox init waits in sigtimedwait).
    let mut resend: Option<i32> = None;
    match (&cmds, c) {
        (Some(cmds), Some(c)) if cmds.stop.is_some() => {
            let argv = cmds.stop.clone().unwrap_or_default();
            p.send(name, "stop", &argv.join(" "), GuestState::Stopping);
            let mut env = c.init.environment.clone();
            env.extend(cmds.stop_env.iter().cloned());
            // Its output on the guest's console (and so in the console log).
            let console = exec::guest_console(run.state.init_pid);
            let stdio = StageStdio {
                stdin: None,
                stdout: console.as_ref().and_then(|f| f.try_clone().ok()),
                stderr: console,
            };
            // util-vserver ran it on the caller's terminal: a caller that asks gets what the
            // console shows until it returns.
            let relay =
                crate::console::relay::start(&d.opts.run_dir, name, p, GuestState::Stopping).await;
            let cmd = exec::GuestCommand {
                argv: argv.clone(),
                env,
                tty: false,
                user: None,
            };
            match exec::spawn_in_guest(d, c, run, cmd, stdio).await {
                Ok((_, fd)) => {
                    let waited = tokio::time::timeout(timeout, exec::wait_child(&fd)).await;
                    if waited.is_err() {
                        p.send(
                            name,
                            "stop",
                            &format!(
                                "{} did not return within {}s",
                                argv.join(" "),
                                timeout.as_secs()
                            ),
                            GuestState::Stopping,
                        );
                        // Reaped below once the cgroup kill ended it.
                        tokio::spawn(async move {
                            let _ = exec::wait_child(&fd).await;
                        });
                    }
                }
                Err(e) => p.send(
                    name,
                    "stop",
                    &format!("stop command failed: {e}"),
                    GuestState::Stopping,
                ),
            }
            if let Some(r) = relay {
                r.finish().await;
            }
        }
        _ => {
            let sig = cmds.as_ref().map_or(libc::SIGINT, |c| c.stop_signal);
            p.send(
                name,
                "stop",
                &format!("signal {} to init", pidfd::signal_name(sig)),
                GuestState::Stopping,
            );
            let _ = pidfd::send_signal(&run.pidfd, sig);
            resend = Some(sig);
        }
    }
    let _ = crate::fault::point("stop.signalled");
    // Wait for the guest to end: init gone, or (a reaper style) nothing but the reaper left.
    let deadline = Instant::now() + timeout;
    let mut next_resend = Instant::now() + Duration::from_millis(250);
    while !run.has_exited() && Instant::now() < deadline {
        if run.state.reaper && only_init_left(run) {
            break;
        }
        run.wait_exit(Duration::from_millis(20)).await;
        if let Some(sig) = resend {
            if Instant::now() >= next_resend && !run.has_exited() {
                let _ = pidfd::send_signal(&run.pidfd, sig);
                next_resend = Instant::now() + Duration::from_millis(250);
            }
        }
    }
    // killseq: each signal to init and then every process, then wait (docs/lifecycle.md, Stop).
    let killseq = c
        .map(|c| c.init.killseq.clone())
        .unwrap_or_else(crate::config::init::default_killseq);
    for step in killseq {
        if run.has_exited() && run.state.cgroup.pids().is_empty() {
            break;
        }
        let _ = pidfd::send_signal(&run.pidfd, step.signal);
        run.state.cgroup.signal(step.signal);
        if let Some(w) = step.wait {
            let until = Instant::now() + Duration::from_secs(w as u64);
            while Instant::now() < until
                && !(run.has_exited() && run.state.cgroup.pids().is_empty())
            {
                run.wait_exit(Duration::from_millis(20)).await;
            }
        }
    }
}

fn only_init_left(run: &Running) -> bool {
    let pids = run.state.cgroup.pids();
    pids.len() <= 1 && pids.iter().all(|p| *p == run.state.init_pid)
}

/// Removes what a guest run left, whether it was stopped or ended by itself: kills what is
/// left in its cgroup, removes the cgroup, run state and run file, runs the stop hooks.
pub async fn teardown(d: &Arc<Daemon>, name: &str, run: &Arc<Running>, c: Option<&GuestConfig>) {
    let cg = run.state.cgroup.clone();
    let (run_dir, n) = (d.opts.run_dir.clone(), name.to_string());
    let killed = tokio::task::spawn_blocking(move || {
        let r = crate::fault::point("stop.cgroup")
            .and_then(|()| cg.kill().and_then(|()| cg.remove()).step("stop.cgroup"));
        crate::console::close(&run_dir, &n);
        r
    })
    .await
    .unwrap_or_else(|e| Err(crate::error::Cause::from(e).at("stop.cgroup")));
    // A cgroup that would not go keeps the run state: the next daemon finds the guest ended
    // and takes its cgroup back then (adopt.rs), instead of leaving it behind unnamed.
    let keep_state = match &killed {
        Ok(()) => false,
        Err(e) => {
            tracing::warn!(
                guest = name,
                "{e}; its run state is kept, so the next vserverd start retries"
            );
            true
        }
    };
    if !run.wait_exit(Duration::from_secs(10)).await {
        tracing::warn!(
            guest = name,
            "init {} did not exit after the cgroup kill",
            run.state.init_pid
        );
    }
    if let Some(c) = c {
        if let Err(e) = super::start::run_hook(c, "post-stop", false).await {
            tracing::warn!(guest = name, "{e}");
        }
    }
    if let Some(f) = &run.state.run_file {
        let _ = std::fs::remove_file(f);
    }
    if let Some(n) = super::network::of_state(&run.state) {
        let _ = tokio::task::spawn_blocking(move || super::network::remove(&n)).await;
    }
    // The programs go only with the guest's processes: a stop whose kill failed keeps them.
    if let (Some(s), false) = (run.state.shared_net.clone(), keep_state) {
        let (rd, n) = (d.opts.run_dir.clone(), name.to_string());
        let _ = tokio::task::spawn_blocking(move || super::sharednet::remove(&rd, &n, &s)).await;
    }
    let _ = crate::fault::point("stop.network");
    // As util-vserver's stop: a stopped guest's tree has no limit (the marks stay).
    let disk = run.disk.lock().map(|d| d.clone()).unwrap_or_default();
    if !disk.is_empty() && !keep_state {
        let n = name.to_string();
        let _ = tokio::task::spawn_blocking(move || super::disk::clear(&n, &disk)).await;
    }
    if !keep_state {
        runstate::remove(&d.opts.run_dir, name);
    }
    d.guests.set_running(name, None);
    if let Some(c) = c {
        if let Err(e) = super::start::run_hook(c, "postpost-stop", false).await {
            tracing::warn!(guest = name, "{e}");
        }
    }
}
