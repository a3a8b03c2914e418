"""pyasic side of the miner sweep benchmark (run by miners_sweep.py in the pyasic venv).

Reads every address with pyasic's best setting for a known fleet per
../shared/notes/pyasic-benchmark.md ("direct"): the miner class is built directly (no
get_miner identification) and get_data reads only RPC data, which is exactly one TCP
connection with one `version+summary+stats+pools` multi-command per miner — the same wire
traffic as wattledger's sweep. Unbounded gather (a semaphore only slows this mode down).
"""
import asyncio
import json
import sys
import time

from pyasic.miners.antminer.bmminer.X19.S19 import BMMinerS19Pro

INCLUDE = ["api_ver", "fw_ver", "hashrate", "expected_hashrate", "fans", "uptime", "pools"]


async def one(ip):
    return await BMMinerS19Pro(ip).get_data(include=INCLUDE)


async def main(ips):
    t = time.perf_counter()
    res = await asyncio.gather(*(one(ip) for ip in ips), return_exceptions=True)
    wall = time.perf_counter() - t
    good = [r for r in res if not isinstance(r, Exception) and r.hashrate is not None]
    rates = sorted({round(float(r.hashrate), 3) for r in good})
    print(json.dumps({"n": len(ips), "ok": len(good), "inner_wall_s": wall, "hashrates_ths": rates[:5]}))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        ips = [line.split(":")[0].strip() for line in f if line.strip()]
    asyncio.run(main(ips))
