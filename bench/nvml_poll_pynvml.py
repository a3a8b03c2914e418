"""The peer side of the NVML poll benchmark: the same reads wattledger's NVML source
does per poll (count, handle, power fields, energy, utilization, memory, temperature,
SM clock, power limit for every GPU), done by NVIDIA's Python binding (nvidia-ml-py)
against the same fake library. Prints one JSON line: wall and CPU ns per poll.

usage: nvml_poll_pynvml.py LIB POLLS
"""

import ctypes
import json
import sys
import time

import pynvml

FIELDS = [185, 186]  # NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT


def poll():
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        f = pynvml.nvmlDeviceGetFieldValues(h, FIELDS)
        power_w = f[0].value.uiVal / 1000.0
        instant_w = f[1].value.uiVal / 1000.0
        energy_j = pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        m = pynvml.nvmlDeviceGetMemoryInfo(h, pynvml.nvmlMemory_v2)
        t = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        c = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
        limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        out.append((power_w, instant_w, energy_j, u.gpu, u.memory, m.used, m.total, t, c, limit_w))
    return out


def main():
    lib_path, polls = sys.argv[1], int(sys.argv[2])
    pynvml.nvmlLib = ctypes.CDLL(lib_path)
    pynvml.nvmlInit()
    gpus = len(poll())
    for _ in range(max(polls // 10, 10)):
        poll()
    wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(polls):
        poll()
    wall, cpu = time.perf_counter_ns() - wall0, time.process_time_ns() - cpu0
    pynvml.nvmlShutdown()
    print(json.dumps({"gpus": gpus, "polls": polls, "wall_ns_per_poll": wall / polls, "cpu_ns_per_poll": cpu / polls}))


if __name__ == "__main__":
    main()
