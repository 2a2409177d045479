/**
 * The client and the guard against the real gate: the tool runs exactly
 * once per verified PERMIT and never on DENY, SILENCE, a gate that is down,
 * garbage, a bad signature, a proof that does not verify or a PERMIT for
 * another request.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  Client,
  type ClientOptions,
  Deny,
  Invalid,
  type Permit,
  Refusal,
  Silence,
  TollgateError,
  Trust,
  Unavailable,
  Unverified,
  VerificationError,
  Verifier,
  approvalId,
  verifyReceipt,
} from "../src/index.js";
import { type Gate, payment, startGate } from "./helpers.js";

let gate: Gate;
before(async () => {
  gate = await startGate();
});
after(async () => {
  await gate.stop();
});

function client(options: ClientOptions = {}): Client {
  return new Client(gate.url, Trust.of(gate.logKey, gate.gateKey), { token: gate.token, ...options });
}

/** A fetch that forwards to the real gate and changes its answer on the way back. */
function tampering(change: (answer: string) => string): typeof fetch {
  return async (input, init) => {
    const real = await fetch(input, init);
    return new Response(change(await real.text()), { status: real.status });
  };
}

function changeReceiptSignature(answer: string): string {
  const r = JSON.parse(answer) as Record<string, string>;
  const receipt = r["receipt"]!;
  const at = receipt.lastIndexOf(" ") + 5;
  r["receipt"] = receipt.slice(0, at) + (receipt[at] === "A" ? "B" : "A") + receipt.slice(at + 1);
  return JSON.stringify(r);
}

function changeProof(answer: string): string {
  const r = JSON.parse(answer) as Record<string, string>;
  // The first proof hash replaced by another well-formed one.
  const lines = r["proof"]!.split("\n");
  lines[2] = lines[2] === "A".repeat(43) + "=" ? "B".repeat(43) + "=" : "A".repeat(43) + "=";
  r["proof"] = lines.join("\n");
  return JSON.stringify(r);
}

test("the guard runs the tool once per PERMIT and never on DENY or SILENCE", async () => {
  const c = client();
  const ran: Permit[] = [];
  const tool = (permit: Permit): string => {
    ran.push(permit);
    return "paid";
  };
  assert.equal(await c.guard(payment(500, "ts-g1"), tool), "paid");
  assert.equal(ran.length, 1);
  assert.equal(ran[0]!.receipt.request["target"] !== undefined, true);
  await assert.rejects(c.guard(payment(5_000_000, "ts-g2"), tool), (e: unknown) => {
    assert.ok(e instanceof Deny && e.receipt.decision === "DENY" && e.response["decision"] === "DENY");
    return true;
  });
  // An actor the demo caller may not speak for: SILENCE, with a receipt.
  await assert.rejects(c.guard(payment(5, "ts-g3", "someone-else"), tool), Silence);
  assert.equal(ran.length, 1);
  // The same key and request again: the original receipt, still a permit.
  const again = await c.decide(payment(500, "ts-g1"));
  assert.equal(again.receiptId, ran[0]!.receiptId);
  // The same key for another request: the gate refuses it.
  await assert.rejects(c.decide(payment(501, "ts-g1")), Invalid);
});

test("answers that do not verify never run the tool", async () => {
  const changes: [string, (a: string) => string][] = [
    ["garbage", () => "garbage"],
    ["empty", () => "{}"],
    ["a bad signature", changeReceiptSignature],
    ["a proof that does not verify", changeProof],
    ["a duplicate member", (a) => '{"decision":"PERMIT",' + a.slice(1)],
  ];
  for (const [name, change] of changes) {
    let ran = 0;
    await assert.rejects(
      client({ fetch: tampering(change) }).guard(payment(500, `ts-t-${name.length}-${name[2]}`), () => ran++),
      Unverified,
      name,
    );
    assert.equal(ran, 0, name);
  }
});

test("a PERMIT for another request is not a permit", async () => {
  const real = await client().decide(payment(500, "ts-swap"));
  const replay: typeof fetch = async () => new Response(JSON.stringify(real.response), { status: 200 });
  let ran = 0;
  await assert.rejects(client({ fetch: replay }).guard(payment(499, "ts-swap"), () => ran++), /another request/);
  await assert.rejects(client({ fetch: replay }).guard(payment(500, "ts-swap-2"), () => ran++), Unverified);
  assert.equal(ran, 0);
});

test("a gate that is down or slow fails closed, retried with the same body", async () => {
  const seen: string[] = [];
  const slow: typeof fetch = async (_input, init) => {
    seen.push(init?.body as string);
    throw new DOMException("timed out", "TimeoutError");
  };
  await assert.rejects(client({ fetch: slow, retries: 2 }).decide(payment(500, "ts-slow")), Unavailable);
  assert.equal(seen.length, 3);
  assert.equal(new Set(seen).size, 1, "three attempts, one request");
  let busy = 0;
  const unavailable: typeof fetch = async () => {
    busy++;
    return new Response("busy", { status: 503 });
  };
  await assert.rejects(client({ fetch: unavailable, retries: 1 }).decide(payment(500, "ts-busy")), /503: busy/);
  assert.equal(busy, 2);
  await assert.rejects(
    new Client("http://127.0.0.1:9", Trust.of(gate.logKey, gate.gateKey), { retries: 1 }).decide(payment(500, "ts-down")),
    Unavailable,
  );
  // A server that accepts and never answers: the timeout, then Unavailable.
  const silent = createServer(() => undefined);
  await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done));
  const port = (silent.address() as AddressInfo).port;
  const stalled = new Client(`http://127.0.0.1:${port}`, Trust.of(gate.logKey, gate.gateKey), { timeoutMs: 200, retries: 0 });
  await assert.rejects(stalled.decide(payment(500, "ts-timeout")), (e: unknown) => e instanceof Unavailable && e instanceof Refusal);
  silent.close();
});

test("a guard waits for a person to approve, then runs once", async () => {
  const admin = readFileSync(join(gate.data, "admin.token"), "utf8").trim();
  const made = await fetch(`${gate.url}/v1/admin/callers`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "ts-approver", roles: ["approve"], actors: [] }),
  });
  assert.equal(made.status, 200);
  const approver = { authorization: `Bearer ${((await made.json()) as { token: string }).token}` };
  // Nobody approves: after the wait, the SILENCE naming the request.
  const waited = await client({ approvalWaitMs: 300 }).decide(payment(20_000, "ts-w1")).then(
    () => assert.fail("permitted without approval"),
    (e: unknown) => e,
  );
  assert.ok(waited instanceof Silence);
  const asked = waited.response["approval"] as Record<string, string>;
  const body = verifyReceipt(waited.response["receipt"] as string, Verifier.parse(gate.gateKey));
  assert.equal(asked["id"], approvalId(body.request));

  const approve = (async () => {
    for (;;) {
      const listed = (await (await fetch(`${gate.url}/v1/approvals`, { headers: approver })).json()) as {
        approvals: { id: string; request: { target: { amount: number } } }[];
      };
      const mine = listed.approvals.find((a) => a.request.target.amount === 30_000);
      if (mine) {
        const voted = await fetch(`${gate.url}/v1/approvals/${mine.id}`, {
          method: "POST",
          headers: { ...approver, "content-type": "application/json" },
          body: JSON.stringify({ vote: "approve" }),
        });
        assert.equal(voted.status, 200);
        return;
      }
      await new Promise((done) => setTimeout(done, 50));
    }
  })();
  let runs = 0;
  const key = await client({ approvalWaitMs: 20_000 }).guard(payment(30_000, "ts-w2"), (permit) => {
    runs++;
    return permit.receipt.request["idempotency_key"];
  });
  await approve;
  assert.equal(key, "ts-w2+approved");
  assert.equal(runs, 1);
});

test("one root for every error; the trace context goes with every request", async () => {
  const errors = [new Deny("x", {}, {} as never), new Unavailable("x"), new VerificationError("x"), new Invalid("x")];
  for (const e of errors) assert.ok(e instanceof TollgateError);
  const seen: string[] = [];
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const recording: typeof fetch = async (input, init) => {
    seen.push(String((init?.headers as Record<string, string>)["traceparent"]));
    return fetch(input, init);
  };
  await client({ fetch: recording, propagate: (h) => (h["traceparent"] = traceparent) }).decide(payment(500, "ts-trace"));
  assert.deepEqual(seen, [traceparent]);
});
