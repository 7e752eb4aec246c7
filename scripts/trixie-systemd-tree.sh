#!/usr/bin/env bash
# Builds (once) and prints the path of a cached Debian 13 (trixie) minbase tree booting systemd
# as init (systemd-sysv) with dbus: the user-namespace systemd guest (tests/tests/userns.rs).
# The cache key is this recipe: change the recipe and a new tree is built.
set -euo pipefail

CACHE=${VSERVERD_CACHE:-/var/cache/vserverd-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RECIPE="debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus trixie $MIRROR v1"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
TREE="$CACHE/trixie-systemd-$KEY"

if [ -x "$TREE/usr/sbin/init" ] && [ -f "$TREE/.complete" ]; then
  echo "$TREE"
  exit 0
fi
mkdir -p "$CACHE"
rm -rf "$TREE.tmp"
echo "trixie-tree: debootstrapping $TREE (about 30-60 s)" >&2
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus trixie "$TREE.tmp" "$MIRROR" >"$CACHE/trixie-systemd-debootstrap.log" 2>&1 || {
  echo "trixie-tree: debootstrap failed, see $CACHE/trixie-systemd-debootstrap.log" >&2
  tail -n 20 "$CACHE/trixie-systemd-debootstrap.log" >&2
  exit 1
}
touch "$TREE.tmp/.complete"
rm -rf "$TREE"
mv "$TREE.tmp" "$TREE"
echo "$TREE"
