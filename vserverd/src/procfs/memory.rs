//! The memory figures of the cgroup a process is in, for its /proc/meminfo: the tightest limit
//! on the way up to the hierarchy's root (a `cgroup/name` group carries the limit on the
//! shared parent), and the usage and statistics of the cgroup that sets it. v1 (the `memory`
//! hierarchy, hierarchical `total_*` statistics) and v2 (the unified hierarchy).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::meminfo::Figures;

/// v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 on 4 KiB pages).
const UNLIMITED: u64 = 1 << 60;

use super::files::{self, read_u64};

fn stat(p: &Path) -> HashMap<String, u64> {
    files::read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// From `dir` up to `mount`: the directory with the smallest `file`, and that value.
fn tightest(mount: &Path, dir: &Path, file: &str) -> Option<(PathBuf, u64)> {
    let mut best: Option<(PathBuf, u64)> = None;
    let mut d = dir.to_path_buf();
    loop {
        if let Some(v) = read_u64(d.join(file)).filter(|&v| v < UNLIMITED) {
            if best.as_ref().is_none_or(|(_, b)| v < *b) {
                best = Some((d.clone(), v));
            }
        }
        if d == mount || !d.pop() || !d.starts_with(mount) {
            return best;
        }
    }
}

/// The figures of the memory cgroup of a process whose /proc/PID/cgroup text is `cgroup`; None
/// when nothing limits it (the host's meminfo is then the truth).
pub fn of_cgroup(cgroup: &str) -> Option<Figures> {
    let layout = files::layout(cgroup);
    if let Some(h) = layout
        .hierarchies
        .iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "memory"))
    {
        let dir = h.mount.join(&h.own);
        let (at, limit) = tightest(&h.mount, &dir, "memory.limit_in_bytes")?;
        let s = stat(&at.join("memory.stat"));
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        let usage = read_u64(at.join("memory.usage_in_bytes")).unwrap_or(0);
        // memsw counts memory + swap; only its excess over the memory limit is swap.
        let memsw = tightest(&h.mount, &dir, "memory.memsw.limit_in_bytes");
        let swap_limit = memsw.map(|(_, l)| l.saturating_sub(limit));
        let swap_usage =
            read_u64(at.join("memory.memsw.usage_in_bytes")).map_or(0, |u| u.saturating_sub(usage));
        return Some(Figures {
            limit,
            usage,
            cache: g("total_cache"),
            active_anon: g("total_active_anon"),
            inactive_anon: g("total_inactive_anon"),
            active_file: g("total_active_file"),
            inactive_file: g("total_inactive_file"),
            shmem: g("total_shmem"),
            swap_limit,
            swap_usage,
            anon: g("total_rss"),
            mapped: g("total_mapped_file"),
            dirty: g("total_dirty"),
            writeback: g("total_writeback"),
            unevictable: g("total_unevictable"),
            ..Figures::default()
        });
    }
    let h = layout.v2()?;
    let dir = h.mount.join(&h.own);
    let (at, limit) = tightest(&h.mount, &dir, "memory.max")?;
    let s = stat(&at.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    Some(Figures {
        limit,
        usage: read_u64(at.join("memory.current")).unwrap_or(0),
        cache: g("file"),
        active_anon: g("active_anon"),
        inactive_anon: g("inactive_anon"),
        active_file: g("active_file"),
        inactive_file: g("inactive_file"),
        shmem: g("shmem"),
        swap_limit: tightest(&h.mount, &dir, "memory.swap.max").map(|(_, l)| l),
        swap_usage: read_u64(at.join("memory.swap.current")).unwrap_or(0),
        anon: g("anon"),
        mapped: g("file_mapped"),
        dirty: g("file_dirty"),
        writeback: g("file_writeback"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        kernel_stack: g("kernel_stack"),
        page_tables: g("pagetables"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_on_the_way_up_wins() {
        let t = tempfile::tempdir().unwrap();
        let mount = t.path();
        let group = mount.join("vserverd/web");
        let leaf = group.join("a");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(mount.join("memory.max"), "max\n").unwrap();
        std::fs::write(mount.join("vserverd/memory.max"), "max\n").unwrap();
        std::fs::write(group.join("memory.max"), "268435456\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            tightest(mount, &leaf, "memory.max"),
            Some((group.clone(), 268435456))
        );
        std::fs::write(leaf.join("memory.max"), "1048576\n").unwrap();
        assert_eq!(tightest(mount, &leaf, "memory.max"), Some((leaf, 1048576)));
        std::fs::write(group.join("memory.max"), "max\n").unwrap();
        assert_eq!(tightest(mount, &group, "memory.max"), None);
    }
}
