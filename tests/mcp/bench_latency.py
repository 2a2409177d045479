"""The latency `tollgate mcp` adds per tools/call: the same `echo` calls
made by the official Python SDK client to server-everything directly and
through the gateway (with a real gate on 127.0.0.1 deciding and logging each
one durably), alternating batches; prints p50 and p90 of each and the
difference, over stdio (`tollgate mcp stdio`) and streamable HTTP
(`tollgate mcp http`). Run by `make bench`.

usage: bench_latency.py [calls-per-batch] [batches] [stdio|http|both]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
from conftest import EVERYTHING, free_port, start_gate, start_server
from mcp import Client, StdioServerParameters
from test_http import Proxy, connect

Connect = Callable[[], AbstractAsyncContextManager[Client]]


def stdio(command: list[str]) -> Connect:
    return lambda: Client(StdioServerParameters(command=command[0], args=command[1:]))


async def timed(open_client: Connect, calls: int) -> list[float]:
    out: list[float] = []
    async with open_client() as client:
        await client.call_tool("echo", {"message": "warm"})
        for i in range(calls):
            t = time.perf_counter()
            r = await client.call_tool("echo", {"message": f"m{i}"})
            out.append(time.perf_counter() - t)
            assert not r.is_error
    return out


def report(mode: str, direct: list[float], gated: list[float]) -> None:
    for name, xs in [("direct", direct), ("gateway", gated)]:
        q = statistics.quantiles(xs, n=10)
        print(
            f"{mode:5} {name:8} p50 {statistics.median(xs) * 1e3:7.3f} ms  p90 {q[8] * 1e3:7.3f} ms"
        )
    added = (statistics.median(gated) - statistics.median(direct)) * 1e3
    print(f"{mode:5} added by the gateway, p50: {added:.3f} ms ({len(direct)} calls each)")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    modes = ["stdio", "http"] if len(sys.argv) <= 3 or sys.argv[3] == "both" else [sys.argv[3]]
    server = ["node", str(EVERYTHING), "stdio"]
    with tempfile.TemporaryDirectory() as tmp:
        gate = start_gate(Path(tmp))
        try:
            if "stdio" in modes:
                direct: list[float] = []
                gated: list[float] = []
                for _ in range(batches):
                    direct += anyio.run(timed, stdio(server), calls)
                    gated += anyio.run(timed, stdio(gate.gateway("everything", server)), calls)
                report("stdio", direct, gated)
            if "http" in modes:
                port = free_port()
                node = start_server(
                    ["node", str(EVERYTHING), "streamableHttp"], port, {"PORT": str(port)}
                )
                upstream = f"http://127.0.0.1:{port}/mcp"
                proxy = Proxy(gate, "everything", upstream, "--actor", "agent-mcp")
                try:
                    direct, gated = [], []
                    for _ in range(batches):
                        direct += anyio.run(timed, lambda: connect(upstream, None), calls)
                        gated += anyio.run(timed, lambda: connect(proxy.url, proxy.token), calls)
                    report("http", direct, gated)
                finally:
                    proxy.stop()
                    node.kill()
        finally:
            gate.process.kill()


if __name__ == "__main__":
    main()
