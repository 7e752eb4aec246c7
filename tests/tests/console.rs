//! Guest consoles: /dev/console and init's stdio are a pty whose master the console keeper
//! holds; `vserverctl console` attaches to it, everything it shows is logged, and both survive
//! the daemon.

use harness::{GuestBuilder, TestDaemon};

#[test]
fn the_console_is_a_pty_kept_apart_from_the_daemon() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("con").context(45001).write(&d);
    // A shell on the console, as a getty would be.
    std::fs::write(
        d.guest_root("con").join("etc/inittab"),
        "::sysinit:/bin/true\n::respawn:/bin/sh\n::ctrlaltdel:/sbin/poweroff -f\n",
    )
    .unwrap();
    d.spawn();
    d.ctl_ok(&["start", "con"]);
    let init = d.init_pid("con");
    // The kernel's view: init's stdin is a host pty slave, and so is the guest's /dev/console.
    let stdin = std::fs::read_link(format!("/proc/{init}/fd/0")).unwrap();
    assert!(stdin.starts_with("/dev/pts/"), "{stdin:?}");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dev = std::fs::metadata(format!("/proc/{init}/root/dev/console")).unwrap();
    let host = std::fs::metadata(&stdin).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), host.rdev(), "/dev/console is init's pty");

    let (ok, out) = d.console("con", "echo hi-$((6*7))\n", "hi-42");
    assert!(ok && out.contains("hi-42"), "{out}");
    let log = d.run_dir.join("guests/con.log");
    assert!(std::fs::read_to_string(&log).unwrap().contains("hi-42"));

    // The daemon dies and comes back: the console lives on.
    d.kill();
    d.spawn();
    let (ok, out) = d.console("con", "echo again-$((6*7))\n", "again-42");
    assert!(ok && out.contains("again-42"), "{out}");

    d.ctl_ok(&["stop", "con"]);
    let (ok, out) = d.console("con", "", "not running");
    assert!(!ok && out.contains("not running"), "{out}");
}
