#!/usr/bin/env bash
# Installs the wattledger agent as a systemd service on a Debian/Ubuntu host.
# See agents/README.md, "Install".
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: sudo agents/install.sh [--binary PATH] [--example gpu-rig|miner-lan|inference-node] [--enable]
       sudo agents/install.sh --uninstall [--purge]

Installs the binary, the systemd unit, /etc/wattledger/agent.toml (from an example;
an existing one is kept) and the root-only folder /etc/wattledger/credentials for
secret files, then says what to edit. It does not start the agent: the example
points at a placeholder server. Edit the config, put the secrets in the credentials
folder, then run it again with --enable: that checks the config (check --offline)
and only then enables and starts wattledger-agent.service.

Running it again upgrades the binary and unit and keeps the config and the spool.

  --binary PATH   the wattledger binary (default: target/release/wattledger,
                  ./wattledger next to this script, or the one on PATH)
  --example NAME  the example config for a first install (default: gpu-rig)
  --enable        enable and start the agent once its config passes check --offline
  --uninstall     stop and remove the agent; with --purge also its config and spool
  -h, --help      this text

WATTLEDGER_INSTALL_ROOT=/some/dir installs under that prefix and skips systemctl
(used by CI to test the script without a running systemd).
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
root=${WATTLEDGER_INSTALL_ROOT:-}
binary=""
example=gpu-rig
enable=0
action=install
purge=0

while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --example) example=${2:?--example needs a name}; shift 2 ;;
    --enable) enable=1; shift ;;
    --no-start) enable=0; shift ;;  # the default now; accepted for older scripts
    --uninstall) action=uninstall; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage; exit 0 ;;
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
creds_dir=$conf_dir/credentials
share_dir=$root/usr/share/wattledger
state_dir=$root/var/lib/wattledger-agent

if [[ $action == uninstall ]]; then
  if have_systemd; then
    systemctl disable --now wattledger-agent.service 2>/dev/null || true
  fi
  rm -f "$unit_path"
  if have_systemd; then systemctl daemon-reload; fi
  # The Debian package owns the binary when it is installed that way.
  if [[ -z $root ]] && dpkg -S /usr/bin/wattledger >/dev/null 2>&1; then
    say "keeping /usr/bin/wattledger (owned by the wattledger package; use apt remove)"
  else
    rm -f "$bin_path"
  fi
  rm -rf "$share_dir"
  if [[ $purge -eq 1 ]]; then
    rm -rf "$conf_dir" "$state_dir" "$root/var/lib/private/wattledger-agent"
    say "removed the agent, its config, its credentials and its spool"
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
# Root-only; the unit hands it to the agent's DynamicUser with LoadCredential=.
install -d -m 0700 "$creds_dir"
if [[ $(readlink -f "$binary") != $(readlink -f "$bin_path" 2>/dev/null || true) ]]; then
  install -m 0755 "$binary" "$bin_path.new" && mv -f "$bin_path.new" "$bin_path"
fi
install -m 0644 "$here/wattledger-agent.service" "$unit_path"
install -m 0644 "$here"/examples/*.toml "$share_dir/examples/"
if [[ -e $conf_dir/agent.toml ]]; then
  say "keeping the existing $conf_dir/agent.toml"
else
  install -m 0644 "$here/examples/$example.toml" "$conf_dir/agent.toml"
  say "installed $conf_dir/agent.toml from the $example example"
fi
say "installed $("$bin_path" --version)"
if have_systemd; then systemctl daemon-reload; fi

if [[ $enable -eq 0 ]]; then
  cat <<EOF
install.sh: the agent is installed but not started. Next:
  1. edit /etc/wattledger/agent.toml: [agent] site, each [[sinks]] url, the sources, [workloads]
  2. put every secret file it names in /etc/wattledger/credentials/ (root-only), e.g.
       (umask 077; printf '%s\n' 'TOKEN' > /etc/wattledger/credentials/influx-token)
  3. check it against the real sinks and sources:
       wattledger check --config /etc/wattledger/agent.toml
  4. check it offline, enable and start the agent:
       sudo $0 --enable
EOF
  exit 0
fi

# Never start on a config that cannot work (a placeholder key, a missing secret).
if ! "$bin_path" check --offline --config "$conf_dir/agent.toml"; then
  echo "install.sh: $conf_dir/agent.toml does not pass 'wattledger check --offline'; fix it and run with --enable again" >&2
  exit 1
fi
if have_systemd; then
  systemctl enable wattledger-agent.service
  systemctl restart wattledger-agent.service
  say "enabled and started; follow it with: journalctl -u wattledger-agent -f"
else
  say "systemd is not running here (or WATTLEDGER_INSTALL_ROOT is set): files installed and the config checked, nothing started"
fi
