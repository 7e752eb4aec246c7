//! A guest's view of the CPUs (util-vserver's `virt_cpu`) and of its load (`virt_load`):
//! /proc/cpuinfo, /proc/stat and /sys/devices/system/cpu/online narrowed to the CPUs the guest
//! may use, and /proc/loadavg from its own tasks. Pure: the figures come in, text goes out.
//!
//! The CPUs a guest may use are its cpuset, cut to its CPU quota rounded up (a guest at 1.5
//! CPUs of 4 sees 2). They are shown renumbered from 0, as lxcfs does, so
//! `grep -c processor /proc/cpuinfo`, glibc's sysconf(_SC_NPROCESSORS_ONLN) (which reads
//! the online file) and /proc/stat's per-CPU lines agree.

/// What the guest's cgroups say about its CPUs and tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuFigures {
    /// Host CPU numbers the guest may use, ascending (cpuset ∩ quota).
    pub cpus: Vec<usize>,
    /// CPU time the guest used on each of `cpus`, in USER_HZ ticks: (user, system). On cgroup
    /// v1 per CPU (cpuacct.usage_percpu_user/_sys); on v2, which keeps no per-CPU usage, the
    /// totals of cpu.stat spread evenly over `cpus`.
    pub used: Vec<(u64, u64)>,
    /// The guest's threads now running or runnable (state R), and all of them.
    pub running: u32,
    pub threads: u32,
    /// The load averages the kernel keeps for the guest's CPU cgroup (cpu.loadavg, from
    /// kernel-patch/'s CONFIG_CGROUP_LOADAVG), where the running kernel has them.
    pub kernel_load: Option<[f64; 3]>,
}

/// cpu.loadavg's text ("0.52 0.31 0.10") as numbers.
pub fn parse_loadavg(s: &str) -> Option<[f64; 3]> {
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The CPUs a guest may use: the first `ceil(quota)` of its cpuset, or the whole cpuset when
/// no quota limits it. Never empty when the cpuset is not.
pub fn visible(cpuset: &[usize], quota: Option<(u64, u64)>) -> Vec<usize> {
    let n = match quota {
        Some((q, period)) if period > 0 => q.div_ceil(period).max(1) as usize,
        _ => cpuset.len(),
    };
    cpuset.iter().copied().take(n).collect()
}

/// A kernel CPU list ("0-3,5,7-8") as numbers; None when it does not parse.
pub fn parse_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// /sys/devices/system/cpu/online for `n` CPUs.
pub fn online(n: usize) -> String {
    match n {
        0 | 1 => "0\n".to_string(),
        n => format!("0-{}\n", n - 1),
    }
}

/// The host's /proc/cpuinfo with only the blocks of `cpus`, renumbered from 0 (`processor`,
/// and the per-package fields that count CPUs: `siblings`, `cpu cores`, `core id`, `apicid`
/// are left as the host has them, as lxcfs does).
pub fn cpuinfo(host: &str, cpus: &[usize]) -> String {
    let mut out = String::with_capacity(host.len());
    let mut shown = 0usize;
    for block in host.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let n = block.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "processor").then(|| v.trim().parse::<usize>().ok())?
        });
        let Some(n) = n else {
            // Architectures with a trailing block that is not a CPU (none on x86): keep it.
            out.push_str(block.trim_start_matches('\n'));
            out.push_str("\n\n");
            continue;
        };
        if !cpus.contains(&n) {
            continue;
        }
        for l in block.trim_start_matches('\n').lines() {
            match l.split_once(':') {
                Some((k, _)) if k.trim() == "processor" => {
                    out.push_str(&format!("{k}: {shown}\n"));
                }
                _ => {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
        shown += 1;
    }
    out
}

/// The host's /proc/stat with the CPU lines rebuilt for the guest: `cpuN` for each visible CPU
/// (renumbered) with the guest's user and system time, idle the rest of that host CPU's time
/// since boot, and `cpu` their sum; `procs_running` the guest's. Every other line (intr, ctxt,
/// btime, processes, procs_blocked, softirq) is the host's, as lxcfs shows them.
pub fn stat(host: &str, f: &CpuFigures) -> String {
    let host_cpu = |n: usize| -> Option<Vec<u64>> {
        let key = format!("cpu{n}");
        host.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == key).then(|| it.filter_map(|v| v.parse().ok()).collect())
        })
    };
    let mut lines = Vec::with_capacity(f.cpus.len());
    let mut total = [0u64; 10];
    for (i, &c) in f.cpus.iter().enumerate() {
        let all: u64 = host_cpu(c).map_or(0, |v| v.iter().take(8).sum());
        let (user, system) = f.used.get(i).copied().unwrap_or((0, 0));
        let idle = all.saturating_sub(user + system);
        let row = [user, 0, system, idle, 0, 0, 0, 0, 0, 0];
        for (t, v) in total.iter_mut().zip(row) {
            *t += v;
        }
        lines.push(format!("cpu{i} {}", join(&row)));
    }
    let mut out = String::with_capacity(host.len());
    out.push_str(&format!("cpu  {}\n", join(&total)));
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    for l in host.lines().filter(|l| !l.starts_with("cpu")) {
        if l.starts_with("procs_running ") {
            out.push_str(&format!("procs_running {}\n", f.running.max(1)));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// A guest's load averages, kept by the server per guest and brought up to date on each read:
/// the kernel's exponential decay over 1, 5 and 15 minutes, fed with the number of the guest's
/// runnable tasks seen at that read. Between two reads the count is taken to have been the
/// one seen now, so this is an approximation that wakes nothing while nobody reads (the kernel
/// samples every 5 s; a guest read once a minute is averaged over one sample).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub avg: [f64; 3],
    /// Seconds (monotonic) of the last update; None before the first.
    pub at: Option<f64>,
}

impl Load {
    /// Brings the averages to `now` (seconds), `running` tasks having been runnable.
    pub fn update(&mut self, now: f64, running: u32) {
        let n = running as f64;
        match self.at {
            None => self.avg = [n; 3],
            Some(then) => {
                let dt = (now - then).max(0.0);
                for (a, window) in self.avg.iter_mut().zip([60.0, 300.0, 900.0]) {
                    let e = (-dt / window).exp();
                    *a = *a * e + n * (1.0 - e);
                }
            }
        }
        self.at = Some(now);
    }
}

/// /proc/loadavg: the three averages, running/threads, and the host's last pid (the fifth
/// field: the guest's pid namespace has its own numbers, and nothing reads it).
pub fn loadavg(load: &Load, f: &CpuFigures, last_pid: &str) -> String {
    format!(
        "{:.2} {:.2} {:.2} {}/{} {}\n",
        load.avg[0],
        load.avg[1],
        load.avg[2],
        f.running.max(1),
        f.threads.max(1),
        last_pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2000.0\n\n\
                           processor\t: 1\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2000.0\n\n\
                           processor\t: 2\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2000.0\n\n";

    #[test]
    fn the_quota_rounded_up_cuts_the_cpuset() {
        assert_eq!(visible(&[0, 1, 2, 3], None), vec![0, 1, 2, 3]);
        assert_eq!(visible(&[0, 1, 2, 3], Some((150_000, 100_000))), vec![0, 1]);
        assert_eq!(visible(&[2, 3], Some((10_000, 100_000))), vec![2]);
        assert_eq!(visible(&[1], Some((800_000, 100_000))), vec![1]);
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_list("0-3,5,7-8\n"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_list("1"), Some(vec![1]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
        assert_eq!(online(1), "0\n");
        assert_eq!(online(3), "0-2\n");
    }

    #[test]
    fn cpuinfo_keeps_the_visible_cpus_renumbered() {
        let out = cpuinfo(CPUINFO, &[1, 2]);
        assert_eq!(out.matches("processor").count(), 2);
        assert!(out.starts_with("processor\t: 0\nvendor_id"), "{out}");
        assert!(out.contains("processor\t: 1\n"), "{out}");
        assert!(!out.contains("processor\t: 2"), "{out}");
        assert_eq!(cpuinfo(CPUINFO, &[]).matches("processor").count(), 0);
    }

    #[test]
    fn stat_shows_the_guests_time_on_its_cpus() {
        let host = "cpu  300 0 300 3000 0 0 0 0 0 0\n\
                    cpu0 100 0 100 1000 0 0 0 0 0 0\n\
                    cpu1 100 0 100 1000 0 0 0 0 0 0\n\
                    cpu2 100 0 100 1000 0 0 0 0 0 0\n\
                    intr 5 1\nctxt 42\nbtime 1700000000\nprocesses 99\n\
                    procs_running 7\nprocs_blocked 0\n";
        let f = CpuFigures {
            cpus: vec![1, 2],
            used: vec![(30, 10), (20, 0)],
            running: 2,
            threads: 9,
            kernel_load: None,
        };
        let out = stat(host, &f);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "cpu  50 0 10 2340 0 0 0 0 0 0");
        assert_eq!(lines[1], "cpu0 30 0 10 1160 0 0 0 0 0 0");
        assert_eq!(lines[2], "cpu1 20 0 0 1180 0 0 0 0 0 0");
        assert!(!out.contains("cpu2"), "{out}");
        assert!(out.contains("\nctxt 42\n") && out.contains("\nbtime 1700000000\n"));
        assert!(out.contains("\nprocs_running 2\n"), "{out}");
    }

    #[test]
    fn load_rises_and_decays_like_the_kernels() {
        let mut l = Load::default();
        l.update(0.0, 0);
        assert_eq!(l.avg, [0.0; 3]);
        l.update(60.0, 2);
        // One minute at 2: the 1-minute average reaches 2(1 - 1/e).
        assert!((l.avg[0] - 2.0 * (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        assert!(l.avg[1] < l.avg[0] && l.avg[2] < l.avg[1]);
        let high = l.avg[0];
        l.update(180.0, 0);
        assert!(l.avg[0] < high / 5.0);
        let f = CpuFigures {
            running: 0,
            threads: 3,
            ..Default::default()
        };
        assert!(loadavg(&l, &f, "123").ends_with(" 1/3 123\n"));
        assert_eq!(parse_loadavg("0.52 0.31 0.10\n"), Some([0.52, 0.31, 0.10]));
        assert_eq!(parse_loadavg("0.52 x"), None);
    }
}
