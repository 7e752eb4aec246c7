#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Run as root on Debian 12.
#
# Fast, rootless checks first (fmt, clippy, unit tests: seconds once built), so a contributor
# sees those failures at once; then the set-up, the cached trees and VM images, and the root
# and VM integration tiers.
#
#   bash scripts/test.sh           everything
#   bash scripts/test.sh --quick   only the fast part (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
quick=false
[ "${1:-}" = --quick ] && quick=true

phase() { echo "test.sh: $1 ($(( $(date +%s) - start )) s so far)"; }

# The rootless part needs only cargo; a fresh machine gets it from setup.sh.
if ! command -v cargo >/dev/null || [ "$quick" = false ]; then
  if [ "$(id -u)" = 0 ]; then bash scripts/setup.sh; fi
fi
phase "fast checks: fmt, clippy, unit tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --lib --bins
if [ "$quick" = true ]; then
  echo "test.sh: quick checks passed in $(( $(date +%s) - start )) s"
  exit 0
fi

phase "cached trees and images"
# Cached Debian 13 tree with varlinkctl, for the systemd varlink interoperability test.
bash scripts/trixie-tree.sh >/dev/null
# Cached Debian 12 guest with sysvinit, for the sysv init style tests.
bash scripts/debian-guest.sh >/dev/null
# The same with systemd as init, for the systemd guest test.
bash scripts/debian-guest.sh --systemd >/dev/null
# VM tier images (Debian 13 and 12 with their cloud kernels; docs/vm-tier.md): built once per
# recipe, then cached. The vm_* tests (smoke, systemd, network, kernel, power) boot them under
# `cargo test --workspace` below, and a subset again on the patched kernel. Each VM boot's time
# goes to target/vm-tier/runs.log, summed below.
vm_start=$(date +%s)
bash scripts/vm.sh image trixie >/dev/null
bash scripts/vm.sh image bookworm >/dev/null
vm_images=$(( $(date +%s) - vm_start ))
rm -f target/vm-tier/runs.log
# The VM tier's kernel with kernel-patch/ applied (docs/kernel-patch.md): built once per recipe
# (cold: docs/vm-tier.md has the time), then cached.
kernel_start=$(date +%s)
bash scripts/kernel.sh >/dev/null
echo "test.sh: patched kernel ready in $(( $(date +%s) - kernel_start )) s ($(bash scripts/kernel.sh --key))"

phase "integration tests (root, then the VM tier)"
cargo build --workspace --all-targets --locked
rm -f target/debug/test-skips.log
cargo test --workspace --locked

# The series' no-regression run (docs/vm-tier.md says why these three and not the whole tier):
# the same tests again on the patched kernel, logged as LABEL-patched.
phase "the VM tier's no-regression subset on the patched kernel"
patched=$(bash scripts/kernel.sh)
VSERVERD_VM_KERNEL=$patched cargo test --locked -p vserverd-tests \
  --test vm_systemd --test vm_dlimits --test vm_smoke -- units_autostart project_quotas smoke_trixie

[ -f target/vm-tier/runs.log ] && awk -v img="$vm_images" '{ n++; s += $2 }
  END { printf "test.sh: VM tier took %d s: images %d s (cached after the first run), %d boots %d s\n", img + s, img, n, s }' \
  target/vm-tier/runs.log

# Skips are visible: every test that ran nothing says so here (under CI=true they fail).
if [ -s target/debug/test-skips.log ]; then
  echo "test.sh: $(wc -l <target/debug/test-skips.log) tests SKIPPED (their prerequisite was missing):"
  sed 's/^/  /' target/debug/test-skips.log
fi

echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
