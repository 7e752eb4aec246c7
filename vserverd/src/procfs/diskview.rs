//! /proc/diskstats and /proc/swaps as a guest should see them (virt_mem), as lxcfs shows them:
//! the block devices the guest's cgroup did I/O on, with its own counts; one virtual swap of
//! its swap limit. Pure text work here; the figures come from the cgroup files (v1 `blkio`,
//! v2 `io.stat`; the memory figures of memory.rs).

use std::collections::BTreeMap;
use std::path::Path;

use super::meminfo::Figures;

/// A device's I/O, as the guest's cgroup counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Io {
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub discards: u64,
    pub discard_bytes: u64,
}

/// v2 `io.stat`: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` per device.
pub fn parse_io_stat(text: &str) -> BTreeMap<(u32, u32), Io> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some(dev) = f.next().and_then(parse_dev) else {
            continue;
        };
        let mut io = Io::default();
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            match k {
                "rbytes" => io.read_bytes = v,
                "wbytes" => io.write_bytes = v,
                "rios" => io.reads = v,
                "wios" => io.writes = v,
                "dbytes" => io.discard_bytes = v,
                "dios" => io.discards = v,
                _ => {}
            }
        }
        out.insert(dev, io);
    }
    out
}

/// v1 `blkio.throttle.io_serviced_recursive` and `…io_service_bytes_recursive`:
/// `MAJ:MIN Read N` lines (and Write, Discard; a last `Total` line).
pub fn parse_blkio(serviced: &str, bytes: &str) -> BTreeMap<(u32, u32), Io> {
    let mut out: BTreeMap<(u32, u32), Io> = BTreeMap::new();
    for (text, is_bytes) in [(serviced, false), (bytes, true)] {
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, n] = f[..] else { continue };
            let (Some(dev), Ok(n)) = (parse_dev(dev), n.parse::<u64>()) else {
                continue;
            };
            let io = out.entry(dev).or_default();
            match (op, is_bytes) {
                ("Read", false) => io.reads = n,
                ("Write", false) => io.writes = n,
                ("Discard", false) => io.discards = n,
                ("Read", true) => io.read_bytes = n,
                ("Write", true) => io.write_bytes = n,
                ("Discard", true) => io.discard_bytes = n,
                _ => {}
            }
        }
    }
    out
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The guest's /proc/diskstats: a line per device it did I/O on, in the kernel's 20-field
/// format, with its reads, sectors read, writes, sectors written, discards and sectors
/// discarded (the times and queue fields, which no cgroup keeps, 0). `name` gives a device's
/// name (its /sys/dev/block uevent DEVNAME).
pub fn diskstats(
    io: &BTreeMap<(u32, u32), Io>,
    name: &dyn Fn(u32, u32) -> Option<String>,
) -> String {
    let mut out = String::new();
    for (&(maj, min), i) in io {
        if *i == Io::default() {
            continue;
        }
        let Some(n) = name(maj, min) else { continue };
        out.push_str(&format!(
            "{maj:4} {min:7} {n} {} 0 {} 0 {} 0 {} 0 0 0 0 {} 0 {} 0 0 0\n",
            i.reads,
            i.read_bytes / 512,
            i.writes,
            i.write_bytes / 512,
            i.discards,
            i.discard_bytes / 512,
        ));
    }
    out
}

/// The guest's /proc/swaps: its swap limit as one virtual device (as lxcfs shows it), at most
/// the host's swap (none when the host has none), or the host's when it has no limit.
pub fn swaps(host: &str, f: Option<&Figures>) -> String {
    let header = host
        .lines()
        .next()
        .unwrap_or("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority");
    match f.and_then(|f| f.swap_limit.map(|l| (l, f.swap_usage))) {
        Some((limit, used)) if limit > 0 => {
            let host_kb: u64 = host
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
                .sum();
            let size = (limit / 1024).min(host_kb);
            if size == 0 {
                // No swap on the host: none to show, whatever the limit allows.
                return format!("{header}\n");
            }
            format!(
                "{header}\nnone\t\t\t\t\tvirtual\t\t{size}\t\t{}\t\t0\n",
                (used / 1024).min(size)
            )
        }
        Some(_) => format!("{header}\n"),
        None => host.to_string(),
    }
}

/// The I/O of the cgroups a process whose /proc/PID/cgroup text is `cgroup` is in.
pub fn io_of_cgroup(cgroup: &str) -> BTreeMap<(u32, u32), Io> {
    let read = |p: &Path| super::files::read(p).unwrap_or_default();
    let layout = super::files::layout(cgroup);
    if let Some(h) = layout
        .hierarchies
        .iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "blkio"))
    {
        let dir = h.mount.join(&h.own);
        return parse_blkio(
            &read(&dir.join("blkio.throttle.io_serviced_recursive")),
            &read(&dir.join("blkio.throttle.io_service_bytes_recursive")),
        );
    }
    layout
        .v2()
        .map(|h| parse_io_stat(&read(&h.mount.join(&h.own).join("io.stat"))))
        .unwrap_or_default()
}

/// A block device's name, as the kernel's own diskstats names it.
pub fn device_name(major: u32, minor: u32) -> Option<String> {
    super::files::read(format!("/sys/dev/block/{major}:{minor}/uevent"))?
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME=").map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_lines_carry_the_guests_counts_in_sectors() {
        let io = parse_io_stat(
            "8:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n\
             7:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n",
        );
        let text = diskstats(&io, &|maj, _| (maj == 8).then(|| "sda".to_string()));
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(f.len(), 20, "{text}");
        assert_eq!(&f[..3], ["8", "0", "sda"]);
        assert_eq!((f[3], f[5], f[7], f[9]), ("10", "2048", "1", "8"));
        // A device without I/O is left out.
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn v1_blkio_counts_are_read_per_operation() {
        let io = parse_blkio(
            "8:0 Read 5\n8:0 Write 2\n8:0 Sync 7\n8:0 Total 7\nTotal 7\n",
            "8:0 Read 20480\n8:0 Write 8192\n",
        );
        let d = io[&(8, 0)];
        assert_eq!(
            (d.reads, d.writes, d.read_bytes, d.write_bytes),
            (5, 2, 20480, 8192)
        );
    }

    #[test]
    fn swaps_shows_the_swap_limit_as_one_virtual_device() {
        let host =
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2 partition 4194300 0 -2\n";
        let no_swap = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        let f = Figures {
            swap_limit: Some(64 << 20),
            swap_usage: 1 << 20,
            ..Figures::default()
        };
        let s = swaps(host, Some(&f));
        let line: Vec<&str> = s.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(line, ["none", "virtual", "65536", "1024", "0"]);
        // A zero limit: no swap at all; no limit: the host's.
        let none = Figures {
            swap_limit: Some(0),
            ..Figures::default()
        };
        assert_eq!(swaps(host, Some(&none)).lines().count(), 1);
        assert_eq!(swaps(host, None), host);
        // A host without swap: none, whatever the limit.
        assert_eq!(swaps(no_swap, Some(&f)).lines().count(), 1);
    }
}
