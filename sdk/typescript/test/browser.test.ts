/**
 * The verifier module, unchanged, in a real headless Chromium (Debian's):
 * the page imports dist/verify as shipped (the noble libraries through an
 * import map, no bundler), verifies the recorded decisions, every case and
 * seeded mutation of the shared corpus, and every single-bit change of a
 * receipt and of its tlog-proof, and posts its verdicts back. The portal builds on this.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { test } from "node:test";

import { PACKAGE, VECTORS, chromium } from "./helpers.js";

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">
{"imports": {"@noble/curves/": "/node_modules/@noble/curves/", "@noble/hashes/": "/node_modules/@noble/hashes/"}}
</script>
<script type="module">
const report = (result) => fetch("/result", { method: "POST", body: JSON.stringify(result) });
try {
  const v = await import("/dist/verify/index.js");
  const decisions = await (await fetch("/vectors/tollgate/decisions.json")).json();
  const corpus = await (await fetch("/vectors/tollgate/verifier-corpus.json")).json();
  const verdict = (raw, logKey, gateKey) => {
    try {
      v.verifyDecision(v.strictJson(raw), v.Verifier.parse(logKey), v.Verifier.parse(gateKey));
      return "accept";
    } catch (e) {
      if (e instanceof v.VerificationError) return "refuse";
      throw e;
    }
  };
  const mismatches = [];
  let checked = 0;
  for (const d of decisions.decisions) {
    if (verdict(JSON.stringify(d), decisions.log_key, decisions.gate_key) !== "accept") mismatches.push(d.decision);
    checked++;
  }
  const encoder = new TextEncoder();
  for (const c of corpus.cases) {
    if (verdict(c.raw, c.log_key ?? corpus.log_key, c.gate_key ?? corpus.gate_key) !== c.expect) mismatches.push(c.name);
    checked++;
  }
  for (const m of corpus.mutations) {
    const base = corpus.cases[m.base];
    const raw = encoder.encode(base.raw);
    const changed = new Uint8Array([...raw.subarray(0, m.at), ...encoder.encode(m.insert), ...raw.subarray(m.at + m.remove)]);
    if (verdict(changed, base.log_key ?? corpus.log_key, base.gate_key ?? corpus.gate_key) !== m.expect) mismatches.push(m.name);
    checked++;
  }
  const permit = decisions.decisions.find((d) => d.decision === "PERMIT");
  const logKey = v.Verifier.parse(decisions.log_key);
  const proof = encoder.encode(permit.proof);
  for (let i = 0; i < proof.length * 8; i++) {
    const flipped = proof.slice();
    flipped[i >> 3] ^= 1 << (i & 7);
    try {
      v.verifyProofBundle(permit.receipt, flipped, logKey);
      mismatches.push("proof bit " + i);
    } catch (e) {
      if (!(e instanceof v.VerificationError)) throw e;
    }
    checked++;
  }
  const gateKey = v.Verifier.parse(decisions.gate_key);
  const receipt = encoder.encode(permit.receipt);
  for (let i = 0; i < receipt.length * 8; i++) {
    const flipped = receipt.slice();
    flipped[i >> 3] ^= 1 << (i & 7);
    try {
      v.verifyReceipt(flipped, gateKey);
      mismatches.push("receipt bit " + i);
    } catch (e) {
      if (!(e instanceof v.VerificationError)) throw e;
    }
    checked++;
  }
  await report({ checked, mismatches, userAgent: navigator.userAgent });
} catch (e) {
  await report({ error: String(e && e.stack || e) });
}
</script>`;

const TYPES: Record<string, string> = { ".js": "text/javascript", ".json": "application/json" };

/** Only the shipped module, its two libraries and the vectors are served. */
function file(path: string): string | null {
  const clean = normalize(path).replace(/^(\.\.[/\\])+/, "");
  if (clean.startsWith("/dist/")) return join(PACKAGE, clean);
  if (clean.startsWith("/node_modules/@noble/")) return join(PACKAGE, clean);
  if (clean.startsWith("/vectors/")) return join(VECTORS, clean.slice("/vectors/".length));
  return null;
}

test("the verifier runs unchanged in headless Chromium and gives every verdict", async () => {
  let resolve: (result: Record<string, unknown>) => void = () => undefined;
  const result = new Promise<Record<string, unknown>>((done) => (resolve = done));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method === "POST" && url.pathname === "/result") {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        res.end();
        resolve(JSON.parse(body) as Record<string, unknown>);
      });
      return;
    }
    if (url.pathname === "/") {
      res.setHeader("content-type", "text/html");
      res.end(PAGE);
      return;
    }
    const path = file(url.pathname);
    try {
      if (path === null) throw new Error("not served");
      const bytes = readFileSync(path);
      res.setHeader("content-type", TYPES[extname(path)] ?? "application/octet-stream");
      res.end(bytes);
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = spawn(
    chromium(),
    [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
      `--user-data-dir=${mkdtempSync(join(tmpdir(), "tollgate-chromium-"))}`, url,
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise<void>((done) => browser.once("exit", () => done()));
  const timeout = setTimeout(() => resolve({ error: "no result from Chromium within 120 s" }), 120_000);
  try {
    const got = await result;
    assert.equal(got["error"], undefined, String(got["error"]));
    assert.deepEqual(got["mismatches"], []);
    assert.ok((got["checked"] as number) > 9_000, String(got["checked"]));
    assert.match(String(got["userAgent"]), /Chrome/);
  } finally {
    clearTimeout(timeout);
    browser.kill("SIGKILL");
    await exited;
    server.close();
  }
});
