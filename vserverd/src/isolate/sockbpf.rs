//! Loading a shared-stack guest's socket programs (bpf/progs.rs) and linking them to its
//! cgroup in the unified (v2) hierarchy, the only one cgroup BPF attaches to.
//!
//! Each program is attached through a bpf_link, pinned at BPFFS/NAME/HOOK in a bpffs the
//! daemon mounts at RUN_DIR/bpf (mode 0700, outside every guest's root). A link cannot be
//! detached through the cgroup (BPF_PROG_DETACH finds no program it may remove), only through
//! the link itself, which a guest cannot reach: it would need the pin (not in its mount
//! namespace) or the link's id and CAP_SYS_ADMIN. The pins keep the programs attached when
//! the daemon dies; a restarted daemon finds them there, and stop removes them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bpf::progs::{self, Hook, Policy};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum SockBpfError {
    #[error("loading the {hook} program: {err}{}", if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
    Load {
        hook: &'static str,
        err: std::io::Error,
        log: String,
    },
    #[error("{hook} program: {0}", .err)]
    Asm {
        hook: &'static str,
        err: crate::bpf::asm::AsmError,
    },
    #[error("{step} {path}: {err}")]
    Io {
        step: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SockBpfError>;

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SockBpfError + 'a {
    move |err| SockBpfError::Io {
        step,
        path: path.to_path_buf(),
        err,
    }
}

/// Where the daemon's bpffs is mounted.
pub fn bpffs(run_dir: &Path) -> PathBuf {
    run_dir.join("bpf")
}

/// A guest's pins.
pub fn pin_dir(run_dir: &Path, name: &str) -> PathBuf {
    bpffs(run_dir).join(name)
}

/// Mounts the daemon's bpffs unless it is mounted already (a restarted daemon finds its
/// predecessor's, with the pins in it).
pub fn ensure_bpffs(run_dir: &Path) -> Result<PathBuf> {
    let dir = bpffs(run_dir);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    }
    if !sys::bpf::is_bpffs(&dir).map_err(io("statfs", &dir))? {
        sys::bpf::mount_bpffs(&dir).map_err(io("mounting a bpffs at", &dir))?;
    }
    Ok(dir)
}

/// The hooks pinned for a guest (what a restarted daemon or a status check finds).
pub fn pinned(run_dir: &Path, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(pin_dir(run_dir, name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether every hook is pinned for the guest.
pub fn complete(run_dir: &Path, name: &str) -> bool {
    let have = pinned(run_dir, name);
    Hook::ALL.iter().all(|h| have.iter().any(|n| n == h.name()))
}

/// Loads the guest's programs and links them to `cgroup_v2`; returns how long that took.
/// Leftover pins of the guest (a start that died half-way) are removed first; a failure
/// removes what this call made.
pub fn attach(run_dir: &Path, name: &str, cgroup_v2: &Path, p: &Policy) -> Result<Duration> {
    let t = Instant::now();
    ensure_bpffs(run_dir)?;
    detach(run_dir, name)?;
    let dir = pin_dir(run_dir, name);
    std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
    let made = (|| {
        let cg = std::fs::File::open(cgroup_v2).map_err(io("opening", cgroup_v2))?;
        for h in Hook::ALL {
            let insns = progs::program(h, p).map_err(|err| SockBpfError::Asm {
                hook: h.name(),
                err,
            })?;
            let bytes: Vec<[u8; 8]> = insns.iter().map(|i| i.bytes()).collect();
            let prog = sys::bpf::prog_load(h.prog_type(), h.attach_type(), &bytes, h.name())
                .map_err(|e| SockBpfError::Load {
                    hook: h.name(),
                    err: e.err,
                    log: e.log.trim().to_string(),
                })?;
            let link = sys::bpf::link_cgroup(&prog, &cg, h.attach_type())
                .map_err(io("linking a program to", cgroup_v2))?;
            let pin = dir.join(h.name());
            sys::bpf::obj_pin(&link, &pin).map_err(io("pinning", &pin))?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = detach(run_dir, name);
        return Err(e);
    }
    Ok(t.elapsed())
}

/// Detaches and unpins every program of the guest. Nothing pinned: nothing to do.
pub fn detach(run_dir: &Path, name: &str) -> Result<()> {
    let dir = pin_dir(run_dir, name);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &dir)(e)),
    };
    for e in rd.flatten() {
        let pin = e.path();
        // Detaching now, not at the last reference: a pin another process opened must not
        // keep the programs in force.
        if let Ok(link) = sys::bpf::obj_get(&pin) {
            let _ = sys::bpf::link_detach(&link);
        }
        std::fs::remove_file(&pin).map_err(io("unpinning", &pin))?;
    }
    std::fs::remove_dir(&dir).map_err(io("removing", &dir))
}

/// Whether this kernel loads cgroup socket programs for us (CONFIG_CGROUP_BPF, bpf(2) allowed):
/// a one-instruction bind4 program loaded once per daemon and dropped. Debug builds fail it at
/// the fault point `sockbpf.probe` (the fallback's test).
pub fn available() -> std::result::Result<(), String> {
    static PROBE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    crate::fault::point("sockbpf.probe").map_err(|e| e.to_string())?;
    PROBE
        .get_or_init(|| {
            let mut a = crate::bpf::asm::Asm::new();
            a.mov_imm(crate::bpf::asm::R0, 1).exit();
            let insns: Vec<[u8; 8]> = a
                .finish()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|i| i.bytes())
                .collect();
            sys::bpf::prog_load(
                progs::PROG_TYPE_CGROUP_SOCK_ADDR,
                Hook::Bind4.attach_type(),
                &insns,
                "vs_probe",
            )
            .map(drop)
            .map_err(|e| format!("cgroup BPF is not available ({})", e.err))
        })
        .clone()
}
