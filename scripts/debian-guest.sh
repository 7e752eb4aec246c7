#!/usr/bin/env bash
# Builds (once) and prints the path of a cached Debian 12 (bookworm) minbase guest root with
# sysvinit-core, for the integration tests of init style "sysv": the daemon runs
# `/etc/init.d/rc 3` in it to start the guest and `/etc/init.d/rc 6` to stop it.
#
# Recipe: debootstrap --variant=minbase --include=sysvinit-core bookworm, then customise():
#   - /etc/hostname, /etc/hosts, /etc/mtab -> ../proc/self/mounts;
#   - inittab: gettys commented out, default runlevel 3 (the one the daemon starts);
#   - scripts that touch hardware or the whole machine are taken out of every runlevel, for
#     good (an /etc/insserv/overrides entry, so a later `update-rc.d defaults` keeps them out):
#     hwclock.sh, brightness (rcS, 0, 6); umountnfs.sh, umountfs, umountroot (0, 6: unmount
#     everything, swapoff, remount / read-only); halt, reboot (0, 6: reboot(2) -f -i).
#     So `rc 6` runs only sendsigs (SIGTERM, then SIGKILL, to every process of the guest outside
#     rc's own session) and urandom, and exits 0; stopping the rest is the daemon's job.
#   - /etc/default/halt NETDOWN=no, in case someone calls halt/reboot by hand;
#   - nginx (the walk-through test's service: an rc script that daemonises, and a master that
#     must be reaped for `/etc/init.d/nginx restart` to return), installed with apt-get in the
#     chroot under a policy-rc.d that refuses every start, so no nginx ever runs on the build
#     host; then the policy goes again. Tests have no network, so what they use is in the tree.
# /dev is left as debootstrap made it (the daemon mounts a tmpfs over it).
#
# Cache key: sha256 of the recipe: suite, mirror, package list, RECIPE_VERSION and the text of
# customise() as bash prints it (comments and layout do not count). Change any of them and a new
# tree is built beside the old ones. The tree is built in a temporary directory and renamed into
# place when complete, under a lock (flock), so concurrent callers build it once and nobody sees
# a half-built tree.
#
# Usage: scripts/debian-guest.sh [--systemd]  (as root; about 30-60 s the first time, then instant)
# Prints the tree's path on stdout and nothing else; progress goes to stderr. The tree is shared:
# a test that boots a guest should copy it (cp -a) rather than run in it.
# Environment: VSERVERD_CACHE (default /var/cache/vserverd-test), DEBIAN_MIRROR.
set -euo pipefail

CACHE=${VSERVERD_CACHE:-/var/cache/vserverd-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
INCLUDE=sysvinit-core,procps # procps: `free` reads /proc/meminfo (virt_mem)
GUEST_HOSTNAME=debian-guest
RECIPE_VERSION=1
NAME=debian-guest

# Runs against the freshly debootstrapped tree $1 (nothing mounted in it).
customise() {
  local root=$1 s
  echo "$GUEST_HOSTNAME" >"$root/etc/hostname"
  cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$GUEST_HOSTNAME

::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF
  ln -sfn ../proc/self/mounts "$root/etc/mtab"

  sed -i -E -e 's/^([^#].*getty.*)$/#\1/' -e 's/^id:[0-9]:initdefault:/id:3:initdefault:/' \
    "$root/etc/inittab"

  mkdir -p "$root/etc/insserv/overrides"
  for s in hwclock.sh brightness umountnfs.sh umountfs umountroot halt reboot; do
    sed -n '/^### BEGIN INIT INFO/,/^### END INIT INFO/p' "$root/etc/init.d/$s" |
      sed -E 's/^(# Default-(Start|Stop):).*/\1/' >"$root/etc/insserv/overrides/$s"
    chroot "$root" /usr/sbin/update-rc.d -f "$s" remove >/dev/null
  done

  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  chroot "$root" apt-get update -q
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
  chroot "$root" apt-get clean
  rm -rf "$root/usr/sbin/policy-rc.d" "$root"/var/lib/apt/lists/*
  if ! ls "$root"/etc/rc3.d/S*nginx; then
    echo "debian-guest: nginx is not started in runlevel 3" >&2
    return 1
  fi

  if grep -q '^#* *NETDOWN=' "$root/etc/default/halt"; then
    sed -i -E 's/^#* *NETDOWN=.*/NETDOWN=no/' "$root/etc/default/halt"
  else
    echo NETDOWN=no >>"$root/etc/default/halt"
  fi

  # Nothing that must stay out may be linked in a runlevel directory.
  if ls "$root"/etc/rc?.d | grep -E '^[SK][0-9]+(hwclock\.sh|brightness|umount.*|halt|reboot)$'; then
    echo "debian-guest: still linked in a runlevel" >&2
    return 1
  fi
}

# `--systemd`: the same suite with systemd as init (systemd-sysv: /sbin/init -> systemd), for
# the systemd-guest tests (init style plain). Only the hostname files are customised: what
# systemd needs in a container the daemon mounts at start. nginx as for the sysv tree (a unit
# enabled for multi-user.target), under the same policy-rc.d.
if [ "${1:-}" = --systemd ]; then
  NAME=debian-guest-systemd
  INCLUDE=systemd,systemd-sysv,dbus,procps
  customise() {
    local root=$1
    echo "$GUEST_HOSTNAME" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost\n' "$GUEST_HOSTNAME" >"$root/etc/hosts"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    chroot "$root" apt-get update -q
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
    chroot "$root" apt-get clean
    rm -rf "$root/usr/sbin/policy-rc.d" "$root"/var/lib/apt/lists/*
    [ -L "$root/etc/systemd/system/multi-user.target.wants/nginx.service" ]
  }
fi

RECIPE="debootstrap --variant=minbase --include=$INCLUDE $SUITE $MIRROR v$RECIPE_VERSION
hostname=$GUEST_HOSTNAME
$(declare -f customise)"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
TREE="$CACHE/$NAME-$KEY"
WITNESS=etc/vserverd-test-recipe # written last, inside the tree

if [ -f "$TREE/$WITNESS" ]; then
  echo "$TREE"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.$NAME-$KEY.lock"
if ! flock -n 9; then
  echo "debian-guest: waiting for another caller building $TREE" >&2
  flock 9
fi
if [ -f "$TREE/$WITNESS" ]; then # built while we waited
  echo "$TREE"
  exit 0
fi

# Removes a tree left by an interrupted build; never crosses into a mount still inside it.
discard() {
  [ -e "$1" ] || return 0
  findmnt -rn -o TARGET | grep -F "$1/" | sort -r | xargs -r -d '\n' umount -l || true
  rm -rf --one-file-system "$1"
}

TMP="$TREE.tmp"
discard "$TMP"
discard "$TREE" # exists without its witness: not ours to trust
LOG="$CACHE/$NAME-$KEY.log"
echo "debian-guest: debootstrapping $TREE (about 30-60 s, log $LOG)" >&2
trap 'echo "debian-guest: build failed, see $LOG" >&2; tail -n 20 "$LOG" >&2' EXIT
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$TMP" "$MIRROR" >"$LOG" 2>&1
echo "debian-guest: customising" >&2
customise "$TMP" >>"$LOG" 2>&1
printf '%s\n' "key $KEY" "$RECIPE" >"$TMP/$WITNESS"
mv -T "$TMP" "$TREE"
trap - EXIT
echo "debian-guest: done" >&2
echo "$TREE"
