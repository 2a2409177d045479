"""Verification of the gate's answers, from the specifications, one module
per specification:

- `tollgate.verify.notes`: C2SP signed-note and tlog-checkpoint;
- `tollgate.verify.policy`: C2SP tlog-policy (witness quorums);
- `tollgate.verify.merkle`: RFC 9162 §2.1 hashes, inclusion and consistency;
- `tollgate.verify.proof`: C2SP tlog-proof;
- `tollgate.verify.jcs`: RFC 8785 canonical JSON, and strict JSON;
- `tollgate.verify.receipts`: Tollgate receipts, the request rules and
  `verify_decision`, which checks a decision answer as `proofcheck receipt`
  does.

Everything public is importable from `tollgate.verify` itself.
"""

from tollgate.verify._base import VerificationError
from tollgate.verify.jcs import canonical_json, strict_json
from tollgate.verify.merkle import leaf_hash, verify_consistency, verify_inclusion
from tollgate.verify.notes import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    Verifier,
    note_signers,
    parse_checkpoint,
    verify_note,
)
from tollgate.verify.policy import Policy
from tollgate.verify.proof import (
    PROOF_HEADER,
    ProofBundle,
    parse_proof_bundle,
    verify_proof_bundle,
)
from tollgate.verify.receipts import (
    MAX_SAFE_INTEGER,
    RECEIPT_FORMAT,
    Decision,
    approval_id,
    check_openings,
    check_request,
    commitment,
    committed_fields,
    open_request,
    receipt_id,
    verify_decision,
    verify_receipt,
)

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SAFE_INTEGER",
    "MAX_SIGNATURES",
    "PROOF_HEADER",
    "RECEIPT_FORMAT",
    "Checkpoint",
    "Decision",
    "Policy",
    "ProofBundle",
    "VerificationError",
    "Verifier",
    "approval_id",
    "canonical_json",
    "check_openings",
    "check_request",
    "commitment",
    "committed_fields",
    "leaf_hash",
    "note_signers",
    "open_request",
    "parse_checkpoint",
    "parse_proof_bundle",
    "receipt_id",
    "strict_json",
    "verify_consistency",
    "verify_decision",
    "verify_inclusion",
    "verify_note",
    "verify_proof_bundle",
    "verify_receipt",
]
