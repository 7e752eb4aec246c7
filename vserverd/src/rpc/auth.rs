//! Who is calling: SO_PEERCRED plus a check that the caller lives in the host's namespaces.
//!
//! Without a user namespace a guest's root *is* host uid 0, so the uid alone proves nothing: a
//! caller whose pid or user namespace differs from the daemon's is a guest (every guest has its
//! own pid namespace) or another container, and gets nothing. The mount namespace is not
//! compared: host services routinely run in private ones (PrivateTmp=, unshare -m).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List, Status, Stat, Validate, Check, Events, Processes, introspection.
    Read,
    /// Everything that changes a guest.
    Write,
}

/// The peer of one connection, captured at accept time.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
    pub groups: Vec<u32>,
    pub host_namespaces: bool,
}

impl Peer {
    pub fn of(sock: &impl AsFd) -> std::io::Result<Self> {
        let cred = getsockopt(sock, PeerCredentials).map_err(std::io::Error::from)?;
        let pid = cred.pid();
        let mut groups = vec![cred.gid()];
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(line) = status.lines().find(|l| l.starts_with("Groups:")) {
                groups.extend(
                    line[7..]
                        .split_whitespace()
                        .filter_map(|g| g.parse::<u32>().ok()),
                );
            }
        }
        Ok(Self {
            uid: cred.uid(),
            pid,
            groups,
            host_namespaces: pid > 0 && same_namespaces(pid),
        })
    }

    /// Checks `access` for this peer; `read_gid` is the group allowed read-only calls.
    pub fn allows(&self, access: Access, read_gid: Option<u32>) -> Result<(), String> {
        if !self.host_namespaces {
            return Err("callers inside a guest or another namespace are refused".into());
        }
        if self.uid == 0 {
            return Ok(());
        }
        match (access, read_gid) {
            (Access::Read, Some(g)) if self.groups.contains(&g) => Ok(()),
            (Access::Read, _) => Err(format!(
                "uid {} may not read guest state (root or the read group only)",
                self.uid
            )),
            (Access::Write, _) => Err(format!(
                "uid {} may not change guests (root only)",
                self.uid
            )),
        }
    }
}

fn same_namespaces(pid: i32) -> bool {
    ["pid", "user"].iter().all(|ns| {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{ns}"));
        matches!((theirs, ours), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, groups: Vec<u32>, host: bool) -> Peer {
        Peer {
            uid,
            pid: 1,
            groups,
            host_namespaces: host,
        }
    }

    #[test]
    fn root_in_host_may_do_everything() {
        assert!(peer(0, vec![0], true).allows(Access::Write, None).is_ok());
    }

    #[test]
    fn root_in_a_guest_is_refused() {
        assert!(peer(0, vec![0], false).allows(Access::Read, None).is_err());
    }

    #[test]
    fn read_group_reads_but_does_not_write() {
        let p = peer(1000, vec![1000, 50], true);
        assert!(p.allows(Access::Read, Some(50)).is_ok());
        assert!(p.allows(Access::Write, Some(50)).is_err());
        assert!(p.allows(Access::Read, None).is_err());
    }

    #[test]
    fn our_own_socketpair_peer_is_in_host_namespaces() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = Peer::of(&a).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        assert!(p.host_namespaces);
    }
}
