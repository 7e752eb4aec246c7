//! Namespaces and mounts: setns through a pidfd, the new mount API (open_tree, move_mount,
//! mount_setattr), and a network interface's flags.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// setns(2) with a pidfd: enters the namespaces `flags` (CLONE_NEW*) of its process at once.
pub fn setns_pidfd(pidfd: impl AsFd, flags: libc::c_int) -> io::Result<()> {
    Ok(rustix::thread::move_into_thread_name_spaces(
        pidfd.as_fd(),
        rustix::thread::ThreadNameSpaceType::from_bits_retain(flags as u32),
    )?)
}

/// ioctl NS_GET_USERNS (`_IO(0xb7, 0x1)`): an fd of the user namespace that owns the
/// namespace `ns` (an nsfs fd). The kernel refuses (EPERM) an owner outside the caller's user
/// namespace.
pub fn owner_userns(ns: impl AsFd) -> io::Result<OwnedFd> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(ns.as_fd().as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// MOUNT_ATTR_IDMAP: the mount shows its files' ids through a user namespace's mapping.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// mount_setattr's flag: the whole tree under the path.
pub const AT_RECURSIVE: libc::c_uint = 0x8000;

/// mount_setattr(2): sets `attrs` (MOUNT_ATTR_*) on the mount at `dirfd`/`path` (rustix has
/// no wrapper for it).
pub fn mount_setattr(
    dirfd: impl AsFd,
    path: &CStr,
    flags: libc::c_uint,
    attrs: u64,
) -> io::Result<()> {
    mount_setattr_userns(dirfd, path, flags, attrs, None)
}

/// mount_setattr(2) with a user namespace: with MOUNT_ATTR_IDMAP in `attrs`, the detached
/// mount `dirfd` shows its ids through that namespace's mapping.
pub fn mount_setattr_userns(
    dirfd: impl AsFd,
    path: &CStr,
    flags: libc::c_uint,
    attrs: u64,
    userns: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |f| f.as_raw_fd() as u64),
    };
    // SAFETY: mount_setattr with a valid fd, a NUL-terminated path and a correctly sized
    // struct, all valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_fd().as_raw_fd(),
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path`, close-on-exec.
pub fn open_tree_clone(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    Ok(rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?)
}

/// open_tree(OPEN_TREE_CLONE), with the mounts below it when `recursive`: a detached copy,
/// close-on-exec (for an idmapped bind).
pub fn open_tree_clone_tree(path: &std::path::Path, recursive: bool) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let mut f = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        f |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(rustix::mount::open_tree(rustix::fs::CWD, path, f)?)
}

/// move_mount(2) of the detached mount `tree` onto `target`.
pub fn move_mount_onto(tree: impl AsFd, target: &CStr) -> io::Result<()> {
    Ok(rustix::mount::move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        target,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?)
}

/// move_mount(2) of the detached mount `tree` onto the file or directory `target` (an O_PATH
/// fd): no path is looked up again.
pub fn move_mount_onto_fd(tree: impl AsFd, target: impl AsFd) -> io::Result<()> {
    Ok(rustix::mount::move_mount(
        tree,
        c"",
        target,
        c"",
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
            | rustix::mount::MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// Sets the interface `name` up in the calling thread's network namespace (SIOCGIFFLAGS,
/// SIOCSIFFLAGS on a datagram socket): no `ip` process.
pub fn interface_up(name: &CStr) -> io::Result<()> {
    // SAFETY: socket(2) returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = name.to_bytes_with_nul();
    if name.len() > req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS with a valid ifreq naming the interface; ifru_flags is
    // the union member these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
