//! The harness every integration test uses: a daemon on temporary roots with guaranteed
//! teardown, guest builders, raw varlink helpers and prerequisite checks.
//!
//! Tests that need root or a kernel feature call [`require`]: under `CI=true` a missing
//! prerequisite fails the test; elsewhere it is skipped with the reason printed.

pub mod bins;
pub mod daemon;
pub mod guest;
pub mod loopfs;
pub mod varlink;
pub mod vm;

pub use daemon::TestDaemon;
pub use guest::GuestBuilder;

/// Whether this run is CI's (prerequisites must be there).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a prerequisite. Returns false (the caller returns early) when it is missing outside
/// CI; panics when it is missing under CI.
#[must_use]
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing under CI=true: {what}");
    }
    eprintln!("SKIPPED: prerequisite missing: {what} (set up with scripts/setup.sh)");
    record_skip(what);
    false
}

/// Where skips are listed, so that scripts/test.sh prints them in its summary: a test that
/// ran nothing must not pass silently as "ok".
pub fn skip_log() -> std::path::PathBuf {
    bins::target_dir().join("test-skips.log")
}

fn record_skip(what: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let binary = exe
        .rsplit_once('-')
        .map_or(exe.as_str(), |(b, _)| b)
        .to_string();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
    {
        let _ = writeln!(f, "{binary}::{test}: {what}");
    }
}

/// The prerequisites of every test that starts busybox guests: root and busybox-static.
#[must_use]
pub fn require_busybox_guests() -> bool {
    require(is_root(), "root")
        && require(guest::busybox_available(), "busybox-static (/bin/busybox)")
}

/// The page size (rlimits count some limits in pages).
pub fn page_size() -> u64 {
    // SAFETY: sysconf with a valid name has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// Whether we run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
