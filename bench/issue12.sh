#!/usr/bin/env bash
# The issue-12 targets in one run: bench/agent_footprint.sh (the agent with the
# energy ledger on and off, at the same time), then `cargo bench --bench
# aggregator` (fleet day, influxd, /api/workloads, 100 MW site, ledger rows),
# which ends with the table of every target beside its peer.
# Not part of the default tests. Figures: docs/benchmarks.md, `## Issue 12 targets`.
#
#   bash bench/issue12.sh
#   WL_BENCH_SITE_FRACTION=0.1 WL_BENCH_DIR=/var/tmp/wl-bench bash bench/issue12.sh
# Knobs: see the module doc of benches/aggregator.rs and bench/agent_footprint.sh
# (BENCH_SECONDS, default 600 here: the agent writes its first ledger point
# about 2.5 minutes after it starts); BENCH_SKIP_FOOTPRINT=1 leaves the agent out.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp /tmp/wattledger-issue12.XXXXXX)
trap 'rm -f "$out"' EXIT
# The bench build makes target/release/wattledger too (with the dev-dependencies'
# features, so a plain `cargo build --release` would rebuild it); the footprint
# needs only the fake NVML library besides.
cargo bench --bench aggregator --no-run --quiet
cargo build --release -p fake-nvml --quiet
if [[ -z ${BENCH_SKIP_FOOTPRINT:-} ]]; then
  BENCH_SKIP_PY=1 BENCH_NO_BUILD=1 BENCH_SECONDS=${BENCH_SECONDS:-600} bash bench/agent_footprint.sh | tee "$out"
  export WL_BENCH_FOOTPRINT=$out
fi
cargo bench --bench aggregator --quiet
