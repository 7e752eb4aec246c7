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

    // A hostile guest's console: title, clipboard, alternate screen, a query; colours pass.
    let (ok, out) = d.console(
        "con",
        "printf '\\033]0;pwned\\007\\033]52;c;ZWNobw==\\033\\\\\\033[?1049h\\033[6n\\033[31mred-\\033[0mdone\\n'\n",
        "done",
    );
    assert!(ok && out.contains("\u{1b}[31mred-\u{1b}[0mdone"), "{out:?}");
    for bad in ["\u{1b}]0;", "\u{1b}]52;", "\u{1b}[?1049h", "\u{1b}[6n"] {
        assert!(!out.contains(bad), "{bad:?} reached the terminal: {out:?}");
    }
    // The log shows them, without the escape byte a terminal would obey.
    let logged = std::fs::read(&log).unwrap();
    assert!(!logged.contains(&0x1b), "raw escapes in the log");
    assert!(String::from_utf8_lossy(&logged).contains("^[]0;pwned^G"));

    // The daemon dies and comes back: the console lives on.
    d.kill();
    d.spawn();
    let (ok, out) = d.console("con", "echo again-$((6*7))\n", "again-42");
    assert!(ok && out.contains("again-42"), "{out}");

    d.ctl_ok(&["stop", "con"]);
    let (ok, out) = d.console("con", "", "not running");
    assert!(!ok && out.contains("not running"), "{out}");
}

#[test]
fn a_console_flood_stays_within_the_log_cap_and_delete_removes_the_logs() {
    if !harness::require_busybox_guests() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("flood").context(45002).write(&d);
    // 5 MB on the console, then the marker a test waits for.
    std::fs::write(
        d.guest_root("flood").join("etc/inittab"),
        "::sysinit:/bin/sh -c 'yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c 5000000; echo flood-done'\n\
         ::respawn:/bin/sleep 1000000\n::ctrlaltdel:/sbin/poweroff -f\n",
    )
    .unwrap();
    d.spawn();
    d.ctl_ok(&["start", "flood"]);
    let log = d.run_dir.join("guests/flood.log");
    d.wait_until("the flood's end in the log", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("flood-done"))
    });
    // The keeper is named for what it is in ps.
    let keeper = std::fs::read_to_string(d.run_dir.join("console.pid")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", keeper.trim())).unwrap();
    assert!(
        cmdline.starts_with(b"vserverd-tty\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let m = std::fs::metadata(&log).unwrap();
    let cap = 1 << 20;
    assert!(m.len() <= cap, "log is {} bytes", m.len());
    assert!(
        m.blocks() * 512 <= cap + 65536,
        "log holds {} blocks",
        m.blocks()
    );
    let text = std::fs::read(&log).unwrap();
    assert!(
        text.starts_with(b"[vserverd: console log cut at 1 MiB]"),
        "the log after a cut starts with {:?}",
        String::from_utf8_lossy(&text[..text.len().min(80)])
    );
    assert!(!text.contains(&0u8), "NUL bytes in the log");
    // The next run keeps this run's log as flood.log.1, within the same cap.
    d.ctl_ok(&["restart", "flood"]);
    let prev = d.run_dir.join("guests/flood.log.1");
    d.wait_until("the last run's log kept", || {
        std::fs::read_to_string(&prev).is_ok_and(|s| s.contains("flood-done"))
    });
    d.ctl_ok(&["delete", "flood", "--stop", "--yes"]);
    assert!(
        !log.exists() && !prev.exists(),
        "delete left the console logs"
    );
}

/// A daemon from a newer package meets helpers started by an older one (here: started as
/// helpers from before protocol versions, VSERVERD_HELPER_PROTOCOL=0, debug builds only). It
/// recognises both, takes the console keeper's ptys over into a new keeper (the console keeps
/// its log and answers), and replaces the /proc server, binding the guest's meminfo again.
#[test]
fn helpers_of_another_protocol_are_replaced_keeping_console_and_proc_files() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("old")
        .context(45003)
        .file("cflags", "virt_mem\n")
        .file("rlimits/rss", "16384\n")
        .write(&d);
    std::fs::write(
        d.guest_root("old").join("etc/inittab"),
        "::sysinit:/bin/true\n::respawn:/bin/sh\n::ctrlaltdel:/sbin/poweroff -f\n",
    )
    .unwrap();
    d.env = vec![("VSERVERD_HELPER_PROTOCOL".into(), "0".into())];
    d.spawn();
    d.ctl_ok(&["start", "old"]);
    let init = d.init_pid("old");
    let (ok, out) = d.console("old", "echo one-$((6*7))\n", "one-42");
    assert!(ok && out.contains("one-42"), "{out}");
    let run = d.run_dir.clone();
    let pid_in = |f: &str| -> i32 {
        std::fs::read_to_string(run.join(f))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let (keeper, server) = (pid_in("console.pid"), pid_in("procfs.pid"));
    assert!(keeper > 0 && server > 0, "keeper {keeper}, server {server}");
    let source = || {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        vserverd::procfs::source_at(&mi, &vserverd::procfs::mount_dir(&run))
    };
    assert_eq!(source().as_deref(), Some("vserverd-procfs"));
    let total = |d: &TestDaemon| -> String {
        d.ctl_ok(&["exec", "old", "--", "cat", "/proc/meminfo"])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let before = total(&d);
    assert!(before.starts_with("MemTotal:"), "{before}");

    // The new daemon: helpers of our protocol.
    d.kill();
    d.env.clear();
    d.spawn();
    assert_eq!(d.init_pid("old"), init, "the guest was not adopted");
    assert!(
        !std::path::Path::new(&format!("/proc/{keeper}")).exists(),
        "the old keeper {keeper} still runs"
    );
    let new_keeper = pid_in("console.pid");
    assert!(
        new_keeper > 0 && new_keeper != keeper,
        "keeper {keeper} -> {new_keeper}"
    );
    assert!(
        d.log().contains("replaced the console keeper (no version"),
        "{}",
        d.log()
    );
    // The same console, its log going on.
    let (ok, out) = d.console("old", "echo two-$((6*7))\n", "two-42");
    assert!(ok && out.contains("two-42"), "{out}");
    let log = std::fs::read_to_string(run.join("guests/old.log")).unwrap();
    assert!(log.contains("one-42") && log.contains("two-42"), "{log}");
    // The /proc server: a new one, of our protocol, the guest's meminfo bound to it again.
    d.wait_until("a new /proc server", || {
        source().as_deref() == Some("vserverd-procfs-v1") && pid_in("procfs.pid") != server
    });
    assert!(!std::path::Path::new(&format!("/proc/{server}")).exists());
    d.wait_until("meminfo answering again", || {
        d.ctl(&["exec", "old", "--", "cat", "/proc/meminfo"])
            .status
            .success()
    });
    assert_eq!(total(&d), before);

    d.ctl_ok(&["stop", "old"]);
}
