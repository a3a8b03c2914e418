"""pyasic side of the miner sweep benchmark (run by miners_sweep.py in the pyasic venv).

Two modes, one JSON summary line each:

- `direct` (default): pyasic's best setting for a known fleet per
  ../shared/notes/pyasic-benchmark.md: the miner class is built directly (no get_miner
  identification) and get_data reads only RPC data, which is exactly one TCP connection with
  one `version+summary+stats+pools` multi-command per miner — the same wire traffic as
  wattledger's sweep of a stock Antminer. Unbounded gather (a semaphore only slows this mode).
- `full`: the default full read a pyasic user writes: `pyasic.get_miner(ip)` (its own
  identification) then `get_data()` with every data option but `config`: pyasic builds the
  LuxOS config from the `groups` command, of which no capture exists, so the simulator
  answers it with an error and pyasic then drops the whole reading. Leaving it out saves
  pyasic that request; it does not add work. At most 50 miners at a time:
  an unbounded gather of thousands of get_miner calls misses pyasic's own 3 s identification
  timeout on one core and identifies none (see the notes).
"""
import asyncio
import json
import sys
import time

INCLUDE = ["api_ver", "fw_ver", "hashrate", "expected_hashrate", "fans", "uptime", "pools"]
FULL_CONCURRENCY = 50


async def direct(ip):
    from pyasic.miners.antminer.bmminer.X19.S19 import BMMinerS19Pro

    return await BMMinerS19Pro(ip).get_data(include=INCLUDE)


async def full(ip, sem):
    import pyasic

    async with sem:
        miner = await pyasic.get_miner(ip)
        if miner is None:
            return None
        return await miner.get_data(exclude=["config"])


async def main(mode, ips):
    t = time.perf_counter()
    if mode == "full":
        sem = asyncio.Semaphore(FULL_CONCURRENCY)
        res = await asyncio.gather(*(full(ip, sem) for ip in ips), return_exceptions=True)
    else:
        res = await asyncio.gather(*(direct(ip) for ip in ips), return_exceptions=True)
    wall = time.perf_counter() - t
    data = [r for r in res if r is not None and not isinstance(r, Exception)]
    good = [r for r in data if r.hashrate is not None]
    rates = sorted({round(float(r.hashrate), 3) for r in good})
    models = sorted({f"{r.make} {r.model}" for r in data})
    print(json.dumps({"n": len(ips), "identified": len(data), "ok": len(good), "inner_wall_s": wall,
                      "models": models[:5], "hashrates_ths": rates[:5]}))


if __name__ == "__main__":
    path, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "direct")
    with open(path) as f:
        ips = [line.split(":")[0].strip() for line in f if line.strip()]
    asyncio.run(main(mode, ips))
