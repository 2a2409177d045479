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


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    data = tmp_path_factory.mktemp("gate") / "data"
    process = subprocess.Popen(
        [str(BIN / "tollgate"), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TOLLGATE_LOG="warn"),
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
    yield Gate(url, keys["log"], keys["gate"], token)
    process.kill()
    process.wait()
