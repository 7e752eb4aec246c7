//! Files in hostile trees and the block-sharing ioctls: openat2 confined beneath a directory,
//! FIDEDUPERANGE (share identical ranges copy-on-write) and FIEMAP (which extents a file
//! has, and whether they are shared).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Opens `rel` below `dir` for reading without ever leaving it or following a link: openat2
/// with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, O_NOFOLLOW (the last
/// component), O_NONBLOCK (a FIFO a guest put where a file was does not block the open),
/// O_NOCTTY. `directory` asks for O_DIRECTORY. The caller checks what it got with fstat.
pub fn open_beneath(dir: impl AsFd, rel: &std::path::Path, directory: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::NOCTTY
        | OFlags::CLOEXEC
        | OFlags::NOATIME;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        // O_NOATIME needs ownership or CAP_FOWNER; retry without it rather than fail.
        Err(rustix::io::Errno::PERM) => Ok(rustix::fs::openat2(
            &dir,
            rel,
            flags - OFlags::NOATIME,
            Mode::empty(),
            resolve,
        )?),
        Err(e) => Err(e.into()),
    }
}

/// fstat(2).
pub fn fstat(fd: impl AsFd) -> io::Result<rustix::fs::Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// fstatat(2) of one name in `dir`, not following a symlink there.
pub fn lstat_at(dir: impl AsFd, name: &std::ffi::CStr) -> io::Result<rustix::fs::Stat> {
    Ok(rustix::fs::statat(
        dir,
        name,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// The file system type (statfs f_type) of the file system `fd` is on.
pub fn fs_type(fd: impl AsFd) -> io::Result<i64> {
    Ok(rustix::fs::fstatfs(fd)?.f_type as i64)
}

pub const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
pub const EXT4_SUPER_MAGIC: i64 = 0xef53;
pub const BCACHEFS_SUPER_MAGIC: i64 = 0xca45_1a4e;

/// The kernel's limit on destinations of one FIDEDUPERANGE call: the request and its array
/// must fit in one page ((4096 − 24) / 32).
pub const DEDUPE_MAX_DESTS: usize = 127;

/// One destination's outcome of a [`dedupe`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeStatus {
    /// Shared: this many bytes of the destination now use the source's blocks.
    Same(u64),
    /// The bytes differ (the file changed since it was hashed): nothing was done.
    Differs,
    /// The kernel refused this destination (errno).
    Error(i32),
}

#[repr(C)]
struct DedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DedupeInfo {
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// _IOWR(0x94, 54, struct file_dedupe_range): the header is 24 bytes.
const FIDEDUPERANGE: libc::c_ulong = 0xc018_9436;

/// FIDEDUPERANGE: for each destination, if its `len` bytes at `offset` equal the source's at
/// the same offset, the kernel points them at the source's blocks (copy-on-write); the
/// compare and the remap are one step for the kernel, so a file written meanwhile is never
/// merged wrongly. At most [`DEDUPE_MAX_DESTS`] destinations; the kernel may share fewer
/// bytes than asked (typically at most 16 MiB a call). An error of the whole call (EXDEV,
/// EOPNOTSUPP, EINVAL …) is returned as such.
pub fn dedupe(
    src: impl AsFd,
    offset: u64,
    len: u64,
    dests: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<Vec<DedupeStatus>> {
    if dests.is_empty() || dests.len() > DEDUPE_MAX_DESTS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let head = std::mem::size_of::<DedupeRange>();
    let item = std::mem::size_of::<DedupeInfo>();
    // u64 words: the buffer is aligned for both structs.
    let mut buf = vec![0u64; (head + item * dests.len()).div_ceil(8)];
    let base = buf.as_mut_ptr() as *mut u8;
    let range = DedupeRange {
        src_offset: offset,
        src_length: len,
        dest_count: dests.len() as u16,
        reserved1: 0,
        reserved2: 0,
    };
    // SAFETY: `buf` holds head + n·item bytes, 8-byte aligned; both structs are plain data
    // of alignment ≤ 8 written at offsets that are multiples of 8.
    unsafe {
        std::ptr::write(base as *mut DedupeRange, range);
        for (i, d) in dests.iter().enumerate() {
            let info = DedupeInfo {
                dest_fd: d.as_raw_fd() as i64,
                dest_offset: offset,
                bytes_deduped: 0,
                status: 0,
                reserved: 0,
            };
            std::ptr::write(base.add(head + i * item) as *mut DedupeInfo, info);
        }
    }
    // SAFETY: the ioctl reads the header and its dest_count entries and writes the entries'
    // results, all within `buf`; the fds are borrowed for the call.
    let rc = unsafe { libc::ioctl(src.as_fd().as_raw_fd(), FIDEDUPERANGE, base) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::with_capacity(dests.len());
    for i in 0..dests.len() {
        // SAFETY: entry i was written above and filled in by the kernel; it is in bounds
        // and aligned.
        let info = unsafe { std::ptr::read(base.add(head + i * item) as *const DedupeInfo) };
        out.push(match info.status {
            0 => DedupeStatus::Same(info.bytes_deduped),
            1 => DedupeStatus::Differs,
            e if e < 0 => DedupeStatus::Error(-e),
            e => DedupeStatus::Error(e),
        });
    }
    Ok(out)
}

/// One extent of a file (FIEMAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
pub const FIEMAP_EXTENT_UNKNOWN: u32 = 0x2;
pub const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;
pub const FIEMAP_EXTENT_DATA_INLINE: u32 = 0x200;
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

#[repr(C)]
struct FiemapHead {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// _IOWR('f', 11, struct fiemap): the header is 32 bytes.
const FS_IOC_FIEMAP: libc::c_ulong = 0xc020_660b;

/// Every extent of the file (FIEMAP, asked in batches until the kernel marks the last).
pub fn extents(fd: impl AsFd) -> io::Result<Vec<Extent>> {
    const BATCH: usize = 128;
    let head = std::mem::size_of::<FiemapHead>();
    let item = std::mem::size_of::<FiemapExtent>();
    let mut buf = vec![0u64; (head + item * BATCH).div_ceil(8)];
    let base = buf.as_mut_ptr() as *mut u8;
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let h = FiemapHead {
            start,
            length: u64::MAX - start,
            flags: 0,
            mapped_extents: 0,
            extent_count: BATCH as u32,
            reserved: 0,
        };
        // SAFETY: the header fits at the start of the 8-byte aligned buffer.
        unsafe { std::ptr::write(base as *mut FiemapHead, h) };
        // SAFETY: the kernel writes at most extent_count entries after the header, which
        // the buffer holds.
        let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), FS_IOC_FIEMAP, base) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the header, filled in by the kernel.
        let n = unsafe { std::ptr::read(base as *const FiemapHead) }.mapped_extents as usize;
        if n == 0 {
            return Ok(out);
        }
        let mut last = false;
        for i in 0..n.min(BATCH) {
            // SAFETY: entry i < extent_count, written by the kernel, in bounds and aligned.
            let e = unsafe { std::ptr::read(base.add(head + i * item) as *const FiemapExtent) };
            last |= e.flags & FIEMAP_EXTENT_LAST != 0;
            start = e.logical.saturating_add(e.length);
            out.push(Extent {
                logical: e.logical,
                physical: e.physical,
                length: e.length,
                flags: e.flags,
            });
        }
        if last || n < BATCH {
            return Ok(out);
        }
    }
}
