//! kernel-patch/ in the VM tier: Debian 13's kernel source with the series applied
//! (scripts/kernel.sh, cached by recipe) boots the trixie image, keeps load averages per CPU
//! cgroup, and vserverd's virt_load guests read them; on ext4 a marked file hard-linked into
//! three trees gets a private copy for the tree that writes or chmods it. Debian's own kernel
//! lacks both: vserverd says so and falls back, and a write through one link reaches all
//! (docs/kernel-patch.md), and check and status say so (kernel_lacks, kernel-no-loadavg,
//! kernel-no-cowlink) where the patched kernel's say nothing.

use std::process::Command;

use harness::vm::{self, Vm};

/// Shared by both boots: two cgroups, one busy and one idle, and two virt_load guests, one busy
/// and one idle (their /proc/loadavg apart from each other's and the host's); prints what it
/// saw. `$PATCHED` says which kernel this is.
const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service 2>/dev/null | tail -30; exit 1; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }
step "kernel $(uname -r)"
R=/sys/fs/cgroup
echo +cpu > $R/cgroup.subtree_control
mkdir -p $R/lbusy $R/lidle
if [ "$PATCHED" = yes ]; then
  case $(uname -r) in *-vserverd) ;; *) fail "not the patched kernel: $(uname -r)" ;; esac
  # (grep -q would end the pipe early: zcat's SIGPIPE fails it under pipefail.)
  for o in CGROUP_LOADAVG COWLINK; do
    [ "$(zcat /proc/config.gz | grep -cx "CONFIG_$o=y")" = 1 ] || fail "CONFIG_$o not set"
  done
  [ -f $R/lbusy/cpu.loadavg ] || fail "no cpu.loadavg in a cgroup with the cpu controller"
  [ ! -f $R/cpu.loadavg ] || fail "cpu.loadavg on the root cgroup"
else
  [ ! -e $R/lbusy/cpu.loadavg ] || fail "cpu.loadavg on a kernel without the series"
  step "no cpu.loadavg: a kernel without the series"
fi

# vserverd: two virt_load guests, ld busy, li idle.
systemd-run --quiet --unit=vserverd --property=Delegate=yes --property=KillMode=process \
  /test/bin/vserverd --config-root /etc/vservers --vdir-base /vservers --run-dir /run/vserverd
wait_for 30 "the daemon answering" vserverctl list
vserverctl start ld
vserverctl start li
OWN=$R$(systemctl show -P ControlGroup vserverd.service)
one() { cut -d' ' -f1 <<<"$1"; }
if [ "$PATCHED" = yes ]; then
  # Two busy loops in the guest ld and two in the plain cgroup lbusy, for one 25 s wait: each
  # group's 1-minute average then nears 2·(1−e^(−25/60)) = 0.68 (its runnable tasks, whether
  # or not they got a CPU), the host's counts all four and the rest.
  vserverctl exec ld -- sh -c 'for i in 1 2; do (while :; do :; done) >/dev/null 2>&1 & done'
  for i in 1 2; do sh -c "echo \$\$ > $R/lbusy/cgroup.procs; exec sh -c 'while :; do :; done'" & done
  sleep 1
  [ "$(wc -l < $R/lbusy/cgroup.procs)" = 2 ] || fail "busy loops not in lbusy"
  sleep 25
  busy=$(cat $R/lbusy/cpu.loadavg); idle=$(cat $R/lidle/cpu.loadavg)
  step "after 25 s of two busy loops: lbusy $busy, lidle $idle, host $(cat /proc/loadavg)"
  awk -v b="$(one "$busy")" 'BEGIN { exit !(b >= 0.4 && b <= 2.0) }' || fail "lbusy's 1-minute load $busy"
  [ "$idle" = "0.00 0.00 0.00" ] || fail "lidle's load $idle"
  kill %1 %2
  # A guest's /proc/loadavg is its cgroup's cpu.loadavg (read twice: an update may fall
  # between the two reads); the busy guest's follows its loops, the idle one's stays near 0,
  # the host's is the machine's.
  same=no
  for i in 1 2 3; do
    g=$(vserverctl exec ld -- cat /proc/loadavg | cut -d' ' -f1-3)
    k=$(cat $OWN/vserverd/ld/cpu.loadavg)
    [ "$g" = "$k" ] && { same=yes; break; }
  done
  [ $same = yes ] || fail "guest /proc/loadavg '$g', its cgroup's cpu.loadavg '$k'"
  gi=$(vserverctl exec li -- cat /proc/loadavg | cut -d' ' -f1-3)
  host=$(cut -d' ' -f1-3 /proc/loadavg)
  step "virt_load guests: busy ld /proc/loadavg $g (= its cgroup's cpu.loadavg), idle li $gi, host $host"
  awk -v g="$(one "$g")" 'BEGIN { exit !(g >= 0.4 && g <= 2.0) }' || fail "the busy guest's 1-minute load $g"
  awk -v g="$(one "$gi")" 'BEGIN { exit !(g <= 0.1) }' || fail "the idle guest's 1-minute load $gi"
  awk -v g="$(one "$g")" -v h="$(one "$host")" 'BEGIN { exit !(h >= g + 0.3) }' \
    || fail "the host's load $host is not apart from the busy guest's $g"
else
  vserverctl exec ld -- sh -c '(while :; do :; done) >/dev/null 2>&1 &'
  sleep 12
fi
log=$(journalctl -b --no-pager -o cat -u vserverd.service)
if [ "$PATCHED" = yes ]; then
  echo "$log" | grep -q "kernel keeps per-cgroup load averages" || fail "the daemon did not see cpu.loadavg"
else
  echo "$log" | grep -q "keeps no per-cgroup load averages" || fail "the daemon did not say the kernel lacks them"
  g=$(vserverctl exec ld -- cat /proc/loadavg)
  step "virt_load guest on a kernel without the series: /proc/loadavg $g (approximated)"
fi
vserverctl stop ld
vserverctl stop li

# Copy-on-write links on ext4: one marked file linked into three trees.
# (The image has no mkfs: the host made /test/e.img, an empty 8 MiB ext4.)
cp /test/e.img /tmp/e.img && mkdir -p /mnt/e && mount -o loop /tmp/e.img /mnt/e
E=/mnt/e; mkdir $E/g1 $E/g2 $E/g3
printf 'shared\n' > $E/g1/lib; chmod 0644 $E/g1/lib; chown 7:7 $E/g1/lib
/test/cowlink setx $E/g1/lib kept >/dev/null
/test/cowlink mark $E/g1/lib >/dev/null || fail "marking: $(/test/cowlink mark $E/g1/lib)"
ln $E/g1/lib $E/g2/lib; ln $E/g1/lib $E/g3/lib
ino() { stat -c %i "$1"; }
I=$(ino $E/g1/lib)
echo more >> $E/g2/lib
if [ "$PATCHED" = yes ]; then
  [ "$(cat $E/g1/lib)" = shared ] && [ "$(cat $E/g3/lib)" = shared ] || fail "a write through g2 reached the other links"
  [ "$(cat $E/g2/lib)" = "$(printf 'shared\nmore')" ] || fail "g2's copy: $(cat $E/g2/lib)"
  [ "$(ino $E/g2/lib)" != "$I" ] && [ "$(ino $E/g1/lib)" = "$I" ] && [ "$(ino $E/g3/lib)" = "$I" ] \
    || fail "inodes g1 $(ino $E/g1/lib) g2 $(ino $E/g2/lib) g3 $(ino $E/g3/lib), shared $I"
  [ "$(stat -c %h $E/g1/lib)" = 2 ] && [ "$(stat -c %h $E/g2/lib)" = 1 ] || fail "link counts after the break"
  [ "$(stat -c '%a %u %g' $E/g2/lib)" = "644 7 7" ] || fail "the copy's mode and owner: $(stat -c '%a %u %g' $E/g2/lib)"
  [ "$(/test/cowlink getx $E/g2/lib)" = kept ] || fail "the copy lost user.t"
  [ "$(/test/cowlink hasmark $E/g2/lib)" = unmarked ] || fail "the copy kept the mark"
  step "a write through g2 made g2 a private copy (mode, owner, xattrs kept, no mark); g1 and g3 still share inode $I"
  chmod 0600 $E/g3/lib
  [ "$(stat -c %a $E/g1/lib)" = 644 ] && [ "$(ino $E/g3/lib)" != "$I" ] || fail "chmod through g3 reached g1"
  ln $E/g1/lib $E/g3/lib2
  truncate -s 0 $E/g3/lib2
  [ "$(cat $E/g1/lib)" = shared ] && [ ! -s $E/g3/lib2 ] || fail "truncate through g3/lib2 reached g1"
  ln $E/g1/lib $E/g2/lib2
  out=$(setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin /test/cowlink fchmod $E/g2/lib2 || true)
  [ "$out" = EPERM ] || fail "fchmod of a shared marked file without CAP_SYS_ADMIN: $out"
  out=$(setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin /test/cowlink fsetx $E/g2/lib2 || true)
  [ "$out" = EPERM ] || fail "fsetxattr of a shared marked file without CAP_SYS_ADMIN: $out"
  [ "$(stat -c %a $E/g1/lib)" = 644 ] || fail "fchmod changed the shared file"
  # Someone who may not write the file causes no copy.
  out=$(setpriv --reuid 65534 --regid 65534 --clear-groups sh -c "echo x >> $E/g2/lib2" 2>&1 || true)
  [ "$(ino $E/g2/lib2)" = "$I" ] || fail "a refused open still broke the link ($out)"
  mv $E/g2/lib2 $E/g2/lib3 && rm $E/g2/lib3 && [ "$(cat $E/g1/lib)" = shared ] || fail "rename/unlink of a marked link"
  step "chmod and truncate by path break too; fchmod/fsetxattr through an fd: EPERM; no copy for a refused open; rename and unlink as usual"
else
  [ "$(cat $E/g1/lib)" = "$(printf 'shared\nmore')" ] || fail "expected the write to reach g1 on a kernel without the series"
  step "without the series a write through one hard link reaches every tree: hard-link unification is unsafe here"
fi
# What check and status say of the kernel: a virt_load guest and an ext4 guest asking for
# unification hear what is missing (kernel_lacks), on the patched kernel nothing.
cp -a /vservers/ue $E/ue && ln -sfn $E/ue /etc/vservers/ue/vdir
wait_for 10 "the ext4 guest on $E ($(vserverctl status ue 2>&1 || true))" sh -c "vserverctl status ue --json | grep -q $E/ue"
# (status exits 3 for a stopped guest, as LSB's does.)
lacks=$(vserverctl status ld --json || true; vserverctl check ue --json || true; vserverctl status ue --json || true)
if [ "$PATCHED" = yes ]; then
  if echo "$lacks" | grep -Eq "CONFIG_CGROUP_LOADAVG|CONFIG_COWLINK|kernel-no-"; then fail "the patched kernel said to lack: $lacks"; fi
  step "check and status: nothing lacking (the cowlink probe found the patch)"
else
  for w in CONFIG_CGROUP_LOADAVG kernel-no-cowlink CONFIG_COWLINK; do
    echo "$lacks" | grep -q "$w" || fail "Debian's kernel: $w not said: $lacks"
  done
  step "check and status say Debian's kernel lacks per-cgroup load averages and copy-on-write links"
fi
umount $E
echo "KERNEL OK"
"#;

fn boot(label: &str, kernel: Option<&std::path::Path>) {
    let img = tempfile::NamedTempFile::new().unwrap();
    img.as_file().set_len(8 << 20).unwrap();
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(img.path())
        .output()
        .expect("mkfs.ext4");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut v = Vm::new("trixie")
        .label(label)
        .project_binaries()
        .busybox_guest("ld", 4521)
        .busybox_guest("ue", 4522)
        .busybox_guest("li", 4523)
        .file("/etc/vservers/ue/apps/vunify/exclude", "/var/log\n", 0o644)
        .file("/etc/vservers/ld/cflags", "virt_load\n", 0o644)
        .file("/etc/vservers/li/cflags", "virt_load\n", 0o644)
        .file("/test/cowlink", vm::cowlink_tool(), 0o755)
        .file("/test/e.img", std::fs::read(img.path()).unwrap(), 0o644);
    match kernel {
        Some(k) => v = v.kernel(k),
        None => v = v.image_kernel(),
    }
    let patched = if kernel.is_some() { "yes" } else { "no" };
    let run = v
        .timeout(std::time::Duration::from_secs(240))
        .run(&SCRIPT.replace("$PATCHED", patched))
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("KERNEL OK"), "{}", run.report());
    vm::say(&format!(
        "{label}: passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}

#[test]
fn the_patched_kernel_keeps_load_averages_per_cgroup_and_virt_load_reads_them() {
    if !vm::ready("trixie") {
        return;
    }
    let Some(k) = vm::patched_kernel() else {
        return;
    };
    boot("kernel-patched", Some(&k));
}

#[test]
fn debians_own_kernel_is_seen_to_lack_the_series() {
    if !vm::ready("trixie") {
        return;
    }
    boot("kernel-stock", None);
}
