/**
 * The portal in Debian's headless Chromium (driven over the DevTools
 * protocol by puppeteer-core; no browser download), against the real gate
 * on port 0: pinned keys, a receipt verified ✓ on every check and ✗ with a
 * reason when one byte changes or the key is another; an approver approving
 * the request an agent's SDK opened, which then gets a PERMIT recording that
 * vote; the signed webhook event; the log health's consistency check; the
 * decisions list. Screenshots of each view go to build/portal-screenshots/.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { type IncomingHttpHeaders, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";

import puppeteer, { type Browser, type Page } from "puppeteer-core";

import { Client, type Permit, Trust } from "../src/index.js";
import { type Decisions, type Gate, PACKAGE, ROOT, chromium, payment, startGate, vectors } from "./helpers.js";

const SHOTS = join(PACKAGE, "build/portal-screenshots");
let gate: Gate;
let browser: Browser;
let page: Page;
const hooks: { headers: IncomingHttpHeaders; body: string }[] = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    hooks.push({ headers: req.headers, body });
    res.end("ok");
  });
});

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  await new Promise<void>((done) => receiver.listen(0, "127.0.0.1", done));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  gate = await startGate({ TOLLGATE_APPROVAL_WEBHOOKS: hook, TOLLGATE_EXAMPLE_CONTRACT: "true" });
  browser = await puppeteer.launch({ executablePath: chromium(), headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
});
after(async () => {
  await browser.close();
  await gate.stop();
  receiver.close();
});

const admin = (): string => readFileSync(join(gate.data, "admin.token"), "utf8").trim();

async function addCaller(name: string, roles: string[], actors: string[]): Promise<string> {
  const r = await fetch(`${gate.url}/v1/admin/callers`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin()}`, "content-type": "application/json" },
    body: JSON.stringify({ name, roles, actors }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { token: string }).token;
}

async function go(hash: string): Promise<void> {
  await page.goto(`${gate.url}/portal/${hash}`);
  await page.waitForSelector("body[data-ready]");
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function pin(gateKey: string): Promise<void> {
  await go("#/keys");
  await page.$eval("#log-key", (el, v) => ((el as HTMLInputElement).value = v), gate.logKey);
  await page.$eval("#gate-key", (el, v) => ((el as HTMLInputElement).value = v), gateKey);
  await page.click("#pin");
  await page.waitForFunction(() => document.body.textContent?.includes("Pinned in this browser"));
}

async function signIn(token: string): Promise<void> {
  await go("#/approvals");
  if (await page.$("#sign-out")) {
    await page.click("#sign-out");
  }
  await page.waitForSelector("#token");
  await page.type("#token", token);
  await page.click("#sign-in");
  await page.waitForSelector("#sign-out");
}

async function verify(text: string): Promise<{ verdict: string; failed: string[]; passed: number }> {
  await go("#/verify");
  await page.$eval("#answer", (el, v) => ((el as HTMLTextAreaElement).value = v), text);
  await page.click("#verify");
  await page.waitForSelector("#verdict");
  return page.evaluate(() => ({
    verdict: document.getElementById("verdict")?.textContent ?? "",
    failed: [...document.querySelectorAll("tr.check-failed")].map((r) => r.textContent ?? ""),
    passed: document.querySelectorAll("tr.check-passed").length,
  }));
}

const client = (options = {}): Client => new Client(gate.url, Trust.of(gate.logKey, gate.gateKey), { token: gate.token, ...options });

test("the page has a strict Content-Security-Policy, no inline script, and a script under 300 KB", async () => {
  const r = await fetch(`${gate.url}/portal/`);
  const csp = r.headers.get("content-security-policy") ?? "";
  for (const rule of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(rule), csp);
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  const html = await r.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script");
  const bytes = statSync(join(ROOT, "crates/gate/portal/app.js")).size;
  assert.ok(bytes < 300_000, `${bytes} bytes`);
  const started = Date.now();
  await go("");
  const firstRender = Date.now() - started;
  console.log(`portal: app.js ${bytes} bytes; first render ${firstRender} ms (load to the view drawn, headless Chromium)`);
  await shot("verify-empty");
});

test("a receipt verifies with ✓ on every check; a changed byte or another gate key is ✗ with the reason", async () => {
  await pin(gate.gateKey);
  const permit = await client().decide(payment(500, "portal-v1"));
  const answer = JSON.stringify(permit.response, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v));
  const ok = await verify(answer);
  assert.match(ok.verdict, /✓ Verified in this browser/);
  assert.deepEqual(ok.failed, []);
  assert.ok(ok.passed >= 4, String(ok.passed));
  assert.equal(await page.$eval("#decision", (e) => e.textContent), "PERMIT");
  await shot("verify-ok");

  const changed = answer.replace('\\"action\\":\\"transfer\\"', '\\"action\\":\\"transfeR\\"');
  assert.notEqual(changed, answer);
  const bad = await verify(changed);
  assert.match(bad.verdict, /✗ Does not verify/);
  assert.ok(bad.failed.some((f) => /does not verify/.test(f)), bad.failed.join(" | "));
  await shot("verify-changed-byte");

  await pin(vectors<Decisions>("tollgate/decisions.json").gate_key);
  const other = await verify(answer);
  assert.match(other.verdict, /✗/);
  assert.ok(other.failed.length > 0);
  await shot("verify-other-gate-key");
  await pin(gate.gateKey);

  // Opened by its id, as a signed-in reader: verified here; the gate's replay shown as its claim.
  await signIn(gate.token);
  await page.goto(`${gate.url}/portal/receipts/${permit.receiptId}`);
  await page.waitForSelector("#verdict");
  assert.match(await page.$eval("#verdict", (e) => e.textContent ?? ""), /✓/);
  await page.waitForFunction(() => document.getElementById("claim")?.textContent?.includes("same"));
  await shot("verify-by-id");
});

test("a committed field shows its opening verified, erased once the gate erased it, and a wrong opening is ✗", async () => {
  await pin(gate.gateKey);
  const customer = "Ada Lovelace portal-5c";
  const permit = await client().decide({
    actor: { id: "agent-deployer", kind: "agent" },
    surface: "crm",
    action: "update",
    target: { record: "acme", customer },
    idempotency_key: "portal-c1",
  });
  const answer = JSON.stringify(permit.response, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v));
  const rows = () => page.$$eval("#checks tr", (trs) => trs.map((r) => r.textContent ?? ""));
  const ok = await verify(answer);
  assert.match(ok.verdict, /✓ Verified in this browser/, ok.failed.join(" | "));
  assert.ok((await rows()).some((r) => r.includes("/target/customer: committed, opening verified") && r.includes(customer)));
  await shot("verify-committed");

  const wrong = answer.replace(customer, "Grace Hopper");
  const bad = await verify(wrong);
  assert.match(bad.verdict, /✗ Does not verify/);
  assert.ok(bad.failed.some((f) => /does not open its commitment/.test(f)), bad.failed.join(" | "));

  const erased = await fetch(`${gate.url}/v1/admin/receipts/${permit.receiptId}/erase`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin()}`, "content-type": "application/json" },
    body: JSON.stringify({ field: "/target/customer", reason: "portal test" }),
  });
  assert.equal(erased.status, 200, await erased.text());
  const saved = await fetch(`${gate.url}/v1/receipts/${permit.receiptId}`, { headers: { authorization: `Bearer ${gate.token}` } });
  const after = await verify(await saved.text());
  assert.match(after.verdict, /✓ Verified in this browser/);
  const shown = await rows();
  assert.ok(shown.some((r) => r.includes("/target/customer: committed, opening erased")), shown.join(" | "));
  assert.ok(!shown.some((r) => r.includes(customer)));
  await shot("verify-erased");
});

test("an approver approves the request the agent opened; the agent's wait gets a PERMIT recording that vote; the webhook is signed", async () => {
  const approver = await addCaller("portal-approver", ["approve", "read"], []);
  // A caller that both asks and approves: it may not vote on its own request.
  const asker = await addCaller("portal-asker", ["decide", "approve"], ["agent-treasury"]);
  await new Client(gate.url, Trust.of(gate.logKey, gate.gateKey), { token: asker }).decide(payment(20_000, "portal-own")).catch(() => undefined);
  await signIn(asker);
  await go("#/approvals");
  await page.waitForSelector(".approval .own");
  await shot("approvals-own-request");

  const waiting: Promise<Permit> = client({ approvalWaitMs: 60_000 }).decide(payment(30_000, "portal-a1"));
  await signIn(approver);
  // The request the waiting agent opened (30000), among the open ones.
  let id: string | null = null;
  for (let i = 0; i < 100 && !id; i++) {
    await go("#/approvals");
    id = await page.evaluate(() => [...document.querySelectorAll(".approval")].find((c) => c.textContent?.includes("30000"))?.getAttribute("data-id") ?? null);
    if (!id) await new Promise((done) => setTimeout(done, 100));
  }
  assert.ok(id, "the open request appears");
  await shot("approvals-inbox");
  await page.click(`.approval[data-id="${id}"] button.approve`);
  await page.waitForSelector("#vote-entry", { timeout: 20_000 });
  const shown = await page.$eval("#vote-entry", (e) => e.textContent ?? "");
  const index = Number(/log index (\d+)/.exec(shown)?.[1]);
  await shot("approvals-voted");
  const permit = await waiting;
  assert.equal(permit.receipt.decision, "PERMIT");
  const derived = permit.receipt.derived as { approvals?: { by: string; entry: number }[] };
  assert.deepEqual(derived.approvals?.map((v) => [v.by, Number(v.entry)]), [["portal-approver", index]]);

  // The webhook: one event per opened request, signed with the gate's secret.
  const secret = readFileSync(join(gate.data, "webhook.secret"), "utf8").trim();
  for (let i = 0; i < 100 && !hooks.some((h) => h.body.includes(id ?? "-")); i++) await new Promise((done) => setTimeout(done, 100));
  const hook = hooks.find((h) => h.body.includes(id ?? "-"));
  assert.ok(hook, "the receiver got the event");
  const ts = String(hook.headers["tollgate-webhook-timestamp"]);
  const want = "v1=" + createHmac("sha256", secret).update(`${ts}.${hook.body}`).digest("hex");
  assert.equal(hook.headers["tollgate-webhook-signature"], want);
  const event = JSON.parse(hook.body) as { type: string; text: string; url: string; approvals_needed: number };
  assert.equal(event.type, "approval.requested");
  assert.match(event.text, /payments\.transfer .*30000/);
  assert.ok(event.url.startsWith(`${gate.url}/portal/#/approvals/ap-`), event.url);
  // The event's link opens the portal on that request (now used: not open).
  await page.goto(event.url);
  await page.waitForSelector("#not-open");
});

test("after more decisions, the log health view shows a consistency check that passed", async () => {
  await signIn(gate.token);
  await go("#/log");
  await page.waitForSelector("#log-size");
  for (let i = 0; i < 3; i++) await client().decide(payment(100 + i, `portal-l${i}`));
  await go("#/keys");
  await go("#/log");
  await page.waitForSelector("#timeline");
  const rows = await page.$$eval("tr.check-passed", (rs) => rs.map((r) => r.textContent ?? ""));
  assert.ok(rows.some((r) => r.includes("Consistent with the checkpoint this browser saw last")), rows.join(" | "));
  const timeline = await page.$eval("#timeline", (e) => e.textContent ?? "");
  assert.match(timeline, /approval\.approve/);
  assert.match(timeline, /policy\.activate/);
  await shot("log-health");
});

test("the decisions list reads the log, filters, and opens a decision verified", async () => {
  await client().decide(payment(5_000_000, "portal-d1")).catch(() => undefined);
  await signIn(gate.token);
  await go("#/decisions");
  await page.waitForSelector("tr.decision-row");
  await page.select("#filter-decision", "DENY");
  const decisions = await page.$$eval("tr.decision-row", (rs) => rs.map((r) => r.children[4]?.textContent ?? ""));
  assert.ok(decisions.length > 0 && decisions.every((d) => d === "DENY"), decisions.join(","));
  await shot("decisions");
  await page.click("tr.decision-row button");
  await page.waitForSelector("#verdict");
  assert.match(await page.$eval("#verdict", (e) => e.textContent ?? ""), /✓/);
  assert.equal(await page.$eval("#decision", (e) => e.textContent), "DENY");
});
