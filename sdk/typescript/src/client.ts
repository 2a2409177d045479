/**
 * Asking the gate, and running a tool only on a verified PERMIT.
 *
 * `Client` sends an intent to the gate over HTTP(S) (`fetch`), retries
 * transport errors and 503s with the very same body (so the same
 * idempotency key), verifies the answer (`verifyDecision`, and that the
 * receipt records the intent sent) and returns a `Permit`, or throws a
 * `Refusal`:
 *
 * - `Deny` / `Silence`: a verified DENY or SILENCE (the receipt says why);
 * - `Unavailable`: no usable answer (unreachable, timed out, 503, an error);
 * - `Unverified`: an answer that does not verify (signature, proof, garbage,
 *   a receipt for another request);
 * - `Invalid`: the gate refused the intent as invalid (400) or as an
 *   idempotency conflict (409).
 *
 * Every refusal but `Invalid` is SILENCE to the agent: fail closed. `guard`
 * runs a tool only after a `Permit`, exactly once per PERMIT.
 */

import { TollgateError } from "./errors.js";
import {
  type Json,
  type JsonObject,
  Policy,
  type Receipt,
  VerificationError,
  Verifier,
  approvalId,
  canonicalJson,
  jsonText,
  openRequest,
  strictJson,
  verifyDecision,
  verifyReceipt,
} from "./verify/index.js";

/** A decision request (schemas/decision-request.schema.json). */
export interface Intent {
  actor: { id: string; kind: "agent" | "human" | "service"; on_behalf_of?: string };
  surface: string;
  action: string;
  target: JsonObject;
  context?: JsonObject;
  idempotency_key: string;
  expected_policy_version?: string;
}

/** Why a tool was not run. */
export class Refusal extends TollgateError {}

/** The gate decided DENY; `response` is the verified answer, `receipt` its body. */
export class Deny extends Refusal {
  constructor(
    readonly reason: string,
    readonly response: JsonObject,
    readonly receipt: Receipt,
  ) {
    super(`DENY: ${reason} (receipt ${receipt.receipt_id})`);
  }
}

/** The gate decided SILENCE (nothing permitted it, or something failed). */
export class Silence extends Refusal {
  constructor(
    readonly reason: string,
    readonly response: JsonObject,
    readonly receipt: Receipt,
  ) {
    super(`SILENCE: ${reason} (receipt ${receipt.receipt_id})`);
  }
}

/** No usable answer: treated as SILENCE; nothing to verify. */
export class Unavailable extends Refusal {}

/** An answer came and did not verify: treated as SILENCE. */
export class Unverified extends Refusal {}

/** The gate refused the intent as invalid (400) or as an idempotency conflict (409). */
export class Invalid extends Refusal {}

/**
 * The keys an answer must verify with, and optionally a C2SP tlog-policy
 * (naming the log) whose witness quorum must cosign its checkpoint.
 */
export class Trust {
  constructor(
    readonly logKey: Verifier,
    readonly gateKey: Verifier,
    readonly witnesses: Policy | null = null,
  ) {}

  /** From the keys as `tollgate serve` prints them, and a tlog-policy's text. */
  static of(logKey: string, gateKey: string, witnessPolicy?: string): Trust {
    const policy = witnessPolicy === undefined ? null : Policy.parse(witnessPolicy);
    return new Trust(Verifier.parse(logKey), Verifier.parse(gateKey), policy);
  }
}

/** A verified PERMIT for exactly the intent that was sent. */
export class Permit {
  constructor(
    /** The gate's whole answer (receipt and tlog-proof), as read. */
    readonly response: JsonObject,
    /** The verified receipt body. */
    readonly receipt: Receipt,
  ) {}

  get receiptId(): string {
    return this.receipt.receipt_id;
  }

  get logIndex(): bigint {
    return BigInt(this.response["log_index"] as number | bigint);
  }
}

/** The permit in a 200 answer to `intent`, or the refusal it amounts to. */
export function outcome(trust: Trust, intent: Intent, answer: string | Uint8Array): Permit {
  let response: Json;
  let receipt: Receipt;
  try {
    response = strictJson(answer);
    receipt = verifyDecision(response, trust.logKey, trust.gateKey, trust.witnesses);
  } catch (e) {
    if (e instanceof VerificationError) {
      throw new Unverified(`the answer does not verify: ${e.message}`, { cause: e });
    }
    throw e;
  }
  // Fields the receipt commits are compared through their (checked)
  // openings; one without an opening cannot be.
  const [recorded, unopened] = openRequest(receipt, (response as JsonObject)["openings"]);
  if (unopened.length > 0) {
    throw new Unverified(`the receipt commits ${unopened[0]} and the answer carries no opening`);
  }
  if (!recordsIntent(recorded, intent)) {
    throw new Unverified("the receipt is for another request than the one sent");
  }
  const answerObject = response as JsonObject;
  const reason = typeof receipt.reason === "string" ? receipt.reason : "";
  if (receipt.decision === "PERMIT") return new Permit(answerObject, receipt);
  if (receipt.decision === "DENY") throw new Deny(reason, answerObject, receipt);
  throw new Silence(reason, answerObject, receipt);
}

/** The recorded request is the intent: every field sent, and nothing else but an empty default. */
function recordsIntent(recorded: JsonObject, intent: Intent): boolean {
  const sent = intent as unknown as Record<string, unknown>;
  try {
    for (const [k, v] of Object.entries(sent)) {
      if (v === undefined) continue;
      if (!(k in recorded) || canonicalJson(recorded[k]) !== canonicalJson(v)) return false;
    }
  } catch {
    return false;
  }
  return Object.entries(recorded).every(
    ([k, v]) => sent[k] !== undefined || v === null || (typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0),
  );
}

export interface ClientOptions {
  /** The caller's bearer token. */
  token?: string;
  /** Per request, milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Transport errors and 503s retried this many times (default 2). */
  retries?: number;
  /**
   * Milliseconds a decision the policy wants approved waits for a person
   * to approve it (polling the request), before it is asked again under
   * the key plus `+approved`; 0 (the default): the SILENCE at once.
   */
  approvalWaitMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /**
   * Adds headers to every request to the gate: for example the W3C trace
   * context, `(h) => propagation.inject(context.active(), h)` with
   * OpenTelemetry's API, so the decision is a span of the caller's trace.
   */
  propagate?: (headers: Record<string, string>) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/**
 * The gate at `base` (`http(s)://…`), its answers verified with `trust`.
 * HTTPS is verified against the platform's roots (in Node, add a private
 * CA with `NODE_EXTRA_CA_CERTS`).
 */
export class Client {
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly approvalWaitMs: number;
  private readonly fetch: typeof fetch;

  constructor(
    base: string,
    readonly trust: Trust,
    private readonly options: ClientOptions = {},
  ) {
    if (!/^https?:\/\//.test(base)) throw new TypeError(`the gate's URL must be http(s)://, not ${base}`);
    this.url = base.replace(/\/+$/, "");
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 2;
    this.approvalWaitMs = options.approvalWaitMs ?? 0;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = {};
    if (json) h["content-type"] = "application/json";
    if (this.options.token) h["authorization"] = `Bearer ${this.options.token}`;
    this.options.propagate?.(h);
    return h;
  }

  /** A verified PERMIT for `intent`, or the `Refusal` it gets. */
  async decide(intent: Intent): Promise<Permit> {
    try {
      return await this.attempts(intent);
    } catch (e) {
      const waiting = e instanceof Silence ? this.waitingFor(e) : null;
      if (waiting === null) throw e;
      const deadline = Date.now() + this.approvalWaitMs;
      for (;;) {
        const request = await this.approval(waiting);
        if (request["state"] === "approved") return await this.attempts(approved(intent));
        const left = deadline - Date.now();
        if (request["state"] !== "open" || left <= 0) throw e;
        await sleep(Math.min(left, 250));
      }
    }
  }

  /** POSTs of the very same body, transport errors and 503s retried with backoff. */
  private async attempts(intent: Intent): Promise<Permit> {
    const body = jsonText(intent);
    let last: Refusal = new Unavailable("no attempt");
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) await sleep(50 * 2 ** attempt);
      let r: Response;
      let answer: Uint8Array;
      try {
        r = await this.fetch(`${this.url}/v1/decisions`, {
          method: "POST",
          headers: this.headers(true),
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        answer = new Uint8Array(await r.arrayBuffer());
      } catch (e) {
        last = new Unavailable(`the gate did not answer: ${String(e)}`, { cause: e });
        continue;
      }
      if (r.status === 200) return outcome(this.trust, intent, answer);
      const text = new TextDecoder().decode(answer).trim();
      if (r.status === 400 || r.status === 409) throw new Invalid(`${r.status}: ${text}`);
      if (r.status !== 503) throw new Unavailable(`${r.status}: ${text}`);
      last = new Unavailable(`503: ${text}`);
    }
    throw last;
  }

  /**
   * The approval request a SILENCE waits for (its id computed from the
   * verified receipt, not taken from the unsigned answer), if waiting is on.
   */
  private waitingFor(silence: Silence): string | null {
    if (this.approvalWaitMs <= 0 || !silence.response["approval"]) return null;
    const body = verifyReceipt(silence.response["receipt"] as string, this.trust.gateKey);
    return approvalId(body.request);
  }

  /**
   * Approval request `approvalId` as the gate holds it (the caller that
   * asked may read its own); `{}` if it cannot be read.
   */
  async approval(approvalId: string): Promise<JsonObject> {
    try {
      const r = await this.fetch(`${this.url}/v1/approvals/${encodeURIComponent(approvalId)}`, {
        headers: this.headers(false),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      if (r.status !== 200) return {};
      const answer = strictJson(new Uint8Array(await r.arrayBuffer()));
      return typeof answer === "object" && answer !== null && !Array.isArray(answer) ? answer : {};
    } catch {
      return {};
    }
  }

  /**
   * Runs `tool` only on a verified PERMIT for `intent`, once, and returns
   * what it returns; otherwise throws the `Refusal` without running it.
   * The tool gets the permit (to pass on to its service, for example as the
   * `tollgate-permit` header: `headerValue(permit)`).
   */
  async guard<T>(intent: Intent, tool: (permit: Permit) => T | Promise<T>): Promise<T> {
    const permit = await this.decide(intent);
    return await tool(permit);
  }
}

/** The intent asked again once approved: key plus `+approved` (cut to 128). */
function approved(intent: Intent): Intent {
  const suffix = "+approved";
  return { ...intent, idempotency_key: intent.idempotency_key.slice(0, 128 - suffix.length) + suffix };
}
