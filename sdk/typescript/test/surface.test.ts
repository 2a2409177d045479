/**
 * The tool's own service: an Express app behind `permitMiddleware` serves a
 * call only with a fresh, unused permit for exactly that call, from the
 * real gate; the header is the Rust and Python SDKs' byte for byte;
 * redeemed at the gate, a permit runs once across replicas.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";

import express from "express";

import { Client, type Permit, Trust, strictJson } from "../src/index.js";
import {
  AtGate,
  type Call,
  Malformed,
  Mismatch,
  Missing,
  NotPermit,
  PERMIT_HEADER,
  PermitUnverified,
  Stale,
  SurfaceVerifier,
  type SurfaceVerifierOptions,
  Unredeemed,
  Used,
  headerValue,
  permitHandler,
  permitMiddleware,
} from "../src/surface.js";
import { BIN, type Decisions, type Gate, payment, startGate, vectors } from "./helpers.js";

let gate: Gate;
let trust: Trust;
before(async () => {
  gate = await startGate();
  trust = Trust.of(gate.logKey, gate.gateKey);
});
after(async () => {
  await gate.stop();
});

const decide = (amount: number, key: string): Promise<Permit> =>
  new Client(gate.url, trust, { token: gate.token }).decide(payment(amount, key));
const call = (amount: number): Call => ({
  surface: "payments",
  action: "transfer",
  target: { amount, currency: "EUR", to: "acct-1" },
});
const verifier = (options: SurfaceVerifierOptions = {}): SurfaceVerifier => new SurfaceVerifier(trust, options);

test("the permit header is the Rust and Python SDKs' byte for byte", () => {
  const v = vectors<Decisions>("tollgate/decisions.json");
  const d = v.decisions.find((x) => x["decision"] === "PERMIT")!;
  const permit = { response: strictJson(JSON.stringify(d)) } as unknown as Permit;
  assert.equal(headerValue(permit), v.permit_header);
});

test("a permit is accepted once, for exactly its call; everything else is refused", async () => {
  const permit = await decide(500, "ts-s1");
  const header = headerValue(permit);
  const v = verifier();
  await assert.rejects(v.verifyPermit(header, call(501)), Mismatch);
  await assert.rejects(v.verifyPermit(header, { ...call(500), action: "refund" }), Mismatch);
  assert.equal((await v.verifyPermit(header, call(500))).receipt_id, permit.receiptId);
  await assert.rejects(v.verifyPermit(header, call(500)), Used);
  assert.equal(v.remembered(), 1);
  await assert.rejects(v.verifyPermit(undefined, call(500)), Missing);
  await assert.rejects(v.verifyPermit("%%%", call(500)), Malformed);
  await assert.rejects(v.verifyPermit(header.slice(0, -8), call(500)), (e) => e instanceof Malformed || e instanceof PermitUnverified);
  // Not signed by the key the service trusts (here: the recorded vectors' gate).
  const other = Trust.of(gate.logKey, vectors<Decisions>("tollgate/decisions.json").gate_key);
  await assert.rejects(new SurfaceVerifier(other).verifyPermit(headerValue(await decide(500, "ts-s2")), call(500)), PermitUnverified);
  // Stale: decided longer ago than max age (and a clock far behind).
  const fresh = headerValue(await decide(500, "ts-s3"));
  const decided = BigInt(Date.now()) * 1_000_000n;
  await assert.rejects(verifier({ maxAgeMs: 1000 }).verifyPermit(fresh, call(500), decided + 5_000_000_000n), Stale);
  await assert.rejects(verifier().verifyPermit(fresh, call(500), decided - 10_000_000_000n), Stale);
  // A DENY is not a permit.
  const denied = await new Client(gate.url, trust, { token: gate.token }).decide(payment(5_000_000, "ts-s4")).catch((e: { response: Record<string, never> }) => e.response);
  await assert.rejects(verifier().verifyPermit(headerValue({ response: denied } as unknown as Permit), call(5_000_000)), NotPermit);
});

test("the Express app runs only on a valid permit, and gets the body the permit was checked for", async () => {
  const served: unknown[] = [];
  const app = express();
  app.post(
    "/pay",
    permitMiddleware(verifier(), (_req, body) => ({ surface: "payments", action: "transfer", target: body })),
    (req, res) => {
      served.push(req.body);
      res.json({ paid: true });
    },
  );
  const server = app.listen(0, "127.0.0.1");
  await new Promise((done) => server.once("listening", done));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pay`;
  const post = (body: string, header?: string): Promise<Response> =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(header ? { [PERMIT_HEADER]: header } : {}) },
      body,
    });
  try {
    const header = headerValue(await decide(700, "ts-e1"));
    const target = '{"amount":700,"currency":"EUR","to":"acct-1"}';
    const refusal = async (r: Response, why: RegExp): Promise<void> => {
      assert.equal(r.status, 403);
      const body = (await r.json()) as { error: string; message: string };
      assert.equal(body.error, "refused");
      assert.match(body.message, why);
    };
    await refusal(await post(target), /no permit/);
    await refusal(await post('{"amount":701,"currency":"EUR","to":"acct-1"}', header), /another call/);
    // A second amount the app's parser might read differently: never served.
    await refusal(await post('{"amount":700,"amount":7000,"currency":"EUR","to":"acct-1"}', header), /strict JSON/);
    await refusal(await post('{"amount":1e400}', header), /strict JSON/);
    const ok = await post(target, header);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { paid: true });
    await refusal(await post(target, header), /used before/);
    assert.deepEqual(served, [{ amount: 700, currency: "EUR", to: "acct-1" }]);
  } finally {
    server.close();
  }
});

function redeemerToken(name: string): string {
  const out = join(gate.data, "..", `${name}.token`);
  execFileSync(join(BIN, "tollgate"), [
    "caller", "add", name, "--role", "redeem", "--actor", "none", "--token-out", out,
    "--url", gate.url, "--token-file", join(gate.data, "admin.token"),
  ]);
  return readFileSync(out, "utf8").trim();
}

test("redeemed at the gate, a permit runs once across replicas; a gate that cannot redeem fails closed", async () => {
  const header = headerValue(await decide(500, "ts-r1"));
  // The default: single use per process only (what the docs warn of).
  await verifier().verifyPermit(header, call(500));
  await verifier().verifyPermit(header, call(500));

  const token = redeemerToken("ts-payments-svc");
  const first = verifier({ redeemer: new AtGate(gate.url, token) });
  const second = verifier({ redeemer: new AtGate(gate.url, token) });
  const other = await decide(500, "ts-r2");
  assert.equal((await first.verifyPermit(headerValue(other), call(500))).receipt_id, other.receiptId);
  await assert.rejects(second.verifyPermit(headerValue(other), call(500)), Used);
  await assert.rejects(first.verifyPermit(headerValue(other), call(500)), Used);
  // Without the redeem role, or with the gate gone: never served.
  const demo = verifier({ redeemer: new AtGate(gate.url, gate.token) });
  await assert.rejects(demo.verifyPermit(headerValue(await decide(500, "ts-r3")), call(500)), /redeem role/);
  const gone = verifier({ redeemer: new AtGate("http://127.0.0.1:9", token, { retries: 0 }) });
  await assert.rejects(gone.verifyPermit(headerValue(await decide(500, "ts-r4")), call(500)), Unredeemed);
});

test("a Fetch-API handler (Hono, Next.js, Bun, Deno) runs only on a valid permit, with the checked body", async () => {
  const served: unknown[] = [];
  const pay = permitHandler(
    verifier(),
    (_request, body) => ({ surface: "payments", action: "transfer", target: body }),
    (_request, body, receipt) => {
      served.push(body);
      return Response.json({ paid: true, receipt: receipt.receipt_id });
    },
  );
  const post = (body: string, header?: string): Promise<Response> =>
    pay(
      new Request("http://service.local/pay", {
        method: "POST",
        headers: { "content-type": "application/json", ...(header ? { [PERMIT_HEADER]: header } : {}) },
        body,
      }),
    );
  const permit = await decide(800, "ts-f1");
  const header = headerValue(permit);
  const target = '{"amount":800,"currency":"EUR","to":"acct-1"}';
  const refused = async (r: Response, why: RegExp): Promise<void> => {
    assert.equal(r.status, 403);
    assert.match(((await r.json()) as { message: string }).message, why);
  };
  await refused(await post(target), /no permit/);
  await refused(await post('{"amount":801,"currency":"EUR","to":"acct-1"}', header), /another call/);
  await refused(await post('{"amount":800,"amount":8000,"currency":"EUR","to":"acct-1"}', header), /strict JSON/);
  const ok = await post(target, header);
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { paid: true, receipt: permit.receiptId });
  await refused(await post(target, header), /used before/);
  assert.deepEqual(served, [{ amount: 800, currency: "EUR", to: "acct-1" }]);
});
