//! util-vserver's command line (`vserver NAME VERB`, `vserver-stat`) end to end: a session
//! following util-vserver's command table and messages (docs/compat.md), outputs and exit codes.

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
        vs.v(&["web", "suexec", "nobody", "id"]).0,
        2,
        "only root is supported"
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
