//! The VM tier's smoke test (docs/vm-tier.md): in a Debian VM with systemd as PID 1 on pure
//! cgroup v2 (Debian 13 and Debian 12), the daemon runs as a systemd service with Delegate=yes
//! and a busybox guest is started, exec'd into, rebooted from inside and stopped, with its
//! cgroup checked at every step.

use harness::vm::{self, Vm};

/// Runs in the VM as /test/run.sh (bash, as root); every step prints what it checked.
const SMOKE: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
dump() {
  echo "--- systemctl status vserverd"
  systemctl status --no-pager vserverd.service 2>&1 | head -20 || true
  echo "--- vserverd's log"
  journalctl -b --no-pager -o cat -u vserverd.service 2>&1 | tail -60 || true
  echo "--- cgroups below the daemon's"
  find "${OWN:-/sys/fs/cgroup/system.slice}" -maxdepth 3 -type d 2>/dev/null || true
}
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"; dump; fi' EXIT
fail() { echo "FAILED: $*"; exit 1; }

# "init_pid": 123 and "state": "running" from `vserverctl status NAME --json`.
field() { vserverctl status "$1" --json 2>/dev/null | tr -d ' \n' | sed -n "s/.*\"$2\":\"\{0,1\}\([a-z0-9]*\).*/\1/p"; }
wait_for() { # SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2 i
  shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"
}

step "host: $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r)"
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
fs=$(stat -f -c %T /sys/fs/cgroup)
[ "$fs" = cgroup2fs ] || fail "/sys/fs/cgroup is $fs"
if awk '$3 == "cgroup"' /proc/mounts | grep .; then fail "cgroup v1 hierarchies mounted"; fi
step "pure cgroup v2 ($(cat /sys/fs/cgroup/cgroup.controllers)), systemd $(systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p') as PID 1"

[ -x /vservers/smoke/bin/busybox ] && [ -f /etc/vservers/smoke/context ] || fail "no guest smoke"

systemd-run --quiet --unit=vserverd --property=Delegate=yes --property=KillMode=process \
  /test/bin/vserverd --config-root /etc/vservers --vdir-base /vservers --run-dir /run/vserverd
wait_for 30 "the daemon answering" vserverctl list
OWN=/sys/fs/cgroup$(systemctl show -P ControlGroup vserverd.service)
DPID=$(systemctl show -P MainPID vserverd.service)
step "daemon $DPID up, OWN=$OWN, in $(cut -d: -f3 /proc/$DPID/cgroup)"
[ "$(cut -d: -f3 /proc/$DPID/cgroup)" = "${OWN#/sys/fs/cgroup}/vserverd-daemon" ] ||
  fail "the daemon did not move into OWN/vserverd-daemon"

vserverctl start smoke
CG=$OWN/vserverd/smoke
PID1=$(field smoke init_pid)
[ -n "$PID1" ] || fail "no init_pid in status: $(vserverctl status smoke --json)"
[ "$(field smoke state)" = running ] || fail "state $(field smoke state) after start"
step "started: init $PID1 ($(cat /proc/$PID1/comm))"
[ -d "$CG" ] || fail "$CG missing while the guest runs"
[ "$(cut -d: -f3 /proc/$PID1/cgroup)" = "${CG#/sys/fs/cgroup}" ] ||
  fail "init is in $(cut -d: -f3 /proc/$PID1/cgroup), not $CG"
step "guest cgroup $CG: $(wc -l <"$CG/cgroup.procs") processes, type $(cat "$CG/cgroup.type")"

h=$(vserverctl exec smoke -- hostname)
[ "$h" = smoke ] || fail "hostname in the guest: '$h'"
inner=$(vserverctl exec smoke -- cat /proc/self/cgroup)
step "exec: hostname $h, /proc/self/cgroup in the guest: $inner"
rc=0
vserverctl exec smoke -- sh -c 'exit 7' || rc=$?
[ $rc = 7 ] || fail "exec exit code $rc, not 7"
step "exec passes exit code 7 back"

vserverctl exec smoke -- /sbin/reboot -f || true
restarted() { local p s; p=$(field smoke init_pid); s=$(field smoke state); [ -n "$p" ] && [ "$p" != "$PID1" ] && [ "$s" = running ]; }
wait_for 60 "the guest restarting after reboot -f" restarted
PID2=$(field smoke init_pid)
[ -d "$CG" ] || fail "$CG missing after the reboot"
[ "$(cut -d: -f3 /proc/$PID2/cgroup)" = "${CG#/sys/fs/cgroup}" ] ||
  fail "new init is in $(cut -d: -f3 /proc/$PID2/cgroup)"
[ ! -e /proc/$PID1 ] || fail "old init $PID1 still there"
step "reboot from inside: init $PID1 -> $PID2, running, in $CG"
[ "$(vserverctl exec smoke -- hostname)" = smoke ]

vserverctl stop smoke
rc=0
vserverctl status smoke >/dev/null || rc=$?
[ $rc = 3 ] || fail "status after stop exits $rc, not 3"
[ ! -e "$CG" ] || fail "$CG left behind after stop"
[ ! -e /proc/$PID2 ] || fail "init $PID2 still there after stop"
step "stopped: status 3, $CG removed, init gone"

systemctl stop vserverd.service
step "SMOKE OK"
"#;

fn smoke(suite: &str) {
    if !vm::ready(suite) {
        return;
    }
    let run = Vm::new(suite)
        .label(&format!("smoke-{suite}"))
        .project_binaries()
        .busybox_guest("smoke", 4242)
        .timeout(std::time::Duration::from_secs(240))
        .run(SMOKE)
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("SMOKE OK"), "{}", run.report());
    vm::say(&format!(
        "smoke {suite}: passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}

#[test]
fn smoke_trixie() {
    smoke("trixie");
}

#[test]
fn smoke_bookworm() {
    smoke("bookworm");
}
