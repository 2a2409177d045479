"""The official MCP conformance suite's server scenarios
(@modelcontextprotocol/conformance, pinned in tests/mcp/npm: 0.1.13, the
last release that runs on Node 20) against the reference server-everything,
directly and through `tollgate mcp http` with a policy that permits
everything: every check that passes directly passes through the gateway.

The suite's client sends no credentials of its own; through the gateway it
carries a Tollgate caller's bearer token (conformance_bearer.mjs, preloaded
into its Node process), as any client of the gateway must. server-everything
is not the suite's own conformance server: the scenarios that call its test
tools (`test_image_content`, …) fail directly too, and are compared all the
same."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import BIN, NPM, ROOT, Gate
from test_http import Proxy

SUITE = NPM / "node_modules/@modelcontextprotocol/conformance"
SUMMARY = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$")


def conformance(
    url: str, cwd: Path, *, token: str | None = None, scenario: str | None = None
) -> dict[str, tuple[int, int]]:
    """Runs the suite's server scenarios against `url`: per scenario, its
    checks passed and failed (from the suite's summary)."""
    assert SUITE.exists(), f"{SUITE} is missing: run make test (it installs it)"
    command = ["node"]
    env = dict(os.environ)
    if token is not None:
        command += ["--import", str(ROOT / "tests/mcp/conformance_bearer.mjs")]
        env.update(
            TOLLGATE_CONFORMANCE_URL=url,
            TOLLGATE_CONFORMANCE_TOKEN=token,
            TOLLGATE_CONFORMANCE_PACKAGE=str(SUITE / "package.json"),
        )
    command += [str(SUITE / "dist/index.js"), "server", "--url", url]
    if scenario is not None:
        command += ["--scenario", scenario]
    run = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    results = {
        m[1]: (int(m[2]), int(m[3]))
        for m in (SUMMARY.match(line) for line in run.stdout.splitlines())
        if m is not None
    }
    if scenario is not None and not results:
        # One scenario prints its checks, not the summary.
        m = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", run.stdout)
        assert m is not None, run.stdout + run.stderr
        results[scenario] = (int(m[1]), int(m[3]))
    assert results, f"the suite printed no results:\n{run.stdout}\n{run.stderr}"
    return results


def test_every_check_that_passes_directly_passes_through_the_gateway(
    gate: Gate, everything_http: str, tmp_path: Path
) -> None:
    published = subprocess.run(
        [
            str(BIN / "tollgate"), "policy", "publish", str(ROOT / "tests/mcp/permit-all"),
            "--activate", "--url", gate.url, "--token-file",
            str(gate.token_file.parent / "admin.token"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    proxy = Proxy(gate, "everything", everything_http, "--actor", "agent-mcp")
    try:
        direct = conformance(everything_http, tmp_path)
        through = conformance(proxy.url, tmp_path, token=proxy.token)
        # Without the caller's token the gateway lets nothing through.
        refused = conformance(proxy.url, tmp_path, scenario="server-initialize")
    finally:
        proxy.stop()

    assert len(direct) >= 30, direct
    passing = {s for s, (_, failed) in direct.items() if failed == 0}
    assert len(passing) >= 10, f"too few scenarios pass directly to compare: {direct}"
    lost = {
        s: (direct[s], through.get(s)) for s in direct if through.get(s, (0, 0))[0] < direct[s][0]
    }
    assert not lost, f"checks that pass directly but not through the gateway: {lost}"
    assert {s for s, (_, failed) in through.items() if failed == 0} >= passing
    assert refused["server-initialize"] == (0, 1)
