//! bpf(2) and what goes with it: loading a program, linking it to a cgroup, pinning and
//! fetching links in a bpffs, detaching, querying a cgroup, the network namespace's cookie.
//!
//! `union bpf_attr` is 144 bytes on this kernel's uapi; each command fills the fields it uses
//! at their uapi offsets in a zeroed buffer (the kernel rejects non-zero bytes past the fields
//! a command knows, so zero is the safe default for everything else).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const PROG_LOAD: u32 = 5;
const OBJ_PIN: u32 = 6;
const OBJ_GET: u32 = 7;
const PROG_QUERY: u32 = 16;
const LINK_CREATE: u32 = 28;
const LINK_DETACH: u32 = 34;

/// statfs(2) f_type of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[repr(C, align(8))]
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: attr is a live, writable 144-byte buffer for the whole call, its size passed
    // along; every pointer stored in it (instructions, strings, logs, id arrays) is kept alive
    // by the caller across this call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn fd_of(rc: i64) -> OwnedFd {
    // SAFETY: bpf(2) returned this new fd for a command that makes one; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

fn cpath(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// A failed load: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    pub err: io::Error,
    pub log: String,
}

/// Loads a program (`insns`: encoded 8-byte instructions) of `prog_type` for the attach type
/// `expected`; `name` (at most 15 bytes kept) is what `bpftool prog` shows. On failure the
/// load is repeated with the verifier's log on, which the error carries.
pub fn prog_load(
    prog_type: u32,
    expected: u32,
    insns: &[[u8; 8]],
    name: &str,
) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, prog_type)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(68, expected);
        let n = name.as_bytes();
        let n = &n[..n.len().min(15)];
        a.0[48..48 + n.len()].copy_from_slice(n);
        if let Some(buf) = log {
            a.u32(24, 1)
                .u32(28, buf.len() as u32)
                .u64(32, buf.as_mut_ptr() as u64);
        }
        bpf(PROG_LOAD, &mut a)
    };
    match load(None) {
        Ok(fd) => Ok(fd_of(fd)),
        Err(err) => {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = load(Some(&mut buf));
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Err(LoadError {
                err,
                log: String::from_utf8_lossy(&buf[..end]).into_owned(),
            })
        }
    }
}

/// Links a program to a cgroup (BPF_LINK_CREATE): the attachment lives as long as the link
/// (an fd, or a pin), and nothing can detach it through the cgroup.
pub fn link_cgroup(prog: impl AsFd, cgroup: impl AsFd, attach_type: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_fd().as_raw_fd() as u32)
        .u32(4, cgroup.as_fd().as_raw_fd() as u32)
        .u32(8, attach_type);
    bpf(LINK_CREATE, &mut a).map(fd_of)
}

/// Pins a bpf object (a link) at `path` in a bpffs.
pub fn obj_pin(obj: impl AsFd, path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    let mut a = Attr::new();
    a.u64(0, p.as_ptr() as u64)
        .u32(8, obj.as_fd().as_raw_fd() as u32);
    bpf(OBJ_PIN, &mut a).map(|_| ())
}

/// Opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let p = cpath(path)?;
    let mut a = Attr::new();
    a.u64(0, p.as_ptr() as u64);
    bpf(OBJ_GET, &mut a).map(fd_of)
}

/// Detaches a link's program now (the link object stays, defunct, until its last reference).
pub fn link_detach(link: impl AsFd) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, link.as_fd().as_raw_fd() as u32);
    bpf(LINK_DETACH, &mut a).map(|_| ())
}

/// The ids of the programs in effect at a cgroup for an attach type, inherited ones included
/// (BPF_F_QUERY_EFFECTIVE).
pub fn prog_query_effective(cgroup: impl AsFd, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut a = Attr::new();
    a.u32(0, cgroup.as_fd().as_raw_fd() as u32)
        .u32(4, attach_type)
        .u32(8, 1) // BPF_F_QUERY_EFFECTIVE
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(PROG_QUERY, &mut a)?;
    ids.truncate(a.get_u32(24) as usize);
    Ok(ids)
}

/// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE of a fresh socket):
/// what bpf_get_netns_cookie() returns for sockets of that namespace.
pub fn netns_cookie() -> io::Result<u64> {
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    let s = socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len are live locals of the sizes passed; s is an open socket.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Whether `dir` is a bpffs mount point's root or inside one.
pub fn is_bpffs(dir: &Path) -> io::Result<bool> {
    let s = rustix::fs::statfs(dir)?;
    Ok(s.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `dir`, readable by root only (mode=0700).
pub fn mount_bpffs(dir: &Path) -> io::Result<()> {
    rustix::mount::mount(
        "bpf",
        dir,
        "bpf",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC,
        c"mode=0700",
    )?;
    Ok(())
}
