#!/usr/bin/env bash
# Builds the release binary and splits it the way the .deb does: the stripped
# binary in target/dist/wattledger (what install.sh --binary and the Ansible role's
# "binary" install copy to hosts) and its DWARF in target/dist/wattledger.debug,
# linked by build id and .gnu_debuglink so gdb and addr2line find it. Prints both
# sizes. Only the native target: see README.md, "Release binaries", for the others.
#
#   bash .ci/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --locked
bin=$target_dir/release/wattledger
bash .ci/split-debug.sh objcopy "$bin" target/dist
target/dist/wattledger --version
size() { stat -c %s "$1" | awk -v f="$1" '{ printf "release.sh: %-32s %6.1f MB\n", f, $1 / 1e6 }'; }
size "$bin"
size target/dist/wattledger
size target/dist/wattledger.debug
