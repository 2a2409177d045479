"""Enforcement at the execution surface: the tool's own service refuses a
call that does not carry a fresh, unused PERMIT for exactly that call. The
same rules and wire form as the Rust SDK's `sdk::surface`:

- the permit travels in the `tollgate-permit` header: the gate's whole
  decision answer (receipt and tlog-proof) as JSON, base64url without
  padding (`header_value`);
- a call is served only if its permit verifies (gate signature, canonical
  receipt, proof to a checkpoint signed by the log key), says PERMIT, is for
  this call (surface, action and target equal what the service is asked to
  do, targets compared in RFC 8785 form), is fresh (decided at most
  `max_age` ago, and not more than a second in the future) and was not used
  before: its redeemer records it used, once. The default, `InProcess`,
  remembers receipt ids in this process only (while they could still be
  fresh, so memory is bounded by `max_age` times the call rate): **two
  replicas of a service, or one restarted within `max_age`, would each
  accept the same permit once.** For single use across replicas and
  restarts use `AtGate` (the gate records the redemption in its log,
  exactly once, naming the surface; `proofcheck audit` checks that no permit
  was redeemed twice) or a `Redeemer` over a store all replicas share.

`PermitMiddleware` is ASGI middleware (Starlette, FastAPI, any ASGI app):
the body is parsed as strict JSON (duplicate member names, `NaN` and
out-of-range numbers refused: the app's own parser must not read a value the
permit was not checked for); anything else is 403 with a JSON body naming
the reason, and the app never sees the request. WebSocket connections are
refused (closed before the handshake completes, so the server answers 403)
unless `allow_websocket=True`: a permit names one call, not a stream.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import secrets
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
import httpx

from tollgate.client import Permit, Trust
from tollgate.errors import TollgateError
from tollgate.verify import (
    VerificationError,
    canonical_json,
    open_request,
    strict_json,
    verify_decision,
)

PERMIT_HEADER = "tollgate-permit"
DEFAULT_MAX_AGE = 60.0


def header_value(permit: Permit) -> str:
    """The `tollgate-permit` header value that carries `permit`."""
    raw = json.dumps(permit.response, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class Call:
    """What the service is asked to do, to hold against the permit."""

    surface: str
    action: str
    target: Any


class Refused(TollgateError):
    """Why a call was refused (403)."""


class Missing(Refused):
    pass


class Malformed(Refused):
    pass


class PermitUnverified(Refused):
    """The permit does not verify (signature, receipt, proof)."""


class NotPermit(Refused):
    pass


class Mismatch(Refused):
    pass


class Stale(Refused):
    pass


class Used(Refused):
    pass


class Unredeemed(Refused):
    """The permit could not be recorded as used (the gate unreachable, a
    store failing): the call must not run."""


class Redeemer(Protocol):
    """Where a `SurfaceVerifier` records the permits it accepted, so each runs
    once. Called only for a verified, fresh PERMIT for the call; raises
    `Used` if it was used before, `Unredeemed` if it cannot record it."""

    def redeem(
        self, receipt: dict[str, Any], surface: str, fresh_until_ns: int, now_ns: int
    ) -> None: ...


class InProcess:
    """Single use in this process only (the default): receipt ids are kept
    in memory until they are stale. Replicas and restarts do not share it."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def redeem(
        self, receipt: dict[str, Any], surface: str, fresh_until_ns: int, now_ns: int
    ) -> None:
        with self._lock:
            self._used = {k: v for k, v in self._used.items() if v >= now_ns}
            rid = str(receipt["receipt_id"])
            if rid in self._used:
                raise Used(f"the permit was used before (receipt {rid})")
            self._used[rid] = fresh_until_ns

    def remembered(self) -> int:
        with self._lock:
            return len(self._used)


class AtGate:
    """Single use across replicas and restarts: the gate at `base` redeems
    the permit (`POST /v1/permits/{receipt_id}/redeem` as a caller with the
    `redeem` role, bearer `token`) and records it in its log exactly once.
    Transport errors and 503s are retried with the same idempotency key, so
    a retry of a redemption that committed is answered as that one."""

    def __init__(
        self,
        base: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        ca_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = base.rstrip("/")
        self._retries = retries
        self._http = httpx.Client(
            timeout=timeout,
            headers={"authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
            transport=transport,
        )

    def redeem(
        self, receipt: dict[str, Any], surface: str, fresh_until_ns: int, now_ns: int
    ) -> None:
        rid = str(receipt["receipt_id"])
        body = {"surface": surface, "idempotency_key": secrets.token_hex(16)}
        last = "no attempt"
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(0.05 * 2**attempt)
            try:
                r = self._http.post(f"{self._url}/v1/permits/{rid}/redeem", json=body)
            except httpx.HTTPError as e:
                last = f"the gate did not answer: {e!r}"
                continue
            text = r.content.decode("utf-8", "replace").strip()
            if r.status_code == 200:
                return
            if r.status_code == 409:
                raise Used(f"the permit was used before (receipt {rid}): {text}")
            last = f"{r.status_code}: {text}"
            if r.status_code != 503:
                break
        raise Unredeemed(f"the permit could not be redeemed: {last}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AtGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


def _unix_ns(stamp: str) -> int:
    m = _RFC3339.match(stamp)
    if not m:
        raise Malformed(f"decided_at {stamp!r} is not RFC 3339 UTC")
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


class SurfaceVerifier:
    """The tool side's verifier, trusting `trust`."""

    def __init__(
        self,
        trust: Trust,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        redeemer: Redeemer | None = None,
    ) -> None:
        self._trust, self._max_age_ns = trust, int(max_age * 1e9)
        self._in_process = InProcess()
        self._redeemer: Redeemer = redeemer or self._in_process

    def check(self, header: str | None, call: Call, now_ns: int | None = None) -> dict[str, Any]:
        """The receipt body of the permit in `header` for `call`, redeemed
        (marked used); otherwise the `Refused` saying why. Blocking if the
        redeemer is (`AtGate`)."""
        if header is None:
            raise Missing(f"no permit: the call carries no {PERMIT_HEADER} header")
        try:
            raw = base64.urlsafe_b64decode(header.strip() + "=" * (-len(header.strip()) % 4))
            response = strict_json(raw)
        except (ValueError, TypeError, VerificationError) as e:
            raise Malformed(f"malformed permit: {e}") from e
        if not isinstance(response, dict):
            raise Malformed("malformed permit: not a decision answer")
        try:
            receipt = verify_decision(
                response, self._trust.log_key, self._trust.gate_key, self._trust.witnesses
            )
        except VerificationError as e:
            raise PermitUnverified(f"the permit does not verify: {e}") from e
        if receipt["decision"] != "PERMIT":
            raise NotPermit(f"the permit records {receipt['decision']}, not PERMIT")
        # Committed fields through the permit's (checked) openings.
        r, unopened = open_request(receipt, response.get("openings"))
        if unopened:
            raise Mismatch(
                f"the receipt commits {unopened[0]} and the permit carries no opening of it"
            )
        for what, got, want in [
            ("surface", r.get("surface"), call.surface),
            ("action", r.get("action"), call.action),
            ("target", r.get("target"), call.target),
        ]:
            try:
                same = canonical_json(got) == canonical_json(want)
            except (VerificationError, ValueError, TypeError) as e:
                raise Mismatch(f"the permit is for another call: {what}: {e}") from e
            if not same:
                raise Mismatch(
                    f"the permit is for another call: {what} {canonical_json(got)} "
                    f"permitted, {canonical_json(want)} asked"
                )
        decided = _unix_ns(str(receipt.get("decided_at")))
        now = time.time_ns() if now_ns is None else now_ns
        if now - decided > self._max_age_ns or decided - now > 1_000_000_000:
            raise Stale(f"the permit is not fresh: decided {receipt.get('decided_at')}")
        self._redeemer.redeem(receipt, call.surface, decided + self._max_age_ns, now)
        return receipt

    def remembered(self) -> int:
        """Receipt ids remembered in this process (0 with another redeemer)."""
        return self._in_process.remembered()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PermitMiddleware:
    """ASGI middleware: every HTTP request must carry a permit for the call
    `call_of(scope, body)` asks for (`body`: the JSON body, None if empty).
    Bodies up to `body_limit` bytes; the app then gets the body as sent."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: SurfaceVerifier,
        call_of: Callable[[Scope, Any], Call],
        *,
        body_limit: int = 64 << 10,
        allow_websocket: bool = False,
    ) -> None:
        self.app, self.verifier, self.call_of, self.body_limit = app, verifier, call_of, body_limit
        self.allow_websocket = allow_websocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind == "websocket" and self.allow_websocket):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            # Closed before accepting: the server answers the handshake 403.
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "no permit"})
            return
        if kind != "http":
            raise RuntimeError(f"PermitMiddleware: refusing an ASGI {kind!r} connection")
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.body_limit:
                await _refuse(send, f"the body exceeds {self.body_limit} bytes")
                return
        header = None
        for name, value in scope.get("headers", []):
            if name.decode("latin-1").lower() == PERMIT_HEADER:
                header = value.decode("latin-1")
        try:
            parsed = strict_json(body) if body else None
        except VerificationError as e:
            await _refuse(send, f"the body is not strict JSON: {e}")
            return
        try:
            call = self.call_of(scope, parsed)
            # The redeemer may block (a request to the gate).
            await anyio.to_thread.run_sync(self.verifier.check, header, call)
        except Refused as e:
            await _refuse(send, str(e))
            return
        except (ValueError, TypeError, VerificationError) as e:
            await _refuse(send, f"the call does not verify: {e}")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": "refused", "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
