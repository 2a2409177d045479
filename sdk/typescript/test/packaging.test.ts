/**
 * What `npm pack` ships installs into a fresh project, whose code imports
 * it (the shipped types too) and verifies a recorded decision with it.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { PACKAGE, ROOT, VECTORS } from "./helpers.js";

const npm = (cwd: string, ...args: string[]): string =>
  execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });

test("the packed SDK installs into a fresh project that imports it and verifies a vector", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-pack-"));
  const tgz = npm(PACKAGE, "pack", "--pack-destination", dir).trim().split("\n").pop() as string;
  const project = join(dir, "project");
  execFileSync("mkdir", [project]);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "fresh", private: true, type: "module" }));
  npm(project, "install", "--prefer-offline", join(dir, tgz));
  writeFileSync(
    join(project, "check.mjs"),
    `import { readFileSync } from "node:fs";
import { Verifier, strictJson, verifyDecision } from "@tollgate/sdk/verify";
import { Client, Trust } from "@tollgate/sdk";
import { SurfaceVerifier } from "@tollgate/sdk/surface";
import { guardTool } from "@tollgate/sdk/ai";
const v = JSON.parse(readFileSync(${JSON.stringify(join(VECTORS, "tollgate/decisions.json"))}, "utf8"));
const out = v.decisions.map((d) => verifyDecision(strictJson(JSON.stringify(d)), Verifier.parse(v.log_key), Verifier.parse(v.gate_key)).decision);
const trust = Trust.of(v.log_key, v.gate_key);
console.log(out.join(","), typeof Client, typeof SurfaceVerifier, typeof guardTool, trust.gateKey.name);
`,
  );
  const printed = execFileSync("node", ["check.mjs"], { cwd: project, encoding: "utf8" }).trim();
  assert.equal(printed, "PERMIT,DENY,SILENCE function function function tollgate.local/gate");
  // The shipped types resolve for a strict TypeScript project.
  writeFileSync(
    join(project, "check.ts"),
    `import { type Receipt, Verifier, verifyDecision } from "@tollgate/sdk/verify";
import { Client, type Intent, Trust } from "@tollgate/sdk";
const intent: Intent = { actor: { id: "a", kind: "agent" }, surface: "s", action: "a", target: {}, idempotency_key: "k" };
export const check = (answer: string, log: string, gate: string): Receipt =>
  verifyDecision(JSON.parse(answer), Verifier.parse(log), Verifier.parse(gate));
export const client = new Client("http://127.0.0.1:8080", Trust.of("a", "b"));
export { intent };
`,
  );
  execFileSync(
    "node",
    [join(PACKAGE, "node_modules/typescript/bin/tsc"), "--noEmit", "--strict",
     "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--lib", "es2022,dom", "check.ts"],
    { cwd: project, encoding: "utf8" },
  );
});

test("the portal bundle the gate embeds is what its sources build (npm run portal)", () => {
  const script = (JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["portal"]!;
  const out = join(mkdtempSync(join(tmpdir(), "tollgate-portal-")), "app.js");
  const args = script.split(" ").slice(1).map((a) => (a.startsWith("--outfile=") ? `--outfile=${out}` : a));
  execFileSync(join(PACKAGE, "node_modules/.bin/esbuild"), args, { cwd: PACKAGE, stdio: "ignore" });
  const committed = readFileSync(join(ROOT, "crates/gate/portal/app.js"));
  assert.ok(readFileSync(out).equals(committed), "crates/gate/portal/app.js is stale: run `npm run portal` in sdk/typescript");
});
