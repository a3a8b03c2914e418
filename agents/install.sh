#!/usr/bin/env bash
# Installs the wattledger agent as a systemd service on a Debian/Ubuntu host.
# Idempotent: running it again upgrades the binary and unit and keeps the config
# and the spool. See agents/README.md.
#
#   sudo agents/install.sh [--binary PATH] [--example gpu-rig|miner-lan|inference-node] [--no-start]
#   sudo agents/install.sh --uninstall [--purge]     # --purge also removes config and spool
#
# WATTLEDGER_INSTALL_ROOT=/some/dir installs under that prefix and skips systemctl
# (used by CI to test the script without a running systemd).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${WATTLEDGER_INSTALL_ROOT:-}
binary=""
example=gpu-rig
start=1
action=install
purge=0

while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --example) example=${2:?--example needs a name}; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
have_systemd() { [[ -z $root && -d /run/systemd/system ]]; }

if [[ -z $root && $(id -u) -ne 0 ]]; then
  echo "install.sh: run as root (sudo $0 ...)" >&2; exit 1
fi

bin_path=$root/usr/bin/wattledger
unit_path=$root/etc/systemd/system/wattledger-agent.service
conf_dir=$root/etc/wattledger
share_dir=$root/usr/share/wattledger
state_dir=$root/var/lib/wattledger-agent

if [[ $action == uninstall ]]; then
  if have_systemd; then
    systemctl disable --now wattledger-agent.service 2>/dev/null || true
  fi
  rm -f "$unit_path"
  have_systemd && systemctl daemon-reload
  # The Debian package owns the binary when it is installed that way.
  if [[ -z $root ]] && dpkg -S /usr/bin/wattledger >/dev/null 2>&1; then
    say "keeping /usr/bin/wattledger (owned by the wattledger package; use apt remove)"
  else
    rm -f "$bin_path"
  fi
  rm -rf "$share_dir"
  if [[ $purge -eq 1 ]]; then
    rm -rf "$conf_dir" "$state_dir" "$root/var/lib/private/wattledger-agent"
    say "removed the agent, its config and its spool"
  else
    say "removed the agent; kept $conf_dir and the spool (use --purge to remove them)"
  fi
  exit 0
fi

if [[ -z $binary ]]; then
  for candidate in "$here/../target/release/wattledger" "$here/wattledger" "$(command -v wattledger || true)"; do
    if [[ -n $candidate && -x $candidate ]]; then binary=$candidate; break; fi
  done
fi
[[ -n $binary && -x $binary ]] || { echo "install.sh: no wattledger binary found; build it (cargo build --release) or pass --binary PATH" >&2; exit 1; }
[[ -f $here/examples/$example.toml ]] || { echo "install.sh: no example named $example (gpu-rig, miner-lan, inference-node)" >&2; exit 2; }

mkdir -p "$(dirname "$bin_path")" "$(dirname "$unit_path")" "$conf_dir" "$share_dir/examples"
if [[ $(readlink -f "$binary") != $(readlink -f "$bin_path" 2>/dev/null || true) ]]; then
  install -m 0755 "$binary" "$bin_path.new" && mv -f "$bin_path.new" "$bin_path"
fi
install -m 0644 "$here/wattledger-agent.service" "$unit_path"
install -m 0644 "$here"/examples/*.toml "$share_dir/examples/"
if [[ -e $conf_dir/agent.toml ]]; then
  say "keeping the existing $conf_dir/agent.toml"
else
  install -m 0644 "$here/examples/$example.toml" "$conf_dir/agent.toml"
  say "installed $conf_dir/agent.toml from the $example example: edit [store] before starting"
fi
"$bin_path" --version >/dev/null

if have_systemd; then
  systemctl daemon-reload
  systemctl enable wattledger-agent.service
  if [[ $start -eq 1 ]]; then
    systemctl restart wattledger-agent.service
    say "started; follow it with: journalctl -u wattledger-agent -f"
  fi
else
  say "systemd is not running here (or WATTLEDGER_INSTALL_ROOT is set): installed files only"
fi
