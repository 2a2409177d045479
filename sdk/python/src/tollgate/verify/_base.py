"""What every part of verification shares: the one error, strict base64."""

from __future__ import annotations

import base64
import binascii

from tollgate.errors import TollgateError


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
