/**
 * Enforcement at the execution surface: the tool's own service refuses a
 * call that does not carry a fresh, unused PERMIT for exactly that call.
 * The same rules and wire form as the Rust SDK's `sdk::surface` and the
 * Python SDK's `tollgate.surface`:
 *
 * - the permit travels in the `tollgate-permit` header: the gate's whole
 *   decision answer (receipt and tlog-proof) as JSON, base64url without
 *   padding (`headerValue`);
 * - a call is served only if its permit verifies (gate signature,
 *   canonical receipt, proof to a checkpoint signed by the log key), says
 *   PERMIT, is for this call (surface, action and target equal what the
 *   service is asked to do, targets compared in RFC 8785 form), is fresh
 *   (decided at most `maxAgeMs` ago, and not more than a second in the
 *   future) and was not used before: its redeemer records it used, once.
 *   The default, `InProcess`, remembers receipt ids in this process only
 *   (while they could still be fresh): **two replicas of a service, or one
 *   restarted within `maxAgeMs`, would each accept the same permit once.**
 *   For single use across replicas and restarts use `AtGate` (the gate
 *   records the redemption in its log, exactly once; `proofcheck audit`
 *   checks that no permit was redeemed twice) or a `Redeemer` over a store
 *   all replicas share.
 *
 * `permitMiddleware` is Express middleware (any framework with Node's
 * `(req, res, next)`): the body is read and parsed as strict JSON (duplicate
 * member names, `NaN` and out-of-range numbers refused) and handed to the
 * app as `req.body`, so the app acts on exactly the value the permit was
 * checked for; anything else is 403 with a JSON body naming the reason, and
 * the app never sees the request. Do not put a body parser in front of it.
 * `permitHandler` does the same for Fetch-API handlers (`Request` in,
 * `Response` out: Hono's `c.req.raw`, Next.js route handlers, Bun, Deno,
 * Cloudflare Workers): the handler gets the request and the checked body.
 */

import { Permit, type Trust } from "./client.js";
import { TollgateError } from "./errors.js";
import {
  type Json,
  type JsonObject,
  type Receipt,
  VerificationError,
  b64decode,
  b64encode,
  canonicalJson,
  jsonText,
  openRequest,
  strictJson,
  verifyDecision,
} from "./verify/index.js";

export const PERMIT_HEADER = "tollgate-permit";
export const DEFAULT_MAX_AGE_MS = 60_000;

/** The `tollgate-permit` header value that carries `permit`. */
export function headerValue(permit: Permit): string {
  const raw = new TextEncoder().encode(jsonText(permit.response));
  return b64encode(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** What the service is asked to do, to hold against the permit. */
export interface Call {
  surface: string;
  action: string;
  target: Json;
}

/** Why a call was refused (403). */
export class Refused extends TollgateError {}
/** The call carries no permit. */
export class Missing extends Refused {}
/** The header is not a base64url JSON decision answer. */
export class Malformed extends Refused {}
/** The permit does not verify (signature, receipt, proof). */
export class PermitUnverified extends Refused {}
/** The permit records DENY or SILENCE. */
export class NotPermit extends Refused {}
/** The permit is for another call. */
export class Mismatch extends Refused {}
/** The permit was decided too long ago (or in the future). */
export class Stale extends Refused {}
/** The permit was used before. */
export class Used extends Refused {}
/**
 * The permit could not be recorded as used (the gate unreachable, a store
 * failing): the call must not run.
 */
export class Unredeemed extends Refused {}

/**
 * Where a `SurfaceVerifier` records the permits it accepted, so each runs
 * once. Called only for a verified, fresh PERMIT for the call; throws
 * `Used` if it was used before, `Unredeemed` if it cannot record it.
 */
export interface Redeemer {
  redeem(receipt: Receipt, surface: string, freshUntilNs: bigint, nowNs: bigint): void | Promise<void>;
}

/**
 * Single use in this process only (the default): receipt ids are kept in
 * memory until they are stale. Replicas and restarts do not share it.
 */
export class InProcess implements Redeemer {
  private readonly used = new Map<string, bigint>();

  redeem(receipt: Receipt, _surface: string, freshUntilNs: bigint, nowNs: bigint): void {
    for (const [id, until] of this.used) if (until < nowNs) this.used.delete(id);
    const id = receipt.receipt_id;
    if (this.used.has(id)) throw new Used(`the permit was used before (receipt ${id})`);
    this.used.set(id, freshUntilNs);
  }

  /** Receipt ids remembered. */
  remembered(): number {
    return this.used.size;
  }
}

export interface AtGateOptions {
  timeoutMs?: number;
  retries?: number;
  fetch?: typeof fetch;
}

/**
 * Single use across replicas and restarts: the gate at `base` redeems the
 * permit (`POST /v1/permits/{receipt_id}/redeem` as a caller with the
 * `redeem` role, bearer `token`) and records it in its log exactly once.
 * Transport errors and 503s are retried with the same idempotency key, so a
 * retry of a redemption that committed is answered as that one.
 */
export class AtGate implements Redeemer {
  private readonly url: string;
  private readonly fetch: typeof fetch;

  constructor(
    base: string,
    private readonly token: string,
    private readonly options: AtGateOptions = {},
  ) {
    this.url = base.replace(/\/+$/, "");
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async redeem(receipt: Receipt, surface: string): Promise<void> {
    const id = receipt.receipt_id;
    const key = new Uint8Array(16);
    crypto.getRandomValues(key);
    const body = JSON.stringify({ surface, idempotency_key: [...key].map((b) => b.toString(16).padStart(2, "0")).join("") });
    let last = "no attempt";
    const retries = this.options.retries ?? 2;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await new Promise((done) => setTimeout(done, 50 * 2 ** attempt));
      let status: number;
      let text: string;
      try {
        const r = await this.fetch(`${this.url}/v1/permits/${encodeURIComponent(id)}/redeem`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
          body,
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
        status = r.status;
        text = (await r.text()).trim();
      } catch (e) {
        last = `the gate did not answer: ${String(e)}`;
        continue;
      }
      if (status === 200) return;
      if (status === 409) throw new Used(`the permit was used before (receipt ${id}): ${text}`);
      last = `${status}: ${text}`;
      if (status !== 503) break;
    }
    throw new Unredeemed(`the permit could not be redeemed: ${last}`);
  }
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$/;

function unixNs(stamp: Json | undefined): bigint {
  const m = typeof stamp === "string" ? RFC3339.exec(stamp) : null;
  if (!m) throw new Malformed(`decided_at ${JSON.stringify(stamp)} is not RFC 3339 UTC`);
  const [, y, mo, d, h, mi, s, frac] = m.map((x) => (x === undefined ? "" : x));
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  return BigInt(ms) * 1_000_000n + BigInt((frac ?? "").padEnd(9, "0"));
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export interface SurfaceVerifierOptions {
  /** How long after its decision a permit may be used (default 60 000 ms). */
  maxAgeMs?: number;
  /** Where permits are recorded used (default: `InProcess`). */
  redeemer?: Redeemer;
}

/** The tool side's verifier, trusting `trust`. */
export class SurfaceVerifier {
  private readonly maxAgeNs: bigint;
  private readonly inProcess = new InProcess();
  private readonly redeemer: Redeemer;

  constructor(
    private readonly trust: Trust,
    options: SurfaceVerifierOptions = {},
  ) {
    this.maxAgeNs = BigInt(Math.round((options.maxAgeMs ?? DEFAULT_MAX_AGE_MS) * 1e6));
    this.redeemer = options.redeemer ?? this.inProcess;
  }

  /**
   * The receipt body of the permit in `header` for `call`, redeemed
   * (marked used); otherwise throws the `Refused` saying why.
   */
  async verifyPermit(header: string | null | undefined, call: Call, now: bigint = nowNs()): Promise<Receipt> {
    if (header === null || header === undefined) {
      throw new Missing(`no permit: the call carries no ${PERMIT_HEADER} header`);
    }
    let response: Json;
    try {
      const h = header.trim();
      if (!/^[A-Za-z0-9_-]*$/.test(h) || h.length % 4 === 1) throw new VerificationError("not base64url");
      const padded = h.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (h.length % 4)) % 4);
      response = strictJson(b64decode(padded, "the header"));
    } catch (e) {
      throw new Malformed(`malformed permit: ${e instanceof Error ? e.message : String(e)}`);
    }
    let receipt: Receipt;
    try {
      receipt = verifyDecision(response, this.trust.logKey, this.trust.gateKey, this.trust.witnesses);
    } catch (e) {
      throw new PermitUnverified(`the permit does not verify: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (receipt.decision !== "PERMIT") throw new NotPermit(`the permit records ${receipt.decision}, not PERMIT`);
    // Committed fields through the permit's (checked) openings.
    const [r, unopened] = openRequest(receipt, (response as JsonObject)["openings"]);
    if (unopened.length > 0) {
      throw new Mismatch(`the receipt commits ${unopened[0]} and the permit carries no opening of it`);
    }
    const pairs: [string, Json | undefined, Json][] = [
      ["surface", r["surface"], call.surface],
      ["action", r["action"], call.action],
      ["target", r["target"], call.target],
    ];
    for (const [what, got, want] of pairs) {
      let permitted: string;
      let asked: string;
      try {
        permitted = canonicalJson(got);
        asked = canonicalJson(want);
      } catch (e) {
        throw new Mismatch(`the permit is for another call: ${what}: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (permitted !== asked) {
        throw new Mismatch(`the permit is for another call: ${what} ${permitted} permitted, ${asked} asked`);
      }
    }
    const decided = unixNs(receipt.decided_at);
    if (now - decided > this.maxAgeNs || decided - now > 1_000_000_000n) {
      throw new Stale(`the permit is not fresh: decided ${canonicalJson(receipt.decided_at)}`);
    }
    await this.redeemer.redeem(receipt, call.surface, decided + this.maxAgeNs, now);
    return receipt;
  }

  /** Receipt ids remembered in this process (0 with another redeemer). */
  remembered(): number {
    return this.inProcess.remembered();
  }
}

/** The parts of Node's (and Express's) request the middleware reads. */
export interface NodeRequest extends AsyncIterable<Uint8Array | string> {
  headers: Record<string, string | string[] | undefined>;
  method?: string;
  url?: string;
  body?: unknown;
}

/** The parts of Node's response the middleware writes. */
export interface NodeResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body: string): unknown;
}

export interface MiddlewareOptions {
  /** Bodies up to this many bytes (default 64 KiB). */
  bodyLimit?: number;
}

/**
 * Express middleware: every request must carry a permit for the call
 * `callOf(req, body)` names (`body`: the strict-JSON body, null if empty).
 * The app then finds that body in `req.body`; a refusal is 403 with
 * `{"error": "refused", "message": …}` and the app never runs.
 */
export function permitMiddleware<Req extends NodeRequest>(
  verifier: SurfaceVerifier,
  callOf: (req: Req, body: Json | null) => Call,
  options: MiddlewareOptions = {},
): (req: Req, res: NodeResponse, next: (err?: unknown) => void) => Promise<void> {
  const limit = options.bodyLimit ?? 64 << 10;
  return async (req, res, next) => {
    let body: Json | null;
    try {
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of req) {
        const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
        size += bytes.length;
        if (size > limit) throw new Refused(`the body exceeds ${limit} bytes`);
        chunks.push(bytes);
      }
      const raw = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) {
        raw.set(c, at);
        at += c.length;
      }
      try {
        body = size > 0 ? strictJson(raw) : null;
      } catch (e) {
        throw new Refused(`the body is not strict JSON: ${e instanceof Error ? e.message : String(e)}`);
      }
      const header = req.headers[PERMIT_HEADER];
      let call: Call;
      try {
        call = callOf(req, body);
      } catch (e) {
        throw new Refused(`the call does not verify: ${e instanceof Error ? e.message : String(e)}`);
      }
      await verifier.verifyPermit(Array.isArray(header) ? header.join(",") : header, call);
    } catch (e) {
      if (!(e instanceof Refused)) {
        next(e);
        return;
      }
      res.statusCode = 403;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ error: "refused", message: e.message }));
      return;
    }
    req.body = body;
    next();
  };
}

/**
 * A Fetch-API handler that runs `handler` only on a request carrying a
 * permit for the call `callOf(request, body)` names (`body`: the
 * strict-JSON body, null if empty); `handler` gets that body, the value the
 * permit was checked for. Anything else is 403 `{"error": "refused",
 * "message": …}`. For Hono: `app.post("/pay", (c) => pay(c.req.raw))`.
 */
export function permitHandler(
  verifier: SurfaceVerifier,
  callOf: (request: Request, body: Json | null) => Call,
  handler: (request: Request, body: Json | null, receipt: Receipt) => Response | Promise<Response>,
  options: MiddlewareOptions = {},
): (request: Request) => Promise<Response> {
  const limit = options.bodyLimit ?? 64 << 10;
  const refuse = (message: string): Response =>
    new Response(JSON.stringify({ error: "refused", message }), {
      status: 403,
      headers: { "content-type": "application/json" },
    });
  return async (request) => {
    const declared = Number(request.headers.get("content-length") ?? "0");
    if (declared > limit) return refuse(`the body exceeds ${limit} bytes`);
    const raw = new Uint8Array(await request.arrayBuffer());
    if (raw.length > limit) return refuse(`the body exceeds ${limit} bytes`);
    let body: Json | null;
    try {
      body = raw.length > 0 ? strictJson(raw) : null;
    } catch (e) {
      return refuse(`the body is not strict JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    let receipt: Receipt;
    try {
      receipt = await verifier.verifyPermit(request.headers.get(PERMIT_HEADER), callOf(request, body));
    } catch (e) {
      if (e instanceof Refused) return refuse(e.message);
      if (e instanceof VerificationError || e instanceof TypeError) {
        return refuse(`the call does not verify: ${e.message}`);
      }
      throw e;
    }
    return await handler(request, body, receipt);
  };
}
