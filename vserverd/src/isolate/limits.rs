//! A guest's resource settings as writes into its cgroup: util-vserver's cgroup/ files (v1
//! names, written as-is on v1 and translated on v2), rlimits/ (nproc → pids, rss → memory),
//! sched/ (the token bucket → a CPU quota), cpuset/. Pure: which hierarchy has which
//! controller is asked through a closure, so the tables are tested without cgroups.

use crate::config::limits::Limit;
use crate::config::GuestConfig;

/// Where a controller lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V1,
    V2,
}

/// One write: `file` (e.g. memory.max) of the guest's cgroup for `controller`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knob {
    pub controller: String,
    pub file: String,
    pub value: String,
    /// The config file it comes from, for errors.
    pub origin: String,
}

/// CPU period used for quotas (µs): the kernel's default.
pub const PERIOD_US: u64 = 100_000;

fn knob(file: &str, value: impl Into<String>, origin: &str) -> Knob {
    Knob {
        controller: file.split('.').next().unwrap_or("").to_string(),
        file: file.to_string(),
        value: value.into(),
        origin: origin.to_string(),
    }
}

/// cpu.shares (v1, 2..262144, default 1024) to cpu.weight (v2, 1..10000, default 100), the
/// conversion systemd and runc use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

fn num(origin: &str, v: &str) -> Result<i64, String> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| format!("{origin}: expected a number, got {v:?}"))
}

/// A v1 setting (file name and value as util-vserver writes them) in the flavor its controller
/// has. `limit_bytes` is the guest's memory limit, which v2's memory.swap.max needs (v1's memsw
/// counts memory and swap together, v2 swap alone).
fn translate(
    file: &str,
    value: &str,
    origin: &str,
    flavor: Flavor,
    limit_bytes: Option<i64>,
) -> Result<Vec<Knob>, String> {
    if flavor == Flavor::V1 {
        return Ok(vec![knob(file, value, origin)]);
    }
    let max = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    Ok(match file {
        "cpu.shares" => vec![knob(
            "cpu.weight",
            shares_to_weight(num(origin, value)?.max(2) as u64).to_string(),
            origin,
        )],
        "memory.limit_in_bytes" => vec![knob("memory.max", max(num(origin, value)?), origin)],
        "memory.soft_limit_in_bytes" => vec![knob("memory.high", max(num(origin, value)?), origin)],
        "memory.memsw.limit_in_bytes" => {
            let total = num(origin, value)?;
            let Some(mem) = limit_bytes else {
                return Err(format!(
                    "{origin}: memory.memsw.limit_in_bytes needs memory.limit_in_bytes to translate to cgroup v2's memory.swap.max"
                ));
            };
            vec![knob(
                "memory.swap.max",
                max(if total < 0 { -1 } else { (total - mem).max(0) }),
                origin,
            )]
        }
        "blkio.weight" => {
            let w = num(origin, value)?.clamp(10, 1000);
            vec![knob(
                "io.weight",
                format!("default {}", 1 + (w - 10) * 9999 / 990),
                origin,
            )]
        }
        // The same name on both.
        "pids.max"
        | "cpuset.cpus"
        | "cpuset.mems"
        | "cpu.weight"
        | "cpu.max"
        | "memory.max"
        | "memory.high"
        | "memory.min"
        | "memory.low"
        | "memory.swap.max"
        | "io.weight"
        | "io.max"
        | "cpu.weight.nice"
        | "cpuset.cpus.partition" => vec![knob(file, value, origin)],
        _ => {
            return Err(format!(
                "{origin}: {file} has no cgroup v2 equivalent on this host"
            ))
        }
    })
}

/// Every write for a guest's config. `flavor_of(controller)` says where a controller lives
/// (None: nowhere, an error for a setting that needs it).
pub fn plan(
    c: &GuestConfig,
    page_size: u64,
    flavor_of: &dyn Fn(&str) -> Option<Flavor>,
) -> Result<Vec<Knob>, String> {
    // (v1 file, value, origin) in order; later ones win.
    let mut v1: Vec<(String, String, String)> = Vec::new();
    let cfg = c.cfg_dir.display().to_string();
    for (f, v) in &c.cgroup.settings {
        v1.push((f.clone(), v.clone(), format!("{cfg}/cgroup/{f}")));
    }
    if let Some(cs) = &c.cpuset {
        if let Some(cpus) = &cs.cpus {
            v1.push((
                "cpuset.cpus".into(),
                cpus.clone(),
                format!("{cfg}/cpuset/cpus"),
            ));
        }
        if let Some(mems) = &cs.mems {
            v1.push((
                "cpuset.mems".into(),
                mems.clone(),
                format!("{cfg}/cpuset/mems"),
            ));
        }
    }
    // sched/: fill-rate tokens per interval, a token being a jiffy of CPU: that share of a CPU.
    if let Some(b) = c
        .sched
        .iter()
        .find(|b| b.fill_rate.is_some() && b.interval.is_some())
    {
        let (fill, interval) = (b.fill_rate.unwrap_or(0), b.interval.unwrap_or(1).max(1));
        let quota = (PERIOD_US * fill / interval).max(1000);
        let origin = format!("{cfg}/sched/fill-rate");
        v1.push((
            "cpu.cfs_period_us".into(),
            PERIOD_US.to_string(),
            origin.clone(),
        ));
        v1.push(("cpu.cfs_quota_us".into(), quota.to_string(), origin));
    }
    for r in &c.rlimits {
        let origin = format!("{cfg}/rlimits/{}", r.name);
        let bytes = |l: Option<Limit>| match l {
            Some(Limit::Value(v)) => Some((v * if r.in_pages { page_size } else { 1 }) as i64),
            Some(Limit::Unlimited) => Some(-1),
            None => None,
        };
        match r.name.as_str() {
            "nproc" => {
                if let Some(h) = r.limits.hard {
                    let v = match h {
                        Limit::Value(n) => n.to_string(),
                        Limit::Unlimited => "max".into(),
                    };
                    v1.push(("pids.max".into(), v, origin));
                }
            }
            "rss" => {
                if let Some(h) = bytes(r.limits.hard) {
                    v1.push((
                        "memory.limit_in_bytes".into(),
                        h.to_string(),
                        origin.clone(),
                    ));
                }
                if let Some(s) = bytes(r.limits.soft) {
                    v1.push((
                        "memory.soft_limit_in_bytes".into(),
                        s.to_string(),
                        origin.clone(),
                    ));
                }
                // A plain file sets min = soft = hard; only a lower, explicit min is a guarantee.
                if let (Some(m), Some(h)) = (bytes(r.limits.min), bytes(r.limits.hard)) {
                    if m >= 0 && (h < 0 || m < h) {
                        v1.push(("memory.min".into(), m.to_string(), origin));
                    }
                }
            }
            _ => {}
        }
    }
    lower(v1, flavor_of)
}

/// v1-named settings `(file, value, origin)`, later ones winning, as writes in the flavor of
/// each controller.
pub fn lower(
    v1: Vec<(String, String, String)>,
    flavor_of: &dyn Fn(&str) -> Option<Flavor>,
) -> Result<Vec<Knob>, String> {
    // memory.max, for the memsw translation.
    let limit_bytes = v1
        .iter()
        .rev()
        .find(|(f, _, _)| f == "memory.limit_in_bytes")
        .and_then(|(_, v, _)| v.parse::<i64>().ok());
    let mut out: Vec<Knob> = Vec::new();
    let mut cfs: (Option<String>, Option<String>, String) = (None, None, String::new());
    for (f, v, origin) in v1 {
        let controller = f.split('.').next().unwrap_or("").to_string();
        let Some(flavor) = flavor_of(&controller) else {
            return Err(format!(
                "{origin}: no cgroup hierarchy on this host has the {controller} controller"
            ));
        };
        // v2 has one cpu.max for v1's quota and period pair.
        if flavor == Flavor::V2 && (f == "cpu.cfs_quota_us" || f == "cpu.cfs_period_us") {
            if f == "cpu.cfs_quota_us" {
                cfs.0 = Some(v);
            } else {
                cfs.1 = Some(v);
            }
            cfs.2 = origin;
            continue;
        }
        if f == "memory.min" && flavor == Flavor::V1 {
            continue; // no v1 equivalent: documented
        }
        out.extend(translate(&f, &v, &origin, flavor, limit_bytes)?);
    }
    if cfs.0.is_some() || cfs.1.is_some() {
        let q = cfs.0.map(|q| num(&cfs.2, &q)).transpose()?.unwrap_or(-1);
        let p = cfs
            .1
            .map(|p| num(&cfs.2, &p))
            .transpose()?
            .unwrap_or(PERIOD_US as i64);
        let q = if q < 0 {
            "max".to_string()
        } else {
            q.to_string()
        };
        out.push(knob("cpu.max", format!("{q} {p}"), &cfs.2));
    }
    // Later writes of the same file win: keep only the last.
    let mut seen = std::collections::HashSet::new();
    let mut dedup: Vec<Knob> = out
        .into_iter()
        .rev()
        .filter(|k| seen.insert(k.file.clone()))
        .collect();
    dedup.reverse();
    // cpuset needs cpus and mems before anything else can join; keep them first.
    dedup.sort_by_key(|k| k.controller != "cpuset");
    // v1 refuses a memsw limit below the memory limit, which is unlimited until written: the
    // memory limit goes first (rlimits/rss, applied after cgroup/, would otherwise come last).
    let at = |f: &str| dedup.iter().position(|k| k.file == f);
    if let (Some(mem), Some(sw)) = (
        at("memory.limit_in_bytes"),
        at("memory.memsw.limit_in_bytes"),
    ) {
        if sw < mem {
            let k = dedup.remove(sw);
            dedup.insert(mem, k);
        }
    }
    Ok(dedup)
}

/// memory.high after a live change of the memory limit to `new_max` bytes on v2, given the
/// guest's memory.max and memory.high before it (as the files read): None to leave it.
/// rlimits/rss's soft limit becomes memory.high, which on v2 throttles (v1's soft limit only
/// ranks cgroups for reclaim); a plain rss file makes it equal to memory.max. A memory.high at
/// or above the old memory.max followed the hard limit and moves with it: left behind, it would
/// keep the guest throttled at the old size (its allocations sleep in reclaim past it, never
/// OOM-killed) whatever the new limit. An explicitly lower one, or none (max), stays.
pub fn high_follows(new_max: u64, old_max: &str, old_high: &str) -> Option<String> {
    let high = old_high.trim().parse::<u64>().ok()?;
    let max = old_max.trim().parse::<u64>().ok()?;
    (high >= max).then(|| new_max.to_string())
}

/// The memory.high write of [`high_follows`], for a live set.
pub fn high_knob(value: String) -> Knob {
    knob("memory.high", value, "SetLimits memory.high")
}

/// SetLimits' values as the cgroup/ files util-vserver knows (also what `--persist` writes).
pub fn limit_files(
    memory: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(m) = memory {
        v.push(("memory.limit_in_bytes".to_string(), m.to_string()));
    }
    if let Some(c) = cpus {
        v.push(("cpu.cfs_period_us".to_string(), PERIOD_US.to_string()));
        v.push((
            "cpu.cfs_quota_us".to_string(),
            ((c * PERIOD_US as f64).round() as u64)
                .max(1000)
                .to_string(),
        ));
    }
    if let Some(p) = pids {
        v.push(("pids.max".to_string(), p.to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_limit_that_followed_the_hard_one_moves_with_a_live_set() {
        // A plain rlimits/rss: memory.high = memory.max; raising the limit raises both.
        assert_eq!(
            high_follows(536870912, "67108864", "67108864\n"),
            Some("536870912".into())
        );
        // Lowering too.
        assert_eq!(
            high_follows(33554432, "67108864", "67108864"),
            Some("33554432".into())
        );
        // An explicitly lower soft limit, or none, stays.
        assert_eq!(high_follows(536870912, "67108864", "33554432"), None);
        assert_eq!(high_follows(536870912, "67108864", "max"), None);
        assert_eq!(high_follows(536870912, "max", "67108864"), None);
    }

    #[test]
    fn the_memory_limit_is_written_before_the_memsw_limit() {
        let v1 = vec![
            (
                "memory.memsw.limit_in_bytes".into(),
                "300".into(),
                "cgroup/memsw".into(),
            ),
            (
                "cpu.shares".into(),
                "512".into(),
                "cgroup/cpu.shares".into(),
            ),
            (
                "memory.limit_in_bytes".into(),
                "200".into(),
                "rlimits/rss".into(),
            ),
        ];
        let k = lower(v1, &|_| Some(Flavor::V1)).unwrap();
        let files: Vec<&str> = k.iter().map(|k| k.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "cpu.shares",
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes"
            ]
        );
    }

    fn guest(files: &[(&str, &str)]) -> (tempfile::TempDir, GuestConfig) {
        crate::config::test_guest(files)
    }

    fn files(k: &[Knob]) -> Vec<(String, String)> {
        k.iter()
            .map(|k| (k.file.clone(), k.value.clone()))
            .collect()
    }

    fn s(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn v1_settings_pass_through_and_v2_ones_translate() {
        let (_t, c) = guest(&[
            ("cgroup/cpu.shares", "512\n"),
            ("cgroup/memory.limit_in_bytes", "268435456\n"),
            ("cgroup/memory.memsw.limit_in_bytes", "536870912\n"),
            ("cgroup/cpuset.cpus", "0\n"),
        ]);
        let v1 = plan(&c, 4096, &|_| Some(Flavor::V1)).unwrap();
        assert_eq!(v1[0].file, "cpuset.cpus", "cpuset first");
        assert!(files(&v1).contains(&s("cpu.shares", "512")));
        let v2 = plan(&c, 4096, &|_| Some(Flavor::V2)).unwrap();
        let f = files(&v2);
        assert!(
            f.contains(&s("cpu.weight", &shares_to_weight(512).to_string())),
            "{f:?}"
        );
        assert!(f.contains(&s("memory.max", "268435456")));
        assert!(f.contains(&s("memory.swap.max", "268435456")));
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
    }

    #[test]
    fn rlimits_and_sched_map_to_pids_memory_and_cpu() {
        let (_t, c) = guest(&[
            ("rlimits/nproc", "100\n"),
            ("rlimits/rss", "1000\n"),
            ("sched/fill-rate", "1\n"),
            ("sched/interval", "4\n"),
        ]);
        let v1 = files(&plan(&c, 4096, &|_| Some(Flavor::V1)).unwrap());
        assert!(v1.contains(&s("pids.max", "100")));
        assert!(
            v1.contains(&s("memory.limit_in_bytes", "4096000")),
            "{v1:?}"
        );
        assert!(v1.contains(&s("cpu.cfs_quota_us", "25000")));
        assert!(
            !v1.iter().any(|(f, _)| f == "memory.min"),
            "a plain rlimits file is no guarantee"
        );
        let v2 = files(&plan(&c, 4096, &|_| Some(Flavor::V2)).unwrap());
        assert!(v2.contains(&s("cpu.max", "25000 100000")), "{v2:?}");
        assert!(v2.contains(&s("memory.max", "4096000")));
        assert!(v2.contains(&s("memory.high", "4096000")));
        let (_t, c) = guest(&[("rlimits/rss.hard", "inf\n"), ("rlimits/rss.min", "10\n")]);
        let v2 = files(&plan(&c, 4096, &|_| Some(Flavor::V2)).unwrap());
        assert!(
            v2.contains(&s("memory.max", "max")) && v2.contains(&s("memory.min", "40960")),
            "{v2:?}"
        );
    }

    #[test]
    fn untranslatable_or_unavailable_settings_name_their_file() {
        let (_t, c) = guest(&[("cgroup/memory.kmem.limit_in_bytes", "1\n")]);
        let e = plan(&c, 4096, &|_| Some(Flavor::V2)).unwrap_err();
        assert!(
            e.contains("cgroup/memory.kmem.limit_in_bytes") && e.contains("no cgroup v2"),
            "{e}"
        );
        let (_t, c) = guest(&[("cgroup/hugetlb.2MB.limit_in_bytes", "1\n")]);
        let e = plan(&c, 4096, &|c| (c != "hugetlb").then_some(Flavor::V1)).unwrap_err();
        assert!(
            e.contains("no cgroup hierarchy on this host has the hugetlb controller"),
            "{e}"
        );
    }

    #[test]
    fn set_limits_values_as_files() {
        assert_eq!(
            limit_files(Some(1 << 20), Some(0.5), Some(50)),
            vec![
                s("memory.limit_in_bytes", "1048576"),
                s("cpu.cfs_period_us", "100000"),
                s("cpu.cfs_quota_us", "50000"),
                s("pids.max", "50"),
            ]
        );
    }
}
