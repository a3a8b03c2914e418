#!/usr/bin/env bash
# Splits a release binary the way every artifact ships it: the stripped binary in
# OUT_DIR/wattledger and its DWARF, compressed, in OUT_DIR/wattledger.debug, linked
# by build id and .gnu_debuglink so gdb and addr2line find it. Used by release.sh
# (the native binary, the .deb) and cross.sh (the other targets, with their
# binutils' objcopy).
#
#   bash .ci/split-debug.sh OBJCOPY BINARY OUT_DIR
set -euo pipefail
objcopy=$1 bin=$2 out=$3
mkdir -p "$out"
"$objcopy" --only-keep-debug --compress-debug-sections=zlib "$bin" "$out/wattledger.debug"
"$objcopy" --strip-debug --strip-unneeded --add-gnu-debuglink="$out/wattledger.debug" "$bin" "$out/wattledger"
chmod 0755 "$out/wattledger"
