//! The host's services on the wildcard, for `check`'s and the start's warning about the shared
//! stack (docs/network.md, "Wildcard listeners"): a host daemon listening on 0.0.0.0 or `::`
//! no longer receives guests' traffic (the lookup program and the guests' ingress filter keep
//! it out), but while it holds a port on the wildcard no shared-stack guest can bind that
//! port, and util-vserver told admins to bind host daemons to host addresses. Which guest
//! will want which port is not known ahead, so the warning names the host's wildcard
//! listeners, once per check or start.
//!
//! The host's sockets come from NETLINK_SOCK_DIAG (sys/sockdiag.rs) with the cgroup each was
//! made in, so guests' own wildcard sockets (a UDP wildcard of a guest with several
//! addresses, a host-stack guest's) are told from the host's. Unconnected UDP sockets on an
//! ephemeral port are left out: they are clients (a resolver's query, autobound by sendto).
//! The result is cached for 30 s: check stays O(1) per call however many run.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::sys::sockdiag::{self, DiagSocket, TCP_CLOSE, TCP_LISTEN};

/// How long a computed answer is used.
const TTL: Duration = Duration::from_secs(30);
/// At most this many listeners are named.
const NAMED: usize = 6;

/// The host's wildcard listeners in `tcp` and `udp` (dumps of the host's namespace), as
/// `tcp 0.0.0.0:22`, `udp [::]:53`, sorted: sockets of cgroups in `guests` and UDP sockets on
/// ports of the ephemeral range `eph` left out.
pub fn wildcards(
    tcp: &[DiagSocket],
    udp: &[DiagSocket],
    guests: &HashSet<u64>,
    eph: (u16, u16),
) -> Vec<String> {
    let host = |s: &&DiagSocket| {
        s.local.is_unspecified() && !s.cgroup_id.is_some_and(|id| guests.contains(&id))
    };
    let name = |proto: &str, s: &DiagSocket| match s.local {
        IpAddr::V4(a) => format!("{proto} {a}:{}", s.port),
        IpAddr::V6(a) => format!("{proto} [{a}]:{}", s.port),
    };
    let mut v: Vec<String> = tcp
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .filter(host)
        .map(|s| name("tcp", s))
        .chain(
            udp.iter()
                .filter(|s| s.state == TCP_CLOSE && !(eph.0..=eph.1).contains(&s.port))
                .filter(host)
                .map(|s| name("udp", s)),
        )
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The warning for `list`, None when empty.
pub fn warning(list: &[String]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let mut named = list
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NAMED {
        named.push_str(&format!(" and {} more", list.len() - NAMED));
    }
    Some(format!(
        "host services listen on the wildcard ({named}): shared-stack guests' traffic is kept \
         from them, but while one holds a port no guest can bind that port (EADDRINUSE); bind \
         host daemons to the host's addresses, as util-vserver advised"
    ))
}

/// `ip_local_port_range`.
fn ephemeral() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Cgroup ids (v2: the directory's inode number) of `dirs` and every cgroup below them.
fn cgroup_ids<'a>(dirs: impl IntoIterator<Item = &'a std::path::Path>) -> HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &std::path::Path, out: &mut HashSet<u64>) {
        if let Ok(m) = std::fs::metadata(dir) {
            out.insert(m.ino());
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = HashSet::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

/// The warning for the daemon's (the host's) network namespace now, the running guests'
/// sockets left out; computed at most once per [`TTL`]. None when the dump fails (a kernel
/// without sock_diag: nothing to say).
pub fn current(d: &crate::daemon::Daemon) -> Option<String> {
    static CACHE: std::sync::Mutex<Option<(Instant, Option<String>)>> = std::sync::Mutex::new(None);
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, w)) = &*c {
        if at.elapsed() < TTL {
            return w.clone();
        }
    }
    let dump = |proto: u8, states: u32| -> Option<Vec<DiagSocket>> {
        let mut v = sockdiag::dump(libc::AF_INET as u8, proto, states).ok()?;
        v.extend(sockdiag::dump(libc::AF_INET6 as u8, proto, states).ok()?);
        Some(v)
    };
    let w = (|| {
        let tcp = dump(libc::IPPROTO_TCP as u8, 1 << TCP_LISTEN)?;
        let udp = dump(libc::IPPROTO_UDP as u8, 1 << TCP_CLOSE)?;
        let eph = ephemeral();
        if wildcards(&tcp, &udp, &HashSet::new(), eph).is_empty() {
            return None;
        }
        // Some: the running guests' cgroups tell theirs from the host's.
        let runs: Vec<_> = d
            .guests
            .running_names()
            .into_iter()
            .filter_map(|n| d.guests.running(&n))
            .collect();
        let guests = cgroup_ids(runs.iter().filter_map(|r| r.state.cgroup.v2_dir()));
        warning(&wildcards(&tcp, &udp, &guests, eph))
    })();
    *c = Some((Instant::now(), w.clone()));
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(local: &str, port: u16, state: u8, cg: u64) -> DiagSocket {
        DiagSocket {
            local: local.parse().unwrap(),
            port,
            state,
            cgroup_id: Some(cg),
        }
    }

    #[test]
    fn the_hosts_wildcards_only() {
        let tcp = [
            s("0.0.0.0", 22, TCP_LISTEN, 1),
            s("::", 22, TCP_LISTEN, 1),
            s("10.0.0.1", 80, TCP_LISTEN, 1),
            // a guest's never-bound listener
            s("0.0.0.0", 8080, TCP_LISTEN, 7),
        ];
        let udp = [
            s("0.0.0.0", 53, TCP_CLOSE, 1),
            // a resolver's query socket
            s("0.0.0.0", 40000, TCP_CLOSE, 1),
            // connected
            s("0.0.0.0", 123, 1, 1),
            // a guest's UDP wildcard
            s("::", 514, TCP_CLOSE, 8),
        ];
        let guests = HashSet::from([7, 8]);
        let w = wildcards(&tcp, &udp, &guests, (32768, 60999));
        assert_eq!(w, ["tcp 0.0.0.0:22", "tcp [::]:22", "udp 0.0.0.0:53"]);
        let text = warning(&w).unwrap();
        assert!(
            text.contains("(tcp 0.0.0.0:22, tcp [::]:22, udp 0.0.0.0:53)"),
            "{text}"
        );
        assert_eq!(warning(&[]), None);
        let many: Vec<String> = (1..=9).map(|p| format!("tcp 0.0.0.0:{p}")).collect();
        assert!(warning(&many).unwrap().contains("tcp 0.0.0.0:6 and 3 more"));
    }
}
