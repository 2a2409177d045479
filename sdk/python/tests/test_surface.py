"""The surface verifier and its ASGI middleware, with permits from the real
gate: a service runs a call only with a fresh, unused PERMIT for exactly that
call; everything else is 403 and the app never sees it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import httpx
import pytest
from conftest import BIN, ROOT, Gate
from test_client import client, intent
from tollgate import Deny, Permit, Trust
from tollgate.surface import (
    PERMIT_HEADER,
    AtGate,
    Call,
    Malformed,
    Mismatch,
    Missing,
    NotPermit,
    PermitMiddleware,
    PermitUnverified,
    Scope,
    Stale,
    SurfaceVerifier,
    Unredeemed,
    Used,
    _unix_ns,
    header_value,
)


def verifier(gate: Gate, **kw: Any) -> SurfaceVerifier:
    return SurfaceVerifier(Trust.of(gate.log_key, gate.gate_key), **kw)


def call(amount: int) -> Call:
    return Call("payments", "transfer", {"amount": amount, "currency": "EUR", "to": "acct-1"})


def test_a_permit_is_accepted_once_for_exactly_its_call(gate: Gate) -> None:
    v = verifier(gate)
    permit = client(gate).decide(intent(500, "s-1"))
    header = header_value(permit)
    with pytest.raises(Mismatch, match="target"):
        v.check(header, call(501))
    with pytest.raises(Mismatch, match="action"):
        v.check(header, Call("payments", "refund", call(500).target))
    assert v.check(header, call(500))["receipt_id"] == permit.receipt_id
    with pytest.raises(Used):
        v.check(header, call(500))
    assert v.remembered() == 1


def test_everything_but_a_fresh_permit_is_refused(gate: Gate) -> None:
    v = verifier(gate, max_age=60)
    c = client(gate)
    with pytest.raises(Missing):
        v.check(None, call(500))
    with pytest.raises(Malformed):
        v.check("!!!", call(500))
    permit = c.decide(intent(500, "s-2"))
    response = dict(permit.response)
    response["receipt"] = response["receipt"].replace("acct-1", "acct-2")
    forged = header_value(Permit(response, permit.receipt))
    with pytest.raises(PermitUnverified):
        v.check(
            forged, Call("payments", "transfer", {"amount": 500, "currency": "EUR", "to": "acct-2"})
        )
    with pytest.raises(Stale):
        v.check(header_value(permit), call(500), now_ns=permit_time(permit) + 61 * 10**9)
    with pytest.raises(Stale):
        v.check(header_value(permit), call(500), now_ns=permit_time(permit) - 2 * 10**9)
    # A DENY's receipt is evidence, not a permit.
    with pytest.raises(Deny) as denied:
        c.decide(intent(5_000_000, "s-3"))
    deny_header = header_value(Permit(denied.value.response, {}))
    with pytest.raises(NotPermit):
        v.check(deny_header, call(5_000_000))


def permit_time(permit: Permit) -> int:
    return _unix_ns(permit.receipt["decided_at"])


def test_the_asgi_middleware_runs_the_app_only_on_a_valid_permit(gate: Gate) -> None:
    served: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body = json.loads((await receive())["body"])
        served.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"paid"})

    def call_of(scope: Scope, body: Any) -> Call:
        return Call("payments", scope["path"].strip("/"), body)

    guarded = PermitMiddleware(app, verifier(gate), call_of)
    permit = client(gate).decide(intent(500, "s-4"))

    async def run() -> None:
        transport = httpx.ASGITransport(app=guarded)
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as http:
            target = call(500).target
            ok = await http.post(
                "/transfer", json=target, headers={PERMIT_HEADER: header_value(permit)}
            )
            assert ok.status_code == 200 and ok.text == "paid"
            again = await http.post(
                "/transfer", json=target, headers={PERMIT_HEADER: header_value(permit)}
            )
            assert again.status_code == 403 and "used before" in again.json()["message"]
            none = await http.post("/transfer", json=target)
            assert none.status_code == 403 and PERMIT_HEADER in none.json()["message"]
            other = await http.post(
                "/transfer",
                json={**target, "amount": 5000},
                headers={PERMIT_HEADER: header_value(permit)},
            )
            assert other.status_code == 403

    anyio.run(run)
    assert served == [call(500).target]


def test_the_permit_header_is_the_rust_sdks_byte_for_byte() -> None:
    """The shared vectors' permit_header, which the Rust SDK also produces."""
    v = json.loads((ROOT / "tests/vectors/tollgate/decisions.json").read_text())
    answer = next(d for d in v["decisions"] if d["decision"] == "PERMIT")
    assert header_value(Permit(answer, {})) == v["permit_header"]


def test_the_middleware_in_a_starlette_app(gate: Gate) -> None:
    """The same middleware in Starlette (FastAPI's base): the route runs only
    with a valid permit for its call."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    served: list[Any] = []

    async def transfer(request: Request) -> JSONResponse:
        served.append(await request.json())
        return JSONResponse({"ok": True})

    def call_of(scope: Scope, body: Any) -> Call:
        return Call("payments", "transfer", body)

    app = Starlette(
        routes=[Route("/transfer", transfer, methods=["POST"])],
        middleware=[Middleware(PermitMiddleware, verifier=verifier(gate), call_of=call_of)],
    )
    permit = client(gate).decide(intent(500, "st-1"))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as http:
            target = call(500).target
            refused = await http.post("/transfer", json=target)
            assert refused.status_code == 403
            ok = await http.post(
                "/transfer", json=target, headers={PERMIT_HEADER: header_value(permit)}
            )
            assert ok.status_code == 200 and ok.json() == {"ok": True}

    anyio.run(run)
    assert served == [call(500).target]


def redeemer_token(gate: Gate, name: str) -> str:
    """A caller with the `redeem` role (a tool's service): its token."""
    out = gate.data.parent / f"{name}.token"
    added = subprocess.run(
        [str(BIN / "tollgate"), "caller", "add", name, "--role", "redeem", "--actor", "none",
         "--token-out", str(out), "--url", gate.url,
         "--token-file", str(gate.data / "admin.token")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    return out.read_text().strip()


def test_redeemed_at_the_gate_a_permit_runs_once_across_replicas_and_restarts(
    gate: Gate,
) -> None:
    """Two replicas of a service (two verifiers, as two processes or one
    restarted have) each accepted the same permit once with the in-process
    default; redeeming at the gate, only the first does, and the second
    names the first redemption. A gate that cannot be reached fails closed."""
    permit = client(gate).decide(intent(500, "redeem-1"))
    header = header_value(permit)
    # The default: single use per process only (what the docs warn of).
    assert verifier(gate).check(header, call(500))
    assert verifier(gate).check(header, call(500))

    token = redeemer_token(gate, "payments-svc")
    first, second = (
        verifier(gate, redeemer=AtGate(gate.url, token)),
        verifier(gate, redeemer=AtGate(gate.url, token)),
    )
    other = client(gate).decide(intent(500, "redeem-2"))
    assert first.check(header_value(other), call(500))["receipt_id"] == other.receipt_id
    with pytest.raises(Used, match="already redeemed"):
        second.check(header_value(other), call(500))
    with pytest.raises(Used):
        first.check(header_value(other), call(500))
    # Without the redeem role, or with the gate gone: never served.
    demo = verifier(gate, redeemer=AtGate(gate.url, gate.token))
    with pytest.raises(Unredeemed, match="redeem role"):
        demo.check(header_value(client(gate).decide(intent(500, "redeem-3"))), call(500))
    gone = verifier(gate, redeemer=AtGate("http://127.0.0.1:9", token, retries=0))
    with pytest.raises(Unredeemed):
        gone.check(header_value(client(gate).decide(intent(500, "redeem-4"))), call(500))


def test_bodies_are_strict_and_what_does_not_verify_is_403_never_500(gate: Gate) -> None:
    """A permit for amount 500 with a body that also says 999999 (a second
    `amount` member, which a lenient parser may read) is refused; so are
    NaN and a number out of range (which became a 500)."""
    served: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        served.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"paid"})

    guarded = PermitMiddleware(app, verifier(gate), lambda s, b: Call("payments", "transfer", b))
    permit = client(gate).decide(intent(500, "strict-1"))
    headers = {PERMIT_HEADER: header_value(permit), "content-type": "application/json"}

    async def run() -> None:
        transport = httpx.ASGITransport(app=guarded)
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as http:
            for body in [
                b'{"amount": 999999, "currency": "EUR", "to": "acct-1", "amount": 500}',
                b'{"amount": NaN, "currency": "EUR", "to": "acct-1"}',
                b'{"amount": 1e400, "currency": "EUR", "to": "acct-1"}',
                b"not json",
            ]:
                r = await http.post("/transfer", content=body, headers=headers)
                assert r.status_code == 403, (body, r.status_code, r.text)
            ok = await http.post(
                "/transfer", content=json.dumps(call(500).target).encode(), headers=headers
            )
            assert ok.status_code == 200, ok.text

    anyio.run(run)
    assert len(served) == 1


def test_websocket_connections_are_refused_unless_allowed(gate: Gate) -> None:
    """A WebSocket to a guarded app is closed before it is accepted (the
    server answers the handshake 403); the app never sees it."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await receive()
        await send({"type": "websocket.accept"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    def call_of(s: Scope, b: Any) -> Call:
        return Call("payments", "transfer", b)

    scope: Scope = {"type": "websocket", "path": "/stream", "headers": []}
    anyio.run(PermitMiddleware(app, verifier(gate), call_of), scope, receive, send)
    assert seen == [] and sent[0]["type"] == "websocket.close", sent
    sent.clear()
    allowing = PermitMiddleware(app, verifier(gate), call_of, allow_websocket=True)
    anyio.run(allowing, scope, receive, send)
    assert seen == ["websocket"] and sent[0]["type"] == "websocket.accept"
