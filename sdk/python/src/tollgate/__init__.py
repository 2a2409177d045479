"""Tollgate for Python agents.

So far: independent verification of what the gate answers, written from the
specifications (C2SP signed-note, tlog-checkpoint, tlog-cosignature,
tlog-proof; RFC 9162 Merkle proofs; RFC 8785 canonical JSON), not bound to
the Rust code. `verify_decision` checks a decision response the way
`proofcheck receipt` does.
"""

from tollgate.verify import (
    Checkpoint,
    Decision,
    ProofBundle,
    VerificationError,
    Verifier,
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
    "Checkpoint",
    "Decision",
    "ProofBundle",
    "VerificationError",
    "Verifier",
    "canonical_json",
    "parse_checkpoint",
    "parse_proof_bundle",
    "verify_consistency",
    "verify_decision",
    "verify_inclusion",
    "verify_note",
    "verify_receipt",
]
