"""The client and the guard against the real gate: the tool runs exactly
once per verified PERMIT and never on DENY, SILENCE, an unreachable gate,
timeouts, garbage or a bad signature."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from conftest import Gate
from tollgate import Verifier, approval_id, verify_receipt
from tollgate.client import (
    AsyncClient,
    Client,
    Deny,
    Invalid,
    Silence,
    Trust,
    Unavailable,
    Unverified,
    current_permit,
)


def intent(amount: int, key: str, actor: str = "agent-treasury") -> dict[str, Any]:
    return {
        "actor": {"id": actor, "kind": "agent"},
        "surface": "payments",
        "action": "transfer",
        "target": {"amount": amount, "currency": "EUR", "to": "acct-1"},
        "idempotency_key": key,
    }


def client(gate: Gate, **kw: Any) -> Client:
    return Client(gate.url, Trust.of(gate.log_key, gate.gate_key), token=gate.token, **kw)


def test_the_guard_runs_the_tool_once_per_permit_and_never_otherwise(gate: Gate) -> None:
    c = client(gate)
    calls: list[int] = []

    def payment(amount: int, key: str) -> dict[str, Any]:
        return intent(amount, key)

    @c.guarded(payment)
    def pay(amount: int, key: str) -> str:
        # The tool sees the permit it runs on (to pass to its service).
        permit = current_permit()
        assert permit is not None and permit.receipt["request"]["target"]["amount"] == amount
        calls.append(amount)
        return "paid"

    assert pay(500, "g-1") == "paid"
    assert calls == [500]
    with pytest.raises(Deny) as denied:
        pay(5_000_000, "g-2")
    assert denied.value.response["decision"] == "DENY"
    # An actor the demo caller may not speak for: SILENCE, with a receipt.
    with pytest.raises(Silence):
        c.decide(intent(5, "g-3", actor="someone-else"))
    with c.guard(intent(600, "g-4")) as permit:
        assert current_permit() is permit
        calls.append(permit.log_index)
    assert current_permit() is None
    assert len(calls) == 2
    # The same key and request again: the original receipt, still a permit.
    again = c.decide(intent(600, "g-4"))
    assert again.receipt_id == permit.receipt_id
    # The same key for another request: the gate refuses it.
    with pytest.raises(Invalid):
        c.decide(intent(601, "g-4"))
    assert calls == [500, permit.log_index]


def tampering(gate: Gate, change: Any) -> httpx.MockTransport:
    """Forwards to the real gate and changes its answer on the way back."""
    real = httpx.Client()

    def handle(request: httpx.Request) -> httpx.Response:
        answer = real.post(str(request.url), content=request.content, headers=request.headers)
        return httpx.Response(answer.status_code, content=change(answer.content))

    return httpx.MockTransport(handle)


def flip_signature(body: bytes) -> bytes:
    r = json.loads(body)
    sig_at = r["receipt"].rindex(" ") + 5
    receipt = r["receipt"]
    r["receipt"] = (
        receipt[:sig_at] + ("A" if receipt[sig_at] != "A" else "B") + receipt[sig_at + 1 :]
    )
    return json.dumps(r).encode()


@pytest.mark.parametrize(
    "change",
    [lambda b: b"garbage", lambda b: b"{}", flip_signature],
    ids=["garbage", "empty", "bad signature"],
)
def test_answers_that_do_not_verify_never_run_the_tool(gate: Gate, change: Any) -> None:
    c = client(gate, transport=tampering(gate, change))
    ran = []
    with pytest.raises(Unverified), c.guard(intent(500, f"t-{id(change)}")):
        ran.append(1)
    assert ran == []


def test_a_receipt_for_another_request_is_not_a_permit(gate: Gate) -> None:
    trust = Trust.of(gate.log_key, gate.gate_key)
    real = client(gate).decide(intent(500, "swap-1"))

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=real.response)

    c = Client(gate.url, trust, transport=httpx.MockTransport(handle))
    with pytest.raises(Unverified, match="another request"):
        c.decide(intent(499, "swap-1"))


def test_an_unreachable_or_slow_gate_fails_closed_and_retries_with_the_same_key(
    gate: Gate,
) -> None:
    seen: list[bytes] = []

    def timeout(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        raise httpx.ReadTimeout("slow", request=request)

    trust = Trust.of(gate.log_key, gate.gate_key)
    c = Client(gate.url, trust, retries=2, transport=httpx.MockTransport(timeout))
    with pytest.raises(Unavailable):
        c.decide(intent(500, "slow-1"))
    assert len(seen) == 3 and len(set(seen)) == 1, "three attempts, one request"
    down = Client("http://127.0.0.1:9", trust, retries=1)
    with pytest.raises(Unavailable):
        down.decide(intent(500, "down-1"))


def test_the_async_client_and_its_guard(gate: Gate) -> None:
    async def run() -> None:
        c = AsyncClient(gate.url, Trust.of(gate.log_key, gate.gate_key), token=gate.token)
        calls: list[str] = []

        @c.guarded(lambda key: intent(500, key))
        async def pay(key: str) -> str:
            calls.append(key)
            return key

        assert await pay("a-1") == "a-1"
        async with c.guard(intent(700, "a-2")) as permit:
            calls.append(permit.receipt_id)
        with pytest.raises(Deny):
            async with c.guard(intent(5_000_000, "a-3")):
                calls.append("never")
        await c.aclose()
        assert calls == ["a-1", permit.receipt_id]

    anyio.run(run)


def test_a_guard_waits_for_a_person_to_approve_then_runs_once(gate: Gate) -> None:
    admin = (gate.data / "admin.token").read_text().strip()
    made = httpx.post(
        f"{gate.url}/v1/admin/callers",
        headers={"authorization": f"Bearer {admin}"},
        json={"name": "py-approver", "roles": ["approve"], "actors": []},
    )
    assert made.status_code == 200, made.text
    approver = {"authorization": f"Bearer {made.json()['token']}"}
    # Nobody approves: after the wait, the SILENCE, naming the request.
    with pytest.raises(Silence) as waited:
        client(gate, approval_wait=0.5).decide(intent(20_000, "py-w1"))
    asked = waited.value.response["approval"]
    receipt = verify_receipt(
        waited.value.response["receipt"].encode(), Verifier.parse(gate.gate_key)
    )
    assert asked["id"] == approval_id(receipt["request"]) and asked["state"] == "open"

    async def run() -> str:
        c = AsyncClient(
            gate.url, Trust.of(gate.log_key, gate.gate_key), token=gate.token, approval_wait=20
        )
        async with anyio.create_task_group() as tg:

            async def approve() -> None:
                async with httpx.AsyncClient(headers=approver) as h:
                    while True:
                        listed = (await h.get(f"{gate.url}/v1/approvals")).json()["approvals"]
                        mine = [a for a in listed if a["request"]["target"]["amount"] == 30_000]
                        if mine:
                            voted = await h.post(
                                f"{gate.url}/v1/approvals/{mine[0]['id']}", json={"vote": "approve"}
                            )
                            assert voted.status_code == 200, voted.text
                            return
                        await anyio.sleep(0.05)

            tg.start_soon(approve)
            async with c.guard(intent(30_000, "py-w2")) as permit:
                key = str(permit.receipt["request"]["idempotency_key"])
        await c.aclose()
        return key

    assert anyio.run(run) == "py-w2+approved"


def test_one_root_for_every_error_and_clients_close_with_with(gate: Gate) -> None:
    """`except TollgateError` catches refusals, surface refusals and
    verification errors alike; clients are context managers."""
    from tollgate import Refusal, TollgateError, VerificationError
    from tollgate.surface import Refused

    for kind in (Refusal, Refused, VerificationError, Deny, Unverified):
        assert issubclass(kind, TollgateError), kind
    with client(gate) as c, pytest.raises(TollgateError):
        c.decide(intent(5_000_000, "root-1"))
    assert c._http.is_closed

    async def run() -> None:
        trust = Trust.of(gate.log_key, gate.gate_key)
        async with AsyncClient(gate.url, trust, token=gate.token) as a:
            assert (await a.decide(intent(5, "root-2"))).receipt_id
        assert a._http.is_closed

    anyio.run(run)


def test_a_decision_carries_the_current_trace_context(gate: Gate) -> None:
    """With an OpenTelemetry span current, every decision request carries its
    W3C trace context (`traceparent`), so the gate's decision is a span of
    the caller's trace; with none, no trace context is sent."""
    from opentelemetry import context, trace

    seen: list[httpx.Headers] = []
    real = httpx.Client()

    def forward(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        answer = real.post(str(request.url), content=request.content, headers=request.headers)
        return httpx.Response(answer.status_code, content=answer.content)

    c = client(gate, transport=httpx.MockTransport(forward))
    sc = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(0x01),
    )
    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(sc)))
    try:
        permit = c.decide(intent(500, "traced-1"))
    finally:
        context.detach(token)
    assert permit.receipt["decision"] == "PERMIT"
    assert seen[-1]["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    c.decide(intent(500, "untraced-1"))
    assert "traceparent" not in seen[-1]


def test_the_retry_core_has_no_io_and_posts_the_same_body_every_time(gate: Gate) -> None:
    """`_deciding` is the one decision loop both clients drive: it yields
    what to do and is sent what happened. Transport errors and 503s are
    retried with backoff and the very same body (so the same idempotency
    key); the last refusal is raised."""
    from tollgate.client import _deciding, _Post, _Sleep

    trust = Trust.of(gate.log_key, gate.gate_key)
    steps = _deciding(trust, intent(500, "core-1"), retries=2, approval_wait=0.0)
    answers: list[object] = [
        httpx.Response(503, content=b"busy"),
        httpx.ConnectError("refused"),
        httpx.Response(503, content=b"still busy"),
    ]
    seen: list[object] = []
    result: object = None
    with pytest.raises(Unavailable, match="still busy"):
        while True:
            step = steps.send(result)
            seen.append(step)
            result = answers.pop(0) if isinstance(step, _Post) else None
    posts = [s for s in seen if isinstance(s, _Post)]
    assert len(posts) == 3 and len({p.body for p in posts}) == 1
    assert [s.seconds for s in seen if isinstance(s, _Sleep)] == [0.1, 0.2]
