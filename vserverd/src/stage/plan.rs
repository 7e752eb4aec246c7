//! What the daemon tells a stage process to do, and what the stage reports back. Plain data:
//! the daemon builds it from the config (guest/plan.rs), the stage only carries it out.

use std::path::PathBuf;

pub use crate::isolate::cgroup::CgroupJoin;
use crate::isolate::mount::MountSpec;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Plan {
    /// Create a guest: its namespaces, mounts and PID 1.
    Start(Box<StartPlan>),
    /// Run a process inside a running guest.
    Join(JoinPlan),
    /// Bind host files again over a running guest's /proc files (a restarted /proc server).
    Rebind(RebindPlan),
    /// Make a network namespace owned by a new user namespace (its id maps left to the start,
    /// stage/userns.rs) and pin it: a `spaces/user` guest's own network namespace.
    Netns(NetnsPlan),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetnsPlan {
    /// Where the namespace is pinned (an existing empty file, bound over).
    pub pin: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebindPlan {
    pub name: String,
    pub init_pid: i32,
    /// Guards against a recycled pid.
    pub init_start_time: u64,
    /// (name in /proc, host path), as StartPlan::proc_files.
    pub proc_files: Vec<(String, PathBuf)>,
}

/// A ulimits/ entry; None is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Files the guest's PID 1 tidies before init runs (docs/lifecycle.md, Start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Prepare {
    None,
    /// Remove non-directories under /var/run and /var/lock.
    Sysv,
    /// Remove /.autofsck and /forcefsck, create /fastboot.
    Plain,
}

/// The settings every process entering a guest gets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Confinement {
    /// Capability bounding set, bit N = capability N.
    pub bcaps: u64,
    /// CLONE_NEW* flags the guest may unshare.
    pub umask: u64,
    pub ulimits: Vec<Ulimit>,
    pub nice: Option<i32>,
    pub ionice: Option<(u8, Option<u8>)>,
    pub personality: Option<u32>,
    /// sysinfo(2) answered by the /proc server (virt_mem, virt_load): where to send the
    /// filter's listener, and what the guest asked for (procfs/sysinfo.rs).
    #[serde(default)]
    pub sysinfo: Option<SysinfoNotify>,
}

/// Where a guest's sysinfo listener goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysinfoNotify {
    /// The /proc server's socket (procfs::sysinfo::socket_path).
    pub socket: PathBuf,
    /// procfs::sysinfo::{MEM, UPTIME, LOAD}.
    pub flags: u32,
}

/// The cgroup tree a systemd guest gets at /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SystemdCgroup {
    /// cgroup2 (the host has a unified hierarchy: pure v2, or hybrid).
    Unified,
    /// A tmpfs with the named v1 hierarchy name=systemd (hosts without cgroup2).
    NamedV1,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartPlan {
    pub name: String,
    pub cfg_dir: PathBuf,
    pub vdir: PathBuf,
    /// The guest's cgroups, joined before the cgroup namespace is made.
    pub cgroups: Vec<CgroupJoin>,
    /// A time namespace whose clocks start at zero (virt_uptime).
    pub time_ns: bool,
    /// The guest's network namespace (made and set up by the daemon), joined first; None
    /// shares the host's network.
    pub netns: Option<PathBuf>,
    /// With no `netns` to join: a network namespace of the guest's own with loopback only
    /// (the default for a guest without interfaces/); false shares the host's stack.
    #[serde(default)]
    pub loopback_netns: bool,
    pub mounts: Vec<MountSpec>,
    /// A user namespace of the guest's own (`spaces/user`): the base host id of its 65536
    /// (stage/userns.rs).
    #[serde(default)]
    pub userns: Option<u32>,
    /// `netns` is owned by the user namespace the guest is to run in (the daemon made both
    /// for it, through Plan::Netns): the start joins that user namespace rather than making
    /// one.
    #[serde(default)]
    pub netns_userns: bool,
    /// Host files bound over the guest's /proc files once its /proc is mounted: (name in /proc,
    /// host path). virt_mem's meminfo.
    #[serde(default)]
    pub proc_files: Vec<(String, PathBuf)>,
    /// Init is systemd: a /run tmpfs, /sys, and this cgroup tree, writable, rooted at the
    /// guest's own cgroup (the cgroup namespace).
    #[serde(default)]
    pub systemd_cgroup: Option<SystemdCgroup>,
    /// Bound on the guest's /dev/console (its console pty or log); None binds /dev/null.
    #[serde(default)]
    pub console: Option<PathBuf>,
    /// Report each step's time (Report::Mark): the daemon logs them at debug level.
    #[serde(default)]
    pub marks: bool,
    /// The daemon's fault-injection spec (debug builds; crate::fault), for the stage's points.
    #[serde(default)]
    pub fault: Option<String>,
    /// Written to the guest's /etc/mtab (unless that is a symlink).
    pub mtab: Option<String>,
    pub prepare: Prepare,
    /// Written as a RUN_LVL record into the guest's /var/run/utmp after `prepare` (sysv).
    #[serde(default)]
    pub runlevel: Option<String>,
    pub nodename: Option<String>,
    pub domainname: Option<String>,
    pub confinement: Confinement,
    /// The start command, and the whole environment of init.
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// Stay PID 1 as a reaper and run `argv` as a child (styles whose command returns).
    pub reaper: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinPlan {
    pub name: String,
    pub init_pid: i32,
    /// Start time of init, checked so a recycled pid is never joined.
    pub init_start_time: u64,
    pub cgroups: Vec<CgroupJoin>,
    pub confinement: Confinement,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// Make the process a session leader with fd 0 (a pty) as its controlling terminal.
    pub tty: bool,
    /// Run as this user of the guest (a name or a uid), looked up in the guest's own
    /// /etc/passwd once the process is inside the guest (`vserver NAME suexec`).
    #[serde(default)]
    pub user: Option<String>,
}

/// One line the stage (or the process it made) writes back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Report {
    /// The new process, as the host sees it; the daemon is its parent.
    Pid(i32),
    /// What failed, with its step and errno; nothing after it.
    Error(crate::error::StepError),
    /// A reaper's start command returned with this wait status; a rebind's success is
    /// Returned(0).
    Returned(i32),
    /// A helper process the stage made with CLONE_PARENT: the daemon's child, to be reaped;
    /// it exits once it has made the process it was for.
    Helper(i32),
    /// A step done, at this CLOCK_REALTIME (ns; not the time namespace's clocks): logged at
    /// debug level, so a start's time can be taken apart.
    Mark(String, u128),
}
