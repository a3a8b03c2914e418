#!/usr/bin/env python3
"""snmpd pass_persist script: serves PDU outlet tables whose values follow the clock.

Tables (numeric OIDs, see src/collect/meters/snmp.rs for what each column means):
  APC PowerNet-MIB rPDU2OutletMeteredStatusTable  .1.3.6.1.4.1.318.1.1.26.9.4.3.1
    .7.N power W (INTEGER), .11.N energy 0.1 kWh (INTEGER); outlet 3's energy is a
    STRING that is not a number (a hostile value).
  Raritan PDU2-MIB measurementsOutletSensorValue  .1.3.6.1.4.1.13742.6.5.4.3.1.4
    .1.N.5 active power W, .1.N.8 active energy Wh (Gauge32); outlet 2's energy counter
    runs through its whole 32-bit range every 8 s (starting 2000 Wh below the top), so a
    test sees it wrap whenever it runs.
  ServerTech Sentry4 st4OutletMonitorTable  .1.3.6.1.4.1.1718.4.1.8.3.1
    .7.1.1.N power W, .14.1.1.N energy Wh (INTEGER); outlet 2 reports -1 (n/a).
Power of APC outlet N is 1000*N W plus 10 W per second since start, modulo 100.
"""
import sys, time

T0 = time.time()

def rows():
    t = time.time() - T0
    out = {}
    apc = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1)
    for n in range(1, 5):
        w = 1000 * n + int(10 * t) % 100
        out[apc + (7, n)] = ("integer", str(w))
        if n == 3:
            out[apc + (11, n)] = ("string", "n/a")
        else:
            out[apc + (11, n)] = ("integer", str(int(10 * n + t * n)))
    rar = (1, 3, 6, 1, 4, 1, 13742, 6, 5, 4, 3, 1, 4)
    for n in range(1, 3):
        out[rar + (1, n, 1)] = ("gauge", "3")
        out[rar + (1, n, 5)] = ("gauge", str(500 * n))
        wh = (2**32 - 2000 + int(2**32 / 8 * t)) % 2**32 if n == 2 else 100 + int(t)
        out[rar + (1, n, 8)] = ("gauge", str(wh))
    st4 = (1, 3, 6, 1, 4, 1, 1718, 4, 1, 8, 3, 1)
    for n in range(1, 3):
        out[st4 + (7, 1, 1, n)] = ("integer", "-1" if n == 2 else "750")
        out[st4 + (14, 1, 1, n)] = ("integer", "-1" if n == 2 else str(5000 + int(t)))
    return out

def parse(oid):
    return tuple(int(x) for x in oid.strip().strip(".").split(".") if x != "")

def fmt(oid):
    return "." + ".".join(map(str, oid))

def main():
    inp = sys.stdin
    while True:
        line = inp.readline()
        if not line:
            return
        cmd = line.strip()
        if cmd == "PING":
            print("PONG", flush=True)
        elif cmd in ("get", "getnext"):
            oid = parse(inp.readline())
            table = rows()
            if cmd == "get":
                hit = oid if oid in table else None
            else:
                later = sorted(k for k in table if k > oid)
                hit = later[0] if later else None
            if hit is None:
                print("NONE", flush=True)
            else:
                typ, val = table[hit]
                print(f"{fmt(hit)}\n{typ}\n{val}", flush=True)
        elif cmd == "set":
            inp.readline(); inp.readline()
            print("not-writable", flush=True)
        elif cmd == "":
            continue
        else:
            print("NONE", flush=True)

if __name__ == "__main__":
    main()
