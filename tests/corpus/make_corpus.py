#!/usr/bin/env python3
"""Writes the decision-request corpus: accept/*.json and reject/*.json.

Both schemas/decision-request.schema.json and protocol::DecisionRequest must
accept every document in accept/ and reject every document in reject/
(crates/protocol/tests/contract.rs). Run from this directory to regenerate.
"""

import copy
import json
import os
import shutil

BASE = {
    "actor": {"id": "agent-treasury", "kind": "agent"},
    "surface": "payments",
    "action": "transfer",
    "target": {"amount": 500, "to": "acct-9"},
    "context": {"ticket": "OPS-1"},
    "idempotency_key": "k-1",
}


def nest(depth):
    v = 1
    for _ in range(depth):
        v = {"x": v}
    return v


def with_(path, value):
    d = copy.deepcopy(BASE)
    cur = d
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return d


def without(path):
    d = copy.deepcopy(BASE)
    cur = d
    for p in path[:-1]:
        cur = cur[p]
    del cur[path[-1]]
    return d


accept = {
    "minimal": without(["context"]),
    "full": with_(["expected_policy_version"], "sha256:" + "ab" * 32),
    "on-behalf-of": with_(["actor", "on_behalf_of"], "user-42"),
    "human": with_(["actor", "kind"], "human"),
    "service": with_(["actor", "kind"], "service"),
    "empty-target": with_(["target"], {}),
    "float-amount": with_(["target"], {"amount": 12.5}),
    "negative": with_(["target"], {"delta": -9007199254740991}),
    "max-safe-integer": with_(["target"], {"amount": 9007199254740991}),
    "nested-4": with_(["target"], nest(4)),
    "array-in-target": with_(["target"], {"items": [1, "a", None, True, [1, [2]]]}),
    "unicode-strings": with_(["context"], {"note": "zahlung für €5 \u2028 😀"}),
    "string-1024": with_(["target"], {"memo": "é" * 1024}),
    "key-128": with_(["target"], {"k" * 128: 1}),
    "64-members": with_(["target"], {f"k{i}": i for i in range(64)}),
    "64-items": with_(["target"], {"a": list(range(64))}),
    "id-128": with_(["actor", "id"], "a" * 128),
    "id-punctuation": with_(["idempotency_key"], "!~#$%&'()*+,-./:;<=>?@[]^_`{|}"),
    "surface-64": with_(["surface"], "a" + "b_.-9" * 12 + "xyz"[: 63 - 60]),
    "null-and-bool": with_(["context"], {"a": None, "b": False}),
}

reject = {
    "not-object": [BASE],
    "string": "hello",
    "null": None,
    "unknown-field": with_(["priority"], "high"),
    "unknown-actor-field": with_(["actor", "role"], "admin"),
    "missing-actor": without(["actor"]),
    "missing-actor-id": without(["actor", "id"]),
    "missing-actor-kind": without(["actor", "kind"]),
    "missing-surface": without(["surface"]),
    "missing-action": without(["action"]),
    "missing-target": without(["target"]),
    "missing-idempotency-key": without(["idempotency_key"]),
    "actor-string": with_(["actor"], "agent-treasury"),
    "kind-robot": with_(["actor", "kind"], "robot"),
    "kind-number": with_(["actor", "kind"], 1),
    "id-empty": with_(["actor", "id"], ""),
    "id-129": with_(["actor", "id"], "a" * 129),
    "id-space": with_(["actor", "id"], "agent treasury"),
    "id-non-ascii": with_(["actor", "id"], "agént"),
    "id-number": with_(["actor", "id"], 7),
    "on-behalf-of-null": with_(["actor", "on_behalf_of"], None),
    "surface-upper": with_(["surface"], "Payments"),
    "surface-empty": with_(["surface"], ""),
    "surface-65": with_(["surface"], "a" * 65),
    "surface-digit-first": with_(["surface"], "9lives"),
    "action-space": with_(["action"], "wire transfer"),
    "action-null": with_(["action"], None),
    "target-array": with_(["target"], [1, 2]),
    "target-string": with_(["target"], "acct-9"),
    "target-null": with_(["target"], None),
    "context-array": with_(["context"], []),
    "nested-5": with_(["target"], nest(5)),
    "nested-5-array": with_(["context"], {"a": [[[[1]]]]}),
    "string-1025": with_(["target"], {"memo": "é" * 1025}),
    "key-129": with_(["target"], {"k" * 129: 1}),
    "key-empty": with_(["target"], {"": 1}),
    "65-members": with_(["target"], {f"k{i}": i for i in range(65)}),
    "65-items": with_(["target"], {"a": list(range(65))}),
    "number-too-big": with_(["target"], {"amount": 9007199254740992}),
    "number-too-small": with_(["target"], {"amount": -1e300}),
    "idempotency-key-empty": with_(["idempotency_key"], ""),
    "idempotency-key-object": with_(["idempotency_key"], {"k": 1}),
    "policy-version-short": with_(["expected_policy_version"], "sha256:abcd"),
    "policy-version-upper": with_(["expected_policy_version"], "sha256:" + "AB" * 32),
    "policy-version-null": with_(["expected_policy_version"], None),
    "policy-version-md5": with_(["expected_policy_version"], "md5:" + "ab" * 16),
}

for name, docs in (("accept", accept), ("reject", reject)):
    shutil.rmtree(name, ignore_errors=True)
    os.makedirs(name)
    for k, v in docs.items():
        with open(os.path.join(name, k + ".json"), "w", encoding="utf-8") as f:
            json.dump(v, f, ensure_ascii=False, indent=1)
            f.write("\n")
