"""Tollgate for Python agents.

- `Client` / `AsyncClient`: ask the gate (HTTP(S) or `unix:/path`), verify
  the answer, get a `Permit` or a `Refusal`; `guard` and `guarded` run a tool
  only on a verified PERMIT.
- `tollgate.verify`: independent verification of what the gate answers,
  written from the specifications (C2SP signed-note, tlog-checkpoint,
  tlog-proof; RFC 9162 Merkle proofs; RFC 8785 canonical JSON), not bound to
  the Rust code. `verify_decision` checks a decision response the way
  `proofcheck receipt` does.
- `TollgateError`: the one root of every error the SDK raises on purpose
  (`Refusal`, `tollgate.surface.Refused`, `VerificationError`). `Client` and
  `AsyncClient` close with `with` / `async with`.
"""

from tollgate.client import (
    AsyncClient,
    Client,
    Deny,
    Invalid,
    Permit,
    Refusal,
    Silence,
    Trust,
    Unavailable,
    Unverified,
    current_permit,
)
from tollgate.errors import TollgateError
from tollgate.verify import (
    Checkpoint,
    Decision,
    Policy,
    ProofBundle,
    VerificationError,
    Verifier,
    approval_id,
    canonical_json,
    parse_checkpoint,
    parse_proof_bundle,
    verify_consistency,
    verify_decision,
    verify_inclusion,
    verify_note,
    verify_receipt,
)

__all__ = [
    "AsyncClient",
    "Checkpoint",
    "Client",
    "Decision",
    "Deny",
    "Invalid",
    "Permit",
    "Policy",
    "ProofBundle",
    "Refusal",
    "Silence",
    "TollgateError",
    "Trust",
    "Unavailable",
    "Unverified",
    "VerificationError",
    "Verifier",
    "approval_id",
    "canonical_json",
    "current_permit",
    "parse_checkpoint",
    "parse_proof_bundle",
    "verify_consistency",
    "verify_decision",
    "verify_inclusion",
    "verify_note",
    "verify_receipt",
]
