"""Reads a fake NVML library through NVIDIA's own Python binding (nvidia-ml-py) and
prints what it reads as JSON, in the shape of `wattledger gpus --json`, so that a test
can compare the two. This checks the fake against NVIDIA's ABI as pynvml uses it
(nvmlInitWithFlags, v1 memory struct, nvmlErrorString), not only as nvml-wrapper does.

usage: pynvml_check.py LIB UNIX_NS [UNIX_NS ...]
Pins the fake's clock with its control symbol (fakeNvmlSetSimTimeNs) before each read;
prints {"<unix_ns>": [gpu, ...], ..., "driver_version": "...", "lost_error": "..."}.
"""

import ctypes
import json
import sys

import pynvml

NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186


def optional(fn, *args):
    """The value, or None when the GPU does not support the reading."""
    try:
        return fn(*args)
    except pynvml.NVMLError_NotSupported:
        return None
    except pynvml.NVMLError_FunctionNotFound:
        return None


def read_gpu(index):
    row = {"index": index}
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        row["uuid"] = optional(pynvml.nvmlDeviceGetUUID, handle)
        row["name"] = optional(pynvml.nvmlDeviceGetName, handle)
        power_mw = None
        fields = optional(pynvml.nvmlDeviceGetFieldValues, handle,
                          [NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT])
        if fields is not None and fields[0].nvmlReturn == pynvml.NVML_SUCCESS:
            power_mw = fields[0].value.uiVal
        if power_mw is None:
            power_mw = optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        row["power_w"] = None if power_mw is None else power_mw / 1000.0
        energy_mj = optional(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        row["energy_j"] = None if energy_mj is None else energy_mj / 1000.0
        util = optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
        row["util_gpu_pct"] = None if util is None else util.gpu
        row["util_mem_pct"] = None if util is None else util.memory
        mem = optional(pynvml.nvmlDeviceGetMemoryInfo, handle)  # v1 struct
        mem2 = optional(pynvml.nvmlDeviceGetMemoryInfo, handle, pynvml.nvmlMemory_v2)
        if mem is not None and mem2 is not None:
            assert (mem.total, mem.used, mem.free) == (mem2.total, mem2.used, mem2.free), "v1 and v2 memory differ"
        row["mem_used_bytes"] = None if mem is None else mem.used
        row["mem_total_bytes"] = None if mem is None else mem.total
        row["temp_c"] = optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
        row["sm_clock_mhz"] = optional(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM)
        limit_mw = optional(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        row["power_limit_w"] = None if limit_mw is None else limit_mw / 1000.0
        row["status"] = "ok"
    except pynvml.NVMLError_GpuIsLost:
        row = {"index": index, "status": "lost"}
    return row


def main():
    lib_path, times = sys.argv[1], [int(t) for t in sys.argv[2:]]
    lib = ctypes.CDLL(lib_path)
    lib.fakeNvmlSetSimTimeNs.argtypes = [ctypes.c_int64]
    lib.fakeNvmlSetSimTimeNs.restype = None
    pynvml.nvmlLib = lib  # load this file instead of the system's libnvidia-ml.so.1
    pynvml.nvmlInit()
    out = {"driver_version": pynvml.nvmlSystemGetDriverVersion()}
    out["lost_error"] = str(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    for t in times:
        lib.fakeNvmlSetSimTimeNs(t)
        count = pynvml.nvmlDeviceGetCount()
        out[str(t)] = [read_gpu(i) for i in range(count)]
    pynvml.nvmlShutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
