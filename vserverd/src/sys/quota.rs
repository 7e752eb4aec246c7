//! Disk limits: an inode's project id (FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR), project quotas
//! (quotactl_fd on XFS and ext4) and btrfs qgroups (the subvolume's id, the file system's id,
//! BTRFS_IOC_QGROUP_LIMIT).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// struct fsxattr of <linux/fs.h>.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fsxattr {
    pub xflags: u32,
    pub extsize: u32,
    pub nextents: u32,
    pub projid: u32,
    pub cowextsize: u32,
    pub pad: [u8; 8],
}

/// New files and folders made in a folder with this flag get its project id.
pub const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// _IOR('X', 31, struct fsxattr) and _IOW('X', 32, struct fsxattr).
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;

/// The inode's extended attributes (flags, project id).
pub fn fsx_get(fd: impl AsFd) -> io::Result<Fsxattr> {
    let mut x = Fsxattr::default();
    // SAFETY: the kernel writes one struct fsxattr into `x`, which is exactly that.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), FS_IOC_FSGETXATTR, &mut x) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(x)
}

/// Sets the inode's flags and project id (a project id change needs the host's root).
pub fn fsx_set(fd: impl AsFd, x: &Fsxattr) -> io::Result<()> {
    // SAFETY: the kernel reads one struct fsxattr from `x`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            FS_IOC_FSSETXATTR,
            x as *const Fsxattr,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// struct if_dqblk of <linux/quota.h>: block figures in 1 KiB units (QIF_DQBLKSIZE), space
/// used in bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dqblk {
    pub bhardlimit: u64,
    pub bsoftlimit: u64,
    pub curspace: u64,
    pub ihardlimit: u64,
    pub isoftlimit: u64,
    pub curinodes: u64,
    pub btime: u64,
    pub itime: u64,
    pub valid: u32,
}

pub const QIF_BLIMITS: u32 = 1;
pub const QIF_ILIMITS: u32 = 4;
const PRJQUOTA: u32 = 2;
const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;

fn qcmd(cmd: u32, kind: u32) -> libc::c_int {
    ((cmd << 8) | (kind & 0xff)) as libc::c_int
}

/// quotactl_fd(2) (Linux 5.14): the quota of project `id` on the file system of `fd` (all
/// zeros for a project the file system has no record of: XFS says ENOENT there).
/// ESRCH: project quotas are not on for this file system (mount option); ENOSYS: the kernel
/// has no quota support for it.
pub fn project_quota(fd: impl AsFd, id: u32) -> io::Result<Dqblk> {
    let mut q = Dqblk::default();
    // SAFETY: Q_GETQUOTA writes one struct if_dqblk into `q`; the fd is borrowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fd.as_fd().as_raw_fd(),
            qcmd(Q_GETQUOTA, PRJQUOTA),
            id,
            &mut q as *mut Dqblk,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(Dqblk::default());
        }
        return Err(e);
    }
    Ok(q)
}

/// Sets project `id`'s limits on the file system of `fd` (the fields `q.valid` names).
pub fn set_project_quota(fd: impl AsFd, id: u32, q: &Dqblk) -> io::Result<()> {
    // SAFETY: Q_SETQUOTA reads one struct if_dqblk from `q`; the fd is borrowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fd.as_fd().as_raw_fd(),
            qcmd(Q_SETQUOTA, PRJQUOTA),
            id,
            q as *const Dqblk,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args): 4096 bytes.
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xd000_9412;
/// _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args): 1024 bytes.
const BTRFS_IOC_FS_INFO: libc::c_ulong = 0x8400_941f;
/// _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args): 48 bytes.
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942b;
/// _IOW(0x94, 14, struct btrfs_ioctl_vol_args): 4096 bytes.
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940e;
/// The first inode number of every btrfs subvolume: its root folder.
pub const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

/// The id of the btrfs subvolume `fd` is in.
pub fn btrfs_subvol_id(fd: impl AsFd) -> io::Result<u64> {
    // treeid, objectid, then the name buffer: 4096 bytes in all, as u64 words for alignment.
    let mut args = [0u64; 512];
    args[1] = BTRFS_FIRST_FREE_OBJECTID;
    // SAFETY: the kernel reads and writes one 4096-byte struct btrfs_ioctl_ino_lookup_args,
    // the size of `args`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            BTRFS_IOC_INO_LOOKUP,
            args.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(args[0])
}

/// The btrfs file system's id (its UUID, naming it under /sys/fs/btrfs).
pub fn btrfs_fsid(fd: impl AsFd) -> io::Result<[u8; 16]> {
    let mut args = [0u64; 128];
    // SAFETY: the kernel writes one 1024-byte struct btrfs_ioctl_fs_info_args, the size of
    // `args`.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), BTRFS_IOC_FS_INFO, args.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // max_id and num_devices (two u64), then fsid[16].
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&args[2].to_ne_bytes());
    id[8..].copy_from_slice(&args[3].to_ne_bytes());
    Ok(id)
}

/// Makes an empty subvolume `name` in the btrfs folder `parent`.
pub fn btrfs_subvol_create(parent: impl AsFd, name: &std::ffi::CStr) -> io::Result<()> {
    // struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }: 4096 bytes, the name
    // NUL-terminated (BTRFS_PATH_NAME_MAX is 4087). The kernel copies it, so bytes will do.
    let bytes = name.to_bytes();
    if bytes.len() > 4087 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let mut args = [0u8; 4096];
    args[8..8 + bytes.len()].copy_from_slice(bytes);
    // SAFETY: the kernel reads one 4096-byte struct btrfs_ioctl_vol_args, the size of `args`.
    let rc = unsafe {
        libc::ioctl(
            parent.as_fd().as_raw_fd(),
            BTRFS_IOC_SUBVOL_CREATE,
            args.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;

/// Limits the referenced bytes of qgroup 0/`subvol` (the subvolume's own) on the file system
/// of `fd`; None takes the limit away. ENOTCONN (ENOENT on old kernels): quotas are off for
/// this file system.
pub fn btrfs_qgroup_limit(fd: impl AsFd, subvol: u64, max_rfer: Option<u64>) -> io::Result<()> {
    // qgroupid, then struct btrfs_qgroup_limit { flags, max_rfer, max_excl, rsv_rfer,
    // rsv_excl }; all ones clears the limit.
    let args: [u64; 6] = [
        subvol,
        BTRFS_QGROUP_LIMIT_MAX_RFER,
        max_rfer.unwrap_or(u64::MAX),
        0,
        0,
        0,
    ];
    // SAFETY: the kernel reads one 48-byte struct btrfs_ioctl_qgroup_limit_args from `args`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            BTRFS_IOC_QGROUP_LIMIT,
            args.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<Fsxattr>(), 28);
        assert_eq!(std::mem::size_of::<Dqblk>(), 72);
        assert_eq!(
            FS_IOC_FSSETXATTR as u32,
            crate::isolate::seccomp::FS_IOC_FSSETXATTR
        );
    }
}
