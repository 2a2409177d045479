"""Tollgate receipts and decision answers: a signed note (by the gate key)
whose text is the RFC 8785 canonical JSON of the receipt body and a
newline; the request rules; `verify_decision`, as `proofcheck receipt`."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from tollgate.verify._base import VerificationError
from tollgate.verify.jcs import canonical_json, strict_json
from tollgate.verify.notes import Verifier, verify_note
from tollgate.verify.policy import Policy
from tollgate.verify.proof import verify_proof_bundle

Decision = Literal["PERMIT", "DENY", "SILENCE"]
RECEIPT_FORMAT = "tollgate.receipt/v2"


_REQUEST_FIELDS = {
    "actor", "surface", "action", "target", "context", "idempotency_key",
    "expected_policy_version",
}  # fmt: skip
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_VERSION = re.compile(r"sha256:[0-9a-f]{64}")
MAX_SAFE_INTEGER = 2**53 - 1


def _bad_request(at: str, problem: str) -> VerificationError:
    return VerificationError(f"recorded request {at or '/'}: {problem}")


def _is_id(v: object) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in v)


def _check_free(v: object, at: str, depth: int) -> None:
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, int | float):
        if not abs(v) <= MAX_SAFE_INTEGER:
            raise _bad_request(at, "number beyond 2^53 - 1")
        return
    if isinstance(v, str):
        if len(v) > 1024:
            raise _bad_request(at, "string longer than 1024 characters")
        return
    items = (
        list(v.items())
        if isinstance(v, dict)
        else list(enumerate(v))
        if isinstance(v, list)
        else None
    )
    if items is None:
        raise _bad_request(at, "not JSON")
    if depth > 4 or len(items) > 64:
        raise _bad_request(at, "nested deeper than 4 levels, or more than 64 members or items")
    for k, item in items:
        if isinstance(k, str) and not 1 <= len(k) <= 128:
            raise _bad_request(at, "member names must be 1 to 128 characters")
        _check_free(item, f"{at}/{k}", depth + 1)


def check_request(request: dict[str, Any], *, normalized: bool = False) -> None:
    """`request` meets the decision request contract (schemas/
    decision-request.schema.json), as the gate's parser enforces it; with
    `normalized`, in the form receipts record (`context` always present).
    Raises `VerificationError` naming the field."""
    unknown = set(request) - _REQUEST_FIELDS
    if unknown:
        raise _bad_request(f"/{sorted(unknown)[0]}", "unknown field")
    actor = request.get("actor")
    if not isinstance(actor, dict) or set(actor) - {"id", "kind", "on_behalf_of"}:
        raise _bad_request("/actor", "must be an object of id, kind, on_behalf_of")
    if not _is_id(actor.get("id")):
        raise _bad_request("/actor/id", "must be 1 to 128 printable ASCII characters")
    if actor.get("kind") not in ("agent", "human", "service"):
        raise _bad_request("/actor/kind", "must be one of agent, human, service")
    if "on_behalf_of" in actor and not _is_id(actor["on_behalf_of"]):
        raise _bad_request("/actor/on_behalf_of", "must be 1 to 128 printable ASCII characters")
    for name in ("surface", "action"):
        if not isinstance(request.get(name), str) or not _NAME.fullmatch(request[name]):
            raise _bad_request(f"/{name}", "must be a lowercase name")
    for name in ("target", "context"):
        if name not in request and (name == "target" or normalized):
            raise _bad_request(f"/{name}", "missing required field")
        if name in request:
            if not isinstance(request[name], dict):
                raise _bad_request(f"/{name}", "must be an object")
            _check_free(request[name], f"/{name}", 1)
    if not _is_id(request.get("idempotency_key")):
        raise _bad_request("/idempotency_key", "must be 1 to 128 printable ASCII characters")
    version = request.get("expected_policy_version")
    if "expected_policy_version" in request and not (
        isinstance(version, str) and _VERSION.fullmatch(version)
    ):
        raise _bad_request("/expected_policy_version", "must be sha256: and 64 hex digits")


def approval_id(request: dict[str, Any]) -> str:
    """The id of the approval request for a request (as a receipt records
    it): `ap-` and 32 hex digits of the SHA-256 of the canonical request
    without its idempotency key and pinned policy version, as the gate
    computes it."""
    subject = {
        k: v for k, v in request.items() if k not in ("idempotency_key", "expected_policy_version")
    }
    return "ap-" + hashlib.sha256(canonical_json(subject).encode()).hexdigest()[:32]


def receipt_id(caller: str, actor: str, idempotency_key: str) -> str:
    h = hashlib.sha256(b"tollgate receipt id v2\0")
    h.update(f"{caller}\0{actor}\0{idempotency_key}".encode())
    return h.hexdigest()[:32]


def verify_receipt(receipt: bytes, gate_key: Verifier) -> dict[str, Any]:
    """The body of a receipt signed by `gate_key` whose text is canonical and
    whose digest and id agree with what it records."""
    text = verify_note(receipt, gate_key)
    body = strict_json(text)
    if not isinstance(body, dict):
        raise VerificationError("receipt body is not an object")
    _members("receipt", body, _RECEIPT_MEMBERS, _RECEIPT_REQUIRED)
    policy = body.get("policy")
    if policy is not None and (
        not isinstance(policy, dict) or set(policy) != {"version", "engine"}
    ):
        raise VerificationError("receipt policy is not {version, engine}")
    if canonical_json(body) + "\n" != text:
        raise VerificationError("receipt text is not canonical JSON")
    if body.get("format") != RECEIPT_FORMAT:
        raise VerificationError(f"receipt format {body.get('format')!r}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise VerificationError("receipt records no request")
    check_request(request, normalized=True)
    digest = "sha256:" + hashlib.sha256(canonical_json(request).encode()).hexdigest()
    if body.get("request_digest") != digest:
        raise VerificationError("request_digest does not match the recorded request")
    caller = body.get("derived", {}).get("caller", {}).get("name")
    actor = request.get("actor", {}).get("id")
    key = request.get("idempotency_key")
    if not (isinstance(caller, str) and isinstance(actor, str) and isinstance(key, str)):
        raise VerificationError("receipt lacks caller, actor or idempotency key")
    if body.get("receipt_id") != receipt_id(caller, actor, key):
        raise VerificationError("receipt_id does not match caller, actor and idempotency key")
    if body.get("decision") not in ("PERMIT", "DENY", "SILENCE"):
        raise VerificationError("receipt decision is not PERMIT, DENY or SILENCE")
    return body


# The members of a receipt body (tollgate.receipt/v2) and of a decision
# response: anything else is refused, as the Rust verifier's types refuse it.
_RECEIPT_REQUIRED = {
    "format", "receipt_id", "log", "request", "request_digest", "decision", "reason",
    "derived", "decided_at",
}  # fmt: skip
_RECEIPT_MEMBERS = _RECEIPT_REQUIRED | {"policy"}
_RESPONSE_REQUIRED = {
    "decision", "reason", "receipt_id", "policy_version", "log_index", "receipt", "proof",
    "replayed",
}  # fmt: skip
_RESPONSE_MEMBERS = _RESPONSE_REQUIRED | {"approval", "openings"}

_COMMITMENT_TAG = b"tollgate commitment v1\x00"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def commitment(salt: bytes, value: Any) -> str:
    """The commitment to `value` under `salt` (32 bytes): `sha256:` and the
    hex SHA-256 of the tag, the salt and the RFC 8785 form of the value."""
    digest = hashlib.sha256(_COMMITMENT_TAG + salt + canonical_json(value).encode()).hexdigest()
    return f"sha256:{digest}"


def committed_fields(body: dict[str, Any]) -> list[str]:
    """The fields a receipt commits (`derived.committed`): JSON Pointers."""
    fields = (body.get("derived") or {}).get("committed") or []
    return [f for f in fields if isinstance(f, str)]


def _pointer(doc: Any, field: str) -> tuple[Any, str] | None:
    """The object holding `field` (an RFC 6901 pointer) and its last name."""
    names = [t.replace("~1", "/").replace("~0", "~") for t in field.split("/")[1:]]
    if not names:
        return None
    for name in names[:-1]:
        if not isinstance(doc, dict) or name not in doc:
            return None
        doc = doc[name]
    return (doc, names[-1]) if isinstance(doc, dict) and names[-1] in doc else None


def _opens(opening: Any, text: Any) -> bool:
    if not isinstance(opening, dict) or set(opening) != {"salt", "value"}:
        return False
    salt = opening["salt"]
    if not isinstance(salt, str) or not _HEX64.fullmatch(salt):
        return False
    return bool(commitment(bytes.fromhex(salt), opening["value"]) == text)


def check_openings(body: dict[str, Any], openings: Any) -> dict[str, str]:
    """Each committed field of the receipt `body`: `"opened"` if `openings`
    (field → {salt, value}) holds one that opens its commitment, `"erased"`
    if it holds none. A wrong opening, or one for a field the receipt does
    not commit, is a `VerificationError` naming the field."""
    openings = openings or {}
    if not isinstance(openings, dict):
        raise VerificationError("the response's openings are not an object")
    committed = committed_fields(body)
    extra = sorted(set(openings) - set(committed))
    if extra:
        raise VerificationError(f"an opening for {extra[0]}, which the receipt does not commit")
    status = {}
    for field in committed:
        at = _pointer(body["request"], field)
        if at is None or not isinstance(at[0][at[1]], str):
            raise VerificationError(f"the receipt commits {field} but holds no commitment there")
        if field not in openings:
            status[field] = "erased"
        elif _opens(openings[field], at[0][at[1]]):
            status[field] = "opened"
        else:
            raise VerificationError(f"the opening of {field} does not open its commitment")
    return status


def open_request(body: dict[str, Any], openings: Any) -> tuple[dict[str, Any], list[str]]:
    """The receipt's request with its committed fields opened by
    `openings` (each checked), and the fields left unopened."""
    request = json.loads(json.dumps(body["request"]))
    unopened = []
    for field, state in check_openings(body, openings).items():
        at = _pointer(request, field)
        if state == "opened" and at is not None:
            at[0][at[1]] = openings[field]["value"]
        else:
            unopened.append(field)
    return request, unopened


def _members(what: str, obj: dict[str, Any], known: set[str], required: set[str]) -> None:
    """`obj` has every `required` member and none but the `known` ones."""
    unknown, missing = set(obj) - known, required - set(obj)
    if unknown or missing:
        raise VerificationError(
            f"{what} members {sorted(unknown)} unknown, or {sorted(missing)} missing"
        )


def verify_decision(
    response: dict[str, Any],
    log_key: Verifier,
    gate_key: Verifier,
    witnesses: Policy | None = None,
) -> dict[str, Any]:
    """A decision response (`POST /v1/decisions`), checked as `proofcheck
    receipt` does: the receipt (signature and body), its inclusion proof to a
    checkpoint signed by the log key, every field the response repeats, and
    that each opening opens its committed field (`check_openings` says
    which are opened and which erased). Returns the receipt body."""
    receipt = response.get("receipt")
    proof = response.get("proof")
    if not isinstance(receipt, str) or not isinstance(proof, str):
        raise VerificationError("the response lacks a receipt or a proof")
    _members("response", response, _RESPONSE_MEMBERS, _RESPONSE_REQUIRED)
    index = response.get("log_index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise VerificationError("the response's log_index is not a non-negative integer")
    if not isinstance(response.get("replayed"), bool):
        raise VerificationError("the response's replayed is not a boolean")
    body = verify_receipt(receipt.encode(), gate_key)
    bundle = verify_proof_bundle(receipt.encode(), proof.encode(), log_key, witnesses)
    # The checkpoint's origin is the log key's name (checked above).
    if body.get("log") != log_key.name:
        raise VerificationError(
            f"the receipt names log {body.get('log')!r}, the checkpoint is of {log_key.name!r}"
        )
    repeated = {
        "decision": body["decision"],
        "reason": body.get("reason"),
        "receipt_id": body["receipt_id"],
        "policy_version": (body.get("policy") or {}).get("version"),
        "log_index": bundle.index,
    }
    for field, want in repeated.items():
        if response.get(field) != want:
            raise VerificationError(f"the response's {field} differs from the receipt")
    # Openings are not signed: each must open its committed field.
    check_openings(body, response.get("openings"))
    return body
