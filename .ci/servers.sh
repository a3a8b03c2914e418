#!/usr/bin/env bash
# Starts the real servers the integration tests use, as plain processes on loopback
# ports in a temporary folder (no system services, no root needed once the Debian
# packages are downloaded), and stops them again.
#
#   eval "$(bash .ci/servers.sh start)"   # exports WATTLEDGER_TEST_* variables
#   bash .ci/servers.sh stop "$WATTLEDGER_TEST_SERVERS_DIR"
#
# Servers: InfluxDB 1.6 (Debian `influxdb`: /write + InfluxQL /query),
# VictoriaMetrics (Debian `victoria-metrics`: accepts /api/v2/write with a token and
# gzip), Prometheus Alertmanager (Debian `prometheus-alertmanager`); for the meter tests,
# Debian's `snmpd` (PDU tables through .ci/meters/pdu_pass.py) on UDP 16161 and a Modbus
# TCP meter (PyPI pyModbusTCP, .ci/meters/modbus_server.py) on 15020.
# Ports default to 18086/18088, 18428, 19093; WATTLEDGER_TEST_PORT_BASE shifts them all.
set -euo pipefail

base=${WATTLEDGER_TEST_PORT_BASE:-0}
influx_http=$((18086 + base)); influx_rpc=$((18088 + base))
vm_http=$((18428 + base)); am_http=$((19093 + base)); am_hook=$((19094 + base))
snmp_udp=$((16161 + base)); modbus_tcp=$((15020 + base))
pkg_dir=${WATTLEDGER_PKG_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/target/ci-packages}

log() { echo "servers: $*" >&2; }

wait_http() { # url, name, pidfile
  for _ in $(seq 1 200); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$(cat "$3")" 2>/dev/null; then log "$2 exited during start-up"; return 1; fi
    sleep 0.05
  done
  log "$2 did not answer $1 within 10 s"; return 1
}

fetch_packages() {
  if [[ -x $pkg_dir/root/usr/bin/influxd && -x $pkg_dir/root/usr/bin/victoria-metrics && -x $pkg_dir/root/usr/bin/prometheus-alertmanager ]]; then
    return 0
  fi
  mkdir -p "$pkg_dir/debs" "$pkg_dir/root"
  (cd "$pkg_dir/debs" && apt-get download influxdb victoria-metrics prometheus-alertmanager >&2 2>/dev/null) || {
    log "apt-get download failed; run 'apt-get update' first"; return 1; }
  for f in "$pkg_dir"/debs/*.deb; do dpkg -x "$f" "$pkg_dir/root"; done
}

# Debian's alertmanager loads its default template from a fixed path.
install_am_templates() {
  local d=/usr/share/prometheus/alertmanager
  [[ -f $d/default.tmpl ]] && return 0
  mkdir -p "$d" 2>/dev/null && cp "$pkg_dir"/root$d/*.tmpl "$d/" 2>/dev/null || {
    log "cannot write $d (alertmanager needs its templates there; run as root once)"; return 1; }
}

# Meters: Debian's snmpd serving PDU outlet tables through a pass_persist script
# (.ci/meters/pdu_pass.py), v2c community `public` and a v3 authPriv user; and a
# Modbus TCP meter (.ci/meters/modbus_server.py, PyPI pyModbusTCP in .ci/venv).
start_meters() {
  local t=$1 here; here=$(cd "$(dirname "$0")" && pwd)
  mkdir -p "$t/snmp/persist" "$t/modbus"
  if command -v snmpd >/dev/null || [[ -x /usr/sbin/snmpd ]]; then
    cat > "$t/snmp/snmpd.conf" <<CONF
agentAddress udp:127.0.0.1:$snmp_udp
rocommunity public 127.0.0.1
dontLogTCPWrappersConnects yes
createUser wlv3 SHA "wattledger-auth" AES "wattledger-priv"
rouser wlv3 priv
pass_persist .1.3.6.1.4.1.318.1.1.26.9.4.3.1 /usr/bin/python3 $here/meters/pdu_pass.py
pass_persist .1.3.6.1.4.1.13742.6.5.4.3.1.4 /usr/bin/python3 $here/meters/pdu_pass.py
pass_persist .1.3.6.1.4.1.1718.4.1.8.3.1 /usr/bin/python3 $here/meters/pdu_pass.py
CONF
    SNMP_PERSISTENT_DIR="$t/snmp/persist" MIBS= /usr/sbin/snmpd -f -Lf "$t/snmp/log" -C -c "$t/snmp/snmpd.conf" \
      -p "$t/snmp/snmpd.pid" >/dev/null 2>&1 & echo $! > "$t/snmp/pid"
    for _ in $(seq 1 100); do
      if snmpget -v2c -c public -On -t 0.2 -r 0 "127.0.0.1:$snmp_udp" .1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.1 >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    echo "export WATTLEDGER_TEST_SNMP_ADDR=127.0.0.1:$snmp_udp"
  else
    log "snmpd not installed (apt-get install snmpd snmp); SNMP meter tests will fail"
  fi
  if [[ -x $here/venv/bin/python ]] && "$here/venv/bin/python" -c 'import pyModbusTCP' 2>/dev/null; then
    "$here/venv/bin/python" "$here/meters/modbus_server.py" "$modbus_tcp" > "$t/modbus/log" 2>&1 & echo $! > "$t/modbus/pid"
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$modbus_tcp") 2>/dev/null && break; sleep 0.05; done
    echo "export WATTLEDGER_TEST_MODBUS_ADDR=127.0.0.1:$modbus_tcp"
  else
    log "pyModbusTCP missing in .ci/venv (.ci/run installs it); Modbus meter tests will fail"
  fi
}

start() {
  fetch_packages
  install_am_templates
  local bin=$pkg_dir/root/usr/bin
  local t; t=$(mktemp -d /tmp/wattledger-servers.XXXXXX)
  mkdir -p "$t/influx" "$t/vm" "$t/am"
  cat > "$t/influx/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_rpc"
[meta]
  dir = "$t/influx/meta"
[data]
  dir = "$t/influx/data"
  wal-dir = "$t/influx/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$influx_http"
  log-enabled = false
  pprof-enabled = false
  bind-socket = "$t/influx/influxdb.sock"
  max-body-size = 25000000
[logging]
  level = "warn"
CONF
  "$bin/influxd" run -config "$t/influx/influxdb.conf" > "$t/influx/log" 2>&1 & echo $! > "$t/influx/pid"
  "$bin/victoria-metrics" -storageDataPath "$t/vm/data" -httpListenAddr "127.0.0.1:$vm_http" \
    -loggerLevel WARN -search.latencyOffset=0s -search.disableCache > "$t/vm/log" 2>&1 & echo $! > "$t/vm/pid"
  cat > "$t/am/alertmanager.yml" <<Y
route: {receiver: hook, group_by: ['alertname'], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
receivers:
  - name: hook
    webhook_configs: [{url: 'http://127.0.0.1:$am_hook/alerts', send_resolved: true}]
Y
  "$bin/prometheus-alertmanager" --config.file="$t/am/alertmanager.yml" --storage.path="$t/am/data" \
    --web.listen-address="127.0.0.1:$am_http" --cluster.listen-address= --log.level=warn > "$t/am/log" 2>&1 & echo $! > "$t/am/pid"
  wait_http "http://127.0.0.1:$influx_http/ping" influxd "$t/influx/pid"
  wait_http "http://127.0.0.1:$vm_http/health" victoria-metrics "$t/vm/pid"
  wait_http "http://127.0.0.1:$am_http/-/ready" alertmanager "$t/am/pid"
  log "influxd :$influx_http, victoria-metrics :$vm_http, alertmanager :$am_http (dir $t)"
  echo "export WATTLEDGER_TEST_SERVERS_DIR=$t"
  echo "export WATTLEDGER_TEST_INFLUXDB_URL=http://127.0.0.1:$influx_http"
  echo "export WATTLEDGER_TEST_INFLUXD_BIN=$bin/influxd"
  echo "export WATTLEDGER_TEST_VM_URL=http://127.0.0.1:$vm_http"
  echo "export WATTLEDGER_TEST_ALERTMANAGER_URL=http://127.0.0.1:$am_http"
  start_meters "$t"
  log "snmpd udp :$snmp_udp, modbus tcp :$modbus_tcp"
}

stop() {
  local t=$1
  for s in influx vm am snmp modbus; do
    [[ -f $t/$s/pid ]] || continue
    local pid; pid=$(cat "$t/$s/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$t"
}

case ${1:-} in
  start) start ;;
  stop) stop "${2:?usage: servers.sh stop DIR}" ;;
  *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
