"""The peer of the agent footprint benchmark: the loop an operator would write in
Python for the same job, with the usual libraries (nvidia-ml-py, pyasic,
influxdb-client). It reads the same 8 GPUs every second and the same miners every
30 s, and writes the same points (gzip, one request per poll) to the same server.
It has no spool: the agent's disk spool and fsync are extra work the agent does.

usage: agent_footprint_py.py NVML_LIB IPS_FILE URL SECONDS
"""
import asyncio
import ctypes
import socket
import sys
import time

import pynvml
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from pyasic.miners.antminer.bmminer.X19.S19 import BMMinerS19Pro

FIELDS = [185, 186]  # NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT
# RPC data only: one connection with one `version+summary+stats+pools` multi-command per
# miner (as measured in the pyasic notes), no web requests.
INCLUDE = ["api_ver", "fw_ver", "hashrate", "expected_hashrate", "fans", "uptime", "pools"]
SITE, HOST = "bench", socket.gethostname() + "-py"


def gpu_points():
    now = time.time_ns()
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        f = pynvml.nvmlDeviceGetFieldValues(h, FIELDS)
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        m = pynvml.nvmlDeviceGetMemoryInfo(h, pynvml.nvmlMemory_v2)
        p = (
            Point("gpu").tag("site", SITE).tag("host", HOST).tag("gpu", str(i))
            .tag("uuid", pynvml.nvmlDeviceGetUUID(h)).tag("model", pynvml.nvmlDeviceGetName(h))
            .field("power_w", f[0].value.uiVal / 1000.0)
            .field("energy_j", pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0)
            .field("util_gpu_pct", u.gpu).field("util_mem_pct", u.memory)
            .field("mem_used_bytes", m.used).field("mem_total_bytes", m.total)
            .field("temp_c", pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            .field("sm_clock_mhz", pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))
            .field("power_limit_w", pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)
            .time(now)
        )
        out.append(p)
    return out


async def miner_point(ip, sem, now):
    async with sem:
        try:
            d = await BMMinerS19Pro(ip).get_data(include=INCLUDE)
        except Exception:
            return Point("asic").tag("site", SITE).tag("host", HOST).tag("miner", ip).field("online", False).time(now)
    temps = [b.temp for b in (d.hashboards or []) if b.temp is not None]
    fans = [f.speed for f in (d.fans or []) if f.speed is not None]
    p = Point("asic").tag("site", SITE).tag("host", HOST).tag("miner", ip).tag("model", str(d.model))
    if d.hashrate is not None:
        p.field("hashrate_ths", float(d.hashrate))
    if d.wattage is not None:
        p.field("power_w", float(d.wattage))
    if temps:
        p.field("temp_c_max", float(max(temps)))
    if fans:
        p.field("fan_rpm_avg", sum(fans) / len(fans))
    if d.uptime is not None:
        p.field("uptime_s", int(d.uptime))
    return p.field("online", True).time(now)


async def main():
    lib, ips_file, url, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    ips = [line.split(":")[0].strip() for line in open(ips_file) if line.strip()]
    pynvml.nvmlLib = ctypes.CDLL(lib)
    pynvml.nvmlInit()
    client = InfluxDBClient(url=url, token="bench", org="bench", enable_gzip=True)
    write = client.write_api(write_options=SYNCHRONOUS)
    sem = asyncio.Semaphore(50)
    end = time.monotonic() + seconds

    async def gpus():
        while time.monotonic() < end:
            t = time.monotonic()
            write.write(bucket="bench", record=gpu_points())
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    async def miners():
        while time.monotonic() < end:
            t = time.monotonic()
            now = time.time_ns()
            points = await asyncio.gather(*(miner_point(ip, sem, now) for ip in ips))
            write.write(bucket="bench", record=points)
            await asyncio.sleep(max(0.0, 30.0 - (time.monotonic() - t)))

    await asyncio.gather(gpus(), miners())
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
