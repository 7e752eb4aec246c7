//! util-vserver's command line (`vserver NAME VERB`, `vserver-stat`, vps, vkill, vwait, …) end
//! to end: a session following util-vserver's command table and messages (docs/compat.md),
//! outputs and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use harness::{GuestBuilder, TestDaemon};

struct Vserver {
    bin: std::path::PathBuf,
    stat: std::path::PathBuf,
    socket: std::path::PathBuf,
}

impl Vserver {
    fn new(d: &TestDaemon) -> Vserver {
        let dir = d.dir.path().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("vserver");
        let stat = dir.join("vserver-stat");
        std::os::unix::fs::symlink(harness::bins::vserverctl(), &bin).unwrap();
        std::os::unix::fs::symlink(harness::bins::vserverctl(), &stat).unwrap();
        Vserver {
            bin,
            stat,
            socket: d.socket.clone(),
        }
    }

    /// util-vserver's program `name`: a link to vserverctl, made on first use.
    fn prog(&self, name: &str) -> std::path::PathBuf {
        let p = self.bin.with_file_name(name);
        if std::fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(harness::bins::vserverctl(), &p).unwrap();
        }
        p
    }

    /// Runs util-vserver's program `name`: (exit code, stdout, stderr).
    fn tool(&self, name: &str, args: &[&str]) -> (i32, String, String) {
        let o = self.run_in(&self.prog(name), args, "");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn run_in(&self, prog: &std::path::Path, args: &[&str], input: &str) -> Output {
        let mut c = Command::new(prog)
            .args(args)
            .env("VSERVERD_SOCKET", &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// (exit code, stdout, stderr)
    fn v(&self, args: &[&str]) -> (i32, String, String) {
        self.vi(args, "")
    }

    fn vi(&self, args: &[&str], input: &str) -> (i32, String, String) {
        let t = std::time::Instant::now();
        let o = self.run_in(&self.bin, args, input);
        eprintln!("vserver {args:?}: {:.3} s", t.elapsed().as_secs_f64());
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

#[test]
fn a_util_vserver_session() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("web").context(45001).write(&d);
    d.spawn();
    let vs = Vserver::new(&d);

    assert_eq!(
        vs.v(&["web", "status"]),
        (3, "Vserver 'web' is stopped\n".into(), String::new())
    );
    assert_eq!(
        vs.v(&["--silent", "web", "status"]),
        (3, String::new(), String::new())
    );
    assert_eq!(vs.v(&["web", "running"]).0, 1);
    let (code, _, err) = vs.v(&["web", "exec", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("'vserver ... suexec' is supported for running vservers only; aborting..."),
        "{err}"
    );
    assert_eq!(vs.v(&["web", "start"]), (0, String::new(), String::new()));
    assert_eq!(
        vs.v(&["web", "start"]),
        (0, String::new(), "vserver 'web' already running\n".into())
    );
    assert_eq!(vs.v(&["web", "running"]).0, 0);
    let (code, out, _) = vs.v(&["web", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Vserver 'web' is running at context '45001'\nNumber of processes: "),
        "{out}"
    );
    assert_eq!(
        vs.v(&["web", "exec", "hostname"]),
        (0, "web\n".into(), String::new())
    );
    assert_eq!(vs.v(&["web", "suexec", "0", "sh", "-c", "exit 5"]).0, 5);
    assert_eq!(
        vs.v(&["web", "suexec", "root", "id", "-u"]),
        (0, "0\n".into(), String::new())
    );
    let o = vs.run_in(&vs.stat, &[], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        text.starts_with("CTX   PROC    VSZ    RSS  userTIME   sysTIME    UPTIME NAME\n45001"),
        "{text}"
    );
    assert_eq!(vs.run_in(&vs.stat, &["extra"], "").status.code(), Some(2));
    assert_eq!(vs.v(&["web", "restart"]).0, 0);
    assert_eq!(vs.v(&["web", "condrestart"]).0, 0);
    assert_eq!(vs.v(&["web", "stop"]), (0, String::new(), String::new()));
    assert_eq!(
        vs.v(&["web", "stop"]),
        (0, String::new(), "vserver 'web' is not running\n".into())
    );
    assert_eq!(vs.v(&["web", "condrestart"]).0, 0);
    assert_eq!(d.status("web")["state"], "stopped");
    let (code, _, err) = vs.v(&["web", "frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("Usage: vserver <vserver> {start|stop|suexec|restart|condrestart|exec|enter|chkconfig|running|status|delete}"));
    assert_eq!(vs.v(&[]).0, 2);
    // delete: a declined prompt exits 2 and keeps everything; --silent deletes a running guest.
    let (code, _, err) = vs.vi(&["web", "delete"], "n\n");
    assert_eq!(code, 2);
    assert!(err.contains("Are you sure you want to delete the vserver web (y/N)"));
    assert!(d.guest_config("web").exists());
    assert_eq!(vs.v(&["web", "start"]).0, 0);
    let root = d.guest_root("web");
    assert_eq!(vs.v(&["--silent", "web", "delete"]).0, 0);
    assert!(!d.guest_config("web").exists() && !root.exists());
    for dir in d.cgroup_dirs("web") {
        assert!(!dir.exists());
    }
}

#[test]
fn vserverctl_delete_refuses_a_running_guest() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("del").context(45002).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "del"]);
    let o = d.ctl(&["delete", "del", "--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stop"));
    assert!(d.guest_root("del").exists());
    // Without --yes and with nothing on stdin: a message, exit 2, nothing deleted.
    let o = d.ctl(&["delete", "del"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no answer on stdin; nothing deleted"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(d.guest_root("del").exists());
    let out = d.ctl_ok(&["delete", "del", "--yes", "--stop", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deleted"], true, "{out}");
    assert!(!d.guest_config("del").exists() && !d.guest_root("del").exists());
    // List right after the delete: gone at once.
    assert!(
        !d.ctl_ok(&["list"]).contains("del"),
        "a deleted guest still listed"
    );
}

/// The first of `files` (v2 name, v1 name) that one of the guest's cgroups has.
fn cg_value(d: &TestDaemon, name: &str, files: &[&str]) -> String {
    d.cgroup_dirs(name)
        .iter()
        .find_map(|p| {
            files
                .iter()
                .find_map(|f| std::fs::read_to_string(p.join(f)).ok())
        })
        .unwrap_or_else(|| panic!("no cgroup of {name} has any of {files:?}"))
        .trim()
        .to_string()
}

#[test]
fn suexec_runs_as_any_user_of_the_guest() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("su").context(45011).write(&d);
    let root = d.guest_root("su");
    // A user only the guest knows: the host has no such name, so a host lookup would fail.
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nvsguestonly:x:1234:100:G:/home/g:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nusers:x:100:\nwww:x:33:vsguestonly\n",
    )
    .unwrap();
    d.spawn();
    let vs = Vserver::new(&d);
    assert_eq!(vs.v(&["su", "start"]).0, 0);
    assert!(nix::unistd::User::from_name("vsguestonly")
        .unwrap()
        .is_none());
    let (code, out, err) = vs.v(&[
        "su",
        "suexec",
        "vsguestonly",
        "sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME $USER",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1234\n100\n100 33\n/home/g vsguestonly\n");
    // By uid, with or without a passwd entry.
    assert_eq!(vs.v(&["su", "suexec", "1234", "id", "-u"]).1, "1234\n");
    assert_eq!(
        vs.v(&["su", "suexec", "4242", "sh", "-c", "id -u; id -g"])
            .1,
        "4242\n4242\n"
    );
    // The user's process has no capabilities left.
    let (_, status, _) = vs.v(&["su", "suexec", "vsguestonly", "cat", "/proc/self/status"]);
    let cap = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{k} in {status}"))
    };
    assert_eq!(cap("CapEff:"), "0000000000000000");
    assert_eq!(cap("CapPrm:"), "0000000000000000");
    // Its exit code passes through.
    assert_eq!(
        vs.v(&["su", "suexec", "vsguestonly", "sh", "-c", "exit 7"])
            .0,
        7
    );
    // From a terminal the command gets a pty of the guest's own; from a pipe, pipes.
    assert_eq!(
        vs.v(&["su", "suexec", "vsguestonly", "tty"]).1,
        "not a tty\n"
    );
    if harness::require(
        std::path::Path::new("/usr/bin/script").exists(),
        "script (util-linux)",
    ) {
        let o = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "{} su suexec vsguestonly sh -c 'tty; id -u'",
                vs.bin.display()
            ))
            .arg("/dev/null")
            .env("VSERVERD_SOCKET", &vs.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // script echoes our empty stdin's end (^@) on the terminal, before or after the
        // command's output.
        let out = String::from_utf8_lossy(&o.stdout)
            .replace('\r', "")
            .replace("^@", "");
        assert!(o.status.success(), "{out}");
        assert!(
            out.starts_with("/dev/pts/") && out.ends_with("\n1234\n"),
            "{out:?}"
        );
    }
    // An unknown user: a clear error, nothing run.
    let (code, _, err) = vs.v(&["su", "suexec", "nosuchuser", "touch", "/tmp/ran"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown user 'nosuchuser'"), "{err}");
    assert!(!root.join("tmp/ran").exists());
    // Guest root makes its passwd a FIFO: refused at once, no hang, the daemon serves on.
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    nix::unistd::mkfifo(
        &root.join("etc/passwd"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let (code, _, err) = vs.v(&["su", "suexec", "vsguestonly", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
    // A huge passwd is read only in part and still answers.
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    let mut big = "x".repeat(8 << 20);
    big.push_str("\nlate:x:77:77::/:/bin/sh\n");
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0::/root:/bin/sh\n{big}"),
    )
    .unwrap();
    let (code, _, err) = vs.v(&["su", "suexec", "late", "true"]);
    assert_eq!(code, 1, "an entry past the read bound is not found");
    assert!(err.contains("unknown user 'late'"), "{err}");
    assert_eq!(vs.v(&["su", "suexec", "root", "true"]).0, 0);
    assert_eq!(vs.v(&["su", "stop"]).0, 0);
}

/// A group for the read-only callers of one test, removed on drop.
struct ReadGroup(String, u32);

impl ReadGroup {
    fn new() -> ReadGroup {
        let name = format!("vsdc{}", std::process::id() % 100000);
        let _ = Command::new("groupdel").arg(&name).status();
        assert!(Command::new("groupadd")
            .arg(&name)
            .status()
            .unwrap()
            .success());
        let gid = nix::unistd::Group::from_name(&name)
            .unwrap()
            .expect("the new group")
            .gid
            .as_raw();
        ReadGroup(name, gid)
    }

    /// Runs `prog` as nobody in this group: (exit code, stdout, stderr).
    fn run(&self, vs: &Vserver, prog: &str, args: &[&str]) -> (i32, String, String) {
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                &format!("--regid={}", self.1),
                &format!("--groups={}", self.1),
                "--",
            ])
            .arg(vs.prog(prog))
            .args(args)
            .env("VSERVERD_SOCKET", &vs.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for ReadGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

/// Host pid of the guest process whose command line is `argv`.
fn guest_pid(d: &TestDaemon, name: &str, argv: &[&str]) -> Option<i32> {
    let want = argv.join("\0") + "\0";
    for dir in d.cgroup_dirs(name) {
        let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .as_deref()
                == Some(want.as_bytes())
            {
                return Some(pid);
            }
        }
    }
    None
}

#[test]
fn vps_vkill_vwait_and_vserver_info() {
    if !harness::require_busybox_guests()
        || !harness::require(
            std::path::Path::new("/usr/sbin/groupadd").exists(),
            "groupadd",
        )
        || !harness::require(std::path::Path::new("/usr/bin/setpriv").exists(), "setpriv")
        || !harness::require(std::path::Path::new("/usr/bin/ps").exists(), "ps (procps)")
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let g = ReadGroup::new();
    let mut d = TestDaemon::prepare();
    for p in [d.dir.path(), d.run_dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    GuestBuilder::busybox("pt")
        .context(45012)
        .file("name", "Process tools\n")
        .write(&d);
    GuestBuilder::busybox("pt2").context(45019).write(&d);
    d.arg("--read-group").arg(&g.0);
    d.spawn();
    let vs = Vserver::new(&d);
    let bin_dir = vs.bin.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    // vserver-info on a stopped guest.
    assert_eq!(
        vs.tool("vserver-info", &["pt", "RUNNING"]),
        (1, String::new(), String::new())
    );
    assert_eq!(vs.tool("vserver-info", &["pt", "CONTEXT"]).1, "45012\n");
    assert_eq!(vs.tool("vserver-info", &["pt", "CONTEXT", "false"]).0, 1);
    assert_eq!(
        vs.tool("vserver-info", &["pt", "VDIR"]).1,
        format!("{}\n", d.guest_root("pt").display())
    );
    let cfg = d.guest_config("pt");
    assert_eq!(
        vs.tool("vserver-info", &["pt", "CFGDIR"]).1,
        format!("{}\n", cfg.display())
    );
    assert_eq!(
        vs.tool("vserver-info", &[cfg.to_str().unwrap(), "VDIR"]).0,
        0,
        "by config path"
    );
    assert_eq!(
        vs.tool("vserver-info", &["pt", "NAME"]).1,
        "Process tools\n"
    );
    assert_eq!(
        vs.tool("vserver-info", &["-q", "nosuch", "VDIR"]),
        (1, String::new(), String::new())
    );
    assert_eq!(vs.tool("vserver-info", &["pt", "BOGUS"]).0, 1);
    assert!(vs
        .tool("vserver-info", &["-l"])
        .1
        .starts_with("Valid tags are: "));
    // vwait on a stopped guest: util-vserver's ERROR.
    assert_eq!(
        vs.tool("vwait", &["--status-fd", "1", "45012"]),
        (
            127,
            "ERROR 3\n".into(),
            "vwait: vc_wait_exit(): No such process\n".into()
        )
    );

    assert_eq!(vs.v(&["pt", "start"]).0, 0);
    let init = d.init_pid("pt");
    assert_eq!(
        vs.tool("vserver-info", &["pt", "RUNNING"]),
        (0, "1\n".into(), String::new())
    );
    assert_eq!(
        vs.tool("vserver-info", &["-q", "pt", "RUNNING"]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        vs.tool("vserver-info", &["45012", "RUNNING"]).0,
        0,
        "by context id"
    );
    assert_eq!(vs.tool("vserver-info", &["45012", "ID"]).1, "pt\n");
    assert_eq!(
        vs.tool("vserver-info", &["pt", "INITPID"]).1,
        format!("{init}\n")
    );
    assert_eq!(
        vs.tool("vserver-info", &[&init.to_string(), "XID"]).1,
        "45012\n"
    );
    assert_eq!(
        vs.tool("vserver-info", &[&std::process::id().to_string(), "XID"])
            .1,
        "0\n"
    );
    assert_eq!(vs.tool("vserver-info", &["45012", "XIDTYPE"]).1, "static\n");

    // vps: the guest's processes carry its context and name, the host's 0 and MAIN.
    let (code, out, err) = vs.tool("vps", &["-e", "-o", "pid,comm"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "CONTEXT", "COMMAND"]
    );
    let row = |pid: i32| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("pid {pid} in {out}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(row(init)[1..3], ["45012".to_string(), "pt".to_string()]);
    assert_eq!(
        row(std::process::id() as i32)[1..3],
        ["0".to_string(), "MAIN".to_string()]
    );
    // ps failed and printed no table: util-vserver's 254.
    assert_eq!(vs.tool("vps", &["--no-such-ps-option"]).0, 254);

    // The read group: vps, vserver-info, vwait.
    let (code, out, err) = g.run(&vs, "vps", &["-e", "-o", "pid,comm"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.contains("45012 pt")), "{out}");
    assert_eq!(
        g.run(&vs, "vserver-info", &["pt", "RUNNING"]),
        (0, "1\n".into(), String::new())
    );
    assert_eq!(
        g.run(&vs, "vwait", &["--timeout", "1", "--status-fd", "1", "pt"]),
        (2, "TIMEOUT\n".into(), String::new())
    );
    // …but not vkill, nor vwait --terminate (which then claims nothing).
    let (code, out, err) = g.run(
        &vs,
        "vwait",
        &["--timeout", "1", "--terminate", "--status-fd", "1", "pt"],
    );
    assert_eq!((code, out.as_str()), (127, "ERROR 1\n"), "{err}");
    assert_eq!(d.status("pt")["state"], "running");
    let (code, _, err) = g.run(&vs, "vkill", &["--xid", "pt", "-s", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("root only"), "{err}");

    // vkill: a guest process by host pid.
    assert_eq!(
        vs.v(&[
            "pt",
            "exec",
            "sh",
            "-c",
            "sleep 777 </dev/null >/dev/null 2>&1 &"
        ])
        .0,
        0
    );
    let mut victim = None;
    d.wait_until("the guest's sleep", || {
        victim = guest_pid(&d, "pt", &["sleep", "777"]);
        victim.is_some()
    });
    let victim = victim.unwrap();
    assert_eq!(
        vs.tool("vkill", &["-s", "KILL", &victim.to_string()]),
        (0, String::new(), String::new())
    );
    d.wait_until("the sleep to be gone", || {
        guest_pid(&d, "pt", &["sleep", "777"]).is_none()
    });
    // Another guest's process is not this guest's: refused, and it lives on; without --xid
    // each pid goes to its own guest.
    assert_eq!(vs.v(&["pt2", "start"]).0, 0);
    let other = d.init_pid("pt2").to_string();
    let (code, _, err) = vs.tool("vkill", &["--xid", "pt", "-s", "KILL", &other]);
    assert_eq!(code, 1);
    assert!(err.contains("not a process of guest pt"), "{err}");
    assert_eq!(
        vs.tool("vkill", &["-s", "0", &other, &init.to_string()]).0,
        0
    );
    assert_eq!(d.status("pt2")["state"], "running");
    assert_eq!(vs.v(&["pt2", "stop"]).0, 0);
    // A host process is no guest's: refused, and it lives on.
    let mut host = Command::new("sleep").arg("600").spawn().unwrap();
    let hp = host.id().to_string();
    let (code, _, err) = vs.tool("vkill", &["--xid", "45012", "-s", "KILL", &hp]);
    assert_eq!(code, 1);
    assert!(err.contains("not a process of guest pt"), "{err}");
    let (code, _, err) = vs.tool("vkill", &["-s", "KILL", &hp]);
    assert_eq!(code, 1);
    assert!(err.contains("not a process of a running vserver"), "{err}");
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(
        vs.tool("vkill", &["-s", "BOGUS", "1"]).2,
        "Invalid signal specified\n"
    );
    assert_eq!(vs.tool("vkill", &[]).0, 1);
    // Signal 0 to every process of the guest: all there.
    assert_eq!(vs.tool("vkill", &["--xid", "pt", "-s", "0"]).0, 0);

    // vwait: a timeout, then the guest's stop.
    assert_eq!(vs.tool("vwait", &["--timeout", "1", "45012"]).0, 2);
    let waiter = Command::new(vs.prog("vwait"))
        .args(["--timeout", "120", "--status-fd", "1", "45012"])
        .env("VSERVERD_SOCKET", &vs.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped by a second waiter's --terminate once the first one has its two connections
    // (the calls and the event stream).
    let sockets = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|r| {
                r.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let wpid = waiter.id();
    d.wait_until("vwait's connections", || sockets(wpid) >= 2);
    let (code, out, _) = vs.tool(
        "vwait",
        &["--timeout", "1", "--terminate", "--status-fd", "1", "pt"],
    );
    assert_eq!((code, out.as_str()), (1, "KILLED\n"));
    let o = waiter.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "FINISHED 0\n");
    assert_eq!(d.status("pt")["state"], "stopped");
}

#[test]
fn vlimit_vsched_and_vuname_change_a_running_guest() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("lim").context(45013).write(&d);
    d.spawn();
    let vs = Vserver::new(&d);
    assert_eq!(vs.v(&["lim", "start"]).0, 0);
    // vlimit: nproc → pids.max, rss (pages) → memory.max.
    assert_eq!(
        vs.tool("vlimit", &["--xid", "45013", "--nproc", "57"]),
        (0, String::new(), String::new())
    );
    assert_eq!(cg_value(&d, "lim", &["pids.max"]), "57");
    // SAFETY: sysconf cannot fail for _SC_PAGESIZE.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    assert_eq!(
        vs.tool("vlimit", &["-c", "lim", "-H", "--rss", "25600"]).0,
        0
    );
    assert_eq!(
        cg_value(&d, "lim", &["memory.max", "memory.limit_in_bytes"]),
        (25600 * page).to_string()
    );
    // A limit without a knob, or no guest: util-vserver's 255, nothing changed.
    let (code, _, err) = vs.tool("vlimit", &["--xid", "lim", "--nsock", "5"]);
    assert_eq!(code, 255);
    assert!(err.contains("no cgroup knob"), "{err}");
    assert_eq!(
        vs.tool("vlimit", &["--xid", "nosuch", "--nproc", "5"]).0,
        255
    );
    assert_eq!(cg_value(&d, "lim", &["pids.max"]), "57");
    // vsched: fill-rate/interval of a CPU → cpu.max.
    assert_eq!(
        vs.tool(
            "vsched",
            &["--xid", "lim", "--fill-rate", "1", "--interval", "4"]
        )
        .0,
        0
    );
    let cpu = cg_value(&d, "lim", &["cpu.max", "cpu.cfs_quota_us"]);
    assert!(cpu == "25000 100000" || cpu == "25000", "{cpu}");
    assert_eq!(
        vs.tool("vsched", &["--xid", "lim", "--fill-rate", "1"]).0,
        255
    );
    // vuname: the guest's nodename changes live; the host's does not.
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(
        vs.tool(
            "vuname",
            &[
                "--xid",
                "lim",
                "-s",
                "-t",
                "nodename=renamed",
                "-t",
                "domainname=example.org"
            ]
        )
        .0,
        0
    );
    assert_eq!(vs.v(&["lim", "exec", "uname", "-n"]).1, "renamed\n");
    assert_eq!(
        vs.v(&["lim", "exec", "cat", "/proc/sys/kernel/domainname"])
            .1,
        "example.org\n"
    );
    assert_eq!(
        vs.tool("vuname", &["--xid", "45013", "nodename"]).1,
        "renamed\n"
    );
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
    assert_eq!(
        vs.tool("vuname", &["--xid", "lim", "-s", "-t", "release=9.9"])
            .0,
        255
    );
    let long = format!("nodename={}", "n".repeat(65));
    assert_eq!(
        vs.tool("vuname", &["--xid", "lim", "-s", "-t", &long]).0,
        255
    );
    assert_eq!(vs.v(&["lim", "exec", "uname", "-n"]).1, "renamed\n");
    // --dir: the files of a uts/ folder.
    let uts = d.dir.path().join("uts");
    std::fs::create_dir_all(&uts).unwrap();
    std::fs::write(uts.join("nodename"), "fromdir\n").unwrap();
    let dir = uts.to_str().unwrap();
    assert_eq!(vs.tool("vuname", &["--xid", "lim", "--dir", dir]).0, 0);
    assert_eq!(vs.v(&["lim", "exec", "uname", "-n"]).1, "fromdir\n");
    let gone = format!("{dir}/gone");
    assert_eq!(vs.tool("vuname", &["--xid", "lim", "--dir", &gone]).0, 255);
    assert_eq!(
        vs.tool("vuname", &["--xid", "lim", "--dir", &gone, "--missingok"])
            .0,
        0
    );
    assert_eq!(vs.v(&["lim", "stop"]).0, 0);
    // A stopped guest: NotRunning, exit 255.
    assert_eq!(
        vs.tool("vuname", &["--xid", "lim", "-s", "-t", "nodename=x"])
            .0,
        255
    );
}

#[test]
fn package_wrappers_and_start_vservers() {
    if !harness::require_busybox_guests() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut d = TestDaemon::prepare();
    for (n, ctx) in [("pa", 45014), ("pb", 45015)] {
        GuestBuilder::busybox(n)
            .context(ctx)
            .file("apps/init/mark", "default\n")
            .write(&d);
    }
    GuestBuilder::busybox("pc").context(45016).write(&d);
    // A marked guest that cannot start: its init is missing.
    GuestBuilder::new("broken")
        .context(45017)
        .file("apps/init/style", "plain\n")
        .file("apps/init/mark", "flaky\n")
        .write(&d);
    // Stand-ins for the guests' package managers: they say how they were called.
    for m in ["apt-get", "rpm", "yum", "emerge", "urpmi"] {
        let p = d.guest_root("pa").join("usr/bin").join(m);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{m} $*\"\nexit 3\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.spawn();
    let vs = Vserver::new(&d);

    // start-vservers: the marked guests, nothing to do the second time, stop them again.
    assert_eq!(
        vs.tool("start-vservers", &["-m", "default", "-j", "2"]).0,
        0
    );
    assert_eq!(d.status("pa")["state"], "running");
    assert_eq!(d.status("pb")["state"], "running");
    assert_eq!(d.status("pc")["state"], "stopped");
    assert_eq!(vs.tool("start-vservers", &["-m", "default"]).0, 0);
    // One of two fails: 2; the only one fails: 1.
    assert_eq!(vs.tool("start-vservers", &["-m", "flaky", "--", "pc"]).0, 2);
    assert_eq!(d.status("pc")["state"], "running");
    assert_eq!(vs.tool("start-vservers", &["-m", "flaky"]).0, 1);

    // The package-manager wrappers run the guest's own, with its exit code.
    for (prog, m) in [
        ("vapt-get", "apt-get"),
        ("vrpm", "rpm"),
        ("vyum", "yum"),
        ("vemerge", "emerge"),
        ("vurpm", "urpmi"),
    ] {
        let (code, out, err) = vs.tool(prog, &["pa", "--", "install", "foo"]);
        assert_eq!(
            (code, out),
            (3, format!("{m} install foo\n")),
            "{prog}: {err}"
        );
    }
    // Several guests: a header for each; the last one's code.
    let (code, out, _) = vs.tool("vapt-get", &["pa", "pb", "--", "update"]);
    assert_eq!(code, 1, "pb has no apt-get: {out}");
    assert!(
        out.starts_with("apt-get: operating on vserver pa\napt-get update\n"),
        "{out}"
    );
    assert!(out.contains("apt-get: operating on vserver pb\n"), "{out}");
    assert_eq!(vs.tool("vapt-get", &["--", "update"]).0, 255, "no vserver");
    // vpkg: whichever package manager the guest has.
    let (code, out, _) = vs.tool("vpkg", &["pa", "install", "foo"]);
    assert_eq!((code, out.as_str()), (3, "apt-get -y install foo\n"));
    let (code, _, err) = vs.tool("vpkg", &["pb", "install", "foo"]);
    assert_eq!(code, 1);
    assert!(err.contains("no package manager"), "{err}");

    // --all: only the broken one is not running yet, and it fails again.
    assert_eq!(vs.tool("start-vservers", &["--all", "-j", "4"]).0, 1);
    assert_eq!(
        vs.tool("start-vservers", &["--stop", "-m", "default", "--", "pc"])
            .0,
        0
    );
    for n in ["pa", "pb", "pc"] {
        assert_eq!(d.status(n)["state"], "stopped", "{n}");
    }
    assert_eq!(
        vs.tool("start-vservers", &["--all"]).0,
        2,
        "three start, broken fails"
    );
    for n in ["pa", "pb", "pc"] {
        assert_eq!(d.status(n)["state"], "running", "{n}");
    }
    assert_eq!(vs.tool("start-vservers", &["--stop", "--all"]).0, 0);
    for n in ["pa", "pb", "pc"] {
        assert_eq!(d.status(n)["state"], "stopped", "{n}");
    }
}

/// The systemd units util-vserver had: vserver@.service's own ExecStart and ExecStop lines,
/// run as systemd would run them for vserver@tmpl (with the built vserverctl), start and stop
/// that guest; vservers-default is the autostart unit's alias.
#[test]
fn the_vserver_template_unit_starts_and_stops_one_guest() {
    if !harness::require_busybox_guests() {
        return;
    }
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let unit = std::fs::read_to_string(units.join("vserver@.service")).unwrap();
    let autostart = std::fs::read_to_string(units.join("vserverd-autostart.service")).unwrap();
    assert!(
        autostart
            .lines()
            .any(|l| l == "Alias=vservers-default.service"),
        "{autostart}"
    );
    let line = |key: &str| -> Vec<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {unit}"))
            .split_whitespace()
            .map(|w| w.replace("%I", "tmpl"))
            .collect()
    };
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("tmpl").context(45018).write(&d);
    d.spawn();
    let run = |argv: Vec<String>| {
        assert_eq!(argv[0], "/usr/local/bin/vserverctl", "{argv:?}");
        let o = Command::new(harness::bins::vserverctl())
            .args(&argv[1..])
            .env("VSERVERD_SOCKET", &d.socket)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(line("ExecStart="));
    assert_eq!(d.status("tmpl")["state"], "running");
    run(line("ExecStop="));
    assert_eq!(d.status("tmpl")["state"], "stopped");
}

/// util-vserver ran a sysv guest's `rc 3` and `rc 6` on the caller's terminal, so `vserver NAME
/// start` and `stop` printed what the rc scripts said; `--silent` quietened only its own
/// messages, `--defaulttty` sent rc's output elsewhere. Here the rc output comes from the
/// guest's console, filtered, and a daemon rc leaves behind holding the console does not keep
/// the start from returning.
#[test]
fn start_and_stop_print_what_the_rc_scripts_say() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("rcout")
        .context(45003)
        .file("apps/init/style", "sysv\n")
        .write(&d);
    let rc = d.guest_root("rcout").join("etc/init.d/rc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    // A title change (OSC) and bold: the first must not reach the caller's terminal. The
    // background sleep keeps the console open, as a daemon started by rc does.
    std::fs::write(
        &rc,
        "#!/bin/sh\ncase $1 in\n\
         3) echo 'Starting fake web server: fakehttpd.'; printf '\\033]0;owned\\007\\033[1mbold\\033[0m\\n'; sleep 1000 &\n\
            [ -e /flood ] && head -c 3000000 /dev/zero | tr '\\0' x\n\
            i=0; while [ $i -lt 400 ]; do echo \"line $i\"; i=$((i+1)); done; echo 'rc 3 done' ;;\n\
         6) echo 'Stopping fake web server: fakehttpd.'; killall sleep ;;\n\
         esac\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn();
    let vs = Vserver::new(&d);

    let (code, out, err) = vs.v(&["rcout", "start"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    // Everything up to rc's last line, written just before it exits (the keeper hands over
    // what the pty still holds when the relay ends).
    assert!(
        out.contains("Starting fake web server: fakehttpd.")
            && out.contains("line 399\r\nrc 3 done"),
        "{out:?}"
    );
    assert!(out.contains("\x1b[1mbold"), "colours are kept: {out:?}");
    assert!(
        !out.contains("\x1b]") && !out.contains("owned"),
        "the title change is dropped: {out:?}"
    );
    let (code, out, _) = vs.v(&["rcout", "stop"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Stopping fake web server: fakehttpd.") && !out.contains("Starting"),
        "{out:?}"
    );
    // --silent: util-vserver's own messages only (rc's output stays, as there).
    let (code, out, _) = vs.v(&["--silent", "rcout", "start"]);
    assert_eq!(code, 0);
    assert!(out.contains("Starting fake web server"), "{out:?}");
    assert_eq!(
        vs.v(&["--silent", "rcout", "status"]),
        (0, String::new(), String::new())
    );
    // restart: rc 6's output, then rc 3's.
    let (code, out, _) = vs.v(&["rcout", "restart"]);
    assert_eq!(code, 0);
    let (stop_at, start_at) = (out.find("Stopping fake"), out.find("Starting fake"));
    assert!(
        stop_at.is_some() && start_at.is_some() && stop_at < start_at,
        "{out:?}"
    );
    // --defaulttty: rc's output goes to the console log only.
    assert_eq!(
        vs.v(&["--defaulttty", "rcout", "stop"]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        vs.v(&["--defaulttty", "rcout", "start"]),
        (0, String::new(), String::new())
    );
    let log = std::fs::read_to_string(d.run_dir.join("guests/rcout.log")).unwrap();
    assert!(log.contains("Starting fake web server"), "{log}");
    // A guest flooding its console during the start: one call relays at most 1 MiB, and says
    // where it stopped (at the cap, or where the keeper dropped a relay that fell behind).
    assert_eq!(vs.v(&["--defaulttty", "rcout", "stop"]).0, 0);
    std::fs::write(d.guest_root("rcout").join("flood"), "").unwrap();
    let (code, out, _) = vs.v(&["rcout", "start"]);
    assert_eq!(code, 0);
    assert!(
        out.len() < (1 << 20) + 4096
            && out.contains("[vserverd: console output cut")
            && out.contains("the rest is in the console log]"),
        "{} bytes, ending {:?}",
        out.len(),
        &out[out.len().saturating_sub(200)..]
    );
    std::fs::remove_file(d.guest_root("rcout").join("flood")).unwrap();
    assert_eq!(vs.v(&["rcout", "stop"]).0, 0);
    // vserverctl's own form prints its steps, not the console, unless asked.
    let out = d.ctl_ok(&["stop", "rcout"]);
    assert!(!out.contains("Stopping fake"), "{out}");
    let out = d.ctl_ok(&["start", "rcout", "--console"]);
    assert!(
        out.contains("Starting fake web server") && out.contains("rcout: running:"),
        "{out}"
    );
    let out = d.ctl_ok(&["stop", "rcout", "--console", "--json"]);
    assert!(
        out.contains(r#""step": "console""#) && out.contains("Stopping fake web server"),
        "{out}"
    );
}
