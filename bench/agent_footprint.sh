#!/usr/bin/env bash
# Agent footprint: `wattledger agent` polling 8 fake GPUs every 1 s and 1,000
# simulated miners every 30 s, shipping to VictoriaMetrics (/api/v2/write), versus
# the Python loop an operator would otherwise write (nvidia-ml-py + pyasic +
# influxdb-client, bench/agent_footprint_py.py) doing the same reads and writes to
# the same server. Prints CPU % of one core and peak RSS side by side.
# The agent runs twice at the same time, against the same fake GPUs and simulated
# miners: with the energy ledger (the default) and with `[ledger] enabled = false`,
# so the machine's other load falls on both alike.
# Not part of the default tests. Figures: docs/benchmarks.md, `## Agent footprint`.
#
#   bash bench/agent_footprint.sh            # BENCH_SECONDS=120 per side by default
#   BENCH_SKIP_PY=1 bash bench/agent_footprint.sh   # the two agents only
#   BENCH_NO_BUILD=1 ...                     # use the release build already in target/
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-120}
miners=${BENCH_MINERS:-1000}
venv=target/bench-venv

if [[ -z ${BENCH_SKIP_PY:-} ]] && ! $venv/bin/python -c 'import pyasic, pynvml, influxdb_client, sniffio' 2>/dev/null; then
  python3 -m venv $venv
  # sniffio: without it httpcore's failed import on every request skews pyasic's CPU.
  $venv/bin/pip install -q pyasic nvidia-ml-py influxdb-client sniffio
fi
[[ -n ${BENCH_NO_BUILD:-} ]] || cargo build --release --workspace --quiet
bin=target/release/wattledger

t=$(mktemp -d /tmp/wattledger-footprint.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${own_servers:-} ]] && bash .ci/servers.sh stop "$WATTLEDGER_TEST_SERVERS_DIR"
  rm -rf "$t"
}
trap cleanup EXIT
if [[ -z ${WATTLEDGER_TEST_VM_URL:-} ]]; then
  eval "$(bash .ci/servers.sh start)"
  own_servers=1
fi
vm=$WATTLEDGER_TEST_VM_URL
ulimit -n 20000

# 8 fake GPUs: a private copy of the fake NVML library with its scenario beside it.
mkdir -p "$t/nvml"
cp target/release/libnvidia_ml.so "$t/nvml/"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s.pop("pin_unix_ns",None); json.dump(s,open(sys.argv[2],"w"))' \
  tests/data/nvml/eight-h100.json "$t/nvml/fake-nvml-scenario.json"

# 1,000 simulated stock Antminers on 127.55.0.1 and up.
"$bin" sim miners --count "$miners" --bind 127.55.0.1 --mix antminer-stock --quiet > "$t/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do grep -q ready "$t/sim.log" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$t/sim.log" || { cat "$t/sim.log"; echo "simulated miners did not start" >&2; exit 1; }
python3 -c 'import ipaddress,sys; b=ipaddress.ip_address("127.55.0.1"); [print(f"{b+i}:4028") for i in range(int(sys.argv[1]))]' "$miners" > "$t/ips"

targets=$(sed 's/.*/"&"/' "$t/ips" | paste -sd, -)
# One config per agent: its own site tag (their series stay apart in the server),
# spool and ledger setting.
agent_config() { # name, ledger enabled (true/false)
cat > "$t/agent-$1.toml" <<TOML
[agent]
site = "bench-$1"
spool_dir = "$t/spool-$1"
[store]
kind = "influxdb"
api = "v2"
url = "$vm"
org = "bench"
bucket = "bench"
token = "bench"
[gpus]
nvml_lib = "$t/nvml/libnvidia_ml.so"
interval = "1s"
[miners]
targets = [$targets]
interval = "30s"
[ledger]
enabled = $2
TOML
}
agent_config ledger-on true
agent_config ledger-off false

# CPU seconds (user+system) of a running process.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }

# Runs for $seconds while sampling memory every second; prints
# "cpu_pct peak_rss_mb cpu_s wall_s peak_anon_mb peak_file_mb": VmHWM is the kernel's
# peak RSS (file-backed pages of the binary and libraries included), RssAnon the
# process's own heap and stacks.
measure() {
  local pid=$1 start=$SECONDS anon=0 file=0 a f
  while (( SECONDS - start < seconds )); do
    a=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status"); f=$(awk '/^RssFile/ {print $2}' "/proc/$pid/status")
    (( a > anon )) && anon=$a; (( f > file )) && file=$f
    sleep 1
  done
  local cpu rss wall
  cpu=$(cpu_s "$pid"); rss=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status"); wall=$((SECONDS - start))
  awk -v c="$cpu" -v w="$wall" -v r="$rss" -v a="$anon" -v f="$file" 'BEGIN { printf "%.2f %.1f %.1f %d %.1f %.1f\n", 100*c/w, r/1024, c, w, a/1024, f/1024 }'
}
show() { # name, "cpu_pct peak_mb cpu_s wall_s"
  set -- "$1" $2
  printf '%-50s %6s %% of one core  %6s MB peak RSS (anon %s MB, file-backed %s MB)  %s CPU s in %s s\n' "$1" "$2" "$3" "$6" "$7" "$4" "$5"
}

echo "agent footprint: 8 fake GPUs at 1 s + $miners simulated miners at 30 s, ${seconds} s per side, writing to $vm (load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$bin" agent --config "$t/agent-ledger-on.toml" 2> "$t/agent-ledger-on.log" &
apid=$!; pids+=($apid)
"$bin" agent --config "$t/agent-ledger-off.toml" 2> "$t/agent-ledger-off.log" &
opid=$!; pids+=($opid)
measure "$apid" > "$t/m-on" &
m1=$!
measure "$opid" > "$t/m-off" &
m2=$!
wait "$m1" "$m2"
agent=$(cat "$t/m-on"); agent_off=$(cat "$t/m-off")
kill -TERM "$apid" "$opid"; wait "$apid" "$opid" || true
# What each agent wrote: energy_ledger points in the server (none without the
# ledger; the first is written about 2.5 minutes after the start, see
# src/ledger/writer.rs, so runs shorter than that write none).
curl -s "$vm/internal/force_flush" > /dev/null || true
for side in ledger-on ledger-off; do
  n=$(curl -s "$vm/api/v1/export" --data-urlencode "match[]={__name__=\"energy_ledger_energy_j\",site=\"bench-$side\"}" \
    | python3 -c 'import json,sys; print(sum(len(json.loads(l)["values"]) for l in sys.stdin if l.strip()))')
  echo "$side: $n energy_ledger points in VictoriaMetrics"
done

show "wattledger agent, ledger on" "$agent"
show "wattledger agent, ledger off" "$agent_off"
awk -v a="${agent%% *}" -v o="${agent_off%% *}" 'BEGIN { if (o > 0) printf "agent CPU, ledger on vs off: %+.1f %%\n", 100*(a/o-1) }'
for side in ledger-on ledger-off; do
  echo "agent $side log: $(grep -c ERROR "$t/agent-$side.log" || true) error lines, $(grep -c WARN "$t/agent-$side.log" || true) warnings"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n ${BENCH_SKIP_PY:-} ]] && exit 0

$venv/bin/python bench/agent_footprint_py.py "$t/nvml/libnvidia_ml.so" "$t/ips" "$vm" "$((seconds + 30))" 2> "$t/py.log" &
ppid=$!; pids+=($ppid)
py=$(measure "$ppid")
kill "$ppid" 2>/dev/null || true

show "python (pyasic + nvidia-ml-py + influxdb-client)" "$py"
awk -v a="${agent%% *}" -v p="${py%% *}" 'BEGIN { if (a > 0) printf "CPU ratio python/agent: %.1fx\n", p/a }'
echo "python log: $(wc -l < "$t/py.log") lines"
