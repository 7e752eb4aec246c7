#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/setup.sh
# Cached Debian 13 tree with varlinkctl, for the systemd varlink interoperability test.
bash scripts/trixie-tree.sh >/dev/null
# Cached Debian 12 guest with sysvinit, for the sysv init style tests.
bash scripts/debian-guest.sh >/dev/null
# The same with systemd as init, for the systemd guest test.
bash scripts/debian-guest.sh --systemd >/dev/null
# VM tier images (Debian 13 and 12 with their cloud kernels; docs/vm-tier.md): built once per
# recipe, then cached. Each VM boot's time goes to target/vm-tier/runs.log, summed below.
vm_start=$(date +%s)
bash scripts/vm.sh image trixie >/dev/null
bash scripts/vm.sh image bookworm >/dev/null
vm_images=$(( $(date +%s) - vm_start ))
rm -f target/vm-tier/runs.log

cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

[ -f target/vm-tier/runs.log ] && awk -v img="$vm_images" '{ n++; s += $2 }
  END { printf "test.sh: VM tier took %d s: images %d s (cached after the first run), %d boots %d s\n", img + s, img, n, s }' \
  target/vm-tier/runs.log

echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
