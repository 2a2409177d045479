"""Asking the gate, and running a tool only on a verified PERMIT.

`Client` (sync) and `AsyncClient` (asyncio/anyio) send an intent to the
gate over HTTP(S) or a Unix socket (`unix:/path`), retry transport errors
and 503s with the same idempotency key, verify the answer
(`tollgate.verify.verify_decision`, and that the receipt records the intent
sent) and return a `Permit`, or raise a `Refusal`:

- `Deny` / `Silence`: a verified DENY or SILENCE (the receipt says why);
- `Unavailable`: no usable answer (unreachable, timed out, 503, an error);
- `Unverified`: an answer that does not verify (signature, proof, garbage,
  a receipt for another request);
- `Invalid`: the gate refused the intent as invalid (400) or an idempotency
  conflict (409).

Every refusal but `Invalid` is SILENCE to the agent: fail closed. `guard`
(a context manager) and `guarded` (a decorator) make the tool call depend on
a `Permit`: the code runs only after one, exactly once per PERMIT.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import anyio
import httpx

try:  # The OpenTelemetry API is optional: without it, no trace context is sent.
    from opentelemetry import propagate as _propagate
except ImportError:  # pragma: no cover - depends on the environment
    _propagate = None  # type: ignore[assignment]

from tollgate.errors import TollgateError
from tollgate.verify import (
    Policy,
    VerificationError,
    Verifier,
    approval_id,
    canonical_json,
    open_request,
    verify_decision,
    verify_receipt,
)

P = ParamSpec("P")
T = TypeVar("T")


class Refusal(TollgateError):
    """Why a tool was not run."""


class Deny(Refusal):
    """The gate decided DENY; `response` is the verified answer (receipt, proof)."""

    def __init__(self, reason: str, response: dict[str, Any]) -> None:
        super().__init__(f"DENY: {reason} (receipt {response.get('receipt_id')})")
        self.reason, self.response = reason, response


class Silence(Refusal):
    """The gate decided SILENCE (nothing permitted it, or something failed)."""

    def __init__(self, reason: str, response: dict[str, Any]) -> None:
        super().__init__(f"SILENCE: {reason} (receipt {response.get('receipt_id')})")
        self.reason, self.response = reason, response


class Unavailable(Refusal):
    """No usable answer: treated as SILENCE; nothing to verify."""


class Unverified(Refusal):
    """An answer came and did not verify: treated as SILENCE."""


class Invalid(Refusal):
    """The gate refused the intent as invalid (400) or as an idempotency conflict (409)."""


@dataclass(frozen=True)
class Trust:
    """The keys an answer must verify with, and optionally a C2SP tlog-policy
    (naming the log) whose witness quorum must cosign its checkpoint."""

    log_key: Verifier
    gate_key: Verifier
    witnesses: Policy | None = None

    @staticmethod
    def of(log_key: str, gate_key: str, witness_policy: str | None = None) -> Trust:
        policy = Policy.parse(witness_policy) if witness_policy is not None else None
        return Trust(Verifier.parse(log_key), Verifier.parse(gate_key), policy)


@dataclass(frozen=True)
class Permit:
    """A verified PERMIT for exactly the intent that was sent."""

    response: dict[str, Any]
    receipt: dict[str, Any]

    @property
    def receipt_id(self) -> str:
        return str(self.receipt["receipt_id"])

    @property
    def log_index(self) -> int:
        return int(self.response["log_index"])


_CURRENT: ContextVar[Permit | None] = ContextVar("tollgate_permit", default=None)


def current_permit() -> Permit | None:
    """Inside a `guarded` tool or a `guard` block: the verified permit it
    runs on (to pass on to the tool's service, for example as the
    `tollgate-permit` header); elsewhere None."""
    return _CURRENT.get()


def outcome(trust: Trust, intent: Mapping[str, Any], answer: bytes) -> Permit:
    """The permit in a 200 answer to `intent`, or the refusal it amounts to."""
    try:
        response = json.loads(answer)
        if not isinstance(response, dict):
            raise Unverified("the answer is not a decision")
        receipt = verify_decision(response, trust.log_key, trust.gate_key, trust.witnesses)
    except (VerificationError, ValueError, KeyError, TypeError) as e:
        raise Unverified(f"the answer does not verify: {e}") from e
    # Fields the receipt commits are compared through their (checked)
    # openings; one without an opening cannot be.
    recorded, unopened = open_request(receipt, response.get("openings"))
    if unopened:
        raise Unverified(f"the receipt commits {unopened[0]} and the answer carries no opening")
    same = all(
        k in recorded and canonical_json(recorded[k]) == canonical_json(v)
        for k, v in intent.items()
    ) and all(k in intent or recorded[k] in ({}, None) for k in recorded)
    if not same:
        raise Unverified("the receipt is for another request than the one sent")
    decision = receipt["decision"]
    if decision == "PERMIT":
        return Permit(response, receipt)
    reason = str(receipt.get("reason", ""))
    if decision == "DENY":
        raise Deny(reason, response)
    raise Silence(reason, response)


def _transport_and_url(base: str, *, asynchronous: bool) -> tuple[Any, str]:
    if base.startswith("unix:"):
        path = base.removeprefix("unix:")
        if asynchronous:
            return httpx.AsyncHTTPTransport(uds=path), "http://localhost"
        return httpx.HTTPTransport(uds=path), "http://localhost"
    return None, base.rstrip("/")


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """TLS verification: against `ca_file` (PEM) if given, else the system's roots."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _answer(trust: Trust, intent: Mapping[str, Any], r: httpx.Response) -> Permit | Unavailable:
    """What one answer of the gate amounts to: the permit, a 503 to retry
    (returned), or a refusal to raise at once."""
    text = r.content.decode("utf-8", "replace").strip()
    if r.status_code == 200:
        return outcome(trust, intent, r.content)
    if r.status_code in (400, 409):
        raise Invalid(f"{r.status_code}: {text}")
    if r.status_code == 503:
        return Unavailable(f"503: {text}")
    raise Unavailable(f"{r.status_code}: {text}")


def _headers() -> dict[str, str]:
    """A decision request's headers: JSON, and the W3C trace context of the
    current OpenTelemetry span (`traceparent`, `tracestate`) when the
    OpenTelemetry API is installed and a span is current, so the gate's
    decision is a span of the caller's trace."""
    headers = {"content-type": "application/json"}
    if _propagate is not None:
        _propagate.inject(headers)
    return headers


def _http_options(base: str, token: str | None, timeout: float, ca_file: str | None,
                  *, asynchronous: bool) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The gate's base URL and the httpx client options both clients use."""
    transport, url = _transport_and_url(base, asynchronous=asynchronous)
    return url, {
        "transport": transport,
        "timeout": timeout,
        "headers": {"authorization": f"Bearer {token}"} if token else {},
        "verify": _verify(ca_file),
    }


def _waiting_for(trust: Trust, silence: Silence, wait: float) -> str | None:
    """The approval request a SILENCE waits for (its id computed from the
    verified receipt, not taken from the unsigned answer), if waiting is on."""
    if wait <= 0 or not silence.response.get("approval"):
        return None
    body = verify_receipt(str(silence.response["receipt"]).encode(), trust.gate_key)
    return approval_id(body["request"])


def _approved(intent: Mapping[str, Any]) -> dict[str, Any]:
    """The intent asked again once approved: key plus `+approved` (cut to 128)."""
    key = str(intent.get("idempotency_key", ""))
    return {**intent, "idempotency_key": key[: 128 - len("+approved")] + "+approved"}


@dataclass(frozen=True)
class _Post:
    """Step: POST this body to /v1/decisions; send back the `httpx.Response`
    or the `httpx.HTTPError` it raised."""

    body: bytes


@dataclass(frozen=True)
class _Read:
    """Step: read approval request `approval_id`; send back its dict."""

    approval_id: str


@dataclass(frozen=True)
class _Sleep:
    """Step: wait this many seconds; send back None."""

    seconds: float


_Step = _Post | _Read | _Sleep


def _attempts(
    trust: Trust, intent: Mapping[str, Any], retries: int
) -> Generator[_Step, object, Permit]:
    """One decision, without I/O: POSTs of the very same body (so the same
    idempotency key), transport errors and 503s retried with backoff; the
    verified `Permit`, or the last `Refusal` raised."""
    body = json.dumps(dict(intent)).encode()
    last: Refusal = Unavailable("no attempt")
    for attempt in range(retries + 1):
        if attempt:
            yield _Sleep(0.05 * 2**attempt)
        r = yield _Post(body)
        if isinstance(r, httpx.HTTPError):
            last = Unavailable(f"the gate did not answer: {r!r}")
            continue
        assert isinstance(r, httpx.Response)
        got = _answer(trust, intent, r)
        if isinstance(got, Permit):
            return got
        last = got
    raise last


def _deciding(
    trust: Trust,
    intent: Mapping[str, Any],
    retries: int,
    approval_wait: float,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[_Step, object, Permit]:
    """`Client.decide` without I/O (both clients drive it): a decision, and
    with `approval_wait` a SILENCE that asks for approval waits for it
    (polling the request) and is asked again under the key plus `+approved`."""
    try:
        return (yield from _attempts(trust, intent, retries))
    except Silence as silence:
        waiting = _waiting_for(trust, silence, approval_wait)
        if waiting is None:
            raise
        deadline = clock() + approval_wait
        while True:
            request = yield _Read(waiting)
            state = request.get("state") if isinstance(request, dict) else None
            if state == "approved":
                return (yield from _attempts(trust, _approved(intent), retries))
            left = deadline - clock()
            if state != "open" or left <= 0:
                raise
            yield _Sleep(min(left, 0.25))


class Client:
    """The gate at `base` (`http(s)://…` or `unix:/path`), its answers
    verified with `trust`, as a caller with bearer `token` (none on a Unix
    socket the gate maps by peer uid); https verified against `ca_file`.
    With `approval_wait` (seconds), a decision the policy wants approved
    waits that long for a person to approve it (polling the request), then
    is asked again under the key plus `+approved`; otherwise the SILENCE."""

    def __init__(
        self,
        base: str,
        trust: Trust,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        ca_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
        approval_wait: float = 0.0,
    ) -> None:
        self._url, options = _http_options(base, token, timeout, ca_file, asynchronous=False)
        self._http = httpx.Client(**{**options, "transport": transport or options["transport"]})
        self._trust, self._retries = trust, retries
        self._approval_wait = approval_wait

    def decide(self, intent: Mapping[str, Any]) -> Permit:
        """A verified PERMIT for `intent`, or the `Refusal` it gets."""
        steps = _deciding(self._trust, intent, self._retries, self._approval_wait)
        result: object = None
        try:
            while True:
                step = steps.send(result)
                if isinstance(step, _Post):
                    try:
                        result = self._http.post(
                            f"{self._url}/v1/decisions", content=step.body, headers=_headers()
                        )
                    except httpx.HTTPError as e:
                        result = e
                elif isinstance(step, _Read):
                    result = self.approval(step.approval_id)
                else:
                    time.sleep(step.seconds)
                    result = None
        except StopIteration as done:
            permit: Permit = done.value
            return permit

    def approval(self, approval_id: str) -> dict[str, Any]:
        """Approval request `approval_id` as the gate holds it (the caller
        that asked may read its own); `{}` if it cannot be read."""
        try:
            r = self._http.get(f"{self._url}/v1/approvals/{approval_id}")
            answer = r.json() if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}
        return answer if isinstance(answer, dict) else {}

    @contextmanager
    def guard(self, intent: Mapping[str, Any]) -> Iterator[Permit]:
        """`with client.guard(intent) as permit:` runs its body only on a
        verified PERMIT; otherwise raises the `Refusal` before it."""
        permit = self.decide(intent)
        token = _CURRENT.set(permit)
        try:
            yield permit
        finally:
            _CURRENT.reset(token)

    def guarded(
        self, intent: Callable[P, Mapping[str, Any]]
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """A decorator: the function runs only on a verified PERMIT for
        `intent(*args, **kwargs)`, once per call; otherwise the `Refusal`."""

        def wrap(tool: Callable[P, T]) -> Callable[P, T]:
            @functools.wraps(tool)
            def call(*args: P.args, **kwargs: P.kwargs) -> T:
                token = _CURRENT.set(self.decide(intent(*args, **kwargs)))
                try:
                    return tool(*args, **kwargs)
                finally:
                    _CURRENT.reset(token)

            return call

        return wrap

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio and anyio."""

    def __init__(
        self,
        base: str,
        trust: Trust,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        ca_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        approval_wait: float = 0.0,
    ) -> None:
        self._url, options = _http_options(base, token, timeout, ca_file, asynchronous=True)
        self._http = httpx.AsyncClient(
            **{**options, "transport": transport or options["transport"]}
        )
        self._trust, self._retries = trust, retries
        self._approval_wait = approval_wait

    async def decide(self, intent: Mapping[str, Any]) -> Permit:
        """`Client.decide`."""
        steps = _deciding(self._trust, intent, self._retries, self._approval_wait)
        result: object = None
        try:
            while True:
                step = steps.send(result)
                if isinstance(step, _Post):
                    try:
                        result = await self._http.post(
                            f"{self._url}/v1/decisions", content=step.body, headers=_headers()
                        )
                    except httpx.HTTPError as e:
                        result = e
                elif isinstance(step, _Read):
                    result = await self.approval(step.approval_id)
                else:
                    await anyio.sleep(step.seconds)
                    result = None
        except StopIteration as done:
            permit: Permit = done.value
            return permit

    async def approval(self, approval_id: str) -> dict[str, Any]:
        """`Client.approval`."""
        try:
            r = await self._http.get(f"{self._url}/v1/approvals/{approval_id}")
            answer = r.json() if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}
        return answer if isinstance(answer, dict) else {}

    @asynccontextmanager
    async def guard(self, intent: Mapping[str, Any]) -> AsyncIterator[Permit]:
        permit = await self.decide(intent)
        token = _CURRENT.set(permit)
        try:
            yield permit
        finally:
            _CURRENT.reset(token)

    def guarded(
        self, intent: Callable[P, Mapping[str, Any]]
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        def wrap(tool: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            @functools.wraps(tool)
            async def call(*args: P.args, **kwargs: P.kwargs) -> T:
                token = _CURRENT.set(await self.decide(intent(*args, **kwargs)))
                try:
                    return await tool(*args, **kwargs)
                finally:
                    _CURRENT.reset(token)

            return call

        return wrap

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
