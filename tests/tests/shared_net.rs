//! The shared-stack mode's socket programs on the real kernel: loaded through the verifier,
//! linked to a cgroup in the unified hierarchy, pinned in a bpffs; a process in the cgroup,
//! in a network namespace the test makes (standing in for the host's), is narrowed to its
//! addresses. Probes run as Python scripts (tests/tests/sockbpf.py).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::require;
use vserverd::bpf::progs::{Hook, Policy};
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

struct Fixture {
    _dir: tempfile::TempDir,
    run: PathBuf,
    ns: PathBuf,
    cg: PathBuf,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !(require(harness::is_root(), "root")
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
        let cg = v2
            .mount
            .join(&v2.own)
            .join(format!("vsd-sockbpf-{}", std::process::id()));
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

    let took = sockbpf::attach(&f.run, "g", &f.cg, &policy(cookie)).unwrap();
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

    sockbpf::detach(&f.run, "g").unwrap();
    assert!(sockbpf::pinned(&f.run, "g").is_empty());
    for h in Hook::ALL {
        let ids = vserverd::sys::bpf::prog_query_effective(&cgfd, h.attach_type()).unwrap();
        assert!(ids.is_empty(), "{h:?}: {ids:?}");
    }
    assert_eq!(f.probe(false, &["bind", "0.0.0.0"]), "ok 0.0.0.0");
}
