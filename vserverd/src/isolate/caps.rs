//! The capability bounding set of a guest (bcapabilities). Runs in the single-threaded stage
//! (the caps crate is per-thread), before exec: root keeps exactly the bounding set across
//! execve, so dropping from it is what limits guest root.

use caps::{CapSet, Capability};

#[derive(Debug, thiserror::Error)]
#[error("capabilities: {0}")]
pub struct CapsError(String);

/// The highest capability this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Keeps only the capabilities whose bits are set in `keep` (bit N = capability N), in the
/// bounding set and the inheritable set, and clears the ambient set. With `drop_permitted`,
/// also from the permitted and effective sets (for a process that will not exec).
pub fn restrict(keep: u64, drop_permitted: bool) -> Result<(), CapsError> {
    let last = last_cap();
    for c in caps::all() {
        let i = c.index();
        if i > last || keep & (1u64 << i) != 0 {
            continue;
        }
        caps::drop(None, CapSet::Bounding, c)
            .map_err(|e| CapsError(format!("dropping {c}: {e}")))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| CapsError(format!("ambient: {e}")))?;
    let inh: caps::CapsHashSet = caps::read(None, CapSet::Inheritable)
        .map_err(|e| CapsError(e.to_string()))?
        .into_iter()
        .filter(|c: &Capability| keep & (1u64 << c.index()) != 0)
        .collect();
    caps::set(None, CapSet::Inheritable, &inh)
        .map_err(|e| CapsError(format!("inheritable: {e}")))?;
    if drop_permitted {
        let kept: caps::CapsHashSet = caps::all()
            .into_iter()
            .filter(|c| c.index() <= last && keep & (1u64 << c.index()) != 0)
            .collect();
        caps::set(None, CapSet::Effective, &kept)
            .map_err(|e| CapsError(format!("effective: {e}")))?;
        caps::set(None, CapSet::Permitted, &kept)
            .map_err(|e| CapsError(format!("permitted: {e}")))?;
    }
    Ok(())
}

/// CapBnd as /proc/PID/status shows it, for a mask (tests compare the two).
pub fn bounding_hex(keep: u64) -> String {
    let last = last_cap();
    let all = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    format!("{:016x}", keep & all)
}
