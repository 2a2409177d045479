"""tlog-policy quorums with cosignatures from the real `witness` binary:
a decision verifies with a witness policy only once its checkpoint carries
the quorum's cosignatures."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import BIN, Gate
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_client import client, intent
from tollgate import Policy, Trust, VerificationError, verify_decision
from tollgate.verify import Verifier


def cosign(gate: Gate, checkpoint: str, tmp_path: Path) -> tuple[str, str]:
    """The checkpoint cosigned by a fresh witness for the gate's log, and the
    witness's key."""
    process = subprocess.Popen(
        [str(BIN / "witness"), "serve", "--listen", "127.0.0.1:0", "--data-dir",
         str(tmp_path / "witness"), "--log-key", gate.log_key],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().removeprefix("witness listening on ").strip()
        key = process.stdout.readline().split()[-1]
        body = f"old 0\n\n{checkpoint}".encode()
        with urllib.request.urlopen(f"{url}/add-checkpoint", data=body, timeout=10) as r:
            lines = r.read().decode()
        return checkpoint + lines, key
    finally:
        process.kill()
        process.wait()


def test_a_decision_verifies_with_a_witness_policy_only_when_cosigned(
    gate: Gate, tmp_path: Path
) -> None:
    permit = client(gate).decide(intent(500, "w-1"))
    proof: str = permit.response["proof"]
    head, _, checkpoint = proof.partition("\n\n")
    cosigned, witness = cosign(gate, checkpoint, tmp_path)
    policy = f"log {gate.log_key}\nwitness w {witness}\nquorum w\n"
    trust = Trust.of(gate.log_key, gate.gate_key, policy)
    keys = (Verifier.parse(gate.log_key), Verifier.parse(gate.gate_key))
    with_cosignature = {**permit.response, "proof": f"{head}\n\n{cosigned}"}
    verify_decision(with_cosignature, *keys, trust.witnesses)
    with pytest.raises(VerificationError, match="quorum"):
        verify_decision(permit.response, *keys, trust.witnesses)
    # A cosignature that does not verify rejects the checkpoint.
    sig_at = cosigned.rindex(" ") + 20
    forged = cosigned[:sig_at] + ("A" if cosigned[sig_at] != "A" else "B") + cosigned[sig_at + 1 :]
    with pytest.raises(VerificationError):
        verify_decision({**permit.response, "proof": f"{head}\n\n{forged}"}, *keys, trust.witnesses)
    # Groups: all of two witnesses (one cosigned) is no quorum; any of them is.
    absent = new_witness_key("absent.example/w")
    for group, met in [("all", False), ("any", True), ("1", True), ("2", False)]:
        p = Policy.parse(
            f"log {gate.log_key}\nwitness a {witness}\nwitness b {absent}\n"
            f"group g {group} a b\nquorum g\n"
        )
        if met:
            verify_decision(with_cosignature, *keys, p)
        else:
            with pytest.raises(VerificationError, match="quorum"):
                verify_decision(with_cosignature, *keys, p)


def new_witness_key(name: str) -> str:
    """A cosignature/v1 verifier key (type 0x04) for a fresh Ed25519 key."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    key = b"\x04" + public
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(key).decode()}"


def test_policies_parse_as_the_spec_says(gate: Gate) -> None:
    for bad in [
        "quorum none\nquorum none\n",
        "log x\nquorum none\n",
        "witness w x\nquorum w\n",
        "quorum w\n",
        f"log {gate.log_key}\n",
        "group g 1\nquorum g\n",
    ]:
        with pytest.raises(VerificationError):
            Policy.parse(bad)
    assert Policy.parse(f"# a comment\nlog {gate.log_key}\nquorum none\n").quorum is None
