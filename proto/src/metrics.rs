//! The reply of Metrics: what monitoring needs of every guest and of the daemon, as figures
//! (the Prometheus text format is made from them client-side, in `exposition`).

use serde::{Deserialize, Serialize};
use zlink::introspect::CustomType;

use crate::GuestState;

/// The reply of Metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct MetricsReply {
    /// The daemon's version.
    pub version: String,
    /// When the daemon started, in seconds since the epoch (counters below count from then).
    pub start_time_seconds: f64,
    /// Every configured guest, and running guests whose config tree is gone, by name.
    pub guests: Vec<GuestMetrics>,
    /// Upper bounds (seconds) of the latency histogram's buckets, ascending; +Inf is implied.
    pub latency_buckets: Vec<f64>,
    /// One entry per method called since the daemon started, by name.
    pub rpc: Vec<RpcMetrics>,
}

/// One guest's figures. Resource figures are set while it runs and its cgroup has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestMetrics {
    pub name: String,
    /// The context id, when the config gives a valid one (or the running guest's).
    pub context: Option<u32>,
    pub state: GuestState,
    /// Skipped by mark selection and autostart.
    pub disabled: bool,
    /// apps/init/mark.
    pub mark: Vec<String>,
    /// When the running guest started, in seconds since the epoch.
    pub start_time_seconds: Option<f64>,
    pub uptime_seconds: Option<f64>,
    /// CPU time of all its processes (the cgroup's cpu.stat or cpuacct.stat).
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    /// The memory controller's count (memory.current, v1 memory.usage_in_bytes): anonymous,
    /// page cache and kernel memory charged to the guest.
    pub memory_bytes: Option<u64>,
    /// memory_bytes less the inactive page cache (memory.stat's inactive_file), which the
    /// kernel reclaims before it runs out: what nearing the limit means trouble for.
    pub memory_working_set_bytes: Option<u64>,
    /// The memory limit (memory.max, v1 memory.limit_in_bytes; of the shared group with
    /// cgroup/name); absent when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Processes (cgroup.procs of its cgroup and those below it).
    pub processes: Option<u32>,
    /// Tasks (threads included) as the pids controller counts them: what pids.max limits.
    pub pids: Option<u64>,
    /// pids.max; absent when unlimited.
    pub pids_limit: Option<u64>,
    /// Traffic of the veth pairs the daemon made for it, as the guest sees it; empty for a
    /// guest without one (loopback only, the shared stack, the host's stack, another guest's
    /// namespace).
    pub network: Vec<InterfaceCounters>,
    /// What its disk limit (dlimits/, `set --disk`) counts, while it runs with one: bytes (the
    /// project quota's space, or the btrfs qgroup's referenced bytes) and inodes (project
    /// quotas only).
    #[serde(default)]
    pub disk_used_bytes: Option<u64>,
    /// The disk limit in bytes; absent when none.
    #[serde(default)]
    pub disk_limit_bytes: Option<u64>,
    #[serde(default)]
    pub disk_used_inodes: Option<u64>,
    /// The inode limit; absent when none (btrfs has none).
    #[serde(default)]
    pub disk_limit_inodes: Option<u64>,
    /// Starts that completed, since the daemon started.
    pub starts: u64,
    /// Stops: asked for, or after init ended on its own.
    pub stops: u64,
    /// Starts that failed.
    pub start_failures: u64,
    /// Times init ended without a stop being asked for (the guest halted, rebooted or died).
    pub exits: u64,
}

impl GuestMetrics {
    /// A guest as List shows it, with no figures yet (those of a running guest are filled in
    /// by the collector) and its counters at 0.
    pub fn listed(
        name: String,
        context: Option<u32>,
        state: GuestState,
        disabled: bool,
        mark: Vec<String>,
    ) -> GuestMetrics {
        GuestMetrics {
            name,
            context,
            state,
            disabled,
            mark,
            start_time_seconds: None,
            uptime_seconds: None,
            cpu_user_seconds: None,
            cpu_system_seconds: None,
            memory_bytes: None,
            memory_working_set_bytes: None,
            memory_limit_bytes: None,
            processes: None,
            pids: None,
            pids_limit: None,
            network: vec![],
            disk_used_bytes: None,
            disk_limit_bytes: None,
            disk_used_inodes: None,
            disk_limit_inodes: None,
            starts: 0,
            stops: 0,
            start_failures: 0,
            exits: 0,
        }
    }
}

/// Byte and packet counters of one interface, from the guest's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CustomType)]
pub struct InterfaceCounters {
    /// The host end's name (the guest's end is in its namespace).
    pub device: String,
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
    pub receive_packets: u64,
    pub transmit_packets: u64,
}

/// Calls of one method since the daemon started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct RpcMetrics {
    /// The qualified method name (`org.linux-vserver.Manager.Start`); `invalid` for calls the
    /// IDL check refused.
    pub method: String,
    /// Calls received.
    pub calls: u64,
    /// Calls answered with an error.
    pub errors: u64,
    /// Calls answered (the last reply sent), in the histogram.
    pub completed: u64,
    /// Completed calls that took at most each of `latency_buckets` seconds (cumulative).
    pub buckets: Vec<u64>,
    /// Their total time, in seconds.
    pub sum_seconds: f64,
}
