//! What the running kernel has of kernel-patch/ (docs/kernel-patch.md), found by probing,
//! never by its version: copy-on-write links (CONFIG_COWLINK) and per-cgroup load averages
//! (CONFIG_CGROUP_LOADAVG). check and status say what is missing where a guest would use it.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The mark of a copy-on-write link (kernel-patch/0002).
pub const COWLINK_XATTR: &str = "trusted.cowlink";

/// Whether the kernel breaks copy-on-write links: in a scratch folder under `dir` (on the
/// state directory's file system), a file marked trusted.cowlink and linked twice, then opened
/// for writing through the second name: with the patch, that name now has an inode of its own.
/// Without it the open succeeds on the shared inode (setting the mark itself succeeds on any
/// kernel: trusted.* are plain attributes there). Answered once per daemon.
pub fn cowlink(dir: &Path) -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let r = probe_cowlink(dir);
        if let Err(e) = &r {
            tracing::debug!("cowlink probe in {}: {e}", dir.display());
        }
        r.unwrap_or(false)
    })
}

fn probe_cowlink(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let scratch = dir.join(format!(".cowlink-probe.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        let (a, b) = (scratch.join("a"), scratch.join("b"));
        std::fs::write(&a, b"probe")?;
        rustix::fs::setxattr(&a, COWLINK_XATTR, b"1", rustix::fs::XattrFlags::empty())?;
        std::fs::hard_link(&a, &b)?;
        let before = std::fs::metadata(&a)?.ino();
        drop(std::fs::OpenOptions::new().append(true).open(&b)?);
        Ok(std::fs::metadata(&b)?.ino() != before && std::fs::read(&a)? == b"probe")
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// 0 unknown, 1 present, 2 absent: the per-cgroup load averages as last seen (a virt_load
/// guest's start looks for its cgroup's cpu.loadavg).
static LOADAVG: AtomicU8 = AtomicU8::new(0);

/// Records what a start found.
pub fn note_loadavg(present: bool) {
    LOADAVG.store(if present { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether the kernel keeps load averages per cgroup: what a start saw, else the cpu files of
/// `dir` (a non-root cgroup of the cpu controller: the guests' parent). None: cannot tell yet.
pub fn cgroup_loadavg(dir: Option<&Path>) -> Option<bool> {
    match LOADAVG.load(Ordering::Relaxed) {
        1 => return Some(true),
        2 => return Some(false),
        _ => {}
    }
    let dir = dir?;
    // cpu.shares (v1) or cpu.weight (v2): the cpu controller is on for this cgroup.
    if !(dir.join("cpu.shares").exists() || dir.join("cpu.weight").exists()) {
        return None;
    }
    let present = dir.join("cpu.loadavg").exists();
    note_loadavg(present);
    Some(present)
}

/// The sentence check and status say about a missing feature.
pub fn lacks_loadavg() -> &'static str {
    "this kernel keeps no per-cgroup load averages (kernel-patch/, CONFIG_CGROUP_LOADAVG): \
     the guest's /proc/loadavg (virt_load) is approximated at each read"
}

pub fn lacks_cowlink() -> &'static str {
    "this kernel has no copy-on-write links (kernel-patch/, CONFIG_COWLINK): unify cannot \
     share files on ext4 (it shares them on XFS with reflinks and btrfs)"
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kernel_without_the_series_is_seen_as_such() {
        // This build machine's kernel has no kernel-patch/ (the VM tier boots one that has).
        let t = tempfile::tempdir().unwrap();
        let patched = std::fs::read_to_string("/proc/version")
            .unwrap()
            .contains("vserverd");
        assert_eq!(super::probe_cowlink(t.path()).unwrap_or(false), patched);
        assert!(
            std::fs::read_dir(t.path()).unwrap().next().is_none(),
            "scratch left"
        );
    }
}
