//! vserver-stat's figures for running guests, from their cgroups (memory, CPU time) and /proc
//! (virtual sizes): what the Linux-VServer kernel's /proc/virtual/XID gave.

use proto::GuestStat;

use super::Running;

/// Clock ticks per second of cpuacct.stat.
fn hz() -> f64 {
    crate::sys::process::clock_ticks().max(1) as f64
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
    })
}

fn vsize(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split_whitespace().nth(20)?.parse().ok()
        })
        .unwrap_or(0)
}

/// User and system CPU seconds of every process of the guest (v1 cpuacct.stat, else v2
/// cpu.stat, which v2 keeps whether or not the cpu controller is enabled).
pub fn cpu_seconds(cg: &crate::isolate::cgroup::GuestCgroup) -> (f64, f64) {
    let in_dir = |d: Option<&std::path::Path>, f: &str| {
        d.and_then(|d| std::fs::read_to_string(d.join(f)).ok())
    };
    if let Some(s) = in_dir(cg.controller_dir("cpuacct"), "cpuacct.stat") {
        (
            field(&s, "user").unwrap_or(0) as f64 / hz(),
            field(&s, "system").unwrap_or(0) as f64 / hz(),
        )
    } else {
        let s = in_dir(cg.v2_dir(), "cpu.stat").unwrap_or_default();
        (
            field(&s, "user_usec").unwrap_or(0) as f64 / 1e6,
            field(&s, "system_usec").unwrap_or(0) as f64 / 1e6,
        )
    }
}

pub fn of(run: &Running, now: f64) -> GuestStat {
    let cg = &run.state.cgroup;
    let pids = cg.pids();
    let mem = cg.read("memory.stat").unwrap_or_default();
    // v1 (hierarchical totals) or v2 names.
    let rss = match (field(&mem, "total_rss"), field(&mem, "anon")) {
        (Some(rss), _) => rss + field(&mem, "total_mapped_file").unwrap_or(0),
        (None, Some(anon)) => anon + field(&mem, "file_mapped").unwrap_or(0),
        (None, None) => 0,
    };
    let (user, system) = cpu_seconds(cg);
    let disk = run
        .disk
        .lock()
        .ok()
        .and_then(|d| d.first().cloned())
        .and_then(|a| crate::disk::apply::usage(&a).ok());
    GuestStat {
        disk_used_bytes: disk.map(|u| u.bytes),
        disk_limit_bytes: disk.and_then(|u| u.bytes_limit),
        inodes_used: disk.and_then(|u| u.inodes),
        inodes_limit: disk.and_then(|u| u.inodes_limit),
        name: run.state.name.clone(),
        context: run.state.context,
        processes: pids.len() as u32,
        vsz_bytes: pids.iter().map(|p| vsize(*p)).sum(),
        rss_bytes: rss,
        user_seconds: user,
        system_seconds: system,
        uptime_seconds: (now - run.state.started).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_value_files() {
        let t = "cache 10\nrss 20\ntotal_rss 300\ntotal_mapped_file 5\n";
        assert_eq!(field(t, "rss"), Some(20));
        assert_eq!(field(t, "total_rss"), Some(300));
        assert_eq!(field(t, "nope"), None);
        assert!(vsize(std::process::id() as i32) > 0);
    }
}
