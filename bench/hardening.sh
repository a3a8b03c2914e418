#!/usr/bin/env bash
# Hardening targets (docs/security.md): connection exhaustion, big concurrent
# ingest bodies, series cardinality; against a real aggregator on loopback.
# Not part of the default tests.
#   bench/hardening.sh            # builds the release binary first
#   WATTLEDGER_BIN=target/debug/wattledger BENCH_SECONDS=20 bench/hardening.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WATTLEDGER_BIN:-}" ]; then
  cargo build --quiet --release --bin wattledger
  export WATTLEDGER_BIN=target/release/wattledger
fi
exec python3 bench/hardening.py
