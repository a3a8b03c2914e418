#!/usr/bin/env bash
# Runs every fuzz target (line protocol, miner replies, Prometheus text, market
# JSON, meter replies, config) for MINUTES each and prints inputs tried and crashes found;
# crashing inputs go to target/fuzz-crashes/. Not part of the default tests.
#   fuzz/run.sh [MINUTES] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-1}"
shift || true
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
# FUZZ_PROFILE=dev skips the release build (slower inputs, same checks).
cargo run --quiet --profile "${FUZZ_PROFILE:-release}" --example fuzz -- "$seconds" "$@"
