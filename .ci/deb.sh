#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg, checks the
# binary (stripped, its debug info separate, --version with the commit), both
# systemd units (systemd-analyze verify and security), that the example configs it
# installs pass `check --offline`, tests agents/install.sh into a scratch root, and
# removes the package again.
# Called by .ci/run (as root); separate so that it is easy to time.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) -ne 0 ]]; then
  echo "deb.sh: needs root for dpkg -i; skipping the package install test" >&2
  exit 1
fi
command -v systemd-analyze >/dev/null || apt-get install -y -qq --no-install-recommends systemd >/dev/null
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --quiet

cargo deb --locked --output target/debian/wattledger.deb
# The same release build, split for hosts that take the binary (install.sh, Ansible).
bash .ci/release.sh
! readelf -S target/dist/wattledger | grep -q '\.debug_info' || { echo "deb.sh: target/dist/wattledger is not stripped" >&2; exit 1; }
readelf -S target/dist/wattledger | grep -q '\.gnu_debuglink' && readelf -S target/dist/wattledger.debug | grep -q '\.debug_info'
dpkg -i target/debian/wattledger.deb
trap 'dpkg --purge wattledger >/dev/null 2>&1 || true' EXIT
# Printed through the shell's own stderr: `tee /dev/stderr` would reopen (and truncate) a log file it goes to.
version=$(wattledger --version); echo "$version" >&2
grep -Eq '^wattledger [0-9.]+ \(git [0-9a-f]{12}\)$' <<<"$version"
! readelf -S /usr/bin/wattledger | grep -q '\.debug_info' || { echo "deb.sh: /usr/bin/wattledger is not stripped" >&2; exit 1; }
echo "deb.sh: /usr/bin/wattledger is $(stat -c %s /usr/bin/wattledger) bytes"
test -f /etc/wattledger/agent.toml && test -f /etc/wattledger/aggregator.toml
test "$(stat -c %a /etc/wattledger/credentials)" = 700
for unit in wattledger-agent wattledger-aggregator; do
  systemd-analyze verify "/lib/systemd/system/$unit.service"
  exposure=$(systemd-analyze security --offline=true "/lib/systemd/system/$unit.service" | sed -n "s/.*Overall exposure level for $unit.service: \([0-9.]*\).*/\1/p")
  echo "deb.sh: $unit systemd-analyze security exposure $exposure"
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "deb.sh: $unit exposure $exposure is above 2.0" >&2; exit 1; }
  systemctl is-enabled "$unit.service" >/dev/null 2>&1 && { echo "deb.sh: $unit was enabled on install" >&2; exit 1; }
done
# The installed configs are complete once their secrets exist (systemd's way).
creds=$(mktemp -d)
printf 'x\n' > "$creds/wattledger_influx-token"; printf 'x\n' > "$creds/wattledger_api-token"
CREDENTIALS_DIRECTORY=$creds wattledger check --offline --config /etc/wattledger/agent.toml
CREDENTIALS_DIRECTORY=$creds wattledger check --offline --config /etc/wattledger/aggregator.toml
rm -rf "$creds"

# install.sh into a scratch root, twice (idempotent), then uninstall.
bash agents/install.sh --help | grep -q '^Usage: sudo agents/install.sh'
! bash agents/install.sh --help | grep -q 'set -euo' || { echo "deb.sh: install.sh --help prints its source" >&2; exit 1; }
scratch=$(mktemp -d)
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --example miner-lan | tee "$scratch.log"
grep -q "not started" "$scratch.log" && test "$(stat -c %a "$scratch/etc/wattledger/credentials")" = 700
echo "# edited" >> "$scratch/etc/wattledger/agent.toml"
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --example gpu-rig
grep -q "# edited" "$scratch/etc/wattledger/agent.toml" || { echo "deb.sh: install.sh overwrote the config" >&2; exit 1; }
# --enable refuses a config whose token is missing, then goes on once it is there.
if WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --enable; then
  echo "deb.sh: install.sh --enable accepted a config without its token" >&2; exit 1
fi
printf 'x\n' > "$scratch/etc/wattledger/credentials/ingest-token"
CREDENTIALS_DIRECTORY=$scratch/etc/wattledger/credentials WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --enable
rm -f "$scratch.log"
"$scratch/usr/bin/wattledger" --version
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --uninstall
test ! -e "$scratch/usr/bin/wattledger" && test -f "$scratch/etc/wattledger/agent.toml"
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --uninstall --purge
test ! -e "$scratch/etc/wattledger"
rm -rf "$scratch"

dpkg --purge wattledger
echo "deb.sh: package built, installed, checked and removed"
