#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg, checks the
# binary and the agent's systemd unit (systemd-analyze verify and security), tests
# agents/install.sh into a scratch root, and removes the package again.
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
dpkg -i target/debian/wattledger.deb
trap 'dpkg --purge wattledger >/dev/null 2>&1 || true' EXIT
wattledger --version
test -f /etc/wattledger/agent.toml
systemd-analyze verify /lib/systemd/system/wattledger-agent.service
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/wattledger-agent.service | sed -n 's/.*Overall exposure level for wattledger-agent.service: \([0-9.]*\).*/\1/p')
echo "deb.sh: systemd-analyze security exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "deb.sh: exposure $exposure is above 2.0" >&2; exit 1; }

# install.sh into a scratch root, twice (idempotent), then uninstall.
scratch=$(mktemp -d)
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --example miner-lan
echo "# edited" >> "$scratch/etc/wattledger/agent.toml"
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --binary /usr/bin/wattledger --example gpu-rig
grep -q "# edited" "$scratch/etc/wattledger/agent.toml" || { echo "deb.sh: install.sh overwrote the config" >&2; exit 1; }
"$scratch/usr/bin/wattledger" --version
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --uninstall
test ! -e "$scratch/usr/bin/wattledger" && test -f "$scratch/etc/wattledger/agent.toml"
WATTLEDGER_INSTALL_ROOT=$scratch bash agents/install.sh --uninstall --purge
test ! -e "$scratch/etc/wattledger"
rm -rf "$scratch"

dpkg --purge wattledger
echo "deb.sh: package built, installed, checked and removed"
