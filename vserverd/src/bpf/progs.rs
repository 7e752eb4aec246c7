//! The shared-stack guest's socket programs (docs/network.md, "The shared stack"), one per
//! cgroup sock_addr hook, built for one guest with its addresses, its loopback address and the
//! host's network-namespace cookie as immediates.
//!
//! Every program first compares the socket's namespace cookie with the host's: sockets of
//! namespaces made inside the guest's cgroup (a user-namespace guest's own, a systemd unit's
//! PrivateNetwork=) pass untouched, since the hooks fire in every namespace.
//!
//! What each hook does, on the host's namespace (IPv4; IPv6 alike, and a v4-mapped IPv6
//! address follows the IPv4 rules):
//! - bind: 0.0.0.0 becomes the first address; 127.0.0.1 becomes the guest's loopback address
//!   (lback); the guest's own addresses and lback pass; anything else fails EADDRNOTAVAIL.
//!   `::` becomes the first IPv6 address (else `::ffff:` the first IPv4 one); `::1` fails.
//! - connect: 127.0.0.1 and 0.0.0.0 become lback; any other 127/8 address (the host's or
//!   another guest's loopback) fails ENETUNREACH, as do `::` and `::1`; the source is pinned
//!   (bpf_bind, port 0) to lback for loopback and to the first address otherwise. A socket
//!   the guest bound already keeps its address (the pin fails and is ignored).
//! - sendmsg (unconnected UDP): the destination as for connect; a source left open becomes the
//!   first address (lback towards lback); a source chosen with IP_PKTINFO must be the guest's
//!   (else EPERM).
//! - recvmsg, getsockname, getpeername: lback is shown as 127.0.0.1.
//! - bind of a UDP socket to the wildcard, for a guest with several addresses of the family
//!   and no SO_REUSEADDR/SO_REUSEPORT on the socket: it stays a wildcard (it receives on all
//!   of them; the ingress program keeps the rest out).
//! - skb ingress: a packet for a socket of the guest not addressed to the guest (its
//!   addresses, lback, multicast, the limited broadcast) is dropped; the rest is counted in
//!   the guest's counters, as is every packet its sockets send (skb egress).
//! - socket creation: ICMP "ping" sockets (datagram sockets of IPPROTO_ICMP/ICMPV6, which
//!   bind through their own path, past the bind hook) fail EPERM unless the guest's ncaps
//!   grant `raw_icmp`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::asm::{Asm, AsmError, Insn, Label, R0, R1, R10, R2, R3, R4, R5, R6, R7, R8};

/// What the programs of one guest enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The host network namespace's cookie (SO_NETNS_COOKIE).
    pub netns_cookie: u64,
    /// The guest's IPv4 addresses, the first one primary.
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// 127.0.0.1 inside the guest.
    pub lback: Ipv4Addr,
    /// ncaps `raw_icmp`: ICMP ping sockets allowed.
    pub raw_icmp: bool,
    /// A user-namespace guest whose bounding set grants NET_BIND_SERVICE: the host uid of its
    /// root. Its binds (by that uid) skip the kernel's check for ports below 1024, which its
    /// root cannot pass over the host's namespace (its capabilities are its own namespace's).
    pub bind_low_uid: Option<u32>,
    /// The maps the guest's programs share with the host-wide lookup program (bpf/lookup.rs),
    /// as fds of the loading process; None builds the programs without them (a wildcard bind
    /// is then narrowed to the first address only).
    pub maps: Option<Maps>,
}

/// File descriptors of the maps behind wildcard receive (bpf/lookup.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maps {
    /// The guest's LRU hash: socket cookie -> 1 for a socket whose wildcard bind was narrowed.
    pub wild: i32,
    /// The guest's socket hash: (address, port, protocol) -> its listener.
    pub socks: i32,
    /// The host-wide socket hash: port -> a guest's listener that was never bound.
    pub ports: i32,
    /// The guest's traffic counters (a per-CPU array of one [`Counters`] value).
    pub counters: i32,
}

/// The value of a guest's counters map, per CPU: what its sockets in the host's namespace
/// received (after the ingress filter) and sent, in bytes from the IP header on, and packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

impl Counters {
    /// The map value's size.
    pub const SIZE: usize = 32;

    /// The sum over CPUs of a per-CPU lookup's buffer (`SIZE` bytes per CPU).
    pub fn sum(buf: &[u8]) -> Counters {
        let mut c = Counters::default();
        for v in buf.chunks_exact(Self::SIZE) {
            let f = |i: usize| u64::from_ne_bytes(v[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
            c.rx_bytes += f(0);
            c.rx_packets += f(1);
            c.tx_bytes += f(2);
            c.tx_packets += f(3);
        }
        c
    }
}

/// A cgroup sock_addr hook (uapi `enum bpf_attach_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Bind4,
    Bind6,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    Recvmsg4,
    Recvmsg6,
    Getpeername4,
    Getpeername6,
    Getsockname4,
    Getsockname6,
    /// cgroup/sock_create (a `BPF_PROG_TYPE_CGROUP_SOCK` program).
    SockCreate,
    /// cgroup/sock_ops (`BPF_PROG_TYPE_SOCK_OPS`): records the guest's TCP listeners for the
    /// host-wide lookup program (bpf/lookup.rs).
    SockOps,
    /// cgroup/connect_unix and cgroup/sendmsg_unix (6.7+): unix sockets' connect and
    /// addressed datagram sends.
    UnixConnect,
    UnixSendmsg,
    /// cgroup/skb ingress (`BPF_PROG_TYPE_CGROUP_SKB`): every packet delivered to a socket of
    /// the guest; those addressed elsewhere than the guest's addresses are dropped.
    SkbIngress,
    /// cgroup/skb egress: counts what the guest's sockets send.
    SkbEgress,
}

impl Hook {
    pub const ALL: [Hook; 18] = [
        Hook::Bind4,
        Hook::Bind6,
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::Recvmsg4,
        Hook::Recvmsg6,
        Hook::Getpeername4,
        Hook::Getpeername6,
        Hook::Getsockname4,
        Hook::Getsockname6,
        Hook::SockCreate,
        Hook::SockOps,
        Hook::UnixConnect,
        Hook::UnixSendmsg,
        Hook::SkbIngress,
        Hook::SkbEgress,
    ];

    /// The kernel's attach type number.
    pub fn attach_type(self) -> u32 {
        match self {
            Hook::Bind4 => 8,
            Hook::Bind6 => 9,
            Hook::Connect4 => 10,
            Hook::Connect6 => 11,
            Hook::Sendmsg4 => 14,
            Hook::Sendmsg6 => 15,
            Hook::Recvmsg4 => 19,
            Hook::Recvmsg6 => 20,
            Hook::Getpeername4 => 29,
            Hook::Getpeername6 => 30,
            Hook::Getsockname4 => 31,
            Hook::Getsockname6 => 32,
            Hook::SockCreate => 2,
            Hook::SockOps => 3,
            Hook::UnixConnect => 49,
            Hook::UnixSendmsg => 50,
            Hook::SkbIngress => 0,
            Hook::SkbEgress => 1,
        }
    }

    /// The program type (uapi `enum bpf_prog_type`).
    pub fn prog_type(self) -> u32 {
        match self {
            Hook::SockCreate => PROG_TYPE_CGROUP_SOCK,
            Hook::SockOps => PROG_TYPE_SOCK_OPS,
            Hook::SkbIngress | Hook::SkbEgress => PROG_TYPE_CGROUP_SKB,
            _ => PROG_TYPE_CGROUP_SOCK_ADDR,
        }
    }

    /// The name the program and its pin carry (what `bpftool prog` shows).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Bind4 => "vs_bind4",
            Hook::Bind6 => "vs_bind6",
            Hook::Connect4 => "vs_connect4",
            Hook::Connect6 => "vs_connect6",
            Hook::Sendmsg4 => "vs_sendmsg4",
            Hook::Sendmsg6 => "vs_sendmsg6",
            Hook::Recvmsg4 => "vs_recvmsg4",
            Hook::Recvmsg6 => "vs_recvmsg6",
            Hook::Getpeername4 => "vs_getpeername4",
            Hook::Getpeername6 => "vs_getpeername6",
            Hook::Getsockname4 => "vs_getsockname4",
            Hook::Getsockname6 => "vs_getsockname6",
            Hook::SockCreate => "vs_sock_create",
            Hook::SockOps => "vs_sockops",
            Hook::UnixConnect => "vs_connect_unix",
            Hook::UnixSendmsg => "vs_sendmsg_unix",
            Hook::SkbIngress => "vs_ingress",
            Hook::SkbEgress => "vs_egress",
        }
    }
}

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`.
pub const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
/// `BPF_PROG_TYPE_CGROUP_SOCK`.
pub const PROG_TYPE_CGROUP_SOCK: u32 = 9;
/// `BPF_PROG_TYPE_SOCK_OPS`.
pub const PROG_TYPE_SOCK_OPS: u32 = 13;
/// `BPF_PROG_TYPE_CGROUP_SKB`.
pub const PROG_TYPE_CGROUP_SKB: u32 = 8;

// struct bpf_sock.
const SK_TYPE: i16 = 8;
const SK_PROTOCOL: i16 = 12;

// Helpers (uapi `__BPF_FUNC_MAPPER`).
const FN_BIND: i32 = 64;
const FN_MAP_UPDATE: i32 = 2;
const FN_GET_SOCKET_COOKIE: i32 = 46;
const FN_GET_NETNS_COOKIE: i32 = 122;
const FN_SET_RETVAL: i32 = 187;
const FN_GETSOCKOPT: i32 = 57;
const FN_SKB_LOAD_BYTES: i32 = 26;
const FN_MAP_LOOKUP: i32 = 1;
const FN_GET_CURRENT_UID_GID: i32 = 15;

// struct bpf_sock_addr: the socket's protocol.
const PROTOCOL: i16 = 36;
const IPPROTO_UDP: u32 = 17;
const SOL_SOCKET: i32 = 1;
const SO_REUSEADDR: i32 = 2;
const SO_REUSEPORT: i32 = 15;

// struct __sk_buff: the packet's ethertype (network order in the low 16 bits).
const SKB_PROTOCOL: i16 = 16;
/// ETH_P_IP and ETH_P_IPV6 as the 32-bit load of `protocol` reads them.
const ETH_IP: u32 = 0x0008;
const ETH_IPV6: u32 = 0xdd86;

// struct bpf_sock_addr.
const USER_IP4: i16 = 4;
const USER_IP6: i16 = 8;
const USER_PORT: i16 = 24;
const MSG_SRC_IP4: i16 = 40;
const MSG_SRC_IP6: i16 = 44;

const EPERM: i32 = 1;
const ECONNREFUSED: i32 = 111;
const ENETUNREACH: i32 = 101;
const EADDRNOTAVAIL: i32 = 99;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// An IPv4 address as the 32-bit load of its network-order bytes reads it.
pub(super) fn w4(a: Ipv4Addr) -> u32 {
    u32::from_le_bytes(a.octets())
}

pub(super) fn w6(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    std::array::from_fn(|i| {
        u32::from_le_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

const LOOP1: u32 = u32::from_le_bytes([127, 0, 0, 1]);
/// The third word of a v4-mapped IPv6 address (`::ffff:0:0/96`).
pub(super) const MAPPED: u32 = u32::from_le_bytes([0, 0, 0xff, 0xff]);
const V6_LOOPBACK: [u32; 4] = [0, 0, 0, u32::from_le_bytes([0, 0, 0, 1])];

/// The program for one hook.
pub fn program(h: Hook, p: &Policy) -> Result<Vec<Insn>, AsmError> {
    let mut g = Gen::new();
    if matches!(h, Hook::Bind4 | Hook::Bind6) {
        g.bind_low_uid = p.bind_low_uid;
    }
    g.prologue(p.netns_cookie);
    match h {
        Hook::Bind4 => g.bind4(p),
        Hook::Bind6 => g.bind6(p),
        Hook::Connect4 => g.connect4(p, false),
        Hook::Sendmsg4 => g.connect4(p, true),
        Hook::Connect6 => g.connect6(p, false),
        Hook::Sendmsg6 => g.connect6(p, true),
        Hook::Recvmsg4 | Hook::Getpeername4 | Hook::Getsockname4 => g.show4(p),
        Hook::Recvmsg6 | Hook::Getpeername6 | Hook::Getsockname6 => g.show6(p),
        Hook::SockCreate => g.sock_create(p),
        Hook::UnixConnect | Hook::UnixSendmsg => g.unix(),
        Hook::SkbIngress => g.ingress(p),
        Hook::SkbEgress => {
            g.count(p, 16);
            g.a.ja(g.allow);
        }
        Hook::SockOps => {
            if let Err(e) = super::lookup::sock_ops(&mut g.a, p, g.allow) {
                g.result = Err(e);
            }
        }
    }
    g.finish()
}

/// The generator: the assembler plus the shared exits.
struct Gen {
    a: Asm,
    allow: Label,
    /// Sockets of other namespaces: allowed, untouched.
    other: Label,
    /// A bind program's allow returns 3 (BPF_RET_BIND_NO_CAP_NET_BIND_SERVICE set) for a
    /// caller of this uid.
    bind_low_uid: Option<u32>,
    eaddrnotavail: Label,
    enetunreach: Label,
    eperm: Label,
    result: Result<(), AsmError>,
}

impl Gen {
    fn new() -> Gen {
        let mut a = Asm::new();
        let (allow, eaddrnotavail, enetunreach, eperm) =
            (a.new_label(), a.new_label(), a.new_label(), a.new_label());
        let other = a.new_label();
        Gen {
            a,
            allow,
            other,
            bind_low_uid: None,
            eaddrnotavail,
            enetunreach,
            eperm,
            result: Ok(()),
        }
    }

    fn place(&mut self, l: Label) {
        if let Err(e) = self.a.label(l) {
            self.result = Err(e);
        }
    }

    /// R6 = ctx; a socket of any other namespace is allowed untouched.
    fn prologue(&mut self, cookie: u64) {
        self.a
            .mov(R6, R1)
            .call(FN_GET_NETNS_COOKIE)
            .ld_imm64(R1, cookie)
            .jne_reg(R0, R1, self.other);
    }

    fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        let allow = self.allow;
        self.place(allow);
        if let Some(uid) = self.bind_low_uid {
            // bpf_get_current_uid_gid: gid << 32 | uid, the uid as the host sees it.
            let plain = self.a.new_label();
            self.a
                .call(FN_GET_CURRENT_UID_GID)
                .jne32(R0, uid, plain)
                .mov_imm(R0, 3)
                .exit();
            self.place(plain);
        }
        self.a.mov_imm(R0, 1).exit();
        let other = self.other;
        self.place(other);
        self.a.mov_imm(R0, 1).exit();
        for (l, errno) in [
            (self.eaddrnotavail, EADDRNOTAVAIL),
            (self.enetunreach, ENETUNREACH),
            (self.eperm, EPERM),
        ] {
            if !self.a.used(l) {
                continue;
            }
            self.place(l);
            self.a
                .mov_imm(R1, -errno)
                .call(FN_SET_RETVAL)
                .mov_imm(R0, 0)
                .exit();
        }
        self.result?;
        self.a.finish()
    }

    /// Jumps to `to` when R2..R5 hold `w`; falls through otherwise.
    fn match6(&mut self, w: [u32; 4], to: Label) {
        let next = self.a.new_label();
        self.a
            .jne32(R2, w[0], next)
            .jne32(R3, w[1], next)
            .jne32(R4, w[2], next)
            .jeq32(R5, w[3], to);
        self.place(next);
    }

    /// Stores a constant into the context word at `off`.
    fn store(&mut self, off: i16, v: u32) {
        self.a.mov_imm(R1, v as i32).stx_w(R6, off, R1);
    }

    /// The IPv4 bind rules on the word in `r` (the user address's word at `off`).
    fn bind4_word(&mut self, p: &Policy, r: super::asm::Reg, off: i16) {
        let (wild, lback) = (self.a.new_label(), self.a.new_label());
        self.a.jeq32(r, 0, wild).jeq32(r, LOOP1, lback);
        self.a.jeq32(r, w4(p.lback), self.allow);
        for ip in &p.v4 {
            self.a.jeq32(r, w4(*ip), self.allow);
        }
        self.a.ja(self.eaddrnotavail);
        self.place(wild);
        match p.v4.first() {
            Some(ip) => {
                if p.v4.len() >= 2 {
                    self.udp_unshared(self.allow);
                }
                self.store(off, w4(*ip));
                self.mark_wild(p);
                self.a.ja(self.allow);
            }
            None => {
                self.a.ja(self.eaddrnotavail);
            }
        }
        self.place(lback);
        self.store(off, w4(p.lback));
        self.a.ja(self.allow);
    }

    /// Jumps to `keep` when the socket being bound is UDP and shares its port with nobody
    /// (neither SO_REUSEADDR nor SO_REUSEPORT): a wildcard bind of a guest with several
    /// addresses then stays a wildcard, so it receives on all of them, and the ingress program
    /// drops what is addressed to anyone else. A socket that may share its port is narrowed
    /// like a TCP one: on the wildcard it could join a host socket's SO_REUSEPORT group (same
    /// uid 0) and take part of the host's datagrams. Falls through otherwise.
    fn udp_unshared(&mut self, keep: Label) {
        let no = self.a.new_label();
        self.a.ldx_w(R2, R6, PROTOCOL).jne32(R2, IPPROTO_UDP, no);
        for opt in [SO_REUSEADDR, SO_REUSEPORT] {
            self.a
                .st_w(R10, -4, 0)
                .mov(R1, R6)
                .mov_imm(R2, SOL_SOCKET)
                .mov_imm(R3, opt)
                .mov(R4, R10)
                .add_imm(R4, -4)
                .mov_imm(R5, 4)
                .call(FN_GETSOCKOPT)
                .jne_imm(R0, 0, no)
                .ldx_w(R2, R10, -4)
                .jne32(R2, 0, no);
        }
        self.a.ja(keep);
        self.place(no);
    }

    fn bind4(&mut self, p: &Policy) {
        self.a.ldx_w(R7, R6, USER_IP4);
        self.bind4_word(p, R7, USER_IP4);
    }

    /// Records the socket's cookie in the guest's `wild` map: its bind was to the wildcard,
    /// so once it listens the sock_ops program gives it every address of the guest, not only
    /// the first one it was narrowed to. (A bind that then fails leaves a stale mark, which
    /// can only widen a later listener of the same socket to the guest's own addresses; the
    /// LRU map forgets marks of closed sockets.)
    fn mark_wild(&mut self, p: &Policy) {
        let Some(m) = p.maps else { return };
        self.a
            .mov(R1, R6)
            .call(FN_GET_SOCKET_COOKIE)
            .stx_dw(R10, -8, R0)
            .st_w(R10, -12, 1)
            .ld_map_fd(R1, m.wild)
            .mov(R2, R10)
            .add_imm(R2, -8)
            .mov(R3, R10)
            .add_imm(R3, -12)
            .mov_imm(R4, 0)
            .call(FN_MAP_UPDATE);
    }

    fn load6(&mut self, base: i16) {
        self.a
            .ldx_w(R2, R6, base)
            .ldx_w(R3, R6, base + 4)
            .ldx_w(R4, R6, base + 8)
            .ldx_w(R5, R6, base + 12);
    }

    /// Jumps to `to` when R2..R4 are the v4-mapped prefix.
    fn if_mapped(&mut self, to: Label) {
        let next = self.a.new_label();
        self.a
            .jne32(R2, 0, next)
            .jne32(R3, 0, next)
            .jeq32(R4, MAPPED, to);
        self.place(next);
    }

    fn bind6(&mut self, p: &Policy) {
        let (wild, mapped) = (self.a.new_label(), self.a.new_label());
        self.load6(USER_IP6);
        self.match6([0; 4], wild);
        self.match6(V6_LOOPBACK, self.eaddrnotavail);
        self.if_mapped(mapped);
        for ip in &p.v6 {
            self.match6(w6(*ip), self.allow);
        }
        self.a.ja(self.eaddrnotavail);
        self.place(wild);
        let to: Option<[u32; 4]> = match (p.v6.first(), p.v4.first()) {
            (Some(ip), _) => Some(w6(*ip)),
            (None, Some(ip)) => Some([0, 0, MAPPED, w4(*ip)]),
            (None, None) => None,
        };
        match to {
            Some(w) => {
                if p.v6.len() + p.v4.len() >= 2 {
                    self.udp_unshared(self.allow);
                }
                for (i, v) in w.iter().enumerate() {
                    self.store(USER_IP6 + 4 * i as i16, *v);
                }
                self.mark_wild(p);
                self.a.ja(self.allow);
            }
            None => {
                self.a.ja(self.eaddrnotavail);
            }
        }
        self.place(mapped);
        self.bind4_word(p, R5, USER_IP6 + 12);
    }

    /// The destination rules on the IPv4 word in `r` (at `off` in the context): leaves the
    /// source the socket should get in R7 and jumps to `src`; refusals jump to their exits.
    fn dest4(&mut self, p: &Policy, r: super::asm::Reg, off: i16, src: Label) {
        let (to_lback, from_lback) = (self.a.new_label(), self.a.new_label());
        self.a
            .jeq32(r, 0, to_lback)
            .jeq32(r, LOOP1, to_lback)
            .jeq32(r, w4(p.lback), from_lback)
            .mov(R1, r)
            .and_imm(R1, 0xff)
            .jeq32(R1, 127, self.enetunreach);
        match p.v4.first() {
            Some(ip) => {
                self.a.mov_imm(R7, w4(*ip) as i32).ja(src);
            }
            None => {
                self.a.ja(self.enetunreach);
            }
        }
        self.place(to_lback);
        self.store(off, w4(p.lback));
        self.place(from_lback);
        self.a.mov_imm(R7, w4(p.lback) as i32).ja(src);
    }

    /// connect4 (`sendmsg` false) or sendmsg4.
    fn connect4(&mut self, p: &Policy, sendmsg: bool) {
        let src = self.a.new_label();
        self.a.ldx_w(R8, R6, USER_IP4);
        self.dest4(p, R8, USER_IP4, src);
        self.place(src);
        if sendmsg {
            self.source4(p, MSG_SRC_IP4);
        } else {
            self.pin4(false);
        }
    }

    /// sendmsg: the source the kernel would use (bound address or IP_PKTINFO) must be the
    /// guest's; none yet becomes R7.
    fn source4(&mut self, p: &Policy, off: i16) {
        let set = self.a.new_label();
        self.a.ldx_w(R8, R6, off).jeq32(R8, 0, set);
        self.a.jeq32(R8, w4(p.lback), self.allow);
        for ip in &p.v4 {
            self.a.jeq32(R8, w4(*ip), self.allow);
        }
        self.a.ja(self.eperm);
        self.place(set);
        self.a.stx_w(R6, off, R7).ja(self.allow);
    }

    /// bpf_bind(ctx, {AF_INET or v4-mapped AF_INET6, R7, port 0}); its result is ignored (a
    /// socket bound already keeps its address).
    fn pin4(&mut self, mapped: bool) {
        if mapped {
            self.a
                .st_w(R10, -32, AF_INET6)
                .st_w(R10, -28, 0)
                .st_w(R10, -24, 0)
                .st_w(R10, -20, 0)
                .st_w(R10, -16, MAPPED)
                .stx_w(R10, -12, R7)
                .st_w(R10, -8, 0)
                .st_w(R10, -4, 0);
            self.call_bind(-32, 28);
        } else {
            self.a
                .st_w(R10, -16, AF_INET)
                .stx_w(R10, -12, R7)
                .st_w(R10, -8, 0)
                .st_w(R10, -4, 0);
            self.call_bind(-16, 16);
        }
    }

    fn call_bind(&mut self, at: i32, len: i32) {
        self.a
            .mov(R1, R6)
            .mov(R2, R10)
            .add_imm(R2, at)
            .mov_imm(R3, len)
            .call(FN_BIND)
            .ja(self.allow);
    }

    /// connect6 or sendmsg6. (A v4-mapped destination of an IPv6 UDP socket's sendmsg goes
    /// through the IPv4 path and its sendmsg4 program; connect6 sees it and follows the IPv4
    /// rules.)
    fn connect6(&mut self, p: &Policy, sendmsg: bool) {
        let mapped = self.a.new_label();
        self.load6(USER_IP6);
        self.match6([0; 4], self.enetunreach);
        self.match6(V6_LOOPBACK, self.enetunreach);
        self.if_mapped(mapped);
        let Some(first) = p.v6.first() else {
            self.a.ja(self.enetunreach);
            self.place(mapped);
            self.mapped_dest(p, sendmsg);
            return;
        };
        if sendmsg {
            let set = self.a.new_label();
            self.load6(MSG_SRC_IP6);
            self.match6([0; 4], set);
            for ip in &p.v6 {
                self.match6(w6(*ip), self.allow);
            }
            self.a.ja(self.eperm);
            self.place(set);
            for (i, v) in w6(*first).iter().enumerate() {
                self.store(MSG_SRC_IP6 + 4 * i as i16, *v);
            }
            self.a.ja(self.allow);
        } else {
            let w = w6(*first);
            self.a.st_w(R10, -32, AF_INET6).st_w(R10, -28, 0);
            for (i, v) in w.iter().enumerate() {
                self.a.st_w(R10, -24 + 4 * i as i16, *v);
            }
            self.a.st_w(R10, -8, 0).st_w(R10, -4, 0);
            self.call_bind(-32, 28);
        }
        self.place(mapped);
        self.mapped_dest(p, sendmsg);
    }

    fn mapped_dest(&mut self, p: &Policy, sendmsg: bool) {
        if sendmsg {
            // Not reached: the kernel hands v4-mapped datagrams to the IPv4 path.
            self.a.ja(self.allow);
            return;
        }
        let src = self.a.new_label();
        self.dest4(p, R5, USER_IP6 + 12, src);
        self.place(src);
        self.pin4(true);
    }

    /// Refuses unix connects and sends to an abstract name (the host's namespace of them is
    /// the host's and every guest's). The context's port field is the sockaddr's bytes 2-3,
    /// for a `sockaddr_un` the first two of `sun_path`: the first is NUL for an abstract name.
    fn unix(&mut self) {
        let refuse = self.a.new_label();
        self.a
            .ldx_w(R2, R6, USER_PORT)
            .and_imm(R2, 0xff)
            .jne32(R2, 0, self.allow)
            .ja(refuse);
        self.place(refuse);
        self.a
            .mov_imm(R1, -ECONNREFUSED)
            .call(FN_SET_RETVAL)
            .mov_imm(R0, 0)
            .exit();
    }

    /// The ingress filter: a packet for a socket of the guest whose destination is not one of
    /// the guest's addresses, its lback, a multicast group or the limited broadcast is
    /// dropped. Wildcard UDP sockets (kept for guests with several addresses, and an unbound
    /// socket's ephemeral port after sendto) would otherwise receive what is sent to the
    /// host's addresses; a dual-stack `[::]` socket's IPv4 packets are checked as IPv4. The
    /// destination is read from the packet (cgroup skb programs see it from the network
    /// header on).
    fn ingress(&mut self, p: &Policy) {
        let (v4, v6, drop, pass) = (
            self.a.new_label(),
            self.a.new_label(),
            self.a.new_label(),
            self.a.new_label(),
        );
        self.a
            .ldx_w(R2, R6, SKB_PROTOCOL)
            .jeq32(R2, ETH_IP, v4)
            .jeq32(R2, ETH_IPV6, v6)
            .ja(pass);
        self.place(v4);
        self.load_bytes(16, -8, 4, pass);
        self.a.ldx_w(R2, R10, -8).jeq32(R2, w4(p.lback), pass);
        for ip in &p.v4 {
            self.a.jeq32(R2, w4(*ip), pass);
        }
        self.a
            .jeq32(R2, u32::MAX, pass)
            .mov(R1, R2)
            .and_imm(R1, 0xf0)
            .jeq32(R1, 0xe0, pass)
            .ja(drop);
        self.place(v6);
        self.load_bytes(24, -16, 16, pass);
        self.a
            .ldx_w(R2, R10, -16)
            .ldx_w(R3, R10, -12)
            .ldx_w(R4, R10, -8)
            .ldx_w(R5, R10, -4);
        for ip in &p.v6 {
            self.match6(w6(*ip), pass);
        }
        self.a
            .mov(R1, R2)
            .and_imm(R1, 0xff)
            .jeq32(R1, 0xff, pass)
            .ja(drop);
        self.place(drop);
        self.a.mov_imm(R0, 0).exit();
        self.place(pass);
        self.count(p, 0);
        self.a.ja(self.allow);
    }

    /// `len` bytes of the packet at `off` (from its network header) to the stack at `to`; a
    /// packet too short for them goes to `short` (the kernel's own checks drop a truncated
    /// header).
    fn load_bytes(&mut self, off: i32, to: i32, len: i32, short: Label) {
        self.a
            .mov(R1, R6)
            .mov_imm(R2, off)
            .mov(R3, R10)
            .add_imm(R3, to)
            .mov_imm(R4, len)
            .call(FN_SKB_LOAD_BYTES)
            .jne_imm(R0, 0, short);
    }

    /// Adds the packet (skb->len: from the IP header on) to the guest's counters at `off`
    /// (0: received, 16: sent) and falls through; nothing without maps.
    fn count(&mut self, p: &Policy, off: i16) {
        let Some(m) = p.maps else { return };
        let done = self.a.new_label();
        self.a
            .st_w(R10, -20, 0)
            .ld_map_fd(R1, m.counters)
            .mov(R2, R10)
            .add_imm(R2, -20)
            .call(FN_MAP_LOOKUP)
            .jeq_imm(R0, 0, done)
            .ldx_w(R1, R6, 0)
            .xadd_dw(R0, off, R1)
            .mov_imm(R1, 1)
            .xadd_dw(R0, off + 8, R1);
        self.place(done);
    }

    /// Refuses ICMP datagram sockets (plain return 0: EPERM) unless `raw_icmp`.
    fn sock_create(&mut self, p: &Policy) {
        if p.raw_icmp {
            self.a.ja(self.allow);
            return;
        }
        let deny = self.a.new_label();
        self.a
            .ldx_w(R2, R6, SK_TYPE)
            .jne32(R2, 2, self.allow) // SOCK_DGRAM
            .ldx_w(R2, R6, SK_PROTOCOL)
            .jeq32(R2, 1, deny) // IPPROTO_ICMP
            .jeq32(R2, 58, deny) // IPPROTO_ICMPV6
            .ja(self.allow);
        self.place(deny);
        self.a.mov_imm(R0, 0).exit();
    }

    fn show4(&mut self, p: &Policy) {
        self.a
            .ldx_w(R2, R6, USER_IP4)
            .jne32(R2, w4(p.lback), self.allow);
        self.store(USER_IP4, LOOP1);
        self.a.ja(self.allow);
    }

    fn show6(&mut self, p: &Policy) {
        self.load6(USER_IP6);
        let hit = self.a.new_label();
        self.match6([0, 0, MAPPED, w4(p.lback)], hit);
        self.a.ja(self.allow);
        self.place(hit);
        self.store(USER_IP6 + 12, LOOP1);
        self.a.ja(self.allow);
    }
}

/// The loopback address of a guest without `interfaces/lback`: 127.HI.LO.1 for context
/// HI*256+LO, never 127.0.0.1 (contexts start at 2) and never another guest's.
pub fn default_lback(context: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, (context >> 8) as u8, context as u8, 1)
}

#[cfg(test)]
mod tests;
