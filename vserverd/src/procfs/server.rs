//! The FUSE file system: a root directory holding `meminfo`. Each open renders the file for
//! the opening process (FUSE tells us its pid) and keeps that text for the handle, so a reader
//! going through it in several reads sees one consistent snapshot.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};

use super::{meminfo, memory};

const ROOT: u64 = 1;
const MEMINFO: u64 = 2;
const DIR_TTL: Duration = Duration::from_secs(3600);
/// meminfo's size is that of the asker's text, so the kernel must ask on every lookup: reads
/// use direct I/O, but sendfile(2) and splice go through the page cache and stop at i_size
/// (busybox `cat` uses sendfile; a size of 0, as /proc reports, would read as empty).
const FILE_TTL: Duration = Duration::ZERO;

#[derive(Default)]
pub struct ProcFs {
    open: HashMap<u64, Vec<u8>>,
    next: u64,
}

fn attr(ino: u64, size: u64) -> FileAttr {
    let (kind, perm, nlink) = if ino == ROOT {
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

/// The meminfo process `pid` should see.
pub fn meminfo_for(pid: u32) -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    match memory::of_pid(pid) {
        Some(f) => meminfo::render(&host, &f).into_bytes(),
        None => host.into_bytes(),
    }
}

impl Filesystem for ProcFs {
    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == "meminfo" {
            let size = meminfo_for(req.pid()).len() as u64;
            reply.entry(&FILE_TTL, &attr(MEMINFO, size), 0);
        } else {
            reply.error(libc::ENOENT);
        }
    }

    fn getattr(&mut self, req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT => reply.attr(&DIR_TTL, &attr(ROOT, 0)),
            MEMINFO => {
                let size = meminfo_for(req.pid()).len() as u64;
                reply.attr(&FILE_TTL, &attr(MEMINFO, size));
            }
            _ => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if ino != MEMINFO {
            return reply.error(libc::EISDIR);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EACCES);
        }
        self.next += 1;
        self.open.insert(self.next, meminfo_for(req.pid()));
        reply.opened(self.next, fuser::consts::FOPEN_DIRECT_IO);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(text) = self.open.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(0).min(text.len());
        let end = start.saturating_add(size as usize).min(text.len());
        reply.data(&text[start..end]);
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
        self.open.remove(&fh);
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
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (MEMINFO, FileType::RegularFile, "meminfo"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
