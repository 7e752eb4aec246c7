//! sysinfo(2) as a guest should see it (virt_mem, virt_load; the kernel itself counts uptime in
//! the caller's time namespace): the guest's seccomp
//! filter hands the call to a user-notification listener (isolate/seccomp.rs), the guest's
//! PID 1 (and each process a join makes) sends the listener to this server over a datagram
//! socket before it runs guest code, and the server answers: the caller's memory cgroup as
//! total and free RAM and swap, its thread count as `procs`, its time namespace's uptime, its
//! load averages (virt_load). lxcfs cannot do this (a FUSE file system never sees sysinfo);
//! Incus does it the same way.
//!
//! The listener must never be without a holder: with none the kernel fails the call (ENOSYS),
//! and nothing can make a new one for a running guest. So every listener is held twice: by the
//! server, which answers, and by a holder process (`vserverd __sysinfo-hold`) that only keeps
//! them. A server that dies (killed, out of memory) is started again by the daemon's
//! supervisor (guest/virtmem.rs) and takes the listeners back from the holder; meanwhile a
//! guest's sysinfo call waits, unanswered, and is answered by the new server (it is never
//! failed). Only if both die does a guest's sysinfo fail with ENOSYS until it restarts.
//!
//! A listener is dropped when the kernel says its filter has no process left (POLLHUP).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

use super::meminfo::Figures;
use crate::sys::notify::{self, Notification};

/// What a listener's guest asked for (sent with it): its memory, its uptime, its load.
pub const MEM: u32 = 1;
pub const UPTIME: u32 = 2;
pub const LOAD: u32 = 4;

/// AUDIT_ARCH_I386: a 32-bit program, whose struct sysinfo has 32-bit fields.
const ARCH_I386: u32 = 3 | 0x4000_0000;
/// sysinfo's number for the native ABI and for i386.
const NR_NATIVE: i32 = libc::SYS_sysinfo as i32;
const NR_I386: i32 = 116;

/// The server's socket, where the stages send listeners.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.with_extension("sysinfo")
}

/// The holder's own path (RUN_DIR/procfs-hold): its pid file and socket are named after it.
pub fn hold_base(dir: &Path) -> PathBuf {
    dir.with_file_name("procfs-hold")
}

/// The holder's socket.
fn hold_socket(base: &Path) -> PathBuf {
    base.with_extension("sock")
}

/// The holder's process name.
pub const HOLD_NAME: &str = "vserverd-sihold";
/// argv[1] of the holder.
pub const HOLD_ARG: &str = "__sysinfo-hold";

/// The figures of one answer, in bytes and seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    pub uptime: i64,
    /// The load averages as the kernel keeps them: fixed point, 1.0 = 65536.
    pub loads: [u64; 3],
    pub totalram: u64,
    pub freeram: u64,
    pub sharedram: u64,
    pub bufferram: u64,
    pub totalswap: u64,
    pub freeswap: u64,
    pub procs: u16,
}

/// The answer for a guest: the host's own figures (`host`, from sysinfo(2) in the server) with
/// the guest's in place of what `flags` asks for.
pub fn guest_view(
    host: &Info,
    flags: u32,
    mem: Option<&Figures>,
    threads: u32,
    loads: Option<[f64; 3]>,
    boottime_offset: i64,
) -> Info {
    let mut i = *host;
    i.procs = threads.min(u16::MAX as u32) as u16;
    if flags & MEM != 0 {
        if let Some(f) = mem {
            i.totalram = host.totalram.min(f.limit);
            i.freeram = i.totalram - f.usage.min(i.totalram);
            i.sharedram = f.shmem.min(i.totalram);
            i.bufferram = 0;
            if let Some(l) = f.swap_limit {
                i.totalswap = host.totalswap.min(l);
                i.freeswap = i.totalswap - f.swap_usage.min(i.totalswap);
            }
        }
    }
    if flags & UPTIME != 0 {
        i.uptime = (host.uptime + boottime_offset).max(0);
    }
    if flags & LOAD != 0 {
        if let Some(l) = loads {
            i.loads = l.map(|v| (v.max(0.0) * 65536.0) as u64);
        }
    }
    i
}

/// struct sysinfo as the caller's ABI lays it out: 112 bytes on 64-bit (longs of 8 bytes),
/// 64 on i386 (longs of 4). Memory is counted in units of `mem_unit` bytes: 1, or a page on
/// i386 when a figure would not fit 32 bits (as the kernel does).
pub fn encode(i: &Info, compat32: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(112);
    let mem = [
        i.totalram,
        i.freeram,
        i.sharedram,
        i.bufferram,
        i.totalswap,
        i.freeswap,
    ];
    if compat32 {
        let unit: u64 = if mem.iter().any(|&v| v > u32::MAX as u64) {
            4096
        } else {
            1
        };
        out.extend((i.uptime.clamp(0, i32::MAX as i64) as i32).to_ne_bytes());
        for l in i.loads {
            out.extend((l.min(u32::MAX as u64) as u32).to_ne_bytes());
        }
        for v in mem {
            out.extend(((v / unit).min(u32::MAX as u64) as u32).to_ne_bytes());
        }
        out.extend(i.procs.to_ne_bytes());
        out.extend([0u8; 2]);
        out.extend([0u8; 8]); // totalhigh, freehigh
        out.extend((unit as u32).to_ne_bytes());
        out.extend([0u8; 8]); // _f: 20 - 2*4 - 4
    } else {
        out.extend(i.uptime.to_ne_bytes());
        for l in i.loads {
            out.extend(l.to_ne_bytes());
        }
        for v in mem {
            out.extend(v.to_ne_bytes());
        }
        out.extend(i.procs.to_ne_bytes());
        out.extend([0u8; 6]); // pad, then alignment for totalhigh
        out.extend([0u8; 16]); // totalhigh, freehigh
        out.extend(1u32.to_ne_bytes());
        out.extend([0u8; 4]); // _f is empty; the struct ends 8-aligned
    }
    out
}

/// The host's figures, from sysinfo(2) in this (the host's) namespaces, in bytes.
fn host_info() -> Option<Info> {
    let s = notify::sysinfo().ok()?;
    let u = s.mem_unit.max(1) as u64;
    Some(Info {
        uptime: s.uptime,
        loads: s.loads,
        totalram: s.totalram as u64 * u,
        freeram: s.freeram as u64 * u,
        sharedram: s.sharedram as u64 * u,
        bufferram: s.bufferram as u64 * u,
        totalswap: s.totalswap as u64 * u,
        freeswap: s.freeswap as u64 * u,
        procs: s.procs,
    })
}

/// The boottime offset of `pid`'s time namespace, in seconds (0 outside one).
fn boottime_offset(pid: u32) -> i64 {
    super::files::read(format!("/proc/{pid}/timens_offsets"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "boottime").then(|| f.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// How a call is answered.
enum Reply {
    Value(i64),
    /// Let the kernel run the real call (the guest sees the host's figures, never a failure
    /// of ours).
    Proceed,
}

/// Answers one call: the guest's figures written into the caller's buffer. The caller's
/// memory is opened first and the call checked to be still waiting after, so what is written
/// is the caller's (its pid cannot have been reused meanwhile).
fn respond(
    listener: BorrowedFd<'_>,
    flags: u32,
    n: &Notification,
    loads: &dyn Fn(&str) -> Option<[f64; 3]>,
) -> Reply {
    let compat32 = n.arch == ARCH_I386;
    if n.nr != if compat32 { NR_I386 } else { NR_NATIVE } {
        return Reply::Proceed;
    }
    let Ok(mem) = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/mem", n.pid))
    else {
        return Reply::Proceed;
    };
    let Some(cgroup) = super::files::read(format!("/proc/{}/cgroup", n.pid)) else {
        return Reply::Proceed;
    };
    let offset = boottime_offset(n.pid);
    if !notify::still_waiting(listener, n.id) {
        return Reply::Proceed;
    }
    let Some(host) = host_info() else {
        return Reply::Proceed;
    };
    let figures = super::memory::of_cgroup(&cgroup);
    // One read each (not virt_cpu's walk of every thread): a sysinfo call must stay cheap.
    let (threads, kernel_load) = super::cpu::tasks_and_kernel_load(&cgroup);
    // The kernel's per-cgroup averages (kernel-patch/) where it keeps them.
    let lo = if flags & LOAD != 0 {
        kernel_load.or_else(|| loads(&cgroup))
    } else {
        None
    };
    let info = guest_view(&host, flags, figures.as_ref(), threads, lo, offset);
    let bytes = encode(&info, compat32);
    let at = if compat32 {
        n.args[0] & 0xffff_ffff
    } else {
        n.args[0]
    };
    use std::os::unix::fs::FileExt;
    match mem.write_all_at(&bytes, at) {
        Ok(()) => Reply::Value(0),
        // A pointer the caller cannot write: the real call says EFAULT as it would.
        Err(_) => Reply::Proceed,
    }
}

/// A datagram socket bound at `path` (an old one removed first), close-on-exec.
fn bind(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = socket::socket(
        socket::AddressFamily::Unix,
        socket::SockType::Datagram,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let _ = std::fs::remove_file(path);
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(fd)
}

/// One message: a tag byte, the flags, and at most one fd; and who sent it.
struct Message {
    tag: u8,
    flags: u32,
    fd: Option<OwnedFd>,
    from: Option<UnixAddr>,
}

fn receive(sock: BorrowedFd<'_>) -> Option<Message> {
    let mut buf = [0u8; 5];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = socket::recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let mut fd = None;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for (i, raw) in fds.into_iter().enumerate() {
                // SAFETY: just received with SCM_RIGHTS: ours, owned by nothing else.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if i == 0 {
                    fd = Some(owned);
                }
            }
        }
    }
    let from = msg.address;
    let n = msg.bytes;
    if n == 0 {
        return None;
    }
    let flags = if n >= 5 {
        u32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]])
    } else {
        0
    };
    Some(Message {
        tag: buf[0],
        flags,
        fd,
        from,
    })
}

/// Sends a tagged message with `fd` to `to` (or on a connected socket).
pub fn send(
    sock: BorrowedFd<'_>,
    to: Option<&UnixAddr>,
    tag: u8,
    flags: u32,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let mut buf = [tag, 0, 0, 0, 0];
    buf[1..].copy_from_slice(&flags.to_ne_bytes());
    let iov = [IoSlice::new(&buf)];
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = raw
        .as_ref()
        .map(|r| ControlMessage::ScmRights(r))
        .into_iter()
        .collect();
    socket::sendmsg(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), to)?;
    Ok(())
}

/// Waits until the socket is readable, a listener has what `events` asks of it (hang-ups
/// always count), or `timeout` passes; returns what each fd got, the socket's first. An
/// interrupted wait returns nothing ready.
fn wait(
    sock: BorrowedFd<'_>,
    listeners: &[Listener],
    events: impl Fn(&Listener) -> nix::poll::PollFlags,
    timeout: nix::poll::PollTimeout,
) -> Vec<nix::poll::PollFlags> {
    use nix::poll::{PollFd, PollFlags};
    let mut fds: Vec<PollFd> = Vec::with_capacity(1 + listeners.len());
    fds.push(PollFd::new(sock, PollFlags::POLLIN));
    fds.extend(
        listeners
            .iter()
            .map(|l| PollFd::new(l.fd.as_fd(), events(l))),
    );
    if nix::poll::poll(&mut fds, timeout).is_err() {
        return vec![PollFlags::empty(); fds.len()];
    }
    fds.iter()
        .map(|f| f.revents().unwrap_or(PollFlags::empty()))
        .collect()
}

/// Calls answered a second per listener (a guest's PID 1 and each joined process) after a
/// burst: sysinfo is asked at a program's start and by `free`/`uptime`/`top`, a few times a
/// second at most. A guest calling it in a loop waits for its turn, in its own syscall, and
/// costs the server at most this rate; other guests' calls are served in between (the loop
/// below takes one call per ready listener per round).
const RATE: f64 = 200.0;
const BURST: f64 = 50.0;

/// A listener, what its guest asked for, and its share of the server.
struct Listener {
    fd: OwnedFd,
    flags: u32,
    bucket: super::fair::Bucket,
    /// When its bucket has a token again (None: it has one).
    resting: Option<std::time::Instant>,
}

impl Listener {
    fn new(fd: OwnedFd, flags: u32) -> Self {
        Self {
            fd,
            flags,
            bucket: super::fair::Bucket::new(BURST, std::time::Instant::now()),
            resting: None,
        }
    }
}

/// Tags of the messages.
const KEEP: u8 = b'K';
const ALL: u8 = b'A';
const END: u8 = b'E';

/// The server's side: takes the listeners the holder keeps, then serves calls on every
/// listener and takes new ones from stages, until the process ends. `loads` gives a cgroup's
/// load averages (the server's virt_load figures). Runs on a thread of its own.
pub fn serve(dir: &Path, loads: impl Fn(&str) -> Option<[f64; 3]>) {
    let Ok(sock) = bind(&socket_path(dir)) else {
        return;
    };
    let hold = UnixAddr::new(&hold_socket(&hold_base(dir))).ok();
    let mut listeners: Vec<Listener> = Vec::new();
    // What the holder keeps: a server started after its predecessor died takes it all back.
    if let Some(h) = &hold {
        if send(sock.as_fd(), Some(h), ALL, 0, None).is_ok() {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while std::time::Instant::now() < until {
                let mut pfd = [nix::poll::PollFd::new(
                    sock.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(200u16)).unwrap_or(0) == 0
                {
                    continue;
                }
                match receive(sock.as_fd()) {
                    Some(Message {
                        tag: KEEP,
                        flags,
                        fd: Some(fd),
                        ..
                    }) => {
                        let _ = notify::sync_wakeups(fd.as_fd());
                        listeners.push(Listener::new(fd, flags))
                    }
                    Some(Message { tag: END, .. }) => break,
                    _ => {}
                }
            }
        }
    }
    loop {
        use nix::poll::{PollFlags, PollTimeout};
        let now = std::time::Instant::now();
        for l in &mut listeners {
            l.resting = l.resting.filter(|&t| t > now);
        }
        // Sleep no longer than until the first resting listener has a token again.
        let timeout =
            listeners
                .iter()
                .filter_map(|l| l.resting)
                .min()
                .map_or(PollTimeout::NONE, |t| {
                    let ms = t.saturating_duration_since(now).as_millis() + 1;
                    PollTimeout::from(ms.min(1000) as u16)
                });
        let ready = wait(
            sock.as_fd(),
            &listeners,
            |l| {
                if l.resting.is_some() {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                }
            },
            timeout,
        );
        if ready[0].contains(PollFlags::POLLIN) {
            if let Some(Message {
                tag: KEEP,
                flags,
                fd: Some(fd),
                ..
            }) = receive(sock.as_fd())
            {
                if let Some(h) = &hold {
                    let _ = send(sock.as_fd(), Some(h), KEEP, flags, Some(fd.as_fd()));
                }
                let _ = notify::sync_wakeups(fd.as_fd());
                listeners.push(Listener::new(fd, flags));
            }
        }
        let mut gone = Vec::new();
        let now = std::time::Instant::now();
        for (i, r) in ready[1..].iter().enumerate() {
            let l = &mut listeners[i];
            if r.contains(PollFlags::POLLIN) {
                if let Err(wait) = l.bucket.take(now, RATE, BURST) {
                    // Out of turns: the call stays queued in the kernel until then.
                    l.resting = Some(now + wait);
                    continue;
                }
                if let Ok(n) = notify::receive(l.fd.as_fd()) {
                    let _ = match respond(l.fd.as_fd(), l.flags, &n, &loads) {
                        Reply::Value(v) => notify::answer(l.fd.as_fd(), n.id, v, false),
                        Reply::Proceed => notify::answer(l.fd.as_fd(), n.id, 0, true),
                    };
                }
            } else if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.swap_remove(i);
        }
    }
}

/// `vserverd __sysinfo-hold DIR`: keeps every listener the server sends, gives them all to a
/// server that asks, and drops those whose guests are gone.
pub fn hold_main() -> std::process::ExitCode {
    let Some(base) = std::env::args_os().nth(2).map(PathBuf::from) else {
        eprintln!("usage: vserverd {HOLD_ARG} PATH");
        return std::process::ExitCode::from(2);
    };
    // It keeps every listener: more than a unit's default 1024 on a big host.
    crate::sys::process::raise_nofile();
    let path = hold_socket(&base);
    let sock = match bind(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let name = std::ffi::CString::new(HOLD_NAME).expect("no NUL");
    crate::detached::serve(&name, &base.with_extension("pid"), move || {
        let mut kept: Vec<Listener> = Vec::new();
        loop {
            use nix::poll::PollFlags;
            // Only hang-ups: the server answers the calls.
            let ready = wait(
                sock.as_fd(),
                &kept,
                |_| PollFlags::empty(),
                nix::poll::PollTimeout::NONE,
            );
            if ready[0].contains(PollFlags::POLLIN) {
                match receive(sock.as_fd()) {
                    Some(Message {
                        tag: KEEP,
                        flags,
                        fd: Some(fd),
                        ..
                    }) => kept.push(Listener::new(fd, flags)),
                    Some(Message {
                        tag: ALL,
                        from: Some(to),
                        ..
                    }) => {
                        for l in &kept {
                            let _ =
                                send(sock.as_fd(), Some(&to), KEEP, l.flags, Some(l.fd.as_fd()));
                        }
                        let _ = send(sock.as_fd(), Some(&to), END, 0, None);
                    }
                    _ => {}
                }
            }
            let gone: Vec<usize> = ready[1..]
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                })
                .map(|(i, _)| i)
                .collect();
            for i in gone.into_iter().rev() {
                kept.swap_remove(i);
            }
        }
    })
}

/// In the stage (the guest's PID 1, or a joined process), before it leaves the host's mount
/// namespace: a socket connected to the server's, to send the listener over once the filter
/// is installed.
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = socket::socket(
        socket::AddressFamily::Unix,
        socket::SockType::Datagram,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// In the stage: the listener and its guest's flags, to the server.
pub fn hand_over(
    sock: BorrowedFd<'_>,
    listener: BorrowedFd<'_>,
    flags: u32,
) -> std::io::Result<()> {
    send(sock, None, KEEP, flags, Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Info {
        Info {
            uptime: 1000,
            loads: [65536, 32768, 0],
            totalram: 24 << 30,
            freeram: 20 << 30,
            sharedram: 1 << 20,
            bufferram: 5 << 20,
            totalswap: 4 << 30,
            freeswap: 4 << 30,
            procs: 500,
        }
    }

    #[test]
    fn a_guest_sees_its_memory_uptime_load_and_threads() {
        let f = Figures {
            limit: 256 << 20,
            usage: 64 << 20,
            shmem: 1 << 20,
            swap_limit: Some(0),
            ..Figures::default()
        };
        let g = guest_view(
            &host(),
            MEM | UPTIME | LOAD,
            Some(&f),
            7,
            Some([0.5, 0.25, 0.0]),
            -990,
        );
        assert_eq!(g.totalram, 256 << 20);
        assert_eq!(g.freeram, 192 << 20);
        assert_eq!(g.sharedram, 1 << 20);
        assert_eq!((g.totalswap, g.freeswap), (0, 0));
        assert_eq!(g.uptime, 10);
        assert_eq!(g.loads, [32768, 16384, 0]);
        assert_eq!(g.procs, 7);
        // Only what the flags ask for changes.
        let g = guest_view(&host(), UPTIME, Some(&f), 7, None, -990);
        assert_eq!(
            (g.totalram, g.loads, g.uptime),
            (24 << 30, host().loads, 10)
        );
        // No limit: the host's memory stands.
        let g = guest_view(&host(), MEM, None, 7, None, 0);
        assert_eq!(g.totalram, 24 << 30);
    }

    #[test]
    fn the_struct_has_each_abis_layout() {
        let i = Info {
            uptime: 10,
            loads: [1, 2, 3],
            totalram: 256 << 20,
            freeram: 100,
            procs: 7,
            ..Info::default()
        };
        let b = encode(&i, false);
        // Where the C library's struct has each field.
        use std::mem::offset_of;
        type S = libc::sysinfo;
        assert_eq!(b.len(), std::mem::size_of::<S>());
        let at = |o: usize, n: usize| &b[o..o + n];
        assert_eq!(at(offset_of!(S, uptime), 8), 10i64.to_ne_bytes());
        assert_eq!(at(offset_of!(S, loads) + 16, 8), 3u64.to_ne_bytes());
        assert_eq!(at(offset_of!(S, totalram), 8), (256u64 << 20).to_ne_bytes());
        assert_eq!(at(offset_of!(S, freeram), 8), 100u64.to_ne_bytes());
        assert_eq!(at(offset_of!(S, procs), 2), 7u16.to_ne_bytes());
        assert_eq!(at(offset_of!(S, mem_unit), 4), 1u32.to_ne_bytes());
        let b = encode(&i, true);
        assert_eq!(b.len(), 64);
        assert_eq!(u32::from_ne_bytes(b[16..20].try_into().unwrap()), 256 << 20);
        assert_eq!(u16::from_ne_bytes(b[40..42].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(b[52..56].try_into().unwrap()), 1);
        // Past 4 GiB an i386 caller gets pages.
        let big = Info {
            totalram: 8 << 30,
            ..i
        };
        let b = encode(&big, true);
        assert_eq!(
            u32::from_ne_bytes(b[16..20].try_into().unwrap()),
            (8u64 << 30 >> 12) as u32
        );
        assert_eq!(u32::from_ne_bytes(b[52..56].try_into().unwrap()), 4096);
    }
}
