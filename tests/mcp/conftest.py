"""Fixtures for the MCP gateway tests: the real `tollgate` binary on
127.0.0.1 port 0 with the example MCP policy active, and the command lines
that put an MCP server behind it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TOLLGATE_BIN_DIR", Path.home() / ".cache/tollgate/target/release"))
NPM = Path(os.environ.get("TOLLGATE_NPM_DIR", Path.home() / ".cache/tollgate/npm"))
EVERYTHING = NPM / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"


@dataclass
class Gate:
    """A running gate and what a client needs to trust and call it."""

    url: str
    log_key: str
    gate_key: str
    token_file: Path
    process: subprocess.Popen[str]

    def gateway(
        self,
        server: str,
        command: list[str],
        *,
        url: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> list[str]:
        """`tollgate mcp stdio` in front of `command`, deciding for agent-mcp."""
        return [
            str(BIN / "tollgate"), "mcp", "stdio",
            "--server", server, "--actor", "agent-mcp",
            "--url", url or self.url, "--token-file", str(self.token_file),
            "--log-key", self.log_key, "--gate-key", self.gate_key, *extra,
            "--", *command,
        ]  # fmt: skip

    def log_size(self) -> int:
        """The size of the gate's log (its latest checkpoint)."""
        with urllib.request.urlopen(f"{self.url}/log/checkpoint") as r:
            return int(r.read().decode().split("\n")[1])


def start_gate(tmp_path: Path, env: dict[str, str] | None = None) -> Gate:
    """`tollgate serve` on a fresh data directory, the example MCP policy
    active; `env` added to its environment."""
    data = tmp_path / "data"
    env = dict(os.environ, TOLLGATE_LOG="warn", **(env or {}))
    process = subprocess.Popen(
        [str(BIN / "tollgate"), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    banner = ""
    url = None
    while url is None:
        line = process.stdout.readline()
        assert line, f"tollgate exited before listening: {banner}"
        banner += line
        if line.startswith("tollgate listening on "):
            url = line.removeprefix("tollgate listening on ").strip()
    keys: dict[str, str] = {}
    while len(keys) < 2:
        line = process.stdout.readline()
        assert line, f"tollgate's banner has no keys: {banner}"
        banner += line
        keys.update(re.findall(r"(log|gate) key\s+(\S+)", line))
    publish = subprocess.run(
        [
            str(BIN / "tollgate"), "policy", "publish", str(ROOT / "examples/policies/mcp-rego"),
            "--activate", "--url", url, "--token-file", str(data / "admin.token"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert publish.returncode == 0, publish.stderr
    return Gate(url, keys["log"], keys["gate"], data / "demo.token", process)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = start_gate(tmp_path)
    yield g
    g.process.kill()
    g.process.wait()


@pytest.fixture
def everything() -> list[str]:
    """The reference server, over stdio."""
    assert EVERYTHING.exists(), f"{EVERYTHING} is missing: run make test (it installs it)"
    return ["node", str(EVERYTHING), "stdio"]


@pytest.fixture
def notes(tmp_path: Path) -> tuple[list[str], Path]:
    """The Python SDK server with a side effect, and the file it records calls in."""
    log = tmp_path / "notes.log"
    log.touch()
    command = ["env", f"NOTES_LOG={log}", sys.executable, str(ROOT / "tests/mcp/notes_server.py")]
    return command, log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def start_server(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command,
        env=dict(os.environ, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


@pytest.fixture
def everything_http() -> Iterator[str]:
    """The reference server over streamable HTTP: its endpoint."""
    assert EVERYTHING.exists(), f"{EVERYTHING} is missing: run make test (it installs it)"
    port = free_port()
    process = start_server(["node", str(EVERYTHING), "streamableHttp"], port, {"PORT": str(port)})
    yield f"http://127.0.0.1:{port}/mcp"
    process.kill()
    process.wait()
