/**
 * The verifier against the shared vectors, as the Rust and Python verifiers
 * are tested: the recorded decisions verify and every single-bit change of
 * a receipt or a tlog-proof is refused; transparency-dev's RFC 9162 proof
 * vectors; the C2SP / Go signed-note vectors; the shared accept/refuse
 * corpus and its seeded mutations, whose verdicts the Rust and Python
 * verifiers are held to as well.
 */

import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import {
  Policy,
  VerificationError,
  Verifier,
  canonicalJson,
  isIntegerMember,
  parseCheckpoint,
  strictJson,
  verifyConsistency,
  verifyDecision,
  verifyInclusion,
  verifyNote,
  verifyProofBundle,
  verifyReceipt,
} from "../src/verify/index.js";
import { type Decisions, VECTORS, vectors } from "./helpers.js";

const encoder = new TextEncoder();
const b64 = (s: string | null | undefined): Uint8Array => Uint8Array.from(atob(s ?? ""), (c) => c.charCodeAt(0));

function refuses(f: () => unknown, what: string): void {
  assert.throws(f, VerificationError, what);
}

test("the recorded decisions verify and every single-bit change is refused", () => {
  const v = vectors<Decisions>("tollgate/decisions.json");
  const logKey = Verifier.parse(v.log_key);
  const gateKey = Verifier.parse(v.gate_key);
  let checked = 0;
  for (const d of v.decisions) {
    const response = strictJson(JSON.stringify(d));
    assert.equal(verifyDecision(response, logKey, gateKey).decision, d["decision"]);
    const receipt = encoder.encode(d["receipt"] as string);
    const proof = encoder.encode(d["proof"] as string);
    for (let i = 0; i < receipt.length * 8; i++) {
      const flipped = receipt.slice();
      flipped[i >> 3]! ^= 1 << (i & 7);
      refuses(() => verifyReceipt(flipped, gateKey), `receipt bit ${i}`);
      checked++;
    }
    for (let i = 0; i < proof.length * 8; i++) {
      const flipped = proof.slice();
      flipped[i >> 3]! ^= 1 << (i & 7);
      refuses(() => verifyProofBundle(receipt, flipped, logKey), `proof bit ${i}`);
      checked++;
    }
  }
  assert.ok(checked > 10_000, String(checked));
});

test("a response that says otherwise than its receipt is refused", () => {
  const v = vectors<Decisions>("tollgate/decisions.json");
  const logKey = Verifier.parse(v.log_key);
  const gateKey = Verifier.parse(v.gate_key);
  const permit = v.decisions.find((d) => d["decision"] === "PERMIT")!;
  for (const [field, value] of [
    ["decision", "DENY"],
    ["reason", "something else"],
    ["receipt_id", "0".repeat(32)],
    ["policy_version", null],
    ["log_index", 0],
  ] as const) {
    const changed = strictJson(JSON.stringify({ ...permit, [field]: value }));
    refuses(() => verifyDecision(changed, logKey, gateKey), field);
  }
});

function merkleVectors(kind: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".json")) out.push(JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>);
    }
  };
  walk(join(VECTORS, "transparency-dev-merkle/testdata", kind));
  return out;
}

test("RFC 9162 inclusion vectors (transparency-dev/merkle)", () => {
  const cases = merkleVectors("inclusion");
  assert.ok(cases.length > 50);
  for (const c of cases) {
    const run = (): void =>
      verifyInclusion(
        b64(c["leafHash"] as string),
        c["leafIdx"] as number,
        c["treeSize"] as number,
        ((c["proof"] as string[] | null) ?? []).map(b64),
        b64(c["root"] as string),
      );
    if (c["wantErr"]) refuses(run, String(c["desc"]));
    else run();
  }
});

test("RFC 9162 consistency vectors (transparency-dev/merkle)", () => {
  const cases = merkleVectors("consistency");
  assert.ok(cases.length > 50);
  for (const c of cases) {
    const root1 = b64(c["root1"] as string);
    const root2 = b64(c["root2"] as string);
    const run = (): void =>
      verifyConsistency(c["size1"] as number, c["size2"] as number, root1, root2, ((c["proof"] as string[] | null) ?? []).map(b64));
    // As the Rust and Python verifiers: a proof from size 0 does not exist,
    // and a root is exactly 32 bytes, so such vectors are refused.
    if (c["wantErr"] || c["size1"] === 0 || root1.length !== 32 || root2.length !== 32) refuses(run, String(c["desc"]));
    else run();
  }
});

test("the C2SP and Go signed-note vectors", () => {
  const v = vectors<Record<string, Record<string, string>>>("go-sumdb-note/note_vectors.json");
  const peter = v["go_note_peterneumann"]!;
  assert.equal(verifyNote(peter["signed_note"]!, Verifier.parse(peter["vkey"]!)), peter["text"]);
  // A signature by a key nobody asked about is ignored, not an error.
  const enoch = v["go_note_enochroot"]!;
  const both = peter["signed_note"]! + enoch["sig_line"]!;
  assert.equal(verifyNote(both, Verifier.parse(peter["vkey"]!)), peter["text"]);
  assert.equal(verifyNote(both, Verifier.parse(enoch["vkey"]!)), peter["text"]);
  const example = v["c2sp_signed_note_example"]!;
  assert.equal(verifyNote(example["signed_note"]!, Verifier.parse(example["vkey"]!)), "This is an example message.\n");
  const sum = v["real_sum_golang_org_checkpoint"]!;
  const checkpoint = parseCheckpoint(verifyNote(sum["checkpoint"]!, Verifier.parse(sum["vkey"]!)));
  assert.equal(checkpoint.size, 35225469n);
  // A tlog-policy's log is named by its origin: this key's name is not.
  refuses(() => Policy.parse(`log ${sum["vkey"]}\nquorum none\n`).verifyCheckpoint(sum["checkpoint"]!), "origin");
  refuses(() => verifyNote(peter["signed_note"]!.replace("cryptography", "cryptographY"), Verifier.parse(peter["vkey"]!)), "changed text");
  refuses(() => verifyNote(peter["signed_note"]!, Verifier.parse(example["vkey"]!)), "another key");
});

test("canonical JSON is RFC 8785", () => {
  const cases: [unknown, string][] = [
    [{ b: 1, a: [true, null, "é\n"] }, '{"a":[true,null,"é\\n"],"b":1}'],
    [1e21, "1e+21"],
    [1e-7, "1e-7"],
    [0.000001, "0.000001"],
    [123456789012345680000, "123456789012345680000"],
    [-1.5, "-1.5"],
    [4.35, "4.35"],
    [-0, "0"],
    [{ "\u20ac": 1, "\r": 2, "1": 3 }, '{"\\r":2,"1":3,"€":1}'],
    [{ "\ud83d\ude00": 1, "\ufb01": 2 }, '{"\ud83d\ude00":1,"\ufb01":2}'],
    [strictJson("18446744073709551615"), "18446744073709551615"],
  ];
  for (const [value, text] of cases) assert.equal(canonicalJson(value), text);
  assert.throws(() => canonicalJson(NaN), VerificationError);
  assert.throws(() => canonicalJson(undefined), VerificationError);
});

test("strict JSON refuses what two parsers could read differently", () => {
  for (const bad of [
    '{"a":1,"a":2}', "NaN", "1e400", "-Infinity", "\ufeff{}", "[1,]", "{\"a\":1,}", "01", "1.", ".5",
    '"\\ud800"', '"\\udc00x"', '"a\u0001"', "{} x", "'a'", '"\\x41"', "",
  ]) {
    assert.throws(() => strictJson(bad), VerificationError, bad);
  }
  assert.throws(() => strictJson(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), VerificationError);
  assert.throws(() => strictJson(new Uint8Array([0x22, 0xff, 0x22])), VerificationError);
  const o = strictJson('{"a": 3, "b": 3.0, "c": 3e0, "__proto__": {"x": 1}, "d": "\\u0041\\ud83d\\ude00"}') as Record<string, unknown>;
  assert.ok(isIntegerMember(o, "a"));
  assert.ok(!isIntegerMember(o, "b") && !isIntegerMember(o, "c"));
  assert.deepEqual(Object.keys(o), ["a", "b", "c", "__proto__", "d"]);
  assert.equal(o["d"], "A\ud83d\ude00");
});

interface Corpus {
  log_key: string;
  gate_key: string;
  cases: { name: string; raw: string; expect: string; log_key?: string; gate_key?: string }[];
  mutations: { name: string; base: number; at: number; remove: number; insert: string; expect: string }[];
}

function verdict(raw: string | Uint8Array, logKey: Verifier, gateKey: Verifier): string {
  try {
    verifyDecision(strictJson(raw), logKey, gateKey);
    return "accept";
  } catch (e) {
    if (e instanceof VerificationError) return "refuse";
    throw e;
  }
}

test("the shared corpus and its seeded mutations get the verdicts every verifier gives", () => {
  const v = vectors<Corpus>("tollgate/verifier-corpus.json");
  assert.ok(v.cases.length >= 15);
  const keys = (c: { log_key?: string; gate_key?: string }): [Verifier, Verifier] => [
    Verifier.parse(c.log_key ?? v.log_key),
    Verifier.parse(c.gate_key ?? v.gate_key),
  ];
  for (const c of v.cases) assert.equal(verdict(c.raw, ...keys(c)), c.expect, c.name);
  assert.ok(v.mutations.length >= 300);
  const seen = new Set<string>();
  for (const m of v.mutations) {
    const base = v.cases[m.base]!;
    const raw = encoder.encode(base.raw);
    const changed = new Uint8Array([...raw.subarray(0, m.at), ...encoder.encode(m.insert), ...raw.subarray(m.at + m.remove)]);
    assert.equal(verdict(changed, ...keys(base)), m.expect, m.name);
    seen.add(m.expect);
  }
  // Both verdicts occur: the mutations test acceptance as well as refusal.
  assert.deepEqual([...seen].sort(), ["accept", "refuse"]);
});
