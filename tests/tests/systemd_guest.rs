//! A Debian 12 guest with systemd as init (init style plain): it boots to
//! `systemctl is-system-running` = running, getty on its console pty, with the secure
//! capability set (plus CAP_SETPCAP, which systemd guests get), in its own cgroup namespace
//! with a writable cgroup2 tree rooted at its cgroup; `systemctl reboot` inside restarts it; stop sends SIGRTMIN+4 and
//! leaves no process or cgroup behind. The tree comes from `scripts/debian-guest.sh --systemd`.

use harness::guest::{guest_processes, http_get, nginx_master, zombies};
use harness::{is_root, require, GuestBuilder, TestDaemon};

const CAP_SETPCAP: u32 = 8;
const CAP_SYS_ADMIN: u32 = 21;

fn cap_bnd(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Waits for systemd in the guest to finish booting; its state and the failed units.
fn booted(d: &TestDaemon) -> (String, String) {
    booted_guest(d, "sdg")
}

fn booted_guest(d: &TestDaemon, name: &str) -> (String, String) {
    let bus = format!("/proc/{}/root/run/systemd/private", d.init_pid(name));
    d.wait_until("systemd's private bus", || {
        std::path::Path::new(&bus).exists()
    });
    // Returns once boot is over: running, or degraded when a unit failed.
    let wait = [
        "exec",
        name,
        "--",
        "systemctl",
        "is-system-running",
        "--wait",
    ];
    let state = String::from_utf8_lossy(&d.ctl(&wait).stdout)
        .trim()
        .to_string();
    let failed = d.ctl_ok(&[
        "exec",
        name,
        "--",
        "systemctl",
        "--failed",
        "--plain",
        "--no-legend",
    ]);
    (state, failed)
}

#[test]
fn a_systemd_guest_boots_reboots_and_stops() {
    if !require(is_root(), "root") {
        return;
    }
    let tree = harness::guest::debian_tree(&["--systemd"]);
    if !require(
        tree.is_some(),
        "the Debian 12 systemd guest tree (scripts/debian-guest.sh --systemd)",
    ) {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::new("sdg")
        .context(41200)
        .file("uts/nodename", "sdg\n")
        .file("apps/init/style", "plain\n")
        .write(&d);
    let root = d.guest_root("sdg");
    harness::guest::install_tree(&root, tree.as_deref().unwrap());
    d.spawn();

    d.ctl_ok(&["start", "sdg"]);
    let (state, failed) = booted(&d);
    // Every unit starts: console-getty too, on the console pty.
    assert!(
        state == "running" && failed.trim().is_empty(),
        "is-system-running: {state:?}; failed units:\n{failed}"
    );
    // getty's prompt is in the console log; once it is there, a newline typed through
    // `vserverctl console` makes getty ask again.
    let log = d.run_dir.join("guests/sdg.log");
    d.wait_until("a login prompt on the console", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("sdg login:"))
    });
    let (_, shown) = d.console("sdg", "\n", "sdg login:");
    assert!(shown.contains("sdg login:"), "the console shows: {shown:?}");
    // The services that narrow their capabilities (needs CAP_SETPCAP) run.
    for unit in ["systemd-journald", "systemd-logind", "dbus"] {
        let a = d.ctl(&["exec", "sdg", "--", "systemctl", "is-active", unit]);
        assert_eq!(
            String::from_utf8_lossy(&a.stdout).trim(),
            "active",
            "{unit}; failed units:\n{failed}"
        );
    }
    // The kernel's view of init: systemd, container=vserverd, the secure set plus SETPCAP.
    let pid = d.init_pid("sdg");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "systemd"
    );
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(env.split(|b| *b == 0).any(|v| v == b"container=vserverd"));
    let bnd = cap_bnd(pid);
    assert_ne!(bnd & (1 << CAP_SETPCAP), 0, "CapBnd {bnd:x}");
    assert_eq!(bnd & (1 << CAP_SYS_ADMIN), 0, "CapBnd {bnd:x}");
    // Its cgroup tree is the guest's own cgroup, systemd's to manage: init.scope and
    // system.slice are made below the guest's cgroup, not elsewhere.
    let v2 = d
        .cgroup_dirs("sdg")
        .into_iter()
        .find(|p| p.join("cgroup.type").exists())
        .expect("the guest's cgroup2 dir");
    assert!(v2.join("init.scope").is_dir() && v2.join("system.slice").is_dir());
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // (Read from the host: the host's view of the path.)
    assert!(
        host_view
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with("/sdg/init.scope")),
        "{host_view}"
    );
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let fs_at = |target: &str| {
        mi.lines()
            .filter(|l| l.split(' ').nth(4) == Some(target))
            .filter_map(|l| l.split(" - ").nth(1)?.split(' ').next())
            .next_back()
            .map(str::to_string)
    };
    assert_eq!(fs_at("/run").as_deref(), Some("tmpfs"), "{mi}");
    assert_eq!(fs_at("/sys/fs/cgroup").as_deref(), Some("cgroup2"), "{mi}");

    // `systemctl reboot` inside: the pid namespace's init exits by SIGHUP, the daemon starts
    // the guest again.
    let _ = d.ctl(&["exec", "sdg", "--", "systemctl", "reboot"]);
    d.wait_until("the guest rebooted", || {
        let s = d.status("sdg");
        s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p != pid as i64)
    });
    let (state, failed) = booted(&d);
    assert!(
        state == "running" || state == "degraded",
        "after reboot: {state:?}; failed units:\n{failed}"
    );

    // Stop: SIGRTMIN+4 (systemd's halt), then nothing left, cgroups included.
    let out = d.ctl_ok(&["stop", "sdg"]);
    assert!(out.contains("SIGRTMIN+4"), "{out}");
    assert_eq!(d.status("sdg")["state"], "stopped");
    assert!(!v2.exists(), "{} left behind", v2.display());
}

/// Issue 17's walk-through where it applies to a systemd guest: nginx as a systemd unit runs
/// once the guest has booted and serves; `systemctl restart nginx` gives a new master and the
/// old one is reaped; no zombie is left; stop ends every process of the guest. Durations are
/// printed, not bounded.
#[test]
fn nginx_as_a_systemd_unit_starts_restarts_and_stops_with_the_guest() {
    if !require(is_root(), "root") {
        return;
    }
    let tree = harness::guest::debian_tree(&["--systemd"]);
    if !require(
        tree.is_some(),
        "the Debian 12 systemd guest tree (scripts/debian-guest.sh --systemd)",
    ) {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::new("sdn")
        .context(41201)
        .file("apps/init/style", "plain\n")
        .write(&d);
    harness::guest::install_tree(&d.guest_root("sdn"), tree.as_deref().unwrap());
    d.spawn();
    let t = std::time::Instant::now();
    d.ctl_ok(&["start", "sdn"]);
    let (state, failed) = booted_guest(&d, "sdn");
    eprintln!("start and boot: {:.3} s", t.elapsed().as_secs_f64());
    assert!(
        state == "running" && failed.trim().is_empty(),
        "is-system-running: {state:?}; failed units:\n{failed}"
    );
    let init = d.init_pid("sdn");
    assert_eq!(
        d.ctl_ok(&["exec", "sdn", "--", "systemctl", "is-active", "nginx"])
            .trim(),
        "active"
    );
    let page = http_get(&d, "sdn");
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("Welcome to nginx"),
        "{page}"
    );
    let before = nginx_master(init).expect("nginx's master runs");
    let t = std::time::Instant::now();
    d.ctl_ok(&["exec", "sdn", "--", "systemctl", "restart", "nginx"]);
    eprintln!(
        "systemctl restart nginx: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let after = nginx_master(init).expect("nginx's master runs again");
    assert_ne!(before, after);
    assert!(
        !std::path::Path::new(&format!("/proc/{before}")).exists(),
        "the old master {before} is still there: {:?}",
        guest_processes(init)
    );
    assert!(http_get(&d, "sdn").starts_with("HTTP/1.1 200 OK"));
    d.wait_until("no zombie in the guest", || zombies(init).is_empty());
    let t = std::time::Instant::now();
    d.ctl_ok(&["stop", "sdn"]);
    eprintln!("stop: {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(d.status("sdn")["state"], "stopped");
    assert!(
        guest_processes(init).is_empty(),
        "{:?}",
        guest_processes(init)
    );
    for dir in d.cgroup_dirs("sdn") {
        assert!(!dir.exists(), "{} left", dir.display());
    }
}
