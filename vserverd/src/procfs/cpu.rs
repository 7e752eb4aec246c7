//! The CPU figures of the cgroups a process is in, for virt_cpu and virt_load: its cpuset, its
//! CPU quota (the tightest on the way up), the CPU time it used, and its threads' states.
//! v1 (the `cpuset`, `cpu` and `cpuacct` hierarchies) and v2 (the unified hierarchy).

use std::path::{Path, PathBuf};

use super::cpuview::{self, CpuFigures};
use crate::isolate::cgroup::{Hierarchy, Layout};

/// Threads looked at for the load; a guest with more is counted up to here.
const MAX_THREADS: usize = 65_536;

use super::files::read;

fn dir_of<'a>(layout: &'a Layout, controller: &str) -> Option<(&'a Hierarchy, PathBuf)> {
    let h = layout
        .hierarchies
        .iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
        .or_else(|| layout.v2())?;
    Some((h, h.mount.join(&h.own)))
}

/// The first of `files` that exists, from `dir` up to `mount`.
fn up(mount: &Path, dir: &Path, file: &str) -> Option<String> {
    let mut d = dir.to_path_buf();
    loop {
        if let Some(s) = read(d.join(file)) {
            return Some(s);
        }
        if d == mount || !d.pop() || !d.starts_with(mount) {
            return None;
        }
    }
}

/// The host's online CPUs.
fn host_cpus() -> Vec<usize> {
    read(Path::new("/sys/devices/system/cpu/online"))
        .and_then(|s| cpuview::parse_list(&s))
        .unwrap_or_else(|| vec![0])
}

/// The tightest quota (quota, period) from `dir` up.
fn quota(h: &Hierarchy, dir: &Path) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    let mut d = dir.to_path_buf();
    loop {
        let q = if h.v2 {
            read(d.join("cpu.max")).and_then(|s| {
                let mut it = s.split_whitespace();
                let q = it.next()?.parse().ok()?;
                Some((q, it.next()?.parse().ok()?))
            })
        } else {
            let q: i64 = read(d.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
            let p: u64 = read(d.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
            u64::try_from(q).ok().map(|q| (q, p))
        };
        if let Some((q, p)) = q.filter(|(_, p)| *p > 0) {
            if best.is_none_or(|(bq, bp)| (q as f64 / p as f64) < (bq as f64 / bp as f64)) {
                best = Some((q, p));
            }
        }
        if d == h.mount || !d.pop() || !d.starts_with(&h.mount) {
            return best;
        }
    }
}

/// Nanoseconds (or microseconds on v2) to USER_HZ ticks.
fn ticks(ns: u64) -> u64 {
    let hz = crate::sys::process::clock_ticks().max(1) as u64;
    ns / (1_000_000_000 / hz)
}

/// The CPU time used per visible CPU, (user, system) ticks. Per CPU on v1 when the guest sees
/// every CPU it may run on; when a quota narrowed what it sees (it still runs on any CPU of
/// its cpuset) or on v2 (no per-CPU usage), its total spread evenly over the visible CPUs, so
/// no time it used is lost.
fn used(layout: &Layout, cpus: &[usize], runs_on: usize) -> Vec<(u64, u64)> {
    let Some((h, dir)) = dir_of(layout, "cpuacct") else {
        return vec![(0, 0); cpus.len()];
    };
    if !h.v2 {
        let per = |f: &str| -> Vec<u64> {
            read(dir.join(f))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        };
        let (user, sys) = (
            per("cpuacct.usage_percpu_user"),
            per("cpuacct.usage_percpu_sys"),
        );
        let all = per("cpuacct.usage_percpu");
        if runs_on > cpus.len() {
            let n = cpus.len().max(1) as u64;
            let (u, s) = if user.is_empty() {
                (all.iter().sum::<u64>(), 0)
            } else {
                (user.iter().sum::<u64>(), sys.iter().sum::<u64>())
            };
            return vec![(ticks(u / n), ticks(s / n)); cpus.len()];
        }
        return cpus
            .iter()
            .map(|&c| match (user.get(c), sys.get(c)) {
                (Some(&u), Some(&s)) => (ticks(u), ticks(s)),
                _ => (ticks(all.get(c).copied().unwrap_or(0)), 0),
            })
            .collect();
    }
    let stat = read(dir.join("cpu.stat")).unwrap_or_default();
    let get = |k: &str| -> u64 {
        stat.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let n = cpus.len().max(1) as u64;
    let (u, s) = (get("user_usec ") * 1000, get("system_usec ") * 1000);
    vec![(ticks(u / n), ticks(s / n)); cpus.len()]
}

/// Every thread of the cgroup tree at `dir` (v1 `tasks`, v2 `cgroup.threads`), up to
/// MAX_THREADS; (running or runnable, all).
fn threads(h: &Hierarchy, dir: &Path) -> (u32, u32) {
    let file = if h.v2 { "cgroup.threads" } else { "tasks" };
    let (mut running, mut all) = (0u32, 0usize);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for tid in read(d.join(file)).unwrap_or_default().lines() {
            if all >= MAX_THREADS {
                return (running, all as u32);
            }
            all += 1;
            let state = read(Path::new(&format!("/proc/{tid}/stat")))
                .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].trim().chars().next()));
            if state == Some('R') {
                running += 1;
            }
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    (running, all as u32)
}

/// The number of tasks in the cgroups of a process whose /proc/PID/cgroup text is `cgroup`
/// (`pids.current`: one read, for sysinfo's `procs`), and its kernel load averages if the
/// kernel keeps them (kernel-patch/).
pub fn tasks_and_kernel_load(cgroup: &str) -> (u32, Option<[f64; 3]>) {
    let layout = super::files::layout(cgroup);
    let tasks = dir_of(&layout, "pids")
        .and_then(|(_, dir)| read(dir.join("pids.current")))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let load = dir_of(&layout, "cpu")
        .and_then(|(_, dir)| read(dir.join("cpu.loadavg")))
        .and_then(|s| cpuview::parse_loadavg(&s));
    (tasks, load)
}

/// The figures of a process whose /proc/PID/cgroup text is `cgroup`.
pub fn of_cgroup(cgroup: &str) -> CpuFigures {
    let layout = super::files::layout(cgroup);
    let cpuset = dir_of(&layout, "cpuset")
        .and_then(|(h, dir)| {
            let file = if h.v2 {
                "cpuset.cpus.effective"
            } else {
                "cpuset.effective_cpus"
            };
            up(&h.mount, &dir, file)
        })
        .and_then(|s| cpuview::parse_list(&s))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(host_cpus);
    let q = dir_of(&layout, "cpu").and_then(|(h, dir)| quota(h, &dir));
    let kernel_load = dir_of(&layout, "cpu")
        .and_then(|(_, dir)| read(dir.join("cpu.loadavg")))
        .and_then(|s| cpuview::parse_loadavg(&s));
    let cpus = cpuview::visible(&cpuset, q);
    let used = used(&layout, &cpus, cpuset.len());
    let (running, threads) = dir_of(&layout, "pids")
        .or_else(|| dir_of(&layout, "cpu"))
        .map_or((0, 0), |(h, dir)| threads(h, &dir));
    CpuFigures {
        cpus,
        used,
        running,
        threads,
        kernel_load,
    }
}
