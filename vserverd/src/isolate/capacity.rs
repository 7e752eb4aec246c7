//! The host-wide kernel limits that many guests run into, read before each start so that the
//! admin hears of one before it bites (docs/orchestration.md, "Limits of one host"): pids
//! (kernel.pid_max), ptys (kernel.pty.max: every guest's console is one) and memory cgroups
//! (65 535 ids: every guest has one, a v1 host one more per memory-controller hierarchy).
//! Three small reads of /proc, no directory walk.

/// A limit at or past this share of its maximum is reported.
const NEAR: f64 = 0.9;

/// One limit: its name, what is used and its maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub what: &'static str,
    pub used: u64,
    pub max: u64,
}

/// The memory controller's cgroup ids are 16 bits (MEM_CGROUP_ID_MAX).
const MEMCG_IDS: u64 = 65_535;

/// Reads the figures (pure parsing below, so the rules are tested without a full host).
pub fn read() -> Vec<Use> {
    let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let num = |p: &str| text(p).trim().parse::<u64>().ok();
    let mut out = Vec::new();
    if let (Some(threads), Some(max)) = (
        threads_of_loadavg(&text("/proc/loadavg")),
        num("/proc/sys/kernel/pid_max"),
    ) {
        out.push(Use {
            what: "pids (threads on the host / kernel.pid_max)",
            used: threads,
            max,
        });
    }
    if let (Some(used), Some(max)) = (
        num("/proc/sys/kernel/pty/nr"),
        num("/proc/sys/kernel/pty/max"),
    ) {
        out.push(Use {
            what: "ptys (kernel.pty.nr / kernel.pty.max; one per running guest's console)",
            used,
            max,
        });
    }
    if let Some(used) = memory_cgroups(&text("/proc/cgroups")) {
        out.push(Use {
            what: "memory cgroups (of 65535 ids; one per guest)",
            used,
            max: MEMCG_IDS,
        });
    }
    out
}

/// The fourth field of /proc/loadavg, "running/total": the total is every thread.
fn threads_of_loadavg(s: &str) -> Option<u64> {
    s.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// The memory controller's num_cgroups in /proc/cgroups.
fn memory_cgroups(s: &str) -> Option<u64> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"memory"))
        .and_then(|f| f.get(2)?.parse().ok())
}

/// The limits near their maximum, said for the admin: what, how much, and what to do.
pub fn warnings(uses: &[Use]) -> Vec<String> {
    uses.iter()
        .filter(|u| u.max > 0 && u.used as f64 >= u.max as f64 * NEAR)
        .map(|u| {
            format!(
                "{}: {} of {} in use; raise the limit (docs/orchestration.md) before more guests start",
                u.what, u.used, u.max
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_parse_as_the_kernel_writes_them() {
        assert_eq!(threads_of_loadavg("0.52 0.31 0.10 3/812 4242\n"), Some(812));
        assert_eq!(threads_of_loadavg("garbage"), None);
        let cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                       cpuset\t2\t5\t1\nmemory\t7\t118\t1\npids\t9\t120\t1\n";
        assert_eq!(memory_cgroups(cgroups), Some(118));
        assert_eq!(memory_cgroups(""), None);
    }

    #[test]
    fn only_limits_near_their_maximum_are_said() {
        let u = |used, max| Use {
            what: "ptys",
            used,
            max,
        };
        assert!(warnings(&[u(100, 4096), u(0, 0)]).is_empty());
        let w = warnings(&[u(3700, 4096)]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("3700 of 4096"), "{w:?}");
    }
}
