//! bpf(2) and what goes with it: loading a program, linking it to a cgroup, pinning and
//! fetching links in a bpffs, detaching, querying a cgroup, the network namespace's cookie.
//!
//! `union bpf_attr` is 144 bytes on this kernel's uapi; each command fills the fields it uses
//! at their uapi offsets in a zeroed buffer (the kernel rejects non-zero bytes past the fields
//! a command knows, so zero is the safe default for everything else).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const MAP_CREATE: u32 = 0;
const MAP_LOOKUP_ELEM: u32 = 1;
const MAP_UPDATE_ELEM: u32 = 2;
const MAP_DELETE_ELEM: u32 = 3;
const PROG_LOAD: u32 = 5;
const OBJ_PIN: u32 = 6;
const OBJ_GET: u32 = 7;
const MAP_GET_FD_BY_ID: u32 = 14;
const MAP_UPDATE_BATCH: u32 = 26;
const MAP_DELETE_BATCH: u32 = 27;
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
    link_create(prog, cgroup, attach_type)
}

/// Links a program to a network namespace (`netns`: an fd of /proc/PID/ns/net), as
/// BPF_SK_LOOKUP programs attach.
pub fn link_netns(prog: impl AsFd, netns: impl AsFd, attach_type: u32) -> io::Result<OwnedFd> {
    link_create(prog, netns, attach_type)
}

fn link_create(prog: impl AsFd, target: impl AsFd, attach_type: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_fd().as_raw_fd() as u32)
        .u32(4, target.as_fd().as_raw_fd() as u32)
        .u32(8, attach_type);
    bpf(LINK_CREATE, &mut a).map(fd_of)
}

/// What a map is made of (BPF_MAP_CREATE).
#[derive(Debug, Clone, Copy)]
pub struct MapSpec<'a> {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    /// `name` (at most 15 bytes kept) is what `bpftool map` shows.
    pub name: &'a str,
}

/// Creates a map; `inner` is the template map of a map-in-map (HASH_OF_MAPS).
pub fn map_create(spec: &MapSpec, inner: Option<BorrowedFd>) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, spec.map_type)
        .u32(4, spec.key_size)
        .u32(8, spec.value_size)
        .u32(12, spec.max_entries)
        .u32(16, spec.flags)
        .u32(20, inner.map(|f| f.as_raw_fd() as u32).unwrap_or(0));
    let n = spec.name.as_bytes();
    let n = &n[..n.len().min(15)];
    a.0[28..28 + n.len()].copy_from_slice(n);
    bpf(MAP_CREATE, &mut a).map(fd_of)
}

/// `BPF_ANY`: create or replace.
pub const BPF_ANY: u64 = 0;

/// Sets `key` to `value` in a map (sizes as the map was made; for socket maps the value is a
/// socket's fd, for maps of maps a map's fd).
pub fn map_update(map: impl AsFd, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, map.as_fd().as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64)
        .u64(24, flags);
    bpf(MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Removes `key` from a map (ENOENT when it is not there).
pub fn map_delete(map: impl AsFd, key: &[u8]) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, map.as_fd().as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64);
    bpf(MAP_DELETE_ELEM, &mut a).map(|_| ())
}

/// Reads `key` of a map into `value` (sized as the map's values; a socket map yields the
/// socket's cookie, a map of maps the inner map's id). Ok(false): no such key.
pub fn map_lookup(map: impl AsFd, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut a = Attr::new();
    a.u32(0, map.as_fd().as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_mut_ptr() as u64);
    match bpf(MAP_LOOKUP_ELEM, &mut a) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets each of `keys` (concatenated, `key_size` bytes each) to `value` in one call: a map of
/// maps waits for an RCU grace period after each change made through the syscall (so no
/// program still sees an inner map it replaced), about 10 ms each here; a batch waits once.
pub fn map_update_batch(
    map: impl AsFd,
    keys: &[u8],
    key_size: usize,
    value: &[u8],
) -> io::Result<()> {
    let n = keys.len() / key_size.max(1);
    let values: Vec<u8> = value.repeat(n);
    let mut a = Attr::new();
    a.u64(16, keys.as_ptr() as u64)
        .u64(24, values.as_ptr() as u64)
        .u32(32, n as u32)
        .u32(36, map.as_fd().as_raw_fd() as u32);
    bpf(MAP_UPDATE_BATCH, &mut a).map(|_| ())
}

/// Removes each of `keys` (concatenated) in one call; ENOENT when one is missing (those
/// before it are removed: the caller retries one by one).
pub fn map_delete_batch(map: impl AsFd, keys: &[u8], key_size: usize) -> io::Result<()> {
    let n = keys.len() / key_size.max(1);
    let mut a = Attr::new();
    a.u64(16, keys.as_ptr() as u64)
        .u32(32, n as u32)
        .u32(36, map.as_fd().as_raw_fd() as u32);
    bpf(MAP_DELETE_BATCH, &mut a).map(|_| ())
}

/// Opens the map with this id (as a map of maps' lookup yields it).
pub fn map_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, id);
    bpf(MAP_GET_FD_BY_ID, &mut a).map(fd_of)
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
