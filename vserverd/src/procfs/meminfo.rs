//! A guest's /proc/meminfo: the host's, with the memory lines rewritten from the guest's memory
//! cgroup (its limit as MemTotal, its usage, its page cache). Pure: the figures come in, text
//! goes out.

/// What the guest's memory cgroup says, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// The tightest memory limit on the guest's cgroup or an ancestor.
    pub limit: u64,
    /// Usage of the cgroup that carries that limit (page cache included).
    pub usage: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    pub active_anon: u64,
    pub inactive_anon: u64,
    pub active_file: u64,
    pub inactive_file: u64,
    pub shmem: u64,
    /// Swap the cgroup may use (v2 memory.swap.max; v1 memsw limit minus memory limit), if
    /// limited.
    pub swap_limit: Option<u64>,
    pub swap_usage: u64,
    /// Anonymous memory, mapped files, dirty and writeback page cache, unevictable pages.
    pub anon: u64,
    pub mapped: u64,
    pub dirty: u64,
    pub writeback: u64,
    pub unevictable: u64,
    /// Kernel memory charged to the cgroup (v2 only; v1 has no per-cgroup breakdown: 0).
    pub slab_reclaimable: u64,
    pub slab_unreclaimable: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
}

/// Host lines that are sizes of the machine or of address space, or of swap (not bounded by
/// the memory total): shown as the host has them unless the guest's figures replace them.
const NOT_AMOUNTS: &[&str] = &[
    "VmallocTotal",
    "VmallocChunk",
    "Hugepagesize",
    "SwapTotal",
    "SwapFree",
];

/// The host's meminfo with the guest's figures in place of the memory and swap lines.
pub fn render(host: &str, f: &Figures) -> String {
    let host_kb = |key: &str| -> Option<u64> {
        host.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| v.trim().trim_end_matches("kB").trim().parse().ok())?
        })
    };
    let kb = |b: u64| b / 1024;
    let total = host_kb("MemTotal").map_or(kb(f.limit), |h| h.min(kb(f.limit)));
    let used = kb(f.usage).min(total);
    let free = total - used;
    let cache = kb(f.cache).min(used);
    let available = (free + cache).min(total);
    let (swap_total, swap_free) = match f.swap_limit {
        Some(l) => {
            let t = host_kb("SwapTotal").map_or(kb(l), |h| h.min(kb(l)));
            (Some(t), Some(t - kb(f.swap_usage).min(t)))
        }
        None => (None, None),
    };
    let value = |key: &str| -> Option<u64> {
        Some(match key {
            "MemTotal" => total,
            "MemFree" => free,
            "MemAvailable" => available,
            "Buffers" | "SwapCached" => 0,
            "Cached" => cache,
            "Active" => kb(f.active_anon + f.active_file),
            "Inactive" => kb(f.inactive_anon + f.inactive_file),
            "Active(anon)" => kb(f.active_anon),
            "Inactive(anon)" => kb(f.inactive_anon),
            "Active(file)" => kb(f.active_file),
            "Inactive(file)" => kb(f.inactive_file),
            "Shmem" => kb(f.shmem),
            "SwapTotal" => swap_total?,
            "SwapFree" => swap_free?,
            "AnonPages" => kb(f.anon).min(total),
            "Mapped" => kb(f.mapped).min(total),
            "Dirty" => kb(f.dirty).min(total),
            "Writeback" => kb(f.writeback).min(total),
            "Unevictable" | "Mlocked" => kb(f.unevictable).min(total),
            // procps counts SReclaimable in buff/cache: the host's would dwarf the guest.
            "Slab" => kb(f.slab_reclaimable + f.slab_unreclaimable).min(total),
            "SReclaimable" | "KReclaimable" => kb(f.slab_reclaimable).min(total),
            "SUnreclaim" => kb(f.slab_unreclaimable).min(total),
            "KernelStack" => kb(f.kernel_stack).min(total),
            "PageTables" => kb(f.page_tables).min(total),
            "CommitLimit" => total + swap_total.unwrap_or(0),
            "Committed_AS" => used,
            _ => return None,
        })
    };
    // Any other amount (of the host's devices, caches, huge pages) is at most the total.
    let clamp = |k: &str, rest: &str| -> Option<u64> {
        if NOT_AMOUNTS.contains(&k) || !rest.trim_end().ends_with("kB") {
            return None;
        }
        let v: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        (v > total).then_some(total)
    };
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        match line
            .split_once(':')
            .and_then(|(k, rest)| Some((k, value(k).or_else(|| clamp(k, rest))?)))
        {
            Some((k, v)) => out.push_str(&format!("{:<16}{v:>8} kB", format!("{k}:"))),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "MemTotal:       16318460 kB
MemFree:         1234567 kB
MemAvailable:    9876543 kB
Buffers:          345678 kB
Cached:          5678901 kB
SwapCached:            0 kB
Active:          4000000 kB
Inactive:        3000000 kB
Shmem:             12345 kB
Slab:             981848 kB
SReclaimable:     700000 kB
SUnreclaim:       281848 kB
DirectMap2M:    16000000 kB
VmallocTotal:   34359738367 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    fn line<'a>(s: &'a str, key: &str) -> &'a str {
        s.lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap()
    }

    #[test]
    fn the_limit_is_the_total_and_usage_is_taken_from_it() {
        let f = Figures {
            limit: 256 << 20,
            usage: 100 << 20,
            cache: 30 << 20,
            active_anon: 40 << 20,
            active_file: 10 << 20,
            inactive_anon: 20 << 20,
            inactive_file: 20 << 20,
            shmem: 1 << 20,
            ..Figures::default()
        };
        let s = render(HOST, &f);
        assert_eq!(line(&s, "MemTotal"), "MemTotal:         262144 kB");
        assert_eq!(line(&s, "MemFree"), "MemFree:          159744 kB");
        assert_eq!(line(&s, "MemAvailable"), "MemAvailable:     190464 kB");
        assert_eq!(line(&s, "Buffers"), "Buffers:               0 kB");
        assert_eq!(line(&s, "Cached"), "Cached:            30720 kB");
        assert_eq!(line(&s, "Active"), "Active:            51200 kB");
        assert_eq!(line(&s, "Shmem"), "Shmem:              1024 kB");
        // No swap limit: the host's swap lines; other lines untouched, order kept.
        assert_eq!(line(&s, "SwapTotal"), "SwapTotal:       2097148 kB");
        assert_eq!(line(&s, "HugePages_Total"), "HugePages_Total:       0");
        assert_eq!(s.lines().count(), HOST.lines().count());
    }

    #[test]
    fn every_amount_comes_from_the_cgroup_or_fits_in_the_total() {
        let f = Figures {
            limit: 512 << 20,
            usage: 200 << 20,
            cache: 50 << 20,
            slab_reclaimable: 3 << 20,
            slab_unreclaimable: 1 << 20,
            ..Figures::default()
        };
        let s = render(HOST, &f);
        // The host's 981848 kB of slab would show as 726 MiB of buff/cache in a 512 MiB guest.
        assert_eq!(line(&s, "Slab"), "Slab:               4096 kB");
        assert_eq!(line(&s, "SReclaimable"), "SReclaimable:       3072 kB");
        let total = 512 * 1024;
        for l in s.lines().filter(|l| l.ends_with(" kB")) {
            let (k, v) = l.split_once(':').unwrap();
            let v: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap();
            if !["VmallocTotal", "CommitLimit", "SwapTotal", "SwapFree"].contains(&k) {
                assert!(v <= total, "{l}");
            }
        }
        // Sizes of the machine stay as they are.
        assert!(line(&s, "VmallocTotal").contains("34359738367"));
        // free's buff/cache: Buffers + Cached + SReclaimable, within the used memory.
        let kb = |k: &str| -> u64 {
            line(&s, k)
                .split_once(':')
                .unwrap()
                .1
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap()
        };
        assert!(
            kb("Buffers") + kb("Cached") + kb("SReclaimable") <= kb("MemTotal") - kb("MemFree")
        );
    }

    #[test]
    fn a_limit_above_the_host_shows_the_host_and_usage_never_goes_negative() {
        let f = Figures {
            limit: u64::MAX / 2,
            usage: u64::MAX / 2,
            cache: 1 << 30,
            swap_limit: Some(1 << 30),
            swap_usage: 2 << 30,
            ..Figures::default()
        };
        let s = render(HOST, &f);
        assert_eq!(line(&s, "MemTotal"), "MemTotal:       16318460 kB");
        assert_eq!(line(&s, "MemFree"), "MemFree:               0 kB");
        assert_eq!(line(&s, "SwapTotal"), "SwapTotal:       1048576 kB");
        assert_eq!(line(&s, "SwapFree"), "SwapFree:              0 kB");
    }
}
