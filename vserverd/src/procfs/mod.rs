//! Per-guest /proc files (util-vserver's `virt_mem` flag): a small FUSE file system, served by a
//! process of its own (`vserverd __procfs DIR`), mounted once at RUN_DIR/procfs; a guest with
//! `virt_mem` gets RUN_DIR/procfs/meminfo bound over its /proc/meminfo, and each read shows
//! the reader's own memory cgroup (limit as MemTotal, its usage and cache).
//!
//! Why a process apart from the daemon: a FUSE mount lives exactly as long as its server. Were
//! the daemon the server, its crash or restart would leave every guest's /proc/meminfo
//! answering "Transport endpoint is not connected" until the guest restarts (lxcfs's
//! long-standing trouble; docs/resources.md). The server holds no state (the reader's pid leads to its
//! cgroup), so it outlives any number of daemon restarts; a daemon finds a live one and uses
//! it, or starts one.

mod cpu;
pub mod cpuview;
pub mod diskview;
mod fair;
mod files;
pub mod meminfo;
pub mod memory;
mod server;
pub mod sysinfo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

/// The server's process name (what ps shows).
pub const NAME: &str = "vserverd-procfs";

/// argv[1] of the server process.
pub const ARG: &str = "__procfs";

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// Where the daemon mounts the file system.
pub fn mount_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("procfs")
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.with_extension("pid")
}

/// The server's pid, if its pid file names a live vserverd-procfs process.
pub fn server_pid(run_dir: &Path) -> Option<i32> {
    crate::detached::pid_of(NAME, &mount_dir(run_dir))
}

/// The server's name in the mount table, which carries its protocol version
/// (crate::detached::PROTOCOL): `vserverd-procfs-vN`; servers from before versions (and a
/// test's server started as one, protocol 0) are plain `vserverd-procfs`.
fn source_name(protocol: u32) -> String {
    match protocol {
        0 => NAME.to_string(),
        p => format!("{NAME}-v{p}"),
    }
}

/// The protocol of a server named `source` in the mount table: None for one from before
/// versions.
pub fn parse_source(source: &str) -> Option<u32> {
    source.strip_prefix(NAME)?.strip_prefix("-v")?.parse().ok()
}

/// The source of the topmost mount at `dir` in a mountinfo text.
pub fn source_at(mountinfo: &str, dir: &Path) -> Option<String> {
    let dir = dir.to_str()?;
    mountinfo.lines().rev().find_map(|l| {
        let (head, tail) = l.split_once(" - ")?;
        let at = head.split(' ').nth(4)?;
        let source = tail.split(' ').nth(1)?;
        // mountinfo escapes space, tab, newline and backslash as octal.
        (at == dir.replace(' ', "\\040")).then(|| source.to_string())
    })
}

/// Whether a live server answers at `dir`.
fn serving(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type().0 == FUSE_SUPER_MAGIC)
        && std::fs::metadata(dir.join("meminfo")).is_ok()
}

/// The host path of the meminfo every `virt_mem` guest binds, starting the server if none
/// serves. Blocking (it may wait for the server's mount): call it off the async runtime.
pub fn ensure(run_dir: &Path) -> Result<PathBuf, String> {
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = mount_dir(run_dir);
    if serving(&dir) {
        ensure_holder(&dir);
        return Ok(dir.join("meminfo"));
    }
    // A mount whose server died answers ENOTCONN: take it away before mounting again. Guests
    // started on it keep the dead view until they restart.
    if nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        tracing::warn!(
            "the /proc file server at {} had died; starting a new one",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::detached::start(NAME, ARG, &dir, "/proc file server")?;
    if !serving(&dir) {
        return Err(format!(
            "the /proc file server does not answer at {}",
            dir.display()
        ));
    }
    tracing::info!("serving per-guest /proc files at {}", dir.display());
    ensure_holder(&dir);
    Ok(dir.join("meminfo"))
}

/// The holder of the sysinfo listeners (procfs/sysinfo.rs), started if none runs. A holder
/// that died took its copies with it: the server still holds every listener, and the new
/// holder gets those sent from then on.
fn ensure_holder(dir: &Path) {
    let base = sysinfo::hold_base(dir);
    if crate::detached::pid_of(sysinfo::HOLD_NAME, &base).is_some() {
        return;
    }
    if let Err(e) = crate::detached::start(
        sysinfo::HOLD_NAME,
        sysinfo::HOLD_ARG,
        &base,
        "sysinfo listener holder",
    ) {
        tracing::warn!("{e}: guests' sysinfo(2) depends on the /proc server alone");
    }
}

/// `vserverd __procfs DIR`: mounts the file system on DIR, then forks; the parent exits 0 once
/// the mount is in place (so the caller may use it at once), the child serves in a session of
/// its own until the file system is unmounted.
pub fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(2).map(PathBuf::from) else {
        eprintln!("usage: vserverd {ARG} DIR");
        return ExitCode::from(2);
    };
    // One sysinfo listener per virt_mem guest process tree: more than a unit's 1024.
    crate::sys::process::raise_nofile();
    use fuser::MountOption as O;
    let opts = [
        O::FSName(source_name(crate::detached::protocol())),
        O::AllowOther,
        O::RO,
        O::NoExec,
        O::NoSuid,
        O::NoDev,
    ];
    let shared = std::sync::Arc::new(server::Shared::default());
    let fs = server::ProcFs::new(shared.clone());
    let mut session = match fuser::Session::new(fs, &dir, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mounting {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    // The daemon checks the name behind the pid file.
    crate::detached::serve(c"vserverd-procfs", &pid_file(&dir), || {
        // Threads only now: the fork in `serve` keeps the calling thread alone.
        server::start_workers(&shared);
        let (d, sh) = (dir.clone(), shared.clone());
        let _ = std::thread::Builder::new()
            .name("sysinfo".into())
            .spawn(move || sysinfo::serve(&d, |cgroup| server::loads(&sh, cgroup)));
        let _ = session.run();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_table_names_the_servers_protocol() {
        let mi = "36 25 0:31 / /run/vserverd/procfs rw,nosuid - fuse vserverd-procfs ro\n\
                  37 36 0:32 / /run/vserverd/procfs rw,nosuid - fuse vserverd-procfs-v1 ro\n\
                  38 25 0:33 / /run/other rw - fuse vserverd-procfs-v7 ro\n";
        let dir = Path::new("/run/vserverd/procfs");
        assert_eq!(
            source_at(mi, dir).as_deref(),
            Some("vserverd-procfs-v1"),
            "the top one"
        );
        assert_eq!(parse_source("vserverd-procfs-v1"), Some(1));
        assert_eq!(
            parse_source("vserverd-procfs"),
            None,
            "from before versions"
        );
        assert_eq!(parse_source(&source_name(0)), None);
        assert_eq!(parse_source(&source_name(3)), Some(3));
        assert_eq!(source_at(mi, Path::new("/run/none")), None);
    }
}
