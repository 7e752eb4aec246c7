//! The Metrics call's figures: per-guest lifecycle counters (counted as the events are
//! emitted), and each guest's resource use read from its cgroups and its veth pairs' counters
//! at the call. The Prometheus format is made client-side (proto::exposition).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use proto::{GuestMetrics, InterfaceCounters, MetricsReply};

use crate::daemon::Daemon;
use crate::guest::Running;
use crate::isolate::cgroup::GuestCgroup;

/// Starts, stops, failures and exits of one guest since the daemon started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub starts: u64,
    pub stops: u64,
    pub start_failures: u64,
    pub exits: u64,
}

/// Every guest's [`Counts`], fed by `Guests::emit`.
#[derive(Default)]
pub struct Counters(Mutex<HashMap<String, Counts>>);

impl Counters {
    /// Counts event `kind` of guest `name` (the kinds of proto::Event). A deleted guest's
    /// counts go: names come and go, the table must not grow with them.
    pub fn note(&self, name: &str, kind: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kind == "deleted" {
            m.remove(name);
            return;
        }
        let c = m.entry(name.to_string()).or_default();
        match kind {
            "running" => c.starts += 1,
            "stopped" => c.stops += 1,
            "failed" => c.start_failures += 1,
            "reboot" | "halt" | "exited" => c.exits += 1,
            _ => {}
        }
    }

    pub fn get(&self, name: &str) -> Counts {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).copied().unwrap_or_default()
    }
}

static STARTED: OnceLock<f64> = OnceLock::new();

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Notes when the daemon started (the counters' origin); the first call wins.
pub fn mark_start() -> f64 {
    *STARTED.get_or_init(now)
}

/// A limit file's value: None for `max` (v2) or v1's "unlimited" (a page counter's maximum,
/// about 2^63 rounded to pages), and for anything that is not a number.
pub fn parse_limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// A `key value` line's value (memory.stat). v1 lists the cgroup's own figures first and the
/// hierarchical `total_` ones after; the key is matched whole.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A count file's value (memory.current, pids.current).
fn parse_count(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// A limit of the guest (`controller`'s `file`): in its own cgroup, or its shared group's
/// (cgroup/name), where the daemon writes limits for guests in one.
fn limit(cg: &GuestCgroup, controller: &str, file: &str) -> Option<u64> {
    let own = cg.controller_dir(controller)?;
    let dir = if cg.shared {
        own.parent().unwrap_or(own)
    } else {
        own
    };
    parse_limit(&std::fs::read_to_string(dir.join(file)).ok()?)
}

/// /proc/net/dev of the daemon's own network namespace: each interface's counters, turned to
/// the far side's view (what the host end of a veth received, the guest sent). One read for
/// every guest; and unlike /sys/class/net, whose view is the namespace sysfs was mounted in,
/// it is always the reader's own.
pub fn parse_net_dev(text: &str) -> HashMap<String, InterfaceCounters> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 10 {
                return None;
            }
            let name = name.trim().to_string();
            Some((
                name.clone(),
                InterfaceCounters {
                    device: name,
                    receive_bytes: f[8],
                    transmit_bytes: f[0],
                    receive_packets: f[9],
                    transmit_packets: f[1],
                },
            ))
        })
        .collect()
}

/// The veth pairs whose host ends count this guest's traffic: those the daemon made for it.
/// A guest in another guest's namespace has none of its own (its traffic is that guest's).
fn veths(run: &Running) -> Vec<String> {
    let s = &run.state;
    if s.netns_shared {
        return vec![];
    }
    let mut v = s.extra_veths.clone();
    if let Some(h) = &s.host_veth {
        if !v.contains(h) {
            v.insert(0, h.clone());
        }
    }
    v
}

/// A file of the guest's cgroup for `controller` (its own directory in that hierarchy): one
/// open, where GuestCgroup::read tries every hierarchy in turn.
fn read_in(cg: &GuestCgroup, controller: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(cg.controller_dir(controller)?.join(file)).ok()
}

/// Processes of the guest, counted in one hierarchy (a process is in every hierarchy, so one
/// says all): the unified one, else the first; with the cgroups a systemd guest made below.
fn processes(cg: &GuestCgroup) -> Option<u32> {
    fn count(dir: &Path) -> u32 {
        let own = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().count() as u32)
            .unwrap_or(0);
        let below: u32 = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| count(&e.path()))
            .sum();
        own + below
    }
    let dir = cg
        .v2_dir()
        .or_else(|| cg.dirs.first().map(|d| d.path.as_path()))?;
    Some(count(dir))
}

/// The `device` label of a shared-stack guest's traffic: it has no device of its own, its
/// programs count its sockets' packets (isolate/sockbpf.rs `counters`).
pub const SHARED_DEVICE: &str = "shared";

/// A shared-stack guest's traffic, from its counters map (bytes from the IP header on, where a
/// veth's count includes the Ethernet header).
fn shared_traffic(run_dir: &Path, run: &Running) -> Vec<InterfaceCounters> {
    if run.state.shared_net.is_none() {
        return vec![];
    }
    crate::isolate::sockbpf::counters(run_dir, &run.state.name)
        .map(|c| InterfaceCounters {
            device: SHARED_DEVICE.into(),
            receive_bytes: c.rx_bytes,
            transmit_bytes: c.tx_bytes,
            receive_packets: c.rx_packets,
            transmit_packets: c.tx_packets,
        })
        .into_iter()
        .collect()
}

/// A running guest's resource figures, into `m`; `net`: the host's interfaces.
fn resources(
    run_dir: &Path,
    run: &Running,
    now: f64,
    net: &HashMap<String, InterfaceCounters>,
    m: &mut GuestMetrics,
) {
    let cg = &run.state.cgroup;
    m.start_time_seconds = Some(run.state.started);
    m.uptime_seconds = Some((now - run.state.started).max(0.0));
    let (user, system) = crate::guest::stat::cpu_seconds(cg);
    m.cpu_user_seconds = Some(user);
    m.cpu_system_seconds = Some(system);
    m.memory_bytes = read_in(cg, "memory", "memory.current")
        .or_else(|| read_in(cg, "memory", "memory.usage_in_bytes"))
        .and_then(|s| parse_count(&s));
    let stat = read_in(cg, "memory", "memory.stat").unwrap_or_default();
    let inactive = field(&stat, "total_inactive_file").or_else(|| field(&stat, "inactive_file"));
    m.memory_working_set_bytes = m
        .memory_bytes
        .map(|used| used.saturating_sub(inactive.unwrap_or(0)));
    m.memory_limit_bytes =
        limit(cg, "memory", "memory.max").or_else(|| limit(cg, "memory", "memory.limit_in_bytes"));
    m.processes = processes(cg);
    m.pids = read_in(cg, "pids", "pids.current").and_then(|s| parse_count(&s));
    m.pids_limit = limit(cg, "pids", "pids.max");
    m.network = veths(run)
        .iter()
        .filter_map(|d| net.get(d).cloned())
        .chain(shared_traffic(run_dir, run))
        .collect();
    // The disk limit's figures, as stat shows them: one quotactl or a few sysfs reads.
    let disk = run
        .disk
        .lock()
        .ok()
        .and_then(|d| d.first().cloned())
        .and_then(|a| crate::disk::apply::usage(&a).ok());
    if let Some(u) = disk {
        m.disk_used_bytes = Some(u.bytes);
        m.disk_limit_bytes = u.bytes_limit;
        m.disk_used_inodes = u.inodes;
        m.disk_limit_inodes = u.inodes_limit;
    }
}

/// The Metrics reply: every guest List knows (its cached reply), with figures for those that
/// run. Reads a few cgroup and sysfs files per running guest and no config tree.
pub fn collect(d: &Daemon) -> MetricsReply {
    let now = now();
    let list = d.list();
    let net = std::fs::read_to_string("/proc/self/net/dev")
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default();
    let mut guests: Vec<GuestMetrics> = list
        .guests
        .iter()
        .map(|s| {
            let c = d.guests.counters.get(&s.name);
            let mut m = GuestMetrics {
                starts: c.starts,
                stops: c.stops,
                start_failures: c.start_failures,
                exits: c.exits,
                ..GuestMetrics::listed(
                    s.name.clone(),
                    s.context,
                    s.state,
                    s.disabled,
                    s.mark.clone(),
                )
            };
            if let Some(run) = d.guests.running(&s.name) {
                m.context = Some(run.state.context);
                resources(&d.opts.run_dir, &run, now, &net, &mut m);
            }
            m
        })
        .collect();
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    MetricsReply {
        version: env!("CARGO_PKG_VERSION").into(),
        start_time_seconds: mark_start(),
        guests,
        latency_buckets: crate::rpc::stats::BUCKETS.to_vec(),
        rpc: crate::rpc::stats::snapshot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_unlimited_and_numbers() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("67108864\n"), Some(67108864));
        // v1's unlimited memory.limit_in_bytes on 4 KiB pages.
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("garbage"), None);
        assert_eq!(parse_count("1234\n"), Some(1234));
        let stat = "inactive_file 10\nactive_file 3\ntotal_inactive_file 30\n";
        assert_eq!(field(stat, "total_inactive_file"), Some(30));
        assert_eq!(field(stat, "inactive_file"), Some(10));
        assert_eq!(field(stat, "file"), None);
    }

    #[test]
    fn counters_follow_events_and_forget_deleted_guests() {
        let c = Counters::default();
        for k in [
            "starting", "running", "stopping", "stopped", "failed", "reboot", "stopped",
        ] {
            c.note("web", k);
        }
        assert_eq!(
            c.get("web"),
            Counts {
                starts: 1,
                stops: 2,
                start_failures: 1,
                exits: 1
            }
        );
        c.note("web", "deleted");
        assert_eq!(c.get("web"), Counts::default());
    }

    #[test]
    fn net_dev_counts_from_the_far_side() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
                 \x20   lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n\
                 vsd40001: 1000 10 0 0 0 0 0 0 5000 50 0 0 0 0 0 0\n";
        let m = parse_net_dev(t);
        assert_eq!(m.len(), 2);
        let v = &m["vsd40001"];
        assert_eq!(
            (
                v.receive_bytes,
                v.transmit_bytes,
                v.receive_packets,
                v.transmit_packets
            ),
            (5000, 1000, 50, 10)
        );
        // The real file parses, and has loopback.
        let real = parse_net_dev(&std::fs::read_to_string("/proc/self/net/dev").unwrap());
        assert!(real.contains_key("lo"), "{real:?}");
    }
}
