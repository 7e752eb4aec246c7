#!/usr/bin/env bash
# Installs what building and testing vserverd needs on a Debian 12 host (as root). Idempotent:
# a second run installs nothing and takes a second.
set -euo pipefail

APT_PACKAGES=(
  busybox-static   # test guests and the demo guest
  debootstrap      # Debian guests, the trixie tree with varlinkctl
  socat            # raw-socket tests
  lxc systemd-container  # the peers of the lifecycle benchmark (lxc-start, systemd-nspawn)
  iproute2 util-linux procps psmisc
  strace           # counting the files a call opens (tests/tests/scale.rs)
  xfsprogs         # XFS loop images: the clone-with-reflinks and unify tests
  btrfs-progs      # btrfs loop images for the unify and disk-limit tests (qgroups)
  duperemove       # the unify benchmark's reference tool (vserverd-bench unify)
  gcc-i686-linux-gnu libc6-dev-i386-cross  # a static 32-bit program for the i386 ABI test
  cpio xz-utils    # the VM tier's initramfs and kernel modules (scripts/vm.sh)
  e2fsprogs        # mkfs.ext4 -d: the VM tier's persistent disk (vm_power) and ext4 images
  prometheus       # a real Prometheus and promtool for the metrics test (tests/tests/metrics.rs)
  systemd          # systemd-socket-activate: the metrics exporter activated as its socket unit does
  debhelper lintian  # the Debian package (scripts/deb.sh) and its check
  ca-certificates
  python3-pip
)

need=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# qemu for the VM tier (scripts/vm.sh, docs/vm-tier.md). The machine image ships a newer
# qemu-utils (a backport) than Debian 12's qemu-system-x86 goes with: without recommends apt
# leaves it alone; should apt still refuse, qemu-utils is downgraded to qemu-system-x86's version.
if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "setup: installing qemu-system-x86"
  export DEBIAN_FRONTEND=noninteractive
  [ ${#need[@]} -gt 0 ] || apt-get update -qq
  if ! apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; then
    qver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    echo "setup: retrying with qemu-utils downgraded to $qver"
    apt-get install -y -qq --no-install-recommends --allow-downgrades \
      qemu-system-x86 "qemu-utils=$qver" >/dev/null
  fi
fi

# The python varlink peer (PyPI), for the interoperability test.
if ! python3 -c 'import varlink' 2>/dev/null; then
  echo "setup: installing python varlink"
  python3 -m pip install -q --disable-pip-version-check varlink ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages varlink
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
