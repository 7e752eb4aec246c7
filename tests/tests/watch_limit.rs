//! The watcher at the host's inotify watch limit: said before it bites and when it bites.
//!
//! A test binary of its own: it lowers the host's `fs.inotify.max_user_watches` (shared by
//! every uid-0 process) for a moment, and puts it back however the test ends.

use harness::{is_root, require, GuestBuilder, TestDaemon};

const MAX_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(MAX_WATCHES, &self.0);
    }
}

#[test]
fn the_watch_limit_is_reported_before_and_when_it_bites() {
    if !require(is_root(), "root (to set fs.inotify.max_user_watches)") {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.spawn();
    d.ctl_ok(&["list"]);
    let old = std::fs::read_to_string(MAX_WATCHES).unwrap();
    {
        let _restore = Restore(old.clone());
        // A little above what uid 0 holds now: the new guests' folders pass it.
        std::fs::write(MAX_WATCHES, "64").unwrap();
        for i in 0..40u32 {
            GuestBuilder::new(&format!("w{i:02}"))
                .context(46000 + i)
                .file("apps/init/mark", "m\n")
                .write(&d);
        }
        d.wait_until("the watcher says the limit was reached", || {
            d.log().contains("inotify watch limit reached")
        });
    }
    assert_eq!(std::fs::read_to_string(MAX_WATCHES).unwrap(), old);
    let log = d.log();
    assert!(
        log.contains("fs.inotify.max_user_watches = 64"),
        "the limit's value is named"
    );
    // Said once, not once per folder.
    assert_eq!(log.matches("inotify watch limit reached").count(), 1);
}
