//! Method parameters, replies and errors of `org.linux-vserver.Manager`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zlink::introspect::{self, CustomType, Type};

/// Where a guest is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zlink(rename_all = "snake_case")]
pub enum GuestState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

impl GuestState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestState::Stopped => "stopped",
            GuestState::Starting => "starting",
            GuestState::Running => "running",
            GuestState::Stopping => "stopping",
            GuestState::Failed => "failed",
        }
    }
}

/// A problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct ConfigProblem {
    /// The file the problem is in.
    pub file: String,
    /// The 1-based line, when the problem is on one line.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
    /// A stable name of the kind of problem (`context-missing`, `name-unknown`, …; docs/config.md
    /// lists them): scripts match this, never the message. Never changes meaning.
    #[serde(default)]
    pub code: String,
}

/// One guest's tree as Check finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct GuestCheck {
    /// The guest's name.
    pub name: String,
    /// Every error: the tree is refused when there is any.
    pub errors: Vec<ConfigProblem>,
    /// Things that parse but are ignored, not applicable, or likely not what was meant.
    pub warnings: Vec<ConfigProblem>,
}

/// The reply of Check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct CheckReport {
    /// One entry per guest checked, sorted by name.
    pub guests: Vec<GuestCheck>,
}

/// One guest as List shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestSummary {
    /// The guest's name: the basename of its config folder.
    pub name: String,
    /// The static context id, when the config gives a valid one.
    pub context: Option<u32>,
    /// The lifecycle state.
    pub state: GuestState,
    /// The guest's marks (apps/init/mark).
    pub mark: Vec<String>,
    /// Guests that must run before this one (apps/init/depends).
    pub depends: Vec<String>,
    /// The guest is disabled: skipped by mark selection and autostart.
    pub disabled: bool,
    /// The config tree does not parse; Validate gives the details.
    pub config_error: Option<ConfigProblem>,
}

/// The reply of List.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestList {
    pub guests: Guests,
}

/// The guests of a List reply. The daemon answers List from the list it built last until
/// something changes, so it keeps that list shared and its JSON made once: each call then
/// copies bytes instead of serializing ~120 bytes a guest again. On the wire (and in the IDL)
/// it is a plain `[]GuestSummary`; a decoded list has no JSON kept.
#[derive(Debug, Clone, Default)]
pub struct Guests {
    list: Arc<Vec<GuestSummary>>,
    json: Option<Arc<RawValue>>,
}

impl Guests {
    /// The list with its JSON made now, for a sender that will send it more than once.
    pub fn serialized(list: Vec<GuestSummary>) -> Self {
        let json = serde_json::value::to_raw_value(&list).ok().map(Arc::from);
        Self {
            list: Arc::new(list),
            json,
        }
    }
}

impl From<Vec<GuestSummary>> for Guests {
    fn from(list: Vec<GuestSummary>) -> Self {
        Self {
            list: Arc::new(list),
            json: None,
        }
    }
}

impl std::ops::Deref for Guests {
    type Target = [GuestSummary];

    fn deref(&self) -> &[GuestSummary] {
        &self.list
    }
}

impl PartialEq for Guests {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Serialize for Guests {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => json.serialize(s),
            None => self.list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Guests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Self::from)
    }
}

impl Type for Guests {
    const TYPE: &'static zlink::idl::Type<'static> = <Vec<GuestSummary> as Type>::TYPE;
}

/// The reply of Status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestStatus {
    pub name: String,
    pub context: Option<u32>,
    pub state: GuestState,
    /// The guest's root directory.
    pub vdir: String,
    /// The guest's config folder (CONFIG_ROOT/NAME).
    pub config_dir: String,
    /// The host pid of the guest's init, while it runs.
    pub init_pid: Option<u32>,
    /// Number of processes in the guest, while it runs.
    pub processes: Option<u32>,
    /// Seconds since the guest started, while it runs.
    pub uptime_seconds: Option<f64>,
    /// The config changed in a way that takes effect only at the next start.
    pub restart_needed: bool,
    pub config_error: Option<ConfigProblem>,
    /// Why the guest last stopped on its own or failed to start (init's exit, a reboot, the
    /// failing step).
    pub message: Option<String>,
    /// Set when the guest runs without a pids or memory limit: what is missing.
    #[serde(default)]
    pub unbounded: Option<String>,
    /// Set when the guest cannot reach other machines (loopback only, host-only addresses).
    #[serde(default)]
    pub no_route_out: Option<String>,
    /// Set when the guest asks for the shared network stack, which this host cannot give: why,
    /// and that it gets a network namespace instead.
    #[serde(default)]
    pub network_fallback: Option<String>,
    /// What the running kernel lacks (kernel-patch/) that this guest's config would use:
    /// per-cgroup load averages for virt_load, copy-on-write links for unify on ext4.
    #[serde(default)]
    pub kernel_lacks: Option<String>,
}

/// The reply of Validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct Validation {
    pub config: crate::config::GuestConfig,
    /// Things that parse but are ignored or cannot be applied on a mainline kernel.
    pub warnings: Vec<ConfigProblem>,
}

/// A progress report of a long-running operation (Start, Stop, Build, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct Progress {
    pub name: String,
    /// The step being done, e.g. "mount", "cgroup", "spawn".
    pub step: String,
    pub message: String,
    pub state: GuestState,
}

/// A state change of a guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct Event {
    pub name: String,
    /// starting running stopping stopped failed reboot halt exited config-changed, or lost.
    // "lost" (no name): events were dropped because the client read too slowly.
    pub kind: String,
    pub message: Option<String>,
}

/// New limits for a running guest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, CustomType)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in CPUs (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// Disk space limit in bytes (dlimits/: a project quota or btrfs qgroup).
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// Disk inode limit (project quotas only).
    #[serde(default)]
    pub disk_inodes: Option<u64>,
}

/// Resource use of one running guest (vserver-stat's row), from its cgroups and /proc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestStat {
    pub name: String,
    pub context: u32,
    pub processes: u32,
    /// Sum of the processes' virtual sizes.
    pub vsz_bytes: u64,
    /// Resident memory: anonymous plus mapped file pages, as the memory controller counts.
    pub rss_bytes: u64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub uptime_seconds: f64,
    /// Disk space its limits count (dlimits/), when it has one.
    #[serde(default)]
    pub disk_used_bytes: Option<u64>,
    #[serde(default)]
    pub disk_limit_bytes: Option<u64>,
    #[serde(default)]
    pub inodes_used: Option<u64>,
    #[serde(default)]
    pub inodes_limit: Option<u64>,
}

/// The reply of Stat: every running guest, by context id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct StatList {
    pub guests: Vec<GuestStat>,
}

/// One process of a running guest (vps's CONTEXT and VSERVER columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct GuestProcess {
    /// The host pid.
    pub pid: u32,
    /// The guest's name.
    pub name: String,
    /// The guest's context id.
    pub context: u32,
}

/// The reply of Processes: every process of every running guest, by host pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct ProcessList {
    pub processes: Vec<GuestProcess>,
}

/// The reply of Kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct KillReply {
    /// How many processes were signalled.
    pub signalled: u32,
}

/// The errors of `org.linux-vserver.Manager`.
#[derive(Debug, Clone, PartialEq, zlink::ReplyError, introspect::ReplyError)]
#[zlink(interface = "org.linux-vserver.Manager")]
pub enum ManagerError {
    /// No guest of that name exists under the config root.
    NoSuchGuest { name: String },
    /// The guest's configuration does not parse.
    InvalidConfig {
        file: String,
        line: Option<u32>,
        message: String,
        /// The problem's stable code (ConfigProblem.code).
        code: Option<String>,
    },
    /// The guest is running already.
    AlreadyRunning { name: String },
    /// The guest is not running.
    NotRunning { name: String },
    /// A dependency of the guest could not be started.
    DependencyFailed {
        name: String,
        dependency: String,
        reason: String,
    },
    /// apps/init/depends has a cycle or names a guest that does not exist; nothing started.
    InvalidDependencies { message: String },
    /// The caller may not do this.
    PermissionDenied { reason: String },
    /// The method is declared but not implemented by this daemon yet.
    NotImplemented { method: String },
    /// An operation failed. `step` names the lifecycle step that failed (as the fault points
    /// do, docs/crash.md) and `errno` the system call's error number, where there was one.
    Failed {
        name: String,
        message: String,
        step: Option<String>,
        errno: Option<i32>,
    },
}

impl ManagerError {
    /// A failure that is not a lifecycle step's (no step, no errno).
    pub fn failed(name: impl Into<String>, message: impl Into<String>) -> ManagerError {
        ManagerError::Failed {
            name: name.into(),
            message: message.into(),
            step: None,
            errno: None,
        }
    }
}

impl std::fmt::Display for ManagerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagerError::NoSuchGuest { name } => write!(f, "no such guest: {name}"),
            ManagerError::InvalidConfig {
                file,
                line,
                message,
                ..
            } => match line {
                Some(l) => write!(f, "{file}:{l}: {message}"),
                None => write!(f, "{file}: {message}"),
            },
            ManagerError::AlreadyRunning { name } => write!(f, "vserver '{name}' already running"),
            ManagerError::NotRunning { name } => write!(f, "vserver '{name}' is not running"),
            ManagerError::DependencyFailed {
                name,
                dependency,
                reason,
            } => write!(f, "{name}: dependency {dependency} failed: {reason}"),
            ManagerError::InvalidDependencies { message } => write!(f, "{message}"),
            ManagerError::PermissionDenied { reason } => write!(f, "permission denied: {reason}"),
            ManagerError::NotImplemented { method } => {
                write!(f, "{method} is not implemented by this vserverd yet")
            }
            // A failure of no one guest (a run over several: unify, check of the tree) has no
            // name to put first.
            ManagerError::Failed { name, message, .. } if name.is_empty() => write!(f, "{message}"),
            ManagerError::Failed { name, message, .. } => write!(f, "{name}: {message}"),
        }
    }
}

impl std::error::Error for ManagerError {}

/// A reply of Unify: a progress step while it runs; the last one carries the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct UnifyReply {
    /// walk, hash, share, save, or done.
    pub step: String,
    pub message: String,
    /// In the last reply.
    pub report: Option<UnifyReport>,
}

/// What a Unify run found and did (with `dry_run`: what it would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct UnifyReport {
    pub dry_run: bool,
    /// The guests walked.
    pub guests: Vec<String>,
    /// Each guest's exclude list, as "NAME: FILE" (or "built-in", "none").
    pub excludes: Vec<String>,
    /// Regular files walked (paths; hard links counted per path).
    pub files: u64,
    /// Distinct inodes among them.
    pub inodes: u64,
    /// Files and folders an exclude rule kept out.
    pub excluded: u64,
    /// Inodes with a same-sized twin: the ones whose content matters.
    pub candidates: u64,
    /// Inodes read and hashed in this run.
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Inodes whose hash came from the store (unchanged since an earlier run).
    pub cached_files: u64,
    /// Groups of identical inodes that had something to share.
    pub groups: u64,
    /// Inodes shared onto their group's source in this run (dry run: would be).
    pub unified_files: u64,
    /// Bytes of those inodes now using the source's blocks (dry run: would be).
    pub unified_bytes: u64,
    /// Inodes in a group shared by an earlier run already.
    pub already_shared_files: u64,
    /// Inodes that changed between the hash and the share (left alone, next run retries).
    pub changed_files: u64,
    /// Problems met (the first few), each naming the guest and path.
    pub errors: Vec<String>,
    pub seconds: f64,
    /// How files were shared: "reflink" (their blocks, through the dedupe ioctl) or
    /// "hardlink" (one inode marked as a copy-on-write link, on ext4 with kernel-patch/).
    #[serde(default)]
    pub mode: Option<String>,
    /// Files identical to their group's source but left alone on purpose (hard-link mode:
    /// other extended attributes, another project id).
    #[serde(default)]
    pub left_alone_files: u64,
    /// The first few of them, each naming guest, path and reason.
    #[serde(default)]
    pub left_alone: Vec<String>,
}

/// One guest's disk usage (Du).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestDiskUsage {
    pub name: String,
    pub vdir: String,
    /// Regular files (inodes; hard links once).
    pub files: u64,
    /// Sum of file sizes.
    pub apparent_bytes: u64,
    /// Bytes in the files' extents (FIEMAP).
    pub allocated_bytes: u64,
    /// Of those, bytes in extents the file system marks shared (with another file, another
    /// guest, or a snapshot).
    pub shared_bytes: u64,
    /// allocated − shared: what only this guest uses.
    pub own_bytes: u64,
    /// What its disk limit (dlimits/) counts, and the limit while it runs.
    #[serde(default)]
    pub quota_used_bytes: Option<u64>,
    #[serde(default)]
    pub quota_limit_bytes: Option<u64>,
    #[serde(default)]
    pub quota_inodes: Option<u64>,
    #[serde(default)]
    pub quota_inodes_limit: Option<u64>,
    /// Problems met (the first few).
    pub errors: Vec<String>,
}

/// The reply of Du.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct DiskUsageList {
    pub guests: Vec<GuestDiskUsage>,
}

/// The reply of Console; its fd is a connection to the guest's console: what the guest writes
/// to /dev/console comes out of it, what is written to it is typed on the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct ConsoleReply {
    /// Where everything the console shows is also logged.
    pub log: String,
}

/// A reply of Exec and Enter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct ExecReply {
    /// The host pid of the process, in the first reply.
    pub pid: Option<u32>,
    /// The exit code, in the last reply, when the process exited.
    pub exit_code: Option<i64>,
    /// The signal that ended the process, in the last reply, when it was killed.
    pub signal: Option<i64>,
}

/// How Build makes a guest (util-vserver's `vserver NAME build` options).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, CustomType)]
pub struct BuildOptions {
    /// The static context id; the next free one from 40000 up when absent.
    pub context: Option<u32>,
    /// uts/nodename.
    pub hostname: Option<String>,
    /// Interfaces as `[NAME=][DEV:]IP[/PREFIX]`.
    pub interfaces: Vec<String>,
    /// apps/init/style.
    pub initstyle: Option<String>,
    /// The build method's own arguments (after `--`).
    pub arguments: Vec<String>,
    /// An existing config tree or non-empty root is renamed to `PATH.~EPOCH~` first
    /// (util-vserver's `--force`) instead of failing the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summaries() -> Vec<GuestSummary> {
        ["web", "db\"quoted\""]
            .iter()
            .map(|n| GuestSummary {
                name: n.to_string(),
                context: Some(40001),
                state: GuestState::Running,
                mark: vec!["default".into()],
                depends: vec![],
                disabled: false,
                config_error: None,
            })
            .collect()
    }

    #[test]
    fn a_failure_says_its_guest_first_when_it_has_one() {
        assert_eq!(
            ManagerError::failed("web", "start: no init").to_string(),
            "web: start: no init"
        );
        assert_eq!(
            ManagerError::failed("", "name at least one guest (or all)").to_string(),
            "name at least one guest (or all)"
        );
    }

    #[test]
    fn a_list_serialized_once_is_the_same_json_as_one_serialized_per_call() {
        let kept = GuestList {
            guests: Guests::serialized(summaries()),
        };
        let plain = GuestList {
            guests: summaries().into(),
        };
        let json = serde_json::to_string(&kept).unwrap();
        assert_eq!(json, serde_json::to_string(&plain).unwrap());
        assert!(
            json.starts_with(r#"{"guests":[{"name":"web","context":40001"#),
            "{json}"
        );
        let back: GuestList = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plain);
        assert_eq!(back.guests.len(), 2);
        assert_eq!(back.guests[1].name, "db\"quoted\"");
    }
}
