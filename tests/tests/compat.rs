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
