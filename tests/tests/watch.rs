//! The inotify watcher and the Events stream: new, changed and deleted guests are seen without
//! polling, a running guest's changed config is flagged "restart needed", and state changes
//! stream to any client.

use std::io::BufRead;

use harness::{GuestBuilder, TestDaemon};

/// The guests of `vserverctl list --json`.
fn listed(d: &TestDaemon) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["list", "--json"])).unwrap();
    v["guests"].as_array().cloned().unwrap_or_default()
}

fn names(d: &TestDaemon) -> Vec<String> {
    listed(d)
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

fn summary(d: &TestDaemon, name: &str) -> serde_json::Value {
    listed(d)
        .into_iter()
        .find(|g| g["name"] == name)
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn new_changed_and_deleted_guests_are_seen() {
    let d = TestDaemon::start();
    assert!(names(&d).is_empty());
    // A guest made after the daemon started, folder first and files later (as cp -r does).
    GuestBuilder::new("late").context(43001).write(&d);
    d.wait_until("the new guest in List", || names(&d) == ["late"]);
    // An editor's save: a temp file renamed over the real one.
    let cfg = d.guest_config("late");
    std::fs::create_dir_all(cfg.join("apps/init")).unwrap();
    std::fs::write(cfg.join("apps/init/.mark.swp"), "web\n").unwrap();
    std::fs::rename(cfg.join("apps/init/.mark.swp"), cfg.join("apps/init/mark")).unwrap();
    d.wait_until("the new mark", || {
        summary(&d, "late")["mark"] == serde_json::json!(["web"])
    });
    // A broken edit shows as a config error with file and line.
    std::fs::write(cfg.join("context"), "lots\n").unwrap();
    d.wait_until("the config error", || {
        summary(&d, "late")["config_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected a context id"))
    });
    std::fs::remove_dir_all(&cfg).unwrap();
    d.wait_until("the guest to vanish", || names(&d).is_empty());
}

/// A guest folder may be a symlink to a folder elsewhere: it is listed, edits made in the
/// real folder are seen (whether the link came before or after the daemon), and removing the
/// link removes the guest.
#[test]
fn a_symlinked_guest_folder_is_watched() {
    let mut d = TestDaemon::start();
    let real = d.dir.path().join("elsewhere-linked");
    let cfg = GuestBuilder::new("linked").context(43003).write(&d);
    d.wait_until("the guest in List", || names(&d) == ["linked"]);
    // Moved out of the root: gone, and its watches with it.
    std::fs::rename(&cfg, &real).unwrap();
    d.wait_until("the moved guest to vanish", || names(&d).is_empty());
    std::os::unix::fs::symlink(&real, &cfg).unwrap();
    d.wait_until("the linked guest in List", || names(&d) == ["linked"]);
    let mark = |d: &TestDaemon, m: &str| {
        std::fs::create_dir_all(real.join("apps/init")).unwrap();
        std::fs::write(real.join("apps/init/mark"), format!("{m}\n")).unwrap();
        d.wait_until(&format!("mark {m}"), || {
            summary(d, "linked")["mark"] == serde_json::json!([m])
        });
    };
    mark(&d, "one");
    mark(&d, "two");
    // A daemon started with the link in place watches through it too.
    d.stop();
    d.spawn();
    mark(&d, "three");
    std::fs::remove_file(&cfg).unwrap();
    d.wait_until("the unlinked guest to vanish", || names(&d).is_empty());
}

/// List is answered from the list built last while nothing changed: every state change must
/// show at once, with no wait, as the call that made it has returned.
#[test]
fn list_shows_each_state_change_at_once() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("seen").context(43003).write(&d);
    d.spawn();
    d.wait_until("the guest in List", || names(&d) == ["seen"]);
    for _ in 0..3 {
        assert_eq!(summary(&d, "seen")["state"], "stopped");
        d.ctl_ok(&["start", "seen"]);
        assert_eq!(summary(&d, "seen")["state"], "running");
        d.ctl_ok(&["stop", "seen"]);
    }
    assert_eq!(summary(&d, "seen")["state"], "stopped");
}

#[test]
fn a_running_guests_changed_config_needs_a_restart() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("live").context(43002).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "live"]);
    let cfg = d.guest_config("live");
    // The same content again is no change; nor are a mark and a dependency, which only the
    // orchestrator reads (List shows them at once).
    std::fs::write(cfg.join("context"), "43002\n").unwrap();
    std::fs::create_dir_all(cfg.join("apps/init")).unwrap();
    std::fs::write(cfg.join("apps/init/mark"), "default\n").unwrap();
    std::fs::write(cfg.join("apps/init/depends"), "nothing-here\n").unwrap();
    d.wait_until("the new mark in List", || {
        d.ctl_ok(&["list", "--json"]).contains("\"default\"")
    });
    assert_eq!(d.status("live")["restart_needed"], false);
    std::fs::remove_file(cfg.join("apps/init/depends")).unwrap();
    std::fs::create_dir_all(cfg.join("uts")).unwrap();
    std::fs::write(cfg.join("uts/nodename"), "other\n").unwrap();
    d.wait_until("restart needed", || {
        d.status("live")["restart_needed"] == true
    });
    assert!(d.ctl_ok(&["status", "live"]).contains("restart needed"));
    d.ctl_ok(&["restart", "live"]);
    assert_eq!(d.status("live")["restart_needed"], false);
    assert_eq!(
        d.ctl_ok(&["exec", "live", "--", "hostname"]).trim(),
        "other"
    );
    // Deleting the config tree of a running guest: it keeps running, flagged, and stops.
    let keep = d.dir.path().join("live-cfg");
    std::fs::rename(&cfg, &keep).unwrap();
    d.wait_until("the flag on the orphaned guest", || {
        summary(&d, "live")["config_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gone"))
    });
    assert_eq!(summary(&d, "live")["state"], "running");
    d.ctl_ok(&["stop", "live"]);
    d.wait_until("the stopped orphan to vanish", || {
        !names(&d).contains(&"live".to_string())
    });
}

#[test]
fn events_stream_state_changes() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("ev").context(43003).write(&d);
    d.spawn();
    let mut child = std::process::Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The subscription is made once the call arrives; give it a first event to prove it.
    d.wait_until("the events stream to be up", || {
        std::fs::write(d.guest_config("ev").join("nice"), "0\n").unwrap();
        rx.recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
    });
    d.ctl_ok(&["start", "ev"]);
    d.ctl_ok(&["stop", "ev"]);
    let mut kinds = Vec::new();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
        // "NAME KIND [MESSAGE]"
        let mut w = l.split_whitespace();
        if w.next() == Some("ev") {
            let kind = w.next().unwrap_or_default().to_string();
            if kind != "config-changed" {
                kinds.push(kind);
            }
        }
        if kinds.last().map(String::as_str) == Some("stopped") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(kinds, ["starting", "running", "stopping", "stopped"]);
}

/// A client that reads Events too slowly is told that it missed some ("lost"), as inotify
/// tells of a queue overflow, instead of silently seeing a stream with holes.
#[test]
fn a_slow_events_client_is_told_what_it_lost() {
    let d = TestDaemon::start();
    let n = 1100u32;
    for i in 0..n {
        GuestBuilder::new(&format!("e{i:04}"))
            .context(45000 + i)
            .write(&d);
    }
    d.wait_until("every guest in List", || names(&d).len() == n as usize);
    let mut slow = harness::varlink::Raw::connect(&d.socket);
    slow.send(&serde_json::json!({"method": "org.linux-vserver.Manager.Events", "more": true}));
    // The subscription is made when the call arrives: the event of this edit proves it
    // (events of the guests just written may still be on their way before it).
    std::fs::write(d.guest_config("e0000").join("nice"), "0\n").unwrap();
    let mut first = slow.recv().expect("an event");
    for _ in 0..2 * n {
        if first["parameters"]["name"] == "e0000" {
            break;
        }
        first = slow.recv().expect("an event");
    }
    assert_eq!(first["parameters"]["name"], "e0000", "{first}");

    // Three changes to .defaults, each a config-changed event for every guest (3300), while
    // the client reads nothing: far more than its socket and the daemon's queue hold.
    let applied = |d: &TestDaemon| {
        d.log()
            .matches(&format!("config changes applied to {n} guests"))
            .count()
    };
    let before = applied(&d);
    std::fs::create_dir_all(d.config_root.join(".defaults")).unwrap();
    for i in 0..3 {
        std::fs::write(d.config_root.join(".defaults/README"), format!("{i}\n")).unwrap();
        d.wait_until("the watcher to apply the change", || {
            applied(&d) > before + i
        });
    }
    let mut seen = 0;
    let lost = loop {
        let ev = slow.recv().expect("the stream goes on");
        let p = &ev["parameters"];
        if p["kind"] == "lost" {
            break p.clone();
        }
        assert_eq!(p["kind"], "config-changed", "{ev}");
        seen += 1;
        assert!(seen < 3 * n, "every event arrived: nothing was lost");
    };
    assert_eq!(lost["name"], "");
    assert!(
        lost["message"]
            .as_str()
            .is_some_and(|m| m.contains("events were dropped") && m.contains("call List")),
        "{lost}"
    );
    // The stream goes on after the notice.
    std::fs::write(d.guest_config("e0001").join("nice"), "0\n").unwrap();
    loop {
        let ev = slow.recv().expect("the stream goes on");
        if ev["parameters"]["name"] == "e0001" {
            break;
        }
    }
}
