"""The client over the gate's Unix socket (sidecar) and over HTTPS verified
against a CA file (central), with the real gate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import anyio
import pytest
from conftest import Gate, start
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_client import intent
from tollgate import AsyncClient, Client, Trust, Unavailable


def test_the_unix_socket(gate: Gate) -> None:
    trust = Trust.of(gate.log_key, gate.gate_key)
    permit = Client(f"unix:{gate.socket}", trust, token=gate.token).decide(intent(500, "uds-1"))
    assert permit.receipt["decision"] == "PERMIT"

    async def run() -> None:
        c = AsyncClient(f"unix:{gate.socket}", trust, token=gate.token)
        assert (await c.decide(intent(500, "uds-2"))).receipt_id
        await c.aclose()

    anyio.run(run)


def _pem_cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
              issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def test_https_verified_against_a_ca_file(tmp_path: Path) -> None:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _pem_cert("test CA", ca_key, None, ca_key, True)
    cert = _pem_cert("127.0.0.1", key, ca, ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "gate.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (tmp_path / "gate.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    process, gate = start(
        tmp_path,
        {
            "TOLLGATE_TLS_CERT": str(tmp_path / "gate.pem"),
            "TOLLGATE_TLS_KEY": str(tmp_path / "gate.key"),
        },
    )
    try:
        assert gate.url.startswith("https://"), gate.url
        trust = Trust.of(gate.log_key, gate.gate_key)
        c = Client(gate.url, trust, token=gate.token, ca_file=str(tmp_path / "ca.pem"))
        assert c.decide(intent(500, "tls-1")).receipt["decision"] == "PERMIT"
        # Without the CA the certificate does not verify: no answer, fail closed.
        with pytest.raises(Unavailable):
            Client(gate.url, trust, token=gate.token, retries=0).decide(intent(500, "tls-2"))
    finally:
        process.kill()
        process.wait()
