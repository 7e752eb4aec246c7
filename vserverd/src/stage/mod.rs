//! The stage: the daemon's own binary, run from a sealed memfd as `vserverd __stage`, single
//! threaded, non-dumpable. The multi-threaded daemon may only do async-signal-safe things
//! between fork and exec; the stage may do anything, so all namespace and mount work is here.
//!
//! fd 3 carries the plan (JSON); fd 4 the trusted reports and fd 5 the guest's (JSON lines,
//! each one write(2), so lines never interleave; report.rs says who may hold which). The
//! guest's processes are made with CLONE_PARENT: the daemon is their parent and learns how
//! they exit.
//!
//! Start: join the v1 cgroups → time namespace (offsets written before any process is in
//! it; a spaces/user guest's is made in its user namespace, userns.rs) → unshare mnt, uts,
//! ipc, pid (net) → clone PID 1 into the v2 cgroup → PID 1 makes its cgroup namespace (now
//! rooted at its cgroups everywhere), mounts, pivots, sets names and limits, installs
//! seccomp, drops capabilities, then execs init or stays as a reaper.
//! Join: join the v1 cgroups → clone a helper into the v2 cgroup → setns into init's
//! namespaces → seccomp, capabilities → clone.

pub mod plan;
mod reaper;
pub mod report;
pub mod spawn;
mod user;
pub mod userns;

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{StepError, StepResult};
use crate::isolate::{caps, mount, pidfd, process, seccomp};
use crate::sys;
use plan::{CgroupJoin, Confinement, JoinPlan, Plan, Prepare, Report, StartPlan};

pub const PLAN_FD: i32 = 3;
pub const REPORT_FD: i32 = 4;
pub const GUEST_REPORT_FD: i32 = 5;
pub const ARG: &str = "__stage";

/// One report channel (stage/report.rs): fd 4, trusted, held only by vserverd's code in the
/// host's pid namespace; fd 5, read as untrusted, the one a guest's process may write.
/// Close-on-exec: a successful exec is the "done" signal (EOF).
pub struct Reporter {
    file: Option<std::fs::File>,
    marks: bool,
}

impl Reporter {
    fn new(fd: OwnedFd) -> Reporter {
        Reporter {
            file: Some(std::fs::File::from(fd)),
            marks: false,
        }
    }

    pub fn send(&mut self, r: &Report) {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        if let Some(f) = &mut self.file {
            let _ = f.write_all(&line);
        }
    }

    /// Reports that `step` is done, and when.
    pub fn mark(&mut self, step: &str) {
        self.mark_at(step, std::time::SystemTime::now());
    }

    fn mark_at(&mut self, step: &str, at: std::time::SystemTime) {
        if !self.marks {
            return;
        }
        let ns = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.send(&Report::Mark(step.to_string(), ns));
    }

    /// Closes the channel (the daemon sees EOF once no other copy is left).
    pub fn close(&mut self) {
        self.file = None;
    }
}

/// Both channels: `trusted` is closed by every process a guest can reach, first thing.
pub struct Channels {
    pub trusted: Reporter,
    pub guest: Reporter,
}

impl Channels {
    /// In a process just made for the guest: give up the trusted channel before anything else.
    fn guest_side(&mut self) -> &mut Reporter {
        self.trusted.close();
        &mut self.guest
    }
}

type Result<T> = std::result::Result<T, StepError>;

/// Entry point of `vserverd __stage`.
pub fn main() -> std::process::ExitCode {
    let entered = std::time::SystemTime::now();
    // Every signal back to its default: Rust's runtime ignores SIGPIPE, and posix_spawn leaves
    // glibc's internal signals (32, 33) ignored, and ignored stays ignored across exec.
    // The raw syscall: glibc's wrappers refuse its internal signals.
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            let _ = sys::process::default_signal_raw(sig);
        }
    }
    // Nothing the daemon inherited from whoever started it reaches a guest.
    // SAFETY: nothing owns the fds above our plan and report pipes: the stage has opened
    // nothing yet, and whatever the daemon left there is stray.
    let _ = unsafe { sys::fd::close_from(GUEST_REPORT_FD as u32 + 1) };
    // The daemon raised its soft fd limit (main.rs); guests start from the kernel's default,
    // as under util-vserver (their ulimits/ may raise it again).
    if let Ok((soft, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        if soft > 1024 {
            let _ = nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                1024,
                hard,
            );
        }
    }
    // Non-dumpable: no ptrace or /proc/PID/mem by guest root lacking CAP_SYS_PTRACE, and
    // /proc/PID/exe is a sealed memfd anyway.
    let _ = sys::process::set_not_dumpable();
    // SAFETY: fds 3, 4 and 5 were set up by the daemon for us.
    let (plan_fd, report_fd, guest_fd) = unsafe {
        (
            OwnedFd::from_raw_fd(PLAN_FD),
            OwnedFd::from_raw_fd(REPORT_FD),
            OwnedFd::from_raw_fd(GUEST_REPORT_FD),
        )
    };
    for fd in [&report_fd, &guest_fd] {
        let _ = sys::fd::set_cloexec(fd);
    }
    let mut ch = Channels {
        trusted: Reporter::new(report_fd),
        guest: Reporter::new(guest_fd),
    };
    // Read whole, then parsed: serde_json's reader on an unbuffered fd reads byte by byte
    // (a syscall per byte of the plan, a millisecond of every start).
    let mut raw = Vec::with_capacity(8192);
    use std::io::Read;
    let parsed = std::fs::File::from(plan_fd)
        .read_to_end(&mut raw)
        .step("stage.plan")
        .and_then(|_| serde_json::from_slice::<Plan>(&raw).step("stage.plan"));
    let plan: Plan = match parsed {
        Ok(p) => p,
        Err(e) => {
            ch.trusted.send(&Report::Error(e.doing("stage: bad plan")));
            return std::process::ExitCode::FAILURE;
        }
    };
    // Step times only when the daemon logs them.
    if let Plan::Start(p) = &plan {
        ch.trusted.marks = p.marks;
        ch.guest.marks = p.marks;
        crate::fault::adopt(p.fault.clone());
    }
    ch.trusted.mark_at("main entered", entered);
    let r = match plan {
        Plan::Start(p) => start(&p, &mut ch),
        Plan::Join(p) => join(&p, &mut ch),
        Plan::Rebind(p) => rebind(&p, &mut ch.trusted),
        Plan::Netns(p) => {
            userns::make_netns(&p.pin).map(|()| ch.trusted.send(&Report::Returned(0)))
        }
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            ch.trusted.send(&Report::Error(e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Puts the stage into the guest's v1 cgroups, and returns the v2 directory (opened) for the
/// clone that makes the guest's process: see [`join_cgroups`].
fn enter_cgroups(joins: &[CgroupJoin]) -> Result<Option<OwnedFd>> {
    let mut v2 = None;
    for j in joins {
        if j.v2 {
            let f = std::fs::File::open(&j.dir).step_doing("stage.cgroups", || {
                format!("opening cgroup {}", j.dir.display())
            })?;
            v2 = Some(OwnedFd::from(f));
        } else {
            join_v1(j)?;
        }
    }
    Ok(v2)
}

/// v1: "0" into `tasks` moves this thread alone. The stage has one thread, so that is the
/// whole process, and unlike a write to cgroup.procs it does not take the kernel's global
/// threadgroup lock, whose first writer after a quiet spell waits an RCU grace period
/// (measured: ten v1 joins 0.55 ms through `tasks`, 6 ms through cgroup.procs).
fn join_v1(j: &CgroupJoin) -> Result<()> {
    let f = j.dir.join("tasks");
    std::fs::write(&f, "0").step_doing("stage.cgroups", || {
        format!("joining cgroup {}", f.display())
    })
}

/// clone(CLONE_PARENT): a fork whose parent is the daemon, born in the v2 cgroup `into` if
/// given (CLONE_INTO_CGROUP: no migration, so no grace period either). Returns 0 in the child.
fn clone_parent(into: Option<&OwnedFd>) -> Result<i32> {
    use std::os::fd::AsFd;
    match into {
        // Plain clone: a joiner clones under the guest's seccomp filter, which answers clone3
        // ENOSYS.
        // SAFETY: the stage is single-threaded, so the child may run ordinary code.
        None => unsafe { sys::process::clone_parent() }.map_err(|e| clone_error("clone", e)),
        // SAFETY: as above.
        Some(fd) => unsafe { sys::process::clone_parent_into(fd.as_fd()) }
            .map_err(|e| clone_error("clone3 into the guest's cgroup", e)),
    }
}

/// A failed clone, said in terms of its likely cause: EAGAIN is the guest's process limit
/// (its cgroup's pids.max, or RLIMIT_NPROC), ENOSYS or EINVAL a kernel older than 5.7.
fn clone_error(what: &str, e: std::io::Error) -> StepError {
    let errno = e.raw_os_error();
    let text = match errno {
        Some(libc::EAGAIN) => format!(
            "no new process in the guest: its process limit is reached (cgroup pids.max or \
             rlimits/nproc; {what}: {e})"
        ),
        Some(libc::ENOSYS) | Some(libc::EINVAL) => {
            format!("{what} (needs Linux 5.7 or later): {e}")
        }
        _ => format!("{what}: {e}"),
    };
    StepError {
        errno,
        ..StepError::refused("stage.clone", text)
    }
}

/// The name (comm) the guest's PID 1 has until it execs init.
pub const GUEST_INIT_NAME: &std::ffi::CStr = c"vserverd-guest";

fn start(p: &StartPlan, ch: &mut Channels) -> Result<()> {
    ch.trusted.mark("plan read");
    let v2 = enter_cgroups(&p.cgroups)?;
    ch.trusted.mark("cgroups joined");
    crate::fault::point("stage.cgroups")?;
    // A user-namespace guest's time namespace is made in its user namespace (stage/userns.rs).
    if p.time_ns && p.userns.is_none() {
        process::unshare_time().step_doing("stage.namespaces", || {
            "the guest's time namespace (virt_uptime)".into()
        })?;
    }
    let mut flags = start_namespaces(p);
    // A user-namespace guest: only the mount namespace here (the host's user namespace owns
    // it); its other namespaces are made inside its user namespace (stage/userns.rs).
    if p.userns.is_some() {
        flags = libc::CLONE_NEWNS;
    }
    let loopback = flags & libc::CLONE_NEWNET != 0;
    if let Some(ns) = &p.netns {
        let f = std::fs::File::open(ns).step_doing("stage.namespaces", || {
            format!("network namespace {}", ns.display())
        })?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .step_doing("stage.namespaces", || {
                format!("joining network namespace {}", ns.display())
            })?;
        // A namespace the guest's user namespace does not own (another guest's, shared): its
        // root holds no CAP_NET_BIND_SERVICE there. Ports below 1024 of its own addresses are
        // its, as for any guest. (One it owns answers to its root's capabilities.)
        if p.userns.is_some() && !p.netns_userns {
            let f = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
            std::fs::write(f, "0").step_doing("stage.namespaces", || f.to_string())?;
        }
    }
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags))
        .step_doing("stage.namespaces", || "unshare namespaces".into())?;
    if loopback {
        crate::isolate::net::loopback_up().step_doing("stage.namespaces", || {
            "loopback in the guest's network namespace".into()
        })?;
    }
    ch.trusted.mark("namespaces made");
    crate::fault::point("stage.namespaces")?;
    if let Some(base) = p.userns {
        return userns::launch(p, ch, v2, base);
    }
    match clone_parent(v2.as_ref())? {
        0 => {
            let out = ch.guest_side();
            drop(v2);
            let e = guest_init(p, out).unwrap_err();
            out.send(&Report::Error(e));
            // Leave without running the parent's destructors twice.
            sys::process::exit_now(1)
        }
        pid => {
            ch.trusted.send(&Report::Pid(pid));
            Ok(())
        }
    }
}

/// PID 1 of the new guest, until it execs init (or becomes the reaper). Returns only errors.
fn guest_init(p: &StartPlan, out: &mut Reporter) -> Result<std::convert::Infallible> {
    // Named until it execs (which renames it): the daemon tells a process that exec'd from one
    // that died on the way by this name, since both close the guest's channel.
    let _ = sys::process::set_name(GUEST_INIT_NAME);
    // While the host's paths are still in view: the way to the /proc server.
    let sysinfo = sysinfo_channel(&p.confinement)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .step_doing("stage.namespaces", || "unshare cgroup namespace".into())?;
    mount_guest(p, out, None)?;
    run_guest(p, out, sysinfo)
}

/// The guest's mounts, from the root bind to pivot_root. `idmap`: a user-namespace guest's
/// namespace, through which its root and binds show their ids.
fn mount_guest(
    p: &StartPlan,
    out: &mut Reporter,
    idmap: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<()> {
    mount::make_private().step("stage.mounts")?;
    mount::bind_root(&p.vdir, idmap).step("stage.mounts")?;
    let root = mount::Root::open(&p.vdir)
        .step("stage.mounts")?
        .owned_by(p.userns);
    mount::setup_dev(&root, p.console.as_deref()).step("stage.mounts")?;
    out.mark("/dev made");
    for m in &p.mounts {
        mount::mount_entry(&root, m, idmap).step("stage.mounts")?;
    }
    out.mark("fstab mounted");
    crate::fault::point("stage.mounts")?;
    mount::bind_proc_files(&root, &p.proc_files).step("stage.mounts")?;
    if let Some(cg) = p.systemd_cgroup {
        if p.userns.is_some() {
            // The mounter: into the guest's v2 cgroup and a cgroup namespace rooted there.
            if let Some(j) = p.cgroups.iter().find(|j| j.v2) {
                std::fs::write(j.dir.join("cgroup.procs"), "0").step("stage.mounts")?;
            }
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).step("stage.mounts")?;
        }
        mount::systemd_api(&root, cg == plan::SystemdCgroup::Unified).step("stage.mounts")?;
    }
    drop(root);
    mount::pivot(&p.vdir).step("stage.pivoted")?;
    out.mark("pivoted");
    crate::fault::point("stage.pivoted")
}

/// PID 1 inside its root: the guest's files, names, confinement, then init. `sysinfo`: the
/// way to the /proc server, made while the host's paths were in view (without it, the guest's
/// sysinfo is the kernel's).
fn run_guest(
    p: &StartPlan,
    out: &mut Reporter,
    sysinfo: Option<OwnedFd>,
) -> Result<std::convert::Infallible> {
    // From here on every path is inside the guest: its symlinks can only point into it.
    if let Some(m) = &p.mtab {
        write_mtab(m);
    }
    prepare(p.prepare);
    if let Some(rl) = p.runlevel.as_deref().and_then(|r| r.chars().next()) {
        // Best effort, as fakerunlevel was: a guest without utmp support still starts.
        let _ = process::write_runlevel("/var/run/utmp", rl);
    }
    process::set_uts(p.nodename.as_deref(), p.domainname.as_deref()).step("stage.names")?;
    let confinement = Confinement {
        sysinfo: p.confinement.sysinfo.clone().filter(|_| sysinfo.is_some()),
        ..p.confinement.clone()
    };
    let listener = confine(&p.cfg_dir, &confinement, p.reaper)?;
    hand_over(sysinfo, listener, &confinement)?;
    out.mark("confined");
    crate::fault::point("stage.confined")?;
    let env = cstrings(&p.env)?;
    if p.reaper {
        reaper::run(&p.argv, &env, out).step("stage.reaper")
    } else {
        Err(exec(&p.argv, &env, false))
    }
}

fn write_mtab(content: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    // A symlink (Debian's -> /proc/self/mounts) is left alone, as util-vserver did.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open("/etc/mtab")
    {
        let _ = f.write_all(content.as_bytes());
    }
}

fn prepare(what: Prepare) {
    match what {
        Prepare::None => {}
        Prepare::Sysv => {
            for d in ["/var/run", "/var/lock"] {
                let Ok(rd) = std::fs::read_dir(d) else {
                    continue;
                };
                for e in rd.flatten() {
                    if e.file_type().map(|t| !t.is_dir()).unwrap_or(false) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Prepare::Plain => {
            let _ = std::fs::remove_file("/.autofsck");
            let _ = std::fs::remove_file("/forcefsck");
            let _ = std::fs::File::create("/fastboot");
        }
    }
}

/// A socket connected to the /proc server's, when the guest's sysinfo goes there: made before
/// the process leaves the host's mount namespace.
fn sysinfo_channel(c: &Confinement) -> Result<Option<OwnedFd>> {
    c.sysinfo
        .as_ref()
        .map(|s| {
            crate::procfs::sysinfo::connect(&s.socket).step_doing("stage.sysinfo", || {
                format!("the /proc server's socket {}", s.socket.display())
            })
        })
        .transpose()
}

/// The filter's listener to the /proc server, before guest code can run (a guest whose
/// sysinfo had no listener would get ENOSYS).
fn hand_over(channel: Option<OwnedFd>, listener: Option<OwnedFd>, c: &Confinement) -> Result<()> {
    use std::os::fd::AsFd;
    if let (Some(ch), Some(l), Some(s)) = (channel, listener, &c.sysinfo) {
        crate::procfs::sysinfo::hand_over(ch.as_fd(), l.as_fd(), s.flags)
            .step_doing("stage.sysinfo", || "sending the sysinfo listener".into())?;
    }
    Ok(())
}

/// Limits, scheduling, seccomp and capabilities: the last steps before guest code runs.
/// `drop_permitted` for a process that will not exec (the reaper): exec would otherwise
/// recompute root's capabilities from the bounding set. Returns the seccomp filter's
/// listener when sysinfo is answered by the /proc server.
fn confine(
    cfg_dir: &std::path::Path,
    c: &Confinement,
    drop_permitted: bool,
) -> Result<Option<OwnedFd>> {
    let ulimits: Vec<crate::config::limits::Ulimit> = c
        .ulimits
        .iter()
        .map(|u| {
            let l = |v: Option<u64>| {
                v.map_or(
                    crate::config::limits::Limit::Unlimited,
                    crate::config::limits::Limit::Value,
                )
            };
            crate::config::limits::Ulimit {
                name: u.name.clone(),
                soft: l(u.soft),
                hard: l(u.hard),
            }
        })
        .collect();
    process::apply_ulimits(cfg_dir, &ulimits).step("stage.confined")?;
    if let Some(n) = c.nice {
        process::set_nice(n).step("stage.confined")?;
    }
    if let Some((class, prio)) = c.ionice {
        process::set_ionice(class, prio).step("stage.confined")?;
    }
    if let Some(pers) = c.personality {
        process::set_personality(pers).step("stage.confined")?;
    }
    sys::process::umask(0o022);
    // seccomp first: without no_new_privs it needs CAP_SYS_ADMIN, which the next step drops.
    let filter = seccomp::filter(c.umask, c.sysinfo.is_some()).step("stage.confined")?;
    let listener = seccomp::install(&filter).step("stage.confined")?;
    caps::restrict(c.bcaps, drop_permitted).step("stage.confined")?;
    Ok(listener)
}

fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_str())
                .map_err(|_| StepError::refused("stage.exec", format!("NUL byte in {s:?}")))
        })
        .collect()
}

/// execs argv[0] (searched in PATH of `env` when `search`); returns the error.
fn exec(argv: &[String], env: &[CString], search: bool) -> StepError {
    let Some(prog) = argv.first() else {
        return StepError::refused("stage.exec", "no command to run");
    };
    let args = match cstrings(argv) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let path = if search {
        search_path(prog, env, |c| std::path::Path::new(c).is_file())
    } else {
        prog.clone()
    };
    let Ok(cpath) = CString::new(path.as_str()) else {
        return StepError::refused("stage.exec", format!("NUL byte in {path:?}"));
    };
    let e = nix::unistd::execve(&cpath, &args, env).unwrap_err();
    StepError {
        errno: Some(e as i32),
        path: Some(path.clone().into()),
        ..StepError::refused(
            "stage.exec",
            format!("cannot execute {path} in the guest: {}", e.desc()),
        )
    }
}

/// Where `prog` is run from: as given when it names a path, else the first folder of the
/// environment's PATH (util-vserver's default when it has none) where `is_file` finds it, else
/// as given (execve then says it does not exist).
fn search_path(prog: &str, env: &[CString], is_file: impl Fn(&str) -> bool) -> String {
    if prog.contains('/') {
        return prog.to_string();
    }
    env.iter()
        .filter_map(|e| e.to_str().ok())
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .split(':')
        .map(|d| format!("{d}/{prog}"))
        .find(|c| is_file(c))
        .unwrap_or_else(|| prog.to_string())
}

/// The namespaces the stage unshares for a start: mount, uts, ipc and pid always; a network
/// namespace of its own only for a loopback-only guest (one with its own or another guest's
/// namespace joins that instead; one on the host's stack makes none). The cgroup namespace is
/// PID 1's, made once it is in every cgroup.
fn start_namespaces(p: &StartPlan) -> libc::c_int {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    if p.netns.is_none() && p.loopback_netns {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// Mount injection: the detached binds are made here, in the host's mount namespace (where
/// the sources are), then placed in the guest's after setns. Single-threaded, as setns into a
/// mount namespace requires.
fn rebind(p: &plan::RebindPlan, out: &mut Reporter) -> Result<()> {
    let fd = pidfd::open(p.init_pid)
        .step_doing("rebind.enter", || format!("guest init {}", p.init_pid))?;
    if pidfd::start_time(p.init_pid) != Some(p.init_start_time) {
        return Err(StepError::refused(
            "rebind.enter",
            format!("guest {} is no longer running", p.name),
        ));
    }
    let trees = p
        .proc_files
        .iter()
        .map(|(name, src)| Ok((name, mount::detached_bind(src).step("rebind.bind")?)))
        .collect::<Result<Vec<_>>>()?;
    sys::ns::setns_pidfd(&fd, libc::CLONE_NEWNS).step_doing("rebind.enter", || {
        format!("entering the mount namespace of guest {}", p.name)
    })?;
    for (name, tree) in &trees {
        let at = mount::served_target(name);
        // A guest without /sys had nothing bound there at start (a dead FUSE bind answers
        // ENOTCONN, not ENOENT: that one is replaced).
        let absent = matches!(std::fs::symlink_metadata(&at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if !absent {
            mount::attach_detached(tree, &at).step("rebind.bind")?;
        }
    }
    out.send(&Report::Returned(0));
    Ok(())
}

fn join(p: &JoinPlan, ch: &mut Channels) -> Result<()> {
    let fd = pidfd::open(p.init_pid)
        .step_doing("join.enter", || format!("guest init {}", p.init_pid))?;
    if pidfd::start_time(p.init_pid) != Some(p.init_start_time) {
        return Err(StepError::refused(
            "join.enter",
            format!("guest {} is no longer running", p.name),
        ));
    }
    // The v2 cgroup without a migration (see join_v1): a helper is born in it, in the host's
    // cgroup namespace still (with nsdelegate, a clone into a cgroup outside the caller's
    // cgroup namespace is refused), and does the rest; it is the daemon's child.
    if let Some(v2) = enter_cgroups(&p.cgroups)? {
        match clone_parent(Some(&v2))? {
            0 => drop(v2),
            helper => {
                ch.trusted.send(&Report::Helper(helper));
                return Ok(());
            }
        }
    }
    // A user-namespace guest's joiner enters it too, last (its pid namespace is the host's:
    // entering that needs host root), and is its root there.
    let user = userns::differs(p.init_pid);
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWTIME;
    // A command run in a guest whose /proc server cannot be reached runs all the same, with
    // the host's sysinfo: an admin's exec is never refused for it.
    let sysinfo = sysinfo_channel(&p.confinement).ok().flatten();
    let confinement = Confinement {
        sysinfo: p.confinement.sysinfo.clone().filter(|_| sysinfo.is_some()),
        ..p.confinement.clone()
    };
    // One setns with a pidfd enters all these namespaces of the target at once.
    sys::ns::setns_pidfd(&fd, flags).step_doing("join.enter", || {
        format!("entering the namespaces of guest {}", p.name)
    })?;
    if user {
        sys::ns::setns_pidfd(&fd, libc::CLONE_NEWUSER).step_doing("join.user", || {
            format!("entering the user namespace of guest {}", p.name)
        })?;
        sys::process::setgroups(&[]).step("join.user")?;
        sys::process::setresgid(0).step("join.user")?;
        sys::process::setresuid(0).step("join.user")?;
    }
    drop(fd);
    // Confined before the process exists in the guest: guest root may ptrace what it sees.
    let listener = confine(std::path::Path::new("/"), &confinement, true)?;
    hand_over(sysinfo, listener, &confinement)?;
    let env = cstrings(&p.env)?;
    match clone_parent(None)? {
        0 => {
            let out = ch.guest_side();
            let _ = std::env::set_current_dir("/");
            // A session of its own (Debian's sendsigs spares the session that runs rc 6).
            // And the pty slave on its stdin as its controlling terminal.
            let _ = sys::process::setsid();
            if p.tty {
                let _ = sys::process::stdin_as_controlling_tty();
            }
            let env = match &p.user {
                None => Ok(env),
                Some(u) => user::lookup(u).and_then(|who| {
                    user::switch(&who)?;
                    user::environment(&env, &who)
                }),
            };
            let e = match env {
                Ok(env) => exec(&p.argv, &env, true),
                Err(e) => e.doing("suexec"),
            };
            out.send(&Report::Error(e));
            // Leave without the parent's destructors; 127 as a shell would.
            sys::process::exit_now(127)
        }
        pid => {
            ch.trusted.send(&Report::Pid(pid));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[&str]) -> Vec<CString> {
        vars.iter().map(|v| CString::new(*v).unwrap()).collect()
    }

    #[test]
    fn a_command_is_searched_in_the_guests_path_only_without_a_slash() {
        let here = |c: &str| c == "/opt/bin/tool" || c == "/bin/tool";
        assert_eq!(
            search_path("tool", &env(&["PATH=/opt/bin:/bin"]), here),
            "/opt/bin/tool"
        );
        assert_eq!(search_path("tool", &env(&["HOME=/"]), here), "/bin/tool");
        assert_eq!(
            search_path("./tool", &env(&["PATH=/opt/bin"]), here),
            "./tool"
        );
        assert_eq!(
            search_path("nosuch", &env(&["PATH=/opt/bin"]), here),
            "nosuch"
        );
    }

    #[test]
    fn a_clone_that_fails_says_why_in_the_guests_terms() {
        let e = clone_error("clone", std::io::Error::from_raw_os_error(libc::EAGAIN));
        assert_eq!(
            (e.step.as_str(), e.errno),
            ("stage.clone", Some(libc::EAGAIN))
        );
        assert!(e.to_string().contains("process limit is reached"), "{e}");
        let e = clone_error("clone3", std::io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(e.to_string().contains("needs Linux 5.7"), "{e}");
    }

    #[test]
    fn only_a_loopback_only_guest_gets_a_network_namespace_of_its_own() {
        let (_t, c) = crate::config::test_guest(&[("apps/init/style", "plain\n")]);
        let layout = crate::isolate::cgroup::Layout::parse(
            "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/\n",
        );
        let cg = layout.guest("vservers", "g");
        let mut p = crate::guest::plan::start_plan(&c, &cg).unwrap();
        let base = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
        p.loopback_netns = false;
        assert_eq!(start_namespaces(&p), base);
        p.loopback_netns = true;
        assert_eq!(start_namespaces(&p), base | libc::CLONE_NEWNET);
        p.netns = Some("/run/vserverd/netns/g".into());
        assert_eq!(start_namespaces(&p), base);
    }
}
