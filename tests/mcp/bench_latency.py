"""The latency `tollgate mcp stdio` adds per tools/call: the same `echo`
calls made by the official Python SDK client to server-everything directly
and through the gateway (with a real gate on 127.0.0.1 deciding and logging
each one durably), alternating batches; prints p50 and p90 of each and the
difference. Run by `make bench`.

usage: bench_latency.py [calls-per-batch] [batches]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from conftest import EVERYTHING, start_gate
from mcp import Client, StdioServerParameters


async def timed(command: list[str], calls: int) -> list[float]:
    out: list[float] = []
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(params) as client:
        await client.call_tool("echo", {"message": "warm"})
        for i in range(calls):
            t = time.perf_counter()
            r = await client.call_tool("echo", {"message": f"m{i}"})
            out.append(time.perf_counter() - t)
            assert not r.is_error
    return out


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    server = ["node", str(EVERYTHING), "stdio"]
    with tempfile.TemporaryDirectory() as tmp:
        gate = start_gate(Path(tmp))
        try:
            direct: list[float] = []
            gated: list[float] = []
            for _ in range(batches):
                direct += anyio.run(timed, server, calls)
                gated += anyio.run(timed, gate.gateway("everything", server), calls)
        finally:
            gate.process.kill()
    for name, xs in [("direct", direct), ("gateway", gated)]:
        q = statistics.quantiles(xs, n=10)
        print(f"{name:8} p50 {statistics.median(xs) * 1e3:7.3f} ms  p90 {q[8] * 1e3:7.3f} ms")
    added = (statistics.median(gated) - statistics.median(direct)) * 1e3
    print(f"added by the gateway, p50: {added:.3f} ms ({len(direct)} calls each)")


if __name__ == "__main__":
    main()
