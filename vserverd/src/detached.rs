//! The helper processes that outlive the daemon (the /proc server, the console keeper): how
//! the daemon starts one (its own binary with a hidden first argument, waited for until the
//! helper has set itself up), and how a helper leaves its starter behind (fork; the parent
//! writes the pid file and exits 0, the child serves in a session of its own).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use crate::isolate::cgroup::{GuestCgroup, Layout};
use crate::isolate::limits::{Flavor, Knob, PERIOD_US};
use crate::sys;

/// The version of what the daemon and its helpers say to each other: the console keeper's
/// requests (console/mod.rs) and the /proc server's layout (procfs/server.rs). A helper
/// outlives the daemon that started it, so after an upgrade a daemon may find one from an
/// older (or newer) package: the keeper answers `{"op":"hello"}` with `vserverd-tty N`, the
/// /proc server names itself `vserverd-procfs-vN` in the mount table. A daemon that finds
/// another N (or none: helpers from before versions) replaces the helper, keeping what it
/// holds (handover.rs). Raise it with any change either side of an old helper would misread.
pub const PROTOCOL: u32 = 1;

/// The protocol version a helper started now speaks: PROTOCOL, except that a debug build
/// reads `VSERVERD_HELPER_PROTOCOL` so that tests can start a helper as an older package's
/// (0: from before versions).
pub fn protocol() -> u32 {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var("VSERVERD_HELPER_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    PROTOCOL
}

/// A helper serves every guest, so it must not be a lever outside every guest's limits: each
/// runs in a cgroup of its own, OWN/PREFIX/.NAME beside the guests' (no guest name starts with
/// a dot), with at most one CPU, HELPER_MEMORY and HELPER_PIDS. Within that, the helpers share
/// their work fairly between guests (procfs/fair.rs, the console keeper's byte budget).
const HELPER_MEMORY: u64 = 256 << 20;
const HELPER_PIDS: u32 = 64;

/// Where helpers' cgroups go: set once by the daemon when it knows its cgroup layout.
static HOME: OnceLock<Home> = OnceLock::new();

struct Home {
    layout: Layout,
    prefix: String,
    /// Whether the helpers' limits may enable v2 controllers in the delegated cgroup. Enabling
    /// one there forbids processes in it, and a systemd older than 254 (no DelegateSubgroup=)
    /// starts the next daemon right there: its restart would fail with EBUSY. So, unless
    /// systemd placed the daemon in its leaf, the helpers get only the v2 limits whose
    /// controllers guests' limits have enabled already.
    enable_v2: bool,
}

pub fn set_home(layout: Layout, prefix: String, enable_v2: bool) {
    let _ = HOME.set(Home {
        layout,
        prefix,
        enable_v2,
    });
}

/// The limits of a helper's cgroup, in the flavor each controller has on this host.
pub fn helper_knobs(flavor_of: &dyn Fn(&str) -> Option<Flavor>) -> Vec<Knob> {
    let k = |file: &str, value: String| Knob {
        controller: file.split('.').next().unwrap_or("").to_string(),
        file: file.to_string(),
        value,
        origin: "the helpers' own limits".to_string(),
    };
    let mut out = Vec::new();
    match flavor_of("cpu") {
        Some(Flavor::V1) => {
            out.push(k("cpu.cfs_period_us", PERIOD_US.to_string()));
            out.push(k("cpu.cfs_quota_us", PERIOD_US.to_string()));
        }
        Some(Flavor::V2) => out.push(k("cpu.max", format!("{PERIOD_US} {PERIOD_US}"))),
        None => {}
    }
    match flavor_of("memory") {
        Some(Flavor::V1) => out.push(k("memory.limit_in_bytes", HELPER_MEMORY.to_string())),
        Some(Flavor::V2) => out.push(k("memory.max", HELPER_MEMORY.to_string())),
        None => {}
    }
    if flavor_of("pids").is_some() {
        out.push(k("pids.max", HELPER_PIDS.to_string()));
    }
    out
}

/// The cgroup of helper `name` (vserverd-procfs, vserverd-tty), when the daemon set a home.
pub fn cgroup_of(name: &str) -> Option<GuestCgroup> {
    let h = HOME.get()?;
    Some(h.layout.guest(&h.prefix, &format!(".{name}")))
}

/// Moves helper `name` (process `pid`, every thread) into its own cgroup with its limits.
/// Idempotent: the daemon calls it for helpers it starts and for those it finds running.
pub fn confine(name: &str, pid: i32) -> Result<(), String> {
    let (Some(h), Some(cg)) = (HOME.get(), cgroup_of(name)) else {
        return Ok(());
    };
    cg.create().map_err(|e| format!("{name}'s cgroup: {e}"))?;
    // On v2, the controllers the delegated cgroup already hands down (see Home::enable_v2).
    let handed = h
        .layout
        .v2()
        .and_then(|v| {
            std::fs::read_to_string(v.mount.join(&v.own).join("cgroup.subtree_control")).ok()
        })
        .unwrap_or_default();
    let flavor = |c: &str| match cg.flavor_of(c) {
        Some(Flavor::V2) if !h.enable_v2 && !handed.split_whitespace().any(|x| x == c) => None,
        f => f,
    };
    cg.apply(&helper_knobs(&flavor))
        .map_err(|e| format!("{name}'s cgroup: {e}"))?;
    for j in cg.joins() {
        let procs = j.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| format!("moving {name} into {}: {e}", procs.display()))?;
    }
    Ok(())
}

/// The pid a helper wrote beside its path (`path`.pid), if that process still runs as `name`.
pub fn pid_of(name: &str, path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path.with_extension("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == name).then_some(pid)
}

/// Runs `/proc/self/exe ARG PATH` as `name` (its argv[0], what ps shows) and waits for it: it
/// returns once the helper is ready. `what` names the helper in errors.
pub fn start(name: &str, arg: &str, path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/proc/self/exe");
    sys::fd::no_inherited_fds(&mut cmd);
    let out = cmd
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
    // A helper that cannot be confined still serves: guests need it more than its limits.
    if let Some(pid) = pid_of(name, path) {
        if let Err(e) = confine(name, pid) {
            tracing::warn!("the {what} runs without limits of its own: {e}");
        }
    }
    Ok(())
}

/// In the helper, once it is ready: names the process `name` (before the fork, so the pid in
/// `pid_file` carries that name from its first instant), forks, and runs `serve` in the child
/// — a new session, stdio on /dev/null, cwd / — while the parent writes the child's pid to
/// `pid_file` and leaves at once, without running destructors (a FUSE session's would unmount).
/// Must be called while the process is single-threaded.
pub fn serve(name: &std::ffi::CStr, pid_file: &Path, serve: impl FnOnce()) -> ExitCode {
    let _ = sys::process::set_name(name);
    // SAFETY: single-threaded, as documented.
    match unsafe { sys::process::fork() } {
        Err(e) => {
            eprintln!("fork: {e}");
            ExitCode::FAILURE
        }
        Ok(0) => {
            let _ = sys::process::setsid();
            let _ = sys::fd::stdio_to_null();
            let _ = std::env::set_current_dir("/");
            serve();
            ExitCode::SUCCESS
        }
        Ok(child) => {
            // Written before the starter hears of success, so it always finds the new pid.
            let _ = std::fs::write(pid_file, format!("{child}\n"));
            // Leave without running destructors: the child owns what was set up.
            sys::process::exit_now(0)
        }
    }
}
