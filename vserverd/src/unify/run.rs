//! One unify run: walk, hash, share. Blocking; the daemon runs it on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::fs::FileType;

use super::exclude::Rules;
use super::link;
use super::plan::{self, Group, Inode, Known};
use super::store::{Entry, Store};
use super::walk::{self, Seen};
use crate::sys::fs::{self as sysfs, DedupeStatus};

/// The largest range one dedupe call shares (the kernel's own cap on btrfs and XFS).
const CHUNK: u64 = 16 << 20;
/// Threads that walk, read and hash, and share. Each spends most of its time waiting: on the
/// disk (directory and inode blocks, file data; a disk or a loop device's backing file
/// serves several reads at once) or, sharing, on the file system's journal, which commits
/// many threads' remaps together. xxh3 itself is far faster than any disk.
const THREADS: usize = 8;

pub struct GuestRoot {
    pub name: String,
    pub vdir: PathBuf,
    pub rules: Rules,
}

/// How a run shares: see [`mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Blocks shared through the dedupe ioctl (XFS with reflinks, btrfs, bcachefs).
    Reflink,
    /// Files hard-linked and marked as copy-on-write links (ext4 on a kernel with
    /// kernel-patch/'s CONFIG_COWLINK): stopped guests only.
    Link,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reflink => "reflink",
            Mode::Link => "hardlink",
        }
    }
}

pub struct Request {
    pub guests: Vec<GuestRoot>,
    pub mode: Mode,
    /// Hard-link mode: link files whose mtimes differ (vhashify's --ignore-mtime).
    pub ignore_mtime: bool,
    pub dry_run: bool,
    pub store: PathBuf,
    /// Every guest that exists (the store forgets the others).
    pub alive: Vec<String>,
}

/// Reports a step and a message; called from several threads.
pub type Report<'a> = &'a (dyn Fn(&str, String) + Sync);

/// Why a run stopped before the end.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The words for a file system without reflinks.
pub fn no_reflinks(fs: &str, vdir: &Path) -> String {
    format!(
        "{}: {fs} cannot share blocks between files (no reflinks), and this kernel has no \
         copy-on-write links (kernel-patch/, CONFIG_COWLINK), so there is nothing to unify \
         safely: plain hard links would let a guest's write change every guest's copy. Put \
         the guests on XFS made with reflink=1 (mkfs.xfs's default since xfsprogs 5.1) or on \
         btrfs and unify there (running guests too), or boot a kernel with vserverd's \
         kernel-patch/ series, where unify hard-links the files of stopped guests on ext4; \
         `vserverctl du` shows what is shared",
        vdir.display()
    )
}

/// How guests on these roots can be unified: reflinks where every root's file system has
/// them; hard links where every root is on ext4 and `cowlink` (the kernel breaks
/// copy-on-write links; asked only then); else refused, saying why.
pub fn mode(vdirs: &[(String, PathBuf)], cowlink: &dyn Fn() -> bool) -> Result<Mode, Refused> {
    let (mut reflink, mut ext4) = (None, None);
    for (name, vdir) in vdirs {
        let fd = walk::open_root(vdir)
            .map_err(|e| Refused(format!("{name}: {}: {e}", vdir.display())))?;
        let t =
            sysfs::fs_type(&fd).map_err(|e| Refused(format!("{}: statfs: {e}", vdir.display())))?;
        if fs_name(t).is_some() {
            reflink.get_or_insert(vdir);
        } else if t == sysfs::EXT4_SUPER_MAGIC {
            ext4.get_or_insert(vdir);
        } else {
            return Err(Refused(no_reflinks(
                &format!("this file system (type {t:#x})"),
                vdir,
            )));
        }
    }
    match (reflink, ext4) {
        (Some(a), Some(b)) => Err(Refused(format!(
            "{} is on a file system with reflinks and {} on ext4: they cannot share files; \
             unify the guests of each kind of file system in a run of their own",
            a.display(),
            b.display()
        ))),
        (_, Some(b)) if !cowlink() => Err(Refused(no_reflinks("ext4", b))),
        (_, Some(_)) => Ok(Mode::Link),
        _ => Ok(Mode::Reflink),
    }
}

fn fs_name(t: i64) -> Option<&'static str> {
    match t {
        sysfs::XFS_SUPER_MAGIC => Some("XFS"),
        sysfs::BTRFS_SUPER_MAGIC => Some("btrfs"),
        sysfs::BCACHEFS_SUPER_MAGIC => Some("bcachefs"),
        _ => None,
    }
}

/// Opens every guest root and refuses a file system that cannot share files in the run's
/// mode.
fn open_roots(req: &Request) -> Result<Vec<OwnedFd>, Refused> {
    let mut out = Vec::new();
    for g in &req.guests {
        let fd = walk::open_root(&g.vdir)
            .map_err(|e| Refused(format!("{}: {}: {e}", g.name, g.vdir.display())))?;
        let t = sysfs::fs_type(&fd)
            .map_err(|e| Refused(format!("{}: statfs: {e}", g.vdir.display())))?;
        let fits = match req.mode {
            Mode::Reflink => fs_name(t).is_some(),
            Mode::Link => t == sysfs::EXT4_SUPER_MAGIC,
        };
        if !fits {
            let fs = if t == sysfs::EXT4_SUPER_MAGIC {
                "ext4".to_string()
            } else {
                format!("this file system (type {t:#x})")
            };
            return Err(Refused(no_reflinks(&fs, &g.vdir)));
        }
        out.push(fd);
    }
    Ok(out)
}

/// Opens an inode the walk saw, again beneath its guest root, and checks it is the same
/// regular file, unchanged.
fn reopen(roots: &[OwnedFd], i: &Inode) -> Result<OwnedFd, String> {
    let fd = sysfs::open_beneath(roots[i.guest as usize].as_fd(), &i.rel, false)
        .map_err(|e| format!("open: {e}"))?;
    let st = sysfs::fstat(&fd).map_err(|e| format!("fstat: {e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_dev != i.dev
        || st.st_ino != i.ino
        || st.st_size as u64 != i.size
        || walk::ns(st.st_mtime, st.st_mtime_nsec as u64) != i.mtime_ns
        || walk::ns(st.st_ctime, st.st_ctime_nsec as u64) != i.ctime_ns
    {
        return Err("changed since the walk".into());
    }
    Ok(fd)
}

/// xxh3-128 of the whole file; None when it changed while being read.
fn hash(fd: &OwnedFd, i: &Inode, buf: &mut [u8]) -> Result<Option<u128>, String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if i.size > 256 << 10 {
        // Read ahead further: the whole file is read once, start to end.
        let _ = rustix::fs::fadvise(fd, 0, None, rustix::fs::Advice::Sequential);
    }
    let mut total = 0u64;
    loop {
        let n = match rustix::io::read(fd, &mut *buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    let st = sysfs::fstat(fd).map_err(|e| format!("fstat: {e}"))?;
    let same = total == i.size
        && walk::ns(st.st_mtime, st.st_mtime_nsec as u64) == i.mtime_ns
        && walk::ns(st.st_ctime, st.st_ctime_nsec as u64) == i.ctime_ns;
    Ok(same.then(|| h.digest128()))
}

fn rel_of(req: &Request, i: &Inode) -> String {
    format!("{}:/{}", req.guests[i.guest as usize].name, i.rel.display())
}

struct Errors(Mutex<Vec<String>>);

impl Errors {
    fn push(&self, m: String) {
        let mut v = self.0.lock().expect("not poisoned");
        if v.len() < 50 {
            v.push(m);
        }
    }
}

/// Calls `report` at most every half second.
struct Throttle(Mutex<Instant>);

impl Throttle {
    fn new() -> Self {
        Throttle(Mutex::new(Instant::now() - Duration::from_secs(1)))
    }
    fn due(&self) -> bool {
        let mut t = self.0.lock().expect("not poisoned");
        if t.elapsed() >= Duration::from_millis(500) {
            *t = Instant::now();
            true
        } else {
            false
        }
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn run(req: &Request, report: Report<'_>) -> Result<proto::UnifyReport, Refused> {
    let t0 = Instant::now();
    let roots = open_roots(req)?;
    let errors = Errors(Mutex::new(Vec::new()));
    let mut store = Store::load(&req.store);
    let guests_before = store.guests.len();
    let gidx: Vec<u16> = req
        .guests
        .iter()
        .map(|g| store.guest_index(&g.name))
        .collect();

    let (mut seen, mut excluded) = walk_all(req, &roots, &errors, report);
    if req.mode == Mode::Link {
        // Temporary names an interrupted run left (a second name of a marked inode). Removing
        // one changes its inode's ctime, which the walk recorded: walk again after removing.
        let mut removed = 0;
        seen.retain(|s| {
            let root = &roots[s.guest as usize];
            if !link::leftover(root, &s.rel, s.nlink) {
                return true;
            }
            if !req.dry_run {
                match link::remove(root, &s.rel) {
                    Ok(()) => removed += 1,
                    Err(e) => errors.push(format!(
                        "{}:/{}: removing: {e}",
                        req.guests[s.guest as usize].name,
                        s.rel.display()
                    )),
                }
            }
            false
        });
        if removed > 0 {
            report(
                "walk",
                format!("{removed} temporary names of an interrupted run removed: walking again"),
            );
            (seen, excluded) = walk_all(req, &roots, &errors, report);
        }
    }
    let files = seen.len() as u64;
    // The smallest file worth sharing. XFS gives every file of a byte or more a whole block,
    // and the kernel shares a last partial block when both files end there: every file
    // counts (most of a Debian tree's files are under a block). btrfs keeps small files
    // inline in its metadata, with no block to share: from one block up there.
    // Hard links save an inode and its blocks whatever the size.
    let min_size = match roots.first().map(sysfs::fs_type) {
        _ if req.mode == Mode::Link => 1,
        Some(Ok(sysfs::XFS_SUPER_MAGIC)) => 1,
        _ => roots
            .first()
            .and_then(|r| rustix::fs::fstatfs(r).ok())
            .map_or(4096, |s| s.f_bsize as u64),
    };
    let t_walk = t0.elapsed();
    let extra = match req.mode {
        Mode::Link => plan::other_paths(&seen),
        Mode::Reflink => HashMap::new(),
    };
    let inodes = plan::collapse(seen);
    let cands = plan::candidates(&inodes, min_size);

    // Hash what the store does not know.
    let mut known: HashMap<usize, Known> = HashMap::new();
    let mut to_hash = Vec::new();
    for &k in &cands {
        let i = &inodes[k];
        match store.fresh(i.dev, i.ino, i.size, i.mtime_ns, i.ctime_ns) {
            Some(e) => {
                known.insert(
                    k,
                    Known {
                        hash: e.hash,
                        set: e.set,
                    },
                );
            }
            None => to_hash.push(k),
        }
    }
    let cached = known.len() as u64;
    let total_bytes: u64 = to_hash.iter().map(|&k| inodes[k].size).sum();
    report(
        "hash",
        format!(
            "{} candidates: {} known from earlier runs, {} to read ({})",
            cands.len(),
            cached,
            to_hash.len(),
            mib(total_bytes)
        ),
    );
    let hashed: Mutex<Vec<(usize, u128)>> = Mutex::new(Vec::with_capacity(to_hash.len()));
    let done_files = AtomicU64::new(0);
    let done_bytes = AtomicU64::new(0);
    let changed = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let throttle = Throttle::new();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                let mut mine = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&k) = to_hash.get(n) else { break };
                    let i = &inodes[k];
                    match reopen(&roots, i).and_then(|fd| hash(&fd, i, &mut buf)) {
                        Ok(Some(h)) => mine.push((k, h)),
                        Ok(None) => {
                            changed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.starts_with("changed") => {
                            changed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.push(format!("{}: {e}", rel_of(req, i))),
                    }
                    let f = done_files.fetch_add(1, Ordering::Relaxed) + 1;
                    let b = done_bytes.fetch_add(i.size, Ordering::Relaxed) + i.size;
                    if throttle.due() {
                        report(
                            "hash",
                            format!(
                                "{f}/{} files, {} of {}",
                                to_hash.len(),
                                mib(b),
                                mib(total_bytes)
                            ),
                        );
                    }
                }
                hashed.lock().expect("not poisoned").extend(mine);
            });
        }
    });
    let hashed = hashed.into_inner().expect("not poisoned");
    let hashed_files = hashed.len() as u64;
    let hashed_bytes: u64 = hashed.iter().map(|&(k, _)| inodes[k].size).sum();
    for (k, h) in hashed {
        let i = &inodes[k];
        known.insert(
            k,
            Known {
                hash: h,
                set: (0, 0),
            },
        );
        store.entries.insert(
            i.id(),
            Entry {
                size: i.size,
                mtime_ns: i.mtime_ns,
                ctime_ns: i.ctime_ns,
                hash: h,
                set: (0, 0),
                guest: gidx[i.guest as usize],
            },
        );
    }
    let seen_ids: HashSet<(u64, u64)> = inodes.iter().map(Inode::id).collect();
    let pruned = store.prune(&gidx, &seen_ids, &req.alive);
    // Saved before sharing: a crash from here on loses no hashing work. Unchanged, it is not
    // written (a run with nothing new costs the walk and little else).
    let new_guest = store.guests.len() > guests_before;
    if hashed_files > 0 || pruned > 0 || new_guest {
        if let Err(e) = store.save(&req.store) {
            errors.push(format!("{}: {e}", req.store.display()));
        }
    }
    crate::fault::point("unify.hashed").map_err(|e| Refused(e.to_string()))?;

    let t_hash = t0.elapsed();
    let mut other_project: Vec<String> = Vec::new();
    let (groups, already) = match req.mode {
        Mode::Reflink => plan::groups(&inodes, &known),
        Mode::Link => {
            // A guest with a disk limit on ext4 has its tree under its project id (its root's).
            let projects: Vec<u32> = roots
                .iter()
                .map(|r| crate::sys::quota::fsx_get(r).map_or(0, |x| x.projid))
                .collect();
            let p = plan::link_groups(&inodes, &known, req.ignore_mtime, &projects);
            for &k in &p.other_project {
                other_project.push(format!(
                    "{}: identical files only under another project id (ext4 project quotas: \
                     a link would move the file onto another guest's disk limit, and the \
                     kernel refuses links across projects)",
                    rel_of(req, &inodes[k])
                ));
            }
            (p.groups, p.already)
        }
    };
    let mut rep = proto::UnifyReport {
        dry_run: req.dry_run,
        guests: req.guests.iter().map(|g| g.name.clone()).collect(),
        excludes: req
            .guests
            .iter()
            .map(|g| format!("{}: {}", g.name, g.rules.source))
            .collect(),
        files,
        inodes: inodes.len() as u64,
        excluded,
        candidates: cands.len() as u64,
        hashed_files,
        hashed_bytes,
        cached_files: cached,
        groups: groups.len() as u64,
        unified_files: 0,
        unified_bytes: 0,
        already_shared_files: already,
        changed_files: 0,
        errors: Vec::new(),
        seconds: 0.0,
        mode: Some(req.mode.as_str().into()),
        left_alone_files: other_project.len() as u64,
        left_alone: other_project,
    };
    if req.dry_run {
        rep.unified_files = groups.iter().map(|g| g.dests.len() as u64).sum();
        rep.unified_bytes = groups
            .iter()
            .map(|g| g.dests.len() as u64 * inodes[g.source].size)
            .sum();
    } else if req.mode == Mode::Link {
        let l = link_all(req, &roots, &inodes, &extra, &groups, &errors, report);
        for (k, ctime) in l.sources {
            let i = &inodes[k];
            if let Some(e) = store.entries.get_mut(&i.id()) {
                e.ctime_ns = ctime;
            }
        }
        if l.files > 0 {
            report("save", format!("{}", req.store.display()));
            if let Err(e) = store.save(&req.store) {
                errors.push(format!("{}: {e}", req.store.display()));
            }
        }
        changed.fetch_add(l.changed, Ordering::Relaxed);
        rep.unified_files = l.files;
        rep.unified_bytes = l.bytes;
        rep.left_alone_files += l.left_alone.len() as u64;
        rep.left_alone.extend(l.left_alone);
    } else {
        let total: usize = groups.iter().map(|g| g.dests.len()).sum();
        report(
            "share",
            format!("{} groups, {total} files to share", groups.len()),
        );
        // (inode, the set it is now in) of every file shared, for the store.
        type Id = (u64, u64);
        let shared: Mutex<Vec<(Id, Id)>> = Mutex::new(Vec::new());
        let files_done = AtomicU64::new(0);
        let bytes_done = AtomicU64::new(0);
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(g) = groups.get(n) else { break };
                        match share(req, &roots, &inodes, g, &errors) {
                            Ok(o) => {
                                changed.fetch_add(o.changed, Ordering::Relaxed);
                                bytes_done.fetch_add(o.bytes, Ordering::Relaxed);
                                files_done.fetch_add(o.done.len() as u64, Ordering::Relaxed);
                                mine.push((inodes[g.source].id(), g.set));
                                mine.extend(o.done.into_iter().map(|k| (inodes[k].id(), g.set)));
                            }
                            Err(e) => {
                                *fatal.lock().expect("not poisoned") = Some(e);
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        if n == 0 {
                            // After the first group's blocks are shared (the crash matrix).
                            if let Err(e) = crate::fault::point("unify.share") {
                                errors.push(e.to_string());
                            }
                        }
                        if throttle.due() {
                            report(
                                "share",
                                format!(
                                    "{}/{total} files shared, {}",
                                    files_done.load(Ordering::Relaxed),
                                    mib(bytes_done.load(Ordering::Relaxed))
                                ),
                            );
                        }
                    }
                    shared.lock().expect("not poisoned").extend(mine);
                });
            }
        });
        let mut dirty = false;
        for (id, set) in shared.into_inner().expect("not poisoned") {
            if let Some(e) = store.entries.get_mut(&id) {
                dirty |= e.set != set;
                e.set = set;
            }
        }
        if dirty {
            report("save", format!("{}", req.store.display()));
            if let Err(e) = store.save(&req.store) {
                errors.push(format!("{}: {e}", req.store.display()));
            }
        }
        if let Some(e) = fatal.into_inner().expect("not poisoned") {
            return Err(Refused(e));
        }
        rep.unified_files = files_done.load(Ordering::Relaxed);
        rep.unified_bytes = bytes_done.load(Ordering::Relaxed);
    }
    rep.left_alone.truncate(50);
    rep.changed_files = changed.load(Ordering::Relaxed);
    rep.errors = errors.0.into_inner().expect("not poisoned");
    rep.seconds = t0.elapsed().as_secs_f64();
    // Where the time went, for the benchmark (docs/unify.md).
    tracing::info!(
        "unify: phases: walk {:.2} s, hash {:.2} s ({} files), share {:.2} s ({} groups)",
        t_walk.as_secs_f64(),
        (t_hash - t_walk).as_secs_f64(),
        hashed_files,
        rep.seconds - t_hash.as_secs_f64(),
        rep.groups
    );
    Ok(rep)
}

struct Shared {
    /// Destinations now wholly on the source's blocks.
    done: Vec<usize>,
    bytes: u64,
    changed: u64,
}

/// Shares one group's destinations onto its source, 16 MiB and ≤127 files a call.
fn share(
    req: &Request,
    roots: &[OwnedFd],
    inodes: &[Inode],
    g: &Group,
    errors: &Errors,
) -> Result<Shared, String> {
    let src_i = &inodes[g.source];
    let mut out = Shared {
        done: Vec::new(),
        bytes: 0,
        changed: 0,
    };
    let src = match reopen(roots, src_i) {
        Ok(fd) => fd,
        Err(e) => {
            if !e.starts_with("changed") {
                errors.push(format!("{}: {e}", rel_of(req, src_i)));
            }
            out.changed += 1;
            return Ok(out);
        }
    };
    let mut open: Vec<(usize, OwnedFd)> = Vec::new();
    for &k in &g.dests {
        match reopen(roots, &inodes[k]) {
            Ok(fd) => open.push((k, fd)),
            Err(e) if e.starts_with("changed") => out.changed += 1,
            Err(e) => errors.push(format!("{}: {e}", rel_of(req, &inodes[k]))),
        }
    }
    for batch in open.chunks(sysfs::DEDUPE_MAX_DESTS) {
        // Destinations still matching; a file that differs or fails drops out.
        let mut live: Vec<usize> = (0..batch.len()).collect();
        let mut bytes = vec![0u64; batch.len()];
        let mut off = 0u64;
        while off < src_i.size && !live.is_empty() {
            let len = CHUNK.min(src_i.size - off);
            let fds: Vec<BorrowedFd<'_>> = live.iter().map(|&j| batch[j].1.as_fd()).collect();
            let st = match sysfs::dedupe(&src, off, len, &fds) {
                Ok(st) => st,
                Err(e) => {
                    return match e.raw_os_error() {
                        Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) => Err(no_reflinks(
                            "this file system",
                            &req.guests[src_i.guest as usize].vdir,
                        )),
                        _ => {
                            errors.push(format!("{}: dedupe: {e}", rel_of(req, src_i)));
                            Ok(out)
                        }
                    };
                }
            };
            let mut still = Vec::with_capacity(live.len());
            for (&j, s) in live.iter().zip(st) {
                let k = batch[j].0;
                match s {
                    DedupeStatus::Same(n) if n == len => {
                        bytes[j] += n;
                        still.push(j);
                    }
                    DedupeStatus::Same(n) => {
                        // The kernel shared less than asked: keep what it did, try the rest
                        // another run.
                        bytes[j] += n;
                        out.changed += 1;
                    }
                    DedupeStatus::Differs => out.changed += 1,
                    DedupeStatus::Error(e) => errors.push(format!(
                        "{}: dedupe: {}",
                        rel_of(req, &inodes[k]),
                        std::io::Error::from_raw_os_error(e)
                    )),
                }
            }
            live = still;
            off += len;
        }
        out.bytes += bytes.iter().sum::<u64>();
        out.done.extend(live.into_iter().map(|j| batch[j].0));
    }
    Ok(out)
}

/// What hard-linking all groups did.
struct LinkedAll {
    files: u64,
    bytes: u64,
    changed: u64,
    left_alone: Vec<String>,
    /// Sources marked and linked, with their ctime now.
    sources: Vec<(usize, i128)>,
}

/// Hard-link mode's share step: groups in [`THREADS`] threads (each link and rename is a
/// journal update; the journal commits many threads' at once).
fn link_all(
    req: &Request,
    roots: &[OwnedFd],
    inodes: &[Inode],
    extra: &HashMap<(u64, u64), Vec<(u16, PathBuf)>>,
    groups: &[Group],
    errors: &Errors,
    report: Report<'_>,
) -> LinkedAll {
    let total: usize = groups.iter().map(|g| g.dests.len()).sum();
    report(
        "share",
        format!("{} groups, {total} files to hard-link", groups.len()),
    );
    let out = Mutex::new(LinkedAll {
        files: 0,
        bytes: 0,
        changed: 0,
        left_alone: Vec::new(),
        sources: Vec::new(),
    });
    let next = AtomicUsize::new(0);
    let throttle = Throttle::new();
    let at = |g: u16, rel: &Path| format!("{}:/{}", req.guests[g as usize].name, rel.display());
    let reopen_i = |i: &Inode| reopen(roots, i);
    let err = |m: String| errors.push(m);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut buf = vec![0u8; 512 << 10];
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(g) = groups.get(n) else { break };
                    let l =
                        link::link_group(roots, inodes, extra, g, &reopen_i, &at, &err, &mut buf);
                    let mut o = out.lock().expect("not poisoned");
                    o.files += l.done.len() as u64;
                    o.bytes += l.bytes;
                    o.changed += l.changed;
                    o.left_alone.extend(l.left_alone);
                    if let Some(c) = l.source_ctime {
                        o.sources.push((g.source, c));
                    }
                    let files = o.files;
                    drop(o);
                    if throttle.due() {
                        report("share", format!("{files}/{total} files hard-linked"));
                    }
                }
            });
        }
    });
    out.into_inner().expect("not poisoned")
}

/// Walks every guest, a guest per thread at a time: the files seen and the entries excluded.
fn walk_all(
    req: &Request,
    roots: &[OwnedFd],
    errors: &Errors,
    report: Report<'_>,
) -> (Vec<Seen>, u64) {
    report("walk", format!("walking {} guests", req.guests.len()));
    let seen: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
    let excluded = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS.min(req.guests.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(g) = req.guests.get(k) else { break };
                let mut mine = Vec::new();
                match walk::walk(k as u16, &roots[k], &g.rules, &mut |f| mine.push(f)) {
                    Ok(c) => {
                        excluded.fetch_add(c.excluded, Ordering::Relaxed);
                        for e in c.errors {
                            errors.push(format!("{}:{e}", g.name));
                        }
                    }
                    Err(e) => errors.push(format!("{}: {e}", g.name)),
                }
                report("walk", format!("{}: {} files", g.name, mine.len()));
                seen.lock().expect("not poisoned").extend(mine);
            });
        }
    });
    (
        seen.into_inner().expect("not poisoned"),
        excluded.into_inner(),
    )
}
