#!/usr/bin/env bash
# Builds (once) and prints the path of a cached Debian 13 (trixie) minbase tree with systemd,
# which carries systemd's own varlink client, varlinkctl (Debian 12's systemd is too old).
# The cache key is this recipe: change the recipe and a new tree is built.
set -euo pipefail

CACHE=${VSERVERD_CACHE:-/var/cache/vserverd-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RECIPE="debootstrap --variant=minbase --include=systemd trixie $MIRROR v1"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
TREE="$CACHE/trixie-varlinkctl-$KEY"

if [ -x "$TREE/usr/bin/varlinkctl" ] && [ -f "$TREE/.complete" ]; then
  echo "$TREE"
  exit 0
fi
mkdir -p "$CACHE"
rm -rf "$TREE.tmp"
echo "trixie-tree: debootstrapping $TREE (about 30-60 s)" >&2
debootstrap --variant=minbase --include=systemd trixie "$TREE.tmp" "$MIRROR" >"$CACHE/trixie-debootstrap.log" 2>&1 || {
  echo "trixie-tree: debootstrap failed, see $CACHE/trixie-debootstrap.log" >&2
  tail -n 20 "$CACHE/trixie-debootstrap.log" >&2
  exit 1
}
touch "$TREE.tmp/.complete"
rm -rf "$TREE"
mv "$TREE.tmp" "$TREE"
echo "$TREE"
