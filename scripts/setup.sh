#!/usr/bin/env bash
# Installs what building and testing vserverd needs on a Debian 12 host (as root). Idempotent:
# a second run installs nothing and takes a second.
set -euo pipefail

APT_PACKAGES=(
  busybox-static   # test guests and the demo guest
  debootstrap      # Debian guests, the trixie tree with varlinkctl
  socat            # raw-socket tests
  iproute2 util-linux procps psmisc
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

# The python varlink peer (PyPI), for the interoperability test.
if ! python3 -c 'import varlink' 2>/dev/null; then
  echo "setup: installing python varlink"
  python3 -m pip install -q --disable-pip-version-check varlink ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages varlink
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
