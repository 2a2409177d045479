"""Writes verifier-corpus.json: decision answers as raw text, each with the
one answer every verifier of this project (Rust `verify::verify_decision`
behind serde's typed parse, Python `tollgate.verify`, and later the
TypeScript SDK's) must give: accept or refuse. Built from decisions.json
(recorded from a real gate) by edits of the text that need no key, and from
answers of a one-entry log signed here with fixed test keys (each such case
names its own log and gate keys): receipts whose signed content breaks a
rule. Run: python3 make_corpus.py (needs `cryptography`; deterministic)."""

import base64
import hashlib
import json
import random
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2] / "sdk/python/src"))
from tollgate.verify import (  # noqa: E402
    VerificationError,
    Verifier,
    canonical_json,
    strict_json,
    verify_decision,
)

v = json.loads((HERE / "decisions.json").read_text())
permit = next(d for d in v["decisions"] if d["decision"] == "PERMIT")


def text(d: dict[str, object]) -> str:
    return json.dumps(d, ensure_ascii=False)


def replace_member(raw: str, name: str, value: str) -> str:
    """`raw` with member `name`'s JSON value written as `value` (text)."""
    d = json.loads(raw)
    marker = "\u0000MARK\u0000"
    d[name] = marker
    return text(d).replace(json.dumps(marker), value)


cases = [
    {"name": f"a recorded {d['decision']}", "raw": text(d), "expect": "accept"}
    for d in v["decisions"]
]
base = text(permit)
cases += [
    {
        "name": "pretty-printed",
        "raw": json.dumps(permit, indent=2, ensure_ascii=False),
        "expect": "accept",
    },
    {
        "name": "a duplicate member (the first says DENY)",
        "raw": '{"decision": "DENY", ' + base[1:],
        "expect": "refuse",
    },
    {
        "name": "log_index written as a float",
        "raw": replace_member(base, "log_index", f"{permit['log_index']}.0"),
        "expect": "refuse",
    },
    {
        "name": "log_index negative",
        "raw": replace_member(base, "log_index", "-1"),
        "expect": "refuse",
    },
    {
        "name": "log_index out of range",
        "raw": replace_member(base, "log_index", "1e400"),
        "expect": "refuse",
    },
    {"name": "log_index NaN", "raw": replace_member(base, "log_index", "NaN"), "expect": "refuse"},
    {
        "name": "log_index a string",
        "raw": replace_member(base, "log_index", json.dumps(str(permit["log_index"]))),
        "expect": "refuse",
    },
    {"name": "a byte-order mark", "raw": "\ufeff" + base, "expect": "refuse"},
    {"name": "an unknown member", "raw": text({**permit, "extra": True}), "expect": "refuse"},
    {
        "name": "replayed missing",
        "raw": text({k: x for k, x in permit.items() if k != "replayed"}),
        "expect": "refuse",
    },
    {
        "name": "replayed not a boolean",
        "raw": replace_member(base, "replayed", '"no"'),
        "expect": "refuse",
    },
    {
        "name": "a receipt with a malformed extra signature line",
        "raw": text({**permit, "receipt": permit["receipt"] + "— bad+name AAAAAAAA\n"}),
        "expect": "refuse",
    },
    {
        "name": "a receipt with a key name holding a space",
        "raw": text({**permit, "receipt": permit["receipt"] + "— a b\n"}),
        "expect": "refuse",
    },
    {"name": "not an object", "raw": json.dumps([permit]), "expect": "refuse"},
]


class Key:
    """A fixed Ed25519 test key named `name` (C2SP signed-note)."""

    def __init__(self, name: str) -> None:
        seed = hashlib.sha256(f"tollgate verifier corpus {name}".encode()).digest()
        self.name, self.private = name, Ed25519PrivateKey.from_private_bytes(seed)
        public = b"\x01" + self.private.public_key().public_bytes_raw()
        self.id = hashlib.sha256(name.encode() + b"\n" + public).digest()[:4]
        self.vkey = f"{name}+{self.id.hex()}+{base64.b64encode(public).decode()}"

    def sign(self, text: str) -> str:
        sig = base64.b64encode(self.id + self.private.sign(text.encode())).decode()
        return f"{text}\n\u2014 {self.name} {sig}\n"


LOG, GATE = Key("corpus.example/log"), Key("corpus.example/gate")


def one_entry_answer(body: dict[str, object], *, text: str | None = None) -> str:
    """The decision answer of a log holding only `body`'s receipt (signed
    by GATE; its canonical text unless `text` is given)."""
    receipt = GATE.sign(text if text is not None else canonical_json(body) + "\n")
    leaf = hashlib.sha256(b"\x00" + receipt.encode()).digest()
    checkpoint = LOG.sign(f"{LOG.name}\n1\n{base64.b64encode(leaf).decode()}\n")
    policy = body.get("policy")
    return json.dumps(
        {
            "decision": body["decision"],
            "reason": body["reason"],
            "receipt_id": body["receipt_id"],
            "policy_version": policy["version"] if isinstance(policy, dict) else None,
            "log_index": 0,
            "receipt": receipt,
            "proof": f"c2sp.org/tlog-proof@v1\nindex 0\n\n{checkpoint}",
            "replayed": False,
        },
        ensure_ascii=False,
    )


def receipt_body(**request_changes: object) -> dict[str, object]:
    request: dict[str, object] = {
        "actor": {"id": "agent-treasury", "kind": "agent"},
        "surface": "payments",
        "action": "transfer",
        "target": {"amount": 500, "to": "acct-9"},
        "context": {},
        "idempotency_key": "corpus",
    }
    request.update(request_changes)
    request = {k: x for k, x in request.items() if x is not None}
    rid = hashlib.sha256(b"tollgate receipt id v2\0demo\0agent-treasury\0corpus").hexdigest()
    return {
        "format": "tollgate.receipt/v2",
        "receipt_id": rid[:32],
        "log": LOG.name,
        "request": request,
        "request_digest": "sha256:" + hashlib.sha256(canonical_json(request).encode()).hexdigest(),
        "decision": "PERMIT",
        "reason": "corpus",
        "policy": None,
        "derived": {"actor": None, "caller": {"name": "demo", "via": "token"}},
        "decided_at": "2026-12-07T12:00:00.000000000Z",
    }


signed = [
    ("a signed PERMIT of a one-entry log", receipt_body(), "accept"),
    ("a receipt naming another log", {**receipt_body(), "log": "other.example/log"}, "refuse"),
    ("a receipt with an unknown member", {**receipt_body(), "extra": 1}, "refuse"),
    ("a recorded surface that is not a name", receipt_body(surface="Payments"), "refuse"),
    ("a recorded request with an unknown field", receipt_body(extra=1), "refuse"),
    ("a recorded request not normalized (no context)", receipt_body(context=None), "refuse"),
    (
        "a recorded actor kind outside the contract",
        receipt_body(actor={"id": "agent-treasury", "kind": "bot"}),
        "refuse",
    ),
    ("a recorded number beyond 2^53 - 1", receipt_body(target={"amount": 2**53}), "refuse"),
    (
        "a recorded target nested five deep",
        receipt_body(target={"a": {"b": {"c": {"d": {"e": 1}}}}}),
        "refuse",
    ),
]
for name, body, expect in signed:
    cases.append({
        "name": name, "log_key": LOG.vkey, "gate_key": GATE.vkey,
        "raw": one_entry_answer(body), "expect": expect,
    })  # fmt: skip
cases.append({
    "name": "a receipt whose signed text is not canonical",
    "log_key": LOG.vkey, "gate_key": GATE.vkey,
    "raw": one_entry_answer(receipt_body(), text=json.dumps(receipt_body()) + "\n"),
    "expect": "refuse",
})  # fmt: skip


def python_verdict(raw: bytes, case: dict[str, str]) -> str:
    """What the Python verifier says of `raw` (the oracle the others must match)."""
    log_key = Verifier.parse(case.get("log_key", v["log_key"]))
    gate_key = Verifier.parse(case.get("gate_key", v["gate_key"]))
    try:
        response = strict_json(raw)
        if not isinstance(response, dict):
            return "refuse"
        verify_decision(response, log_key, gate_key)
    except VerificationError:
        return "refuse"
    return "accept"


def string_spans(raw: bytes) -> list[tuple[int, int]]:
    """The byte ranges of the JSON strings' contents in `raw` (between quotes)."""
    spans, i, start = [], 0, -1
    while i < len(raw):
        c = raw[i]
        if start < 0 and c == 0x22:
            start = i + 1
        elif start >= 0 and c == 0x5C:
            i += 1
        elif start >= 0 and c == 0x22:
            spans.append((start, i))
            start = -1
        i += 1
    return spans


def mutate(rng: random.Random, raw: bytes) -> tuple[str, int, int, bytes]:
    """One seeded edit of `raw`: (what, at, bytes removed, bytes inserted)."""
    kind = rng.choice(
        ["flip", "flip", "escape", "space", "delete", "insert", "duplicate", "number"]
    )
    if kind == "flip":
        at = rng.randrange(len(raw))
        return f"bit {rng.randrange(8)} of byte", at, 1, bytes([raw[at] ^ (1 << rng.randrange(8))])
    if kind == "escape":
        # An ASCII character inside a string written as a \u escape: the
        # same value, another spelling.
        start, end = rng.choice([s for s in string_spans(raw) if s[1] > s[0]])
        at = rng.randrange(start, end)
        if raw[at] == 0x5C or raw[at] >= 0x80 or (at > start and raw[at - 1] == 0x5C):
            return "a space after the answer", len(raw), 0, b" "
        return "a \\u escape", at, 1, f"\\u{raw[at]:04x}".encode()
    if kind == "space":
        at = rng.randrange(len(raw) + 1)
        return "whitespace", at, 0, rng.choice([b" ", b"\t", b"\n", b"\r\n"])
    if kind == "delete":
        at = rng.randrange(len(raw))
        return "a byte deleted", at, 1, b""
    if kind == "insert":
        at = rng.randrange(len(raw) + 1)
        return (
            "a byte inserted",
            at,
            0,
            rng.choice([b'"', b",", b"}", b"0", b"-", b"e", b".", b"\\", b"x"]),
        )
    if kind == "duplicate":
        # The first member written again at the end of the object.
        first = raw.index(b",")
        return "a member named twice", len(raw) - 1, 0, b"," + raw[1:first]
    # A number (log_index) in another spelling.
    at = raw.index(b'"log_index": ') + len(b'"log_index": ')
    end = at
    while end < len(raw) and raw[end] in b"-0123456789.eE+":
        end += 1
    return (
        "log_index respelled",
        at,
        end - at,
        rng.choice(
            [
                b"3e0",
                b"3.0",
                b"03",
                b"-0",
                b"30e-1",
                b"3 ",
                b"0x3",
                b"1e19",
                b"18446744073709551619",
            ]
        ),
    )


# Seeded edits of the accepted answers: every verifier must give each the
# verdict the Python one gives here (a few hundred, cross-checked by the
# Rust, Python and TypeScript tests). Each edit is a byte splice of its
# base case's raw text: `at`, `remove`, `insert`, so the file stays small.
rng = random.Random(20261207)
accepted = [i for i, c in enumerate(cases) if c["expect"] == "accept"]
mutations = []
while len(mutations) < 320:
    base = rng.choice(accepted)
    raw = cases[base]["raw"].encode()
    what, at, remove, insert = mutate(rng, raw)
    changed = raw[:at] + insert + raw[at + remove :]
    try:
        changed.decode("utf-8")
        insert.decode("utf-8")
    except UnicodeDecodeError:
        continue  # a response is text: such an edit cannot reach a verifier
    mutations.append({
        "name": f"{len(mutations)}: {what} at {at} of case {base}",
        "base": base, "at": at, "remove": remove, "insert": insert.decode("utf-8"),
        "expect": python_verdict(changed, cases[base]),
    })  # fmt: skip
print(
    f"{len(mutations)} mutations, {sum(m['expect'] == 'accept' for m in mutations)} accepted",
    file=sys.stderr,
)

out = {
    "comment": "Generated by make_corpus.py from decisions.json; each raw answer "
    "must be accepted or refused by every verifier alike. mutations: seeded byte "
    "splices of the accepted cases (base: index into cases; at, remove: UTF-8 byte "
    "offset and length; insert: the text put there), each with the Python "
    "verifier's verdict, which the Rust and TypeScript ones must give too.",
    "log_key": v["log_key"],
    "gate_key": v["gate_key"],
    "cases": cases,
    "mutations": mutations,
}
(HERE / "verifier-corpus.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
