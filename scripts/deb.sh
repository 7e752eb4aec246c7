#!/usr/bin/env bash
# Builds the Debian package: target/debian/vserverd_VERSION_ARCH.deb (release binaries, the
# util-vserver command links of vserverctl/links, the systemd units, man pages, completions;
# debian/ says how). Then checks it with lintian (debian/vserverd.lintian-overrides explains
# what is overridden). As root or not; scripts/setup.sh installs debhelper and lintian.
#
#   bash scripts/deb.sh              version = the workspace's (Cargo.toml) + "-1"
#   bash scripts/deb.sh +rebuild1    ... with a suffix: a higher version of the same contents
#                                    (what the VM tier's upgrade test installs over the first)
#   VSERVERD_DEB_PROFILE=debug       package target/debug as built, unchecked: tests only
#
# Install: dpkg -i target/debian/vserverd_*.deb (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
suffix=${1:-}
case $suffix in '' | [+~.]*) ;; *) echo "deb.sh: a suffix starts with + ~ or . (got $suffix)" >&2; exit 2 ;; esac
for t in dh dh_installsystemd dpkg-deb; do
  command -v $t >/dev/null || { echo "deb.sh: $t missing: run scripts/setup.sh" >&2; exit 1; }
done

upstream=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
version="$upstream-1$suffix"
# debian/changelog is generated (not committed): its version is the workspace's.
cat >debian/changelog <<CHANGELOG
vserverd ($version) unstable; urgency=medium

  * Built from $(git describe --always --dirty 2>/dev/null || echo "a source tree") by scripts/deb.sh.

 -- vserverd developers <vserverd@lists.invalid>  $(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
CHANGELOG

mkdir -p target/debian
# One package at a time in target/debian, so `dpkg -i target/debian/*.deb` installs this one.
rm -f target/debian/vserverd_*.deb
# debian/rules binary is the package's build interface (Debian policy 4.9); dpkg-buildpackage
# would add a source package and .changes in the parent directory, which nobody here uploads.
debian/rules clean >/dev/null
debian/rules binary
deb=$(ls "target/debian/vserverd_${version}_"*.deb)
debian/rules clean >/dev/null
echo "deb.sh: $deb ($(du -h "$deb" | cut -f1))"
if [ "${VSERVERD_DEB_PROFILE:-release}" = debug ]; then
  echo "deb.sh: debug binaries (VSERVERD_DEB_PROFILE=debug, a test package): no lintian" >&2
elif command -v lintian >/dev/null; then
  # Errors and warnings fail the build; every override is explained in the overrides file.
  lintian --fail-on error,warning --display-info "$deb"
fi
echo "$deb"
