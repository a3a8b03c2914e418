"""Side-by-side sweep of a simulated fleet: wattledger vs pyasic, same miners, same traffic.

Each client gets a fresh simulator (`wattledger sim miners`, stock Antminer S19 Pro replies
from the real captures) on N distinct loopback addresses, port 4028. Measured per client
process with wait4(): wall time, user+sys CPU, peak RSS; the simulator's CPU during the sweep
from /proc/PID/stat; connections and requests from the simulator's own counters.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def start_sim(wl, n, bind):
    p = subprocess.Popen(
        [wl, "sim", "miners", "--count", str(n), "--bind", bind, "--mix", "antminer-stock", "--quiet", "--no-variation"],
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
    _, err = p.communicate(timeout=30)
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
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        err = p.stderr.read().decode(errors="replace")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, "rc": os.waitstatus_to_exitcode(status), "stderr": err}


def run(name, cmd, wl, n, bind, out_path, check):
    sim, cpu0 = start_sim(wl, n, bind)
    try:
        m = measured(cmd, out_path)
    finally:
        cpu1, conns, reqs = stop_sim(sim)
    m["sim_cpu_s"] = cpu1 - cpu0
    m["conns"], m["reqs"] = conns, reqs
    m["ok"], m["detail"] = check(out_path)
    if m["rc"] != 0:
        print(f"{name} exited {m['rc']}: {m['stderr'][-2000:]}", file=sys.stderr)
    return m


def check_wl(path):
    ok, rates = 0, set()
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["online"] and r["hashrate_ths"] is not None:
                ok += 1
                rates.add(round(r["hashrate_ths"], 3))
    return ok, sorted(rates)[:5]


def check_py(path):
    with open(path) as f:
        r = json.loads(f.read().strip().splitlines()[-1])
    return r["ok"], r["hashrates_ths"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--bind", default="127.77.0.1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--wattledger", default="target/release/wattledger")
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
    py_cmd = [a.python, os.path.join(os.path.dirname(__file__), "pyasic_sweep.py"), targets]
    results = {"wattledger": [], "pyasic": []}
    for rep in range(a.repeat):
        results["wattledger"].append(run("wattledger", wl_cmd, a.wattledger, a.count, a.bind, os.path.join(a.workdir, "wl.jsonl"), check_wl))
        results["pyasic"].append(run("pyasic", py_cmd, a.wattledger, a.count, a.bind, os.path.join(a.workdir, "py.json"), check_py))

    def med(rs):
        return sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]

    w, p = med(results["wattledger"]), med(results["pyasic"])
    print(f"\nMiner sweep: {a.count} simulated Antminer S19 Pro (stock bmminer replies), distinct loopback addresses, "
          f"median of {a.repeat} runs, {os.cpu_count()} CPUs")
    hdr = f"{'client':<12} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'ok':>6} {'sim CPU s':>10} {'conns/miner':>12} {'reqs/miner':>11}  hashrate TH/s"
    print(hdr)
    for name, r in (("wattledger", w), ("pyasic", p)):
        cpm = r["conns"] / a.count if r["conns"] is not None else float("nan")
        rpm = r["reqs"] / a.count if r["reqs"] is not None else float("nan")
        print(f"{name:<12} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f} {r['rss_mb']:>12.1f} {r['ok']:>6} {r['sim_cpu_s']:>10.2f} {cpm:>12.2f} {rpm:>11.2f}  {r['detail']}")
    print(f"wattledger vs pyasic: {p['wall_s'] / w['wall_s']:.1f}x faster (wall), {p['cpu_s'] / max(w['cpu_s'], 1e-9):.1f}x less CPU")
    print("all runs (wall s): wattledger", [round(r["wall_s"], 3) for r in results["wattledger"]],
          "pyasic", [round(r["wall_s"], 3) for r in results["pyasic"]])
    targets_met = w["wall_s"] < 5 and p["wall_s"] / w["wall_s"] >= 10 and w["rss_mb"] < 100 and w["ok"] == a.count
    print("targets (< 5 s, >= 10x pyasic, < 100 MB, every miner read):", "met" if targets_met else "NOT met")


if __name__ == "__main__":
    main()
