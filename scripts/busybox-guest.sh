#!/usr/bin/env bash
# busybox-guest.sh NAME CONTEXT CONFIG_ROOT VDIR_BASE: writes a guest with a busybox-static root:
# plain init style, busybox init as PID 1, ctrl-alt-del (util-vserver's stop signal) -> poweroff.
set -euo pipefail
name=$1 ctx=$2 cfgroot=$3 vbase=$4
cfg=$cfgroot/$name root=$vbase/$name
[ -x /bin/busybox ] || { echo "busybox-guest: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$cfg/apps/init" "$cfg/uts" "$root"
echo "$ctx" >"$cfg/context"
echo plain >"$cfg/apps/init/style"
echo "$name" >"$cfg/uts/nodename"
ln -sfn "$root" "$cfg/vdir"
for d in bin sbin usr/bin usr/sbin etc proc sys dev dev/pts tmp root var/run run; do mkdir -p "$root/$d"; done
install -m 0755 /bin/busybox "$root/bin/busybox"
/bin/busybox --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] || [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cat >"$root/etc/inittab" <<'INITTAB'
::sysinit:/bin/true
::respawn:/bin/sleep 1000000
::ctrlaltdel:/sbin/poweroff -f
INITTAB
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
