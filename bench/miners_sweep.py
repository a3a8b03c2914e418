"""Side-by-side sweep of a simulated fleet: wattledger vs asic-rs vs pyasic, same miners.

Each client gets a fresh simulator (`wattledger sim miners`, replies from the real captures)
on N distinct loopback addresses, port 4028. Two fleets, one run:

- `antminer-stock` (stock Antminer S19 Pro, bmminer): the like-for-like read, wattledger
  against pyasic with the miner class built directly — both send exactly one connection and
  one `version+summary+stats+pools` request per miner.
- `luxos` (LuxOS on an Antminer S19k Pro): each tool's default full read, identification
  plus data: wattledger `probe`, asic-rs `MinerFactory::get_miner` + `get_data`, pyasic
  `get_miner` + `get_data`. asic-rs is not run on the stock Antminer fleet: its stock
  Antminer backend takes the model from the web UI (`/cgi-bin/miner_type.cgi`, digest auth
  on port 80), which a cgminer-only miner does not serve, so it identifies none of them.

Measured per client process with wait4(): wall time, user+sys CPU, peak RSS; the simulator's
CPU during the sweep from /proc/PID/stat; connections and requests from the simulator's own
counters; the load average before and after each run (the machine may be shared).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def start_sim(wl, n, bind, mix):
    p = subprocess.Popen(
        [wl, "sim", "miners", "--count", str(n), "--bind", bind, "--mix", mix, "--quiet", "--no-variation"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        sys.exit(f"simulator did not start: {line}{p.stderr.read()}")
    time.sleep(0.2)
    return p, proc_cpu(p.pid)


def stop_sim(p):
    cpu = proc_cpu(p.pid)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    conns = reqs = None
    for line in err.splitlines():
        if line.startswith("sim:"):
            parts = line.split()
            conns, reqs = int(parts[1]), int(parts[3])
    return cpu, conns, reqs


def measured(cmd, stdout_path):
    with open(stdout_path, "w") as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        err = p.stderr.read().decode(errors="replace")
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "rc": os.waitstatus_to_exitcode(status), "stderr": err}


def run(name, cmd, a, mix, out_path, check):
    load0 = os.getloadavg()[0]
    sim, cpu0 = start_sim(a.wattledger, a.count, a.bind, mix)
    try:
        m = measured(cmd, out_path)
    finally:
        cpu1, conns, reqs = stop_sim(sim)
    m["load"] = (load0 + os.getloadavg()[0]) / 2
    m["sim_cpu_s"] = cpu1 - cpu0
    m["conns"], m["reqs"] = conns, reqs
    m["ok"], m["detail"] = check(out_path)
    if m["rc"] != 0:
        print(f"{name} exited {m['rc']}: {m['stderr'][-2000:]}", file=sys.stderr)
    print(f"  {mix:<15} {name:<14} wall {m['wall_s']:7.2f} s  CPU {m['cpu_s']:7.2f} s  RSS {m['rss_mb']:6.1f} MB  "
          f"ok {m['ok']}  sim CPU {m['sim_cpu_s']:.2f} s  conns {conns}  reqs {reqs}  load {m['load']:.1f}", flush=True)
    return m


def check_wl(path):
    ok, rates, models = 0, set(), set()
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["online"] and r["hashrate_ths"] is not None:
                ok += 1
                rates.add(round(r["hashrate_ths"], 3))
                models.add(f"{r.get('make')} {r.get('model')}")
    return ok, f"{sorted(rates)[:5]} {sorted(models)[:3]}"


def check_summary(path):
    try:
        with open(path) as f:
            r = json.loads(f.read().strip().splitlines()[-1])
    except (IndexError, ValueError):
        return 0, "no summary line"
    return r["ok"], f"{r['hashrates_ths']} {r.get('models', '')}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--bind", default="127.77.0.1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--only", default="", help="comma-separated client names to run (default: all)")
    ap.add_argument("--wattledger", default="target/release/wattledger")
    ap.add_argument("--asic-rs", dest="asic_rs", default="target/asic-rs-sweep/release/asic-rs-sweep")
    ap.add_argument("--python", default="target/bench-venv/bin/python")
    ap.add_argument("--workdir", default="target/bench-miners")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    first = [int(x) for x in a.bind.split(".")]
    base = (first[0] << 24) | (first[1] << 16) | (first[2] << 8) | first[3]
    targets = os.path.join(a.workdir, "targets.txt")
    with open(targets, "w") as f:
        for i in range(a.count):
            ip = base + i
            f.write(f"{ip >> 24 & 255}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}:4028\n")

    wl_cmd = [a.wattledger, "--log", "warn", "probe", "--targets-file", targets, "--json", "--timeout", "10",
              "--concurrency", str(a.concurrency)]
    py = os.path.join(os.path.dirname(__file__), "pyasic_sweep.py")
    w = lambda name: os.path.join(a.workdir, name)
    # (fleet, client, command, output, check)
    plan = [
        ("antminer-stock", "wattledger", wl_cmd, w("wl-stock.jsonl"), check_wl),
        ("antminer-stock", "pyasic-direct", [a.python, py, targets, "direct"], w("py-direct.json"), check_summary),
        ("luxos", "wattledger", wl_cmd, w("wl-luxos.jsonl"), check_wl),
        ("luxos", "asic-rs", [a.asic_rs, targets, str(a.concurrency)], w("asic-rs.json"), check_summary),
        ("luxos", "pyasic-full", [a.python, py, targets, "full"], w("py-full.json"), check_summary),
    ]
    only = {x for x in a.only.split(",") if x}
    plan = [p for p in plan if not only or p[1] in only]
    results = {(f, c): [] for f, c, *_ in plan}
    for rep in range(a.repeat):
        print(f"run {rep + 1}/{a.repeat}", flush=True)
        for fleet, client, cmd, out, check in plan:
            results[(fleet, client)].append(run(client, cmd, a, fleet, out, check))

    def med(rs):  # the run with the median CPU time: CPU is the steadier figure on a shared machine
        return sorted(rs, key=lambda r: r["cpu_s"])[len(rs) // 2]

    print(f"\nMiner sweep: {a.count} simulated miners on distinct loopback addresses, port 4028, "
          f"median (by CPU) of {a.repeat} runs, {os.cpu_count()} CPUs")
    print(f"{'fleet':<15} {'client':<14} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'ok':>6} {'sim CPU s':>10} "
          f"{'conns/miner':>12} {'reqs/miner':>11} {'load':>5}  read")
    meds = {}
    for (fleet, client), rs in results.items():
        r = meds[(fleet, client)] = med(rs)
        cpm = r["conns"] / a.count if r["conns"] is not None else float("nan")
        rpm = r["reqs"] / a.count if r["reqs"] is not None else float("nan")
        print(f"{fleet:<15} {client:<14} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f} {r['rss_mb']:>12.1f} {r['ok']:>6} "
              f"{r['sim_cpu_s']:>10.2f} {cpm:>12.2f} {rpm:>11.2f} {r['load']:>5.1f}  {r['detail']}")
    print("all runs (CPU s / wall s):")
    for (fleet, client), rs in results.items():
        print(f"  {fleet:<15} {client:<14}", " ".join(f"{r['cpu_s']:.2f}/{r['wall_s']:.2f}" for r in rs))

    verdicts = []
    for fleet, peer, target in (("luxos", "asic-rs", 5), ("luxos", "pyasic-full", 15), ("antminer-stock", "pyasic-direct", 15)):
        wl, p = meds.get((fleet, "wattledger")), meds.get((fleet, peer))
        if wl and p:
            cpu_x = p["cpu_s"] / max(wl["cpu_s"], 1e-9)
            print(f"{fleet}: wattledger vs {peer}: {cpu_x:.1f}x less CPU, {p['wall_s'] / wl['wall_s']:.1f}x faster (wall), "
                  f"{p['rss_mb'] / wl['rss_mb']:.1f}x less memory")
            verdicts.append((f"{fleet}: >= {target}x less CPU than {peer}", cpu_x >= target))
    for (fleet, client), r in meds.items():
        if client == "wattledger":
            verdicts.append((f"{fleet}: wattledger <= 50 MB peak RSS and every miner read", r["rss_mb"] <= 50 and r["ok"] == a.count))
    for what, met in verdicts:
        print(f"target {what}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
