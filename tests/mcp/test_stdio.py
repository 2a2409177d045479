"""`tollgate mcp stdio` between the official Python SDK client (the agent)
and real MCP servers nobody here wrote: the reference server-everything
(Node) and a server written with the Python SDK whose side effects show
which calls reached it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
from conftest import BIN, Gate
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

META = "dev.tollgate/decision"


def params(command: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=command[0], args=command[1:])


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def decision(result: CallToolResult) -> dict[str, Any]:
    assert result.meta is not None, text(result)
    d = result.meta[META]
    assert isinstance(d, dict)
    return d


def proofcheck(gate: Gate, response: dict[str, Any], tmp_path: Path) -> None:
    saved = tmp_path / f"{response['receipt_id']}.json"
    saved.write_text(json.dumps(response))
    check = subprocess.run(
        [str(BIN / "proofcheck"), "receipt", "--log-key", gate.log_key,
         "--gate-key", gate.gate_key, str(saved)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_permitted_call_works_and_carries_a_receipt_proofcheck_verifies(
    gate: Gate, everything: list[str], tmp_path: Path
) -> None:
    async def run() -> None:
        async with Client(params(gate.gateway("everything", everything))) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "get-env", "get-sum"} <= listed
            result = await client.call_tool("echo", {"message": "through the gate"})
            assert not result.is_error, text(result)
            assert "through the gate" in text(result)
            d = decision(result)
            assert d["decision"] == "PERMIT"
            proofcheck(gate, d, tmp_path)
            total = await client.call_tool("get-sum", {"a": 2, "b": 3})
            assert "5" in text(total) and decision(total)["decision"] == "PERMIT"

    anyio.run(run)


def test_denied_and_silent_calls_never_reach_the_server(
    gate: Gate, notes: tuple[list[str], Path], everything: list[str], tmp_path: Path
) -> None:
    command, log = notes

    async def run() -> None:
        async with Client(params(gate.gateway("notes", command))) as client:
            ok = await client.call_tool("write_note", {"text": "kept"})
            assert not ok.is_error, text(ok)
            assert decision(ok)["decision"] == "PERMIT"
            # Not permitted anywhere in the policy: SILENCE, with its receipt.
            erase = await client.call_tool("erase_everything", {"confirm": True})
            assert erase.is_error
            d = decision(erase)
            assert d["decision"] == "SILENCE"
            assert "SILENCE" in text(erase) and d["receipt_id"] in text(erase)
            proofcheck(gate, d, tmp_path)
        async with Client(params(gate.gateway("everything", everything))) as client:
            env = await client.call_tool("get-env", {})
            assert env.is_error
            assert decision(env)["decision"] == "DENY"
            assert "DENY" in text(env)

    anyio.run(run)
    # The server's own record: the permitted call, and nothing else.
    assert log.read_text().splitlines() == ["write_note\tkept"]


def test_invalid_arguments_are_refused_before_the_gate_and_the_server(
    gate: Gate, notes: tuple[list[str], Path]
) -> None:
    command, log = notes

    async def run() -> None:
        async with Client(params(gate.gateway("notes", command))) as client:
            invalid: list[dict[str, Any]] = [{}, {"text": 5}, {"text": ["x"]}]
            for args in invalid:
                r = await client.call_tool("write_note", args)
                assert r.is_error
                assert "invalid arguments" in text(r) and "not called" in text(r), text(r)
                # Refused before the gate: no decision was asked for.
                assert r.meta is None or META not in r.meta

    anyio.run(run)
    assert log.read_text() == ""


def test_a_gate_that_is_down_fails_closed(gate: Gate, notes: tuple[list[str], Path]) -> None:
    command, log = notes

    async def run() -> None:
        down = "http://127.0.0.1:9"  # discard: nothing answers
        async with Client(params(gate.gateway("notes", command, url=down))) as client:
            r = await client.call_tool("write_note", {"text": "must not land"})
            assert r.is_error
            assert "SILENCE" in text(r) and "no verified decision" in text(r), text(r)

    anyio.run(run)
    assert log.read_text() == ""


def test_progress_notifications_pass_through(gate: Gate, everything: list[str]) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def run() -> None:
        async with Client(params(gate.gateway("everything", everything))) as client:
            r = await client.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            assert not r.is_error, text(r)
            assert decision(r)["decision"] == "PERMIT"

    anyio.run(run)
    assert len(seen) >= 2, seen


def test_malformed_lines_get_a_json_rpc_error_and_the_gateway_keeps_running(
    gate: Gate, notes: tuple[list[str], Path]
) -> None:
    command, log = notes
    lines = [
        "garbage",
        '[{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write_note"}}]',
        '{"jsonrpc": "2.0", "id": 2, "method": "ping", "id": 3}',
        '{"jsonrpc": "2.0", "id": 4, "method": "ping"}',
    ]
    done = subprocess.run(
        gate.gateway("notes", command),
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["error"]["code"] for a in answers[:3]] == [-32700, -32600, -32700], answers
    # The ping after them is answered by the server: the gateway kept running.
    assert answers[3]["id"] == 4 and "result" in answers[3], answers[3]
    assert done.returncode == 0, done.stderr
    assert log.read_text() == ""


def test_the_gate_can_run_inside_the_gateway(
    gate: Gate, notes: tuple[list[str], Path], tmp_path: Path
) -> None:
    """`--data-dir`: the gate runs in the gateway's own process on the data
    directory `tollgate serve` made (and no longer holds), deciding as a
    configured caller; receipts say `via: in_process` and verify the same."""
    command, log = notes
    data = gate.token_file.parent
    add = subprocess.run(
        [str(BIN / "tollgate"), "caller", "add", "mcp", "--role", "decide",
         "--actor", "agent-mcp", "--token-out", str(tmp_path / "mcp.token"),
         "--url", gate.url, "--token-file", str(data / "admin.token")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    gate.process.terminate()
    assert gate.process.wait(timeout=30) == 0
    gateway = [
        str(BIN / "tollgate"), "mcp", "stdio", "--server", "notes", "--actor", "agent-mcp",
        "--data-dir", str(data), "--caller", "mcp", "--", *command,
    ]  # fmt: skip

    async def run() -> None:
        async with Client(params(gateway)) as client:
            ok = await client.call_tool("write_note", {"text": "in process"})
            assert not ok.is_error, text(ok)
            d = decision(ok)
            assert d["decision"] == "PERMIT"
            assert '"via":"in_process"' in d["receipt"]
            proofcheck(gate, d, tmp_path)
            erase = await client.call_tool("erase_everything", {"confirm": True})
            assert erase.is_error and decision(erase)["decision"] == "SILENCE"

    anyio.run(run)
    assert log.read_text().splitlines() == ["write_note\tin process"]


def test_hide_denied_lists_no_tool_the_policy_denies_and_logs_nothing(
    gate: Gate, everything: list[str]
) -> None:
    async def run() -> None:
        size = gate.log_size()
        command = gate.gateway("everything", everything, extra=("--hide-denied",))
        async with Client(params(command)) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            # The example policy denies get-env outright; the rest stay listed.
            assert "get-env" not in listed
            assert {"echo", "get-sum", "trigger-long-running-operation"} <= listed
            assert gate.log_size() == size, "listing evaluations are not logged"
            # A hidden tool called anyway is decided (and denied) as always.
            r = await client.call_tool("get-env", {})
            assert r.is_error and decision(r)["decision"] == "DENY", text(r)
        async with Client(params(gate.gateway("everything", everything))) as client:
            assert "get-env" in {t.name for t in (await client.list_tools()).tools}

    anyio.run(run)


class Lines:
    """A raw JSON-RPC conversation with a running `tollgate mcp stdio`."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def answer(self, id: object) -> dict[str, Any]:
        """The next message answering `id` (notifications and others skipped)."""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the gateway closed its output"
            message: dict[str, Any] = json.loads(line)
            if "method" not in message and message.get("id") == id:
                return message

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def test_one_permit_one_execution_reused_ids_and_notification_calls_never_run(
    gate: Gate, notes: tuple[list[str], Path]
) -> None:
    """A decision authorizes one forward: the same JSON-RPC id sent again
    after its call finished (which once got the replayed PERMIT and ran
    again), a `tools/call` without an id, and one in the gateway's own id
    space are refused; the server ran the tool exactly once."""
    command, log = notes
    session = Lines(gate.gateway("notes", command))
    session.send({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    })  # fmt: skip
    assert "result" in session.answer(0)
    session.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    call = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "write_note", "arguments": {"text": "once"}},
    }  # fmt: skip
    session.send(call)
    first = session.answer(1)
    assert not first["result"].get("isError"), first
    assert first["result"]["_meta"][META]["decision"] == "PERMIT"
    size = gate.log_size()
    for _ in range(3):
        session.send(call)
        again = session.answer(1)
        assert again["error"]["code"] == -32600, again
        assert "already used" in again["error"]["message"]
    session.send({k: v for k, v in call.items() if k != "id"})
    assert session.answer(None)["error"]["code"] == -32600
    session.send({**call, "id": "tollgate-tools-1"})
    assert session.answer("tollgate-tools-1")["error"]["code"] == -32600
    # A new id is a new call: decided anew (a receipt of its own), and run.
    session.send({**call, "id": 2})
    second = session.answer(2)
    first_receipt = first["result"]["_meta"][META]["receipt_id"]
    assert second["result"]["_meta"][META]["receipt_id"] != first_receipt
    session.close()
    assert gate.log_size() == size + 1, "only the new call was decided"
    assert log.read_text().splitlines() == ["write_note\tonce", "write_note\tonce"]


def test_a_tool_call_is_a_span_of_the_agents_trace(tmp_path: Path, everything: list[str]) -> None:
    """A `tools/call` whose `params._meta` carries a W3C `traceparent` (as
    the MCP specification lets clients send it) is an `execute_tool` span of
    that trace at the gateway, with the GenAI and MCP attributes, and the
    gate's decision is a span below it: one trace from the agent to the
    receipt, at a real OTLP collector."""
    from conftest import start_gate
    from otlp import Collector

    collector = Collector()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    gate = start_gate(tmp_path, env)
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    command = gate.gateway("everything", everything)
    server = StdioServerParameters(command=command[0], args=command[1:], env=env)

    async def run() -> dict[str, Any]:
        async with Client(server) as client:
            result = await client.call_tool(
                "echo",
                {"message": "traced"},
                meta={"traceparent": f"00-{trace_id}-{parent}-01"},  # type: ignore[arg-type]
            )
            assert not result.is_error, text(result)
            return decision(result)

    try:
        d = anyio.run(run)
        spans = collector.wait_for(
            "the tool call and its decision",
            lambda spans: (
                any(s["name"] == "execute_tool echo" for s in spans)
                and any(s["name"] == "decision" and s["trace_id"] == trace_id for s in spans)
            ),
        )
    finally:
        gate.process.kill()
        gate.process.wait()
        collector.close()
    call = next(s for s in spans if s["name"] == "execute_tool echo")
    assert call["trace_id"] == trace_id and call["parent_span_id"] == parent
    assert call["attributes"]["gen_ai.tool.name"] == "echo"
    assert call["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert call["attributes"]["mcp.method.name"] == "tools/call"
    assert call["attributes"]["tollgate.decision"] == "PERMIT"
    by_id = {s["span_id"]: s for s in spans}
    gate_decision = next(s for s in spans if s["name"] == "decision" and s["trace_id"] == trace_id)
    assert gate_decision["attributes"]["tollgate.receipt_id"] == d["receipt_id"]
    request = by_id[gate_decision["parent_span_id"]]
    assert request["name"] == "POST /v1/decisions"
    assert request["parent_span_id"] == call["span_id"], "the decision is below the tool call"
