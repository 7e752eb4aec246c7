//! A debootstrapped Debian 12 guest with sysvinit, init style sysv: the daemon's reaper stays
//! PID 1 and runs `/etc/init.d/rc 3`; stop runs `rc 6`, then the kill sequence. The tree comes
//! from scripts/debian-guest.sh (cached) and is copied per test.

use std::process::Command;

use harness::{is_root, require, GuestBuilder, TestDaemon};

fn debian_tree() -> Option<String> {
    harness::guest::debian_tree(&[])
}

#[test]
fn debian_sysv_guest_starts_runs_and_stops() {
    if !require(is_root(), "root") {
        return;
    }
    let tree = debian_tree();
    if !require(
        tree.is_some(),
        "the Debian 12 guest tree (scripts/debian-guest.sh)",
    ) {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::new("deb")
        .context(41100)
        .file("uts/nodename", "deb\n")
        // virt_mem: procps's free shows the 256 MiB limit (rss in 4 KiB pages).
        .file("cflags", "virt_mem\n")
        .file("rlimits/rss", "65536\n")
        .write(&d);
    let root = d.guest_root("deb");
    harness::guest::install_tree(&root, tree.as_deref().unwrap());
    // rc.local starts a daemon and records rc's environment.
    std::fs::write(
        root.join("etc/rc.local"),
        "#!/bin/sh\nenv > /root/rc-env\n/bin/sleep 1000000 &\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("etc/rc.local"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("var/run/stale.pid"), "1\n").ok();
    d.spawn();

    d.ctl_ok(&["start", "deb"]);
    let pid = d.init_pid("deb");
    // PID 1 is the reaper, from the sealed memfd; rc has returned, its daemon lives on.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "vserverd-init"
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().contains("memfd:vserverd-stage"),
        "{exe:?}"
    );
    let env = std::fs::read_to_string(root.join("root/rc-env")).unwrap();
    assert!(
        env.contains("RUNLEVEL=3") && env.contains("PREVLEVEL=N"),
        "{env}"
    );
    assert!(!root.join("var/run/stale.pid").exists() || !root.join("run/stale.pid").exists());
    // utmp says the runlevel (written by PID 1 after rc's /var/run cleanup), so
    // invoke-rc.d starts what a package installs.
    assert_eq!(
        d.ctl_ok(&["exec", "deb", "--", "/sbin/runlevel"]).trim(),
        "N 3"
    );
    let free = d.ctl_ok(&["exec", "deb", "--", "free", "-k"]);
    let mem: Vec<u64> = free
        .lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .unwrap_or_else(|| panic!("{free}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let page = harness::page_size();
    assert_eq!(
        mem[0],
        65536 * page / 1024,
        "free's total is the limit: {free}"
    );
    assert!(
        mem[1] > 0 && mem[1] < mem[0],
        "used within the limit: {free}"
    );
    let out = d.ctl_ok(&[
        "exec",
        "deb",
        "--",
        "sh",
        "-c",
        "cat /etc/debian_version; hostname; cat /proc/[0-9]*/comm",
    ]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("12"), "{out}");
    assert_eq!(lines.next(), Some("deb"));
    let comms: Vec<&str> = lines.collect();
    assert!(
        comms.contains(&"vserverd-init") && comms.contains(&"sleep"),
        "{comms:?}"
    );
    // A pty session, as `vserverctl enter` gives: bash sees a terminal from the guest's devpts.
    let o = Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args([
            "exec",
            "-t",
            "deb",
            "--",
            "bash",
            "-c",
            "tty; test -t 0 && echo terminal",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("terminal"),
        "{text}"
    );
    // enter: the guest's shell (bash here) on a pty; its exit code comes back.
    let mut child = Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(["enter", "deb"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo \"in $(hostname) as $(id -un)\"; exit 4\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("in deb as root"));
    let o = d.ctl(&["status", "deb"]);
    assert_eq!(o.status.code(), Some(0));

    d.ctl_ok(&["stop", "deb"]);
    assert_eq!(d.status("deb")["state"], "stopped");
    for dir in d.cgroup_dirs("deb") {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true));
}

#[test]
fn a_failing_rc_fails_the_start() {
    if !require(is_root(), "root") {
        return;
    }
    let mut d = TestDaemon::prepare();
    // A busybox root with an rc that fails: sysv start is synchronous and checks it.
    GuestBuilder::busybox("badrc")
        .context(41101)
        .file("apps/init/style", "sysv\n")
        .write(&d);
    let rc = d.guest_root("badrc").join("etc/init.d/rc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(&rc, "#!/bin/sh\necho \"rc $1 failed\"\nexit 4\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn();
    let o = d.ctl(&["start", "badrc"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/etc/init.d/rc 3 returned exit status 4"),
        "{err}"
    );
    assert_eq!(d.status("badrc")["state"], "stopped");
    for dir in d.cgroup_dirs("badrc") {
        assert!(!dir.exists(), "{} left", dir.display());
    }
}
