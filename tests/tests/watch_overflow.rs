//! The watcher after its inotify queue overflowed: the events lost may include new folders,
//! and later edits in them must still be seen.
//!
//! A test binary of its own: it shrinks the host's `fs.inotify.max_queued_events` while its
//! daemon makes its inotify instance (the limit is taken then), and no other daemon should be
//! starting meanwhile.

use harness::{is_root, require, GuestBuilder, TestDaemon};

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

/// Puts the sysctl back however the test ends.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(MAX_QUEUED, &self.0);
    }
}

fn mark_of(d: &TestDaemon, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["list", "--json"])).unwrap();
    v["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .map(|g| g["mark"].clone())
        .unwrap_or_default()
}

#[test]
fn folders_made_while_events_were_lost_are_watched() {
    if !require(is_root(), "root (to set fs.inotify.max_queued_events)") {
        return;
    }
    let mut d = TestDaemon::prepare();
    let old = std::fs::read_to_string(MAX_QUEUED).unwrap();
    {
        let _restore = Restore(old.clone());
        std::fs::write(MAX_QUEUED, "16").unwrap();
        d.spawn();
        // List answers only once the watcher is set up, so its queue has the small limit.
        d.ctl_ok(&["list"]);
    }
    assert_eq!(std::fs::read_to_string(MAX_QUEUED).unwrap(), old);

    // New guests, each a few folders and files, made while the daemon is stopped: far more
    // than 16 events queue up, so the kernel drops the rest and says so.
    let n: u32 = 100;
    let pid = nix::unistd::Pid::from_raw(d.pid().expect("daemon runs") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    for i in 0..n {
        GuestBuilder::new(&format!("o{i:03}"))
            .context(44000 + i)
            .file("apps/init/mark", "before\n")
            .write(&d);
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    d.wait_until("every new guest in List, with its mark", || {
        let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["list", "--json"])).unwrap();
        let g = v["guests"].as_array().unwrap();
        g.len() == n as usize && g.iter().all(|g| g["mark"] == serde_json::json!(["before"]))
    });
    assert!(
        d.log()
            .contains("inotify queue overflowed: rescanning the config root"),
        "the queue did not overflow; log:\n{}",
        d.log()
    );

    // One edit at a time (a few events: no overflow, so no full rescan to hide a missing
    // watch): each must be seen through the watch on its apps/init folder.
    for i in 0..n {
        let name = format!("o{i:03}");
        std::fs::write(d.guest_config(&name).join("apps/init/mark"), "after\n").unwrap();
        d.wait_until(&format!("{name}'s new mark"), || {
            mark_of(&d, &name) == serde_json::json!(["after"])
        });
    }
}
