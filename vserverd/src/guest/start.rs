//! Starting a guest (docs/lifecycle.md, Start): config → lock → initialize and
//! prepre-start hooks → cgroup → pre-start hooks → stage (namespaces, mounts, PID 1) → run
//! state → post-start hooks → running. Every step that leaves something behind pushes its undo;
//! a failure unwinds them all, so a failed start leaves no process, cgroup or file.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::{GuestState, ManagerError};

use super::network::GuestNet;
use super::pending::{self, Pending};
use super::runstate::{self, RunState};
use super::sharednet::SharedNet;
use super::{hooks, plan, supervise, Running};
use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::error::{StepError, StepResult};
use crate::fault;
use crate::guest::progress::Progress;
use crate::isolate::cgroup::GuestCgroup;
use crate::isolate::pidfd;
use crate::stage::plan::Plan;
use crate::stage::spawn::{self, StageStdio};

/// The /proc files the /proc server serves the guest (virt_mem, virt_cpu …), by name.
type ProcFiles = Vec<(String, std::path::PathBuf)>;

/// What a failed start must take back, newest last.
#[derive(Default)]
struct Undo {
    cgroup: Option<GuestCgroup>,
    running: Option<Arc<Running>>,
    init: Option<std::os::fd::OwnedFd>,
    run_file: Option<std::path::PathBuf>,
    state: bool,
    net: Option<super::network::GuestNet>,
    shared: Option<super::sharednet::SharedNet>,
    disk: Vec<crate::disk::Applied>,
}

impl Undo {
    async fn unwind(self, d: &Arc<Daemon>, name: &str) {
        if let Some(r) = &self.running {
            r.disarm();
        }
        if let Some(cg) = &self.cgroup {
            let cg = cg.clone();
            let (run_dir, n) = (d.opts.run_dir.clone(), name.to_string());
            let _ = tokio::task::spawn_blocking(move || {
                let _ = cg.kill();
                crate::console::close(&run_dir, &n);
            })
            .await;
        }
        if let Some(r) = &self.running {
            // The supervisor reaps init; wait for it so nothing of this run is left.
            r.wait_exit(Duration::from_secs(10)).await;
            d.guests.set_running(name, None);
        } else if let Some(fd) = &self.init {
            let _ = super::exec::wait_child(fd).await;
        }
        if let Some(f) = &self.run_file {
            let _ = std::fs::remove_file(f);
        }
        if let Some(n) = self.net.clone() {
            let _ = tokio::task::spawn_blocking(move || super::network::remove(&n)).await;
        }
        if let Some(s) = self.shared.clone() {
            let (run_dir, n) = (d.opts.run_dir.clone(), name.to_string());
            let _ = tokio::task::spawn_blocking(move || super::sharednet::remove(&run_dir, &n, &s))
                .await;
        }
        if !self.disk.is_empty() {
            let (n, disk) = (name.to_string(), self.disk.clone());
            let _ = tokio::task::spawn_blocking(move || super::disk::clear(&n, &disk)).await;
        }
        if self.state {
            runstate::remove(&d.opts.run_dir, name);
        }
        if let Some(cg) = self.cgroup {
            if let Err(e) = tokio::task::spawn_blocking(move || cg.remove())
                .await
                .unwrap_or(Ok(()))
            {
                tracing::warn!(guest = name, "rollback: {e}");
            }
        }
    }
}

pub fn hook_env(c: &GuestConfig) -> Vec<(&'static str, String)> {
    vec![
        ("VSERVER_DIR", c.vdir.display().to_string()),
        ("VSERVER_CFGDIR", c.cfg_dir.display().to_string()),
        ("VSERVER_CONTEXT", c.context.to_string()),
    ]
}

/// Runs the guest's `hook` scripts (step `hook.HOOK` when one fails).
pub async fn run_hook(c: &GuestConfig, hook: &str, strict: bool) -> Result<(), StepError> {
    let Some(h) = c.hooks.iter().find(|h| h.name == hook) else {
        return Ok(());
    };
    // The lifecycle's journal STEP while the hook runs (a failing hook is the failing step).
    tracing::Span::current().record("step", hook);
    // Always the config folder: a relative path in a hook must never resolve inside the guest
    // root, where guest root's symlinks lead to host files. VSERVER_DIR names the root.
    hooks::run(h, &c.name, &c.cfg_dir, &hook_env(c), strict)
        .await
        .step(&format!("hook.{hook}"))
}

/// Starts `name`. Returns once init runs (plain styles) or the start command returned
/// (reaper styles), and the post-start hooks ran.
// The span's fields are every line's journal fields while the start runs (crate::journal).
#[tracing::instrument(name = "start", skip_all, fields(guest = name, context, step))]
pub async fn start(d: &Arc<Daemon>, name: &str, p: &Progress) -> Result<(), ManagerError> {
    let t0 = std::time::Instant::now();
    let loaded = d.load(name)?;
    tracing::Span::current().record("context", loaded.config.context);
    let lock = d.guests.lock(name);
    let _held = lock.lock().await;
    if d.guests.running(name).is_some() {
        return Err(ManagerError::AlreadyRunning { name: name.into() });
    }
    d.guests.set_transition(name, Some(GuestState::Starting));
    d.guests.emit(name, "starting", None);
    for w in &loaded.warnings {
        p.send(
            name,
            "config",
            &format!("warning: {w}"),
            GuestState::Starting,
        );
    }
    let mut undo = Undo::default();
    let r = steps(d, &loaded.config, p, &mut undo).await;
    d.guests.set_transition(name, None);
    match r {
        Ok(()) => {
            tracing::info!(
                guest = name,
                "started in {:.1} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
            d.guests.set_last(name, None);
            d.guests.emit(name, "running", None);
            p.send(name, "running", "init runs", GuestState::Running);
            Ok(())
        }
        Err(e) => {
            undo.unwind(d, name).await;
            pending::remove(&d.opts.run_dir, name);
            let msg = e.to_string();
            // Warned: a start that fails is what an admin looks for (journal: GUEST, STEP).
            tracing::warn!(
                guest = name,
                failed_step = e.step,
                errno = e.errno_name(),
                "start failed: {msg}"
            );
            d.guests
                .set_last(name, Some(format!("start failed: {msg}")));
            d.guests.emit(name, "failed", Some(msg.clone()));
            Err(e.into_manager(name))
        }
    }
}

async fn steps(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    undo: &mut Undo,
) -> Result<(), StepError> {
    let name = c.name.as_str();
    if !c.vdir.is_dir() {
        return Err(StepError::refused(
            "start.config",
            format!("the guest root {} does not exist", c.vdir.display()),
        )
        .on(&c.vdir));
    }
    // Bad init settings fail before anything is made.
    let cmds = plan::init_commands(c).step("start.config")?;
    run_hook(c, "initialize", true).await?;
    run_hook(c, "prepre-start", true).await?;

    // The journal is on disk before anything is made, and names each thing before it is made:
    // a daemon killed in between leaves nothing the next one cannot take back (pending.rs).
    let run_dir = d.opts.run_dir.as_path();
    let mut journal = Pending::default();
    pending::save(run_dir, name, &journal)?;
    fault::point("start.journal")?;

    // Disk limits next, as util-vserver's start set them before the interfaces.
    disk_limits(c, p, run_dir, undo, &mut journal).await?;
    let (shared, net) = network(d, c, p, undo, &mut journal).await?;
    let cg = cgroup(d, c, p, undo, &mut journal).await?;
    if let Some(s) = &shared {
        socket_programs(run_dir, c, p, &cg, s).await?;
    }
    fault::point("start.bpf")?;
    limits(c, p, &cg)?;
    fault::point("start.limits")?;
    run_hook(c, "pre-start", true).await?;
    fault::point("start.pre-start")?;

    let (pid, fd, outcome, proc_files) =
        spawn_init(d, c, p, &cg, net.as_ref(), shared.is_some(), undo).await?;
    let state = RunState {
        version: runstate::VERSION,
        name: name.to_string(),
        context: c.context,
        init_pid: pid,
        init_start_time: pidfd::start_time(pid).unwrap_or(0),
        pid_ns: pidfd::ns_inode(pid, "pid").unwrap_or(0),
        mnt_ns: pidfd::ns_inode(pid, "mnt").unwrap_or(0),
        cgroup: cg,
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        reaper: cmds.reaper,
        run_file: c.run_file.clone(),
        netns: net.as_ref().map(|n| n.ns.clone()),
        host_veth: net.as_ref().and_then(|n| n.host_veth.clone()),
        extra_veths: net.as_ref().map(|n| n.veths.clone()).unwrap_or_default(),
        netns_shared: net.as_ref().is_some_and(|n| n.shared),
        shared_net: shared,
        proc_files,
        boot_id: runstate::boot_id(),
        disk: undo.disk.clone(),
    };
    fault::point("start.spawned")?;
    let (running, tx) = Running::new(state.clone(), Some(Arc::new(c.clone())), fd, false);
    undo.running = Some(running.clone());
    d.guests.set_running(name, Some(running.clone()));
    supervise::spawn(d.clone(), name.to_string(), running.clone(), tx);
    if let Some(e) = outcome.error {
        return Err(e);
    }
    if let Some(status) = outcome.returned {
        if status != 0 {
            let how = if status & 0x7f == 0 {
                format!("exit status {}", status >> 8)
            } else {
                format!("signal {}", status & 0x7f)
            };
            return Err(StepError::refused(
                "start.command",
                format!("{} returned {how}", cmds.start.join(" ")),
            ));
        }
    }
    record(d, c, &state, undo).await?;
    if let Some(e) = *running.exited.borrow() {
        return Err(StepError::refused(
            "start.post-start",
            format!("init exited at once ({e})"),
        ));
    }
    Ok(())
}

/// dlimits/: the limits named in the journal and in `undo`, then set (disk/).
async fn disk_limits(
    c: &GuestConfig,
    p: &Progress,
    run_dir: &std::path::Path,
    undo: &mut Undo,
    journal: &mut Pending,
) -> Result<(), StepError> {
    const STEP: &str = "start.dlimits";
    if c.dlimits.is_empty() {
        return Ok(());
    }
    let name = c.name.as_str();
    let c2 = c.clone();
    let (disk, warnings) = tokio::task::spawn_blocking(move || super::disk::prepare(&c2))
        .await
        .step(STEP)?
        .step(STEP)?;
    for w in warnings {
        p.send(
            name,
            "dlimits",
            &format!("warning: {w}"),
            GuestState::Starting,
        );
    }
    journal.disk = disk.clone();
    pending::save(run_dir, name, journal)?;
    undo.disk = disk.clone();
    let d2 = disk.clone();
    tokio::task::spawn_blocking(move || super::disk::set(&d2))
        .await
        .step(STEP)?
        .step(STEP)?;
    p.send(
        name,
        "dlimits",
        &super::disk::summary(&disk),
        GuestState::Starting,
    );
    fault::point(STEP)
}

/// The network, before the cgroup, as util-vserver did (interfaces before mounts): the shared
/// stack's addresses, or the guest's own namespace (network.rs), each named in the journal
/// and in `undo` before it is made.
async fn network(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    undo: &mut Undo,
    journal: &mut Pending,
) -> Result<(Option<SharedNet>, Option<GuestNet>), StepError> {
    let name = c.name.as_str();
    let asked = c.netmode == crate::config::netmode::NetMode::Shared;
    let shared_mode = crate::config::netmode::shared_stack(c)
        && match super::sharednet::unusable(d, asked) {
            None => {
                if asked {
                    let w = super::sharednet::asked_gap_warning();
                    tracing::warn!(guest = name, "{w}");
                    p.send(
                        name,
                        "network",
                        &format!("warning: {w}"),
                        GuestState::Starting,
                    );
                }
                true
            }
            Some(why) => {
                let w = super::sharednet::fallback_warning(&why, asked);
                tracing::warn!(guest = name, "{w}");
                p.send(
                    name,
                    "network",
                    &format!("warning: {w}"),
                    GuestState::Starting,
                );
                false
            }
        };
    let shared = if shared_mode {
        let s = shared_addresses(d, c, p, journal).await;
        // Named in the journal before any address was added: taken back whatever happened.
        undo.shared = journal.shared_net.clone();
        let s = s?;
        // Host daemons on the wildcard: said once per start (cached: cheap).
        let d2 = d.clone();
        if let Ok(Some(w)) =
            tokio::task::spawn_blocking(move || super::hostwild::current(&d2)).await
        {
            p.send(
                name,
                "network",
                &format!("warning: {w}"),
                GuestState::Starting,
            );
        }
        Some(s)
    } else {
        None
    };
    fault::point("start.addresses")?;
    let net = super::network::setup(d, c, p, shared_mode).await?;
    undo.net = net.clone();
    if let Some(n) = &net {
        journal.set_net(n);
        pending::save(&d.opts.run_dir, name, journal)?;
    }
    fault::point("start.network")?;
    Ok((shared, net))
}

/// The guest's cgroups, named in the journal, then made.
async fn cgroup(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    undo: &mut Undo,
    journal: &mut Pending,
) -> Result<GuestCgroup, StepError> {
    const STEP: &str = "start.cgroup";
    let name = c.name.as_str();
    if let Some(g) = &c.cgroup.name {
        if g.is_empty() || g.contains('/') || g.starts_with('.') {
            return Err(StepError::refused(
                STEP,
                format!(
                    "{}/cgroup/name: {g:?} is not a cgroup name",
                    c.cfg_dir.display()
                ),
            ));
        }
    }
    let t = std::time::Instant::now();
    capacity_warnings(name, p);
    let cg = d.cgroup_in(name, c.cgroup.name.as_deref()).step(STEP)?;
    p.send(name, "cgroup", &cg_summary(&cg), GuestState::Starting);
    undo.cgroup = Some(cg.clone());
    journal.cgroup = Some(cg.clone());
    pending::save(&d.opts.run_dir, name, journal)?;
    {
        let cg = cg.clone();
        tokio::task::spawn_blocking(move || cg.create())
            .await
            .step(STEP)?
            .step(STEP)?;
    }
    fault::point(STEP)?;
    tracing::debug!(
        guest = name,
        "cgroups made in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(cg)
}

/// Host-wide limits many guests run into: said before one bites, on this start's progress and
/// (at most once a minute) in the log.
fn capacity_warnings(name: &str, p: &Progress) {
    for w in crate::isolate::capacity::warnings(&crate::isolate::capacity::read()) {
        p.send(name, "capacity", &w, GuestState::Starting);
        static SAID: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        if said.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
            tracing::warn!("{w}");
            *said = Some(std::time::Instant::now());
        }
    }
}

/// The shared stack's socket programs, linked to the cgroup before any guest process exists:
/// the guest is never unrestricted.
async fn socket_programs(
    run_dir: &std::path::Path,
    c: &GuestConfig,
    p: &Progress,
    cg: &GuestCgroup,
    s: &SharedNet,
) -> Result<(), StepError> {
    let v2 = cg.dirs.iter().find(|d| d.v2).map(|d| d.path.clone());
    let (rd, n, s2) = (run_dir.to_path_buf(), c.name.clone(), s.clone());
    let took =
        tokio::task::spawn_blocking(move || super::sharednet::attach(&rd, &n, v2.as_deref(), &s2))
            .await
            .step("start.bpf")?
            .step("start.bpf")?;
    p.send(
        &c.name,
        "network",
        &format!(
            "socket programs linked to its cgroup in {:.1} ms",
            took.as_secs_f64() * 1e3
        ),
        GuestState::Starting,
    );
    Ok(())
}

/// The cgroup limits, written before any guest process exists; and for virt_load, the cpu
/// controller whose per-cgroup load averages (kernel-patch/) the /proc server shows.
fn limits(c: &GuestConfig, p: &Progress, cg: &GuestCgroup) -> Result<(), StepError> {
    const STEP: &str = "start.limits";
    let name = c.name.as_str();
    let page = crate::sys::process::page_size().max(4096) as u64;
    let knobs = crate::isolate::limits::plan(c, page, &|ctl| cg.flavor_of(ctl)).step(STEP)?;
    if !knobs.is_empty() {
        cg.apply(&knobs).step(STEP)?;
        p.send(
            name,
            "limits",
            &knobs
                .iter()
                .map(|k| format!("{}={}", k.file, k.value))
                .collect::<Vec<_>>()
                .join(" "),
            GuestState::Starting,
        );
    }
    if c.cflags & crate::config::names::FLAG_VIRT_MEM != 0 {
        // virt_mem's /proc/diskstats is the io controller's io.stat on v2, which only a cgroup
        // with the controller has (v1's blkio hierarchy counts anyway).
        if let Err(e) = cg.enable_controllers(vec!["io"]) {
            tracing::warn!(guest = name, "virt_mem: enabling the io controller: {e}");
        }
    }
    if c.cflags & crate::config::names::FLAG_VIRT_LOAD != 0 {
        // Without per-cgroup load averages the /proc server approximates (docs/resources.md).
        if let Err(e) = cg.enable_controllers(vec!["cpu"]) {
            tracing::warn!(guest = name, "virt_load: enabling the cpu controller: {e}");
        }
        let kernel = cg
            .controller_dir("cpu")
            .is_some_and(|d| d.join("cpu.loadavg").exists());
        crate::isolate::kfeatures::note_loadavg(kernel);
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            if kernel {
                tracing::info!(
                    "virt_load: the kernel keeps per-cgroup load averages (cpu.loadavg)"
                );
            } else {
                tracing::warn!(
                    "virt_load: this kernel keeps no per-cgroup load averages (kernel-patch/, \
                     CONFIG_CGROUP_LOADAVG): guests' /proc/loadavg is approximated at each read"
                );
            }
        });
    }
    Ok(())
}

/// The stage: namespaces, mounts and the guest's PID 1 (stage/). Returns init's pid and pidfd
/// once it is known to live, with what the stage reported and the /proc files bound in.
async fn spawn_init(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    cg: &GuestCgroup,
    net: Option<&GuestNet>,
    shared: bool,
    undo: &mut Undo,
) -> Result<(i32, std::os::fd::OwnedFd, spawn::Outcome, ProcFiles), StepError> {
    const STEP: &str = "start.spawn";
    let name = c.name.as_str();
    let mut sp = plan::start_plan(c, cg).step("start.config")?;
    sp.netns = net.map(|n| n.ns.clone());
    sp.netns_userns = net.is_some_and(|n| !n.shared) && super::network::owned_by_user(c);
    sp.loopback_netns = net.is_none() && !shared && super::network::loopback_only(c);
    if c.spaces.user {
        let (state, window) = (d.opts.state_dir.clone(), d.opts.id_window);
        let n = name.to_string();
        let base = tokio::task::spawn_blocking(move || {
            super::idrange::allocate(&state, &n, window, &super::idrange::host_reserved())
        })
        .await
        .step("start.userns")?
        .map_err(|e| StepError::refused("start.userns", e))?;
        plan::shift_mount_ids(&mut sp.mounts, base);
        sp.userns = Some(base);
        if sp.systemd_cgroup.is_some() {
            plan::userns_systemd(&mut sp);
            // Its cgroup delegated to it, as systemd expects of a container manager: it makes
            // and fills the cgroups below (docs/lifecycle.md, User namespaces).
            if let Some(dir) = cg.v2_dir() {
                for f in [
                    "",
                    "cgroup.procs",
                    "cgroup.subtree_control",
                    "cgroup.threads",
                ] {
                    let p = dir.join(f);
                    std::os::unix::fs::chown(&p, Some(base), Some(base))
                        .step_doing("start.userns", || format!("delegating {}", p.display()))?;
                }
            }
        }
    }
    sp.proc_files = super::virtmem::files(d, c).await.step("start.proc-files")?;
    sp.confinement.sysinfo = super::virtmem::sysinfo_notify(&d.opts.run_dir, c);
    let proc_files = sp.proc_files.clone();
    let image = d.image().step(STEP)?;
    let (stdio, log) = console(d, c).await?;
    fault::point("start.console")?;
    sp.console = Some(log);
    sp.marks = tracing::enabled!(tracing::Level::DEBUG);
    p.send(
        name,
        "spawn",
        &format!(
            "{} (as {})",
            sp.argv.join(" "),
            if sp.reaper {
                "the reaper's child"
            } else {
                "PID 1"
            }
        ),
        GuestState::Starting,
    );
    // util-vserver ran a reaper style's start command (sysv `rc 3`) on the caller's terminal:
    // a caller that asks gets what the console shows until it returns. (A plain init runs on
    // after the start; its output stays on the console.)
    let relay = if sp.reaper {
        crate::console::relay::start(&d.opts.run_dir, name, p, GuestState::Starting).await
    } else {
        None
    };
    let label = name.to_string();
    let t_stage = std::time::Instant::now();
    let wait = if sp.reaper {
        START_COMMAND_WAIT
    } else {
        spawn::GuestWait::EXEC
    };
    let (outcome, fd) = tokio::task::spawn_blocking(move || {
        let mut fd = None;
        let r = spawn::run(
            &image,
            &Plan::Start(Box::new(sp)),
            stdio,
            &label,
            wait,
            |pid| fd = pidfd::open(pid).ok(),
        );
        (r, fd)
    })
    .await
    .step(STEP)?;
    if let Some(r) = relay {
        r.finish().await;
    }
    let outcome = outcome.step(STEP)?;
    tracing::debug!(
        guest = name,
        "stage ran in {:.1} ms",
        t_stage.elapsed().as_secs_f64() * 1e3
    );
    let (pid, fd) = match (outcome.pid, fd) {
        (Some(pid), Some(fd)) => (pid, fd),
        (_, fd) => {
            undo.init = fd;
            return Err(outcome
                .error
                .unwrap_or_else(|| StepError::refused(STEP, "no init was started")));
        }
    };
    // The guest's channel closes at exec, and just as well when the process is killed before
    // it (an OOM kill while it mounts, a signal from the host): a start is not done until its
    // init is known to live. A process on its way out has closed its fds before it is a
    // zombie, so its name tells too: exec renames it. (Still our child: the unwind reaps it.)
    let before_exec = || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| {
            c.trim().as_bytes() == crate::stage::GUEST_INIT_NAME.to_bytes()
        })
    };
    if outcome.error.is_none()
        && (matches!(pidfd::state(pid), None | Some('Z') | Some('X')) || before_exec())
    {
        let how = pidfd::zombie_exit(pid).map_or_else(|| "gone".to_string(), |e| e.to_string());
        undo.init = Some(fd);
        return Err(StepError::refused(
            STEP,
            format!("the guest's init ended before it ran ({how})"),
        ));
    }
    Ok((pid, fd, outcome, proc_files))
}

/// The run state (from here it names everything: adoption, or its cleanup, takes over), the
/// run file, and the post-start hooks.
async fn record(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    state: &RunState,
    undo: &mut Undo,
) -> Result<(), StepError> {
    let run_dir = d.opts.run_dir.as_path();
    runstate::save(run_dir, state).step_doing("start.state", || "saving run state".into())?;
    undo.state = true;
    pending::remove(run_dir, &c.name);
    fault::point("start.state")?;
    if let Some(f) = &c.run_file {
        undo.run_file = Some(f.clone());
        std::fs::write(f, format!("{}\n", c.context))
            .step_doing("start.run-file", || format!("run file {}", f.display()))
            .map_err(|e| e.on(f))?;
    }
    run_hook(c, "post-start", true).await?;
    fault::point("start.post-start")?;
    Ok(())
}

/// The shared stack's addresses (sharednet.rs): planned, refused if another running guest or
/// the host holds one, named in the journal, added to their devices.
async fn shared_addresses(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    journal: &mut Pending,
) -> Result<SharedNet, StepError> {
    const STEP: &str = "start.addresses";
    let name = c.name.as_str();
    let cookie = crate::sys::bpf::netns_cookie()
        .step_doing(STEP, || "the host network namespace's cookie".into())?;
    let mut s = super::sharednet::plan(c, cookie).step(STEP)?;
    if super::sharednet::binds_low_ports(c) {
        // The range spawn_init maps the guest to (allocate finds the recorded one again).
        let (state, window, n) = (d.opts.state_dir.clone(), d.opts.id_window, c.name.clone());
        let base = tokio::task::spawn_blocking(move || {
            super::idrange::allocate(&state, &n, window, &super::idrange::host_reserved())
        })
        .await
        .step("start.userns")?
        .map_err(|e| StepError::refused("start.userns", e))?;
        s.bind_low_uid = Some(base);
    }
    let others: Vec<(String, SharedNet)> = d
        .guests
        .running_names()
        .into_iter()
        .filter(|n| n != name)
        .filter_map(|n| d.guests.running(&n))
        .filter_map(|r| Some((r.state.name.clone(), r.state.shared_net.clone()?)))
        .collect();
    if let Some(e) = super::sharednet::clash(&s, others.iter().map(|(n, s)| (n.as_str(), s))) {
        return Err(StepError::refused(STEP, e));
    }
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || super::sharednet::check_free(&s2))
        .await
        .step(STEP)?
        .step(STEP)?;
    journal.shared_net = Some(s.clone());
    pending::save(&d.opts.run_dir, name, journal)?;
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || super::sharednet::add(&s2))
        .await
        .step(STEP)?
        .step(STEP)?;
    let what: Vec<String> = s
        .addrs
        .iter()
        .map(|a| match &a.dev {
            Some(dev) => format!("{}/{} on {dev}", a.ip, a.prefix),
            None => format!("{}/{} (nodev)", a.ip, a.prefix),
        })
        .collect();
    p.send(
        name,
        "network",
        &format!(
            "the host's stack (shared): {}; its 127.0.0.1 is {}",
            what.join(", "),
            s.lback
        ),
        GuestState::Starting,
    );
    Ok(s)
}

/// How long a reaper style's start command (sysv `rc 3`) may run before the start fails and
/// is rolled back, as a service manager's start timeout would: the guest's own code decides
/// how long it takes, so the wait has a bound.
const START_COMMAND_WAIT: spawn::GuestWait = spawn::GuestWait {
    limit: Duration::from_secs(300),
    what: "the start command",
};

fn cg_summary(cg: &GuestCgroup) -> String {
    cg.v2_dir()
        .or_else(|| cg.dirs.first().map(|d| d.path.as_path()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none".into())
}

/// Init's stdio and what is bound on the guest's /dev/console: with apps/init/tty that file
/// (util-vserver's --defaulttty: stdout and stderr); else a pty kept by the console keeper
/// (crate::console), logged to RUN_DIR/guests/NAME.log, for stdin, stdout and stderr — or,
/// should the keeper not start, that log file itself, as a plain file.
async fn console(
    d: &Daemon,
    c: &GuestConfig,
) -> Result<(StageStdio, std::path::PathBuf), StepError> {
    const STEP: &str = "start.console";
    let log = crate::console::log_path(&d.opts.run_dir, &c.name);
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if c.init.tty.is_none() {
        let (run_dir, name, l) = (d.opts.run_dir.clone(), c.name.clone(), log.clone());
        let opened = tokio::task::spawn_blocking(move || crate::console::open(&run_dir, &name, &l))
            .await
            .step(STEP)?;
        match opened {
            Ok((slave, path)) => {
                let dup = |f: &std::os::fd::OwnedFd| f.try_clone().step(STEP);
                return Ok((
                    StageStdio {
                        stdin: Some(dup(&slave)?),
                        stdout: Some(dup(&slave)?),
                        stderr: Some(slave),
                    },
                    path,
                ));
            }
            Err(e) => tracing::warn!(guest = c.name, "no console pty ({e}): logging to a file"),
        }
    }
    let path = c.init.tty.clone().unwrap_or(log);
    let f = if c.init.tty.is_none() {
        crate::console::open_log(&path)
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(&path)
    }
    .step_doing(STEP, || format!("console {}", path.display()))
    .map_err(|e| e.on(&path))?;
    let f2 = f.try_clone().step(STEP)?;
    Ok((
        StageStdio {
            stdin: None,
            stdout: Some(f.into()),
            stderr: Some(f2.into()),
        },
        path,
    ))
}
