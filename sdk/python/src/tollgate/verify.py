"""Verification of the gate's answers, from the specifications.

- C2SP signed-note: text, an empty line, signature lines
  ``— <name> <base64(key id ‖ signature)>``; Ed25519 key ids are the first 4
  bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key).
- C2SP tlog-checkpoint: origin, tree size, base64 root hash, extension lines.
- RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ entry), node hash
  SHA-256(0x01 ‖ left ‖ right); inclusion and consistency verification.
- C2SP tlog-proof: ``c2sp.org/tlog-proof@v1``, optional ``extra``, ``index``,
  the inclusion proof, an empty line, the signed checkpoint.
- Tollgate receipts: a signed note (by the gate key) whose text is the
  RFC 8785 canonical JSON of the receipt body and a newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.errors import TollgateError

Decision = Literal["PERMIT", "DENY", "SILENCE"]
RECEIPT_FORMAT = "tollgate.receipt/v2"
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
EM_DASH = "\u2014 "
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20


class VerificationError(TollgateError):
    """The input does not verify; the message says which check failed."""


def _b64(s: str, what: str) -> bytes:
    """Strict standard base64: padded, and canonical (unused bits zero), so
    one value has one spelling, as the Rust verifier requires."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(f"{what}: not base64") from e
    if base64.b64encode(raw).decode() != s:
        raise VerificationError(f"{what}: not canonical base64")
    return raw


ED25519 = 0x01
COSIGNATURE_V1 = 0x04


@dataclass(frozen=True)
class Verifier:
    """A C2SP signed-note verifier key: Ed25519 (type 0x01) or a witness's
    timestamped cosignature/v1 key (type 0x04)."""

    name: str
    key_id: bytes
    public_key: bytes
    kind: int = ED25519

    @staticmethod
    def parse(vkey: str) -> Verifier:
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
            raise VerificationError(f"malformed verifier key {vkey!r}")
        name, hash_hex, key_b64 = parts
        key = _b64(key_b64, "verifier key")
        if len(key) != 33 or key[0] not in (ED25519, COSIGNATURE_V1):
            raise VerificationError("verifier key: not an Ed25519 (0x01) or cosignature (0x04) key")
        try:
            key_id = bytes.fromhex(hash_hex)
        except ValueError as e:
            raise VerificationError("verifier key: key hash is not hex") from e
        want = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
        if key_id != want:
            raise VerificationError("verifier key: key hash does not match name and key")
        return Verifier(name, key_id, key[1:], key[0])

    def verifies(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def verify_note(note: bytes, verifier: Verifier) -> str:
    """The text of a signed note that carries a valid signature by `verifier`.

    A signature line by the verifier's name and key id that does not verify
    rejects the note (C2SP signed-note); so does one that is malformed.
    """
    text, signers = note_signers(note, [verifier])
    if not signers:
        raise VerificationError(f"no signature by {verifier.name}")
    return text


def note_signers(note: bytes, verifiers: list[Verifier]) -> tuple[str, list[Verifier]]:
    """The note's text and which of `verifiers` signed it. A signature line of
    a known name and key id that does not verify rejects the note."""
    if len(note) > MAX_NOTE_SIZE:
        raise VerificationError("note too large")
    try:
        s = note.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerificationError("note is not UTF-8") from e
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise VerificationError("note has a control character")
    split = s.rfind("\n\n")
    if split < 0:
        raise VerificationError("note has no empty line before its signatures")
    text, sigs = s[: split + 1], s[split + 2 :]
    if not sigs.endswith("\n"):
        raise VerificationError("note does not end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"note has more than {MAX_SIGNATURES} signatures")
    found: list[Verifier] = []
    for line in lines:
        if not line.startswith(EM_DASH):
            raise VerificationError(f"malformed signature line {line!r}")
        parts = line[len(EM_DASH) :].split(" ")
        if len(parts) != 2:
            raise VerificationError(f"malformed signature line {line!r}")
        name, sig_b64 = parts
        if not name or "+" in name or any(c.isspace() for c in name):
            raise VerificationError(f"invalid key name {name!r}")
        sig = _b64(sig_b64, "signature")
        if len(sig) < 5:
            raise VerificationError("signature too short")
        for v in verifiers:
            if name != v.name or sig[:4] != v.key_id:
                continue
            if v.kind == COSIGNATURE_V1:
                # cosignature/v1: key id, 8-byte big-endian timestamp, signature
                # over "cosignature/v1\ntime <t>\n" and the checkpoint text.
                if len(sig) != 4 + 8 + 64:
                    raise VerificationError(f"cosignature by {name} has the wrong length")
                t = int.from_bytes(sig[4:12], "big")
                message = f"cosignature/v1\ntime {t}\n{text}".encode()
                ok = t < 1 << 63 and v.verifies(message, sig[12:])
            else:
                ok = v.verifies(text.encode(), sig[4:])
            if not ok:
                raise VerificationError(f"signature by {name} does not verify")
            if v not in found:
                found.append(v)
    return text, found


@dataclass(frozen=True)
class _Group:
    threshold: int
    members: tuple[str, ...]


class Policy:
    """A C2SP tlog-policy: trusted logs, witnesses, groups and the quorum of
    cosignatures a checkpoint needs."""

    def __init__(self) -> None:
        self.logs: list[Verifier] = []
        self.witnesses: dict[str, Verifier] = {}
        self.groups: dict[str, _Group] = {}
        self.quorum: str | None = None

    @staticmethod
    def parse(text: str) -> Policy:
        p = Policy()
        quorum_seen = False
        for i, raw in enumerate(text.split("\n"), start=1):

            def bad(why: str, line: int = i) -> VerificationError:
                return VerificationError(f"policy line {line}: {why}")

            if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in raw):
                raise bad("control character")
            words = raw.replace("\t", " ").split()
            if not words or words[0].startswith("#"):
                continue
            kw, args = words[0], words[1:]
            if kw == "log" and 1 <= len(args) <= 2:
                key = Verifier.parse(args[0])
                if key.kind != ED25519 or any(k.public_key == key.public_key for k in p.logs):
                    raise bad("a log key must be a new Ed25519 key")
                p.logs.append(key)
            elif kw == "witness" and 2 <= len(args) <= 3:
                name, key = args[0], Verifier.parse(args[1])
                if name == "none" or name in p.witnesses or name in p.groups:
                    raise bad(f"name {name!r} is reserved or already defined")
                if key.kind != COSIGNATURE_V1 or any(
                    w.public_key == key.public_key for w in p.witnesses.values()
                ):
                    raise bad("a witness key must be a new cosignature/v1 key")
                p.witnesses[name] = key
            elif kw == "group" and len(args) >= 3:
                name, k, members = args[0], args[1], tuple(args[2:])
                if name == "none" or name in p.witnesses or name in p.groups:
                    raise bad(f"name {name!r} is reserved or already defined")
                for m in members:
                    if m not in p.witnesses and m not in p.groups:
                        raise bad(f"{m!r} is not defined above")
                if len(set(members)) != len(members):
                    raise bad("a member is listed twice")
                n = len(members)
                if k == "all":
                    t = n
                elif k == "any":
                    t = 1
                elif k.isdigit() and not k.startswith("0") and 1 <= int(k) <= n:
                    t = int(k)
                else:
                    raise bad(f"threshold {k!r} is not all, any or 1..{n}")
                p.groups[name] = _Group(t, members)
            elif kw == "quorum" and len(args) == 1:
                if quorum_seen:
                    raise bad("a second quorum line")
                quorum_seen = True
                if args[0] != "none":
                    if args[0] not in p.witnesses and args[0] not in p.groups:
                        raise bad(f"{args[0]!r} is not defined above")
                    p.quorum = args[0]
            elif kw in ("log", "witness", "group", "quorum"):
                raise bad(f"wrong number of fields for {kw}")
            else:
                raise bad(f"unknown keyword {kw!r}")
        if not quorum_seen:
            raise VerificationError("policy: no quorum line")
        return p

    def _witnessed(self, member: str, cosigners: set[str]) -> bool:
        if member in self.witnesses:
            return member in cosigners
        g = self.groups[member]
        return sum(self._witnessed(m, cosigners) for m in g.members) >= g.threshold

    def verify_checkpoint(self, signed: bytes) -> Checkpoint:
        """A checkpoint signed by a trusted log whose origin is its name, and
        cosigned by witnesses that satisfy the quorum."""
        text, _ = note_signers(signed, [])
        checkpoint = parse_checkpoint(text)
        logs = [k for k in self.logs if k.name == checkpoint.origin]
        if not logs:
            raise VerificationError(f"no trusted log has origin {checkpoint.origin!r}")
        _, signers = note_signers(signed, logs)
        if not signers:
            raise VerificationError(f"no signature by the log {checkpoint.origin}")
        _, cosigners = note_signers(signed, list(self.witnesses.values()))
        names = {n for n, w in self.witnesses.items() if w in cosigners}
        if self.quorum is not None and not self._witnessed(self.quorum, names):
            listed = ", ".join(sorted(names))
            raise VerificationError(
                f"witness quorum not met: {len(names)} valid cosignature(s) ({listed})"
            )
        return checkpoint


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def _decimal(s: str, what: str) -> int:
    if not s.isascii() or not s.isdigit() or (len(s) > 1 and s[0] == "0"):
        raise VerificationError(f"{what} {s!r} is not a canonical decimal")
    n = int(s)
    if n >= 1 << 64:
        raise VerificationError(f"{what} out of range")
    return n


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("checkpoint: fewer than three lines")
    root = _b64(lines[2], "checkpoint root")
    if len(root) != 32:
        raise VerificationError("checkpoint root is not 32 bytes")
    if not lines[0]:
        raise VerificationError("checkpoint: empty origin")
    return Checkpoint(lines[0], _decimal(lines[1], "checkpoint size"), root)


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _hash_sizes(*hashes: bytes) -> None:
    """Every hash is exactly 32 bytes: never truncated or padded."""
    if any(len(h) != 32 for h in hashes):
        raise VerificationError("a hash is not 32 bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    _hash_sizes(leaf, root, *proof)
    if index >= size:
        raise VerificationError("inclusion: index not below the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion: proof too long")
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion: proof too short")
    if r != root:
        raise VerificationError("inclusion: proof does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 §2.1.4.2 (an old size of 0 has no proof)."""
    _hash_sizes(old_root, new_root, *proof)
    if old == 0 or old > new:
        raise VerificationError("consistency: no proof exists between these sizes")
    if old == new:
        if proof or old_root != new_root:
            raise VerificationError("consistency: equal sizes need an empty proof and one root")
        return
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        raise VerificationError("consistency: empty proof")
    fn, sn = old - 1, new - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency: proof too long")
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency: proof too short")
    if fr != old_root or sr != new_root:
        raise VerificationError("consistency: proof does not lead to both roots")


@dataclass(frozen=True)
class ProofBundle:
    index: int
    proof: list[bytes]
    checkpoint: bytes
    extra: bytes | None = None


def parse_proof_bundle(text: str) -> ProofBundle:
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise VerificationError("tlog-proof: no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != PROOF_HEADER:
        raise VerificationError("tlog-proof: wrong header")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest.pop(0).removeprefix("extra "), "tlog-proof extra")
    if not rest or not rest[0].startswith("index "):
        raise VerificationError("tlog-proof: no index line")
    index = _decimal(rest.pop(0).removeprefix("index "), "tlog-proof index")
    proof = [_b64(h, "tlog-proof hash") for h in rest]
    if any(len(h) != 32 for h in proof):
        raise VerificationError("tlog-proof: a hash is not 32 bytes")
    return ProofBundle(index, proof, checkpoint.encode(), extra)


def verify_proof_bundle(
    entry: bytes, bundle_text: bytes, log_key: Verifier, witnesses: Policy | None = None
) -> ProofBundle:
    """A tlog-proof that `entry` is in the log whose checkpoint key is
    `log_key`; with `witnesses`, a C2SP tlog-policy naming that log, its
    checkpoint must also be cosigned to the policy's quorum."""
    try:
        bundle = parse_proof_bundle(bundle_text.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise VerificationError("tlog-proof is not UTF-8") from e
    if witnesses is not None:
        if log_key not in witnesses.logs:
            raise VerificationError("the witness policy does not name the log key")
        checkpoint = witnesses.verify_checkpoint(bundle.checkpoint)
    else:
        checkpoint = parse_checkpoint(verify_note(bundle.checkpoint, log_key))
    if checkpoint.origin != log_key.name:
        raise VerificationError("the checkpoint's origin is not the log key's name")
    verify_inclusion(leaf_hash(entry), bundle.index, checkpoint.size, bundle.proof, checkpoint.root)
    return bundle


def _es_number(x: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 requires."""
    if math.isnan(x) or math.isinf(x):
        raise VerificationError("JSON numbers are finite")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    digits = mantissa.replace(".", "")
    point = mantissa.index(".") if "." in mantissa else len(mantissa)
    e10 = point + (int(exp) if exp else 0)  # value = 0.digits * 10**e10
    stripped = digits.lstrip("0")
    e10 -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), e10
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + es


def _es_string(s: str) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif c < 0x20:
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(c, f"\\u{c:04x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS): keys sorted by their UTF-16 code units, no whitespace."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _es_number(value)
    if isinstance(value, str):
        return _es_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_es_string(k) + ":" + canonical_json(value[k]) for k in keys) + "}"
    raise VerificationError(f"not JSON: {type(value).__name__}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise VerificationError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise VerificationError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise VerificationError(f"the number {text} is out of range")
    return value


def strict_json(text: str | bytes) -> Any:
    """`text` parsed as strict JSON (RFC 8259), as the gate parses: a
    duplicate member name (which two parsers may read differently), `NaN`,
    `Infinity` and numbers beyond a double's range are refused with a
    `VerificationError`."""
    if isinstance(text, (bytes, bytearray)):
        if text.startswith(b"\xef\xbb\xbf"):
            raise VerificationError("not JSON: a byte-order mark")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise VerificationError(f"not JSON: {e}") from e
    if text.startswith("\ufeff"):
        raise VerificationError("not JSON: a byte-order mark")
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VerificationError(f"not JSON: {e}") from e


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
    unknown, missing = set(body) - _RECEIPT_MEMBERS, _RECEIPT_REQUIRED - set(body)
    if unknown or missing:
        raise VerificationError(
            f"receipt members {sorted(unknown)} unknown, or {sorted(missing)} missing"
        )
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
_RESPONSE_MEMBERS = _RESPONSE_REQUIRED | {"approval"}


def verify_decision(
    response: dict[str, Any],
    log_key: Verifier,
    gate_key: Verifier,
    witnesses: Policy | None = None,
) -> dict[str, Any]:
    """A decision response (`POST /v1/decisions`), checked as `proofcheck
    receipt` does: the receipt (signature and body), its inclusion proof to a
    checkpoint signed by the log key, and every field the response repeats.
    Returns the receipt body."""
    receipt = response.get("receipt")
    proof = response.get("proof")
    if not isinstance(receipt, str) or not isinstance(proof, str):
        raise VerificationError("the response lacks a receipt or a proof")
    unknown, missing = set(response) - _RESPONSE_MEMBERS, _RESPONSE_REQUIRED - set(response)
    if unknown or missing:
        raise VerificationError(
            f"response members {sorted(unknown)} unknown, or {sorted(missing)} missing"
        )
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
    return body
