//! Fuzzes `vserverd::config::load_guest` with whole /etc/vservers trees.
//!
//! Property: any tree gives a config or an error, never a panic and never a hang.
//!
//! The input is a text of records, each a header line starting with `@` followed by the file's
//! content up to the next line that starts with `@`:
//!
//! ```text
//! @context
//! 40000
//! @interfaces/00/ip
//! 192.0.2.10/24
//! @+scripts/pre-start
//! #!/bin/sh
//! ```
//!
//! The header is `@`, optional mode characters, then a place:
//! - `+`: the file is executable (0755; hooks and vshelper handlers look at that);
//! - `/`: make a folder, not a file (the content is ignored);
//! - `>`: a symlink whose target is the content's first line; only for `vdir`, `cache`, `run`
//!   and `.defaults/vdirbase` (the loader only reads those links, and a link elsewhere could
//!   point at /dev/zero, a hang that is not the parser's);
//! - the place is either a decimal number N, the file kind `KINDS[N % KINDS.len()]` (the
//!   proptest's list in vserverd/src/config/tests.rs, then more), or a relative path inside
//!   the guest's folder, or under `.defaults/` when its first component is `.defaults`. `.`,
//!   `..` and empty components are dropped.
//!
//! Text before the first header is ignored. The guest is `g` in a fresh config root; a
//! `context` of 40000 is written first so that inputs get past the first check (a record can
//! overwrite it). Each process reuses one temporary folder (under /dev/shm when it exists),
//! emptied for each input.
//!
//! With `VSERVERD_FUZZ_PRINT=1` in the environment each input's outcome is printed (to look at
//! seeds and crashes: `cargo +nightly fuzz run config_tree FILE`).

#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vserverd::config::{load_guest, Roots};

/// The file kinds of `loading_never_panics` in vserverd/src/config/tests.rs, copied.
const PROPTEST_KINDS: &[&str] = &[
    "context", "bcapabilities", "ccapabilities", "cflags", "nflags", "umask", "nice",
    "personality", "fstab", "rlimits/nproc", "ulimits/nofile", "interfaces/00/ip",
    "interfaces/00/mask", "apps/init/style", "apps/init/killseq", "apps/init/environment",
    "sched/fill-rate", "schedule", "spaces/pid", "uts/nodename", "apps/vshelper/sync-timeout",
    "cgroup/cpu.shares", "netns/interfaces/0/host", "sysctl/0/setting", "ionice/class",
];

/// More kinds the loader reads (from the vserverd/src/config modules and docs/config.md).
const MORE_KINDS: &[&str] = &[
    "ncontext", "tag", "name", "flags", "ncapabilities", "badness", "shell", "fstab.remote",
    "fstab.local", "namespace-cleanup-skip", "hostname", "domainname", "ionice/priority",
    "uts/domainname", "uts/machine", "uts/sysname", "rlimits/rss", "rlimits/nofile.soft",
    "rlimits/nproc.hard", "rlimits/as.min", "ulimits/nofile.hard", "ulimits/core",
    "interfaces/dev", "interfaces/prefix", "interfaces/mask", "interfaces/bcast",
    "interfaces/scope", "interfaces/00/dev", "interfaces/00/prefix", "interfaces/00/name",
    "interfaces/00/nodev", "interfaces/00/disabled", "interfaces/00/vlandev",
    "interfaces/00/mac", "interfaces/01/ip", "apps/init/runlevel", "apps/init/runlevel.start",
    "apps/init/runlevel.stop", "apps/init/cmd.start", "apps/init/cmd.stop",
    "apps/init/cmd.prepare", "apps/init/cmd.start-sync", "apps/init/cmd.stop-sync",
    "apps/init/mark", "apps/init/depends", "apps/init/mtab", "apps/init/tty", "apps/init/sync",
    "apps/vshelper/action", "apps/vshelper/restart", "apps/vshelper/disabled",
    "scripts/pre-start", "scripts/post-stop", "scripts/pre-start.d/10-a", "sched/tokens",
    "sched/tokens-min", "sched/tokens-max", "sched/interval", "sched/fill-rate2",
    "sched/interval2", "sched/priority-bias", "sched/idle-time", "sched/cpu-id",
    "sched/bucket-id", "sched/0/fill-rate", "cpuset/name", "cpuset/cpus", "cpuset/mems",
    "cpuset/nocreate", "sysctl/0/value", "cgroup/name", "cgroup/memory.max", "dlimits/0/directory",
    "dlimits/0/space_total", "dlimits/0/inodes_total", "dlimits/0/reserved", "spaces/net",
    "spaces/mnt", "netns/name", "netns/shared", "netns/interfaces/0/guest",
    "netns/interfaces/0/type", "netns/interfaces/0/bridge", "apps/vdevmap/0/create",
    ".defaults/apps/init/environment", ".defaults/apps/init/mtab", ".defaults/cgroup/cpu.shares",
    ".defaults/scripts/pre-start", ".defaults/shell", ".defaults/namespace-cleanup-skip",
    ".defaults/apps/vshelper/action", ".defaults/netns/interfaces/0/type",
];

const LINKS: &[&str] = &["vdir", "cache", "run", ".defaults/vdirbase"];
const GUEST: &str = "g";
const MAX_RECORDS: usize = 64;
const MAX_DEPTH: usize = 6;
const MAX_COMPONENT: usize = 100;

struct Scratch {
    dir: PathBuf,
    roots: Roots,
    print: bool,
}

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(s) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

fn scratch() -> &'static Scratch {
    SCRATCH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            tempfile::Builder::new().prefix("vserverd-fuzz-").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("vserverd-fuzz-").tempdir()
        }
        .expect("a scratch folder");
        // libFuzzer ends with exit(), which runs no destructors: clean up at exit.
        let dir = base.keep();
        unsafe { libc::atexit(remove_scratch) };
        let roots = Roots {
            config_root: dir.join("etc"),
            vdir_base: None,
        };
        let print = std::env::var_os("VSERVERD_FUZZ_PRINT").is_some();
        Scratch { dir, roots, print }
    })
}

/// Splits the input into (header, content) records.
fn records(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    // Starts of lines that begin with '@'.
    let mut starts = Vec::new();
    for i in 0..data.len() {
        if data[i] == b'@' && (i == 0 || data[i - 1] == b'\n') {
            starts.push(i);
            if starts.len() > MAX_RECORDS {
                break;
            }
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate().take(MAX_RECORDS) {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let rec = &data[s + 1..end];
        let (header, content) = match rec.iter().position(|&b| b == b'\n') {
            Some(n) => (&rec[..n], &rec[n + 1..]),
            None => (rec, &rec[rec.len()..]),
        };
        out.push((header, content));
    }
    out
}

/// The path a header names, relative to the config root; None when it names nothing.
fn place(name: &[u8]) -> Option<PathBuf> {
    let name: &[u8] = if !name.is_empty() && name.len() <= 9 && name.iter().all(u8::is_ascii_digit) {
        let n: usize = std::str::from_utf8(name).ok()?.parse().ok()?;
        let all = PROPTEST_KINDS.len() + MORE_KINDS.len();
        let i = n % all;
        let k = if i < PROPTEST_KINDS.len() {
            PROPTEST_KINDS[i]
        } else {
            MORE_KINDS[i - PROPTEST_KINDS.len()]
        };
        k.as_bytes()
    } else {
        name
    };
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b"." && *c != b"..")
        .map(|c| {
            let c = &c[..c.len().min(MAX_COMPONENT)];
            // NUL cannot be in a file name; keep the rest as it is.
            c
        })
        .filter(|c| !c.contains(&0))
        .take(MAX_DEPTH)
        .collect();
    let first = *parts.first()?;
    let mut p = if first == b".defaults" {
        PathBuf::new()
    } else {
        PathBuf::from(GUEST)
    };
    for c in parts {
        p.push(OsStr::from_bytes(c));
    }
    Some(p)
}

fn write(root: &Path, header: &[u8], content: &[u8]) -> std::io::Result<()> {
    let mut h = header;
    let (mut exec, mut folder, mut link) = (false, false, false);
    while let Some((&c, rest)) = h.split_first() {
        match c {
            b'+' => exec = true,
            b'/' if !folder && !link => folder = true,
            b'>' => link = true,
            _ => break,
        }
        h = rest;
    }
    let Some(rel) = place(h) else { return Ok(()) };
    let p = root.join(&rel);
    if folder {
        return std::fs::create_dir_all(&p);
    }
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Whatever was there goes: a file, a link or a whole folder.
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p)?,
        Ok(_) => std::fs::remove_file(&p)?,
        Err(_) => {}
    }
    let rel_s = rel.strip_prefix(GUEST).unwrap_or(&rel);
    if link && LINKS.iter().any(|l| Path::new(l) == rel_s) {
        let line = content.split(|&b| b == b'\n').next().unwrap_or_default();
        if line.is_empty() || line.contains(&0) {
            return Ok(());
        }
        return std::os::unix::fs::symlink(OsStr::from_bytes(line), &p);
    }
    std::fs::write(&p, content)?;
    if exec {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let root = &s.roots.config_root;
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join(".defaults")).expect("config root");
    std::fs::create_dir_all(root.join(GUEST)).expect("guest folder");
    std::fs::write(root.join(GUEST).join("context"), "40000\n").expect("context");
    for (header, content) in records(data) {
        // A record may clash with an earlier one (a file where a folder is): skip it.
        let _ = write(root, header, content);
    }
    let r = load_guest(&s.roots, GUEST);
    if s.print {
        match &r {
            Ok(l) => eprintln!("ok: {:?}\nwarnings: {:#?}", l.config, l.warnings),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    match r {
        Ok(l) => {
            // What the daemon and vserverctl do with a loaded config: the wire form, messages.
            let w = proto::GuestConfig::from(&l.config);
            std::hint::black_box(format!("{w:?}"));
            for d in &l.warnings {
                std::hint::black_box(d.to_string());
            }
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
});
