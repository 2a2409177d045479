"""RFC 8785 canonical JSON (ECMAScript number formatting), and the strict
JSON every answer is read with: a member named twice, NaN or an infinite
number is refused."""

from __future__ import annotations

import json
import math
from typing import Any

from tollgate.verify._base import VerificationError


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
