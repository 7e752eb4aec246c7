//! Guest lifecycle on this kernel, as root: real busybox guests started and stopped through
//! the daemon's socket, every check reading the kernel's view (/proc/PID/status, ns inodes,
//! mountinfo, cgroup files).

use std::path::Path;

use harness::guest::{install_host_binary, workspace_binary};
use harness::{require, GuestBuilder, TestDaemon};

fn prerequisites() -> bool {
    harness::require_busybox_guests()
}

fn proc_status(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    // A reaped process is gone; a zombie is as good as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Nothing of the guest is left: no process, no cgroup, no run state, no mount below the
/// test's directory.
fn assert_nothing_left(d: &TestDaemon, name: &str, init: Option<i32>) {
    if let Some(pid) = init {
        assert!(!alive(pid), "init {pid} of {name} still runs");
    }
    for dir in d.cgroup_dirs(name) {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let state = d.run_dir.join("guests").join(format!("{name}.json"));
    assert!(!state.exists(), "run state {} left behind", state.display());
    let root = d.dir.path().to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(&root)),
        "host mounts below {root}:\n{mounts}"
    );
}

#[test]
fn busybox_guest_runs_isolated_and_stops_without_a_trace() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("web")
        .context(41010)
        .file("uts/nodename", "webhost\n")
        .file("ulimits/nofile", "1000\n")
        .write(&d);
    d.spawn();
    let out = d.ctl_ok(&["start", "web"]);
    assert!(out.contains("running"), "{out}");
    let pid = d.init_pid("web");

    // Its own pid namespace, as PID 1.
    let nspid = proc_status(pid, "NSpid");
    assert!(
        nspid.ends_with("\t1") || nspid.ends_with(" 1"),
        "NSpid {nspid:?}"
    );
    // New mnt, uts, ipc, pid, cgroup, time and network namespaces: without interfaces/,
    // a network of its own with loopback only, up.
    for kind in ["mnt", "uts", "ipc", "pid", "cgroup", "time", "net"] {
        assert_ne!(
            ns(&pid.to_string(), kind),
            ns("self", kind),
            "{kind} namespace shared"
        );
    }
    let links = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:") && links.contains(",UP"), "{links}");
    // util-vserver's secure default bounding set, and the seccomp filters.
    assert_eq!(
        proc_status(pid, "CapBnd"),
        vserverd::isolate::caps::bounding_hex(vserverd::config::names::BCAPS_SECURE)
    );
    assert_eq!(proc_status(pid, "Seccomp"), "2");
    // ulimits/ applied to init.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1000", "1000"],
        "{nofile}"
    );
    // Only its own processes, seen through its own /proc.
    let procs: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root/proc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    assert!(
        procs.contains(&"1".to_string()) && procs.len() < 10,
        "{procs:?}"
    );
    // Hostname, uptime from its time namespace, mounts: from inside.
    let out = d.ctl_ok(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "hostname; cut -d. -f1 /proc/uptime; cat /proc/self/mountinfo",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("webhost"));
    let uptime: u64 = lines.next().unwrap().parse().unwrap();
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (uptime as f64) < host_uptime,
        "guest uptime {uptime} should count from its start"
    );
    let mi: Vec<&str> = lines.collect();
    let mount = |target: &str| {
        mi.iter()
            .find(|l| l.split(' ').nth(4) == Some(target))
            .copied()
    };
    assert!(mount("/proc").is_some(), "{mi:#?}");
    assert!(
        mount("/proc/sys").unwrap().contains(" ro,"),
        "/proc/sys must be read-only"
    );
    assert!(mount("/tmp").unwrap().contains("tmpfs"));
    assert!(mount("/dev/pts").unwrap().contains("ptmxmode=666"));
    assert!(
        mount("/").unwrap().contains("nodev"),
        "the guest root must be nodev"
    );
    // Init is in the guest's cgroup in every hierarchy (host view; v1 joined by the stage,
    // v2 by clone3 into the cgroup), and its cgroup namespace is rooted there.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cg.lines() {
        assert!(
            line.ends_with(&format!("{}/web", d.cgroup_prefix)),
            "{line} in\n{cg}"
        );
    }
    let inside = d.ctl(&["exec", "web", "--", "cat", "/proc/1/cgroup"]);
    let inside = String::from_utf8_lossy(&inside.stdout).to_string();
    assert_eq!(inside.lines().count(), cg.lines().count(), "{inside}");
    for line in inside.lines() {
        assert!(line.ends_with(":/"), "{line} in\n{inside}");
    }
    // An exec'd process too (v1 joined by the stage, v2 through a helper born there), and the
    // helper is reaped: the daemon has no zombie child.
    let own = d.ctl(&["exec", "web", "--", "cat", "/proc/self/cgroup"]);
    let own = String::from_utf8_lossy(&own.stdout).to_string();
    assert_eq!(own.lines().count(), cg.lines().count(), "{own}");
    for line in own.lines() {
        assert!(line.ends_with(":/"), "{line} in\n{own}");
    }
    let daemon = d.pid().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(st) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = st
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1) == Some(&daemon.to_string().as_str()) {
            assert_ne!(fields[0], "Z", "a zombie child of the daemon: {st}");
        }
    }
    // util-vserver's status wording.
    let st = d.ctl(&["status", "web"]);
    assert_eq!(st.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&st.stdout).contains("is running at context '41010'"));

    d.ctl_ok(&["stop", "web"]);
    assert_eq!(d.ctl(&["status", "web"]).status.code(), Some(3));
    assert_nothing_left(&d, "web", Some(pid));
}

#[test]
fn reboot_restarts_and_halt_stops() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("rb").context(41011).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "rb"]);
    let first = d.init_pid("rb");
    // `reboot -f` in the guest: reboot(2) ends init with SIGHUP, the helper starts it again.
    let _ = d.ctl(&["exec", "rb", "--", "/sbin/reboot", "-f"]);
    d.wait_until("the guest to come back with a new init", || {
        let s = d.status("rb");
        s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p as i32 != first)
    });
    let second = d.init_pid("rb");
    assert!(!alive(first));
    // `poweroff -f`: SIGINT, the guest stays down.
    let _ = d.ctl(&["exec", "rb", "--", "/sbin/poweroff", "-f"]);
    d.wait_until("the guest to stop", || d.status("rb")["state"] == "stopped");
    let s = d.status("rb");
    assert!(
        s["message"].as_str().unwrap_or("").contains("halted"),
        "{s}"
    );
    assert_nothing_left(&d, "rb", Some(second));
}

#[test]
fn stop_kills_an_init_that_ignores_it() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // PID 1 ignores SIGINT (and a pid namespace's init gets no unhandled signal anyway), and
    // a child ignores SIGTERM: the kill sequence and the cgroup kill must end them.
    GuestBuilder::busybox("stubborn")
        .context(41012)
        .file(
            "apps/init/cmd.start",
            "/bin/sh\n-c\ntrap '' INT TERM; (trap '' TERM; sleep 100000) & sleep 100000\n",
        )
        .file("apps/init/killseq", "15 1 9\n")
        .file("apps/vshelper/sync-timeout", "1\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "stubborn"]);
    let pid = d.init_pid("stubborn");
    // (busybox sh execs the last command of each shell: two sleeps.)
    d.wait_until("init and its child", || {
        d.status("stubborn")["processes"].as_u64().unwrap_or(0) >= 2
    });
    d.ctl_ok(&["stop", "stubborn"]);
    assert_nothing_left(&d, "stubborn", Some(pid));
}

#[test]
fn exec_passes_stdio_and_the_exit_code() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("ex").context(41013).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "ex"]);
    let mut child = std::process::Command::new(harness::bins::vserverctl())
        .args(["--socket"])
        .arg(&d.socket)
        .args([
            "exec",
            "ex",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo oops >&2; ls /proc/self/fd | wc -l; exit 42",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("HELLO"));
    // ls's own fds: 0, 1, 2 and the directory it reads; nothing of the host's.
    let fds: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(fds <= 4, "the command has {fds} open fds");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "oops");
    // No signal ignored behind the command's back (Rust ignores SIGPIPE; it must not leak).
    let sigign = d.ctl_ok(&["exec", "ex", "--", "grep", "SigIgn", "/proc/self/status"]);
    assert!(sigign.trim().ends_with("0000000000000000"), "{sigign}");
    // A stopped guest: util-vserver's refusal, exit 1.
    d.ctl_ok(&["stop", "ex"]);
    let o = d.ctl(&["exec", "ex", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
}

#[test]
fn hooks_run_in_util_vservers_order_with_its_arguments() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let log = d.dir.path().join("hooks.log");
    let mut g = GuestBuilder::busybox("hk").context(41014);
    for h in [
        "initialize",
        "prepre-start",
        "pre-start",
        "post-start",
        "pre-stop",
        "post-stop",
        "postpost-stop",
    ] {
        g = g.file(
            &format!("scripts/{h}"),
            &format!(
                "#!/bin/sh\necho \"$1 $2 $VSERVER_NAME $(pwd)\" >> {}\n",
                log.display()
            ),
        );
    }
    let cfg = g.write(&d);
    for h in std::fs::read_dir(cfg.join("scripts")).unwrap().flatten() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.spawn();
    d.ctl_ok(&["start", "hk"]);
    d.ctl_ok(&["stop", "hk"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let got: Vec<&str> = text.lines().collect();
    // Every hook runs in the config folder: a relative path never resolves in the guest root
    // (where guest root's symlinks lead to host files); VSERVER_DIR names the root.
    let cfgs = cfg.display().to_string();
    assert_eq!(
        got,
        [
            format!("initialize hk hk {cfgs}"),
            format!("prepre-start hk hk {cfgs}"),
            format!("pre-start hk hk {cfgs}"),
            format!("post-start hk hk {cfgs}"),
            format!("pre-stop hk hk {cfgs}"),
            format!("post-stop hk hk {cfgs}"),
            format!("postpost-stop hk hk {cfgs}"),
        ]
    );
}

/// A failed start leaves nothing behind, and says why.
fn assert_start_fails(d: &TestDaemon, name: &str, expect: &str) {
    let o = d.ctl(&["start", name]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "start {name} should fail: {err}");
    assert!(
        err.contains(expect),
        "start {name}: expected {expect:?} in {err:?}"
    );
    assert!(
        !err.contains(&format!("{name}: {name}:")),
        "the name twice: {err}"
    );
    assert_eq!(d.status(name)["state"], "stopped");
    assert_nothing_left(d, name, None);
}

#[test]
fn failed_starts_roll_back() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let hook = GuestBuilder::busybox("badhook")
        .context(41020)
        .file(
            "scripts/pre-start",
            "#!/bin/sh\necho 'no disk for you' >&2\nexit 3\n",
        )
        .write(&d);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        hook.join("scripts/pre-start"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    GuestBuilder::busybox("nofs")
        .context(41021)
        .file(
            "fstab",
            "none /proc proc defaults 0 0\nnone /tmp nosuchfs defaults 0 0\n",
        )
        .write(&d);
    GuestBuilder::busybox("noroot").context(41022).write(&d);
    std::fs::remove_dir_all(d.guest_root("noroot")).unwrap();
    GuestBuilder::busybox("noexec")
        .context(41023)
        .file("apps/init/cmd.start", "/sbin/no-such-init\n")
        .write(&d);
    d.spawn();
    assert_start_fails(&d, "badhook", "no disk for you");
    assert_start_fails(&d, "nofs", "fstab:2");
    assert_start_fails(&d, "noroot", "does not exist");
    assert_start_fails(&d, "noexec", "/sbin/no-such-init");
}

#[test]
fn an_init_that_exits_at_once_is_cleaned_up() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("brief")
        .context(41024)
        .file("apps/init/cmd.start", "/bin/sh\n-c\necho bye; exit 5\n")
        .write(&d);
    d.spawn();
    // Either the start sees it die, or the supervisor does right after: both end stopped,
    // with init's exit status said, and nothing left.
    let o = d.ctl(&["start", "brief"]);
    d.wait_until("the guest to be stopped", || {
        d.status("brief")["state"] == "stopped"
    });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        d.status("brief")["message"].as_str().unwrap_or("")
    );
    assert!(said.contains("exit status 5"), "{said}");
    assert_nothing_left(&d, "brief", None);
}

#[test]
fn escape_attempts_from_guest_root_fail() {
    if !prerequisites() || !require(Path::new("/usr/bin/ldd").exists(), "ldd") {
        return;
    }
    let mut d = TestDaemon::prepare();
    // virt_mem and virt_uptime: its sysinfo(2) goes to the /proc server through a listener
    // no guest process may hold.
    GuestBuilder::busybox("jail")
        .context(41030)
        .file("cflags", "virt_mem\nvirt_uptime\n")
        .write(&d);
    // A reaper-style guest too: its PID 1 runs vserverd's code from the sealed memfd.
    GuestBuilder::busybox("reaper")
        .context(41031)
        .file("apps/init/style", "sysv\n")
        .write(&d);
    for g in ["jail", "reaper"] {
        let root = d.guest_root(g);
        install_host_binary(&root, &workspace_binary("vserverd-escape"), "/escape");
        // A live device node planted in the guest's tree (/dev/mem's numbers): nodev kills it.
        nix::sys::stat::mknod(
            &root.join("root/mem"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 1),
        )
        .unwrap();
    }
    let rc = d.guest_root("reaper").join("etc/init.d/rc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(
        &rc,
        "#!/bin/sh\ncase $1 in 3) /bin/sleep 1000000 & ;; 6) kill -TERM -1 ;; esac\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_only = d.dir.path().join("host-only-marker");
    std::fs::write(&host_only, "host").unwrap();
    // Host-only services a guest must not reach: 127.0.0.1 and an abstract unix socket.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let abstract_name = format!("vserverd-escape-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let a =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&a).unwrap()
    };
    d.spawn();
    let daemon_bin = std::fs::read(harness::bins::vserverd()).unwrap();
    for g in ["jail", "reaper"] {
        d.ctl_ok(&["start", g]);
        let pid = d.init_pid(g);
        let capbnd = u64::from_str_radix(&proc_status(pid, "CapBnd"), 16).unwrap();
        for (cap, what) in [
            (16, "SYS_MODULE"),
            (21, "SYS_ADMIN"),
            (12, "NET_ADMIN"),
            (27, "MKNOD"),
            (17, "SYS_RAWIO"),
            (19, "SYS_PTRACE"),
        ] {
            assert_eq!(
                capbnd & (1 << cap),
                0,
                "{g}: CAP_{what} in the bounding set"
            );
        }
        let (text, results) = harness::guest::run_escape(
            &d,
            g,
            &[
                &host_only.display().to_string(),
                &d.pid().unwrap().to_string(),
                &d.socket.display().to_string(),
                "/root/mem",
                &port,
                &abstract_name,
            ],
        );
        assert!(results.len() >= 23, "{g}: too few attempts ran:\n{text}");
        // Refused by the seccomp filter, not by the file system (the guest roots' has file
        // attributes: without the filter both calls succeed).
        let detail = |n: &str| {
            results
                .iter()
                .find(|r| r["name"] == n)
                .and_then(|r| r["detail"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            detail("FS_IOC_FSSETXATTR (re-tag the project id)").contains("Operation not permitted"),
            "{g}: {text}"
        );
        assert!(
            detail("file_setattr (re-tag the project id)").contains("Function not implemented"),
            "{g}: {text}"
        );
        eprintln!("{g}: {text}");
        let escaped: Vec<&serde_json::Value> =
            results.iter().filter(|r| r["escaped"] != false).collect();
        assert!(escaped.is_empty(), "{g}: escapes: {escaped:#?}");
        if g == "reaper" {
            assert!(text.contains("overwrite the stage binary"), "{text}");
        }
        d.ctl_ok(&["stop", g]);
    }
    assert_eq!(
        std::fs::read(harness::bins::vserverd()).unwrap(),
        daemon_bin,
        "the host binary changed"
    );
}

/// A sysv guest whose `rc` does what the test says for runlevel 3 and ends everything for 6.
fn sysv_guest(d: &TestDaemon, name: &str, ctx: u32, rc3: &str, extra: &[(&str, &str)]) {
    let mut b = GuestBuilder::busybox(name)
        .context(ctx)
        .file("apps/init/style", "sysv\n");
    for (f, c) in extra {
        b = b.file(f, c);
    }
    b.write(d);
    let rc = d.guest_root(name).join("etc/init.d/rc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(
        &rc,
        format!(
            "#!/bin/sh\ncase $1 in 3) {rc3} ;; 6) echo rc6-says-goodbye; kill -TERM -1 ;; esac\nexit 0\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Pids of the guest's processes that are zombies, from its cgroup and /proc/PID/stat.
fn zombies(d: &TestDaemon, name: &str) -> Vec<String> {
    let procs = d
        .cgroup_dirs(name)
        .into_iter()
        .find_map(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
        .unwrap_or_default();
    procs
        .lines()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.contains(") Z "))
        })
        .map(String::from)
        .collect()
}

#[test]
fn a_sysv_guests_pid1_reaps_orphans_for_its_whole_life() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // rc 3 leaves no child behind: PID 1 has none left once it returned.
    sysv_guest(&d, "orphans", 41035, "true", &[("cgroup/pids.max", "20\n")]);
    d.spawn();
    d.ctl_ok(&["start", "orphans"]);
    // Each exec leaves an orphan that the guest's PID 1 inherits and must reap: more of them
    // than the pids limit allows at once, so unreaped zombies would make later execs fail.
    for i in 0..40 {
        let o = d.ctl(&[
            "exec",
            "orphans",
            "--",
            "/bin/sh",
            "-c",
            "/bin/sleep 0.01 & exit 0",
        ]);
        assert!(
            o.status.success(),
            "exec {i} failed: {}\nzombies: {:?}",
            String::from_utf8_lossy(&o.stderr),
            zombies(&d, "orphans")
        );
    }
    d.wait_until("no zombie left in the guest", || {
        zombies(&d, "orphans").is_empty()
    });
    let t = std::time::Instant::now();
    d.ctl_ok(&["stop", "orphans"]);
    eprintln!("stop took {:?}", t.elapsed());
    assert_nothing_left(&d, "orphans", None);
    // rc 6's output went to the guest's console, so into its log.
    let log = d.run_dir.join("guests/orphans.log");
    d.wait_until("rc 6's output in the console log", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("rc6-says-goodbye"))
    });
}

/// Pipe inodes among a process's fds.
fn pipes_of(pid: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.display().to_string())
                .filter(|l| l.starts_with("pipe:"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn no_guest_process_holds_a_pipe_to_the_daemon() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    sysv_guest(&d, "pipes", 41036, "/bin/sleep 1000000 &", &[]);
    d.spawn();
    d.ctl_ok(&["start", "pipes"]);
    // An exec'd process that lives on, and an orphan of one.
    d.ctl_ok(&[
        "exec",
        "pipes",
        "--",
        "/bin/sh",
        "-c",
        "/bin/sleep 1000000 & exit 0",
    ]);
    let daemon = d.pid().unwrap().to_string();
    let ours = pipes_of(&daemon);
    let procs: Vec<String> = d
        .cgroup_dirs("pipes")
        .into_iter()
        .find_map(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    assert!(procs.len() >= 3, "guest processes: {procs:?}");
    for p in &procs {
        let mine = pipes_of(p);
        let shared: Vec<&String> = mine.iter().filter(|x| ours.contains(x)).collect();
        assert!(
            shared.is_empty(),
            "guest process {p} holds the daemon's pipes {shared:?}"
        );
    }
    let capbnd = u64::from_str_radix(&proc_status(d.init_pid("pipes"), "CapBnd"), 16).unwrap();
    assert_eq!(
        capbnd & (1 << 19),
        0,
        "CAP_SYS_PTRACE in the default bounding set"
    );
    d.ctl_ok(&["stop", "pipes"]);
}

/// Runs `argv` as the host user nobody, from a shell of theirs (setpriv's own execve would
/// still hold root's capabilities while the kernel looks the path up); returns whether it
/// succeeded and what it said.
fn as_nobody(argv: &[&str]) -> (bool, String) {
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$0\" \"$@\""])
        .args(argv)
        .output()
        .expect("setpriv");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn host_users_cannot_run_setuid_files_guest_root_planted() {
    if !prerequisites() || !require(Path::new("/usr/bin/setpriv").exists(), "setpriv") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let mut d = TestDaemon::prepare();
    // Host users may walk down to the base: only the base itself can stop them.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir(&d.vdir_base).unwrap();
    d.spawn();
    assert_eq!(mode(&d.vdir_base), 0, "the daemon's new vdir base");
    GuestBuilder::busybox("suid").context(41037).write(&d);
    // What guest root can do in its own tree: a setuid-root copy of a host program.
    let planted = d.guest_root("suid").join("cat");
    std::fs::copy("/bin/cat", &planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let (ok, said) = as_nobody(&[planted.to_str().unwrap(), "/etc/shadow"]);
    assert!(!ok && said.contains("Permission denied"), "{said}");
    // An admin's chmod of the daemon's base is undone at the next daemon start.
    std::fs::set_permissions(&d.vdir_base, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.stop();
    d.spawn();
    assert_eq!(mode(&d.vdir_base), 0, "the barrier restored");
    // A guest whose root lies where host users can reach it: `check` says so, and the
    // daemon changes no mode it did not make.
    let open = d.dir.path().join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = GuestBuilder::busybox("exposed").context(41038).write(&d);
    std::fs::rename(d.guest_root("exposed"), open.join("exposed")).unwrap();
    let _ = std::fs::remove_file(cfg.join("vdir"));
    std::os::unix::fs::symlink(open.join("exposed"), cfg.join("vdir")).unwrap();
    let out = d.ctl(&["check", "exposed"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("host users can reach the guest root"),
        "{said}"
    );
    assert_eq!(mode(&open), 0o755);
}

#[test]
fn a_32_bit_program_runs_in_a_guest_under_the_same_policy() {
    let cc = "/usr/bin/i686-linux-gnu-gcc";
    if !prerequisites()
        || !require(
            Path::new(cc).exists(),
            "i686-linux-gnu-gcc (scripts/setup.sh)",
        )
    {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("abi32")
        .context(41039)
        .file("personality", "linux32\n")
        .write(&d);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/abi32.c");
    let bin = d.guest_root("abi32").join("abi32");
    let o = std::process::Command::new(cc)
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    d.spawn();
    d.ctl_ok(&["start", "abi32"]);
    let out = d.ctl(&["exec", "abi32", "--", "/abi32"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the i386 program failed ({:?}): {}{}",
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // linux32: uname says i686; unshare(CLONE_NEWUSER) EPERM, keyctl ENOSYS, as for x86-64.
    assert!(text.contains("machine=i686"), "{text}");
    assert!(text.contains("unshare=-1/1 "), "{text}");
    assert!(text.contains("keyctl=-1/38"), "{text}");
    // Project ids cannot be re-tagged through the i386 ABI either (EPERM, ENOSYS).
    assert!(text.contains("fsset=-1/1 "), "{text}");
    assert!(text.contains("file_setattr=-1/38"), "{text}");
    let m = d.ctl_ok(&["exec", "abi32", "--", "uname", "-m"]);
    assert_eq!(m.trim(), "i686");
    d.ctl_ok(&["stop", "abi32"]);
}

#[test]
fn a_config_tree_others_can_write_is_refused() {
    if !prerequisites() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut d = TestDaemon::prepare();
    let marker = d.dir.path().join("hook-ran");
    let cfg = GuestBuilder::busybox("owned")
        .context(41045)
        .file(
            "scripts/pre-start",
            &format!("#!/bin/sh\ntouch {}\n", marker.display()),
        )
        .write(&d);
    let hook = cfg.join("scripts/pre-start");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A hook script a host user owns: running it would make that user root.
    nix::unistd::chown(&hook, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    d.spawn();
    let o = d.ctl(&["start", "owned"]);
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "started with a foreign hook");
    assert!(
        said.contains("scripts/pre-start") && said.contains("owned by uid 65534"),
        "{said}"
    );
    assert!(!marker.exists(), "the hook ran");
    // Root's again, but writable by everyone: refused the same way.
    nix::unistd::chown(&hook, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = d.ctl(&["check", "owned"]);
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && said.contains("mode 0777"), "{said}");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.ctl_ok(&["start", "owned"]);
    assert!(
        marker.exists(),
        "the hook did not run once the tree was root's"
    );
    d.ctl_ok(&["stop", "owned"]);
}

#[test]
fn exec_passes_the_terminal_and_locale_not_the_callers_secrets() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("envy").context(41046).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "envy"]);
    let o = std::process::Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(["exec", "envy", "--env", "CHOSEN=yes", "--", "env"])
        .env("AWS_SECRET_ACCESS_KEY", "hunter2")
        .env("SSH_AUTH_SOCK", "/tmp/agent.sock")
        .env("LC_ALL", "C")
        .env("TERM", "vt100")
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !env.contains("hunter2") && !env.contains("SSH_AUTH_SOCK"),
        "{env}"
    );
    for want in [
        "CHOSEN=yes",
        "LC_ALL=C",
        "TERM=vt100",
        "HOME=/root",
        "PATH=/usr/local/sbin",
    ] {
        assert!(env.contains(want), "{want} missing:\n{env}");
    }
    d.ctl_ok(&["stop", "envy"]);
}

#[test]
fn every_state_changing_call_is_logged_once_with_who_and_how_it_ended() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("aud").context(41047).write(&d);
    GuestBuilder::new("broken").context(41048).write(&d);
    std::fs::remove_dir_all(d.guest_root("broken")).unwrap();
    d.spawn();
    d.ctl_ok(&["start", "aud"]);
    d.ctl_ok(&["set", "aud", "--pids", "50"]);
    d.ctl_ok(&["exec", "aud", "--", "true"]);
    assert!(!d.ctl(&["start", "broken"]).status.success());
    d.ctl_ok(&["stop", "aud"]);
    d.ctl_ok(&["build", "nb", "-m", "skeleton"]);
    d.ctl_ok(&["delete", "nb", "--yes"]);
    d.ctl_ok(&["list"]);
    let log = d.log();
    assert!(!log.contains('\u{1b}'), "colour escapes in a log file");
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("vserverd::audit"))
        .collect();
    for (what, n) in [
        ("Start aud by uid 0: ok", 1),
        ("SetLimits aud by uid 0: ok", 1),
        ("Exec aud by uid 0: ok", 1),
        ("Start broken by uid 0: failed", 1),
        ("Stop aud by uid 0: ok", 1),
        ("Build nb by uid 0: ok", 1),
        ("Delete nb by uid 0: ok", 1),
    ] {
        let found = audit.iter().filter(|l| l.contains(what)).count();
        assert_eq!(found, n, "{what:?} in:\n{}", audit.join("\n"));
    }
    // Structured fields, and the command exec ran; read calls are not audited.
    assert!(audit
        .iter()
        .any(|l| l.contains("caller_uid=0") && l.contains("detail=true")));
    assert!(!audit.iter().any(|l| l.contains("List")));
}

#[test]
fn guests_survive_a_daemon_crash_and_are_adopted() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("keep").context(41040).write(&d);
    GuestBuilder::busybox("lost").context(41041).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "keep"]);
    d.ctl_ok(&["start", "lost"]);
    let keep = d.init_pid("keep");
    let lost = d.init_pid("lost");
    d.kill(); // SIGKILL, as a crash
    assert!(alive(keep) && alive(lost), "guests must outlive the daemon");
    // One guest ends while no daemon runs.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lost),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_until("the lost guest's init to die", || !alive(lost));
    d.spawn();
    let s = d.status("keep");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["init_pid"].as_i64(), Some(keep as i64));
    let out = d.ctl_ok(&["exec", "keep", "--", "hostname"]);
    assert_eq!(out.trim(), "keep");
    let s = d.status("lost");
    assert_eq!(s["state"], "stopped", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .contains("while vserverd was away"),
        "{s}"
    );
    assert_nothing_left(&d, "lost", None);
    // The adopted guest stops cleanly, and its reboot helper still works before that.
    let _ = d.ctl(&["exec", "keep", "--", "/sbin/reboot", "-f"]);
    d.wait_until("the adopted guest to reboot", || {
        let s = d.status("keep");
        s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p as i32 != keep)
    });
    let again = d.init_pid("keep");
    d.ctl_ok(&["stop", "keep"]);
    assert_nothing_left(&d, "keep", Some(again));
}

#[test]
fn util_vserver_command_semantics() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let cfg = GuestBuilder::busybox("cmds")
        .context(41050)
        .file("umask", "newuser\n")
        .write(&d);
    // util-vserver's run file: CFG/run points where the context id goes while it runs.
    let run_target = d.dir.path().join("cmds.run");
    std::os::unix::fs::symlink(&run_target, cfg.join("run")).unwrap();
    d.spawn();
    // condrestart of a stopped guest: nothing happens, exit 0.
    let o = d.ctl(&["condrestart", "cmds"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(d.status("cmds")["state"], "stopped");
    d.ctl_ok(&["start", "cmds"]);
    assert_eq!(std::fs::read_to_string(&run_target).unwrap(), "41050\n");
    // start of a running guest: util-vserver's message, exit 0.
    let o = d.ctl(&["start", "cmds"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("vserver 'cmds' already running"));
    assert_eq!(d.ctl(&["running", "cmds"]).status.code(), Some(0));
    // umask lists the namespaces the guest may make: a user namespace here, no mount ns.
    let o = d.ctl(&["exec", "cmds", "--", "unshare", "-U", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.ctl(&["exec", "cmds", "--", "unshare", "-i", "true"]);
    assert_ne!(o.status.code(), Some(0), "an ipc namespace is not in umask");
    // condrestart of a running guest restarts it.
    let first = d.init_pid("cmds");
    d.ctl_ok(&["condrestart", "cmds"]);
    assert_ne!(d.init_pid("cmds"), first);
    d.ctl_ok(&["stop", "cmds"]);
    assert!(!run_target.exists(), "the run file outlived the guest");
    assert_eq!(d.ctl(&["running", "cmds"]).status.code(), Some(1));
    // stop of a stopped guest: exit 0 with util-vserver's words.
    let o = d.ctl(&["stop", "cmds"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("is not running"));
}

#[test]
fn a_hard_limit_above_the_daemons_is_explained() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("lim")
        .context(41051)
        .file("ulimits/nofile.hard", "1048576\n")
        .file("ulimits/nofile.soft", "1024\n")
        .write(&d);
    d.spawn();
    let o = d.ctl(&["start", "lim"]);
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    if o.status.success() {
        // A host whose root has CAP_SYS_RESOURCE: the limit is simply applied.
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", d.init_pid("lim"))).unwrap();
        assert!(limits.contains("1048576"), "{limits}");
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("ulimits/nofile") && err.contains("CAP_SYS_RESOURCE"),
            "{err} (daemon hard limit {})",
            hard.rlim_max
        );
        assert_nothing_left(&d, "lim", None);
    }
}

/// Second review, item 9: an fd the daemon was started with (a careless parent's, not
/// close-on-exec) reaches no hook, helper or guest process.
#[test]
fn fds_the_daemon_inherited_reach_no_hook_helper_or_guest() {
    if !prerequisites() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut d = TestDaemon::prepare();
    let secret = d.dir.path().join("inherited-secret");
    std::fs::write(&secret, "not for guests\n").unwrap();
    let seen = d.dir.path().join("hook-fds");
    let cfg = GuestBuilder::busybox("fds")
        .context(41071)
        .file("cflags", "virt_mem\n")
        .file(
            "scripts/pre-start",
            &format!("#!/bin/sh\nls -l /proc/$$/fd/ >{}\n", seen.display()),
        )
        .write(&d);
    std::fs::set_permissions(
        cfg.join("scripts/pre-start"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    d.inherit(std::fs::File::open(&secret).unwrap());
    d.spawn();
    let holds = |pid: i32| -> bool {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == secret))
            })
            .unwrap_or(false)
    };
    // The daemon itself still holds it (marked close-on-exec at its start), so the test
    // sees the fd it means.
    assert!(
        holds(d.pid().unwrap() as i32),
        "the daemon did not inherit fd 9"
    );
    d.ctl_ok(&["start", "fds"]);
    let hook = std::fs::read_to_string(&seen).unwrap();
    assert!(hook.contains(" -> "), "the hook ran: {hook}");
    assert!(
        !hook.contains("inherited-secret"),
        "the hook inherited it:\n{hook}"
    );
    let helpers = [
        vserverd::procfs::server_pid(&d.run_dir).expect("the /proc server runs"),
        vserverd::console::keeper_pid(&d.run_dir).expect("the console keeper runs"),
    ];
    for pid in helpers.into_iter().chain([d.init_pid("fds")]) {
        assert!(!holds(pid), "process {pid} holds the daemon's inherited fd");
    }
    let joined = d.ctl_ok(&["exec", "fds", "--", "ls", "-l", "/proc/self/fd/"]);
    assert!(!joined.contains("inherited-secret"), "{joined}");
    d.ctl_ok(&["stop", "fds"]);
}
