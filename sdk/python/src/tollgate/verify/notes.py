"""C2SP signed-note and tlog-checkpoint: text, an empty line, signature lines
``— <name> <base64(key id ‖ signature)>`` (Ed25519 key ids: the first 4
bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)); a checkpoint is origin,
tree size, base64 root hash and extension lines."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.verify._base import VerificationError, _b64

EM_DASH = "\u2014 "
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20


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
