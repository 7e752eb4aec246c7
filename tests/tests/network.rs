//! interfaces/: a network namespace per guest with its addresses, a veth pair to the host, a
//! host route per address. The daemon runs in a network namespace the test makes, which
//! stands in for the host's network: the real host's network is never touched.

use harness::{require, GuestBuilder, TestDaemon};

fn prerequisites() -> bool {
    harness::require_busybox_guests()
        && require(
            std::path::Path::new("/usr/bin/nsenter").exists(),
            "nsenter (util-linux)",
        )
}

fn net_guest(d: &TestDaemon, name: &str, ctx: u32, ip: &str) {
    GuestBuilder::busybox(name)
        .context(ctx)
        // The namespace form (the shared stack is shared_net.rs's).
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", &format!("{ip}\n"))
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/name", "web\n")
        // No uplink in the test's host network: reached from the host only.
        .file("interfaces/0/nodev", "")
        .write(d);
    let www = d.guest_root(name).join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("this is {name}\n")).unwrap();
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn host_links(d: &TestDaemon) -> String {
    text(&d.in_host_net(&["ip", "-o", "link"]))
}

#[test]
fn guests_get_their_own_addresses_and_the_host_reaches_them() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    // The host's own address (its source address towards guests), as a real host has one.
    let o = d.in_host_net(&["ip", "addr", "add", "10.77.255.1/32", "dev", "lo"]);
    assert!(o.status.success(), "{}", text(&o));
    net_guest(&d, "a", 46001, "10.77.0.2");
    net_guest(&d, "b", 46002, "10.77.0.3");
    d.spawn();
    for g in ["a", "b"] {
        d.ctl_ok(&["start", g]);
        // Both listen on port 80 of their own address at once.
        d.ctl_ok(&["exec", g, "--", "httpd", "-p", "80", "-h", "/www"]);
    }
    let pid = d.init_pid("a");
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    // The host (the test's namespace) reaches each guest on its address.
    for (g, ip) in [("a", "10.77.0.2"), ("b", "10.77.0.3")] {
        let o = d.in_host_net(&[
            "/bin/busybox",
            "timeout",
            "10",
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{ip}/"),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("this is {g}\n"),
            "{}",
            text(&o)
        );
    }
    // Inside, a guest sees only its own address (and loopback).
    let addrs = d.ctl_ok(&["exec", "a", "--", "ip", "-o", "addr"]);
    assert!(
        addrs.contains("10.77.0.2/24") && addrs.contains("eth0:web"),
        "{addrs}"
    );
    assert!(!addrs.contains("10.77.0.3"), "{addrs}");
    // It cannot bind an address it was not given, nor add one.
    let o = d.ctl(&[
        "exec",
        "a",
        "--",
        "httpd",
        "-f",
        "-p",
        "10.77.0.3:8080",
        "-h",
        "/www",
    ]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "bound another guest's address: {}",
        text(&o)
    );
    let o = d.ctl(&[
        "exec",
        "a",
        "--",
        "ip",
        "addr",
        "add",
        "10.77.0.99/24",
        "dev",
        "eth0",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(host_links(&d).contains("vsd46001"));
    d.ctl_ok(&["stop", "a"]);
    assert!(
        !host_links(&d).contains("vsd46001"),
        "the veth outlived the guest"
    );
    assert!(!d.run_dir.join("netns/a").exists());
    let route = text(&d.in_host_net(&["ip", "route"]));
    assert!(!route.contains("10.77.0.2"), "{route}");
    // b is untouched.
    let o = d.in_host_net(&["/bin/busybox", "wget", "-q", "-O", "-", "http://10.77.0.3/"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "this is b\n");
    // A restarted daemon adopts b with its network, and removes it at stop.
    d.kill();
    d.spawn();
    assert_eq!(d.status("b")["state"], "running");
    d.ctl_ok(&["stop", "b"]);
    assert!(!host_links(&d).contains("vsd46002"));
}

#[test]
fn ipv6_guests_are_reached_on_their_address() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    let o = d.in_host_net(&["ip", "-6", "addr", "add", "fd00:77:ff::1/128", "dev", "lo"]);
    assert!(o.status.success(), "{}", text(&o));
    GuestBuilder::busybox("six")
        .context(46031)
        // The namespace form (the shared stack is shared_net.rs's).
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", "fd00:77::2\n")
        .file("interfaces/0/prefix", "64\n")
        .file("interfaces/0/nodev", "")
        .write(&d);
    let www = d.guest_root("six").join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "this is six\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "six"]);
    d.ctl_ok(&[
        "exec",
        "six",
        "--",
        "httpd",
        "-p",
        "[fd00:77::2]:80",
        "-h",
        "/www",
    ]);
    let mut got = String::new();
    // Duplicate address detection on the guest's address takes a moment.
    for _ in 0..50 {
        let o = d.in_host_net(&[
            "/bin/busybox",
            "timeout",
            "5",
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://[fd00:77::2]/",
        ]);
        got = String::from_utf8_lossy(&o.stdout).into_owned();
        if got == "this is six\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, "this is six\n");
    d.ctl_ok(&["stop", "six"]);
    assert!(!host_links(&d).contains("vsd46031"));
}

#[test]
fn taken_addresses_and_failed_starts_leave_nothing() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    let o = d.in_host_net(&["ip", "addr", "add", "10.77.1.9/32", "dev", "lo"]);
    assert!(o.status.success(), "{}", text(&o));
    net_guest(&d, "dup", 46011, "10.77.1.9");
    GuestBuilder::busybox("late")
        .context(46012)
        // The namespace form (the shared stack is shared_net.rs's).
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", "10.77.1.10\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/nodev", "")
        .file("fstab", "none /tmp nosuchfs defaults 0 0\n")
        .write(&d);
    d.spawn();
    let o = d.ctl(&["start", "dup"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("10.77.1.9 is already an address of this host (on lo)"),
        "{}",
        text(&o)
    );
    assert!(!host_links(&d).contains("vsd46011"));
    // A start that fails after its network was made takes the network back.
    let o = d.ctl(&["start", "late"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("fstab:1"), "{}", text(&o));
    assert!(!host_links(&d).contains("vsd46012"), "{}", host_links(&d));
    assert!(!d.run_dir.join("netns/late").exists());
}

#[test]
fn spaces_net_pairs_bridges_and_shared_namespaces() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    for cmd in [
        &["ip", "link", "add", "br-test", "type", "bridge"][..],
        &["ip", "link", "set", "br-test", "up"],
    ] {
        let o = d.in_host_net(cmd);
        assert!(o.status.success(), "{}", text(&o));
    }
    GuestBuilder::busybox("pa")
        .context(46021)
        .file("spaces/net", "")
        .file("netns/interfaces/0/host", "vsdpa0\n")
        .file("netns/interfaces/0/guest", "lan0\n")
        .file("netns/interfaces/0/bridge", "br-test\n")
        .write(&d);
    // Shares pa's network namespace (util-vserver's spaces/net with a context id).
    GuestBuilder::busybox("pb")
        .context(46022)
        .file("spaces/net", "46021\n")
        .write(&d);
    d.spawn();
    let o = d.ctl(&["start", "pb"]);
    assert!(
        text(&o).contains("no running guest has context 46021"),
        "{}",
        text(&o)
    );
    d.ctl_ok(&["start", "pa"]);
    d.ctl_ok(&["start", "pb"]);
    let links = d.ctl_ok(&["exec", "pa", "--", "ip", "-o", "link"]);
    assert!(links.contains("lan0"), "{links}");
    let on_bridge = text(&d.in_host_net(&["ip", "-o", "link", "show", "master", "br-test"]));
    assert!(on_bridge.contains("vsdpa0"), "{on_bridge}");
    let ns = |g: &str| std::fs::read_link(format!("/proc/{}/ns/net", d.init_pid(g))).unwrap();
    assert_eq!(ns("pa"), ns("pb"));
    d.ctl_ok(&["stop", "pb"]);
    assert!(
        d.ctl_ok(&["exec", "pa", "--", "ip", "-o", "link"])
            .contains("lan0"),
        "pb's stop must not take pa's network"
    );
    d.ctl_ok(&["stop", "pa"]);
    assert!(!host_links(&d).contains("vsdpa0"));
}
