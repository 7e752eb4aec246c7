#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/setup.sh
# Cached Debian 13 tree with varlinkctl, for the systemd varlink interoperability test.
bash scripts/trixie-tree.sh >/dev/null

cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
