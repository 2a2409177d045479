"""Receipts that can forget, from the Python SDK: a field the surface
contract marks sensitive is committed in the receipt; the answer's openings
verify against it, a wrong one is refused, an erased one is reported; the
client and the surface verifier compare the call through the openings."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, Gate, start
from tollgate import Client, Trust, Unverified, VerificationError, Verifier
from tollgate.surface import Call, Mismatch, SurfaceVerifier, header_value
from tollgate.verify import check_openings, commitment, open_request, verify_decision

CUSTOMER = "Ada Lovelace py-4e1d"


@pytest.fixture(scope="module")
def contract_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    process, g = start(tmp_path_factory.mktemp("contract"), {"TOLLGATE_EXAMPLE_CONTRACT": "true"})
    yield g
    process.kill()
    process.wait()


def update(key: str, customer: str = CUSTOMER) -> dict[str, Any]:
    return {
        "actor": {"id": "agent-deployer", "kind": "agent"},
        "surface": "crm",
        "action": "update",
        "target": {"record": "acme", "customer": customer},
        "idempotency_key": key,
    }


def keys(g: Gate) -> tuple[Verifier, Verifier]:
    return Verifier.parse(g.log_key), Verifier.parse(g.gate_key)


def test_the_commitment_is_the_rust_gates() -> None:
    # sha256("tollgate commitment v1\0" || salt || canonical JSON), computed
    # by hand here so the function cannot agree with itself only.
    import hashlib

    salt = bytes(range(32))
    want = hashlib.sha256(b"tollgate commitment v1\x00" + salt + b'{"a":1,"b":"x"}').hexdigest()
    assert commitment(salt, {"b": "x", "a": 1}) == f"sha256:{want}"


def test_openings_verify_a_wrong_one_is_refused_and_the_call_is_held_to_them(
    contract_gate: Gate,
) -> None:
    log_key, gate_key = keys(contract_gate)
    trust = Trust.of(contract_gate.log_key, contract_gate.gate_key)
    permit = Client(contract_gate.url, trust, token=contract_gate.token).decide(update("py-c1"))
    response = permit.response
    assert CUSTOMER not in response["receipt"]
    body = verify_decision(response, log_key, gate_key)
    assert body["derived"]["committed"] == ["/target/customer"]
    assert check_openings(body, response["openings"]) == {"/target/customer": "opened"}
    assert check_openings(body, {}) == {"/target/customer": "erased"}
    opened, unopened = open_request(body, response["openings"])
    assert opened["target"]["customer"] == CUSTOMER and unopened == []

    wrong = json.loads(json.dumps(response))
    wrong["openings"]["/target/customer"]["value"] = "Grace Hopper"
    with pytest.raises(VerificationError, match="/target/customer"):
        verify_decision(wrong, log_key, gate_key)

    surface = SurfaceVerifier(trust)
    target = {"record": "acme", "customer": CUSTOMER}
    with pytest.raises(Mismatch, match="Grace Hopper"):
        surface.check(
            header_value(permit), Call("crm", "update", {**target, "customer": "Grace Hopper"})
        )
    bare = {k: v for k, v in response.items() if k != "openings"}
    bare_header = base64.urlsafe_b64encode(json.dumps(bare).encode()).rstrip(b"=").decode()
    with pytest.raises(Mismatch, match="no opening"):
        surface.check(bare_header, Call("crm", "update", target))
    assert (
        surface.check(header_value(permit), Call("crm", "update", target))["decision"] == "PERMIT"
    )


def test_an_erased_opening_is_reported_and_the_client_refuses_an_answer_without_one(
    contract_gate: Gate,
) -> None:
    log_key, gate_key = keys(contract_gate)
    trust = Trust.of(contract_gate.log_key, contract_gate.gate_key)
    permit = Client(contract_gate.url, trust, token=contract_gate.token).decide(update("py-c2"))
    erased = subprocess.run(
        [
            str(BIN / "tollgate"), "erase", permit.receipt_id, "--field", "/target/customer",
            "--reason", "test", "--url", contract_gate.url,
            "--token-file", str(Path(contract_gate.data) / "admin.token"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert erased.returncode == 0, erased.stderr
    request = urllib.request.Request(
        f"{contract_gate.url}/v1/receipts/{permit.receipt_id}",
        headers={"authorization": f"Bearer {contract_gate.token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        saved = json.loads(r.read())
    body = verify_decision(saved, log_key, gate_key)
    assert check_openings(body, saved.get("openings")) == {"/target/customer": "erased"}
    # The same request again is the original receipt, now without its
    # opening: the client cannot show it is for the request sent.
    with pytest.raises(Unverified, match="no opening"):
        Client(contract_gate.url, trust, token=contract_gate.token).decide(update("py-c2"))
