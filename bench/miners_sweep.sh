#!/usr/bin/env bash
# Miner sweep benchmark, wattledger vs asic-rs vs pyasic side by side (not part of the test suite).
#   bash bench/miners_sweep.sh [--count 5000] [--repeat 3] [--concurrency 1000] [--only wattledger,asic-rs]
# Needs: a Rust toolchain, python3 with venv, crates.io access for asic-rs 0.8.6 (built from
# bench/asic-rs-sweep/, its own workspace and Cargo.lock, never a dependency of wattledger),
# PyPI access for pyasic 0.79.0 + sniffio 1.3.1 (sniffio: without it httpcore re-imports on
# every request, see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# 5,000 listening sockets in the simulator + 5,000 client sockets: raise the fd limit.
ulimit -n 20000 || { echo "cannot raise ulimit -n to 20000 (hard limit: $(ulimit -Hn))" >&2; exit 1; }
cargo build --release --locked --bin wattledger
# The peer builds at low priority: it is large (about 280 crates) and the benchmark machine may be shared.
nice -n 10 cargo build --release --locked --manifest-path bench/asic-rs-sweep/Cargo.toml \
  --target-dir target/asic-rs-sweep
if [[ ! -x target/bench-venv/bin/python ]]; then
  python3 -m venv target/bench-venv
  target/bench-venv/bin/pip install -q pyasic==0.79.0 sniffio==1.3.1
fi
exec python3 bench/miners_sweep.py "$@"
