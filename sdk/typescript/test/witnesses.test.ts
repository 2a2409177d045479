/**
 * tlog-policy quorums with cosignatures from the real `witness` binary: a
 * decision verifies with a witness policy only once its checkpoint carries
 * the quorum's cosignatures; groups count as the specification says.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { Client, Policy, Trust, VerificationError, Verifier, b64encode, verifyDecision } from "../src/index.js";
import { BIN, type Gate, payment, startGate } from "./helpers.js";

let gate: Gate;
before(async () => {
  gate = await startGate();
});
after(async () => {
  await gate.stop();
});

/** The checkpoint cosigned by a fresh witness of the gate's log, and the witness's key. */
async function cosign(checkpoint: string): Promise<[string, string]> {
  const witness = spawn(
    join(BIN, "witness"),
    ["serve", "--listen", "127.0.0.1:0", "--data-dir", join(gate.data, "..", "witness"), "--log-key", gate.logKey],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const lines = createInterface({ input: witness.stdout })[Symbol.asyncIterator]();
    const url = String((await lines.next()).value).replace("witness listening on ", "").trim();
    const key = String((await lines.next()).value).trim().split(/\s+/).pop() as string;
    const r = await fetch(`${url}/add-checkpoint`, { method: "POST", body: `old 0\n\n${checkpoint}` });
    assert.equal(r.status, 200);
    return [checkpoint + (await r.text()), key];
  } finally {
    witness.kill("SIGKILL");
  }
}

/** A cosignature/v1 verifier key (type 0x04) of a fresh Ed25519 key. */
function newWitnessKey(name: string): string {
  const key = new Uint8Array([0x04, ...ed25519.getPublicKey(ed25519.utils.randomSecretKey())]);
  const id = sha256(new Uint8Array([...new TextEncoder().encode(name + "\n"), ...key])).subarray(0, 4);
  return `${name}+${[...id].map((b) => b.toString(16).padStart(2, "0")).join("")}+${b64encode(key)}`;
}

test("a decision verifies with a witness policy only when cosigned to its quorum", async () => {
  const permit = await new Client(gate.url, Trust.of(gate.logKey, gate.gateKey), { token: gate.token }).decide(
    payment(500, "ts-w-1"),
  );
  const proof = permit.response["proof"] as string;
  const split = proof.indexOf("\n\n");
  const [cosigned, witness] = await cosign(proof.slice(split + 2));
  const trust = Trust.of(gate.logKey, gate.gateKey, `log ${gate.logKey}\nwitness w ${witness}\nquorum w\n`);
  const keys = [Verifier.parse(gate.logKey), Verifier.parse(gate.gateKey)] as const;
  const withCosignature = { ...permit.response, proof: proof.slice(0, split + 2) + cosigned };
  verifyDecision(withCosignature, ...keys, trust.witnesses);
  assert.throws(() => verifyDecision(permit.response, ...keys, trust.witnesses), /quorum/);
  // A cosignature that does not verify rejects the checkpoint.
  const at = cosigned.lastIndexOf(" ") + 20;
  const forged = cosigned.slice(0, at) + (cosigned[at] === "A" ? "B" : "A") + cosigned.slice(at + 1);
  assert.throws(
    () => verifyDecision({ ...permit.response, proof: proof.slice(0, split + 2) + forged }, ...keys, trust.witnesses),
    VerificationError,
  );
  // Groups: all of two witnesses (one cosigned) is no quorum; any of them is.
  const absent = newWitnessKey("absent.example/w");
  for (const [group, met] of [["all", false], ["any", true], ["1", true], ["2", false]] as const) {
    const p = Policy.parse(`log ${gate.logKey}\nwitness a ${witness}\nwitness b ${absent}\ngroup g ${group} a b\nquorum g\n`);
    if (met) verifyDecision(withCosignature, ...keys, p);
    else assert.throws(() => verifyDecision(withCosignature, ...keys, p), /quorum/, group);
  }
});

test("policies parse as the specification says", () => {
  for (const bad of [
    "quorum none\nquorum none\n",
    "log x\nquorum none\n",
    "witness w x\nquorum w\n",
    "quorum w\n",
    `log ${gate.logKey}\n`,
    "group g 1\nquorum g\n",
    `log ${gate.logKey}\nwitness none ${newWitnessKey("n")}\nquorum none\n`,
    `log ${gate.logKey}\nwitness a ${newWitnessKey("a")}\ngroup g 0 a\nquorum g\n`,
    `log ${gate.logKey}\nquorum none\u0001\n`,
  ]) {
    assert.throws(() => Policy.parse(bad), VerificationError, bad);
  }
  assert.equal(Policy.parse(`# a comment\nlog ${gate.logKey}\nquorum none\n`).quorum, null);
});
