//! Watches a guest's init. Its exit is the guest's end; how it ended says why (the reboot
//! helper, docs/lifecycle.md): in a pid namespace, reboot(2) kills init and reports SIGHUP for a
//! restart and SIGINT for halt or power-off. Outside a stop that restarts or stops the guest as
//! apps/vshelper says; during a stop (helper disarmed) it is just the end the stop waits for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{stop, Running};
use crate::daemon::Daemon;
use crate::isolate::pidfd::{self, Exit};

pub fn spawn(d: Arc<Daemon>, name: String, run: Arc<Running>, tx: watch::Sender<Option<Exit>>) {
    tokio::spawn(async move {
        let exit = wait(&run).await;
        let _ = tx.send(Some(exit));
        if run.stopping() {
            return;
        }
        handle_exit(d, name, run, exit).await;
    });
}

/// Init's exit. For an adopted init (not our child) the zombie's stat gives the status while
/// the host's PID 1 has not reaped it, then the pidfd's exit info (Linux 6.15+); otherwise it
/// is unknown and counts as a plain exit (docs/crash.md, "Adopted guests on a reaping host").
async fn wait(run: &Running) -> Exit {
    let unknown = Exit::Code(-1);
    let Ok(fd) = run.pidfd.try_clone() else {
        return unknown;
    };
    let Ok(afd) = crate::sys::fd::async_fd(fd) else {
        return unknown;
    };
    loop {
        match pidfd::try_reap(&run.pidfd) {
            Ok(Some(e)) => return e,
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                // Not our child: the pidfd turns readable when it exits.
                if let Ok(mut g) = afd.readable().await {
                    g.clear_ready();
                }
                if pidfd::state(run.state.init_pid).is_none_or(|s| s == 'Z' || s == 'X')
                    || pidfd::start_time(run.state.init_pid) != Some(run.state.init_start_time)
                {
                    // A zombie still says; once the host's PID 1 has reaped it, the kernel
                    // may still (PIDFD_INFO_EXIT); else it is unknown.
                    return pidfd::zombie_exit(run.state.init_pid)
                        .or_else(|| pidfd::exit_info(&run.pidfd))
                        .unwrap_or(unknown);
                }
                continue;
            }
            Err(_) => return unknown,
        }
        match afd.readable().await {
            Ok(mut g) => g.clear_ready(),
            Err(_) => return unknown,
        }
    }
}

/// What the guest meant by ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    Restart,
    Halt,
    Exited,
}

pub fn meaning(e: Exit) -> Meaning {
    match e {
        Exit::Signal(s) if s == libc::SIGHUP => Meaning::Restart,
        Exit::Signal(s) if s == libc::SIGINT => Meaning::Halt,
        _ => Meaning::Exited,
    }
}

#[tracing::instrument(name = "exit", skip_all, fields(guest = %name, context = run.state.context))]
async fn handle_exit(d: Arc<Daemon>, name: String, run: Arc<Running>, exit: Exit) {
    let lock = d.guests.lock(&name);
    let held = lock.lock().await;
    if run.stopping() || !d.guests.is_current(&name, &run) {
        return;
    }
    run.disarm();
    let m = meaning(exit);
    let (event, msg) = match m {
        Meaning::Restart => ("reboot", "the guest rebooted".to_string()),
        Meaning::Halt => ("halt", "the guest halted".to_string()),
        Meaning::Exited => ("exited", format!("init ended ({exit})")),
    };
    tracing::info!(guest = name, "{msg}");
    d.guests.emit(&name, event, Some(msg.clone()));
    let cfg = d.load(&name).ok().map(|l| l.config);
    let helper_on = cfg.as_ref().is_some_and(|c| !c.vshelper.disabled);
    let restart = m == Meaning::Restart
        && helper_on
        && cfg.as_ref().is_some_and(|c| c.vshelper.action == "restart");
    // A reboot owed is on disk before the guest is torn down: a daemon that dies between the
    // teardown and the start leaves it to the next one (restart_owed), so a rebooting guest
    // never just stays down.
    if restart {
        let _ = std::fs::write(reboot_marker(&d.opts.run_dir, &name), b"");
    }
    stop::teardown(&d, &name, &run, cfg.as_ref()).await;
    let _ = crate::fault::point("reboot.torn-down");
    d.guests.set_last(&name, Some(msg));
    d.guests.emit(&name, "stopped", None);
    drop(held);
    if restart {
        // A guest that reboots in a loop is throttled, not spun.
        tokio::time::sleep(Duration::from_millis(100)).await;
        restart_after_reboot(&d, &name).await;
    }
}

fn reboot_marker(run_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    run_dir.join("guests").join(format!("{name}.reboot"))
}

/// A deleted guest owes no reboot.
pub fn forget_reboot(run_dir: &std::path::Path, name: &str) {
    let _ = std::fs::remove_file(reboot_marker(run_dir, name));
}

async fn restart_after_reboot(d: &Arc<Daemon>, name: &str) {
    let p = crate::guest::progress::Progress::none();
    if let Err(e) = super::start::start(d, name, &p).await {
        tracing::warn!(guest = name, "restart after reboot failed: {e}");
    }
    let _ = std::fs::remove_file(reboot_marker(&d.opts.run_dir, name));
}

/// At daemon start: the guests an earlier daemon was rebooting when it died, started now.
pub fn restart_owed(d: &Arc<Daemon>) {
    let Ok(rd) = std::fs::read_dir(d.opts.run_dir.join("guests")) else {
        return;
    };
    for e in rd.flatten() {
        let Some(name) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".reboot"))
            .map(String::from)
        else {
            continue;
        };
        if d.guests.running(&name).is_some() {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        tracing::info!(
            guest = name,
            "an earlier vserverd died while this guest rebooted: starting it"
        );
        let d = d.clone();
        tokio::spawn(async move { restart_after_reboot(&d, &name).await });
    }
}
