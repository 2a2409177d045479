"""C2SP tlog-policy: logs, witnesses, groups with thresholds, a quorum; a
checkpoint verifies when a listed log signed it and a quorum cosigned it."""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.verify._base import VerificationError
from tollgate.verify.notes import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Verifier,
    note_signers,
    parse_checkpoint,
)  # fmt: skip


@dataclass(frozen=True)
class _Group:
    threshold: int
    members: tuple[str, ...]


class Policy:
    """A C2SP tlog-policy: trusted logs, witnesses, groups and the quorum of
    cosignatures a checkpoint needs."""

    def __init__(self) -> None:
        self.logs: list[Verifier] = []
        self.witnesses: dict[str, Verifier] = {}
        self.groups: dict[str, _Group] = {}
        self.quorum: str | None = None

    @staticmethod
    def parse(text: str) -> Policy:
        p = Policy()
        quorum_seen = False
        for i, raw in enumerate(text.split("\n"), start=1):

            def bad(why: str, line: int = i) -> VerificationError:
                return VerificationError(f"policy line {line}: {why}")

            if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in raw):
                raise bad("control character")
            words = raw.replace("\t", " ").split()
            if not words or words[0].startswith("#"):
                continue
            kw, args = words[0], words[1:]
            if kw == "log" and 1 <= len(args) <= 2:
                key = Verifier.parse(args[0])
                if key.kind != ED25519 or any(k.public_key == key.public_key for k in p.logs):
                    raise bad("a log key must be a new Ed25519 key")
                p.logs.append(key)
            elif kw == "witness" and 2 <= len(args) <= 3:
                name, key = args[0], Verifier.parse(args[1])
                if name == "none" or name in p.witnesses or name in p.groups:
                    raise bad(f"name {name!r} is reserved or already defined")
                if key.kind != COSIGNATURE_V1 or any(
                    w.public_key == key.public_key for w in p.witnesses.values()
                ):
                    raise bad("a witness key must be a new cosignature/v1 key")
                p.witnesses[name] = key
            elif kw == "group" and len(args) >= 3:
                name, k, members = args[0], args[1], tuple(args[2:])
                if name == "none" or name in p.witnesses or name in p.groups:
                    raise bad(f"name {name!r} is reserved or already defined")
                for m in members:
                    if m not in p.witnesses and m not in p.groups:
                        raise bad(f"{m!r} is not defined above")
                if len(set(members)) != len(members):
                    raise bad("a member is listed twice")
                n = len(members)
                if k == "all":
                    t = n
                elif k == "any":
                    t = 1
                elif k.isdigit() and not k.startswith("0") and 1 <= int(k) <= n:
                    t = int(k)
                else:
                    raise bad(f"threshold {k!r} is not all, any or 1..{n}")
                p.groups[name] = _Group(t, members)
            elif kw == "quorum" and len(args) == 1:
                if quorum_seen:
                    raise bad("a second quorum line")
                quorum_seen = True
                if args[0] != "none":
                    if args[0] not in p.witnesses and args[0] not in p.groups:
                        raise bad(f"{args[0]!r} is not defined above")
                    p.quorum = args[0]
            elif kw in ("log", "witness", "group", "quorum"):
                raise bad(f"wrong number of fields for {kw}")
            else:
                raise bad(f"unknown keyword {kw!r}")
        if not quorum_seen:
            raise VerificationError("policy: no quorum line")
        return p

    def _witnessed(self, member: str, cosigners: set[str]) -> bool:
        if member in self.witnesses:
            return member in cosigners
        g = self.groups[member]
        return sum(self._witnessed(m, cosigners) for m in g.members) >= g.threshold

    def verify_checkpoint(self, signed: bytes) -> Checkpoint:
        """A checkpoint signed by a trusted log whose origin is its name, and
        cosigned by witnesses that satisfy the quorum."""
        text, _ = note_signers(signed, [])
        checkpoint = parse_checkpoint(text)
        logs = [k for k in self.logs if k.name == checkpoint.origin]
        if not logs:
            raise VerificationError(f"no trusted log has origin {checkpoint.origin!r}")
        _, signers = note_signers(signed, logs)
        if not signers:
            raise VerificationError(f"no signature by the log {checkpoint.origin}")
        _, cosigners = note_signers(signed, list(self.witnesses.values()))
        names = {n for n, w in self.witnesses.items() if w in cosigners}
        if self.quorum is not None and not self._witnessed(self.quorum, names):
            listed = ", ".join(sorted(names))
            raise VerificationError(
                f"witness quorum not met: {len(names)} valid cosignature(s) ({listed})"
            )
        return checkpoint
