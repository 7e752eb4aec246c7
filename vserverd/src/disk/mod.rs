//! Disk limits (docs/resources.md, Disk limits): util-vserver's `dlimits/` on mainline file
//! systems. XFS and ext4 get a project quota (the guest tree's files carry the guest's tag as
//! their project id, folders hand it down); btrfs gets a limit on the qgroup of the subvolume
//! the directory is. Planning here is pure; apply.rs does it, tag.rs marks a tree.

pub mod apply;
pub mod subvol;
pub mod tag;

use std::path::PathBuf;

use crate::config::resources::Dlimit;

/// The file systems a limit can be set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// XFS or ext4: project quotas.
    Project(&'static str),
    Btrfs,
    /// Anything else, by its name (or statfs magic).
    Other(&'static str),
}

/// What a limit asks for, in the kernel's units; None is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wanted {
    pub bytes: Option<u64>,
    /// The soft limit: the bytes less util-vserver's `reserved` percentage.
    pub bytes_soft: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_soft: Option<u64>,
}

/// A limit a start set (kept in the run state, so stop takes it away whatever the config
/// says by then).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub directory: PathBuf,
    pub how: How,
    pub wanted: Wanted,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum How {
    /// A project quota of project `id` on the directory's file system.
    Project { id: u32 },
    /// The referenced-bytes limit of qgroup 0/`subvol` (`fsid` names it in /sys/fs/btrfs).
    Qgroup { subvol: u64, fsid: String },
}

/// What the kernel counts against a limit now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: Option<u64>,
    pub bytes_limit: Option<u64>,
    pub inodes_limit: Option<u64>,
}

fn less_reserved(v: Option<u64>, reserved: u64) -> Option<u64> {
    match (v, reserved) {
        (Some(v), r) if r > 0 => Some(v - (v as u128 * r.min(100) as u128 / 100) as u64),
        _ => None,
    }
}

/// util-vserver's values (space in KiB, -1 for none, reserved in percent) as limits; the
/// warnings say what this file system cannot keep.
pub fn plan(d: &Dlimit, fs: FsKind) -> Result<(Wanted, Vec<String>), String> {
    let some = |v: u64| (v != u64::MAX).then_some(v);
    let bytes = some(d.space_total).map(|k| k.saturating_mul(1024));
    let inodes = some(d.inodes_total);
    let mut warnings = Vec::new();
    match fs {
        FsKind::Project(_) => Ok((
            Wanted {
                bytes,
                bytes_soft: less_reserved(bytes, d.reserved),
                inodes,
                inodes_soft: less_reserved(inodes, d.reserved),
            },
            warnings,
        )),
        FsKind::Btrfs => {
            if inodes.is_some() {
                warnings.push(format!(
                    "{}: btrfs qgroups limit bytes only: inodes_total is not applied",
                    d.directory
                ));
            }
            if d.reserved > 0 {
                warnings.push(format!(
                    "{}: btrfs qgroups have no soft limit: reserved is not applied",
                    d.directory
                ));
            }
            Ok((
                Wanted {
                    bytes,
                    ..Default::default()
                },
                warnings,
            ))
        }
        FsKind::Other(name) => Err(format!(
            "{}: disk limits need project quotas (XFS, ext4) or btrfs qgroups; this is {name}",
            d.directory
        )),
    }
}

/// A live change (`vserverctl set --disk`): new totals, the reserve kept as it was applied.
pub fn replan(old: &Wanted, bytes: Option<u64>, inodes: Option<u64>, how: &How) -> Wanted {
    let pct = |hard: Option<u64>, soft: Option<u64>| match (hard, soft) {
        (Some(h), Some(s)) if h > 0 => (h - s) * 100 / h,
        _ => 0,
    };
    let (rb, ri) = (
        pct(old.bytes, old.bytes_soft),
        pct(old.inodes, old.inodes_soft),
    );
    let mut w = *old;
    if let Some(b) = bytes {
        w.bytes = Some(b);
        w.bytes_soft = less_reserved(Some(b), rb);
    }
    if let Some(i) = inodes {
        w.inodes = Some(i);
        w.inodes_soft = less_reserved(Some(i), ri);
    }
    if matches!(how, How::Qgroup { .. }) {
        w.inodes = None;
        w.inodes_soft = None;
        w.bytes_soft = None;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(space: u64, inodes: u64, reserved: u64) -> Dlimit {
        Dlimit {
            directory: "/vservers/a".into(),
            space_total: space,
            inodes_total: inodes,
            reserved,
        }
    }

    #[test]
    fn kib_to_bytes_minus_one_unlimited_reserved_is_the_soft_limit() {
        let (w, warn) = plan(&dl(1000, 500, 5), FsKind::Project("xfs")).unwrap();
        assert_eq!(w.bytes, Some(1_024_000));
        assert_eq!(w.bytes_soft, Some(1_024_000 - 51_200));
        assert_eq!(w.inodes, Some(500));
        assert_eq!(w.inodes_soft, Some(475));
        assert!(warn.is_empty());
        let (w, _) = plan(&dl(u64::MAX, u64::MAX, 0), FsKind::Project("ext4")).unwrap();
        assert_eq!(w, Wanted::default());
        // Absurd sizes saturate rather than wrap.
        let (w, _) = plan(&dl(u64::MAX - 1, 1, 0), FsKind::Project("xfs")).unwrap();
        assert_eq!(w.bytes, Some(u64::MAX));
    }

    #[test]
    fn btrfs_limits_bytes_and_says_what_it_drops() {
        let (w, warn) = plan(&dl(2048, 100, 10), FsKind::Btrfs).unwrap();
        assert_eq!(w.bytes, Some(2 << 20));
        assert_eq!((w.bytes_soft, w.inodes), (None, None));
        assert_eq!(warn.len(), 2, "{warn:?}");
        let (_, warn) = plan(&dl(2048, u64::MAX, 0), FsKind::Btrfs).unwrap();
        assert!(warn.is_empty());
    }

    #[test]
    fn other_file_systems_are_refused_by_name() {
        let e = plan(&dl(1, 1, 0), FsKind::Other("tmpfs")).unwrap_err();
        assert!(e.contains("tmpfs") && e.contains("/vservers/a"), "{e}");
    }

    #[test]
    fn a_live_change_keeps_the_reserve() {
        let (w, _) = plan(&dl(1000, 1000, 10), FsKind::Project("xfs")).unwrap();
        let p = How::Project { id: 7 };
        let n = replan(&w, Some(2 << 20), None, &p);
        assert_eq!(n.bytes, Some(2 << 20));
        assert_eq!(n.bytes_soft, Some((2 << 20) - (2 << 20) / 10));
        assert_eq!(n.inodes, Some(1000));
        let b = replan(
            &Wanted::default(),
            Some(4096),
            Some(10),
            &How::Qgroup {
                subvol: 256,
                fsid: String::new(),
            },
        );
        assert_eq!((b.bytes, b.inodes), (Some(4096), None));
    }
}
