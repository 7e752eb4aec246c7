//! The shared-stack mode's socket programs on the real kernel: loaded through the verifier,
//! linked to a cgroup in the unified hierarchy, pinned in a bpffs; a process in the cgroup,
//! in a network namespace the test makes (standing in for the host's), is narrowed to its
//! addresses. Probes run as Python scripts (tests/tests/sockbpf.py).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::require;
use vserverd::bpf::progs::{default_lback, Hook, Policy};
use vserverd::isolate::{cgroup::Layout, sockbpf};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sockbpf.py");

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Tests of one process run in parallel: each fixture its own cgroup.
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

struct Fixture {
    _dir: tempfile::TempDir,
    run: PathBuf,
    ns: PathBuf,
    cg: PathBuf,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !(require(harness::is_root(), "root")
            && kernel_has_the_programs()
            && require(Path::new("/usr/bin/python3").exists(), "python3")
            && require(Path::new("/usr/bin/nsenter").exists(), "nsenter"))
        {
            return None;
        }
        let layout = Layout::detect().unwrap();
        let Some(v2) = layout.v2() else {
            let _ = require(false, "a cgroup v2 hierarchy");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let ns = dir.path().join("net");
        std::fs::File::create(&ns).unwrap();
        sh(&["unshare", &format!("--net={}", ns.display()), "true"]);
        let cg = v2.mount.join(&v2.own).join(format!(
            "vsd-sockbpf-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir(&cg).unwrap();
        let f = Fixture {
            _dir: dir,
            run,
            ns,
            cg,
        };
        for a in [
            "ip link set lo up",
            "ip addr add 10.88.0.2/32 dev lo",
            "ip addr add 10.88.0.3/32 dev lo",
            "ip addr add 10.88.0.9/32 dev lo",
            "ip addr add fd88::2/128 dev lo nodad",
            // Ping sockets for gid 0, as Debian's systemd sysctl.d has it for every group.
            "sysctl -q -w net.ipv4.ping_group_range=0\t0",
        ] {
            f.in_net(&a.split(' ').collect::<Vec<_>>());
        }
        Some(f)
    }

    fn in_net(&self, args: &[&str]) -> String {
        let mut v = vec!["nsenter", "--net"];
        let n = format!("--net={}", self.ns.display());
        v[1] = &n;
        v.push("--");
        v.extend(args);
        sh(&v)
    }

    /// Runs `f` in a thread inside the test's network namespace (sockets made there stay in
    /// it).
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&self.ns).unwrap();
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// A probe run by a process in the guest's cgroup and the test's namespace, optionally
    /// without any capability (a guest's root).
    fn probe(&self, capless: bool, args: &[&str]) -> String {
        let mut cmd = format!(
            "echo $$ > {}/cgroup.procs && exec nsenter --net={} -- ",
            self.cg.display(),
            self.ns.display()
        );
        if capless {
            cmd.push_str("setpriv --inh-caps=-all --bounding-set=-all ");
        }
        cmd.push_str(&format!("python3 {SCRIPT} {}", args.join(" ")));
        sh(&["sh", "-c", &cmd]).trim().to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = sockbpf::detach(&self.run, "g");
        let _ = nix::mount::umount2(&sockbpf::bpffs(&self.run), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.cg);
    }
}

fn policy(cookie: u64) -> Policy {
    Policy {
        netns_cookie: cookie,
        v4: vec!["10.88.0.2".parse().unwrap(), "10.88.0.3".parse().unwrap()],
        v6: vec!["fd88::2".parse().unwrap()],
        lback: Ipv4Addr::new(127, 0, 2, 1),
        raw_icmp: false,
        bind_low_uid: None,
        maps: None,
    }
}

#[test]
fn programs_narrow_a_cgroup_to_its_addresses_until_detached() {
    let Some(f) = Fixture::new() else { return };
    let cookie = f.within(|| vserverd::sys::bpf::netns_cookie().unwrap());
    assert_ne!(cookie, vserverd::sys::bpf::netns_cookie().unwrap());
    // The host's own services in the namespace: a UDP receiver on the wildcard, a TCP one on
    // the host's 127.0.0.1.
    let (udp, host_lo) = f.within(|| {
        (
            UdpSocket::bind("0.0.0.0:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        )
    });
    udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let uport = udp.local_addr().unwrap().port().to_string();
    let hport = host_lo.local_addr().unwrap().port().to_string();

    // Before: nothing narrowed.
    assert_eq!(f.probe(false, &["bind", "0.0.0.0"]), "ok 0.0.0.0");
    assert_eq!(f.probe(false, &["ping-socket"]), "ok made");

    // Within the test's namespace: the host-wide lookup program links to the caller's.
    let took = f
        .within(|| sockbpf::attach(&f.run, "g", &f.cg, &policy(cookie)))
        .unwrap();
    eprintln!("attach of {} programs: {took:?}", Hook::ALL.len());
    assert!(sockbpf::complete(&f.run, "g"));
    let cgfd = std::fs::File::open(&f.cg).unwrap();
    for h in Hook::ALL {
        let ids = vserverd::sys::bpf::prog_query_effective(&cgfd, h.attach_type()).unwrap();
        assert_eq!(ids.len(), 1, "{h:?}: {ids:?}");
    }

    // bind: the wildcard narrowed to the first address, foreign addresses refused (10.88.0.9
    // is the host's), ::1 refused, 127.0.0.1 the guest's own loopback, shown back as such.
    assert_eq!(f.probe(false, &["bind", "0.0.0.0"]), "ok 10.88.0.2");
    assert_eq!(f.probe(false, &["bind", "10.88.0.3"]), "ok 10.88.0.3");
    assert_eq!(f.probe(false, &["bind", "10.88.0.9"]), "err EADDRNOTAVAIL");
    assert_eq!(f.probe(false, &["bind", "::"]), "ok fd88::2");
    assert_eq!(f.probe(false, &["bind", "::1"]), "err EADDRNOTAVAIL");
    assert_eq!(f.probe(false, &["bind", "127.0.0.1"]), "ok 127.0.0.1");
    assert_eq!(
        f.probe(false, &["listen-connect", "127.0.0.1", "47080"]),
        "ok 127.0.0.1 127.0.0.1"
    );
    // The host's 127.0.0.1 service is out of reach: 127.0.0.1 is the guest's own.
    assert_eq!(
        f.probe(false, &["connect", "127.0.0.1", &hport]),
        "err ECONNREFUSED"
    );
    // Another guest's loopback, or the host's other loopback addresses: unreachable.
    assert_eq!(
        f.probe(false, &["connect", "127.0.3.1", &hport]),
        "err ENETUNREACH"
    );
    // connect without bind: the source is the guest's first address.
    let host_addr = f.within(|| TcpListener::bind("10.88.0.9:0").unwrap());
    let haport = host_addr.local_addr().unwrap().port().to_string();
    assert_eq!(
        f.probe(false, &["connect", "10.88.0.9", &haport]),
        "ok 10.88.0.2"
    );
    // Unbound UDP: the receiver sees the guest's address as the source.
    assert_eq!(f.probe(false, &["sendto", "10.88.0.9", &uport]), "ok sent");
    let mut b = [0u8; 8];
    let (_, from) = udp.recv_from(&mut b).unwrap();
    assert_eq!(from.ip().to_string(), "10.88.0.2");
    // ICMP ping sockets (they bind past the bind hook) need ncaps raw_icmp.
    assert_eq!(f.probe(false, &["ping-socket"]), "err EPERM");
    // A namespace made inside the cgroup is left alone.
    assert_eq!(f.probe(false, &["unshare-bind"]), "ok 0.0.0.0");

    // A guest's root (uid 0, no capabilities) can neither detach nor list the programs, and
    // they still act: BPF_PROG_DETACH through the cgroup finds no program it may remove (a
    // link is detached only through the link), BPF_PROG_QUERY wants CAP_NET_ADMIN.
    assert_eq!(
        f.probe(true, &["detach", &f.cg.to_string_lossy()]),
        "ok EINVAL EPERM"
    );
    assert_eq!(f.probe(true, &["bind", "0.0.0.0"]), "ok 10.88.0.2");

    sockbpf::forget(&f.run, &policy(cookie)).unwrap();
    sockbpf::detach(&f.run, "g").unwrap();
    assert!(sockbpf::pinned(&f.run, "g").is_empty());
    for h in Hook::ALL {
        let ids = vserverd::sys::bpf::prog_query_effective(&cgfd, h.attach_type()).unwrap();
        assert!(ids.is_empty(), "{h:?}: {ids:?}");
    }
    assert_eq!(f.probe(false, &["bind", "0.0.0.0"]), "ok 0.0.0.0");
}

/// A server probe in the guest's cgroup, started in the background: its port once it listens,
/// and the process to collect its report from.
fn serve(f: &Fixture, addr: &str, port: u16, n: u32) -> (u16, std::process::Child) {
    background(f, &f.cg, &format!("serve {addr} {port} {n}"))
}

/// A probe started in the background in cgroup `cg`, once it said "ready PORT".
fn background(f: &Fixture, cg: &Path, args: &str) -> (u16, std::process::Child) {
    spawn_probe(f, Some(cg), args)
}

/// A probe as [`background`], in cgroup `cg` (a guest's) or, with None, in the test's own
/// (the host's services).
fn spawn_probe(f: &Fixture, cg: Option<&Path>, args: &str) -> (u16, std::process::Child) {
    use std::io::BufRead;
    let join = cg
        .map(|cg| format!("echo $$ > {}/cgroup.procs && ", cg.display()))
        .unwrap_or_default();
    let cmd = format!(
        "{join}exec nsenter --net={} -- python3 {SCRIPT} {args}",
        f.ns.display()
    );
    let mut c = Command::new("sh")
        .args(["-c", &cmd])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("serve: {line:?}"))
        .trim()
        .parse()
        .unwrap();
    (port, c)
}

fn report(c: std::process::Child) -> String {
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A connection from the host (the test's namespace): "ok" or the error's kind.
fn host_connect(f: &Fixture, addr: &str, port: u16) -> String {
    let a: std::net::SocketAddr = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
    .parse()
    .unwrap();
    f.within(
        || match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)) {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        },
    )
}

#[test]
fn wildcard_listeners_receive_on_every_guest_address_and_only_there() {
    let Some(f) = Fixture::new() else { return };
    let cookie = f.within(|| vserverd::sys::bpf::netns_cookie().unwrap());
    // A host service on the wildcard.
    let host = f.within(|| TcpListener::bind("0.0.0.0:0").unwrap());
    let hport = host.local_addr().unwrap().port();
    assert_eq!(host_connect(&f, "10.88.0.2", hport), "ok");

    f.within(|| sockbpf::attach(&f.run, "g", &f.cg, &policy(cookie)))
        .unwrap();
    // The lookup program is pinned with its maps, for a restarted daemon.
    let hd = sockbpf::host_dir(&f.run);
    for pin in ["vs_guests", "vs_ports", "vs_sk_lookup"] {
        assert!(hd.join(pin).exists(), "{pin}");
    }
    // The host's wildcard listener no longer gets what is meant for the guest's addresses
    // (the guest does not listen there: refused), and still gets its own.
    assert_eq!(host_connect(&f, "10.88.0.2", hport), "ConnectionRefused");
    assert_eq!(host_connect(&f, "fd88::2", hport), "ConnectionRefused");
    assert_eq!(host_connect(&f, "10.88.0.9", hport), "ok");

    // The guest's wildcard: both its IPv4 addresses and its 127.0.0.1, not the host's.
    let (p, c) = serve(&f, "0.0.0.0", 0, 3);
    let ps = p.to_string();
    assert_eq!(host_connect(&f, "10.88.0.2", p), "ok");
    assert_eq!(host_connect(&f, "10.88.0.3", p), "ok");
    assert_eq!(host_connect(&f, "10.88.0.9", p), "ConnectionRefused");
    assert_eq!(
        f.probe(false, &["connect", "127.0.0.1", &ps]),
        "ok 127.0.0.1"
    );
    assert_eq!(report(c), "ok 10.88.0.2,10.88.0.3,127.0.0.1");

    // Listen without a bind: the guest's addresses; the host's refused.
    let (p, c) = serve(&f, "-", 0, 2);
    assert_eq!(host_connect(&f, "10.88.0.3", p), "ok");
    assert_eq!(host_connect(&f, "10.88.0.9", p), "ConnectionRefused");
    assert_eq!(host_connect(&f, "10.88.0.2", p), "ok");
    assert_eq!(report(c), "ok 10.88.0.3,10.88.0.2");

    // An address bound as such is that address only.
    let (p, c) = serve(&f, "10.88.0.3", 0, 1);
    assert_eq!(host_connect(&f, "10.88.0.2", p), "ConnectionRefused");
    assert_eq!(host_connect(&f, "10.88.0.3", p), "ok");
    assert_eq!(report(c), "ok 10.88.0.3");

    // IPv6: `::` is the guest's IPv6 address.
    let (p, c) = serve(&f, "::", 0, 1);
    assert_eq!(host_connect(&f, "fd88::2", p), "ok");
    assert_eq!(report(c), "ok fd88::2");

    // Without the guest's addresses in the map, the host's wildcard gets them again.
    sockbpf::forget(&f.run, &policy(cookie)).unwrap();
    assert_eq!(host_connect(&f, "10.88.0.2", hport), "ok");
    sockbpf::detach(&f.run, "g").unwrap();
}

/// Datagrams from the host (the test's namespace) to `to`, each carrying `payload`.
fn host_send(f: &Fixture, sends: &[(&str, &str)]) {
    f.within(|| {
        for (to, payload) in sends {
            let a: std::net::SocketAddr = to.parse().unwrap();
            let s = if a.is_ipv4() {
                UdpSocket::bind("0.0.0.0:0")
            } else {
                UdpSocket::bind("[::]:0")
            }
            .unwrap();
            s.send_to(payload.as_bytes(), a).unwrap();
        }
    })
}

#[test]
fn udp_wildcards_receive_on_the_guests_addresses_only() {
    let Some(f) = Fixture::new() else { return };
    let cookie = f.within(|| vserverd::sys::bpf::netns_cookie().unwrap());
    f.within(|| sockbpf::attach(&f.run, "g", &f.cg, &policy(cookie)))
        .unwrap();

    // A guest with two IPv4 addresses: its UDP wildcard stays one and receives on both and on
    // its 127.0.0.1 (lback), not what is sent to the host's address on the same port (nor to
    // the host's own 127.0.0.1).
    let (p, c) = serve_udp(&f, "0.0.0.0 0 4");
    host_send(
        &f,
        &[
            (&format!("10.88.0.2:{p}"), "a"),
            (&format!("10.88.0.9:{p}"), "host"),
            (&format!("127.0.0.1:{p}"), "host-lo"),
            (&format!("10.88.0.3:{p}"), "b"),
            (&format!("127.0.2.1:{p}"), "lback"),
        ],
    );
    assert_eq!(report(c), "ok 0.0.0.0 a,b,lback,timeout");

    // `[::]`, dual-stack: the guest's IPv6 address and its IPv4 ones (v4-mapped), never the
    // host's IPv4 address.
    let (p, c) = serve_udp(&f, ":: 0 3");
    host_send(
        &f,
        &[
            (&format!("[fd88::2]:{p}"), "six"),
            (&format!("10.88.0.9:{p}"), "host"),
            (&format!("10.88.0.3:{p}"), "four"),
        ],
    );
    assert_eq!(report(c), "ok :: six,four,timeout");

    // An unbound socket (autobound by sendto, on the wildcard): the reply reaches it, a
    // datagram to its port on the host's address does not.
    let echo = f.within(|| UdpSocket::bind("10.88.0.9:0").unwrap());
    echo.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let ep = echo.local_addr().unwrap().port();
    let (gp, c) = background(&f, &f.cg, &format!("udp-unbound 10.88.0.9 {ep} 3"));
    let mut b = [0u8; 16];
    let (n, from) = echo.recv_from(&mut b).unwrap();
    assert_eq!(
        (&b[..n], from.ip().to_string()),
        (&b"hello"[..], "10.88.0.2".into())
    );
    assert_eq!(from.port(), gp);
    echo.send_to(b"reply", from).unwrap();
    host_send(
        &f,
        &[
            (&format!("10.88.0.9:{gp}"), "host"),
            (&format!("10.88.0.2:{gp}"), "guest"),
        ],
    );
    assert_eq!(report(c), "ok reply,guest,timeout");

    // SO_REUSEPORT: a guest's socket cannot join the host's group on the wildcard (it is
    // narrowed to its first address), so all of the host's datagrams reach the host.
    let (hp, host) = spawn_probe(&f, None, "udp-serve 0.0.0.0 0 20 reuse");
    let (_, c) = serve_udp(&f, &format!("0.0.0.0 {hp} 1 reuse"));
    let sends: Vec<(String, &str)> = (0..20)
        .map(|i| (format!("10.88.0.9:{hp}"), if i < 10 { "x" } else { "y" }))
        .collect();
    let sends: Vec<(&str, &str)> = sends.iter().map(|(a, p)| (a.as_str(), *p)).collect();
    host_send(&f, &sends);
    let mut want = vec!["x"; 10];
    want.extend(["y"; 10]);
    assert_eq!(report(host), format!("ok 0.0.0.0 {}", want.join(",")));
    assert_eq!(report(c), "ok 10.88.0.2 timeout");

    // A namespace made inside the guest's cgroup is left alone by the ingress filter (its
    // 127.0.0.1 is not the guest's lback, and is its own).
    assert_eq!(f.probe(false, &["unshare-udp-self"]), "ok self");

    sockbpf::forget(&f.run, &policy(cookie)).unwrap();
    sockbpf::detach(&f.run, "g").unwrap();
}

/// `[::]` sockets (dual-stack) of a guest with IPv4 addresses only: IPv4 traffic reaches them
/// as v4-mapped addresses, on the guest's addresses and never on the host's.
#[test]
fn dual_stack_sockets_of_an_ipv4_guest_never_receive_on_host_addresses() {
    let Some(f) = Fixture::new() else { return };
    let cookie = f.within(|| vserverd::sys::bpf::netns_cookie().unwrap());
    let mut p = policy(cookie);
    p.v6.clear();
    f.within(|| sockbpf::attach(&f.run, "g", &f.cg, &p))
        .unwrap();
    // TCP bound to `::`: narrowed to the first address, v4-mapped, and marked: both of the
    // guest's addresses, not the host's.
    let (port, c) = serve(&f, "::", 0, 2);
    assert_eq!(host_connect(&f, "10.88.0.9", port), "ConnectionRefused");
    assert_eq!(host_connect(&f, "10.88.0.3", port), "ok");
    assert_eq!(host_connect(&f, "10.88.0.2", port), "ok");
    assert_eq!(report(c), "ok ::ffff:10.88.0.3,::ffff:10.88.0.2");
    // TCP listening without a bind (on `::`, an ephemeral port): the same.
    let (port, c) = serve(&f, "-6", 0, 1);
    assert_eq!(host_connect(&f, "10.88.0.9", port), "ConnectionRefused");
    assert_eq!(host_connect(&f, "10.88.0.2", port), "ok");
    assert_eq!(report(c), "ok ::ffff:10.88.0.2");
    // UDP on `::` (two addresses: it stays a wildcard): the host's IPv4 address is dropped.
    let (port, c) = serve_udp(&f, ":: 0 2");
    host_send(
        &f,
        &[
            (&format!("10.88.0.9:{port}"), "host"),
            (&format!("10.88.0.3:{port}"), "guest"),
        ],
    );
    assert_eq!(report(c), "ok :: guest,timeout");
    sockbpf::forget(&f.run, &p).unwrap();
    sockbpf::detach(&f.run, "g").unwrap();
}

/// A UDP receiver probe in the guest's cgroup (`udp-serve ARGS`).
fn serve_udp(f: &Fixture, args: &str) -> (u16, std::process::Child) {
    background(f, &f.cg, &format!("udp-serve {args}"))
}

#[test]
fn abstract_unix_sockets_of_the_host_are_out_of_reach() {
    let Some(f) = Fixture::new() else { return };
    let cookie = f.within(|| vserverd::sys::bpf::netns_cookie().unwrap());
    // The host's abstract sockets in the namespace: a stream listener and a datagram one.
    let name = format!("vsd-host-{}", std::process::id());
    let dname = format!("{name}-d");
    let (stream, dgram) = f.within(|| {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
        let a = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let d = SocketAddr::from_abstract_name(dname.as_bytes()).unwrap();
        (
            UnixListener::bind_addr(&a).unwrap(),
            UnixDatagram::bind_addr(&d).unwrap(),
        )
    });
    let path = f._dir.path().join("host.sock");
    let by_path = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let path = path.to_string_lossy().into_owned();
    // Before: reachable.
    assert_eq!(f.probe(false, &["abstract-connect", &name]), "ok connected");

    f.within(|| sockbpf::attach(&f.run, "g", &f.cg, &policy(cookie)))
        .unwrap();
    // The host's abstract sockets are as if they did not exist, for stream and datagram,
    // for guest root with or without capabilities.
    for capless in [false, true] {
        assert_eq!(
            f.probe(capless, &["abstract-connect", &name]),
            "err ECONNREFUSED"
        );
        assert_eq!(
            f.probe(capless, &["abstract-connect", &dname, "dgram"]),
            "err ECONNREFUSED"
        );
    }
    // The guest's own abstract names too: the namespace of them is shared with the host.
    assert_eq!(
        f.probe(false, &["abstract-self", "vsd-own"]),
        "err ECONNREFUSED"
    );
    // Sockets by path are the file system's business.
    assert_eq!(f.probe(false, &["unix-path", &path]), "ok connected");
    // A namespace made inside the guest's cgroup has abstract sockets of its own.
    assert_eq!(
        f.probe(false, &["unshare-abstract", "vsd-inner"]),
        "ok connected"
    );
    sockbpf::forget(&f.run, &policy(cookie)).unwrap();
    sockbpf::detach(&f.run, "g").unwrap();
    assert_eq!(f.probe(false, &["abstract-connect", &name]), "ok connected");
    drop((stream, dgram, by_path));
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A busybox guest in the shared stack with one address on the test host's `vh0`.
fn shared_guest(d: &harness::TestDaemon, name: &str, ctx: u32, ip: &str) {
    harness::GuestBuilder::busybox(name)
        .context(ctx)
        .file("apps/vserverd/netmode", "shared\n")
        .file("interfaces/0/ip", &format!("{ip}\n"))
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/dev", "vh0\n")
        .file("interfaces/0/name", "web\n")
        .write(d);
    let www = d.guest_root(name).join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("this is {name}\n")).unwrap();
}

fn wget(d: &harness::TestDaemon, url: &str) -> String {
    let o = d.in_host_net(&[
        "/bin/busybox",
        "timeout",
        "10",
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    ]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The test's stand-in for the host network: a veth pair (this kernel has no dummy module)
/// whose end `vh0` carries the guests' addresses, and a host address on lo.
fn shared_host(d: &mut harness::TestDaemon) {
    d.host_netns();
    for a in [
        "ip link add vh0 type veth peer name vh1",
        "ip link set vh0 up",
        "ip link set vh1 up",
        "ip addr add 10.79.255.1/32 dev lo",
    ] {
        let o = d.in_host_net(&a.split(' ').collect::<Vec<_>>());
        assert!(o.status.success(), "{a}: {}", text(&o));
    }
}

fn prerequisites() -> bool {
    harness::require_busybox_guests()
        && require(Path::new("/usr/bin/nsenter").exists(), "nsenter")
        && require(
            Layout::detect().is_ok_and(|l| l.v2().is_some()),
            "cgroup v2",
        )
        && kernel_has_the_programs()
}

/// cgroup socket programs, socket lookup programs (5.9) and unix socket hooks (6.7): without
/// them a shared-stack guest falls back to a namespace.
fn kernel_has_the_programs() -> bool {
    let ok = sockbpf::available();
    require(
        ok.is_ok(),
        &format!(
            "the shared stack's programs: {}",
            ok.err().unwrap_or_default()
        ),
    )
}

#[test]
fn shared_stack_guests_serve_on_their_own_addresses_of_the_host() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    shared_guest(&d, "a", 46101, "10.79.0.2");
    shared_guest(&d, "b", 46102, "10.79.0.3");
    // a has a second address: its wildcard listeners receive on both.
    for (f, v) in [("ip", "10.79.0.12"), ("prefix", "24"), ("dev", "vh0")] {
        let dir = d.guest_config("a").join("interfaces/1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
    }
    d.spawn();
    let out = d.ctl_ok(&["start", "a"]);
    assert!(out.contains("10.79.0.2/24 on vh0"), "{out}");
    d.ctl_ok(&["start", "b"]);
    // The addresses are the host's device's, labelled as util-vserver did.
    let addrs = text(&d.in_host_net(&["ip", "-o", "addr"]));
    assert!(
        addrs.contains("10.79.0.2/24") && addrs.contains("vh0:web"),
        "{addrs}"
    );
    // The guest is in the host's network namespace (the test's).
    let pid = d.init_pid("a");
    let host_ns = std::fs::metadata(d.netns.as_ref().unwrap()).unwrap();
    let guest_ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(guest_ns.ino(), host_ns.ino());

    // Both serve port 80 bound to the wildcard: narrowed to their own addresses.
    for g in ["a", "b"] {
        d.ctl_ok(&["exec", g, "--", "httpd", "-p", "80", "-h", "/www"]);
        d.ctl_ok(&[
            "exec",
            g,
            "--",
            "httpd",
            "-p",
            "127.0.0.1:8081",
            "-h",
            "/www",
        ]);
    }
    assert_eq!(wget(&d, "http://10.79.0.2/"), "this is a\n");
    assert_eq!(wget(&d, "http://10.79.0.3/"), "this is b\n");
    // The wildcard of a guest with two addresses receives on both, and on its 127.0.0.1.
    assert_eq!(wget(&d, "http://10.79.0.12/"), "this is a\n");
    let o = d.ctl_ok(&[
        "exec",
        "a",
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1/",
    ]);
    assert_eq!(o, "this is a\n");
    // A host service on the wildcard does not get connections to a guest's address.
    let host_wild = {
        let ns = std::fs::File::open(d.netns.as_ref().unwrap()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                TcpListener::bind("0.0.0.0:0").unwrap()
            })
            .join()
            .unwrap()
        })
    };
    let hw = host_wild.local_addr().unwrap().port();
    let nc = |d: &harness::TestDaemon, addr: &str| {
        let ns = std::fs::File::open(d.netns.as_ref().unwrap()).unwrap();
        let a: std::net::SocketAddr = format!("{addr}:{hw}").parse().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok()
            })
            .join()
            .unwrap()
        })
    };
    assert!(nc(&d, "10.79.255.1"), "the host's own address");
    assert!(!nc(&d, "10.79.0.2") && !nc(&d, "10.79.0.12") && !nc(&d, "10.79.0.3"));
    // (busybox httpd binds `[::]`: an IPv4-only guest's becomes `[::ffff:ADDRESS]`.)
    let ss = text(&d.in_host_net(&["ss", "-Hltn"]));
    assert!(
        ss.contains("[::ffff:10.79.0.2]:80") && ss.contains("[::ffff:10.79.0.3]:80"),
        "{ss}"
    );
    assert!(!ss.contains("0.0.0.0:80") && !ss.contains("*:80"), "{ss}");
    // Their 127.0.0.1:8081 are their own loopback addresses (from the context), each reached
    // as 127.0.0.1 from inside, never the other's.
    let (la, lb) = (default_lback(46101), default_lback(46102));
    assert!(
        ss.contains(&format!("{la}:8081")) && ss.contains(&format!("{lb}:8081")),
        "{ss}"
    );
    for g in ["a", "b"] {
        let o = d.ctl_ok(&[
            "exec",
            g,
            "--",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8081/",
        ]);
        assert_eq!(o, format!("this is {g}\n"));
    }
    // A foreign address (the other guest's, the host's) and ::1 are refused.
    for addr in ["10.79.0.3:8080", "10.79.255.1:8080", "[::1]:8080"] {
        let o = d.ctl(&["exec", "a", "--", "httpd", "-f", "-p", addr, "-h", "/www"]);
        assert!(
            !o.status.success() && text(&o).contains("Cannot assign requested address"),
            "{addr}: {}",
            text(&o)
        );
    }
    // A connection out has the guest's address as its source (ss shows it at the host).
    let l = {
        let ns = std::fs::File::open(d.netns.as_ref().unwrap()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                TcpListener::bind("10.79.255.1:0").unwrap()
            })
            .join()
            .unwrap()
        })
    };
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || l.accept().map(|(_, peer)| peer.ip().to_string()));
    let _ = d.ctl(&[
        "exec",
        "a",
        "--",
        "sh",
        "-c",
        &format!("echo x | nc -w 1 10.79.255.1 {port}"),
    ]);
    assert_eq!(h.join().unwrap().unwrap(), "10.79.0.2");

    // Guest root cannot remove its programs (the escape suite's case too).
    assert!(sockbpf::complete(&d.run_dir, "a"));

    // A daemon killed and restarted keeps every rule: the guest is adopted in its mode.
    d.kill();
    d.spawn();
    assert_eq!(d.status("a")["state"], "running");
    assert!(sockbpf::complete(&d.run_dir, "a"));
    assert_eq!(wget(&d, "http://10.79.0.12/"), "this is a\n");
    assert!(!nc(&d, "10.79.0.12"));
    // A pin gone while the daemon was away: the adopting daemon links the programs again,
    // keeping the listeners recorded so far, and records new ones.
    d.kill();
    std::fs::remove_file(sockbpf::pin_dir(&d.run_dir, "a").join("vs_sockops")).unwrap();
    d.spawn();
    assert_eq!(d.status("a")["state"], "running");
    assert!(sockbpf::complete(&d.run_dir, "a"));
    // (linked beside the old ones first, then moved into place: nothing left beside)
    let left: Vec<_> = std::fs::read_dir(sockbpf::bpffs(&d.run_dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("%new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // One bind4 program in force at the guest's init, not two.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", d.init_pid("a"))).unwrap();
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a unified hierarchy line");
    let v2 = Layout::detect().unwrap().v2().unwrap().mount.clone();
    let cg = std::fs::File::open(v2.join(rel.trim_start_matches('/'))).unwrap();
    let ids = vserverd::sys::bpf::prog_query_effective(&cg, Hook::Bind4.attach_type()).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(wget(&d, "http://10.79.0.12/"), "this is a\n");
    d.ctl_ok(&["exec", "a", "--", "httpd", "-p", "8085", "-h", "/www"]);
    assert_eq!(wget(&d, "http://10.79.0.12:8085/"), "this is a\n");
    let o = d.ctl(&[
        "exec",
        "a",
        "--",
        "httpd",
        "-f",
        "-p",
        "10.79.0.3:8083",
        "-h",
        "/www",
    ]);
    assert!(!o.status.success(), "{}", text(&o));

    // Stop takes the addresses and the programs back; b is untouched.
    d.ctl_ok(&["stop", "a"]);
    let addrs = text(&d.in_host_net(&["ip", "-o", "addr"]));
    assert!(!addrs.contains("10.79.0.2/"), "{addrs}");
    assert!(!sockbpf::pin_dir(&d.run_dir, "a").exists());
    assert_eq!(wget(&d, "http://10.79.0.3/"), "this is b\n");
    d.ctl_ok(&["stop", "b"]);
    let addrs = text(&d.in_host_net(&["ip", "-o", "addr"]));
    assert!(!addrs.contains("10.79.0.3/"), "{addrs}");
}

#[test]
fn shared_stack_refusals_change_nothing() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    shared_guest(&d, "a", 46111, "10.79.0.2");
    // The host's own address.
    shared_guest(&d, "h", 46112, "10.79.255.1");
    // Another running guest's address.
    shared_guest(&d, "twin", 46113, "10.79.0.2");
    // No such device.
    shared_guest(&d, "nodev", 46114, "10.79.0.4");
    std::fs::write(d.guest_config("nodev").join("interfaces/0/dev"), "vh9\n").unwrap();
    // NET_RAW over the host's stack.
    shared_guest(&d, "raw", 46115, "10.79.0.5");
    std::fs::write(d.guest_config("raw").join("bcapabilities"), "NET_RAW\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "a"]);
    // (Link-local addresses come up on their own, whenever the kernel gets to them.)
    let addrs = |d: &harness::TestDaemon| -> String {
        text(&d.in_host_net(&["ip", "-o", "addr"]))
            .lines()
            .filter(|l| !l.contains("scope link"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = addrs(&d);
    for (g, want) in [
        ("h", "already an address of this host"),
        ("twin", "address of the running guest a"),
        ("nodev", "vh9"),
        ("raw", "NET_ADMIN and NET_RAW"),
    ] {
        let o = d.ctl(&["start", g]);
        assert!(
            !o.status.success() && text(&o).contains(want),
            "{g}: {}",
            text(&o)
        );
        assert_eq!(addrs(&d), before, "{g}");
        assert!(!sockbpf::pin_dir(&d.run_dir, g).exists(), "{g}");
    }
    // A nodev address the host does not have: `check` warns, as binds to it would fail.
    shared_guest(&d, "nd", 46116, "10.79.0.8");
    for (f, v) in [("ip", "10.79.9.9\n"), ("prefix", "32\n"), ("nodev", "")] {
        let p = d.guest_config("nd").join("interfaces/1").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }
    let o = d.ctl(&["check", "nd"]);
    assert!(
        text(&o).contains("interfaces/1/nodev") && text(&o).contains("not an address of this host"),
        "{}",
        text(&o)
    );
    let o = d.ctl(&["check", "raw"]);
    assert!(text(&o).contains("bcapabilities"), "{}", text(&o));
    d.ctl_ok(&["stop", "a"]);
}

/// The escape suite in a shared-stack guest: guest root cannot detach, list, reach or replace
/// its socket programs, nor reach the host's 127.0.0.1 services (its 127.0.0.1 is its own).
#[test]
fn shared_stack_guest_root_cannot_remove_its_programs() {
    if !prerequisites() || !require(Path::new("/usr/bin/ldd").exists(), "ldd") {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    shared_guest(&d, "jail", 46121, "10.79.0.2");
    // Its cgroup, as a systemd guest has it: the cgroup fd the detach attempts go through.
    std::fs::write(
        d.guest_config("jail").join("fstab"),
        "none /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n",
    )
    .unwrap();
    let root = d.guest_root("jail");
    std::fs::create_dir_all(root.join("sys/fs/cgroup")).unwrap();
    harness::guest::install_host_binary(
        &root,
        &harness::guest::workspace_binary("vserverd-escape"),
        "/escape",
    );
    let host_only = d.dir.path().join("host-only-marker");
    std::fs::write(&host_only, "host").unwrap();
    let tcp = {
        let ns = std::fs::File::open(d.netns.as_ref().unwrap()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                TcpListener::bind("127.0.0.1:0").unwrap()
            })
            .join()
            .unwrap()
        })
    };
    let port = tcp.local_addr().unwrap().port().to_string();
    // The host's abstract unix sockets (stream and datagram) in its network namespace.
    let abstract_name = format!("vserverd-escape-{}", std::process::id());
    let _abstract = {
        let ns = std::fs::File::open(d.netns.as_ref().unwrap()).unwrap();
        let name = abstract_name.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                use std::os::linux::net::SocketAddrExt;
                use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let a = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
                let b = SocketAddr::from_abstract_name(format!("{name}-dgram").as_bytes()).unwrap();
                (
                    UnixListener::bind_addr(&a).unwrap(),
                    UnixDatagram::bind_addr(&b).unwrap(),
                )
            })
            .join()
            .unwrap()
        })
    };
    d.spawn();
    d.ctl_ok(&["start", "jail"]);
    let (said, results) = harness::guest::run_escape(
        &d,
        "jail",
        &[
            &host_only.display().to_string(),
            &d.pid().unwrap().to_string(),
            &d.socket.display().to_string(),
            "/root/none",
            &port,
            &abstract_name,
        ],
    );
    for want in [
        "detach cgroup program 8",
        "detach cgroup program 0",
        "open bpf links by id",
        "open bpf maps by id",
        "load a cgroup socket program",
        "reach a host-only 127.0.0.1 service",
        "reach a host abstract unix socket",
        "send to a host abstract datagram socket",
        "make an AF_PACKET socket",
    ] {
        assert!(
            results
                .iter()
                .any(|r| r["name"].as_str().unwrap_or("").starts_with(want)),
            "{want} did not run:\n{said}"
        );
    }
    let escaped: Vec<&serde_json::Value> =
        results.iter().filter(|r| r["escaped"] != false).collect();
    assert!(escaped.is_empty(), "escapes: {escaped:#?}");
    // The programs are all there and still act.
    assert!(sockbpf::complete(&d.run_dir, "jail"));
    let o = d.ctl(&[
        "exec",
        "jail",
        "--",
        "httpd",
        "-f",
        "-p",
        "10.79.255.1:8080",
        "-h",
        "/www",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    d.ctl_ok(&["stop", "jail"]);
}

#[test]
fn shared_stack_ipv6_guest_serves_on_its_own_address_and_refuses_loopback() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    harness::GuestBuilder::busybox("six")
        .context(46131)
        .file("apps/vserverd/netmode", "shared\n")
        .file("interfaces/0/ip", "fd00:79::2\n")
        .file("interfaces/0/prefix", "64\n")
        .file("interfaces/0/dev", "vh0\n")
        .write(&d);
    let www = d.guest_root("six").join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "this is six\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "six"]);
    let addrs = text(&d.in_host_net(&["ip", "-o", "-6", "addr", "show", "dev", "vh0"]));
    let line = addrs
        .lines()
        .find(|l| l.contains("fd00:79::2/64"))
        .unwrap_or_else(|| panic!("{addrs}"));
    // Added without duplicate address detection: usable at once.
    assert!(
        line.contains("nodad") && !line.contains("tentative"),
        "{line}"
    );
    // `[::]:80` narrowed to the guest's address.
    d.ctl_ok(&["exec", "six", "--", "httpd", "-p", "80", "-h", "/www"]);
    let ss = text(&d.in_host_net(&["ss", "-Hltn"]));
    assert!(ss.contains("[fd00:79::2]:80"), "{ss}");
    assert!(!ss.contains("*:80") && !ss.contains("[::]:80"), "{ss}");
    assert_eq!(wget(&d, "http://[fd00:79::2]/"), "this is six\n");
    // ::1 has no per-guest meaning: refused for bind.
    let o = d.ctl(&[
        "exec",
        "six",
        "--",
        "httpd",
        "-f",
        "-p",
        "[::1]:8080",
        "-h",
        "/www",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("Cannot assign requested address"),
        "{}",
        text(&o)
    );
    // A guest without IPv4 addresses cannot bind IPv4 at all.
    let o = d.ctl(&[
        "exec",
        "six",
        "--",
        "httpd",
        "-f",
        "-p",
        "0.0.0.0:8080",
        "-h",
        "/www",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    d.ctl_ok(&["stop", "six"]);
    let addrs = text(&d.in_host_net(&["ip", "-o", "-6", "addr"]));
    assert!(!addrs.contains("fd00:79::2"), "{addrs}");
}

/// Where cgroup BPF cannot be had (here: the probe failed by fault injection), a shared-stack
/// guest gets a network namespace instead, and the start and `check` say so.
#[test]
fn without_cgroup_bpf_a_shared_guest_falls_back_to_a_namespace_with_a_warning() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    shared_guest(&d, "fb", 46141, "10.79.0.7");
    d.env = vec![("VSERVERD_FAULT".into(), "sockbpf.probe=fail".into())];
    d.spawn();
    let said = text(&d.ctl(&["check", "fb"]));
    assert!(
        said.contains("netmode") && said.contains("network namespace"),
        "{said}"
    );
    let st = d.status("fb");
    assert!(
        st["network_fallback"]
            .as_str()
            .is_some_and(|w| w.contains("network namespace")),
        "{st}"
    );
    let out = d.ctl_ok(&["start", "fb"]);
    assert!(
        out.contains("warning: apps/vserverd/netmode is shared"),
        "{out}"
    );
    assert!(d.log().contains("gets a network namespace"), "{}", d.log());
    // The namespace form: the veth's host end, the address inside, not on the host's device.
    let links = text(&d.in_host_net(&["ip", "-o", "link"]));
    assert!(links.contains("vsd46141"), "{links}");
    let addrs = text(&d.in_host_net(&["ip", "-o", "addr"]));
    assert!(!addrs.contains("10.79.0.7/"), "{addrs}");
    assert!(!sockbpf::pin_dir(&d.run_dir, "fb").exists());
    let inside = d.ctl_ok(&["exec", "fb", "--", "ip", "-o", "addr"]);
    assert!(inside.contains("10.79.0.7/24"), "{inside}");
    d.ctl_ok(&["stop", "fb"]);
}

/// Without apps/vserverd/netmode a guest with interfaces/ would share the host's stack, as
/// under util-vserver; but while abstract unix socket binds are not fenced (that needs BPF
/// LSM programs: guest/sharednet.rs ABSTRACT_GAP) it gets a namespace, with a warning saying
/// why and how to ask for the shared stack all the same. Asked for by name (here in
/// `.defaults`), the shared stack is given, with a warning of the gap; a guest whose bounding
/// set grants NET_RAW keeps a namespace of its own without the file; `.defaults` can ask for
/// the namespace form for every guest.
#[test]
fn without_a_fence_for_abstract_binds_the_default_is_a_namespace_and_shared_is_asked_for() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    for (name, ctx, ip) in [("plain", 46131, "10.79.0.2"), ("raw", 46132, "10.79.0.3")] {
        harness::GuestBuilder::busybox(name)
            .context(ctx)
            .file("interfaces/0/ip", &format!("{ip}\n"))
            .file("interfaces/0/prefix", "24\n")
            .file("interfaces/0/dev", "vh0\n")
            .write(&d);
    }
    std::fs::write(d.guest_config("raw").join("bcapabilities"), "NET_RAW\n").unwrap();
    d.spawn();
    use std::os::unix::fs::MetadataExt;
    let host_ns = std::fs::metadata(d.netns.as_ref().unwrap()).unwrap().ino();
    let ns_of = |d: &harness::TestDaemon, g: &str| {
        std::fs::metadata(format!("/proc/{}/ns/net", d.init_pid(g)))
            .unwrap()
            .ino()
    };
    let said = text(&d.ctl(&["check", "plain"]));
    assert!(
        said.contains("gets a network namespace") && said.contains("abstract unix socket names"),
        "{said}"
    );
    assert!(
        said.contains("asks for the shared stack all the same"),
        "{said}"
    );
    let out = d.ctl_ok(&["start", "plain"]);
    assert!(out.contains("abstract unix socket names"), "{out}");
    assert_ne!(ns_of(&d, "plain"), host_ns);
    assert!(!sockbpf::pin_dir(&d.run_dir, "plain").exists());
    d.ctl_ok(&["start", "raw"]);
    assert_ne!(ns_of(&d, "raw"), host_ns);
    assert!(!sockbpf::pin_dir(&d.run_dir, "raw").exists());
    d.ctl_ok(&["stop", "plain"]);
    d.ctl_ok(&["stop", "raw"]);
    // Asked for by name, host-wide: the shared stack, and the gap said.
    let def = d.config_root.join(".defaults/apps/vserverd");
    std::fs::create_dir_all(&def).unwrap();
    std::fs::write(def.join("netmode"), "shared\n").unwrap();
    let said = text(&d.ctl(&["check", "plain"]));
    assert!(
        said.contains("apps/vserverd/netmode is shared: the guest could bind"),
        "{said}"
    );
    assert!(!said.contains("veth pair instead"), "{said}");
    let out = d.ctl_ok(&["start", "plain"]);
    assert!(out.contains("the host's stack (shared)"), "{out}");
    assert!(
        out.contains("apps/vserverd/netmode is shared: the guest could bind"),
        "{out}"
    );
    assert_eq!(ns_of(&d, "plain"), host_ns);
    assert!(sockbpf::complete(&d.run_dir, "plain"));
    d.ctl_ok(&["stop", "plain"]);
    // netns for every guest from .defaults.
    std::fs::write(def.join("netmode"), "netns\n").unwrap();
    let said = text(&d.ctl(&["check", "plain"]));
    assert!(!said.contains("veth pair instead"), "{said}");
    d.ctl_ok(&["start", "plain"]);
    assert_ne!(ns_of(&d, "plain"), host_ns);
    d.ctl_ok(&["stop", "plain"]);
}

/// Ports below 1024 for a user-namespace guest on the shared stack: its root's capabilities
/// are its own namespace's, not the host's, so the kernel's own check would refuse port 80;
/// the bind program waives it for the guest's root when its bounding set grants
/// NET_BIND_SERVICE. A user of the guest, or a guest whose bounding set drops it, gets nothing
/// more; a guest without user namespace holds the capability itself, as before.
#[test]
fn a_user_namespace_guest_binds_port_80_on_the_shared_stack() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    shared_host(&mut d);
    for (name, ctx, ip, userns, bcaps) in [
        ("uweb", 42101, "10.79.0.5", true, None),
        ("plain", 42102, "10.79.0.6", false, None),
        (
            "nobind",
            42103,
            "10.79.0.7",
            true,
            Some("~NET_BIND_SERVICE\n"),
        ),
    ] {
        shared_guest(&d, name, ctx, ip);
        let dir = d.guest_config(name);
        if userns {
            std::fs::create_dir_all(dir.join("spaces")).unwrap();
            std::fs::write(dir.join("spaces/user"), "").unwrap();
        }
        if let Some(b) = bcaps {
            std::fs::write(dir.join("bcapabilities"), b).unwrap();
        }
        let root = d.guest_root(name);
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nweb:x:1000:\n").unwrap();
    }
    d.spawn();
    for name in ["uweb", "plain", "nobind"] {
        d.ctl_ok(&["start", name]);
    }
    // Guest root of the user-namespace guest: port 80 on the wildcard (narrowed to its
    // address), served to the host.
    d.ctl_ok(&["exec", "uweb", "--", "httpd", "-p", "80", "-h", "/www"]);
    assert_eq!(wget(&d, "http://10.79.0.5/"), "this is uweb\n");
    // The guest without user namespace, as before.
    d.ctl_ok(&["exec", "plain", "--", "httpd", "-p", "80", "-h", "/www"]);
    assert_eq!(wget(&d, "http://10.79.0.6/"), "this is plain\n");
    // A user of the guest: refused (EACCES), as on any host; higher ports are fine.
    let o = d.ctl(&[
        "exec", "uweb", "--user", "web", "--", "httpd", "-p", "81", "-h", "/www",
    ]);
    assert!(
        !o.status.success(),
        "a guest user bound port 81: {}",
        text(&o)
    );
    assert!(text(&o).contains("ermission denied"), "{}", text(&o));
    d.ctl_ok(&[
        "exec", "uweb", "--user", "web", "--", "httpd", "-p", "8081", "-h", "/www",
    ]);
    assert_eq!(wget(&d, "http://10.79.0.5:8081/"), "this is uweb\n");
    // A user-namespace guest whose bounding set drops NET_BIND_SERVICE: refused.
    let o = d.ctl(&["exec", "nobind", "--", "httpd", "-p", "80", "-h", "/www"]);
    assert!(!o.status.success(), "nobind bound port 80: {}", text(&o));
    assert!(text(&o).contains("ermission denied"), "{}", text(&o));
    for name in ["uweb", "plain", "nobind"] {
        d.ctl_ok(&["stop", name]);
    }
}

/// `check` names the host's services on the wildcard for a shared-stack guest (they keep
/// their ports from every guest), and not the host's services bound to an address.
#[test]
fn check_warns_of_host_services_on_the_wildcard() {
    if !prerequisites() {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    let ns = d.host_netns();
    let o = d.in_host_net(&["ip", "addr", "add", "10.79.255.1/32", "dev", "lo"]);
    assert!(o.status.success(), "{}", text(&o));
    let host = |code: &str| {
        let mut c = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["--", "python3", "-c", code])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        c
    };
    let listen = "import socket,time\n\
                  t=socket.socket(); t.bind(('0.0.0.0',2222)); t.listen()\n\
                  a=socket.socket(); a.bind(('10.79.255.1',2223)); a.listen()\n\
                  u=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM); u.bind(('::',5353))\n\
                  print('ready',flush=True); time.sleep(60)";
    let mut services = host(listen);
    d.spawn();
    let o = d.in_host_net(&[
        "ip", "link", "add", "vh0", "type", "veth", "peer", "name", "vh1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    shared_guest(&d, "web", 42111, "10.79.0.8");
    let out = text(&d.ctl(&["check", "web"]));
    assert!(out.contains("tcp 0.0.0.0:2222"), "{out}");
    assert!(out.contains("udp [::]:5353"), "{out}");
    assert!(!out.contains("2223"), "{out}");
    assert!(
        out.contains("bind host daemons to the host's addresses"),
        "{out}"
    );
    // A guest without the shared stack is not told.
    harness::GuestBuilder::busybox("lo")
        .context(42112)
        .write(&d);
    let out = text(&d.ctl(&["check", "lo"]));
    assert!(!out.contains("2222"), "{out}");
    let _ = services.kill();
    let _ = services.wait();
}
