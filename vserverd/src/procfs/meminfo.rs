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
}

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
            _ => return None,
        })
    };
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        match line.split_once(':').and_then(|(k, _)| Some((k, value(k)?))) {
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
