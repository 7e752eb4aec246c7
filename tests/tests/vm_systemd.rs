//! Under real systemd on pure cgroup v2 (the VM tier, Debian 13): the project's units —
//! socket activation, boot-time autostart of the guests marked `default` in dependency order,
//! `systemctl stop vserverd` leaving guests running for the next daemon to adopt, the daemon's
//! journal entries and their fields (GUEST, CONTEXT, STEP, CALLER_UID), the metrics exporter's
//! socket unit, the autostart unit's stop in reverse order — the cgroup v2 limits of docs/resources.md, and a
//! systemd guest on pure v2.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use harness::vm::{self, Vm};
use harness::GuestBuilder;

const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service | tail -40; exit 1; }
field() { vserverctl status "$1" --json 2>/dev/null | tr -d ' \n' | sed -n "s/.*\"$2\":\"\{0,1\}\([a-z0-9]*\).*/\1/p"; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }

# Boot: the socket is listening and the autostart unit started the marked guests through it.
wait_for 180 "vserverd-autostart active" systemctl is-active vserverd-autostart.service
systemctl is-active vserverd.socket >/dev/null || fail "vserverd.socket not active"
systemctl show -P TriggeredBy vserverd.service | grep -q vserverd.socket || fail "not socket-activated"
for g in a b c; do [ "$(field $g state)" = running ] || fail "$g is $(field $g state) after boot"; done
[ "$(grep start /run/order.log | tr '\n' ' ')" = "start a start b start c " ] || fail "start order: $(cat /run/order.log)"
[ "$(field lim state)" = stopped ] || fail "an unmarked guest was started"
[ "$(field bad state)" != running ] || fail "bad runs though its pre-start failed"
[ "$(systemctl show -P ExecMainStatus vserverd-autostart.service)" = 1 ] \
  || fail "the start's failure is not in the unit's status"
journalctl -b --no-pager -o cat -u vserverd-autostart.service | grep -q "no start today" \
  || fail "bad's error is not in the unit's journal"
[ "$(systemctl show -P Id vservers-default.service)" = vserverd-autostart.service ] \
  || fail "vservers-default is not the autostart unit: $(systemctl show -P Id,LoadState vservers-default.service | tr '\n' ' ')"
step "boot: a, b, c running, started in dependency order by vserverd-autostart via the socket; bad failed, reported, the unit active (also named vservers-default)"

# Logs: under systemd the daemon's lines are journal entries with fields of their own.
LOG() { journalctl -b --no-pager -u vserverd.service "$@"; }
LOG -o cat GUEST=a | grep -q "started in" || fail "journalctl GUEST=a has no start line: $(LOG -o verbose GUEST=a | tail -30)"
ctx=$(LOG -o export GUEST=a | sed -n 's/^CONTEXT=//p' | sort -u | tr '\n' ' ')
[ "$ctx" = "4301 " ] || fail "a's lines carry CONTEXT '$ctx'"
LOG -o cat GUEST=bad STEP=pre-start PRIORITY=4 | grep -q "start failed" \
  || fail "no warning of bad's failed start at its step: $(LOG -o verbose GUEST=bad | tail -40)"
LOG -o export CALLER_UID=0 METHOD=StartMarked | grep -qx "MARK=default" \
  || fail "no audit entry of the autostart's StartMarked: $(LOG -o verbose METHOD=StartMarked | tail -30)"
[ "$(LOG -o export GUEST=a | grep -c '^GUEST=')" = "$(LOG -o export GUEST=a | grep -c '^__CURSOR=')" ] \
  || fail "an entry carries GUEST more than once"
step "logs: journalctl GUEST=a lists a's start (CONTEXT=4301 on each); bad's failure has STEP=pre-start PRIORITY=4; the autostart's call CALLER_UID=0 METHOD=StartMarked MARK=default"

# Metrics: the exporter's socket, enabled, starts it at the first scrape; it runs without
# capabilities and sees the guests through the control socket.
systemctl is-active vserverd-metrics.socket >/dev/null || fail "vserverd-metrics.socket not active"
exec 3<>/dev/tcp/127.0.0.1/19720
printf 'GET /metrics HTTP/1.1\r\nHost: vm\r\nConnection: close\r\n\r\n' >&3
M=$(cat <&3); exec 3<&-
echo "$M" | grep -q '^vserverd_guest_up{guest="a"} 1' || fail "metrics: $(echo "$M" | head -40)"
echo "$M" | grep -q '^vserverd_guest_memory_bytes{guest="a"} [1-9]' || fail "no memory of a: $(echo "$M" | grep memory)"
MP=$(systemctl show -P MainPID vserverd-metrics.service)
[ "$(sed -n 's/^CapEff:\s*//p' /proc/$MP/status)" = 0000000000000000 ] || fail "the exporter has capabilities: $(grep Cap /proc/$MP/status)"
step "metrics: vserverd-metrics.socket activated the exporter (no capabilities); a is up, its memory counted"

# Stopping the service leaves the guests; the next call activates a daemon that adopts them.
PA=$(field a init_pid)
systemctl stop vserverd.service
! systemctl is-active vserverd.service >/dev/null || fail "vserverd still active"
[ -e /proc/$PA ] || fail "a's init died with the daemon"
[ "$(field a state)" = running ] || fail "a not running after re-activation"
[ "$(field a init_pid)" = "$PA" ] || fail "a's init changed: adopted another"
systemctl is-active vserverd.service >/dev/null || fail "not re-activated"
step "systemctl stop vserverd: guests kept; the socket started a new daemon, which adopted them"

# cgroup v2 limits.
OWN=/sys/fs/cgroup$(systemctl show -P ControlGroup vserverd.service)
vserverctl start lim
CG=$OWN/vserverd/lim
[ "$(cat $CG/memory.max)" = 67108864 ] && [ "$(cat $CG/memory.high)" = 67108864 ] || fail "memory.max $(cat $CG/memory.max), memory.high $(cat $CG/memory.high)"
[ "$(cat $CG/pids.max)" = 30 ] || fail "pids.max $(cat $CG/pids.max)"
[ "$(cat $CG/cpu.max)" = "25000 100000" ] || fail "cpu.max $(cat $CG/cpu.max)"
total() { vserverctl exec lim -- cat /proc/meminfo | sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p'; }
[ "$(total)" = 65536 ] || fail "virt_mem: MemTotal $(total) kB in the guest, not 65536"
# The rest of the guest's view on a pure v2 host: sysinfo(2) (busybox free), virt_cpu (a quota
# of a quarter CPU shows one CPU), virt_load, swaps and diskstats from memory.swap.* and io.stat.
ftotal=$(vserverctl exec lim -- free | sed -n 's/^ *Mem: *\([0-9]*\).*/\1/p')
[ "$ftotal" = 65536 ] || fail "sysinfo: free's total $ftotal KiB, not 65536"
n=$(vserverctl exec lim -- grep -c ^processor /proc/cpuinfo)
[ "$n" = 1 ] || fail "virt_cpu: $n processors in /proc/cpuinfo under cpu.max 25000 100000"
[ "$(vserverctl exec lim -- cat /sys/devices/system/cpu/online)" = 0 ] || fail "virt_cpu: online $(vserverctl exec lim -- cat /sys/devices/system/cpu/online)"
n=$(vserverctl exec lim -- grep -c '^cpu[0-9]' /proc/stat)
[ "$n" = 1 ] || fail "virt_cpu: $n per-CPU lines in /proc/stat"
la=$(vserverctl exec lim -- cat /proc/loadavg)
echo "$la" | grep -Eq '^[0-9]+\.[0-9]+ [0-9]+\.[0-9]+ [0-9]+\.[0-9]+ [0-9]+/[0-9]+ [0-9]+$' || fail "virt_load: /proc/loadavg '$la'"
hostswap=$(awk 'NR>1 {s+=$3} END {print s+0}' /proc/swaps)
gswap=$(vserverctl exec lim -- cat /proc/swaps | awk 'NR>1 {s+=$3} END {print s+0}')
[ "$gswap" -le "$hostswap" ] || fail "swaps: the guest's $gswap KiB over the host's $hostswap"
vserverctl exec lim -- dd if=/dev/zero of=/root/io bs=1M count=4 oflag=direct 2>/dev/null || true
gw=$(vserverctl exec lim -- cat /proc/diskstats | awk '{s+=$10} END {print s*512}')
cw=$(tr ' ' '\n' < $CG/io.stat | sed -n 's/^wbytes=//p' | awk '{s+=$1} END {print s+0}')
[ "$gw" = "$(( cw / 512 * 512 ))" ] || fail "diskstats: the guest's $gw bytes written, io.stat's $cw"
vserverctl exec lim -- rm -f /root/io
step "v2 guest's view: free $ftotal KiB (sysinfo), 1 CPU in cpuinfo/stat/online, loadavg '$la', swaps $gswap KiB, diskstats $gw B = io.stat"
# The quota's share of one CPU, from cpu.stat over a busy loop of 4 s (per mille).
u0=$(sed -n 's/^usage_usec //p' $CG/cpu.stat); t0=$(date +%s%N)
vserverctl exec lim -- timeout 4 sh -c 'while :; do :; done' || true
u1=$(sed -n 's/^usage_usec //p' $CG/cpu.stat); t1=$(date +%s%N)
share=$(( (u1 - u0) * 1000000 / (t1 - t0) ))
step "cpu.max 25000 100000: a busy loop got $share per mille of a CPU (quota 250)"
[ $share -ge 150 ] && [ $share -le 300 ] || fail "CPU share $share per mille"
vserverctl exec lim -- dd if=/dev/zero of=/dev/null bs=32M count=1 2>/dev/null
rc=0; vserverctl exec lim -- dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null || rc=$?
[ $rc = 137 ] || fail "dd past memory.max exited $rc, not 137"
vserverctl set lim --memory 512M --pids 50 --cpus 0.5
# memory.high (rss's soft limit, equal to the hard one here) moves with it: left at 64 MB it
# would throttle the 200 MB dd below for ever (docs/resources.md).
[ "$(cat $CG/memory.max)" = 536870912 ] && [ "$(cat $CG/memory.high)" = 536870912 ] && [ "$(cat $CG/pids.max)" = 50 ] && [ "$(cat $CG/cpu.max)" = "50000 100000" ] || fail "live set: $(cat $CG/memory.max) $(cat $CG/memory.high) $(cat $CG/pids.max) $(cat $CG/cpu.max)"
vserverctl exec lim -- dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null
[ "$(total)" = 524288 ] || fail "virt_mem after set: MemTotal $(total) kB, not 524288"
vserverctl stat | grep -q ' lim$' || fail "stat has no lim row"
vserverctl stop lim
[ ! -e $CG ] || fail "$CG left behind"
step "v2: memory.max, pids.max, cpu.max from rlimits and sched; OOM inside; live set; virt_mem meminfo; stat"

# Guests' limits enabled controllers in the delegated cgroup, so cgroup v2 refuses processes
# in it: systemd must start the next daemon in its leaf (DelegateSubgroup=), or the restart
# fails with EBUSY. The helpers sit in cgroups of their own, with their limits.
systemctl restart vserverd.service
[ "$(field a state)" = running ] || fail "a not running after a restart with controllers enabled"
grep -q "vserverd-daemon" /proc/$(systemctl show -P MainPID vserverd.service)/cgroup \
  || fail "the daemon is not in its leaf: $(cat /proc/$(systemctl show -P MainPID vserverd.service)/cgroup)"
for h in vserverd-procfs vserverd-tty; do
  [ "$(cat $OWN/vserverd/.$h/pids.max)" = 64 ] || fail "$h: pids.max $(cat $OWN/vserverd/.$h/pids.max)"
  [ "$(cat $OWN/vserverd/.$h/memory.max)" = 268435456 ] || fail "$h: memory.max $(cat $OWN/vserverd/.$h/memory.max)"
  [ "$(cat $OWN/vserverd/.$h/cpu.max)" = "100000 100000" ] || fail "$h: cpu.max $(cat $OWN/vserverd/.$h/cpu.max)"
done
step "restart with v2 controllers enabled: the daemon starts in its leaf; the helpers have their own cgroups and limits"

# util-vserver's per-guest template unit, under systemd itself.
systemctl start vserver@lim.service
[ "$(field lim state)" = running ] || fail "vserver@lim started: lim $(field lim state)"
systemctl is-active vserver@lim.service >/dev/null || fail "vserver@lim not active"
systemctl stop vserver@lim.service
[ "$(field lim state)" = stopped ] || fail "vserver@lim stopped: lim $(field lim state)"
step "vserver@lim.service starts and stops one guest"

# The autostart unit's stop (what an orderly shutdown runs): dependents first.
systemctl stop vserverd-autostart.service
for g in a b c; do [ "$(field $g state)" = stopped ] || fail "$g still $(field $g state)"; done
[ "$(grep stop /run/order.log | tr '\n' ' ')" = "stop c stop b stop a " ] || fail "stop order: $(cat /run/order.log)"
step "vserverd-autostart stop: c, b, a stopped in reverse order"

# A systemd guest on pure v2: this VM's own Debian 13, /usr bound read-only, /etc and /var
# copied without the test's units.
G=/vservers/sdv C=/etc/vservers/sdv
mkdir -p $G/{usr,root,tmp,run,proc,sys,dev,home} $C/apps/init $C/uts
cp -a /etc /var $G/
rm -rf $G/etc/vservers $G/etc/systemd/system/vsd-test.service $G/etc/systemd/system/vserverd* \
  $G/etc/systemd/system/*.wants/vsd-test.service $G/etc/systemd/system/*.wants/vserverd*
for l in bin lib lib64; do [ ! -L /$l ] || ln -s "$(readlink /$l)" $G/$l; done
# The image boots systemd straight from its rdinit and has no /sbin/init (no systemd-sysv).
mkdir -p $G/sbin && ln -s /lib/systemd/systemd $G/sbin/init
echo 4320 >$C/context; echo plain >$C/apps/init/style; echo sdv >$C/uts/nodename
printf '%s\n' 'none /proc proc defaults 0 0' 'none /dev/pts devpts gid=5,mode=620 0 0' \
  'none /tmp tmpfs size=16m 0 0' '/usr /usr none bind,ro 0 0' >$C/fstab
vserverctl start sdv
SP=$(field sdv init_pid)
wait_for 180 "the systemd guest's bus" test -S /proc/$SP/root/run/systemd/private
st=$(vserverctl exec sdv -- systemctl is-system-running --wait || true)
failed=$(vserverctl exec sdv -- systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
case $st in running | degraded) ;; *) fail "systemd guest: '$st', failed: $failed" ;; esac
[ "$(stat -f -c %T /proc/$SP/root/sys/fs/cgroup)" = cgroup2fs ] || fail "the guest's /sys/fs/cgroup is not cgroup2"
SCG=$OWN/vserverd/sdv
[ -d $SCG/init.scope ] && [ -d $SCG/system.slice ] || fail "no init.scope/system.slice below $SCG"
[ "$(vserverctl exec sdv -- systemctl is-active systemd-journald)" = active ] || fail "journald not active"
step "systemd guest (Debian 13) on v2: $st (failed: ${failed:-none}), init.scope and system.slice in $SCG"
out=$(vserverctl stop sdv)
case $out in *SIGRTMIN+4*) ;; *) fail "the systemd guest was not stopped with SIGRTMIN+4: $out" ;; esac
[ ! -e $SCG ] || fail "$SCG left behind: $(find $SCG -type d)"
[ ! -e /proc/$SP ] || fail "its init $SP is still there"
step "systemd guest stopped with SIGRTMIN+4; its cgroup subtree removed"
step "SYSTEMD OK"
"#;

fn guests(dir: &Path) {
    let (cfg, vdir) = (dir.join("etc/vservers"), dir.join("vservers"));
    let hook = |verb: &str| format!("#!/bin/sh\necho \"{verb} $2\" >> /run/order.log\n");
    for (name, ctx, dep) in [
        ("a", 4301, None),
        ("b", 4302, Some("a")),
        ("c", 4303, Some("b")),
    ] {
        let mut g = GuestBuilder::busybox(name)
            .context(ctx)
            .file("uts/nodename", &format!("{name}\n"))
            .file("apps/init/mark", "default\n")
            .file("scripts/pre-start", &hook("start"))
            .file("scripts/post-stop", &hook("stop"));
        if let Some(d) = dep {
            g = g.file("apps/init/depends", &format!("{d}\n"));
        }
        let c = g.write_to(&cfg, &vdir);
        for h in ["pre-start", "post-stop"] {
            std::fs::set_permissions(
                c.join("scripts").join(h),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
    }
    // Marked too, but its pre-start hook fails: the others start, the unit stays active.
    let bad = GuestBuilder::busybox("bad")
        .context(4304)
        .file("apps/init/mark", "default\n")
        .file(
            "scripts/pre-start",
            "#!/bin/sh\necho 'no start today' >&2\nexit 1\n",
        )
        .write_to(&cfg, &vdir);
    std::fs::set_permissions(
        bad.join("scripts/pre-start"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    GuestBuilder::busybox("lim")
        .context(4310)
        .file("rlimits/rss", "16384\n")
        .file("rlimits/nproc", "30\n")
        .file("cflags", "virt_mem\nvirt_cpu\nvirt_load\n")
        // /sys mounted, so virt_cpu's online list has a place to go.
        .file(
            "fstab",
            "none /proc proc defaults 0 0\nnone /sys sysfs ro 0 0\n\
             none /dev/pts devpts gid=5,mode=620 0 0\n",
        )
        .file("sched/fill-rate", "1\n")
        .file("sched/interval", "4\n")
        .write_to(&cfg, &vdir);
}

fn units(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sys = dir.join("etc/systemd/system");
    for w in ["sockets.target.wants", "multi-user.target.wants"] {
        std::fs::create_dir_all(sys.join(w)).unwrap();
    }
    for u in [
        "vserverd.socket",
        "vserverd.service",
        "vserverd-autostart.service",
        "vserver@.service",
        "vserverd-metrics.socket",
        "vserverd-metrics.service",
    ] {
        std::fs::copy(repo.join("systemd").join(u), sys.join(u)).unwrap();
    }
    symlink(
        "../vserverd.socket",
        sys.join("sockets.target.wants/vserverd.socket"),
    )
    .unwrap();
    symlink(
        "../vserverd-metrics.socket",
        sys.join("sockets.target.wants/vserverd-metrics.socket"),
    )
    .unwrap();
    symlink(
        "../vserverd-autostart.service",
        sys.join("multi-user.target.wants/vserverd-autostart.service"),
    )
    .unwrap();
    // What `systemctl enable` makes of the autostart unit's Alias= (util-vserver's name).
    symlink(
        "vserverd-autostart.service",
        sys.join("vservers-default.service"),
    )
    .unwrap();
    // The units name /usr/local/bin, where scripts/demo.sh installs the binaries.
    let bin = dir.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    symlink("/test/bin/vserverd", bin.join("vserverd")).unwrap();
    symlink("/test/bin/vserverctl", bin.join("vserverctl")).unwrap();
    symlink("/test/bin/vserverd-metrics", bin.join("vserverd-metrics")).unwrap();
}

#[test]
fn units_autostart_adoption_and_v2_limits_under_systemd() {
    if !vm::ready("trixie") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    guests(t.path());
    units(t.path());
    let run = Vm::new("trixie")
        .label("systemd-trixie")
        .project_binaries()
        .tree("/etc/vservers", &t.path().join("etc/vservers"))
        .tree("/vservers", &t.path().join("vservers"))
        .tree(
            "/etc/systemd/system/vserverd.socket",
            &t.path().join("etc/systemd/system/vserverd.socket"),
        )
        .tree(
            "/etc/systemd/system/vserverd.service",
            &t.path().join("etc/systemd/system/vserverd.service"),
        )
        .tree(
            "/etc/systemd/system/vserverd-autostart.service",
            &t.path()
                .join("etc/systemd/system/vserverd-autostart.service"),
        )
        .tree(
            "/etc/systemd/system/vserver@.service",
            &t.path().join("etc/systemd/system/vserver@.service"),
        )
        .tree(
            "/etc/systemd/system/vservers-default.service",
            &t.path().join("etc/systemd/system/vservers-default.service"),
        )
        .tree(
            "/etc/systemd/system/sockets.target.wants/vserverd.socket",
            &t.path()
                .join("etc/systemd/system/sockets.target.wants/vserverd.socket"),
        )
        .tree(
            "/etc/systemd/system/multi-user.target.wants/vserverd-autostart.service",
            &t.path()
                .join("etc/systemd/system/multi-user.target.wants/vserverd-autostart.service"),
        )
        .tree(
            "/usr/local/bin/vserverd",
            &t.path().join("usr/local/bin/vserverd"),
        )
        .tree(
            "/usr/local/bin/vserverctl",
            &t.path().join("usr/local/bin/vserverctl"),
        )
        .tree(
            "/usr/local/bin/vserverd-metrics",
            &t.path().join("usr/local/bin/vserverd-metrics"),
        )
        .tree(
            "/etc/systemd/system/vserverd-metrics.socket",
            &t.path().join("etc/systemd/system/vserverd-metrics.socket"),
        )
        .tree(
            "/etc/systemd/system/vserverd-metrics.service",
            &t.path().join("etc/systemd/system/vserverd-metrics.service"),
        )
        .tree(
            "/etc/systemd/system/sockets.target.wants/vserverd-metrics.socket",
            &t.path()
                .join("etc/systemd/system/sockets.target.wants/vserverd-metrics.socket"),
        )
        .timeout(std::time::Duration::from_secs(300))
        .run(SCRIPT)
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("SYSTEMD OK"), "{}", run.report());
    vm::say(&format!(
        "systemd (trixie): passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}
