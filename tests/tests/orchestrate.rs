//! Many guests: apps/init/depends order, marks, parallel start and reverse stop, cycles and
//! failed dependencies — real busybox guests through the daemon's socket.

use std::os::unix::fs::PermissionsExt;

use harness::{GuestBuilder, TestDaemon};

fn prerequisites() -> bool {
    harness::require_busybox_guests()
}

/// A busybox guest whose pre-start and post-stop hooks log its name, so the test sees order.
fn guest(d: &TestDaemon, name: &str, ctx: u32, depends: &[&str], mark: bool) -> GuestBuilder {
    let log = d.dir.path().join("order.log");
    let mut g = GuestBuilder::busybox(name)
        .context(ctx)
        .file(
            "scripts/pre-start",
            &format!("#!/bin/sh\necho \"start $2\" >> {}\n", log.display()),
        )
        .file(
            "scripts/post-stop",
            &format!("#!/bin/sh\necho \"stop $2\" >> {}\n", log.display()),
        );
    if !depends.is_empty() {
        g = g.file("apps/init/depends", &format!("{}\n", depends.join("\n")));
    }
    if mark {
        g = g.file("apps/init/mark", "default\n");
    }
    g
}

fn write(d: &TestDaemon, g: GuestBuilder) {
    let cfg = g.write(d);
    for h in ["pre-start", "post-stop"] {
        let p = cfg.join("scripts").join(h);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

fn order(d: &TestDaemon, verb: &str) -> Vec<String> {
    std::fs::read_to_string(d.dir.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{verb} ")).map(String::from))
        .collect()
}

fn pos(v: &[String], n: &str) -> usize {
    v.iter()
        .position(|x| x == n)
        .unwrap_or_else(|| panic!("{n} missing from {v:?}"))
}

#[test]
fn start_brings_up_dependencies_first() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    write(&d, guest(&d, "db", 42001, &[], false));
    write(&d, guest(&d, "cache", 42002, &[], false));
    write(&d, guest(&d, "web", 42003, &["db", "cache"], false));
    write(&d, guest(&d, "app", 42004, &["web"], false));
    d.spawn();
    d.ctl_ok(&["start", "app"]);
    for g in ["db", "cache", "web", "app"] {
        assert_eq!(d.status(g)["state"], "running", "{g}");
    }
    let o = order(&d, "start");
    assert!(
        pos(&o, "db") < pos(&o, "web") && pos(&o, "cache") < pos(&o, "web"),
        "{o:?}"
    );
    assert!(pos(&o, "web") < pos(&o, "app"), "{o:?}");
    // Stopping one guest leaves what it depends on running (as util-vserver did).
    d.ctl_ok(&["stop", "app"]);
    assert_eq!(d.status("web")["state"], "running");
}

#[test]
fn cycles_and_unknown_dependencies_start_nothing() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    write(&d, guest(&d, "a", 42011, &["b"], false));
    write(&d, guest(&d, "b", 42012, &["a"], false));
    write(&d, guest(&d, "c", 42013, &["ghost"], false));
    d.spawn();
    let o = d.ctl(&["start", "a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dependency cycle: a -> b -> a"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.ctl(&["start", "c"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("c depends on ghost, which is not configured")
    );
    for g in ["a", "b", "c"] {
        assert_eq!(d.status(g)["state"], "stopped");
    }
    assert!(order(&d, "start").is_empty());
}

#[test]
fn a_failed_dependency_stops_its_dependents_only() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    write(
        &d,
        guest(&d, "broken", 42021, &[], true).file("fstab", "none /tmp nosuchfs defaults 0 0\n"),
    );
    write(&d, guest(&d, "needy", 42022, &["broken"], true));
    write(&d, guest(&d, "fine", 42023, &[], true));
    d.spawn();
    let o = d.ctl(&["start", "needy"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("needy: dependency broken failed") && err.contains("fstab:1"),
        "{err}"
    );
    // With a mark: the unrelated branch still starts, and the failure is summed up.
    let o = d.ctl(&["start", "--mark", "default"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("2 of 3 guests failed"), "{err}");
    assert_eq!(d.status("fine")["state"], "running");
    assert_eq!(d.status("needy")["state"], "stopped");
}

#[test]
fn marks_start_in_order_in_parallel_and_stop_in_reverse() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // Two chains and loners; `other` has no mark and is not touched.
    write(&d, guest(&d, "base", 42031, &[], true));
    write(&d, guest(&d, "mid", 42032, &["base"], true));
    write(&d, guest(&d, "top", 42033, &["mid"], true));
    for (i, n) in ["l1", "l2", "l3", "l4"].iter().enumerate() {
        write(&d, guest(&d, n, 42040 + i as u32, &[], true));
    }
    write(&d, guest(&d, "other", 42050, &[], false));
    write(&d, guest(&d, "off", 42051, &[], true).file("disabled", ""));
    d.spawn();
    let out = d.ctl_ok(&["start", "--mark", "default", "--parallel", "3"]);
    for g in ["base", "mid", "top", "l1", "l2", "l3", "l4"] {
        assert_eq!(d.status(g)["state"], "running", "{g}: {out}");
    }
    assert_eq!(d.status("other")["state"], "stopped");
    assert_eq!(
        d.status("off")["state"],
        "stopped",
        "disabled guests are skipped by marks"
    );
    let o = order(&d, "start");
    assert!(
        pos(&o, "base") < pos(&o, "mid") && pos(&o, "mid") < pos(&o, "top"),
        "{o:?}"
    );
    d.ctl_ok(&["stop", "--mark", "default"]);
    for g in ["base", "mid", "top", "l1", "l2", "l3", "l4"] {
        assert_eq!(d.status(g)["state"], "stopped", "{g}");
    }
    let o = order(&d, "stop");
    assert!(
        pos(&o, "top") < pos(&o, "mid") && pos(&o, "mid") < pos(&o, "base"),
        "{o:?}"
    );
}

#[test]
fn list_and_status_answer_during_a_mass_start() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    for i in 0..24u32 {
        let name = format!("m{i:02}");
        let mut g = GuestBuilder::busybox(&name)
            .context(42100 + i)
            .file("apps/init/mark", "default\n");
        if i >= 8 {
            g = g.file("apps/init/depends", &format!("m{:02}\n", i - 8));
        } else {
            // The first layer takes a while to start (two rounds of four), so the start
            // surely lasts longer than a List: it is no race with how fast starts are.
            g = g.file("scripts/pre-start", "#!/bin/sh\nsleep 0.2\n");
        }
        g.write(&d);
    }
    d.spawn();
    let mut start = std::process::Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(["start", "--mark", "default", "--parallel", "4"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answered_while_starting = 0;
    loop {
        let running = start.try_wait().unwrap().is_none();
        let list = d.ctl_ok(&["list", "--json"]);
        assert!(list.contains("m23"));
        let st = d.status("m00");
        assert!(st["state"].is_string(), "{st}");
        if running && start.try_wait().unwrap().is_none() {
            answered_while_starting += 1;
        } else {
            break;
        }
    }
    assert!(start.wait().unwrap().success());
    assert!(
        answered_while_starting > 0,
        "no List call completed during the start"
    );
    for i in 0..24 {
        assert_eq!(d.status(&format!("m{i:02}"))["state"], "running");
    }
    d.ctl_ok(&["stop", "--mark", "default"]);
}
