//! Disk limits through project quotas (docs/resources.md, Disk limits) in the VM tier: the
//! build machine's kernel has neither XFS quota nor ext4's quota format, Debian's has both.
//! One boot: an XFS (prjquota) and an ext4 (project,quota features, prjquota) loop image, a
//! busybox guest on each with dlimits/. The guest's tree is marked with its context as project
//! id (lsattr -p), the guest gets EDQUOT at its space and its inode limit while the host writes
//! on, `set --disk` changes the limit live, stat shows it, stop takes it away (the host then
//! writes past it into the tree).

use std::process::Command;

use harness::vm::{self, Vm};

/// An empty file system image made on the host (the image has no mkfs.xfs), gzipped: XFS
/// wants 300 MB, nearly all zeros.
fn image(fs: &str, mib: u64, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let o = Command::new(format!("mkfs.{fs}"))
        .args(args)
        .arg(&img)
        .output()
        .unwrap_or_else(|e| panic!("mkfs.{fs}: {e}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("gzip")
        .args(["-1", "-c"])
        .arg(&img)
        .output()
        .expect("gzip");
    assert!(o.status.success());
    o.stdout
}

const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service 2>/dev/null | tail -30; exit 1; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }
step "kernel $(uname -r)"
# The images, sparse in RAM; a guest root on each.
mnt() { # fs options guest ctx
  zcat /test/$1.img.gz | cp --sparse=always /dev/stdin /tmp/$1.img
  mkdir -p /mnt/$1 && mount -o loop,$2 /tmp/$1.img /mnt/$1 || fail "mount $1 -o $2"
  cp -a /vservers/$3 /mnt/$1/$3
  ln -sfn /mnt/$1/$3 /etc/vservers/$3/vdir
  mkdir -p /etc/vservers/$3/dlimits/0
  echo /mnt/$1/$3 > /etc/vservers/$3/dlimits/0/directory
  echo 16384 > /etc/vservers/$3/dlimits/0/space_total   # KiB
  echo 100 > /etc/vservers/$3/dlimits/0/inodes_total
  echo 0 > /etc/vservers/$3/dlimits/0/reserved
}
mnt xfs prjquota qx
mnt ext4 prjquota qe
systemd-run --quiet --unit=vserverd --property=Delegate=yes --property=KillMode=process \
  /test/bin/vserverd --config-root /etc/vservers --vdir-base /vservers --run-dir /run/vserverd
wait_for 30 "the daemon answering" vserverctl list
for g in qx:xfs:4601 qe:ext4:4602; do
  IFS=: read -r n fs ctx <<< "$g"
  vserverctl check $n || fail "check $n"
  vserverctl start $n || fail "start $n"
  p=$(lsattr -pd /mnt/$fs/$n | awk '{print $1}')
  [ "$p" = "$ctx" ] || fail "$fs: the root's project id is $p, not the context $ctx"
  p=$(lsattr -p /mnt/$fs/$n/bin/busybox | awk '{print $1}')
  [ "$p" = "$ctx" ] || fail "$fs: busybox's project id is $p"
  out=$(vserverctl exec $n -- sh -c 'dd if=/dev/zero of=/big bs=1M count=32 2>&1; sync' || true)
  # ext4 says EDQUOT; XFS says ENOSPC for a project (a folder tree looks like a full disk).
  echo "$out" | grep -Eq "quota|No space left" || fail "$fs: 32 MiB under a 16 MiB limit: $out"
  size=$(stat -c %s /mnt/$fs/$n/big)
  [ "$size" -le $((16 << 20)) ] && [ "$size" -ge $((8 << 20)) ] || fail "$fs: /big is $size bytes"
  p=$(lsattr -p /mnt/$fs/$n/big | awk '{print $1}')
  [ "$p" = "$ctx" ] || fail "$fs: a file the guest made has project $p"
  dd if=/dev/zero of=/mnt/$fs/host.bin bs=1M count=32 status=none || fail "$fs: the host could not write beside it"
  vserverctl exec $n -- rm -f /big
  out=$(vserverctl exec $n -- sh -c 'mkdir /many && for i in $(seq 1 150); do touch /many/$i || exit 1; done 2>&1' || true)
  echo "$out" | grep -Eq "quota|No space left" || fail "$fs: 150 files under a 100-inode limit: $out"
  made=$(ls /mnt/$fs/$n/many | wc -l)
  step "$fs: refused at $size bytes (limit 16 MiB; the host wrote 32 MiB beside it) and after $made new files (limit 100): $(echo "$out" | tail -1)"
  st=$(vserverctl stat --json)
  echo "$st" | grep -q '"disk_limit_bytes": *16777216' || fail "$fs: stat: $st"
  echo "$st" | grep -q '"inodes_limit": *100' || fail "$fs: stat: $st"
  vserverctl exec $n -- rm -rf /many
  vserverctl set $n --disk 64M,1000 || fail "$fs: set --disk"
  vserverctl exec $n -- sh -c 'dd if=/dev/zero of=/big bs=1M count=32 2>&1 && sync' >/dev/null || fail "$fs: 32 MiB under a live 64 MiB"
  step "$fs: set --disk 64M,1000 live: 32 MiB written"
  vserverctl stat | grep -q DISK || fail "stat has no DISK column"
  vserverctl stop $n
  # Stopped: no limit; the kernel still counts. An unprivileged writer (ext4 lets
  # CAP_SYS_RESOURCE pass a limit) puts 40 MiB beside the 32: past the 64 MiB it had.
  install -d -o 65534 -g 65534 /mnt/$fs/$n/nb
  setpriv --reuid 65534 --regid 65534 --clear-groups \
    dd if=/dev/zero of=/mnt/$fs/$n/nb/after-stop bs=1M count=40 status=none || fail "$fs: limit left after stop"
  du=$(vserverctl du $n --json)
  echo "$du" | grep -q '"quota_limit_bytes": *null' || fail "$fs: du after stop: $du"
  step "$fs: stop took the limit away (40 MiB more written by an unprivileged host user); du: $(echo "$du" | grep -o '"quota_used_bytes": *[0-9]*')"
  rm -rf /mnt/$fs/$n/nb /mnt/$fs/$n/big
done
vserverctl start qx && vserverctl stop qx
echo "DLIMITS OK"
"#;

#[test]
fn project_quotas_on_xfs_and_ext4_limit_a_guest() {
    if !vm::ready("bookworm") {
        return;
    }
    for tool in ["mkfs.xfs", "mkfs.ext4"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success());
        if !harness::require(ok, tool) {
            return;
        }
    }
    let xfs = image("xfs", 300, &["-q", "-f"]);
    let ext4 = image(
        "ext4",
        256,
        &[
            "-q",
            "-F",
            "-O",
            "quota,project",
            "-E",
            "quotatype=prjquota",
        ],
    );
    let run = Vm::new("bookworm")
        .label("dlimits")
        .project_binaries()
        .busybox_guest("qx", 4601)
        .busybox_guest("qe", 4602)
        .file("/test/xfs.img.gz", xfs, 0o644)
        .file("/test/ext4.img.gz", ext4, 0o644)
        .timeout(std::time::Duration::from_secs(300))
        .run(SCRIPT)
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("DLIMITS OK"), "{}", run.report());
    vm::say(&format!(
        "dlimits: passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}
