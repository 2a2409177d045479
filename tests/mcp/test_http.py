"""`tollgate mcp http` between the official Python SDK client (the agent)
and real MCP servers speaking streamable HTTP: the reference
server-everything (Node, sessions, event-stream answers) and a server
written with the Python SDK (with sessions, and stateless) whose side
effects show which calls reached it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from conftest import BIN, ROOT, Gate, free_port, start_server
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from test_stdio import META, decision, proofcheck, text


def notes_http(tmp_path: Path, *mode: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = tmp_path / "notes.log"
    log.touch()
    port = free_port()
    command = [sys.executable, str(ROOT / "tests/mcp/notes_server.py"), "http", str(port), *mode]
    process = start_server(command, port, {"NOTES_LOG": str(log)})
    return process, f"http://127.0.0.1:{port}/mcp", log


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The Python SDK server over streamable HTTP: its endpoint and call log."""
    process, url, log = notes_http(tmp_path)
    yield url, log
    process.kill()
    process.wait()


class Proxy:
    """A running `tollgate mcp http`."""

    def __init__(
        self, gate: Gate, server: str, upstream: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [
                str(BIN / "tollgate"), "mcp", "http", "--server", server,
                "--upstream", upstream, "--listen", "127.0.0.1:0",
                # --gate: the old spelling of --url, kept as an alias.
                "--gate", gate.url, "--log-key", gate.log_key, "--gate-key", gate.gate_key,
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, TOLLGATE_LOG="warn", **(env or {})),
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "listening on " in line, line
        self.url = line.split("listening on ")[1].split()[0]
        self.token = gate.token_file.read_text().strip()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


ProxyOf = Callable[..., Proxy]


@pytest.fixture
def proxy_of(gate: Gate) -> Iterator[ProxyOf]:
    """Starts `tollgate mcp http` (server name, upstream, extra arguments) before `gate`."""
    started: list[Proxy] = []

    def start(server: str, upstream: str, *extra: str) -> Proxy:
        started.append(Proxy(gate, server, upstream, *extra))
        return started[-1]

    yield start
    for p in started:
        p.stop()


@asynccontextmanager
async def connect(
    url: str, token: str | None, mode: str = "auto", **headers: str
) -> AsyncIterator[Client]:
    """The official client through the proxy, with the caller's bearer token;
    `mode` "legacy" speaks the initialize handshake and sessions, "auto" the
    newest protocol the server speaks (2026-07-28 for the Python SDK's)."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client


def test_a_permitted_call_works_and_carries_a_receipt_proofcheck_verifies(
    gate: Gate, everything_http: str, proxy_of: ProxyOf, tmp_path: Path
) -> None:
    proxy = proxy_of("everything", everything_http, "--actor", "agent-mcp")

    async def run() -> None:
        async with connect(proxy.url, proxy.token) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "get-env", "get-sum"} <= listed
            result = await client.call_tool("echo", {"message": "over streamable HTTP"})
            assert not result.is_error, text(result)
            assert "over streamable HTTP" in text(result)
            d = decision(result)
            assert d["decision"] == "PERMIT"
            proofcheck(gate, d, tmp_path)
            denied = await client.call_tool("get-env", {})
            assert denied.is_error and "DENY" in text(denied), text(denied)
            assert decision(denied)["decision"] == "DENY"

    anyio.run(run)


def test_progress_notifications_pass_through_the_event_stream(
    gate: Gate, everything_http: str, proxy_of: ProxyOf
) -> None:
    proxy = proxy_of("everything", everything_http, "--actor", "agent-mcp")
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def run() -> None:
        async with connect(proxy.url, proxy.token) as client:
            r = await client.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            assert not r.is_error, text(r)
            assert decision(r)["decision"] == "PERMIT"

    anyio.run(run)
    assert len(seen) >= 2, seen


# The Python SDK's server with sessions and the handshake, and stateless
# with the 2026-07-28 protocol.
MODES = pytest.mark.parametrize(
    ("server_mode", "client_mode"),
    [((), "legacy"), (("stateless",), "auto")],
    ids=["sessions", "stateless"],
)


@MODES
def test_denied_and_invalid_calls_never_reach_the_server(
    gate: Gate,
    proxy_of: ProxyOf,
    tmp_path: Path,
    server_mode: tuple[str, ...],
    client_mode: str,
) -> None:
    server, upstream, log = notes_http(tmp_path, *server_mode)
    try:
        proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")

        async def run() -> None:
            async with connect(proxy.url, proxy.token, client_mode) as client:
                ok = await client.call_tool("write_note", {"text": "kept"})
                assert not ok.is_error, text(ok)
                assert decision(ok)["decision"] == "PERMIT"
                denied = await client.call_tool("erase_everything", {"confirm": True})
                assert denied.is_error, text(denied)
                assert "SILENCE" in text(denied) or "DENY" in text(denied), text(denied)
                assert decision(denied)["receipt_id"] in text(denied)
                for bad in [{}, {"text": 5}]:
                    r = await client.call_tool("write_note", bad)
                    assert r.is_error and "invalid arguments" in text(r), text(r)
                    assert r.meta is None or META not in r.meta

        anyio.run(run)
        assert log.read_text() == "write_note\tkept\n"
    finally:
        server.kill()
        server.wait()


def test_the_callers_token_is_required_and_checked(
    gate: Gate, notes: tuple[str, Path], proxy_of: ProxyOf
) -> None:
    upstream, log = notes
    proxy = proxy_of("notes", upstream)
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}},
    }  # fmt: skip
    accept = {"Accept": "application/json, text/event-stream"}
    missing = httpx.post(proxy.url, json=init, headers=accept)
    assert missing.status_code == 401, missing.text
    assert "no bearer token" in missing.json()["error"]["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(proxy.url, json=init, headers={**accept, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401, wrong.text
    assert "not a live caller" in wrong.json()["error"]["message"]
    # No --actor, and the demo caller may speak for `agent-*`: which actor must be said.
    auth = {**accept, "Authorization": f"Bearer {proxy.token}"}
    unsaid = httpx.post(proxy.url, json=init, headers=auth)
    assert unsaid.status_code == 400, unsaid.text
    assert "Tollgate-Actor" in unsaid.json()["error"]["message"]
    said = httpx.post(proxy.url, json=init, headers={**auth, "Tollgate-Actor": "agent-mcp"})
    assert said.status_code == 200, said.text

    async def run() -> None:
        someone = {"Tollgate-Actor": "someone-else"}
        async with connect(proxy.url, proxy.token, **someone) as client:
            r = await client.call_tool("write_note", {"text": "as someone else"})
            assert r.is_error and "SILENCE" in text(r), text(r)
            assert "actor_not_bound_to_caller" in text(r), text(r)

    anyio.run(run)
    assert log.read_text() == ""


@MODES
def test_a_cancelled_call_is_cancelled_at_the_server(
    gate: Gate,
    proxy_of: ProxyOf,
    tmp_path: Path,
    server_mode: tuple[str, ...],
    client_mode: str,
) -> None:
    server, upstream, log = notes_http(tmp_path, *server_mode)
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")

    async def run() -> None:
        # Legacy: the client sends notifications/cancelled; 2026-07-28: it
        # closes the request's stream.
        async with connect(proxy.url, proxy.token, client_mode) as client:
            with anyio.move_on_after(1.5) as scope:
                await client.call_tool("slow_echo", {"text": "never finished"})
            assert scope.cancelled_caught
            # The server saw the cancellation (its handler was cancelled).
            with anyio.fail_after(10):
                while "slow_echo cancelled" not in log.read_text():
                    await anyio.sleep(0.05)
            # The session still works.
            ok = await client.call_tool("write_note", {"text": "after"})
            assert not ok.is_error, text(ok)

    try:
        anyio.run(run)
        assert "slow_echo\tnever finished" not in log.read_text()
    finally:
        server.kill()
        server.wait()


def tls_files(dir: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it issued for 127.0.0.1: (CA, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, Any] | None,
              ca: bool) -> x509.Certificate:  # fmt: skip
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        signer_name, signer_key = issuer or (subject, key)
        b = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return b.sign(signer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("tollgate test CA", ca_key, None, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue("127.0.0.1", key, ("tollgate test CA", ca_key), False)
    paths = dir / "ca.pem", dir / "cert.pem", dir / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_an_https_upstream_is_verified_against_its_ca(
    gate: Gate, proxy_of: ProxyOf, tmp_path: Path
) -> None:
    """An https:// upstream: verified against --upstream-ca-file (a call
    goes through), and refused when its certificate does not verify (the
    system's roots do not know the test CA): the call never runs."""
    ca, cert, key = tls_files(tmp_path)
    log = tmp_path / "notes.log"
    log.touch()
    port = free_port()
    command = [sys.executable, str(ROOT / "tests/mcp/notes_server.py"), "https", str(port),
               str(cert), str(key)]  # fmt: skip
    server = start_server(command, port, {"NOTES_LOG": str(log)})
    upstream = f"https://127.0.0.1:{port}/mcp"
    verified = proxy_of("notes", upstream, "--actor", "agent-mcp", "--upstream-ca-file", str(ca))
    unverified = proxy_of("notes", upstream, "--actor", "agent-mcp")

    async def run() -> None:
        async with connect(verified.url, verified.token, "legacy") as client:
            ok = await client.call_tool("write_note", {"text": "over tls"})
            assert not ok.is_error, text(ok)
            assert decision(ok)["decision"] == "PERMIT"
        with anyio.fail_after(30), pytest.raises(BaseExceptionGroup) as refused:
            async with connect(unverified.url, unverified.token, "legacy") as client:
                await client.call_tool("write_note", {"text": "unverified"})
        errors = refused.value.exceptions
        while len(errors) == 1 and isinstance(errors[0], BaseExceptionGroup):
            errors = errors[0].exceptions
        assert len(errors) == 1 and isinstance(errors[0], MCPError), errors
        assert "TLS: invalid peer certificate" in str(errors[0]), errors[0]

    try:
        anyio.run(run)
        assert log.read_text() == "write_note\tover tls\n"
    finally:
        server.kill()
        server.wait()


@MODES
def test_an_answer_too_large_to_relay_is_a_json_rpc_error(
    gate: Gate,
    proxy_of: ProxyOf,
    tmp_path: Path,
    server_mode: tuple[str, ...],
    client_mode: str,
) -> None:
    """The server's answer to a permitted call exceeds what the gateway
    relays (16 MiB): the client gets a JSON-RPC error naming why, not an
    empty body, and the session keeps working."""
    server, upstream, _ = notes_http(tmp_path, *server_mode)
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")

    async def run() -> None:
        async with connect(proxy.url, proxy.token, client_mode) as client:
            with anyio.fail_after(60), pytest.raises(MCPError, match="exceeds 16 MiB"):
                await client.call_tool("big_answer", {"mib": 17})
            ok = await client.call_tool("write_note", {"text": "after"})
            assert not ok.is_error, text(ok)

    try:
        anyio.run(run)
    finally:
        server.kill()
        server.wait()


def test_a_gate_that_is_down_fails_closed(
    gate: Gate, notes: tuple[str, Path], proxy_of: ProxyOf
) -> None:
    upstream, log = notes
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")

    async def run() -> None:
        async with connect(proxy.url, proxy.token) as client:
            assert (await client.list_tools()).tools
            gate.process.kill()
            gate.process.wait()
            r = await client.call_tool("write_note", {"text": "must not land"})
            assert r.is_error
            assert "SILENCE" in text(r) and "no verified decision" in text(r), text(r)

    anyio.run(run)
    assert log.read_text() == ""


def test_hide_denied_over_http(gate: Gate, everything_http: str, proxy_of: ProxyOf) -> None:
    proxy = proxy_of("everything", everything_http, "--actor", "agent-mcp", "--hide-denied")

    async def run() -> None:
        size = gate.log_size()
        async with connect(proxy.url, proxy.token) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert "get-env" not in listed and "echo" in listed, listed
        assert gate.log_size() == size

    anyio.run(run)


def test_malformed_messages_get_a_json_rpc_error_and_the_proxy_keeps_serving(
    gate: Gate, notes: tuple[str, Path], proxy_of: ProxyOf
) -> None:
    upstream, log = notes
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {proxy.token}",
    }
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write_note"}}
    for body, code in [
        (b"garbage", -32700),
        (json.dumps([call]).encode(), -32600),
        (b'{"jsonrpc": "2.0", "id": 2, "method": "ping", "id": 3}', -32700),
        (b"\xff\xfe", -32700),
    ]:
        r = httpx.post(proxy.url, content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code, r.text

    async def run() -> None:
        async with connect(proxy.url, proxy.token) as client:
            ok = await client.call_tool("write_note", {"text": "still serving"})
            assert not ok.is_error, text(ok)

    anyio.run(run)
    assert log.read_text() == "write_note\tstill serving\n"


def test_the_gate_can_run_inside_the_http_gateway(
    gate: Gate, notes: tuple[str, Path], tmp_path: Path
) -> None:
    """`--data-dir`: the gate runs in the proxy's own process on the data
    directory `tollgate serve` made (and no longer holds); clients' tokens
    are that gate's callers; receipts say `via: in_process` and verify."""
    upstream, log = notes
    data = gate.token_file.parent
    token = gate.token_file.read_text().strip()
    gate.process.terminate()
    assert gate.process.wait(timeout=30) == 0
    process = subprocess.Popen(
        [str(BIN / "tollgate"), "mcp", "http", "--server", "notes", "--upstream", upstream,
         "--listen", "127.0.0.1:0", "--data-dir", str(data), "--actor", "agent-mcp",
         "--hide-denied"],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TOLLGATE_LOG="warn"),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on " in line, line
        url = line.split("listening on ")[1].split()[0]

        async def run() -> None:
            async with connect(url, token) as client:
                assert (await client.list_tools()).tools
                ok = await client.call_tool("write_note", {"text": "in process over HTTP"})
                assert not ok.is_error, text(ok)
                d = decision(ok)
                assert d["decision"] == "PERMIT" and '"via":"in_process"' in d["receipt"]
                proofcheck(gate, d, tmp_path)

        anyio.run(run)
        wrong = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": "Bearer " + "0" * 64},
        )
        assert wrong.status_code == 401 and "not a live caller" in wrong.text, wrong.text
    finally:
        process.kill()
        process.wait()
    assert log.read_text() == "write_note\tin process over HTTP\n"


def rpc_messages(r: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, JSON or an event stream."""
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line.removeprefix("data:").strip())
            for line in r.text.splitlines()
            if line.startswith("data:") and line.removeprefix("data:").strip()
        ]
    return [r.json()]


def add_caller(gate: Gate, name: str, tmp_path: Path) -> str:
    """A caller with `decide` for agent-mcp: its token."""
    token = tmp_path / f"{name}.token"
    added = subprocess.run(
        [str(BIN / "tollgate"), "caller", "add", name, "--actor", "agent-mcp", "--role",
         "decide", "--token-out", str(token), "--url", gate.url,
         "--token-file", str(gate.token_file.parent / "admin.token")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    return token.read_text().strip()


def test_sessions_belong_to_their_caller_and_request_ids_are_used_once(
    gate: Gate, notes: tuple[str, Path], proxy_of: ProxyOf, tmp_path: Path
) -> None:
    """Another caller naming a session id, or anyone naming one the upstream
    never issued, gets 404 and reaches nothing; a request id sent again in
    a session is refused, so one PERMIT runs the tool once."""
    upstream, log = notes
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")
    other = add_caller(gate, "other", tmp_path)

    def post(token: str, body: dict[str, Any], session: str | None) -> httpx.Response:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
            "MCP-Protocol-Version": "2025-06-18",
        }
        if session is not None:
            headers["Mcp-Session-Id"] = session
        return httpx.post(proxy.url, json=body, headers=headers, timeout=30)

    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    opened = post(proxy.token, init, None)
    assert opened.status_code == 200, opened.text
    sid = opened.headers["mcp-session-id"]
    ready = post(proxy.token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    assert ready.status_code == 202, ready.text
    call = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "write_note", "arguments": {"text": "once"}},
    }  # fmt: skip
    first = rpc_messages(post(proxy.token, call, sid))[-1]
    assert first["result"]["_meta"][META]["decision"] == "PERMIT", first
    again = rpc_messages(post(proxy.token, call, sid))[-1]
    assert again["error"]["code"] == -32600 and "already used" in again["error"]["message"]
    note = post(proxy.token, {k: v for k, v in call.items() if k != "id"}, sid)
    assert note.status_code == 400 and note.json()["error"]["code"] == -32600, note.text

    # Another caller with the session's id: 404 for every method, nothing sent on.
    auth = {"Authorization": f"Bearer {other}", "Mcp-Session-Id": sid}
    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
    assert post(other, ping, sid).status_code == 404
    assert post(other, call | {"id": 9}, sid).status_code == 404
    assert httpx.get(proxy.url, headers=auth, timeout=30).status_code == 404
    assert httpx.delete(proxy.url, headers=auth, timeout=30).status_code == 404
    # An id the upstream never issued: 404 for its owner's token as well.
    for invented in ["invented", "0" * 32]:
        assert post(proxy.token, ping, invented).status_code == 404
    # The session is intact for its owner.
    pong = rpc_messages(post(proxy.token, ping, sid))[-1]
    assert pong["id"] == 5 and "result" in pong, pong
    assert log.read_text() == "write_note\tonce\n"


def test_a_revoked_caller_is_refused_and_its_open_stream_closed_within_seconds(
    gate: Gate, notes: tuple[str, Path], proxy_of: ProxyOf, tmp_path: Path
) -> None:
    """Revocation binds the proxy within about a second: the caller's open
    GET stream (the server's messages to it) ends, and its next request is 401."""
    upstream, _ = notes
    proxy = proxy_of("notes", upstream, "--actor", "agent-mcp")
    token = add_caller(gate, "short-lived", tmp_path)
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
        "MCP-Protocol-Version": "2025-06-18",
    }
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    opened = httpx.post(proxy.url, json=init, headers=headers, timeout=30)
    assert opened.status_code == 200, opened.text
    headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
    ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx.post(proxy.url, json=ready, headers=headers, timeout=30).status_code == 202
    with httpx.stream("GET", proxy.url, headers=headers, timeout=30) as stream:
        assert stream.status_code == 200
        revoked = subprocess.run(
            [str(BIN / "tollgate"), "caller", "revoke", "short-lived", "--url", gate.url,
             "--token-file", str(gate.token_file.parent / "admin.token")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        started = time.monotonic()
        for _ in stream.iter_bytes():
            pass
        assert time.monotonic() - started < 5, "the stream outlived the revocation"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert httpx.post(proxy.url, json=ping, headers=headers, timeout=30).status_code == 401


def test_a_tool_call_over_http_is_a_span_of_its_session_and_trace(
    gate: Gate, everything_http: str
) -> None:
    """Over streamable HTTP too, a `tools/call` with a `traceparent` in
    `params._meta` is an `execute_tool` span of that trace, naming the MCP
    session it belongs to."""
    from otlp import Collector

    collector = Collector()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    proxy = Proxy(gate, "everything", everything_http, "--actor", "agent-mcp", env=env)
    trace_id, parent = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"

    async def run() -> None:
        async with connect(proxy.url, proxy.token, mode="legacy") as client:
            result = await client.call_tool(
                "echo",
                {"message": "traced"},
                meta={"traceparent": f"00-{trace_id}-{parent}-01"},  # type: ignore[arg-type]
            )
            assert not result.is_error, text(result)

    try:
        anyio.run(run)
        spans = collector.wait_for(
            "the tool call", lambda spans: any(s["name"] == "execute_tool echo" for s in spans)
        )
    finally:
        proxy.stop()
        collector.close()
    call = next(s for s in spans if s["name"] == "execute_tool echo")
    assert call["trace_id"] == trace_id and call["parent_span_id"] == parent
    assert call["attributes"]["mcp.method.name"] == "tools/call"
    assert call["attributes"]["mcp.session.id"], call
    assert call["attributes"]["tollgate.decision"] == "PERMIT"
