//! Crash safety under real systemd (the VM tier, docs/crash.md): a power cut, and an adopted
//! guest's end on a host whose PID 1 reaps orphans.
//!
//! Power cut (Debian 13): the VM gets a persistent disk (an ext4 image made here with
//! `mkfs.ext4 -d`, bind-mounted on /etc/vservers and /vservers by the boot's fstab). The first
//! boot starts guests (two marked for autostart, one by hand, one left mid-start in its
//! pre-start hook) under the packaged units, plus a second daemon whose run directory is on the
//! disk (one guest running, one mid-start); then qemu is SIGKILLed. The second boot, from the
//! same disk, checks that no stale state claims a guest runs, that each guest's status is
//! right, that the autostart unit brought the marked guests up, and that the others (the ones
//! cut mid-start included) start.
//!
//! Reaping PID 1 (Debian 13 in the second boot, Debian 12 in a boot of its own): the daemon is
//! SIGKILLed and the guest's init, now systemd's child, ends: with no daemon running, and with
//! a daemon that adopted it. What `status` says in each case is printed and checked against
//! what docs/crash.md promises.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use harness::vm::{self, Vm};
use harness::{require, GuestBuilder};

/// Helpers shared by every script.
const PRELUDE: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service -u vsd-disk.service | tail -40; exit 1; }
# status exits 3 for a stopped guest (LSB), which set -e must not take for an error.
json() { { vserverctl status "$1" --json 2>/dev/null || true; } | tr -d '\n'; }
field() { json "$1" | sed -n "s/.*\"$2\": *\"\{0,1\}\([a-z0-9]*\).*/\1/p"; }
message() { json "$1" | sed -n 's/.*"message": *"\([^"]*\)".*/\1/p'; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }
is() { [ "$(field "$1" state)" = "$2" ]; }
# The run states, start journals and owed reboots in run directory $1 (not the console logs).
records() { (cd "$1/guests" && ls -- *.json *.pending *.reboot 2>/dev/null | tr '\n' ' ') || true; }
"#;

/// The daemon whose run directory is on the persistent disk (its own config root, socket and
/// unit, so its locks and cgroups are its own).
const DISK_DAEMON: &str = r#"
disk_daemon() {
  systemd-run --quiet --unit=vsd-disk -p Delegate=yes -p KillMode=process /test/bin/vserverd \
    --config-root /persist/disk/etc --vdir-base /persist/disk/vservers \
    --run-dir /persist/disk/run --socket /run/vsd-disk.sock
  wait_for 60 "the disk daemon answers" env VSERVERD_SOCKET=/run/vsd-disk.sock vserverctl list
}
D() { VSERVERD_SOCKET=/run/vsd-disk.sock "$@"; }
"#;

const BOOT1: &str = r#"
wait_for 240 "vserverd-autostart active" systemctl is-active vserverd-autostart.service
is a running && is b running || fail "autostart: a $(field a state), b $(field b state)"
vserverctl start s >/dev/null
step "boot 1: a, b running (autostart), s started by hand"
disk_daemon
D vserverctl start d >/dev/null
step "boot 1: the disk daemon (run dir /persist/disk/run) runs d"
# m and dm stop in their pre-start hooks while /run/vsd-block exists: starts in flight.
touch /run/vsd-block
vserverctl start m >/run/m.out 2>&1 &
D vserverctl start dm >/run/dm.out 2>&1 &
wait_for 60 "m in its pre-start hook" test -e /run/vsd-in-prestart-m
wait_for 60 "dm in its pre-start hook" test -e /run/vsd-in-prestart-dm
echo "disk run dir: $(records /persist/disk/run)"
[ -e /persist/disk/run/guests/d.json ] && [ -e /persist/disk/run/guests/dm.pending ] \
  || fail "the disk daemon's records: $(ls /persist/disk/run/guests)"
# What the disk daemon wrote reaches the disk, so the next boot meets its stale records (a
# power cut a moment earlier would only leave less behind).
sync
step "boot 1: m and dm mid-start (journal written, cgroups made, pre-start hook running); records synced"
echo POWER-CUT
sleep 600
"#;

const BOOT2: &str = r#"
wait_for 240 "vserverd-autostart active" systemctl is-active vserverd-autostart.service
[ "$(stat -f -c %T /run)" = tmpfs ] || fail "/run is $(stat -f -c %T /run)"
recs=$(records /run/vserverd)
[ "$recs" = "a.json b.json " ] || fail "run states after the power cut: $recs"
step "boot 2: /run is a tmpfs: the packaged daemon's run dir held only what this boot wrote ($recs)"
is a running && is b running || fail "autostart after the power cut: a $(field a state), b $(field b state)"
for g in s m; do is $g stopped || fail "$g is $(field $g state) after the power cut"; done
step "boot 2: a, b running again through vserverd-autostart; s, m stopped"
vserverctl check m >/dev/null 2>&1 || fail "check m: $(vserverctl check m 2>&1)"
vserverctl start s >/dev/null
vserverctl start m >/dev/null
vserverctl exec m -- true || fail "exec in m"
vserverctl stop s >/dev/null
vserverctl stop m >/dev/null
step "boot 2: check m passes; s and m (cut mid-start) start, run and stop"

before=$(records /persist/disk/run)
disk_daemon
sd=$(D message d) sdm=$(D message dm)
echo "d: $(D field d state) ($sd)"
echo "dm: $(D field dm state) ($sdm)"
D is d stopped && D is dm stopped || fail "disk daemon: d $(D field d state), dm $(D field dm state)"
case $sd in "ended while vserverd was away (it was recorded before the host last booted)") ;;
  *) fail "d's message: $sd" ;; esac
[ "$sdm" = "a start was cut short; rolled back" ] || fail "dm's message: $sdm"
after=$(records /persist/disk/run)
[ -z "$after" ] || fail "left in the disk run dir: $after"
step "boot 2: the disk daemon found $before: d's record from the earlier boot not adopted, dm's journal rolled back; nothing left"
for g in d dm; do D vserverctl start $g >/dev/null; done
D vserverctl exec dm -- true || fail "exec in dm"
for g in d dm; do D vserverctl stop $g >/dev/null; done
step "boot 2: d and dm start, run and stop"
"#;

/// The daemon SIGKILLed, the guest's init ending while systemd (PID 1) reaps orphans.
const REAPING: &str = r#"
# No Restart=: a killed daemon stays dead until a call through the socket starts the next.
mkdir -p /run/systemd/system/vserverd.service.d
printf '[Service]\nRestart=no\n' >/run/systemd/system/vserverd.service.d/no-restart.conf
systemctl daemon-reload
kill_daemon() {
  local p
  p=$(systemctl show -P MainPID vserverd.service)
  [ "$p" != 0 ] || fail "no daemon to kill"
  kill -KILL "$p"
  wait_for 30 "the daemon gone" test ! -e /proc/$p
  systemctl reset-failed vserverd.service 2>/dev/null || true
}
gone() { test ! -e /proc/$1; }
# The packaged daemon's guest cgroups (OWN/vserverd/NAME, docs/vm-tier.md).
CG=/sys/fs/cgroup/system.slice/vserverd.service/vserverd
# Nothing of guest $1 left: no cgroup, run state or start journal.
cleaned() { [ ! -e "$CG/$1" ] && [ ! -e "/run/vserverd/guests/$1.json" ] &&
  [ ! -e "/run/vserverd/guests/$1.pending" ]; }
left() { echo "cgroup: $(ls -d "$CG/$1" 2>/dev/null), records: $(records /run/vserverd)"; }
echo "kernel $(uname -r)"

# A: init ends while no daemon runs; PID 1 reaps it; the next daemon finds nothing to read.
vserverctl start x >/dev/null
PX=$(field x init_pid)
[ -d "$CG/x" ] && [ -e /run/vserverd/guests/x.json ] || fail "x runs without $CG/x or its run state"
kill_daemon
touch /vservers/x/exit-now
wait_for 30 "x's init reaped by PID 1" gone $PX
st=$(field x state) m=$(message x)
echo "REAP-A x: $st ($m)"
[ "$st" = stopped ] && [ "$m" = "ended while vserverd was away (init $PX is gone)" ] || fail "A: $st ($m)"
cleaned x || fail "A: x not cleaned up: $(left x)"
vserverctl start x >/dev/null && vserverctl exec x -- true || fail "A: x does not start again"
step "A: init exited 7 with no daemon running: stopped, '$m'; cleaned up; starts again"

# B: the next daemon adopted x; init exits 7; the daemon races PID 1 for the zombie.
PX=$(field x init_pid)
kill_daemon
is x running && [ "$(field x init_pid)" = "$PX" ] || fail "x not adopted"
vserverctl exec x -- touch /exit-now
wait_for 30 "x seen to end" is x stopped
m=$(message x)
echo "REAP-B x: stopped ($m)"
case $m in "init ended (exit status 7)" | "init ended (exit status -1)") ;; *) fail "B: $m" ;; esac
wait_for 10 "x cleaned up" cleaned x
vserverctl start x >/dev/null && vserverctl exec x -- true || fail "x does not start again"
vserverctl stop x >/dev/null
step "B: an adopted init exited 7: stopped, '$m'; cleaned up; starts again"

# C: the adopted guest reboots (reboot(2) in its pid namespace).
vserverctl start y >/dev/null
PY=$(field y init_pid)
kill_daemon
is y running && [ "$(field y init_pid)" = "$PY" ] || fail "y not adopted"
vserverctl exec y -- /sbin/reboot -f || true
wait_for 30 "y's init gone" gone $PY
# Settled: stopped with a message, or running again with a new init.
y_settled() {
  local st m
  st=$(field y state) m=$(message y)
  { [ "$st" = stopped ] && [ -n "$m" ] && [ "$m" != "the guest rebooted" ]; } ||
    { [ "$st" = running ] && [ "$(field y init_pid)" != "$PY" ]; }
}
wait_for 60 "y settled" y_settled
st=$(field y state) m=$(message y)
echo "REAP-C y: $st ($m)"
case "$st/$m" in running/* | "stopped/init ended (exit status -1)") ;; *) fail "C: $st ($m)" ;; esac
[ "$st" = running ] || cleaned y || fail "C: y not cleaned up: $(left y)"
vserverctl start y >/dev/null 2>&1 || true
is y running || fail "y does not start again"
step "C: an adopted guest rebooted: $st, '$m'"
step "REAPING OK"
"#;

/// The guest `x` whose init is a script that exits 7 once /exit-now exists, and the busybox
/// guest `y`, under `cfg` and `vdir`.
fn reaping_guests(cfg: &Path, vdir: &Path) {
    GuestBuilder::busybox("x")
        .context(4501)
        .file("uts/nodename", "x\n")
        .write_to(cfg, vdir);
    let init = vdir.join("x/sbin/init");
    let _ = std::fs::remove_file(&init);
    std::fs::write(
        &init,
        "#!/bin/sh\n# Runs until /exit-now appears, then exits 7.\ntrap 'exit 0' INT TERM\n\
         while [ ! -e /exit-now ]; do sleep 1; done\nrm -f /exit-now\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    GuestBuilder::busybox("y")
        .context(4502)
        .file("uts/nodename", "y\n")
        .write_to(cfg, vdir);
}

/// A busybox guest whose pre-start hook blocks while /run/vsd-block exists (a start held in
/// flight), saying so in /run/vsd-in-prestart-NAME.
fn blocking_guest(name: &str, ctx: u32, cfg: &Path, vdir: &Path) {
    let c = GuestBuilder::busybox(name)
        .context(ctx)
        .file("uts/nodename", &format!("{name}\n"))
        .file(
            "scripts/pre-start",
            "#!/bin/sh\nif [ -e /run/vsd-block ]; then\n  touch /run/vsd-in-prestart-$2\n  \
             while :; do sleep 1; done\nfi\n",
        )
        .write_to(cfg, vdir);
    std::fs::set_permissions(
        c.join("scripts/pre-start"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

/// The packaged units, enabled as `systemctl enable` would, naming /usr/local/bin.
fn with_units(mut vm: Vm) -> Vm {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sys = "/etc/systemd/system";
    for u in [
        "vserverd.socket",
        "vserverd.service",
        "vserverd-autostart.service",
    ] {
        vm = vm.host_file(&format!("{sys}/{u}"), &repo.join("systemd").join(u), 0o644);
    }
    let dir = tempfile::tempdir().unwrap();
    let link = |name: &str, target: &str| {
        let p = dir.path().join(name);
        std::os::unix::fs::symlink(target, &p).unwrap();
        p
    };
    vm.tree(
        &format!("{sys}/sockets.target.wants/vserverd.socket"),
        &link("s", "../vserverd.socket"),
    )
    .tree(
        &format!("{sys}/multi-user.target.wants/vserverd-autostart.service"),
        &link("a", "../vserverd-autostart.service"),
    )
    .tree("/usr/local/bin/vserverd", &link("d", "/test/bin/vserverd"))
    .tree(
        "/usr/local/bin/vserverctl",
        &link("c", "/test/bin/vserverctl"),
    )
}

/// The persistent disk's tree: the packaged daemon's guests (etc/vservers, vservers) and the
/// disk daemon's (disk/etc, disk/vservers, its run directory disk/run).
fn disk_tree(root: &Path) {
    let (cfg, vdir) = (root.join("etc/vservers"), root.join("vservers"));
    for (name, ctx) in [("a", 4401), ("b", 4402)] {
        GuestBuilder::busybox(name)
            .context(ctx)
            .file("uts/nodename", &format!("{name}\n"))
            .file("apps/init/mark", "default\n")
            .write_to(&cfg, &vdir);
    }
    GuestBuilder::busybox("s")
        .context(4403)
        .file("uts/nodename", "s\n")
        .write_to(&cfg, &vdir);
    blocking_guest("m", 4404, &cfg, &vdir);
    reaping_guests(&cfg, &vdir);
    let (dcfg, dvdir) = (root.join("disk/etc"), root.join("disk/vservers"));
    GuestBuilder::busybox("d")
        .context(4411)
        .file("uts/nodename", "d\n")
        .write_to(&dcfg, &dvdir);
    blocking_guest("dm", 4412, &dcfg, &dvdir);
    std::fs::create_dir_all(root.join("disk/run")).unwrap();
}

/// An ext4 image of `tree` (mkfs.ext4 -d: no mount, no loop device).
fn make_disk(tree: &Path, image: &Path) {
    let f = std::fs::File::create(image).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vsd-persist", "-d"])
        .arg(tree)
        .arg(image)
        .output()
        .expect("mkfs.ext4");
    assert!(
        out.status.success(),
        "mkfs.ext4 -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const FSTAB: &str = "/dev/vda /persist ext4 defaults,x-systemd.device-timeout=120s 0 0\n\
/persist/etc/vservers /etc/vservers none bind,x-systemd.requires-mounts-for=/persist 0 0\n\
/persist/vservers /vservers none bind,x-systemd.requires-mounts-for=/persist 0 0\n";

fn mkfs_available() -> bool {
    Command::new("mkfs.ext4")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn boot(label: &str, disk: &Path) -> Vm {
    let dirs = tempfile::tempdir().unwrap();
    for d in ["persist", "etc/vservers", "vservers"] {
        std::fs::create_dir_all(dirs.path().join(d)).unwrap();
    }
    let vm = Vm::new("trixie")
        .label(label)
        .project_binaries()
        .disk(disk)
        .file("/etc/fstab", FSTAB, 0o644)
        .tree("/persist", &dirs.path().join("persist"))
        .tree("/etc/vservers", &dirs.path().join("etc/vservers"))
        .tree("/vservers", &dirs.path().join("vservers"));
    with_units(vm).timeout(std::time::Duration::from_secs(400))
}

#[test]
fn a_power_cut_leaves_no_stale_state_and_autostart_guests_come_back() {
    if !(vm::ready("trixie") && require(mkfs_available(), "mkfs.ext4 (e2fsprogs)")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    disk_tree(&tree);
    let disk = t.path().join("disk.img");
    make_disk(&tree, &disk);

    let s1 = format!("{PRELUDE}{DISK_DAEMON}{BOOT1}");
    let run1 = boot("power-trixie-1", &disk)
        .kill_on("POWER-CUT")
        .run(&s1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run1.killed && run1.output.contains("mid-start"),
        "{}",
        run1.report()
    );

    let s2 = format!("{PRELUDE}{DISK_DAEMON}{BOOT2}{REAPING}");
    let run2 = boot("power-trixie-2", &disk)
        .run(&s2)
        .unwrap_or_else(|e| panic!("{e}"));
    run2.assert_success();
    assert!(run2.output.contains("REAPING OK"), "{}", run2.report());
    vm::say(&format!(
        "power cut (trixie): passed, boots of {:.1} s and {:.1} s\n{}\n{}",
        run1.elapsed.as_secs_f64(),
        run2.elapsed.as_secs_f64(),
        run1.output.trim_end(),
        run2.output.trim_end()
    ));
}

/// Debian 12 (Linux 6.1, systemd 252): the reaping cases alone, in one boot.
#[test]
fn an_adopted_guest_ending_under_a_reaping_pid1_on_debian_12() {
    if !vm::ready("bookworm") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (cfg, vdir) = (t.path().join("etc"), t.path().join("vservers"));
    reaping_guests(&cfg, &vdir);
    let script = format!("{PRELUDE}systemctl start vserverd.socket\n{REAPING}");
    let run = with_units(
        Vm::new("bookworm")
            .label("reaping-bookworm")
            .project_binaries()
            .tree("/etc/vservers", &cfg)
            .tree("/vservers", &vdir),
    )
    .timeout(std::time::Duration::from_secs(300))
    .run(&script)
    .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("REAPING OK"), "{}", run.report());
    vm::say(&format!(
        "reaping PID 1 (bookworm): passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}
