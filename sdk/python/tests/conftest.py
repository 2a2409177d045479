"""A real gate for the SDK's tests: `tollgate serve` on 127.0.0.1 port 0."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("TOLLGATE_BIN_DIR", Path.home() / ".cache/tollgate/target/release"))


@dataclass
class Gate:
    url: str
    log_key: str
    gate_key: str
    token: str
    socket: Path
    data: Path


def start(dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], Gate]:
    """`tollgate serve` on a fresh data directory under `dir`, also on a
    Unix socket there; `env` adds settings (TOLLGATE_*)."""
    data = dir / "data"
    socket = dir / "gate.sock"
    process = subprocess.Popen(
        [str(BIN / "tollgate"), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TOLLGATE_LOG="warn", TOLLGATE_UNIX_SOCKET=str(socket), **env),
    )
    assert process.stdout is not None
    url = ""
    keys: dict[str, str] = {}
    while not url or len(keys) < 2:
        line = process.stdout.readline()
        assert line, "tollgate exited before its banner"
        if line.startswith("tollgate listening on "):
            url = line.removeprefix("tollgate listening on ").strip()
        keys.update(re.findall(r"(log|gate) key\s+(\S+)", line))
    token = (data / "demo.token").read_text().strip()
    return process, Gate(url, keys["log"], keys["gate"], token, socket, data)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    process, g = start(tmp_path_factory.mktemp("gate"), {})
    yield g
    process.kill()
    process.wait()
