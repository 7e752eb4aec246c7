//! Wildcard receive for shared-stack guests (docs/network.md, "Wildcard listeners"): one
//! BPF_PROG_TYPE_SK_LOOKUP program for the host's network namespace, and a sock_ops program
//! per guest that records its TCP listeners where the lookup program finds them.
//!
//! The bind programs narrow a guest's wildcard bind to its first address (so two guests, or a
//! guest and the host, never hold the same wildcard port) and mark the socket in the guest's
//! `wild` map. When a socket of the guest listens, its sock_ops program puts it in the guest's
//! socket hash under every address it should receive on: each of the guest's addresses of its
//! family and its loopback address (lback) for a marked or never-bound socket, the one address
//! it was bound to otherwise. A listener that was never bound (listen without bind: 0.0.0.0 or
//! `::` and an ephemeral port) also goes into the host-wide `ports` hash under its port.
//!
//! The lookup program runs before the kernel's own listener lookup, for every TCP connection
//! request arriving in the host's namespace:
//! - destination an address of a guest (the host-wide `guests` map of maps: address -> that
//!   guest's socket hash): the guest's listener for (address, port) gets it, else it is refused
//!   (a reset, as for a closed port) — a host service on the wildcard never sees traffic meant
//!   for a guest, nor does another guest;
//! - any other destination: refused when a guest's never-bound listener holds the port (it is
//!   on the wildcard, but the host's addresses are not the guest's), else the kernel's lookup.
//!
//! UDP is left to the kernel's lookup (a UDP socket cannot be recorded: no sock_ops event
//! fires for it, and cgroup programs may not update socket maps): a UDP wildcard of a guest
//! with several addresses stays a wildcard, and the guest's ingress program (progs.rs) drops
//! what reaches it addressed to anyone else.

use super::asm::{Asm, AsmError, Insn, Label, R0, R1, R10, R2, R3, R4, R6, R7, R8};
use super::progs::{w4, w6, Policy, MAPPED};

/// `BPF_PROG_TYPE_SK_LOOKUP`.
pub const PROG_TYPE_SK_LOOKUP: u32 = 30;
/// `BPF_SK_LOOKUP`.
pub const ATTACH_SK_LOOKUP: u32 = 36;

/// The key of a guest's socket hash: an IPv6 address (IPv4 as `::ffff:a.b.c.d`), the port in
/// host order, the protocol (6).
pub const SOCK_KEY: u32 = 24;

const FN_MAP_LOOKUP: i32 = 1;
const FN_MAP_DELETE: i32 = 3;
const FN_SOCK_HASH_UPDATE: i32 = 70;
const FN_SK_RELEASE: i32 = 86;
const FN_SK_ASSIGN: i32 = 124;
const FN_GET_SOCKET_COOKIE: i32 = 46;

const IPPROTO_TCP: u32 = 6;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

// struct bpf_sk_lookup.
const LK_FAMILY: i16 = 8;
const LK_PROTOCOL: i16 = 12;
const LK_LOCAL_IP4: i16 = 40;
const LK_LOCAL_IP6: i16 = 44;
const LK_LOCAL_PORT: i16 = 60;

// struct bpf_sock_ops.
const OPS_OP: i16 = 0;
const OPS_FAMILY: i16 = 20;
const OPS_LOCAL_IP4: i16 = 28;
const OPS_LOCAL_IP6: i16 = 48;
const OPS_LOCAL_PORT: i16 = 68;
/// `BPF_SOCK_OPS_TCP_LISTEN_CB`: right after listen(2) moved the socket to LISTEN.
const TCP_LISTEN_CB: u32 = 11;

/// Where the key is built on the stack: address at -24, port at -8, protocol at -4.
const KEY: i16 = -24;
const PORT: i16 = -8;
const COOKIE: i16 = -32;

/// The host-wide lookup program. `guests`: address (16 bytes) -> a guest's socket hash;
/// `ports`: port (4 bytes) -> a guest's never-bound listener.
pub fn sk_lookup(guests: i32, ports: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (pass, drop, six, have, host) = (
        a.new_label(),
        a.new_label(),
        a.new_label(),
        a.new_label(),
        a.new_label(),
    );
    a.mov(R6, R1)
        .ldx_w(R2, R6, LK_PROTOCOL)
        .jne32(R2, IPPROTO_TCP, pass)
        .ldx_w(R2, R6, LK_FAMILY)
        .jne32(R2, AF_INET, six)
        .st_w(R10, KEY, 0)
        .st_w(R10, KEY + 4, 0)
        .st_w(R10, KEY + 8, MAPPED)
        .ldx_w(R3, R6, LK_LOCAL_IP4)
        .stx_w(R10, KEY + 12, R3)
        .ja(have);
    a.label(six)?;
    for i in 0..4 {
        a.ldx_w(R3, R6, LK_LOCAL_IP6 + 4 * i)
            .stx_w(R10, KEY + 4 * i, R3);
    }
    a.label(have)?;
    a.ldx_w(R3, R6, LK_LOCAL_PORT)
        .stx_w(R10, PORT, R3)
        .st_w(R10, PORT + 4, IPPROTO_TCP)
        .ld_map_fd(R1, guests)
        .mov(R2, R10)
        .add_imm(R2, KEY as i32)
        .call(FN_MAP_LOOKUP)
        .jeq_imm(R0, 0, host)
        // A guest's address: its listener or nothing.
        .mov(R1, R0)
        .mov(R2, R10)
        .add_imm(R2, KEY as i32)
        .call(FN_MAP_LOOKUP)
        .jeq_imm(R0, 0, drop)
        .mov(R7, R0)
        .mov(R1, R6)
        .mov(R2, R7)
        .mov_imm(R3, 0)
        .call(FN_SK_ASSIGN)
        .mov(R8, R0)
        .mov(R1, R7)
        .call(FN_SK_RELEASE)
        .jne_imm(R8, 0, drop)
        .ja(pass);
    // The host's (or nobody's) address: not to a guest's never-bound listener.
    a.label(host)?;
    a.ld_map_fd(R1, ports)
        .mov(R2, R10)
        .add_imm(R2, PORT as i32)
        .call(FN_MAP_LOOKUP)
        .jeq_imm(R0, 0, pass)
        .mov(R1, R0)
        .call(FN_SK_RELEASE)
        .ja(drop);
    a.label(pass)?;
    a.mov_imm(R0, 1).exit(); // SK_PASS
    a.label(drop)?;
    a.mov_imm(R0, 0).exit(); // SK_DROP
    a.finish()
}

/// The guest's sock_ops program's body (after the namespace check of progs.rs's prologue,
/// R6 the context; `done` exits). Without maps it does nothing.
pub(super) fn sock_ops(a: &mut Asm, p: &Policy, done: Label) -> Result<(), AsmError> {
    let Some(m) = p.maps else {
        a.ja(done);
        return Ok(());
    };
    let (six, one, unbound4, unbound6, all4) = (
        a.new_label(),
        a.new_label(),
        a.new_label(),
        a.new_label(),
        a.new_label(),
    );
    a.ldx_w(R2, R6, OPS_OP)
        .jne32(R2, TCP_LISTEN_CB, done)
        .ldx_w(R7, R6, OPS_LOCAL_PORT)
        .stx_w(R10, PORT, R7)
        .st_w(R10, PORT + 4, IPPROTO_TCP)
        .ldx_w(R2, R6, OPS_FAMILY)
        .jeq32(R2, AF_INET6, six)
        .jne32(R2, AF_INET, done);
    // IPv4: the key is the bound address, v4-mapped.
    a.ldx_w(R8, R6, OPS_LOCAL_IP4)
        .st_w(R10, KEY, 0)
        .st_w(R10, KEY + 4, 0)
        .st_w(R10, KEY + 8, MAPPED)
        .stx_w(R10, KEY + 12, R8)
        .jeq32(R8, 0, unbound4);
    match p.v4.first() {
        Some(first) => {
            a.jne32(R8, w4(*first), one);
            marked(a, m.wild, one);
            a.ja(all4);
        }
        None => {
            a.ja(one);
        }
    }

    // IPv6: the key is the bound address as it is.
    a.label(six)?;
    for i in 0..4 {
        a.ldx_w(R2, R6, OPS_LOCAL_IP6 + 4 * i)
            .stx_w(R10, KEY + 4 * i, R2);
    }
    let wild6 = a.new_label();
    let mapped_first = a.new_label();
    let not_unbound = a.new_label();
    for i in 0..4 {
        a.ldx_w(R2, R10, KEY + 4 * i).jne32(R2, 0, not_unbound);
    }
    a.ja(unbound6);
    a.label(not_unbound)?;
    if let Some(first) = p.v6.first() {
        match_key(a, w6(*first), wild6);
    }
    if let Some(first) = p.v4.first() {
        match_key(a, [0, 0, MAPPED, w4(*first)], mapped_first);
    }
    a.ja(one);
    if !p.v6.is_empty() {
        a.label(wild6)?;
        marked(a, m.wild, one);
        put_all(a, m.socks, &v6_keys(p));
        a.ja(done);
    }
    if !p.v4.is_empty() {
        a.label(mapped_first)?;
        marked(a, m.wild, one);
        a.ja(all4);
    }

    // The one address the socket is bound to (the key as built).
    a.label(one)?;
    sock_hash_update(a, m.socks, KEY);
    a.ja(done);

    // Never bound: the port is held for the guest on the host's addresses too.
    a.label(unbound4)?;
    sock_hash_update(a, m.ports, PORT);
    a.ja(all4);
    a.label(unbound6)?;
    sock_hash_update(a, m.ports, PORT);
    // (an IPv6 socket on `::` takes IPv4 connections too, unless IPV6_V6ONLY)
    put_all(a, m.socks, &v6_keys(p));
    a.label(all4)?;
    put_all(a, m.socks, &v4_keys(p));
    a.ja(done);
    Ok(())
}

/// The keys of every IPv4 address of the guest and its lback, v4-mapped.
fn v4_keys(p: &Policy) -> Vec<[u32; 4]> {
    p.v4.iter()
        .chain(std::iter::once(&p.lback))
        .map(|ip| [0, 0, MAPPED, w4(*ip)])
        .collect()
}

fn v6_keys(p: &Policy) -> Vec<[u32; 4]> {
    p.v6.iter().map(|ip| w6(*ip)).collect()
}

/// Jumps to `to` when the address of the key on the stack is `w`; falls through otherwise.
fn match_key(a: &mut Asm, w: [u32; 4], to: Label) {
    let next = a.new_label();
    for (i, v) in w.iter().enumerate().take(3) {
        a.ldx_w(R2, R10, KEY + 4 * i as i16).jne32(R2, *v, next);
    }
    a.ldx_w(R2, R10, KEY + 12).jeq32(R2, w[3], to);
    // `next` is always jumped to by the compares above.
    let _ = a.label(next);
}

/// Jumps to `not` unless the socket's cookie is in the `wild` map.
fn marked(a: &mut Asm, wild: i32, not: Label) {
    a.mov(R1, R6)
        .call(FN_GET_SOCKET_COOKIE)
        .stx_dw(R10, COOKIE, R0)
        .ld_map_fd(R1, wild)
        .mov(R2, R10)
        .add_imm(R2, COOKIE as i32)
        .call(FN_MAP_LOOKUP)
        .jeq_imm(R0, 0, not)
        // The mark has done its work.
        .ld_map_fd(R1, wild)
        .mov(R2, R10)
        .add_imm(R2, COOKIE as i32)
        .call(FN_MAP_DELETE);
}

/// The socket into `map` under the key at `key` on the stack. The result is ignored: when the
/// guest's map is full its new listener is not reachable on that address (the guest's own
/// loss; the map is the guest's alone).
fn sock_hash_update(a: &mut Asm, map: i32, key: i16) {
    a.mov(R1, R6)
        .ld_map_fd(R2, map)
        .mov(R3, R10)
        .add_imm(R3, key as i32)
        .mov_imm(R4, 0)
        .call(FN_SOCK_HASH_UPDATE);
}

fn put_all(a: &mut Asm, map: i32, keys: &[[u32; 4]]) {
    for k in keys {
        for (i, v) in k.iter().enumerate() {
            a.st_w(R10, KEY + 4 * i as i16, *v);
        }
        sock_hash_update(a, map, KEY);
    }
}
