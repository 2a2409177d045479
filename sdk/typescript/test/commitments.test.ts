/**
 * Receipts that can forget, from the TypeScript SDK: a field the surface
 * contract marks sensitive is committed in the receipt; the answer's
 * openings verify against it, a wrong one is refused, an erased one is
 * reported; the client and the surface verifier compare the call through
 * the openings.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Client, type Permit, Trust, Unverified } from "../src/index.js";
import { Mismatch, SurfaceVerifier, headerValue } from "../src/surface.js";
import {
  type JsonObject,
  VerificationError,
  Verifier,
  checkOpenings,
  commitment,
  openRequest,
  strictJson,
  verifyDecision,
} from "../src/verify/index.js";
import { BIN, type Gate, startGate } from "./helpers.js";

const CUSTOMER = "Ada Lovelace ts-9b2c";
let gate: Gate;
let trust: Trust;
before(async () => {
  gate = await startGate({ TOLLGATE_EXAMPLE_CONTRACT: "true" });
  trust = Trust.of(gate.logKey, gate.gateKey);
});
after(async () => {
  await gate.stop();
});

const update = (key: string, customer = CUSTOMER) => ({
  actor: { id: "agent-deployer", kind: "agent" as const },
  surface: "crm",
  action: "update",
  target: { record: "acme", customer },
  idempotency_key: key,
});
const decide = (key: string): Promise<Permit> => new Client(gate.url, trust, { token: gate.token }).decide(update(key));
const keys = () => [Verifier.parse(gate.logKey), Verifier.parse(gate.gateKey)] as const;

test("the commitment is the gate's: computed here by hand", () => {
  const salt = Uint8Array.from({ length: 32 }, (_, i) => i);
  const want = createHash("sha256")
    .update(Buffer.concat([Buffer.from("tollgate commitment v1\0"), Buffer.from(salt), Buffer.from('{"a":1,"b":"x"}')]))
    .digest("hex");
  assert.equal(commitment(salt, { b: "x", a: 1 }), `sha256:${want}`);
});

test("openings verify, a wrong one is refused, and the call is held to them", async () => {
  const [logKey, gateKey] = keys();
  const permit = await decide("ts-c1");
  const response = permit.response;
  assert.ok(!(response["receipt"] as string).includes(CUSTOMER));
  const body = verifyDecision(response, logKey, gateKey);
  assert.deepEqual((body["derived"] as JsonObject)["committed"], ["/target/customer"]);
  assert.deepEqual(checkOpenings(body, response["openings"]), { "/target/customer": "opened" });
  assert.deepEqual(checkOpenings(body, {}), { "/target/customer": "erased" });
  const [opened, unopened] = openRequest(body, response["openings"]);
  assert.equal((opened["target"] as JsonObject)["customer"], CUSTOMER);
  assert.deepEqual(unopened, []);

  const wrong = strictJson(JSON.stringify(response)) as JsonObject;
  ((wrong["openings"] as JsonObject)["/target/customer"] as JsonObject)["value"] = "Grace Hopper";
  assert.throws(() => verifyDecision(wrong, logKey, gateKey), (e: unknown) => e instanceof VerificationError && /\/target\/customer/.test(e.message));

  const surface = new SurfaceVerifier(trust);
  const target = { record: "acme", customer: CUSTOMER };
  await assert.rejects(
    surface.verifyPermit(headerValue(permit), { surface: "crm", action: "update", target: { ...target, customer: "Grace Hopper" } }),
    (e: unknown) => e instanceof Mismatch && /Grace Hopper/.test(e.message),
  );
  const bare = Object.fromEntries(Object.entries(response).filter(([k]) => k !== "openings"));
  const bareHeader = Buffer.from(JSON.stringify(bare)).toString("base64url");
  await assert.rejects(
    surface.verifyPermit(bareHeader, { surface: "crm", action: "update", target }),
    (e: unknown) => e instanceof Mismatch && /no opening/.test(e.message),
  );
  const receipt = await surface.verifyPermit(headerValue(permit), { surface: "crm", action: "update", target });
  assert.equal(receipt.decision, "PERMIT");
});

test("an erased opening is reported, and the client refuses an answer without one", async () => {
  const [logKey, gateKey] = keys();
  const permit = await decide("ts-c2");
  execFileSync(join(BIN, "tollgate"), [
    "erase", permit.receiptId, "--field", "/target/customer", "--reason", "test",
    "--url", gate.url, "--token-file", join(gate.data, "admin.token"),
  ]); // prettier-ignore
  const r = await fetch(`${gate.url}/v1/receipts/${permit.receiptId}`, { headers: { authorization: `Bearer ${gate.token}` } });
  const saved = strictJson(await r.text()) as JsonObject;
  const body = verifyDecision(saved, logKey, gateKey);
  assert.deepEqual(checkOpenings(body, saved["openings"]), { "/target/customer": "erased" });
  await assert.rejects(decide("ts-c2"), (e: unknown) => e instanceof Unverified && /no opening/.test(e.message));
});
