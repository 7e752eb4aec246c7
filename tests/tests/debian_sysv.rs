//! A debootstrapped Debian 12 guest with sysvinit, init style sysv: the daemon's reaper stays
//! PID 1 and runs `/etc/init.d/rc 3`; stop runs `rc 6`, then the kill sequence. The tree comes
//! from scripts/debian-guest.sh (cached) and is copied per test.

use std::process::Command;

use harness::guest::{guest_processes, http_get, nginx_master, zombies};
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

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("{what}: {:.3} s", t.elapsed().as_secs_f64());
    r
}

/// Issue 17's walk-through on a Debian 12 sysv guest with nginx: `vserver NAME start` shows
/// rc 3's output; nginx serves; `/etc/init.d/nginx restart` and `invoke-rc.d nginx restart`
/// return with a new master and the old one reaped (a PID 1 that did not reap left it a
/// zombie, and start-stop-daemon waited on it for 15 s); no zombie is left; stop ends every
/// process; a clone keeps style, mark and depends with a hostname of its own; delete leaves
/// nothing; a daemon killed under the running guest is replaced by one that adopts it.
/// Durations are printed, not bounded.
#[test]
fn day_one_with_nginx_on_a_sysv_guest() {
    if !require(is_root(), "root") || !harness::require_busybox_guests() {
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
    GuestBuilder::busybox("webdb").context(41103).write(&d);
    GuestBuilder::new("web")
        .context(41102)
        .file("apps/init/style", "sysv\n")
        .file("apps/init/mark", "default\n")
        .file("apps/init/depends", "webdb\n")
        .write(&d);
    harness::guest::install_tree(&d.guest_root("web"), tree.as_deref().unwrap());
    d.spawn();
    let bin = d.dir.path().join("vserver");
    std::os::unix::fs::symlink(harness::bins::vserverctl(), &bin).unwrap();
    let socket = d.socket.clone();
    let vserver = |args: &[&str]| {
        let o = timed(&format!("vserver {}", args.join(" ")), || {
            std::process::Command::new(&bin)
                .args(args)
                .env("VSERVERD_SOCKET", &socket)
                .output()
                .unwrap()
        });
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "vserver {args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };

    let out = vserver(&["web", "start"]);
    eprintln!("vserver web start said: {out:?}");
    assert!(out.contains("nginx"), "rc 3's output: {out:?}");
    assert_eq!(d.status("webdb")["state"], "running", "the dependency");
    let init = d.init_pid("web");
    let page = http_get(&d, "web");
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("Welcome to nginx"),
        "{page}"
    );
    let first = nginx_master(init).expect("nginx's master runs");

    // The restarts: the old master is reaped (gone from /proc), not left a zombie.
    for (how, argv) in [
        (
            "/etc/init.d/nginx restart",
            &["/etc/init.d/nginx", "restart"][..],
        ),
        (
            "invoke-rc.d nginx restart",
            &["invoke-rc.d", "nginx", "restart"][..],
        ),
    ] {
        let before = nginx_master(init).expect("nginx's master runs");
        let mut args = vec!["exec", "web", "--"];
        args.extend_from_slice(argv);
        let out = timed(how, || d.ctl(&args));
        assert!(
            out.status.success(),
            "{how}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let after = nginx_master(init).expect("nginx's master runs again");
        assert_ne!(before, after, "{how}: a new master");
        assert!(
            !std::path::Path::new(&format!("/proc/{before}")).exists(),
            "{how}: the old master {before} is still there: {:?}",
            guest_processes(init)
        );
        assert!(http_get(&d, "web").starts_with("HTTP/1.1 200 OK"));
    }
    assert_ne!(first, nginx_master(init).unwrap());
    d.wait_until("no zombie in the guest", || zombies(init).is_empty());

    // Stop: rc 6 runs, every process ends.
    let out = vserver(&["web", "stop"]);
    eprintln!("vserver web stop said: {out:?}");
    assert_eq!(d.status("web")["state"], "stopped");
    assert!(
        guest_processes(init).is_empty(),
        "{:?}",
        guest_processes(init)
    );
    for dir in d.cgroup_dirs("web") {
        assert!(!dir.exists(), "{} left", dir.display());
    }

    // A clone: the source's init style, mark and depends; a hostname of its own.
    timed("clone", || {
        d.ctl_ok(&["build", "web2", "-m", "clone", "--", "--source", "web"])
    });
    let cfg = d.guest_config("web2");
    for f in ["apps/init/style", "apps/init/mark", "apps/init/depends"] {
        assert_eq!(
            std::fs::read_to_string(cfg.join(f)).unwrap(),
            std::fs::read_to_string(d.guest_config("web").join(f)).unwrap(),
            "{f}"
        );
    }
    timed("start of the clone", || d.ctl_ok(&["start", "web2"]));
    assert_eq!(d.ctl_ok(&["exec", "web2", "--", "hostname"]).trim(), "web2");
    assert!(http_get(&d, "web2").starts_with("HTTP/1.1 200 OK"));
    // Delete (running: --stop) leaves nothing: config, root, logs, cgroups, processes.
    timed("stop of the clone", || d.ctl_ok(&["stop", "web2"]));
    timed("start of the clone", || d.ctl_ok(&["start", "web2"]));
    let init2 = d.init_pid("web2");
    timed("delete --stop of the running clone", || {
        d.ctl_ok(&["delete", "web2", "--yes", "--stop"])
    });
    assert!(!cfg.exists() && !d.guest_root("web2").exists());
    assert!(!d.run_dir.join("guests/web2.log").exists());
    assert!(!d.run_dir.join("guests/web2.log.1").exists());
    assert!(!d.run_dir.join("guests/web2.json").exists());
    for dir in d.cgroup_dirs("web2") {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(guest_processes(init2).is_empty());

    // The daemon dies under the running guest; a new one adopts it.
    vserver(&["web", "start"]);
    let init = d.init_pid("web");
    d.kill();
    timed("daemon restart", || d.spawn());
    assert_eq!(d.status("web")["state"], "running");
    assert_eq!(d.init_pid("web"), init, "adopted, not restarted");
    assert!(http_get(&d, "web").starts_with("HTTP/1.1 200 OK"));
    let out = d.ctl(&["exec", "web", "--", "/etc/init.d/nginx", "restart"]);
    assert!(out.status.success());
    d.wait_until("no zombie in the guest", || zombies(init).is_empty());
    vserver(&["web", "stop"]);
    // Only init may be left, a zombie: its parent is the stage of the daemon that was killed,
    // now gone, so a host process (not the new daemon) reaps it.
    let left = guest_processes(init);
    assert!(
        left.iter().all(|(p, s, _)| *p == init && *s == 'Z'),
        "{left:?}"
    );
    d.ctl_ok(&["stop", "webdb"]);
}
