//! Setting, changing, reading and taking away a guest's disk limit.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::{plan, Applied, FsKind, How, Usage, Wanted};
use crate::config::resources::Dlimit;
use crate::sys::fs as sysfs;
use crate::sys::quota;

fn open_dir(dir: &Path) -> Result<OwnedFd, String> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The kind of file system `fd` is on.
pub fn fs_kind(fd: &OwnedFd) -> Result<FsKind, String> {
    Ok(match sysfs::fs_type(fd).map_err(|e| e.to_string())? {
        sysfs::XFS_SUPER_MAGIC => FsKind::Project("XFS"),
        sysfs::EXT4_SUPER_MAGIC => FsKind::Project("ext4"),
        sysfs::BTRFS_SUPER_MAGIC => FsKind::Btrfs,
        0x0102_1994 => FsKind::Other("tmpfs"),
        0x794c_7630 => FsKind::Other("overlayfs"),
        0x6573_5546 => FsKind::Other("FUSE"),
        sysfs::BCACHEFS_SUPER_MAGIC => FsKind::Other("bcachefs"),
        _ => FsKind::Other("a file system without project quotas"),
    })
}

fn project_error(dir: &Path, kind: &str, e: std::io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ESRCH) => format!(
            "project quotas are off on this {kind} file system (mount it with prjquota{})",
            if kind == "ext4" {
                "; the file system needs the project and quota features: \
                 tune2fs -O project,quota"
            } else {
                ""
            }
        ),
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) => format!(
            "this kernel has no quota support for {kind} (CONFIG_QUOTA, {})",
            if kind == "XFS" {
                "CONFIG_XFS_QUOTA"
            } else {
                "CONFIG_QFMT_V2"
            }
        ),
        _ => e.to_string(),
    };
    format!("{}: {why}", dir.display())
}

fn qgroup_error(dir: &Path, e: std::io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ENOTCONN) | Some(libc::ENOENT) => {
            "quotas are off on this btrfs file system (btrfs quota enable MOUNTPOINT)".to_string()
        }
        _ => e.to_string(),
    };
    format!("{}: {why}", dir.display())
}

fn dqblk(w: &Wanted) -> quota::Dqblk {
    // 0 is no limit; block limits are in KiB, rounded up.
    let kib = |b: Option<u64>| b.map_or(0, |b| b.div_ceil(1024));
    quota::Dqblk {
        bhardlimit: kib(w.bytes),
        bsoftlimit: kib(w.bytes_soft),
        ihardlimit: w.inodes.unwrap_or(0),
        isoftlimit: w.inodes_soft.unwrap_or(0),
        valid: quota::QIF_BLIMITS | quota::QIF_ILIMITS,
        ..Default::default()
    }
}

fn set(fd: &OwnedFd, a: &Applied, w: &Wanted) -> Result<(), String> {
    match &a.how {
        How::Project { id } => quota::set_project_quota(fd, *id, &dqblk(w))
            .map_err(|e| project_error(&a.directory, "file system", e)),
        How::Qgroup { subvol, .. } => {
            // The ioctl's transaction reserves metadata in the subvolume of the fd it is
            // given: inside a guest at its limit that fails with EDQUOT, so it is made from
            // the folder above (the same file system, another qgroup).
            let parent = a.directory.parent().and_then(|p| open_dir(p).ok());
            let r = match &parent {
                Some(p) if matches!(fs_kind(p), Ok(FsKind::Btrfs)) => {
                    quota::btrfs_qgroup_limit(p, *subvol, w.bytes)
                }
                _ => quota::btrfs_qgroup_limit(fd, *subvol, w.bytes),
            };
            r.map_err(|e| qgroup_error(&a.directory, e))
        }
    }
}

/// Readies `d`'s limit for project `id` (the guest's tag) without setting it: checks the file
/// system can keep it and marks the tree on XFS and ext4 the first time (harmless: marks only
/// count). Returns what [`set_limit`] will set and the warnings (what the file system cannot
/// keep).
pub fn prepare(d: &Dlimit, id: u32) -> Result<(Applied, Vec<String>), String> {
    let dir = Path::new(&d.directory);
    let fd = open_dir(dir)?;
    let kind = fs_kind(&fd)?;
    let (wanted, mut warnings) = plan(d, kind)?;
    let how = match kind {
        FsKind::Project(name) => {
            // Asked first: a file system without project quotas fails before anything is
            // marked.
            quota::project_quota(&fd, id).map_err(|e| project_error(dir, name, e))?;
            if !super::tag::is_marked(&fd, id).map_err(|e| format!("{}: {e}", dir.display()))? {
                let m = super::tag::mark_tree(&fd, id)
                    .map_err(|e| format!("{}: marking project {id}: {e}", dir.display()))?;
                tracing::info!(
                    "{}: {} inodes marked with project {id}",
                    dir.display(),
                    m.inodes
                );
                if m.skipped > 0 {
                    warnings.push(format!(
                        "{}: {} mount points inside are not counted",
                        dir.display(),
                        m.skipped
                    ));
                }
            }
            How::Project { id }
        }
        FsKind::Btrfs => {
            let st = sysfs::fstat(&fd).map_err(|e| e.to_string())?;
            if st.st_ino != quota::BTRFS_FIRST_FREE_OBJECTID {
                return Err(format!(
                    "{d}: not a btrfs subvolume: a btrfs limit is the limit of a subvolume's \
                     qgroup, and this folder is inside another subvolume (vserverctl build \
                     makes new roots subvolumes; this one was made otherwise). Convert it while \
                     the guest is stopped: btrfs subvolume create {d}.new && cp -a \
                     --reflink=always {d}/. {d}.new/ && mv {d} {d}.old && mv {d}.new {d}, \
                     then start the guest and remove {d}.old",
                    d = dir.display()
                ));
            }
            let subvol =
                quota::btrfs_subvol_id(&fd).map_err(|e| format!("{}: {e}", dir.display()))?;
            let fsid = quota::btrfs_fsid(&fd).map_err(|e| format!("{}: {e}", dir.display()))?;
            let sys = Path::new("/sys/fs/btrfs").join(uuid(&fsid)).join("qgroups");
            if !sys.is_dir() {
                return Err(qgroup_error(
                    dir,
                    std::io::Error::from_raw_os_error(libc::ENOTCONN),
                ));
            }
            How::Qgroup {
                subvol,
                fsid: uuid(&fsid),
            }
        }
        FsKind::Other(_) => unreachable!("plan refused it"),
    };
    Ok((
        Applied {
            directory: dir.to_path_buf(),
            how,
            wanted,
        },
        warnings,
    ))
}

/// Sets what [`prepare`] readied.
pub fn set_limit(a: &Applied) -> Result<(), String> {
    let fd = open_dir(&a.directory)?;
    set(&fd, a, &a.wanted)
}

/// A live change: `w` instead of what was applied.
pub fn change(a: &Applied, w: &Wanted) -> Result<Applied, String> {
    let fd = open_dir(&a.directory)?;
    set(&fd, a, w)?;
    Ok(Applied {
        wanted: *w,
        ..a.clone()
    })
}

/// Takes the limit away, as util-vserver's stop did (a stopped guest's tree is the host's to
/// fill); the project ids stay, so the kernel keeps counting.
pub fn clear(a: &Applied) -> Result<(), String> {
    let fd = open_dir(&a.directory)?;
    set(&fd, a, &Wanted::default())
}

fn uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn sys_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Where the kernel keeps `dir`'s figures for project `id`, without changing anything (a
/// stopped guest's, for du).
pub fn locate(dir: &Path, id: u32) -> Result<Applied, String> {
    let fd = open_dir(dir)?;
    let how = match fs_kind(&fd)? {
        FsKind::Project(_) => How::Project { id },
        FsKind::Btrfs => How::Qgroup {
            subvol: quota::btrfs_subvol_id(&fd).map_err(|e| e.to_string())?,
            fsid: uuid(&quota::btrfs_fsid(&fd).map_err(|e| e.to_string())?),
        },
        FsKind::Other(n) => return Err(format!("{}: {n}", dir.display())),
    };
    Ok(Applied {
        directory: dir.to_path_buf(),
        how,
        wanted: Wanted::default(),
    })
}

/// What the kernel counts against the limit, and the limit it keeps.
pub fn usage(a: &Applied) -> Result<Usage, String> {
    match &a.how {
        How::Project { id } => {
            let fd = open_dir(&a.directory)?;
            let q = quota::project_quota(&fd, *id)
                .map_err(|e| project_error(&a.directory, "file system", e))?;
            let lim = |v: u64| (v > 0).then_some(v);
            Ok(Usage {
                bytes: q.curspace,
                inodes: Some(q.curinodes),
                bytes_limit: lim(q.bhardlimit).map(|k| k.saturating_mul(1024)),
                inodes_limit: lim(q.ihardlimit),
            })
        }
        How::Qgroup { subvol, fsid } => {
            let dir = Path::new("/sys/fs/btrfs")
                .join(fsid)
                .join("qgroups")
                .join(format!("0_{subvol}"));
            let bytes = sys_u64(&dir.join("referenced"))
                .ok_or_else(|| format!("{}: no qgroup figures", dir.display()))?;
            // Unlimited reads as 0 or all ones, by kernel version.
            let limit = sys_u64(&dir.join("max_referenced")).filter(|v| *v != 0 && *v != u64::MAX);
            Ok(Usage {
                bytes,
                inodes: None,
                bytes_limit: limit,
                inodes_limit: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsids_print_as_uuids() {
        let b: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(uuid(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn limits_in_kib_rounded_up_zero_is_none() {
        let q = dqblk(&Wanted {
            bytes: Some(1025),
            bytes_soft: None,
            inodes: Some(9),
            inodes_soft: Some(8),
        });
        assert_eq!(
            (q.bhardlimit, q.bsoftlimit, q.ihardlimit, q.isoftlimit),
            (2, 0, 9, 8)
        );
    }
}
