//! Every raw system call vserverd makes, in one place: thin wrappers that return
//! `std::io::Result` (the errno kept), so the workflow code (stage/, isolate/, guest/) holds no
//! `libc::syscall` and, but for the few operations listed in [`UNSAFE_ALLOWED`], no `unsafe`.
//!
//! Where rustix has a safe call (pidfd_open, open_tree, move_mount, pipes, memfds, fcntl,
//! umask, flock, setns) the wrapper uses it; libc only for what rustix lacks or cannot express
//! (clone3 into a cgroup, close_range, mount_setattr, arbitrary signal numbers).
//!
//! The stage's PID 1 and the reaper call these between clone or fork and exec: every wrapper
//! is async-signal-safe — no allocation, no locks, errno read straight after the call — except
//! [`process::spawn`] and [`fd::async_fd`], which only the multi-threaded daemon uses.
//!
//! Adding one: a function in the file of its area, documented, its `unsafe` block with a
//! `// SAFETY:` comment; an operation the caller must vouch for (fork, closing fds it may not
//! own) is an `unsafe fn` with a `# Safety` section.

pub mod bpf;
pub mod fd;
pub mod fs;
pub mod notify;
pub mod ns;
pub mod process;
pub mod quota;
pub mod sockdiag;

/// Files outside sys/ that may hold `unsafe`, and why: what only the caller can vouch for.
/// The test below fails on an `unsafe` anywhere else (and on a stale entry here).
pub const UNSAFE_ALLOWED: &[(&str, &str)] = &[
    (
        "main.rs",
        "OwnedFd::from_raw_fd(3): systemd's socket-activation fd, which nothing else owns",
    ),
    (
        "stage/mod.rs",
        "the stage's fds 3-5 from the daemon (from_raw_fd), closing every other inherited fd, \
         and clone: fork-like calls sound only because the stage is single-threaded",
    ),
    (
        "stage/userns.rs",
        "clone and fork of the helpers that make a user-namespace guest's namespaces and \
         mounts, sound because the stage (and the helper) is single-threaded",
    ),
    (
        "stage/reaper.rs",
        "fork in the reaper, sound because it is single-threaded",
    ),
    (
        "detached.rs",
        "fork of a helper, sound because the helper is single-threaded when it forks",
    ),
    (
        "console/keeper.rs",
        "OwnedFd::from_raw_fd of fds just received with SCM_RIGHTS, owned by nothing else",
    ),
    (
        "procfs/sysinfo.rs",
        "OwnedFd::from_raw_fd of sysinfo listeners just received with SCM_RIGHTS, owned by \
         nothing else",
    ),
    (
        "isolate/process.rs",
        "utmpx records: a zeroed plain-data struct and its bytes (not a syscall)",
    ),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The code of a line, without a trailing `//` comment (close enough for this crate: no
    /// string literal here holds `//` before an `unsafe`).
    fn code(line: &str) -> &str {
        line.split("//").next().unwrap_or("")
    }

    /// The code of a line without its string literals (an error code may be named
    /// "tree-unsafe").
    fn without_strings(line: &str) -> String {
        let mut out = String::new();
        let mut in_str = false;
        let mut escaped = false;
        for c in line.chars() {
            match (in_str, c) {
                (true, _) if escaped => escaped = false,
                (true, '\\') => escaped = true,
                (_, '"') => in_str = !in_str,
                (false, c) => out.push(c),
                (true, _) => {}
            }
        }
        out
    }

    fn has_unsafe(line: &str) -> bool {
        without_strings(code(line))
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "unsafe")
    }

    /// The rule of this module, enforced: `libc::syscall(` only under sys/, and `unsafe` only
    /// there or in a file of [`super::UNSAFE_ALLOWED`].
    #[test]
    fn raw_syscalls_and_unsafe_stay_fenced() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut bad = Vec::new();
        let mut used = std::collections::HashSet::new();
        let raw = concat!("libc::", "syscall(");
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("sys/") {
                continue;
            }
            let allowed = super::UNSAFE_ALLOWED.iter().any(|(p, _)| *p == rel);
            for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
                if code(line).contains(raw) {
                    bad.push(format!("{rel}:{}: a raw syscall outside sys/", n + 1));
                }
                if has_unsafe(line) {
                    if allowed {
                        used.insert(rel.clone());
                    } else {
                        bad.push(format!(
                            "{rel}:{}: unsafe outside sys/ and its allowlist",
                            n + 1
                        ));
                    }
                }
            }
        }
        for (p, _) in super::UNSAFE_ALLOWED {
            if !used.contains(*p) {
                bad.push(format!("{p}: on the allowlist but has no unsafe left"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
