//! How the /proc server reads the kernel's small files: one open and one read each (not the
//! fstat, lseek and growing reads of `read_to_string`), and the
//! mount table read at most once a second for every request (the cgroup hierarchies' mount
//! points do not move while guests run). Every answer (a FUSE read, a sysinfo call) reads a
//! dozen cgroup files, so syscalls per file are most of its cost.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::isolate::cgroup::Layout;

/// A cgroup or /proc file's text fits here in one read (v2 memory.stat is ~1.5 KiB; larger
/// files, /proc/cpuinfo on big hosts, take more reads).
const FIRST_READ: usize = 16 * 1024;

/// How long a read of /proc/self/mountinfo is reused.
const MOUNTS_FOR: Duration = Duration::from_secs(1);

/// The text of `p`, or None if it cannot be read.
pub fn read(p: impl AsRef<Path>) -> Option<String> {
    let mut f = std::fs::File::open(p).ok()?;
    // Plain reads until end of file: `read_to_end` first asks fstat and lseek for a size that
    // these files do not have.
    let mut buf = vec![0u8; FIRST_READ];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// A number file (`max` is u64::MAX, as cgroup v2 writes "no limit").
pub fn read_u64(p: impl AsRef<Path>) -> Option<u64> {
    let s = read(p)?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

static MOUNTS: Mutex<Option<(Instant, Arc<str>)>> = Mutex::new(None);

/// This process's mount table, read at most once per MOUNTS_FOR.
fn mountinfo() -> Arc<str> {
    let now = Instant::now();
    let mut cached = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, text)) = cached.as_ref() {
        if now.saturating_duration_since(*at) < MOUNTS_FOR {
            return text.clone();
        }
    }
    let text: Arc<str> = read("/proc/self/mountinfo").unwrap_or_default().into();
    *cached = Some((now, text.clone()));
    text
}

/// The cgroup directories of a process whose /proc/PID/cgroup text is `cgroup`.
pub fn layout(cgroup: &str) -> Layout {
    Layout::parse(&mountinfo(), cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_number_files_read_whole() {
        let t = tempfile::tempdir().unwrap();
        let big = "x".repeat(FIRST_READ * 2 + 7);
        std::fs::write(t.path().join("big"), &big).unwrap();
        assert_eq!(read(t.path().join("big")).as_deref(), Some(big.as_str()));
        std::fs::write(t.path().join("n"), "268435456\n").unwrap();
        assert_eq!(read_u64(t.path().join("n")), Some(268435456));
        std::fs::write(t.path().join("n"), "max\n").unwrap();
        assert_eq!(read_u64(t.path().join("n")), Some(u64::MAX));
        assert_eq!(read(t.path().join("absent")), None);
    }

    #[test]
    fn the_mount_table_is_reused_within_its_second() {
        let a = mountinfo();
        let b = mountinfo();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
