//! The Debian package (scripts/deb.sh, debian/) under real systemd in the VM tier (Debian 13,
//! no network: its dependencies are in the image): installed with dpkg -i, the socket answers
//! through activation, the autostart unit starts a marked guest; an upgrade to a rebuilt
//! package while the guest runs and a console is attached restarts the daemon, which adopts
//! the guest, and leaves the autostart unit and the console keeper alone; removal leaves the
//! guest running; purge removes what the package made and keeps the guest's tree and root.
//!
//! The packages hold the debug binaries `cargo build --workspace` made
//! (VSERVERD_DEB_PROFILE=debug): the test is about the packaging, and a release build would
//! add minutes to CI. `VSERVERD_DEB_PROFILE=release` tests the release package instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::vm::{self, Vm};
use harness::GuestBuilder;

const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service | tail -30; exit 1; }
field() { vserverctl status "$1" --json 2>/dev/null | tr -d ' \n' | sed -n "s/.*\"$2\":\"\{0,1\}\([a-z0-9]*\).*/\1/p"; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }
running() { [ -e /proc/$PW ] && grep -q vserverd/web /proc/$PW/cgroup; }
A=$(ls /test/deb/first/*.deb) B=$(ls /test/deb/second/*.deb)
VB=$(dpkg-deb -f "$B" Version)
! command -v vserverctl >/dev/null || fail "a vserverctl before the package: $(command -v vserverctl)"

# Install.
dpkg -i "$A" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i $A"; }
systemctl is-active vserverd.socket >/dev/null || fail "the socket is not listening after install"
[ "$(systemctl is-enabled vserverd.socket)" = enabled ] || fail "vserverd.socket not enabled"
[ "$(systemctl is-enabled vserverd-autostart.service)" = enabled ] || fail "the autostart unit not enabled"
systemctl is-active vserverd-autostart.service >/dev/null && fail "the package started the autostart unit"
[ "$(readlink /etc/vservers/.defaults/vdirbase)" = /vservers ] || fail "no default .defaults/vdirbase"
[ "$(readlink /etc/vservers/.defaults/keep)" = admins ] || fail "an admin's .defaults file was touched"
while read -r n; do
  [ "$(readlink "/usr/bin/$n")" = vserverctl ] || fail "/usr/bin/$n is not a link to vserverctl"
done < <(sed -e 's/#.*//' -e '/^ *$/d' /test/links)
for f in /usr/share/man/man8/vserverd.8.gz /usr/share/man/man1/vserver.1.gz \
  /usr/share/bash-completion/completions/vserverctl /lib/systemd/system/vserver@.service; do
  [ -e "$f" ] || fail "$f not installed"
done
step "installed $(dpkg-query -W -f '${Version}' vserverd): socket listening and enabled, autostart enabled (not started), .defaults/vdirbase made beside the admin's file, $(wc -l < <(sed -e 's/#.*//' -e '/^ *$/d' /test/links)) util-vserver links, man pages, completions"

vserverctl list >/dev/null || fail "vserverctl list through the socket"
systemctl is-active vserverd.service >/dev/null || fail "the socket did not activate the daemon"
systemctl show -P TriggeredBy vserverd.service | grep -q vserverd.socket || fail "not socket-activated"
vserver-stat >/dev/null || fail "vserver-stat"
step "socket activation answers: vserverctl list, vserver-stat"

systemctl start vserverd-autostart.service
[ "$(field web state)" = running ] || fail "the autostart unit did not start the marked guest web"
PW=$(field web init_pid)
AUTO=$(systemctl show -P ActiveEnterTimestampMonotonic vserverd-autostart.service)
KEEPER=$(cat /run/vserverd/console.pid)
mkfifo /run/console.in
vserverctl console web </run/console.in >/run/console.out 2>&1 &
exec 5>/run/console.in
echo 'echo before-$((6*7))' >&5
wait_for 30 "the attached console answers" grep -q before-42 /run/console.out
step "web started by vserverd-autostart (init $PW), a console attached"

# Upgrade while the guest runs and the console is attached.
D1=$(systemctl show -P MainPID vserverd.service)
dpkg -i "$B" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i $B"; }
[ "$(dpkg-query -W -f '${Version}' vserverd)" = "$VB" ] || fail "not upgraded to $VB"
D2=$(systemctl show -P MainPID vserverd.service)
[ "$D2" != 0 ] && [ "$D2" != "$D1" ] || fail "the daemon was not restarted ($D1 -> $D2)"
running || fail "web's init $PW died in the upgrade"
[ "$(field web state)" = running ] && [ "$(field web init_pid)" = "$PW" ] || fail "web not adopted"
[ "$(systemctl show -P ActiveEnterTimestampMonotonic vserverd-autostart.service)" = "$AUTO" ] \
  || fail "the upgrade stopped or restarted the autostart unit"
systemctl is-active vserverd-autostart.service >/dev/null || fail "the autostart unit is not active"
echo 'echo after-$((6*7))' >&5
wait_for 30 "the attached console after the upgrade" grep -q after-42 /run/console.out
out=$(echo 'echo fresh-$((6*7))' | vserverctl console web) || fail "a new console after the upgrade"
case $out in *fresh-42*) ;; *) fail "a new console after the upgrade: $out" ;; esac
[ "$(cat /run/vserverd/console.pid)" = "$KEEPER" ] || fail "the console keeper was replaced"
step "upgraded to $VB: daemon restarted ($D1 -> $D2) and adopted web; the autostart unit untouched; the attached console and a new one work"

# Remove: the guest stays; the daemon is stopped with the socket.
dpkg -r vserverd >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -r"; }
[ ! -e /usr/bin/vserverctl ] || fail "vserverctl still installed"
running || fail "web's init $PW died on removal"
! systemctl is-active vserverd.socket >/dev/null || fail "the socket still listens"
[ -d /etc/vservers/web ] && [ -L /etc/vservers/.defaults/vdirbase ] || fail "removal took config"
echo 'echo removed-$((6*7))' >&5
wait_for 30 "the attached console after removal" grep -q removed-42 /run/console.out
step "removed: web still running (init $PW), its console too; the config kept"

# Purge: what the package made goes; guests' trees and roots stay.
dpkg -P vserverd >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -P"; }
running || fail "web's init $PW died on purge"
[ ! -e /etc/vservers/.defaults/vdirbase ] || fail "purge kept the package's vdirbase link"
[ "$(readlink /etc/vservers/.defaults/keep)" = admins ] || fail "purge took the admin's .defaults file"
[ ! -e /var/lib/vserverd ] || fail "purge kept /var/lib/vserverd"
[ ! -e /etc/systemd/system/multi-user.target.wants/vserverd-autostart.service ] \
  || fail "purge kept the autostart unit's enablement"
[ -f /etc/vservers/web/context ] && [ -x /vservers/web/bin/busybox ] || fail "purge took the guest"
step "purged: vdirbase link, /var/lib/vserverd, unit links gone; /etc/vservers/web, /vservers/web and the admin's .defaults kept; web still running"

# Installed again: the new daemon adopts the guest that ran through it all.
dpkg -i "$A" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i $A again"; }
[ "$(field web state)" = running ] && [ "$(field web init_pid)" = "$PW" ] || fail "web not adopted after reinstall"
vserverctl stop web >/dev/null
! running || fail "web did not stop"
exec 5>&-
step "reinstalled: web adopted (init $PW), then stopped"
step "DEB OK"
"#;

/// Builds the package with version suffix `suffix` into a directory of its own; returns it.
fn build(suffix: &str, out: &Path) -> PathBuf {
    let repo = vm::repo();
    let profile = std::env::var("VSERVERD_DEB_PROFILE").unwrap_or_else(|_| "debug".into());
    let o = Command::new("bash")
        .arg(repo.join("scripts/deb.sh"))
        .args((!suffix.is_empty()).then_some(suffix))
        .env("VSERVERD_DEB_PROFILE", &profile)
        .current_dir(&repo)
        .output()
        .expect("scripts/deb.sh");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "scripts/deb.sh {suffix}: {}\n{text}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let deb = repo.join(text.lines().last().expect("deb.sh names the package"));
    std::fs::create_dir_all(out).unwrap();
    let dest = out.join(deb.file_name().unwrap());
    std::fs::copy(&deb, &dest).unwrap();
    dest
}

#[test]
fn package_installs_upgrades_and_goes_without_stopping_guests() {
    let debhelper = Command::new("sh")
        .args(["-c", "command -v dh_installsystemd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(vm::ready("trixie") && harness::require(debhelper, "debhelper (scripts/setup.sh)")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    build("", &t.path().join("deb/first"));
    build("+rebuild1", &t.path().join("deb/second"));
    let built = started.elapsed();

    let (cfg, vdir) = (t.path().join("etc"), t.path().join("vservers"));
    GuestBuilder::busybox("web")
        .context(4401)
        .file("uts/nodename", "web\n")
        .file("apps/init/mark", "default\n")
        .write_to(&cfg, &vdir);
    // A shell on the console, as a getty would be.
    std::fs::write(
        vdir.join("web/etc/inittab"),
        "::sysinit:/bin/true\n::respawn:/bin/sh\n::ctrlaltdel:/sbin/poweroff -f\n",
    )
    .unwrap();
    // An admin's own .defaults: the package must leave it alone, purge included.
    std::fs::create_dir_all(cfg.join(".defaults")).unwrap();
    std::os::unix::fs::symlink("admins", cfg.join(".defaults/keep")).unwrap();

    let run = Vm::new("trixie")
        .label("deb-trixie")
        .tree("/test/deb", &t.path().join("deb"))
        .host_file("/test/links", &vm::repo().join("vserverctl/links"), 0o644)
        .tree("/etc/vservers", &cfg)
        .tree("/vservers", &vdir)
        .timeout(std::time::Duration::from_secs(300))
        .run(SCRIPT)
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("DEB OK"), "{}", run.report());
    vm::say(&format!(
        "deb (trixie): two packages built in {:.1} s, VM passed in {:.1} s\n{}",
        built.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}
