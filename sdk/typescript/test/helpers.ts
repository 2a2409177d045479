/** What the tests share: the repository's paths and vectors, and a real gate on port 0. */

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from build/test/). */
export const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const PACKAGE = join(ROOT, "sdk/typescript");
export const VECTORS = join(ROOT, "tests/vectors");
export const BIN = process.env["TOLLGATE_BIN_DIR"] ?? join(process.env["HOME"] ?? "", ".cache/tollgate/target/release");

export function vectors<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(join(VECTORS, path), "utf8")) as T;
}

export interface Decisions {
  log_key: string;
  gate_key: string;
  permit_header: string;
  decisions: Record<string, unknown>[];
}

export interface Gate {
  url: string;
  logKey: string;
  gateKey: string;
  token: string;
  data: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** `tollgate serve` on a fresh data directory, 127.0.0.1 port 0; `env` adds settings. */
export async function startGate(env: Record<string, string> = {}): Promise<Gate> {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ts-"));
  const data = join(dir, "data");
  const child = spawn(join(BIN, "tollgate"), ["serve", "--listen", "127.0.0.1:0", "--data-dir", data], {
    env: { ...process.env, TOLLGATE_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  let url = "";
  const keys: Record<string, string> = {};
  for await (const line of lines) {
    const listening = /^tollgate listening on (\S+)/.exec(line);
    if (listening?.[1]) url = listening[1];
    for (const m of line.matchAll(/(log|gate) key\s+(\S+)/g)) keys[m[1] as string] = m[2] as string;
    if (url && keys["log"] && keys["gate"]) break;
  }
  if (!url || !keys["log"] || !keys["gate"]) throw new Error("tollgate exited before its banner");
  // Keep reading stdout, so the gate never blocks on a full pipe.
  lines.on("line", () => undefined);
  const token = readFileSync(join(data, "demo.token"), "utf8").trim();
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  return {
    url,
    logKey: keys["log"],
    gateKey: keys["gate"],
    token,
    data,
    process: child,
    async stop() {
      child.kill("SIGKILL");
      await exited;
      // A gate's data directory is large (RocksDB preallocates): never left behind.
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A payments intent as the example policy reads it. */
export function payment(amount: number, key: string, actor = "agent-treasury") {
  return {
    actor: { id: actor, kind: "agent" as const },
    surface: "payments",
    action: "transfer",
    target: { amount, currency: "EUR", to: "acct-1" },
    idempotency_key: key,
  };
}

/** Debian's Chromium (scripts/install-test-deps.sh installs it): never a downloaded browser. */
export function chromium(): string {
  for (const name of ["chromium", "chromium-browser"]) {
    for (const dir of (process.env["PATH"] ?? "").split(":")) {
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // not here
      }
    }
  }
  throw new Error("no chromium on PATH: scripts/install-test-deps.sh installs Debian's");
}
