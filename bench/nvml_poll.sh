#!/usr/bin/env bash
# NVML poll benchmark: wattledger's NVML source vs nvidia-ml-py, both polling 8 GPUs
# of the fake NVML library, printed side by side. Needs .ci/venv with nvidia-ml-py
# (created by .ci/run). Figures are recorded in docs/benchmarks.md (## NVML poll).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .ci/venv/bin/python -c 'import pynvml' 2>/dev/null; then
  python3 -m venv .ci/venv
  .ci/venv/bin/pip install -q 'nvidia-ml-py==13.615.71'
fi
cargo build --release -p fake-nvml
cargo bench --bench nvml_poll
