"""C2SP tlog-proof: ``c2sp.org/tlog-proof@v1``, optional ``extra``,
``index``, the inclusion proof, an empty line, the signed checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.verify._base import VerificationError, _b64
from tollgate.verify.merkle import leaf_hash, verify_inclusion
from tollgate.verify.notes import Verifier, _decimal, parse_checkpoint, verify_note
from tollgate.verify.policy import Policy

PROOF_HEADER = "c2sp.org/tlog-proof@v1"


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
