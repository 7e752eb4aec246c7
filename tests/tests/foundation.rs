//! Issue 3, end to end: the daemon on temporary roots, the CLI, and the wire protocol.

use harness::varlink::Raw;
use harness::{GuestBuilder, TestDaemon};
use serde_json::{json, Value};

fn three_guests(d: &TestDaemon) {
    GuestBuilder::new("alpha")
        .context(40001)
        .file("apps/init/style", "plain\n")
        .file("apps/init/mark", "default\n")
        .write(d);
    GuestBuilder::new("beta")
        .context(40002)
        .file("apps/init/depends", "alpha\n")
        .file("apps/init/mark", "default\n")
        .write(d);
    GuestBuilder::new("broken")
        .context(40003)
        .file("rlimits/nproc", "lots\n")
        .write(d);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn list_shows_all_three_and_check_names_the_broken_file_and_line() {
    let mut d = TestDaemon::prepare();
    three_guests(&d);
    d.spawn();

    let out = d.ctl(&["list", "--json"]);
    assert!(out.status.success(), "list failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("list --json is JSON");
    let guests = v["guests"].as_array().expect("guests");
    let names: Vec<&str> = guests.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "broken"]);
    assert_eq!(guests[0]["context"], 40001);
    assert_eq!(guests[0]["state"], "stopped");
    assert_eq!(guests[0]["mark"], json!(["default"]));
    assert_eq!(guests[1]["depends"], json!(["alpha"]));
    let err = &guests[2]["config_error"];
    assert!(
        err["file"]
            .as_str()
            .unwrap()
            .ends_with("broken/rlimits/nproc"),
        "{err}"
    );
    assert_eq!(err["line"], 1);

    // The human table lists them too.
    let out = d.ctl(&["list"]);
    assert!(out.status.success());
    let table = stdout(&out);
    for n in ["alpha", "beta", "broken", "NAME"] {
        assert!(table.contains(n), "table lacks {n}:\n{table}");
    }

    let out = d.ctl(&["check", "broken"]);
    assert_eq!(out.status.code(), Some(1), "check broken: {}", stderr(&out));
    let expected = format!(
        "{}:1: expected a number or 'inf', got \"lots\"",
        d.guest_config("broken").join("rlimits/nproc").display()
    );
    assert!(
        stderr(&out).contains(&expected),
        "stderr: {}\nwanted: {expected}",
        stderr(&out)
    );

    let out = d.ctl(&["check", "alpha"]);
    assert!(out.status.success(), "check alpha: {}", stderr(&out));

    let out = d.ctl(&["check", "alpha", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).expect("check --json");
    assert_eq!(v["config"]["name"], "alpha");
    assert_eq!(v["config"]["context"], 40001);
}

#[test]
fn status_exit_codes_follow_lsb() {
    let mut d = TestDaemon::prepare();
    three_guests(&d);
    d.spawn();
    let out = d.ctl(&["status", "alpha"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "Vserver 'alpha' is stopped\n");
    // A tree without limits: said on stderr, where util-vserver's status scripts do not look.
    assert!(
        stderr(&out).contains("runs unbounded: no pids limit"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("loopback only (no interfaces/)"),
        "{}",
        stderr(&out)
    );
    let out = d.ctl(&["status", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such guest: nosuch"),
        "{}",
        stderr(&out)
    );
    let out = d.ctl(&["running", "alpha"]);
    assert_eq!(out.status.code(), Some(1));
    // Usage errors exit 2.
    let out = d.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreachable_daemon_exits_69_and_says_how_to_start_it() {
    let mut d = TestDaemon::start();
    d.stop();
    let out = d.ctl(&["list"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("systemctl start vserverd"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let mut d = TestDaemon::start();
    let st = d.stop().expect("daemon was running");
    assert!(st.success(), "exit status {st}");
    assert!(!d.socket.exists(), "socket file left behind");
}

#[test]
fn missing_context_is_the_pld_error() {
    let mut d = TestDaemon::prepare();
    // A guest (it has apps/) without a context file.
    GuestBuilder::new("noctx")
        .file("apps/init/style", "plain\n")
        .write(&d);
    d.spawn();
    let out = d.ctl(&["check", "noctx"]);
    assert_eq!(out.status.code(), Some(1));
    let want = format!(
        "Dynamic Context IDs are not supported, you must set Context ID in {}/context",
        d.guest_config("noctx").display()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
}

#[test]
fn a_context_clash_refuses_only_the_guest_whose_change_made_it() {
    let mut d = TestDaemon::prepare();
    GuestBuilder::new("one").context(40010).write(&d);
    GuestBuilder::new("two").context(40011).write(&d);
    d.spawn();
    // `two` takes `one`'s context later: `two` is refused, `one` keeps working.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(d.guest_config("two").join("context"), "40010\n").unwrap();
    let out = d.ctl(&["check", "two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("context id 40010 is already used by one"),
        "{}",
        stderr(&out)
    );
    let out = d.ctl(&["check", "one"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = |list: &Value, n: &str| {
        list["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == n)
            .map(|g| g["config_error"].clone())
            .unwrap()
    };
    let list = || -> Value { serde_json::from_str(&d.ctl_ok(&["list", "--json"])).unwrap() };
    // List follows the watcher, which sees the edit a moment later.
    d.wait_until("List shows the clash", || !err(&list(), "two").is_null());
    let l = list();
    assert!(err(&l, "one").is_null(), "{l}");
}

#[test]
fn introspection_describes_the_interface() {
    let d = TestDaemon::start();
    let mut c = Raw::connect(&d.socket);
    let info = c.call("org.varlink.service.GetInfo", json!({}));
    let ifaces = info["parameters"]["interfaces"]
        .as_array()
        .expect("interfaces");
    assert!(
        ifaces.contains(&json!("org.linux-vserver.Manager")),
        "{info}"
    );
    assert!(ifaces.contains(&json!("org.varlink.service")), "{info}");
    let desc = c.call(
        "org.varlink.service.GetInterfaceDescription",
        json!({"interface": "org.linux-vserver.Manager"}),
    );
    assert_eq!(
        desc["parameters"]["description"]
            .as_str()
            .unwrap()
            .trim_end(),
        proto::IDL.trim_end()
    );
}

#[test]
fn bad_calls_get_varlink_errors_and_the_daemon_stays_up() {
    let d = TestDaemon::start();
    let mut c = Raw::connect(&d.socket);

    let r = c.call("org.linux-vserver.Manager.Frobnicate", json!({}));
    assert_eq!(r["error"], "org.varlink.service.MethodNotFound");
    assert_eq!(
        r["parameters"]["method"],
        "org.linux-vserver.Manager.Frobnicate"
    );

    let r = c.call("org.linux-vserver.Manager.Status", json!({}));
    assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(r["parameters"]["parameter"], "name");

    let r = c.call("org.linux-vserver.Manager.Status", json!({"name": 42}));
    assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(r["parameters"]["parameter"], "name");

    let r = c.call(
        "org.linux-vserver.Manager.Status",
        json!({"name": "x", "nmae": "y"}),
    );
    assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(r["parameters"]["parameter"], "nmae");

    let r = c.call(
        "org.linux-vserver.Manager.SetLimits",
        json!({"name": "x", "limits": {"memory": "lots"}, "persist": false}),
    );
    assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(r["parameters"]["parameter"], "limits.memory");

    let r = c.call("com.example.Nope.Method", json!({}));
    assert_eq!(r["error"], "org.varlink.service.InterfaceNotFound");

    // The same connection still works after all of that.
    let r = c.call("org.linux-vserver.Manager.List", json!({}));
    assert!(r["parameters"]["guests"].is_array(), "{r}");

    // Non-JSON ends only that connection.
    let mut bad = Raw::connect(&d.socket);
    bad.send_bytes(b"this is not json\0");
    assert!(bad.recv().is_none(), "connection should be closed");
    let mut c2 = Raw::connect(&d.socket);
    let r = c2.call("org.linux-vserver.Manager.List", json!({}));
    assert!(r["parameters"]["guests"].is_array(), "{r}");
}

#[test]
fn half_a_message_stalls_nobody() {
    let d = TestDaemon::start();
    let mut slow = Raw::connect(&d.socket);
    slow.send_bytes(br#"{"method":"org.linux-vserver.Manager.Li"#);
    // Others are served while the slow client sits on its half message.
    for _ in 0..20 {
        let mut c = Raw::connect(&d.socket);
        let r = c.call("org.linux-vserver.Manager.List", json!({}));
        assert!(r["parameters"]["guests"].is_array(), "{r}");
    }
    // And the slow one is served once it finishes.
    slow.send_bytes(b"st\"}\0");
    let r = slow.recv().expect("reply");
    assert!(r["parameters"]["guests"].is_array(), "{r}");
}

#[test]
fn oneway_calls_get_no_reply() {
    let d = TestDaemon::start();
    let mut c = Raw::connect(&d.socket);
    c.send(&json!({"method": "org.linux-vserver.Manager.List", "oneway": true}));
    let r = c.call(
        "org.linux-vserver.Manager.Status",
        json!({"name": "nosuch"}),
    );
    assert_eq!(r["error"], "org.linux-vserver.Manager.NoSuchGuest", "{r}");
}

/// The daemon's memory, as /proc says (kB).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_oversized_request_gets_an_error_and_its_connection_ends() {
    let d = TestDaemon::start();
    let before = rss_kb(d.pid().unwrap());
    // 16 clients each sending 8 MiB of a never-ending call (the review held 1.95 GB this way).
    let mut big = Vec::new();
    for _ in 0..16 {
        let mut c = Raw::connect(&d.socket);
        let mut msg = br#"{"method":"org.linux-vserver.Manager.List","parameters":{"x":""#.to_vec();
        msg.resize(8 << 20, b'a');
        // The daemon stops reading at its bound: the rest of the write may fail.
        c.try_send_bytes(&msg);
        big.push(c);
    }
    for c in &mut big {
        let r = c.recv().expect("an error reply before the connection ends");
        assert_eq!(r["error"], "org.varlink.service.InvalidParameter", "{r}");
        assert!(
            r["parameters"]["parameter"]
                .as_str()
                .unwrap_or("")
                .contains("64 KiB"),
            "{r}"
        );
        assert!(c.recv().is_none(), "the connection should be closed");
    }
    let after = rss_kb(d.pid().unwrap());
    eprintln!("daemon RSS {before} kB before, {after} kB after 16 oversized requests");
    assert!(
        after < before + 32 * 1024,
        "the daemon grew from {before} to {after} kB"
    );
    let mut c = Raw::connect(&d.socket);
    let r = c.call("org.linux-vserver.Manager.List", json!({}));
    assert!(r["parameters"]["guests"].is_array(), "{r}");
}

/// A group for the read-only callers of one test, removed on drop.
struct ReadGroup(String, u32);

impl ReadGroup {
    fn new() -> ReadGroup {
        let name = format!("vsdr{}", std::process::id() % 100000);
        let _ = std::process::Command::new("groupdel").arg(&name).status();
        assert!(std::process::Command::new("groupadd")
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

    /// A command run as nobody with this group.
    fn command(&self, prog: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            &format!("--regid={}", self.1),
            &format!("--groups={}", self.1),
            "--",
        ])
        .arg(prog);
        c
    }
}

impl Drop for ReadGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("groupdel").arg(&self.0).status();
    }
}

#[test]
fn read_group_members_get_no_secrets_and_cannot_crowd_out_root() {
    if !harness::require(harness::is_root(), "root")
        || !harness::require(
            std::path::Path::new("/usr/sbin/groupadd").exists(),
            "groupadd",
        )
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let g = ReadGroup::new();
    let mut d = TestDaemon::prepare();
    for p in [d.dir.path(), d.run_dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    GuestBuilder::new("sec")
        .context(40030)
        .file("apps/init/environment", "DB_PASSWORD=hunter2\nMODE=prod\n")
        .write(&d);
    d.arg("--read-group").arg(&g.0);
    d.spawn();
    // Root sees the environment; a read-group member sees its names only.
    assert!(d.ctl_ok(&["check", "sec", "--json"]).contains("hunter2"));
    let o = g
        .command(&harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(["check", "sec", "--json"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("DB_PASSWORD=(redacted"), "{out}");
    // 100 idle connections of one member: 64 are kept, the rest closed, and root is served.
    let script = format!(
        "import socket,time\n\
         s=[]\n\
         for i in range(100):\n\
         \x20   c=socket.socket(socket.AF_UNIX); c.connect('{}'); s.append(c)\n\
         time.sleep(0.5)\n\
         alive=0\n\
         for c in s:\n\
         \x20   c.setblocking(False)\n\
         \x20   try:\n\
         \x20       alive += 0 if c.recv(1)==b'' else 1\n\
         \x20   except BlockingIOError:\n\
         \x20       alive += 1\n\
         print(alive, flush=True)\n\
         time.sleep(3)\n",
        d.socket.display()
    );
    let mut hog = g
        .command(std::path::Path::new("/usr/bin/python3"))
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(hog.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "64", "connections kept open for one uid");
    let t = std::time::Instant::now();
    d.ctl_ok(&["list"]);
    eprintln!(
        "root's list with 100 connections held by a member: {:?}",
        t.elapsed()
    );
    let _ = hog.kill();
    let _ = hog.wait();
}

/// A second daemon on the first's run directory, config root or cgroup prefix (each with the
/// other two its own) refuses to run, saying why, and changes nothing of the first's: its
/// socket still answers and its guest still runs.
#[test]
fn a_second_daemon_on_the_same_state_refuses_and_touches_nothing() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("one").context(43091).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "one"]);
    let init = d.init_pid("one");
    let other = tempfile::tempdir().unwrap();
    let mine = |sub: &str| {
        let p = other.path().join(sub);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let cases = [
        (
            "the run directory",
            d.run_dir.clone(),
            mine("etc"),
            "vsd-lock-a".to_string(),
        ),
        (
            "the config root",
            mine("run"),
            d.config_root.clone(),
            "vsd-lock-b".to_string(),
        ),
        (
            "the cgroup prefix",
            mine("run2"),
            mine("etc2"),
            d.cgroup_prefix.clone(),
        ),
    ];
    for (what, run, cfg, prefix) in cases {
        let o = std::process::Command::new(harness::bins::vserverd())
            .arg("--run-dir")
            .arg(&run)
            .arg("--config-root")
            .arg(&cfg)
            .arg("--vdir-base")
            .arg(mine("vservers"))
            .arg("--socket")
            .arg(run.join("second.sock"))
            .arg("--cgroup-prefix")
            .arg(&prefix)
            .output()
            .unwrap();
        let said = stderr(&o);
        assert!(!o.status.success(), "a second daemon ran on {what}");
        assert!(
            said.contains(&format!("another vserverd already uses {what}")),
            "{what}: {said}"
        );
        if prefix.starts_with("vsd-lock-") {
            harness::daemon::cleanup_cgroups(&prefix);
        }
    }
    // The first is untouched.
    assert_eq!(d.init_pid("one"), init);
    d.ctl_ok(&["exec", "one", "--", "true"]);
    assert!(d.socket.exists(), "the first daemon's socket is gone");
    d.ctl_ok(&["stop", "one"]);
}
