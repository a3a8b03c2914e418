#!/usr/bin/env python3
"""Hardening targets of the aggregator, measured against a real `wattledger
aggregator` process on loopback (stdlib only). Not part of the default tests; run
`bench/hardening.sh`. Prints one line per case with the figure and the target.

  1. 1,000 idle + 500 slowloris connections held (slowloris reconnect when closed):
     /api/health p99 < 200 ms throughout.
  2. 10 concurrent 10 MB ingest bodies: `/` and /api/health < 200 ms meanwhile.
  3. 1 M distinct series offered through the ingest: refused past [store]
     max_series (default 100,000), aggregator RSS < 200 MB.
"""

import asyncio
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WATTLEDGER_BIN", os.path.join(ROOT, "target/release/wattledger"))
TOKEN = "bench-token"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def config(db, port):
    text = open(os.path.join(ROOT, "docs/examples/aggregator.toml")).read()
    text = re.sub(r'(?m)^path = .*$', f'path = "{db}"', text, count=1)
    text = text[: text.index("[api]")]
    return text + f'[api]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\ningest = true\n'


def rss_mb(pid, key="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def request(port, raw, timeout=10):
    """One request on a fresh connection; returns (status, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        if m:
            await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout)
        return status, time.perf_counter() - started
    finally:
        writer.close()


def get(path):
    return f"GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n".encode()


def post(path, body):
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Token {TOKEN}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


async def probe_loop(port, path, stop, out):
    while not stop.is_set():
        try:
            status, s = await request(port, get(path))
            out.append((status, s))
        except Exception as e:  # noqa: BLE001 - any failure is a failed probe
            out.append((type(e).__name__, 10.0))
        await asyncio.sleep(0.05)


def summary(samples):
    ok = sorted(s for st, s in samples if st == 200)
    bad = len(samples) - len(ok)
    if not ok:
        return f"no successful probe ({bad} failed)", float("inf")
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return (
        f"n={len(samples)} p50={statistics.median(ok) * 1e3:.1f} ms p99={p99 * 1e3:.1f} ms "
        f"max={ok[-1] * 1e3:.1f} ms non-200={bad}",
        p99 if bad == 0 else float("inf"),
    )


async def case_connections(port, seconds):
    idle, slow = [], []
    for _ in range(1000):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        idle.append(w)
    stop = asyncio.Event()
    lifetimes = []

    async def slowloris():
        while not stop.is_set():
            opened = time.perf_counter()
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET /api/health HTTP/1.1\r\nhost: bench\r\n")
                while not stop.is_set():
                    await asyncio.sleep(1)
                    w.write(b"x-slow: 1\r\n")
                    await w.drain()
                    if r.at_eof():
                        break
            except Exception:  # noqa: BLE001 - the server closed it: reconnect
                pass
            lifetimes.append(time.perf_counter() - opened)

    tasks = [asyncio.create_task(slowloris()) for _ in range(500)]
    await asyncio.sleep(1)
    samples = []
    probe = asyncio.create_task(probe_loop(port, "/api/health", stop, samples))
    await asyncio.sleep(seconds)
    stop.set()
    await probe
    for t in tasks:
        t.cancel()
    for w in idle:
        w.close()
    text, p99 = summary(samples)
    longest = max(lifetimes) if lifetimes else float("nan")
    print(f"1000 idle + 500 slowloris, {seconds} s: /api/health {text}; "
          f"slowloris closed after <= {longest:.1f} s | target p99 < 200 ms: {'met' if p99 < 0.2 else 'NOT met'}")


async def case_big_bodies(port):
    line = "bench,host=h{0},gpu=0 power_w=250.5,energy_j=1234567u,util=97i {1}\n"
    body = "".join(line.format(i % 50, 1795132800000000000 + i) for i in range(150_000)).encode()
    body = (body * (10_000_000 // len(body) + 1))[:10_000_000]
    body = body[: body.rindex(b"\n") + 1]
    stop = asyncio.Event()
    root, health = [], []
    probes = [asyncio.create_task(probe_loop(port, "/", stop, root)),
              asyncio.create_task(probe_loop(port, "/api/health", stop, health))]
    started = time.perf_counter()
    results = await asyncio.gather(*[request(port, post("/api/v2/write?precision=ns", body), 300) for _ in range(10)],
                                   return_exceptions=True)
    took = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*probes)
    statuses = [r[0] if isinstance(r, tuple) else type(r).__name__ for r in results]
    rt, rp = summary(root)
    ht, hp = summary(health)
    met = max(rp, hp) < 0.2
    print(f"10 x {len(body) / 1e6:.1f} MB bodies at once ({took:.1f} s, answers {sorted(set(map(str, statuses)))}): "
          f"/ {rt}; /api/health {ht} | target < 200 ms: {'met' if met else 'NOT met'}")


async def case_series(port, pid, total=1_000_000, batch=10_000):
    accepted = refused = 0
    message = ""
    for start in range(0, total, batch):
        body = "".join(f"card,host=h{i},dev=d{i % 7} v=1 1795132800\n" for i in range(start, start + batch)).encode()
        status, _ = await request(port, post("/api/v2/write?precision=s", body), 300)
        if status == 204:
            accepted += batch
        elif status == 422:
            refused += batch
        else:
            message = f" unexpected status {status}"
    peak = rss_mb(pid, "VmHWM")
    now = rss_mb(pid)
    print(f"{total} distinct series offered: {accepted} accepted, {refused} refused with 422{message}; "
          f"aggregator RSS {now:.0f} MB (peak {peak:.0f} MB) | target refused past the limit, "
          f"RSS < 200 MB: {'met' if refused and now < 200 else 'NOT met'}")


async def start_aggregator(tmp, name):
    port = free_port()
    cfg = os.path.join(tmp, f"{name}.toml")
    open(cfg, "w").write(config(os.path.join(tmp, f"{name}.db"), port))
    proc = subprocess.Popen([BIN, "aggregator", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, f"{name}.log"), "w"))
    for _ in range(300):
        try:
            if (await request(port, get("/api/health"), 2))[0] == 200:
                break
        except OSError:
            await asyncio.sleep(0.1)
    return proc, port


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    seconds = int(os.environ.get("BENCH_SECONDS", "20"))
    tmp = tempfile.mkdtemp(prefix="wl-hardening-")
    procs = []
    try:
        proc, port = await start_aggregator(tmp, "a")
        procs.append(proc)
        print(f"aggregator {BIN} pid {proc.pid}, open-file limit (client) {hard}, {os.cpu_count()} CPUs; "
              f"start RSS {rss_mb(proc.pid):.0f} MB")
        await case_connections(port, seconds)
        await case_big_bodies(port)
        print(f"  aggregator RSS after the big bodies {rss_mb(proc.pid):.0f} MB (peak {rss_mb(proc.pid, 'VmHWM'):.0f} MB)")
        stop(proc)
        # A fresh process, so its RSS is the series' and not the big bodies'.
        proc, port = await start_aggregator(tmp, "b")
        procs.append(proc)
        await case_series(port, proc.pid)
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: build it (cargo build --release) or set WATTLEDGER_BIN")
    asyncio.run(main())
