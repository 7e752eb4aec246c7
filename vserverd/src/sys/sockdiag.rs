//! The caller's network namespace's sockets through NETLINK_SOCK_DIAG (what `ss` reads): one
//! dump per family and protocol, each socket with its local address, port, state and the id
//! of the cgroup that made it (INET_DIAG_CGROUP_ID, Linux 5.7+, sent unasked). Safe rustix
//! calls only; the parsing is pure.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// One socket of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    pub local: IpAddr,
    pub port: u16,
    /// The kernel's TCP state number (UDP: 7, TCP_CLOSE, for an unconnected socket).
    pub state: u8,
    /// The cgroup (v2 id: its directory's inode number) the socket was made in.
    pub cgroup_id: Option<u64>,
}

/// `TCP_LISTEN`.
pub const TCP_LISTEN: u8 = 10;
/// `TCP_CLOSE`: an unconnected UDP socket's state.
pub const TCP_CLOSE: u8 = 7;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// nlmsghdr, then inet_diag_msg.
const HDR: usize = 16;
const MSG: usize = 72;

/// The sockets of `family` (AF_INET, AF_INET6) and `protocol` (IPPROTO_TCP, IPPROTO_UDP)
/// whose state is in `states` (bit N for state N).
pub fn dump(family: u8, protocol: u8, states: u32) -> io::Result<Vec<DiagSocket>> {
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::SOCK_DIAG),
    )?;
    let mut req = Vec::with_capacity(HDR + 56);
    req.extend(((HDR + 56) as u32).to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // seq
    req.extend(0u32.to_ne_bytes()); // the kernel's port id
    req.extend([family, protocol, 0, 0]);
    req.extend(states.to_ne_bytes());
    req.extend([0u8; 48]); // inet_diag_sockid: any
    rustix::net::send(&fd, &req, SendFlags::empty())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
        if n == 0 {
            return Ok(out);
        }
        if parse(&buf[..n.min(buf.len())], &mut out)? {
            return Ok(out);
        }
    }
}

/// Appends the sockets of one datagram of the dump to `out`; true at its end.
pub fn parse(mut b: &[u8], out: &mut Vec<DiagSocket>) -> io::Result<bool> {
    let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    while b.len() >= HDR {
        let len = u32_at(b, 0) as usize;
        if len < HDR || len > b.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag: bad length",
            ));
        }
        let msg = &b[..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        match u16_at(msg, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = msg
                    .get(HDR..HDR + 4)
                    .map(|e| i32::from_ne_bytes(e.try_into().unwrap_or([0; 4])))
                    .unwrap_or(0);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY if msg.len() >= HDR + MSG => {}
            _ => continue,
        }
        let m = &msg[HDR..];
        let port = u16::from_be_bytes([m[4], m[5]]);
        let local = match m[0] {
            2 => IpAddr::V4(Ipv4Addr::new(m[8], m[9], m[10], m[11])),
            _ => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&m[8..24]).unwrap_or([0; 16]),
            )),
        };
        let mut cgroup_id = None;
        let mut a = &m[MSG..];
        while a.len() >= 4 {
            let alen = u16_at(a, 0) as usize;
            if alen < 4 || alen > a.len() {
                break;
            }
            if u16_at(a, 2) == INET_DIAG_CGROUP_ID && alen >= 12 {
                cgroup_id = Some(u64::from_ne_bytes(a[4..12].try_into().unwrap_or([0; 8])));
            }
            a = &a[alen.next_multiple_of(4).min(a.len())..];
        }
        out.push(DiagSocket {
            local,
            port,
            state: m[1],
            cgroup_id,
        });
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(family: u8, state: u8, port: u16, addr: &[u8], cg: Option<u64>) -> Vec<u8> {
        let mut m = vec![family, state, 0, 0];
        m.extend(port.to_be_bytes());
        m.extend([0, 0]);
        let mut a = addr.to_vec();
        a.resize(16, 0);
        m.extend(a);
        m.resize(MSG, 0);
        if let Some(id) = cg {
            m.extend(12u16.to_ne_bytes());
            m.extend(INET_DIAG_CGROUP_ID.to_ne_bytes());
            m.extend(id.to_ne_bytes());
        }
        let mut h = ((HDR + m.len()) as u32).to_ne_bytes().to_vec();
        h.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        h.extend([0u8; 10]);
        h.extend(m);
        h
    }

    #[test]
    fn parses_sockets_their_cgroups_and_the_end() {
        let mut b = msg(2, TCP_LISTEN, 22, &[0, 0, 0, 0], Some(4242));
        b.extend(msg(
            10,
            TCP_CLOSE,
            53,
            &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            None,
        ));
        let mut out = vec![];
        assert!(!parse(&b, &mut out).unwrap());
        assert_eq!(
            out,
            [
                DiagSocket {
                    local: "0.0.0.0".parse().unwrap(),
                    port: 22,
                    state: TCP_LISTEN,
                    cgroup_id: Some(4242)
                },
                DiagSocket {
                    local: "fd00::2".parse().unwrap(),
                    port: 53,
                    state: TCP_CLOSE,
                    cgroup_id: None
                }
            ]
        );
        let mut done = 20u32.to_ne_bytes().to_vec();
        done.extend(NLMSG_DONE.to_ne_bytes());
        done.extend([0u8; 14]);
        assert!(parse(&done, &mut out).unwrap());
        assert!(parse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut out).is_err());
    }

    #[test]
    fn dumps_this_namespaces_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = dump(2, 6, 1 << TCP_LISTEN).unwrap();
        let me = got
            .iter()
            .find(|s| s.port == port && s.state == TCP_LISTEN)
            .unwrap_or_else(|| panic!("{got:?}"));
        // The cgroup id is the inode number of this process's v2 cgroup directory, where
        // the unified hierarchy is mounted at one of the usual places.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let dir = format!("{mount}{rel}");
            let cgroup2 = rustix::fs::statfs(mount).is_ok_and(|s| s.f_type == 0x6367_7270);
            if cgroup2 {
                use std::os::unix::fs::MetadataExt;
                let ino = std::fs::metadata(&dir).unwrap().ino();
                assert_eq!(me.cgroup_id, Some(ino), "{dir}");
                return;
            }
        }
    }
}
