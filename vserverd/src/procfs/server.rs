//! The FUSE file system: a root directory with a folder per guest (ROOT/NAME/{meminfo, cpuinfo,
//! stat, loadavg, online}, made on first lookup) and, for guests started before those,
//! ROOT/meminfo. Each open gets the text
//! rendered for the opening process (FUSE tells us its pid), shared by the openers of one
//! cgroup for RENDER_TTL, and keeps it for the handle, so a reader going through it in several
//! reads sees one consistent snapshot.
//!
//! Who pays for a flood: fuser reads the kernel's requests on one thread; that thread only
//! sorts them. Everything a guest's request costs (the opener's cgroup, a render, a read) is
//! queued by the folder the request is for and done by WORKERS threads, folders in turn, each
//! folder at most RATE requests a second (fair.rs). A guest opening its meminfo in a loop then
//! waits in its own syscalls; other guests' requests are served in their turn. The process as
//! a whole runs in a cgroup of its own with CPU, memory and pids limits (crate::detached).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};

use super::fair::{Fair, Pop};
use super::{cpu, cpuview, diskview, meminfo, memory};

const ROOT: u64 = 1;
/// ROOT/meminfo: what guests started before per-guest folders bind (kept for adopted ones).
const MEMINFO: u64 = 2;
/// Per-guest folders ROOT/NAME get inodes FIRST, FIRST+STRIDE, …; their files the next ones,
/// in the order of FILES.
const FIRST: u64 = 16;
const STRIDE: u64 = 8;
/// The files of a guest's folder: meminfo, swaps and diskstats (virt_mem), cpuinfo, stat and
/// online (virt_cpu; online is bound over /sys/devices/system/cpu/online), loadavg
/// (virt_load). At most STRIDE - 1.
pub const FILES: [&str; 7] = [
    "meminfo",
    "cpuinfo",
    "stat",
    "loadavg",
    "online",
    "swaps",
    "diskstats",
];
const _: () = assert!(FILES.len() < STRIDE as usize);
/// Folders the server will make; lookups past it fail (ENOSPC).
const MAX_FOLDERS: usize = 65_536;
/// Handles one folder (one guest) may hold open at once; past it, EMFILE.
const MAX_OPEN_PER_FOLDER: usize = 1024;
/// Requests a second each folder (each guest) is served after a burst of BURST: a reader of
/// /proc/meminfo costs at least three (lookup, open, read; a shell's `read` takes a request a
/// byte), so a monitoring agent never meets it, and a loop of `cat` gets ~300 reads a second.
const RATE: f64 = 1000.0;
const BURST: f64 = 200.0;
/// Requests one folder may have waiting; past it, EAGAIN (a guest has at most one waiting per
/// thread, so only a guest with more threads than this sees it).
const MAX_WAITING: usize = 1024;
/// Threads that serve the queued requests.
const WORKERS: usize = 2;
/// How long a rendered text serves every opener in the same cgroup.
const RENDER_TTL: Duration = Duration::from_millis(20);
const DIR_TTL: Duration = Duration::from_secs(3600);
/// meminfo's size is that of the asker's text, so the kernel must ask on every lookup: reads
/// use direct I/O, but sendfile(2) and splice go through the page cache and stop at i_size
/// (busybox `cat` uses sendfile; a size of 0, as /proc reports, would read as empty).
const FILE_TTL: Duration = Duration::ZERO;
/// The size a lookup reports, at the least. A guest's file is bound over its /proc at start, so
/// the only lookup it ever gets is the binding stage's, a host process whose text (the host's
/// figures) may be shorter than the guest's: the size the kernel keeps from that lookup would
/// cut a guest's sendfile(2) reader (busybox `cat`) short — its /proc/swaps, one line longer
/// than the host's, read as the header alone. A reader that asks (fstat: getattr) gets the
/// exact size of its own text, so `tail` still seeks right; sendfile stops at the text's end
/// (a short read).
const LOOKUP_SIZE_FLOOR: u64 = 64 * 1024;

/// Why a guest's cached meminfo pages can never be another guest's: each guest binds the
/// meminfo of a folder of its own (ROOT/NAME/meminfo), a distinct inode with its own page
/// cache, so sendfile, splice and mmap of it only ever see text rendered for that guest.
#[derive(Default)]
struct State {
    /// Open handle -> (its folder's file inode, the text it reads).
    open: HashMap<u64, (u64, Arc<Vec<u8>>)>,
    next: u64,
    folders: HashMap<String, u64>,
    /// Per folder inode: how many handles are open.
    open_count: HashMap<u64, usize>,
    /// Rendered text by file and the opener's cgroup lines, and when.
    rendered: HashMap<(usize, String), Rendered>,
    /// Load averages by the readers' cgroup lines (virt_load), brought up to date on read.
    loads: HashMap<String, cpuview::Load>,
}

/// A text and when it was rendered.
type Rendered = (Instant, Arc<Vec<u8>>);

/// A request a worker answers.
enum Job {
    Lookup(u32, u64, ReplyEntry),
    Getattr(u32, u64, ReplyAttr),
    Open(u32, u64, ReplyOpen),
    Read(u64, i64, u32, ReplyData),
}

pub struct Shared {
    state: Mutex<State>,
    queue: Mutex<Fair<Job>>,
    ready: Condvar,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            queue: Mutex::new(Fair::new(RATE, BURST, MAX_WAITING)),
            ready: Condvar::new(),
        }
    }
}

/// The dispatching side: what fuser's session loop calls.
pub struct ProcFs {
    shared: Arc<Shared>,
}

impl ProcFs {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Hands `job` to the workers, in the lane of the folder the file inode `ino` is in.
    fn queue(&self, ino: u64, job: Job) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.push(folder_of(ino), job, Instant::now()) {
            Ok(()) => self.shared.ready.notify_one(),
            Err(job) => {
                drop(q);
                refuse(job, libc::EAGAIN);
            }
        }
    }
}

fn refuse(job: Job, errno: i32) {
    match job {
        Job::Lookup(_, _, r) => r.error(errno),
        Job::Getattr(_, _, r) => r.error(errno),
        Job::Open(_, _, r) => r.error(errno),
        Job::Read(_, _, _, r) => r.error(errno),
    }
}

/// Starts the worker threads (in the serving process, after its fork).
pub fn start_workers(shared: &Arc<Shared>) {
    for i in 0..WORKERS {
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name(format!("procfs-{i}"))
            .spawn(move || loop {
                let job = next_job(&s);
                s.answer(job);
            });
    }
}

fn next_job(s: &Shared) -> Job {
    let mut q = s.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        q = match q.pop(Instant::now()) {
            Pop::Job(j) => return j,
            Pop::Wait(d) => {
                s.ready
                    .wait_timeout(q, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            Pop::Empty => s.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

fn attr(ino: u64, size: u64) -> FileAttr {
    let (kind, perm, nlink) = if is_dir(ino) {
        (FileType::Directory, 0o555, 2)
    } else {
        (FileType::RegularFile, 0o444, 1)
    };
    FileAttr {
        ino,
        size,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn is_dir(ino: u64) -> bool {
    ino == ROOT || (ino >= FIRST && (ino - FIRST).is_multiple_of(STRIDE))
}

fn is_file(ino: u64) -> bool {
    ino == MEMINFO || (ino > FIRST && (1..=FILES.len() as u64).contains(&((ino - FIRST) % STRIDE)))
}

/// Which of FILES a file inode is.
fn kind(ino: u64) -> usize {
    if ino == MEMINFO {
        0
    } else {
        ((ino - FIRST) % STRIDE - 1) as usize
    }
}

/// The folder a file inode is in (the legacy ROOT/meminfo counts as a folder of its own).
fn folder_of(ino: u64) -> u64 {
    if ino < FIRST {
        ino
    } else {
        ino - (ino - FIRST) % STRIDE
    }
}

/// A folder name the server makes: a guest name (never empty, `.`-led or with a `/`).
fn folder_name(name: &OsStr) -> Option<&str> {
    let n = name.to_str()?;
    (!n.is_empty() && !n.starts_with('.') && !n.contains('/') && n.len() <= 255).then_some(n)
}

/// The meminfo a process in the cgroups `cgroup` (its /proc/PID/cgroup text) should see.
fn meminfo_for(cgroup: &str) -> Vec<u8> {
    let host = super::files::read("/proc/meminfo").unwrap_or_default();
    match memory::of_cgroup(cgroup) {
        Some(f) => meminfo::render(&host, &f).into_bytes(),
        None => host.into_bytes(),
    }
}

/// Seconds since the server started, for the load averages.
fn now() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A cgroup's load averages for sysinfo(2) (virt_load) where the kernel keeps none per cgroup:
/// those its /proc/loadavg last showed. Looked at, never updated: a sysinfo
/// call (glibc makes them for its own sizing) must not feed the average it reads.
pub fn loads(shared: &Shared, cgroup: &str) -> Option<[f64; 3]> {
    Some(shared.state().loads.get(cgroup).map_or([0.0; 3], |l| l.avg))
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// File `kind` of FILES as a process in the cgroups `cgroup` should see it.
    fn render(&self, kind: usize, cgroup: &str) -> Vec<u8> {
        let host = |p: &str| super::files::read(p).unwrap_or_default();
        match FILES[kind] {
            "meminfo" => meminfo_for(cgroup),
            "cpuinfo" => {
                cpuview::cpuinfo(&host("/proc/cpuinfo"), &cpu::of_cgroup(cgroup).cpus).into()
            }
            "stat" => cpuview::stat(&host("/proc/stat"), &cpu::of_cgroup(cgroup)).into(),
            "online" => cpuview::online(cpu::of_cgroup(cgroup).cpus.len()).into(),
            "swaps" => {
                diskview::swaps(&host("/proc/swaps"), memory::of_cgroup(cgroup).as_ref()).into()
            }
            "diskstats" => {
                diskview::diskstats(&diskview::io_of_cgroup(cgroup), &diskview::device_name).into()
            }
            _ => {
                let f = cpu::of_cgroup(cgroup);
                let host_load = host("/proc/loadavg");
                let last_pid = host_load.split_whitespace().nth(4).unwrap_or("0");
                // The kernel's own per-cgroup averages where it keeps them (kernel-patch/).
                if let Some(avg) = f.kernel_load {
                    let load = cpuview::Load { avg, at: None };
                    return cpuview::loadavg(&load, &f, last_pid).into();
                }
                let mut st = self.state();
                if st.loads.len() > MAX_FOLDERS {
                    st.loads.clear();
                }
                let load = st.loads.entry(cgroup.to_string()).or_default();
                load.update(now(), f.running);
                let load = *load;
                drop(st);
                cpuview::loadavg(&load, &f, last_pid).into()
            }
        }
    }

    /// File `kind` for `pid`, rendered at most once per RENDER_TTL for every opener in the same
    /// cgroups (a guest opening it in a loop costs one render per interval, not one per open).
    /// Rendered without the lock held: the other worker goes on meanwhile.
    fn text_for(&self, pid: u32, kind: usize) -> Arc<Vec<u8>> {
        let cgroup = super::files::read(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let key = (kind, cgroup);
        if let Some((at, t)) = self.state().rendered.get(&key) {
            if at.elapsed() < RENDER_TTL {
                return t.clone();
            }
        }
        let t = Arc::new(self.render(kind, &key.1));
        let mut st = self.state();
        if st.rendered.len() > MAX_FOLDERS {
            st.rendered.retain(|_, (at, _)| at.elapsed() < RENDER_TTL);
        }
        st.rendered.insert(key, (Instant::now(), t.clone()));
        t
    }

    fn answer(&self, job: Job) {
        match job {
            Job::Lookup(pid, ino, reply) => {
                let size = self.text_for(pid, kind(ino)).len() as u64;
                reply.entry(&FILE_TTL, &attr(ino, size.max(LOOKUP_SIZE_FLOOR)), 0);
            }
            Job::Getattr(pid, ino, reply) => {
                let size = self.text_for(pid, kind(ino)).len() as u64;
                reply.attr(&FILE_TTL, &attr(ino, size));
            }
            Job::Open(pid, ino, reply) => {
                let text = self.text_for(pid, kind(ino));
                let mut st = self.state();
                let n = st.open_count.entry(folder_of(ino)).or_default();
                if *n >= MAX_OPEN_PER_FOLDER {
                    return reply.error(libc::EMFILE);
                }
                *n += 1;
                st.next += 1;
                let fh = st.next;
                st.open.insert(fh, (ino, text));
                reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO);
            }
            Job::Read(fh, offset, size, reply) => {
                let Some((_, text)) = self.state().open.get(&fh).cloned() else {
                    return reply.error(libc::EBADF);
                };
                let start = usize::try_from(offset).unwrap_or(0).min(text.len());
                let end = start.saturating_add(size as usize).min(text.len());
                reply.data(&text[start..end]);
            }
        }
    }
}

impl Filesystem for ProcFs {
    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if name == "meminfo" && parent == ROOT {
            return self.queue(MEMINFO, Job::Lookup(req.pid(), MEMINFO, reply));
        }
        if parent != ROOT && is_dir(parent) {
            let Some(k) = FILES.iter().position(|f| name == *f) else {
                return reply.error(libc::ENOENT);
            };
            let ino = parent + 1 + k as u64;
            return self.queue(ino, Job::Lookup(req.pid(), ino, reply));
        }
        if parent != ROOT {
            return reply.error(libc::ENOENT);
        }
        let Some(n) = folder_name(name) else {
            return reply.error(libc::ENOENT);
        };
        let mut st = self.shared.state();
        let ino = match st.folders.get(n) {
            Some(i) => *i,
            None if st.folders.len() >= MAX_FOLDERS => return reply.error(libc::ENOSPC),
            None => {
                let i = FIRST + STRIDE * st.folders.len() as u64;
                st.folders.insert(n.to_string(), i);
                i
            }
        };
        drop(st);
        reply.entry(&DIR_TTL, &attr(ino, 0), 0);
    }

    fn getattr(&mut self, req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if is_dir(ino) {
            reply.attr(&DIR_TTL, &attr(ino, 0))
        } else if is_file(ino) {
            self.queue(ino, Job::Getattr(req.pid(), ino, reply));
        } else {
            reply.error(libc::ENOENT)
        }
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if !is_file(ino) {
            return reply.error(libc::EISDIR);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EACCES);
        }
        self.queue(ino, Job::Open(req.pid(), ino, reply));
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.queue(ino, Job::Read(fh, offset, size, reply));
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.shared.state();
        if let Some((ino, _)) = st.open.remove(&fh) {
            if let Some(n) = st.open_count.get_mut(&folder_of(ino)) {
                *n = n.saturating_sub(1);
            }
        }
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if !is_dir(ino) {
            return reply.error(libc::ENOTDIR);
        }
        // The root lists no guest folders: a name is made when it is looked up.
        let mut entries = vec![
            (ino, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
        ];
        if ino == ROOT {
            entries.push((MEMINFO, FileType::RegularFile, "meminfo"));
        } else {
            for (k, f) in FILES.iter().enumerate() {
                entries.push((ino + 1 + k as u64, FileType::RegularFile, f));
            }
        }
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
