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
  before (each receipt id once; remembered only while it could still be
  fresh, so memory is bounded by `max_age` times the call rate).

`PermitMiddleware` is ASGI middleware (Starlette, FastAPI, any ASGI app):
anything else is 403 with a JSON body naming the reason, and the app never
sees the request.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from tollgate.client import Permit, Trust
from tollgate.verify import VerificationError, canonical_json, verify_decision

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


class Refused(Exception):
    """Why a call was refused (403)."""


class Missing(Refused):
    pass


class Malformed(Refused):
    pass


class Unverified(Refused):
    pass


class NotPermit(Refused):
    pass


class Mismatch(Refused):
    pass


class Stale(Refused):
    pass


class Used(Refused):
    pass


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

    def __init__(self, trust: Trust, *, max_age: float = DEFAULT_MAX_AGE) -> None:
        self._trust, self._max_age_ns = trust, int(max_age * 1e9)
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None, call: Call, now_ns: int | None = None) -> dict[str, Any]:
        """The receipt body of the permit in `header` for `call`, marked used;
        otherwise the `Refused` saying why."""
        if header is None:
            raise Missing(f"no permit: the call carries no {PERMIT_HEADER} header")
        try:
            raw = base64.urlsafe_b64decode(header.strip() + "=" * (-len(header.strip()) % 4))
            response = json.loads(raw)
        except (ValueError, TypeError) as e:
            raise Malformed(f"malformed permit: {e}") from e
        if not isinstance(response, dict):
            raise Malformed("malformed permit: not a decision answer")
        try:
            receipt = verify_decision(
                response, self._trust.log_key, self._trust.gate_key, self._trust.witnesses
            )
        except VerificationError as e:
            raise Unverified(f"the permit does not verify: {e}") from e
        if receipt["decision"] != "PERMIT":
            raise NotPermit(f"the permit records {receipt['decision']}, not PERMIT")
        r = receipt["request"]
        for what, got, want in [
            ("surface", r.get("surface"), call.surface),
            ("action", r.get("action"), call.action),
            ("target", r.get("target"), call.target),
        ]:
            if canonical_json(got) != canonical_json(want):
                raise Mismatch(
                    f"the permit is for another call: {what} {canonical_json(got)} "
                    f"permitted, {canonical_json(want)} asked"
                )
        decided = _unix_ns(str(receipt.get("decided_at")))
        now = time.time_ns() if now_ns is None else now_ns
        if now - decided > self._max_age_ns or decided - now > 1_000_000_000:
            raise Stale(f"the permit is not fresh: decided {receipt.get('decided_at')}")
        with self._lock:
            self._used = {k: v for k, v in self._used.items() if v >= now}
            rid = str(receipt["receipt_id"])
            if rid in self._used:
                raise Used(f"the permit was used before (receipt {rid})")
            self._used[rid] = decided + self._max_age_ns
        return receipt

    def remembered(self) -> int:
        with self._lock:
            return len(self._used)


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
    ) -> None:
        self.app, self.verifier, self.call_of, self.body_limit = app, verifier, call_of, body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            parsed = json.loads(body) if body else None
            self.verifier.check(header, self.call_of(scope, parsed))
        except Refused as e:
            await _refuse(send, str(e))
            return
        except ValueError:
            await _refuse(send, "the body is not JSON")
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
