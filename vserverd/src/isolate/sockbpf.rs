//! Loading a shared-stack guest's socket programs (bpf/progs.rs) and linking them to its
//! cgroup in the unified (v2) hierarchy, the only one cgroup BPF attaches to.
//!
//! Each program is attached through a bpf_link, pinned at BPFFS/NAME/HOOK in a bpffs the
//! daemon mounts at RUN_DIR/bpf (mode 0700, outside every guest's root). A link cannot be
//! detached through the cgroup (BPF_PROG_DETACH finds no program it may remove), only through
//! the link itself, which a guest cannot reach: it would need the pin (not in its mount
//! namespace) or the link's id and CAP_SYS_ADMIN. The pins keep the programs attached when
//! the daemon dies; a restarted daemon finds them there, and stop removes them.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bpf::lookup;
use crate::bpf::progs::{self, Counters, Hook, Maps, Policy};
use crate::sys;
use crate::sys::bpf::MapSpec;

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

/// A guest's pins. A bpffs refuses names with a dot (reserved for the kernel's own files), so
/// `.` is written `%2e` and `%` `%25`: `web.example` pins in `web%2eexample`.
pub fn pin_dir(run_dir: &Path, name: &str) -> PathBuf {
    bpffs(run_dir).join(pin_name(name))
}

fn pin_name(name: &str) -> String {
    name.replace('%', "%25").replace('.', "%2e")
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

// Map types (uapi `enum bpf_map_type`) and sizes.
const MAP_LRU_HASH: u32 = 9;
const MAP_PERCPU_ARRAY: u32 = 6;
/// The guest's traffic counters' pin, beside its links' (a map: detach_dir's link_detach
/// fails on it and it is unpinned all the same).
const COUNTERS_PIN: &str = "vs_counters";
const MAP_HASH_OF_MAPS: u32 = 13;
const MAP_SOCKHASH: u32 = 18;
const BPF_F_NO_PREALLOC: u32 = 1;
/// A guest's socket hash: each wildcard listener takes one entry per address and one for
/// lback. Its buckets are allocated when it is made (16 bytes each), so it stays small.
const GUEST_SOCKS: u32 = 2048;
/// Wildcard marks waiting for their socket's listen (an LRU: the oldest are forgotten).
const GUEST_WILD: u32 = 1024;
/// Addresses of all shared-stack guests together.
const ALL_ADDRS: u32 = 16384;
/// One never-bound listener per port at most (the kernel's bind conflict rules).
const PORTS: u32 = 65536;

/// The host-wide objects' pins (a name no guest's pins can have: theirs escape `%`).
pub fn host_dir(run_dir: &Path) -> PathBuf {
    bpffs(run_dir).join("%host")
}

fn guest_socks_spec() -> MapSpec<'static> {
    MapSpec {
        map_type: MAP_SOCKHASH,
        key_size: lookup::SOCK_KEY,
        value_size: 8,
        max_entries: GUEST_SOCKS,
        flags: 0,
        name: "vs_socks",
    }
}

/// The host-wide maps the lookup program reads.
pub struct HostMaps {
    /// Address (16 bytes, IPv4 v4-mapped) -> the guest's socket hash.
    pub guests: OwnedFd,
    /// Port -> a guest's never-bound listener.
    pub ports: OwnedFd,
}

/// The pinned object at `pin`, else what `make` makes, pinned there.
fn pinned_or(pin: &Path, make: impl FnOnce() -> Result<OwnedFd>) -> Result<OwnedFd> {
    if pin.exists() {
        return sys::bpf::obj_get(pin).map_err(io("opening the pinned", pin));
    }
    let fd = make()?;
    sys::bpf::obj_pin(&fd, pin).map_err(io("pinning", pin))?;
    Ok(fd)
}

fn map(spec: &MapSpec, inner: Option<std::os::fd::BorrowedFd>) -> Result<OwnedFd> {
    sys::bpf::map_create(spec, inner).map_err(|err| SockBpfError::Io {
        step: "making the map",
        path: PathBuf::from(spec.name),
        err,
    })
}

/// The host-wide maps and lookup program (bpf/lookup.rs) for the calling thread's network
/// namespace: made and pinned at the first shared-stack start, found again by later starts
/// and by a restarted daemon (the lookup program stays linked to the namespace while its pin
/// is there).
pub fn host(run_dir: &Path) -> Result<HostMaps> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ensure_bpffs(run_dir)?;
    let dir = host_dir(run_dir);
    if !dir.exists() {
        std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
    }
    let ports = pinned_or(&dir.join("vs_ports"), || {
        map(
            &MapSpec {
                map_type: MAP_SOCKHASH,
                key_size: 4,
                value_size: 8,
                max_entries: PORTS,
                flags: 0,
                name: "vs_ports",
            },
            None,
        )
    })?;
    let guests = pinned_or(&dir.join("vs_guests"), || {
        let template = map(&guest_socks_spec(), None)?;
        map(
            &MapSpec {
                map_type: MAP_HASH_OF_MAPS,
                key_size: 16,
                value_size: 4,
                max_entries: ALL_ADDRS,
                flags: BPF_F_NO_PREALLOC,
                name: "vs_guests",
            },
            Some(template.as_fd()),
        )
    })?;
    pinned_or(&dir.join("vs_sk_lookup"), || {
        let insns = lookup::sk_lookup(guests.as_raw_fd(), ports.as_raw_fd()).map_err(|err| {
            SockBpfError::Asm {
                hook: "vs_sk_lookup",
                err,
            }
        })?;
        let bytes: Vec<[u8; 8]> = insns.iter().map(|i| i.bytes()).collect();
        let prog = sys::bpf::prog_load(
            lookup::PROG_TYPE_SK_LOOKUP,
            lookup::ATTACH_SK_LOOKUP,
            &bytes,
            "vs_sk_lookup",
        )
        .map_err(|e| SockBpfError::Load {
            hook: "vs_sk_lookup",
            err: e.err,
            log: e.log.trim().to_string(),
        })?;
        let ns = Path::new("/proc/thread-self/ns/net");
        let nsf = std::fs::File::open(ns).map_err(io("opening", ns))?;
        sys::bpf::link_netns(&prog, &nsf, lookup::ATTACH_SK_LOOKUP)
            .map_err(io("linking the lookup program to", ns))
    })?;
    Ok(HostMaps { guests, ports })
}

/// The guest's addresses as keys of the host-wide `guests` map: IPv4 ones and lback
/// v4-mapped, IPv6 ones as they are.
pub fn address_keys(p: &Policy) -> Vec<[u8; 16]> {
    let mapped = |ip: std::net::Ipv4Addr| ip.to_ipv6_mapped().octets();
    p.v4.iter()
        .map(|ip| mapped(*ip))
        .chain(std::iter::once(mapped(p.lback)))
        .chain(p.v6.iter().map(|ip| ip.octets()))
        .collect()
}

/// Takes the guest's addresses out of the host-wide map: connections to them go to the
/// kernel's own lookup again. Nothing made yet: nothing to do.
pub fn forget(run_dir: &Path, p: &Policy) -> Result<()> {
    let pin = host_dir(run_dir).join("vs_guests");
    if !pin.exists() {
        return Ok(());
    }
    let guests = sys::bpf::obj_get(&pin).map_err(io("opening the pinned", &pin))?;
    let keys = address_keys(p);
    // One grace period for all (see map_update_batch); where one key is missing (a start cut
    // short), the rest one by one.
    if sys::bpf::map_delete_batch(&guests, &keys.concat(), 16).is_ok() {
        return Ok(());
    }
    for k in keys {
        match sys::bpf::map_delete(&guests, &k) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(io("removing an address from", &pin)(e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Loads the guest's programs and links them to `cgroup_v2`; returns how long that took.
/// Leftover pins of the guest (a start that died half-way) are removed first; a failure
/// removes what this call made. With the programs in force, the guest's addresses go into the
/// host-wide map, so connections to them reach the guest's listeners only.
pub fn attach(run_dir: &Path, name: &str, cgroup_v2: &Path, p: &Policy) -> Result<Duration> {
    link(run_dir, name, cgroup_v2, p, false)
}

/// Links a running guest's programs again (a daemon that adopts it found a pin gone). Its
/// listeners are recorded in the socket hash the host-wide map already has for its addresses,
/// which is kept: they stay reachable, and new ones join them. A guest whose addresses are not
/// in that map (started by a vserverd without wildcard receive) is left to the kernel's own
/// lookup until it restarts: its listeners were never recorded, so routing its addresses
/// through a fresh, empty hash would cut them off.
pub fn relink(run_dir: &Path, name: &str, cgroup_v2: &Path, p: &Policy) -> Result<Duration> {
    link(run_dir, name, cgroup_v2, p, true)
}

/// The socket hash the host-wide map holds for the guest's first address, if any.
fn existing_socks(host: &HostMaps, p: &Policy) -> Option<OwnedFd> {
    let key = address_keys(p).into_iter().next()?;
    let mut id = [0u8; 4];
    match sys::bpf::map_lookup(&host.guests, &key, &mut id) {
        Ok(true) => sys::bpf::map_get_fd_by_id(u32::from_ne_bytes(id)).ok(),
        _ => None,
    }
}

fn link(run_dir: &Path, name: &str, cgroup_v2: &Path, p: &Policy, again: bool) -> Result<Duration> {
    let t = Instant::now();
    ensure_bpffs(run_dir)?;
    let host = host(run_dir)?;
    let final_dir = pin_dir(run_dir, name);
    // A running guest's programs stay in force until the new ones are: those are linked
    // beside them (pinned in a directory no guest's pins can be named: theirs escape `%`),
    // then the old ones go and the new directory takes their place. (Both sets narrow alike,
    // so a socket call in between meets the same rules twice.) A fresh start has nothing to
    // keep: leftovers of a start that died half-way go first.
    let dir = if again {
        let d = bpffs(run_dir).join(format!("{}%new", pin_name(name)));
        detach_dir(&d)?;
        d
    } else {
        detach(run_dir, name)?;
        final_dir.clone()
    };
    std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
    let kept = if again {
        existing_socks(&host, p)
    } else {
        None
    };
    let route = !again || kept.is_some();
    let made = (|| {
        let wild = map(
            &MapSpec {
                map_type: MAP_LRU_HASH,
                key_size: 8,
                value_size: 4,
                max_entries: GUEST_WILD,
                flags: 0,
                name: "vs_wild",
            },
            None,
        )?;
        let socks = match kept {
            Some(fd) => fd,
            None => map(&guest_socks_spec(), None)?,
        };
        // A guest linked again keeps counting where it was.
        let old_counters = final_dir.join(COUNTERS_PIN);
        let counters = match again
            .then(|| sys::bpf::obj_get(&old_counters).ok())
            .flatten()
        {
            Some(fd) => fd,
            None => map(
                &MapSpec {
                    map_type: MAP_PERCPU_ARRAY,
                    key_size: 4,
                    value_size: Counters::SIZE as u32,
                    max_entries: 1,
                    flags: 0,
                    name: COUNTERS_PIN,
                },
                None,
            )?,
        };
        let cpin = dir.join(COUNTERS_PIN);
        sys::bpf::obj_pin(&counters, &cpin).map_err(io("pinning", &cpin))?;
        let mut p = p.clone();
        p.maps = Some(Maps {
            wild: wild.as_raw_fd(),
            socks: socks.as_raw_fd(),
            ports: host.ports.as_raw_fd(),
            counters: counters.as_raw_fd(),
        });
        let p = &p;
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
        let value = (socks.as_raw_fd() as u32).to_ne_bytes();
        let gpin = host_dir(run_dir).join("vs_guests");
        if route {
            sys::bpf::map_update_batch(&host.guests, &address_keys(p).concat(), 16, &value)
                .map_err(io("adding the addresses to", &gpin))?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        if !again {
            let _ = forget(run_dir, p);
        }
        let _ = detach_dir(&dir);
        return Err(e);
    }
    if again {
        detach(run_dir, name)?;
        std::fs::rename(&dir, &final_dir).map_err(io("renaming to", &final_dir))?;
    }
    Ok(t.elapsed())
}

/// What the guest's sockets in the host's namespace received and sent (its counters map,
/// summed over CPUs); None when the guest has no counters (not linked, or linked by a vserverd
/// without them).
pub fn counters(run_dir: &Path, name: &str) -> Option<Counters> {
    let m = sys::bpf::obj_get(&pin_dir(run_dir, name).join(COUNTERS_PIN)).ok()?;
    let mut buf = vec![0u8; Counters::SIZE * possible_cpus()];
    match sys::bpf::map_lookup(&m, &0u32.to_ne_bytes(), &mut buf) {
        Ok(true) => Some(Counters::sum(&buf)),
        _ => None,
    }
}

/// The kernel's count of possible CPUs (a per-CPU map's lookup fills one value for each).
fn possible_cpus() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| count_cpus(&s))
            .unwrap_or(1)
    })
}

/// `0-3,8-11` -> 8 (cpu ranges as sysfs writes them; a per-CPU lookup fills one value per
/// possible CPU, in order).
fn count_cpus(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// Detaches and unpins every program of the guest. Nothing pinned: nothing to do.
pub fn detach(run_dir: &Path, name: &str) -> Result<()> {
    detach_dir(&pin_dir(run_dir, name))
}

fn detach_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
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
            .map_err(|e| format!("cgroup BPF is not available ({})", e.err))?;
            // The host-wide lookup program's type (5.9+).
            sys::bpf::prog_load(
                lookup::PROG_TYPE_SK_LOOKUP,
                lookup::ATTACH_SK_LOOKUP,
                &insns,
                "vs_probe",
            )
            .map(drop)
            .map_err(|e| format!("socket lookup programs are not available ({})", e.err))?;
            // Unix sockets' connect hook (6.7+), which fences off abstract names.
            sys::bpf::prog_load(
                progs::PROG_TYPE_CGROUP_SOCK_ADDR,
                Hook::UnixConnect.attach_type(),
                &insns,
                "vs_probe",
            )
            .map(drop)
            .map_err(|e| {
                format!(
                    "cgroup programs for unix sockets are not available ({}; Linux 6.7+)",
                    e.err
                )
            })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn possible_cpu_lists() {
        assert_eq!(super::count_cpus("0-1\n"), Some(2));
        assert_eq!(super::count_cpus("0\n"), Some(1));
        assert_eq!(super::count_cpus("0-3,8-11"), Some(8));
        assert_eq!(super::count_cpus("x"), None);
    }

    #[test]
    fn pin_names_have_no_dots_and_never_the_host_dir_name() {
        assert_eq!(super::pin_name("web.example"), "web%2eexample");
        assert_eq!(super::pin_name("%host"), "%25host");
        assert_eq!(super::pin_name("web"), "web");
    }
}
