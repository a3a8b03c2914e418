#!/usr/bin/env bash
# Release builds for the targets other than the native x86_64 glibc one:
#
# - x86_64-unknown-linux-musl: one static binary, for miner and meter hosts of any
#   distribution. A static binary cannot dlopen libnvidia-ml.so, so it reads no GPUs
#   (the check below proves it says so); GPU hosts take the glibc build.
# - aarch64-unknown-linux-gnu: binary and .deb for Grace Hopper (GH200) rigs and other
#   arm64 hosts, checked under qemu-user.
#
# Each is built only where rustup has its standard library (`rustup target add
# <target>`); CI machines reach crates.io but not rustup's servers, so this is not part
# of .ci/run. Needs Debian's musl-tools, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
# and qemu-user (installed when run as root). Outputs, split like .ci/release.sh:
# target/dist/<target>/wattledger and .debug; the arm64 .deb in target/debian/.
#
#   bash .ci/cross.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [[ $(id -u) -eq 0 ]]; then
  apt-get install -y -qq --no-install-recommends musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
installed=$(rustup target list --installed 2>/dev/null || true)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
built=0

check_offline() {
  # The configs the .deb installs validate without contacting anything, once their
  # secrets exist (systemd credentials, as .ci/deb.sh does).
  mkdir -p "$scratch/creds"
  printf 'x\n' >"$scratch/creds/wattledger_influx-token"
  printf 'x\n' >"$scratch/creds/wattledger_api-token"
  local cfg
  for cfg in agents/examples/gpu-rig.toml deploy/aggregator-host.toml; do
    CREDENTIALS_DIRECTORY=$scratch/creds "$@" check --offline --config "$cfg"
  done
}

for target in x86_64-unknown-linux-musl aarch64-unknown-linux-gnu; do
  if ! grep -qx "$target" <<<"$installed"; then
    echo "cross.sh: $target skipped: its standard library is not installed (rustup target add $target)" >&2
    continue
  fi
  case $target in
    x86_64-unknown-linux-musl)
      export CC_x86_64_unknown_linux_musl=musl-gcc
      objcopy=objcopy
      run=()
      ;;
    aarch64-unknown-linux-gnu)
      export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
      # jemalloc fixes the page size it supports at build time; arm64 kernels run 4 KiB
      # or 64 KiB pages (GH200 distributions often 64 KiB), and 64 KiB serves both.
      export JEMALLOC_SYS_WITH_LG_PAGE=16
      objcopy=aarch64-linux-gnu-objcopy
      run=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
      ;;
  esac
  cargo build --release --locked --target "$target"
  bin=target/$target/release/wattledger
  dist=target/dist/$target
  bash .ci/split-debug.sh "$objcopy" "$bin" "$dist"
  file "$dist/wattledger" | tee "$scratch/file.out"
  version=$("${run[@]}" "$dist/wattledger" --version); echo "$version" >&2
  grep -Eq '^wattledger [0-9.]+ \(git [0-9a-f]{12}\)$' <<<"$version"
  check_offline "${run[@]}" "$dist/wattledger"
  case $target in
    x86_64-unknown-linux-musl)
      grep -q 'statically linked\|static-pie linked' "$scratch/file.out" || { echo "cross.sh: $dist/wattledger is not static" >&2; exit 1; }
      # No NVML from a static binary: a clear error, never zero GPUs read as zero watts.
      if "$dist/wattledger" gpus >"$scratch/gpus.out" 2>&1; then
        echo "cross.sh: the static binary claims to read GPUs" >&2; exit 1
      fi
      grep -q 'is a static build' "$scratch/gpus.out" || { cat "$scratch/gpus.out" >&2; echo "cross.sh: the static binary does not say why it reads no GPUs" >&2; exit 1; }
      echo "cross.sh: static binary, gpus: $(head -c 300 "$scratch/gpus.out")"
      ;;
    aarch64-unknown-linux-gnu)
      grep -q 'ARM aarch64' "$scratch/file.out" || { echo "cross.sh: $dist/wattledger is not aarch64" >&2; exit 1; }
      # A real exchange: the aarch64 binary probes a simulated Antminer served by
      # the native build.
      cargo build --locked --quiet
      target/debug/wattledger sim miners --count 1 --mix antminer-stock=1 --bind 127.0.0.1 --port 24028 --quiet >"$scratch/sim.out" 2>&1 &
      sim=$!
      for _ in $(seq 50); do grep -q . "$scratch/sim.out" && break; sleep 0.2; done
      "${run[@]}" "$dist/wattledger" probe 127.0.0.1:24028 --json >"$scratch/probe.json"
      kill "$sim"
      grep -q '"make":"Antminer"' "$scratch/probe.json" || { cat "$scratch/probe.json" >&2; echo "cross.sh: the aarch64 probe read no miner" >&2; exit 1; }
      echo "cross.sh: aarch64 probe of a simulated miner: $(head -c 120 "$scratch/probe.json")…"
      cargo deb --locked --no-build --target "$target" --output target/debian/wattledger_arm64.deb
      dpkg-deb --field target/debian/wattledger_arm64.deb Architecture | grep -qx arm64
      dpkg-deb --contents target/debian/wattledger_arm64.deb | grep -q './usr/bin/wattledger$'
      # The packaged binary is the stripped one and runs.
      dpkg-deb -x target/debian/wattledger_arm64.deb "$scratch/deb"
      "${run[@]}" "$scratch/deb/usr/bin/wattledger" --version >/dev/null
      echo "cross.sh: target/debian/wattledger_arm64.deb: $(stat -c %s target/debian/wattledger_arm64.deb) bytes"
      ;;
  esac
  printf 'cross.sh: %-46s %6.1f MB (stripped), debug %6.1f MB\n' "$dist/wattledger" \
    "$(stat -c %s "$dist/wattledger" | awk '{ print $1 / 1e6 }')" "$(stat -c %s "$dist/wattledger.debug" | awk '{ print $1 / 1e6 }')"
  built=$((built + 1))
done
echo "cross.sh: $built target(s) built"
