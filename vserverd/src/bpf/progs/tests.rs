//! The programs run on a small interpreter of the instructions the assembler emits, with the
//! three helpers modelled, so their decisions are tested without root; the kernel's verifier
//! and real sockets are the integration tests' (tests/tests/shared_net.rs).

use super::*;

const CTX: u64 = 0x1_0000_0000;
const FP: u64 = 0x2_0000_0000;
const HOST: u64 = 4242;

struct Out {
    ret: u64,
    ctx: [u8; 72],
    retval: Option<i32>,
    bound: Option<Vec<u8>>,
    /// map_update_elem calls: (map, key, value).
    marked: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

const SOCKET_COOKIE: u64 = 0x0102_0304_0506_0708;

thread_local! {
    /// The socket options bpf_getsockopt reports set: bit N for option N.
    static SOCKOPTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The packet bpf_skb_load_bytes reads, from its network header.
    static PACKET: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// What bpf_get_current_uid_gid says (gid 0).
    static UID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The counters map's value (one CPU).
    static COUNTED: std::cell::Cell<[u8; 32]> = const { std::cell::Cell::new([0; 32]) };
}

/// Where the counters map's value lives.
const VAL: u64 = 0x3_0000_0000;

fn mem<'a>(ctx: &'a mut [u8; 72], stack: &'a mut [u8; 512], addr: u64, n: usize) -> &'a mut [u8] {
    if (CTX..CTX + 72).contains(&addr) {
        let o = (addr - CTX) as usize;
        &mut ctx[o..o + n]
    } else {
        let o = (addr - (FP - 512)) as usize;
        &mut stack[o..o + n]
    }
}

fn run(prog: &[Insn], mut ctx: [u8; 72], cookie: u64) -> Out {
    let mut r = [0u64; 11];
    let mut stack = [0u8; 512];
    let (mut retval, mut bound, mut marked) = (None, None, vec![]);
    r[1] = CTX;
    r[10] = FP;
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as i64 as u64;
        let target = (pc as i64 + 1 + i.off as i64) as usize;
        pc += 1;
        match i.code {
            0xbf => r[d] = r[s],
            0xb7 => r[d] = imm,
            0x07 => r[d] = r[d].wrapping_add(imm),
            0x57 => r[d] &= imm,
            0x18 => {
                r[d] = (i.imm as u32 as u64) | ((prog[pc].imm as u32 as u64) << 32);
                pc += 1;
            }
            0x61 => {
                let b = mem(
                    &mut ctx,
                    &mut stack,
                    r[s].wrapping_add(i.off as i64 as u64),
                    4,
                );
                r[d] = u32::from_le_bytes(b.try_into().unwrap()) as u64;
            }
            0x7b => mem(
                &mut ctx,
                &mut stack,
                r[d].wrapping_add(i.off as i64 as u64),
                8,
            )
            .copy_from_slice(&r[s].to_le_bytes()),
            0x63 => mem(
                &mut ctx,
                &mut stack,
                r[d].wrapping_add(i.off as i64 as u64),
                4,
            )
            .copy_from_slice(&(r[s] as u32).to_le_bytes()),
            0x62 => mem(
                &mut ctx,
                &mut stack,
                r[d].wrapping_add(i.off as i64 as u64),
                4,
            )
            .copy_from_slice(&(i.imm as u32).to_le_bytes()),
            0xdb => {
                // Atomic adds go to the counters map's value only.
                assert_eq!(i.imm, 0, "BPF_ADD");
                let o = (r[d].wrapping_add(i.off as i64 as u64) - VAL) as usize;
                COUNTED.with(|c| {
                    let mut v = c.get();
                    let n = u64::from_le_bytes(v[o..o + 8].try_into().unwrap()).wrapping_add(r[s]);
                    v[o..o + 8].copy_from_slice(&n.to_le_bytes());
                    c.set(v);
                });
            }
            0x05 => pc = target,
            0x16 if r[d] as u32 == i.imm as u32 => pc = target,
            0x56 if r[d] as u32 != i.imm as u32 => pc = target,
            0x5d if r[d] != r[s] => pc = target,
            0x15 if r[d] == imm => pc = target,
            0x55 if r[d] != imm => pc = target,
            0x16 | 0x56 | 0x5d | 0x15 | 0x55 => {}
            0x85 => {
                r[0] = match i.imm {
                    122 => {
                        assert_eq!(r[1], CTX);
                        cookie
                    }
                    187 => {
                        retval = Some(r[1] as i32);
                        0
                    }
                    64 => {
                        assert_eq!(r[1], CTX);
                        let n = r[3] as usize;
                        bound = Some(mem(&mut ctx, &mut stack, r[2], n).to_vec());
                        0
                    }
                    46 => {
                        assert_eq!(r[1], CTX);
                        SOCKET_COOKIE
                    }
                    2 => {
                        let key = mem(&mut ctx, &mut stack, r[2], 8).to_vec();
                        let value = mem(&mut ctx, &mut stack, r[3], 4).to_vec();
                        marked.push((r[1], key, value));
                        0
                    }
                    1 if r[1] == 34 => VAL,
                    15 => UID.with(|u| u.get()),
                    57 => {
                        // bpf_getsockopt(ctx, SOL_SOCKET, opt, buf, 4): the socket's option.
                        assert_eq!((r[1], r[2], r[5]), (CTX, 1, 4));
                        let v = SOCKOPTS.with(|o| o.get()) >> (r[3] as u32 % 32) & 1;
                        mem(&mut ctx, &mut stack, r[4], 4).copy_from_slice(&v.to_le_bytes());
                        0
                    }
                    26 => {
                        // bpf_skb_load_bytes(skb, off, buf, len) from the packet.
                        assert_eq!(r[1], CTX);
                        let (off, n) = (r[2] as usize, r[4] as usize);
                        match PACKET.with(|p| p.borrow().get(off..off + n).map(<[u8]>::to_vec)) {
                            Some(b) => {
                                mem(&mut ctx, &mut stack, r[3], n).copy_from_slice(&b);
                                0
                            }
                            None => -14i64 as u64,
                        }
                    }
                    other => panic!("helper {other}"),
                };
                // Calls clobber the argument registers.
                r[1..6].fill(0xdead_beef);
            }
            0x95 => {
                return Out {
                    ret: r[0],
                    ctx,
                    retval,
                    bound,
                    marked,
                }
            }
            c => panic!("opcode {c:#x}"),
        }
    }
    panic!("no exit");
}

fn policy() -> Policy {
    Policy {
        netns_cookie: HOST,
        v4: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
        v6: vec!["fd00::2".parse().unwrap()],
        lback: "127.0.2.1".parse().unwrap(),
        raw_icmp: false,
        bind_low_uid: None,
        maps: None,
    }
}

fn ctx4(ip: &str) -> [u8; 72] {
    let mut c = [0u8; 72];
    c[4..8].copy_from_slice(&ip.parse::<Ipv4Addr>().unwrap().octets());
    c
}

fn ctx6(ip: &str) -> [u8; 72] {
    let mut c = [0u8; 72];
    c[8..24].copy_from_slice(&ip.parse::<Ipv6Addr>().unwrap().octets());
    c
}

fn ip4(c: &[u8; 72], off: usize) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(&c[off..off + 4]).unwrap())
}

fn ip6(c: &[u8; 72], off: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&c[off..off + 16]).unwrap())
}

fn go(h: Hook, ctx: [u8; 72]) -> Out {
    run(&program(h, &policy()).unwrap(), ctx, HOST)
}

fn refused(o: &Out, errno: i32) {
    assert_eq!((o.ret, o.retval), (0, Some(-errno)));
}

#[test]
fn bind4_narrows_the_wildcard_and_refuses_foreign_addresses() {
    let o = go(Hook::Bind4, ctx4("0.0.0.0"));
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "10.0.0.2".parse().unwrap()));
    let o = go(Hook::Bind4, ctx4("10.0.0.3"));
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "10.0.0.3".parse().unwrap()));
    let o = go(Hook::Bind4, ctx4("127.0.0.1"));
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "127.0.2.1".parse().unwrap()));
    refused(&go(Hook::Bind4, ctx4("10.0.0.9")), 99);
    refused(&go(Hook::Bind4, ctx4("127.0.3.1")), 99);
    // High last octet: compared as 32 bits, no sign extension.
    refused(&go(Hook::Bind4, ctx4("10.0.0.200")), 99);
}

#[test]
fn other_namespaces_pass_untouched() {
    let prog = program(Hook::Bind4, &policy()).unwrap();
    let o = run(&prog, ctx4("10.9.9.9"), HOST + 1);
    assert_eq!(
        (o.ret, o.retval, ip4(&o.ctx, 4)),
        (1, None, "10.9.9.9".parse().unwrap())
    );
}

#[test]
fn bind6_rules() {
    let o = go(Hook::Bind6, ctx6("::"));
    assert_eq!((o.ret, ip6(&o.ctx, 8)), (1, "fd00::2".parse().unwrap()));
    refused(&go(Hook::Bind6, ctx6("::1")), 99);
    refused(&go(Hook::Bind6, ctx6("fd00::9")), 99);
    let o = go(Hook::Bind6, ctx6("::ffff:0.0.0.0"));
    assert_eq!(
        (o.ret, ip6(&o.ctx, 8)),
        (1, "::ffff:10.0.0.2".parse().unwrap())
    );
    let o = go(Hook::Bind6, ctx6("::ffff:127.0.0.1"));
    assert_eq!(
        (o.ret, ip6(&o.ctx, 8)),
        (1, "::ffff:127.0.2.1".parse().unwrap())
    );
    refused(&go(Hook::Bind6, ctx6("::ffff:10.0.0.9")), 99);
    // A guest with IPv4 only: `::` becomes its v4-mapped address.
    let mut p = policy();
    p.v6.clear();
    let o = run(&program(Hook::Bind6, &p).unwrap(), ctx6("::"), HOST);
    assert_eq!(
        (o.ret, ip6(&o.ctx, 8)),
        (1, "::ffff:10.0.0.2".parse().unwrap())
    );
}

fn sin(ip: &str) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0];
    v.extend(ip.parse::<Ipv4Addr>().unwrap().octets());
    v.extend([0; 8]);
    v
}

#[test]
fn connect4_pins_the_source_and_remaps_loopback() {
    let o = go(Hook::Connect4, ctx4("192.0.2.7"));
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "192.0.2.7".parse().unwrap()));
    assert_eq!(o.bound, Some(sin("10.0.0.2")));
    for lo in ["127.0.0.1", "0.0.0.0"] {
        let o = go(Hook::Connect4, ctx4(lo));
        assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "127.0.2.1".parse().unwrap()));
        assert_eq!(o.bound, Some(sin("127.0.2.1")));
    }
    refused(&go(Hook::Connect4, ctx4("127.0.0.53")), 101);
}

#[test]
fn connect6_rules() {
    let o = go(Hook::Connect6, ctx6("2001:db8::1"));
    assert_eq!(o.ret, 1);
    let b = o.bound.unwrap();
    assert_eq!((b.len(), b[0]), (28, 10));
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).unwrap()),
        "fd00::2".parse::<Ipv6Addr>().unwrap()
    );
    refused(&go(Hook::Connect6, ctx6("::1")), 101);
    let o = go(Hook::Connect6, ctx6("::ffff:127.0.0.1"));
    assert_eq!(
        (o.ret, ip6(&o.ctx, 8)),
        (1, "::ffff:127.0.2.1".parse().unwrap())
    );
    let b = o.bound.unwrap();
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).unwrap()),
        "::ffff:127.0.2.1".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn sendmsg4_sources() {
    let o = go(Hook::Sendmsg4, ctx4("192.0.2.7"));
    assert_eq!((o.ret, ip4(&o.ctx, 40)), (1, "10.0.0.2".parse().unwrap()));
    let mut c = ctx4("192.0.2.7");
    c[40..44].copy_from_slice(&[10, 0, 0, 3]);
    let o = go(Hook::Sendmsg4, c);
    assert_eq!((o.ret, ip4(&o.ctx, 40)), (1, "10.0.0.3".parse().unwrap()));
    c[40..44].copy_from_slice(&[10, 0, 0, 9]);
    refused(&go(Hook::Sendmsg4, c), 1);
    let o = go(Hook::Sendmsg4, ctx4("127.0.0.1"));
    assert_eq!(
        (o.ret, ip4(&o.ctx, 4), ip4(&o.ctx, 40)),
        (
            1,
            "127.0.2.1".parse().unwrap(),
            "127.0.2.1".parse().unwrap()
        )
    );
}

#[test]
fn sendmsg6_sources() {
    let o = go(Hook::Sendmsg6, ctx6("2001:db8::1"));
    assert_eq!((o.ret, ip6(&o.ctx, 44)), (1, "fd00::2".parse().unwrap()));
    let mut c = ctx6("2001:db8::1");
    c[44..60].copy_from_slice(&"fd00::9".parse::<Ipv6Addr>().unwrap().octets());
    refused(&go(Hook::Sendmsg6, c), 1);
    refused(&go(Hook::Sendmsg6, ctx6("::1")), 101);
}

#[test]
fn names_show_loopback_as_127_0_0_1() {
    for h in [Hook::Getsockname4, Hook::Getpeername4, Hook::Recvmsg4] {
        let o = go(h, ctx4("127.0.2.1"));
        assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "127.0.0.1".parse().unwrap()));
        let o = go(h, ctx4("10.0.0.2"));
        assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "10.0.0.2".parse().unwrap()));
    }
    for h in [Hook::Getsockname6, Hook::Getpeername6, Hook::Recvmsg6] {
        let o = go(h, ctx6("::ffff:127.0.2.1"));
        assert_eq!(
            (o.ret, ip6(&o.ctx, 8)),
            (1, "::ffff:127.0.0.1".parse().unwrap())
        );
    }
}

/// Every instruction reachable from the first (the verifier refuses dead code), no jump out
/// of the program, the last instruction an exit.
fn check_flow(prog: &[Insn]) {
    let mut seen = vec![false; prog.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if pc >= prog.len() {
            panic!("falls or jumps out of the program at {pc}");
        }
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        let i = prog[pc];
        let target = (pc as i64 + 1 + i.off as i64) as usize;
        match i.code {
            0x95 => {}
            0x05 => todo.push(target),
            0x16 | 0x56 | 0x5d | 0x15 | 0x55 => todo.extend([pc + 1, target]),
            0x18 => {
                seen[pc + 1] = true;
                todo.push(pc + 2)
            }
            _ => todo.push(pc + 1),
        }
    }
    if let Some(dead) = seen.iter().position(|s| !s) {
        panic!("unreachable instruction {dead}");
    }
    assert_eq!(prog.last().unwrap().code, 0x95);
}

fn with_maps() -> Policy {
    Policy {
        maps: Some(Maps {
            wild: 31,
            socks: 32,
            ports: 33,
            counters: 34,
        }),
        ..policy()
    }
}

#[test]
fn wildcard_binds_are_marked_for_the_listener() {
    let p = with_maps();
    let o = run(&program(Hook::Bind4, &p).unwrap(), ctx4("0.0.0.0"), HOST);
    assert_eq!(ip4(&o.ctx, 4), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        o.marked,
        [(31, SOCKET_COOKIE.to_le_bytes().to_vec(), vec![1, 0, 0, 0])]
    );
    let o = run(&program(Hook::Bind6, &p).unwrap(), ctx6("::"), HOST);
    assert_eq!(o.marked.len(), 1);
    // A bind to an address (or to 127.0.0.1) is not a wildcard.
    for a in ["10.0.0.3", "10.0.0.2", "127.0.0.1"] {
        let o = run(&program(Hook::Bind4, &p).unwrap(), ctx4(a), HOST);
        assert_eq!((o.ret, o.marked.len()), (1, 0), "{a}");
    }
    // Without maps nothing is marked.
    assert!(go(Hook::Bind4, ctx4("0.0.0.0")).marked.is_empty());
}

#[test]
fn every_program_assembles_for_every_address_set() {
    let mut p = with_maps();
    for _ in 0..3 {
        for h in Hook::ALL {
            check_flow(&program(h, &p).unwrap());
        }
        check_flow(&crate::bpf::lookup::sk_lookup(3, 4).unwrap());
        p.v6.clear();
        p.v4.pop();
    }
    let mut p = policy();
    for _ in 0..3 {
        for h in Hook::ALL {
            check_flow(&program(h, &p).unwrap());
        }
        p.v6.clear();
        p.v4.pop();
    }
}

#[test]
fn default_lback_is_per_context() {
    assert_eq!(default_lback(2), Ipv4Addr::new(127, 0, 2, 1));
    assert_eq!(default_lback(46001), Ipv4Addr::new(127, 179, 177, 1));
    assert_ne!(default_lback(2), default_lback(3));
}

fn sock(ty: u32, proto: u32) -> [u8; 72] {
    let mut c = [0u8; 72];
    c[8..12].copy_from_slice(&ty.to_le_bytes());
    c[12..16].copy_from_slice(&proto.to_le_bytes());
    c
}

#[test]
fn ping_sockets_need_raw_icmp() {
    for proto in [1, 58] {
        let o = go(Hook::SockCreate, sock(2, proto));
        assert_eq!((o.ret, o.retval), (0, None));
    }
    assert_eq!(go(Hook::SockCreate, sock(2, 17)).ret, 1);
    assert_eq!(go(Hook::SockCreate, sock(1, 6)).ret, 1);
    let mut p = policy();
    p.raw_icmp = true;
    let o = run(&program(Hook::SockCreate, &p).unwrap(), sock(2, 1), HOST);
    assert_eq!(o.ret, 1);
    // Another namespace's sockets are not ours to refuse.
    let o = run(
        &program(Hook::SockCreate, &policy()).unwrap(),
        sock(2, 1),
        HOST + 1,
    );
    assert_eq!(o.ret, 1);
}

/// A unix sockaddr as the context's port field shows its first two path bytes.
fn unix_ctx(path: &[u8]) -> [u8; 72] {
    let mut c = [0u8; 72];
    c[24..26].copy_from_slice(&path[..2]);
    c
}

#[test]
fn abstract_unix_names_are_refused_paths_pass() {
    for h in [Hook::UnixConnect, Hook::UnixSendmsg] {
        refused(&go(h, unix_ctx(b"\0name")), 111);
        assert_eq!(go(h, unix_ctx(b"/run/x.sock")).ret, 1);
        // A guest's own namespace keeps its abstract names.
        let o = run(
            &program(h, &policy()).unwrap(),
            unix_ctx(b"\0name"),
            HOST + 1,
        );
        assert_eq!(o.ret, 1);
    }
}

fn udp(mut c: [u8; 72]) -> [u8; 72] {
    c[36] = 17;
    c
}

#[test]
fn a_udp_wildcard_of_several_addresses_stays_a_wildcard_unless_shared() {
    let o = go(Hook::Bind4, udp(ctx4("0.0.0.0")));
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, Ipv4Addr::UNSPECIFIED));
    let o = go(Hook::Bind6, udp(ctx6("::")));
    assert_eq!((o.ret, ip6(&o.ctx, 8)), (1, Ipv6Addr::UNSPECIFIED));
    // SO_REUSEADDR (2) or SO_REUSEPORT (15): narrowed, as TCP.
    for opt in [2, 15] {
        SOCKOPTS.with(|o| o.set(1 << opt));
        let o = go(Hook::Bind4, udp(ctx4("0.0.0.0")));
        assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "10.0.0.2".parse().unwrap()));
        let o = go(Hook::Bind6, udp(ctx6("::")));
        assert_eq!((o.ret, ip6(&o.ctx, 8)), (1, "fd00::2".parse().unwrap()));
    }
    SOCKOPTS.with(|o| o.set(0));
    // One address of the family: narrowed (single_ip).
    let mut p = policy();
    p.v4.truncate(1);
    let o = run(
        &program(Hook::Bind4, &p).unwrap(),
        udp(ctx4("0.0.0.0")),
        HOST,
    );
    assert_eq!((o.ret, ip4(&o.ctx, 4)), (1, "10.0.0.2".parse().unwrap()));
    p.v4.clear();
    let o = run(&program(Hook::Bind6, &p).unwrap(), udp(ctx6("::")), HOST);
    assert_eq!((o.ret, ip6(&o.ctx, 8)), (1, "fd00::2".parse().unwrap()));
}

fn ingress(proto: u32, packet: Vec<u8>) -> u64 {
    let mut c = [0u8; 72];
    c[16..20].copy_from_slice(&proto.to_le_bytes());
    PACKET.with(|p| *p.borrow_mut() = packet);
    go(Hook::SkbIngress, c).ret
}

fn v4_packet(dst: &str) -> Vec<u8> {
    let mut v = vec![0x45; 20];
    v[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    v
}

fn v6_packet(dst: &str) -> Vec<u8> {
    let mut v = vec![0x60; 40];
    v[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    v
}

#[test]
fn ingress_drops_what_is_not_addressed_to_the_guest() {
    let (ip, ip6) = (0x0008, 0xdd86);
    for ok in [
        "10.0.0.2",
        "10.0.0.3",
        "127.0.2.1",
        "224.0.0.251",
        "255.255.255.255",
    ] {
        assert_eq!(ingress(ip, v4_packet(ok)), 1, "{ok}");
    }
    for no in ["10.0.0.9", "127.0.0.1", "127.0.3.1", "10.0.0.255"] {
        assert_eq!(ingress(ip, v4_packet(no)), 0, "{no}");
    }
    assert_eq!(ingress(ip6, v6_packet("fd00::2")), 1);
    assert_eq!(ingress(ip6, v6_packet("ff02::fb")), 1);
    assert_eq!(ingress(ip6, v6_packet("fd00::9")), 0);
    assert_eq!(ingress(ip6, v6_packet("::1")), 0);
    // A header too short to read, another ethertype, another namespace: passed.
    assert_eq!(ingress(ip, vec![0x45; 10]), 1);
    assert_eq!(ingress(0x0608, vec![]), 1);
    let mut c = [0u8; 72];
    c[16..20].copy_from_slice(&0x0008u32.to_le_bytes());
    PACKET.with(|p| *p.borrow_mut() = v4_packet("10.0.0.9"));
    let prog = program(Hook::SkbIngress, &policy()).unwrap();
    assert_eq!(run(&prog, c, HOST + 1).ret, 1);
}

#[test]
fn traffic_is_counted_in_the_host_namespace_only() {
    COUNTED.with(|c| c.set([0; 32]));
    let p = with_maps();
    let skb = |len: u32| {
        let mut c = [0u8; 72];
        c[0..4].copy_from_slice(&len.to_le_bytes());
        c[16..20].copy_from_slice(&0x0008u32.to_le_bytes());
        c
    };
    let (ing, eg) = (
        program(Hook::SkbIngress, &p).unwrap(),
        program(Hook::SkbEgress, &p).unwrap(),
    );
    PACKET.with(|x| *x.borrow_mut() = v4_packet("10.0.0.3"));
    assert_eq!(run(&ing, skb(1500), HOST).ret, 1);
    // Dropped: not counted.
    PACKET.with(|x| *x.borrow_mut() = v4_packet("10.0.0.9"));
    assert_eq!(run(&ing, skb(700), HOST).ret, 0);
    assert_eq!(run(&eg, skb(60), HOST).ret, 1);
    assert_eq!(run(&eg, skb(40), HOST).ret, 1);
    // Another namespace's traffic is not the guest's on the host's stack.
    assert_eq!(run(&eg, skb(999), HOST + 1).ret, 1);
    let c = Counters::sum(&COUNTED.with(|c| c.get()));
    assert_eq!(
        c,
        Counters {
            rx_bytes: 1500,
            rx_packets: 1,
            tx_bytes: 100,
            tx_packets: 2
        }
    );
}

#[test]
fn a_user_namespace_guests_root_binds_low_ports() {
    UID.with(|u| u.set(600_000));
    let mut p = policy();
    // Without: plain allow (the kernel checks CAP_NET_BIND_SERVICE).
    assert_eq!(go(Hook::Bind4, ctx4("10.0.0.3")).ret, 1);
    p.bind_low_uid = Some(600_000);
    for (h, c) in [
        (Hook::Bind4, ctx4("10.0.0.3")),
        (Hook::Bind4, ctx4("0.0.0.0")),
        (Hook::Bind6, ctx6("::")),
    ] {
        assert_eq!(run(&program(h, &p).unwrap(), c, HOST).ret, 3, "{h:?}");
    }
    // Refusals stay refusals; another uid of the guest (a user inside) gets the plain allow;
    // another namespace's socket is untouched.
    refused(
        &run(&program(Hook::Bind4, &p).unwrap(), ctx4("10.0.0.9"), HOST),
        99,
    );
    let bind4 = program(Hook::Bind4, &p).unwrap();
    assert_eq!(run(&bind4, ctx4("10.0.0.9"), HOST + 1).ret, 1);
    UID.with(|u| u.set(601_000));
    assert_eq!(run(&bind4, ctx4("10.0.0.3"), HOST).ret, 1);
    // Only bind programs.
    assert!(!program(Hook::Connect4, &p)
        .unwrap()
        .iter()
        .any(|i| i.code == 0x85 && i.imm == 15));
}
