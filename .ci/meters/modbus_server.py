#!/usr/bin/env python3
"""Modbus TCP meter for the tests (PyPI pyModbusTCP), values following the clock.

  input 0x0034/0x0048: Eastron SDM630 total power (float32 W) and import energy
                       (float32 kWh), high word first: 2500 W, 100 kWh + 2500 W * t.
  holding 0x0028/0x0034: Carlo Gavazzi EM340 power (int32, 0.1 W) and energy (int32,
                       0.1 kWh), low word first: 1200.5 W, 50 kWh + 1200.5 W * t.
  holding 100/102: a generic map's uint32 power (W) and energy (Wh), high word first;
                   the energy counter runs through its 32-bit range every 8 s (a wrap a
                   test always sees).
Usage: modbus_server.py PORT
"""
import struct, sys, time
from pyModbusTCP.server import ModbusServer

def f32_be(x):
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [hi, lo]

def i32_le(x):
    hi, lo = struct.unpack(">HH", struct.pack(">i", int(x)))
    return [lo, hi]

def u32_be(x):
    hi, lo = struct.unpack(">HH", struct.pack(">I", int(x) % 2**32))
    return [hi, lo]

server = ModbusServer("127.0.0.1", int(sys.argv[1]), no_block=True)
server.start()
t0 = time.time()
while True:
    t = time.time() - t0
    db = server.data_bank
    db.set_input_registers(0x34, f32_be(2500.0))
    db.set_input_registers(0x48, f32_be(100.0 + 2500.0 * t / 3.6e6 * 1000))
    db.set_holding_registers(0x28, i32_le(12005))
    db.set_holding_registers(0x34, i32_le(500 + 12005 * t / 3.6e6 * 1000 / 10))
    db.set_holding_registers(100, u32_be(777))
    db.set_holding_registers(102, u32_be(2**32 - 1000 + 2**32 / 8 * t))
    time.sleep(0.05)
