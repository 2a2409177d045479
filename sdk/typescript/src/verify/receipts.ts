/**
 * Tollgate receipts and decision answers: a signed note (by the gate key)
 * whose text is the RFC 8785 canonical JSON of the receipt body and a
 * newline; the request rules; `verifyDecision`, as `proofcheck receipt`.
 */

import { VerificationError, asBytes, hex, sha256, utf8 } from "./base.js";
import { type Json, type JsonObject, canonicalJson, isIntegerMember, isObject, strictJson } from "./jcs.js";
import { type Verifier, verifyNote } from "./notes.js";
import type { Policy } from "./policy.js";
import { verifyProofBundle } from "./proof.js";

export type Decision = "PERMIT" | "DENY" | "SILENCE";
export const RECEIPT_FORMAT = "tollgate.receipt/v2";
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/** A receipt body (`tollgate.receipt/v2`) that verified. */
export interface Receipt extends JsonObject {
  format: string;
  receipt_id: string;
  log: string;
  request: JsonObject;
  request_digest: string;
  decision: Decision;
  reason: Json;
  derived: Json;
  decided_at: Json;
}

const REQUEST_FIELDS = new Set([
  "actor", "surface", "action", "target", "context", "idempotency_key", "expected_policy_version",
]);
const NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const VERSION = /^sha256:[0-9a-f]{64}$/;

function badRequest(at: string, problem: string): VerificationError {
  return new VerificationError(`recorded request ${at || "/"}: ${problem}`);
}

/** Length in Unicode scalar values, as the gate counts characters. */
function chars(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function isId(v: unknown): v is string {
  if (typeof v !== "string" || v.length < 1 || v.length > 128) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function checkFree(v: Json | undefined, at: string, depth: number): void {
  if (v === null || typeof v === "boolean") return;
  if (typeof v === "number" || typeof v === "bigint") {
    const big = typeof v === "bigint" ? v : null;
    if (big !== null ? big > MAX_SAFE_INTEGER || -big > MAX_SAFE_INTEGER : Math.abs(v as number) > MAX_SAFE_INTEGER) {
      throw badRequest(at, "number beyond 2^53 - 1");
    }
    return;
  }
  if (typeof v === "string") {
    if (chars(v) > 1024) throw badRequest(at, "string longer than 1024 characters");
    return;
  }
  if (v === undefined) throw badRequest(at, "not JSON");
  const items: [string, Json][] = Array.isArray(v)
    ? v.map((x, i) => [String(i), x])
    : Object.entries(v);
  if (depth > 4 || items.length > 64) {
    throw badRequest(at, "nested deeper than 4 levels, or more than 64 members or items");
  }
  for (const [k, item] of items) {
    if (!Array.isArray(v) && (chars(k) < 1 || chars(k) > 128)) {
      throw badRequest(at, "member names must be 1 to 128 characters");
    }
    checkFree(item, `${at}/${k}`, depth + 1);
  }
}

/**
 * `request` meets the decision request contract
 * (schemas/decision-request.schema.json), as the gate's parser enforces it;
 * with `normalized`, in the form receipts record (`context` always
 * present). Throws a `VerificationError` naming the field.
 */
export function checkRequest(request: JsonObject, normalized = false): void {
  const unknown = Object.keys(request).filter((k) => !REQUEST_FIELDS.has(k)).sort();
  if (unknown.length > 0) throw badRequest(`/${unknown[0]}`, "unknown field");
  const actor = request["actor"];
  if (!isObject(actor) || Object.keys(actor).some((k) => !["id", "kind", "on_behalf_of"].includes(k))) {
    throw badRequest("/actor", "must be an object of id, kind, on_behalf_of");
  }
  if (!isId(actor["id"])) throw badRequest("/actor/id", "must be 1 to 128 printable ASCII characters");
  if (!["agent", "human", "service"].includes(actor["kind"] as string)) {
    throw badRequest("/actor/kind", "must be one of agent, human, service");
  }
  if ("on_behalf_of" in actor && !isId(actor["on_behalf_of"])) {
    throw badRequest("/actor/on_behalf_of", "must be 1 to 128 printable ASCII characters");
  }
  for (const name of ["surface", "action"]) {
    const v = request[name];
    if (typeof v !== "string" || !NAME.test(v)) throw badRequest(`/${name}`, "must be a lowercase name");
  }
  for (const name of ["target", "context"]) {
    if (!(name in request) && (name === "target" || normalized)) {
      throw badRequest(`/${name}`, "missing required field");
    }
    if (name in request) {
      if (!isObject(request[name])) throw badRequest(`/${name}`, "must be an object");
      checkFree(request[name], `/${name}`, 1);
    }
  }
  if (!isId(request["idempotency_key"])) {
    throw badRequest("/idempotency_key", "must be 1 to 128 printable ASCII characters");
  }
  const version = request["expected_policy_version"];
  if ("expected_policy_version" in request && !(typeof version === "string" && VERSION.test(version))) {
    throw badRequest("/expected_policy_version", "must be sha256: and 64 hex digits");
  }
}

/**
 * The id of the approval request for a request (as a receipt records it):
 * `ap-` and 32 hex digits of the SHA-256 of the canonical request without
 * its idempotency key and pinned policy version, as the gate computes it.
 */
export function approvalId(request: JsonObject): string {
  const subject = Object.fromEntries(
    Object.entries(request).filter(([k]) => k !== "idempotency_key" && k !== "expected_policy_version"),
  );
  return "ap-" + hex(sha256(utf8(canonicalJson(subject)))).slice(0, 32);
}

/** The receipt id the gate gives a request of `caller` for `actor` under `idempotencyKey`. */
export function receiptId(caller: string, actor: string, idempotencyKey: string): string {
  return hex(sha256(utf8("tollgate receipt id v2\0"), utf8(`${caller}\0${actor}\0${idempotencyKey}`))).slice(0, 32);
}

// The members of a receipt body (tollgate.receipt/v2) and of a decision
// response: anything else is refused, as the Rust verifier's types refuse it.
const RECEIPT_REQUIRED = [
  "format", "receipt_id", "log", "request", "request_digest", "decision", "reason", "derived", "decided_at",
];
const RECEIPT_MEMBERS = new Set([...RECEIPT_REQUIRED, "policy"]);
const RESPONSE_REQUIRED = [
  "decision", "reason", "receipt_id", "policy_version", "log_index", "receipt", "proof", "replayed",
];
const RESPONSE_MEMBERS = new Set([...RESPONSE_REQUIRED, "approval", "openings"]);

const COMMITMENT_TAG = utf8("tollgate commitment v1\0");

/**
 * The commitment to `value` under `salt` (32 bytes): `sha256:` and the hex
 * SHA-256 of the tag, the salt and the RFC 8785 form of the value.
 */
export function commitment(salt: Uint8Array, value: Json): string {
  return "sha256:" + hex(sha256(COMMITMENT_TAG, salt, utf8(canonicalJson(value))));
}

/** The fields a receipt commits (`derived.committed`): JSON Pointers. */
export function committedFields(body: JsonObject): string[] {
  const fields = get(body, "derived", "committed");
  return Array.isArray(fields) ? fields.filter((f): f is string => typeof f === "string") : [];
}

/** The object holding `field` (an RFC 6901 pointer) and its last name. */
function pointer(doc: Json | undefined, field: string): [JsonObject, string] | undefined {
  const names = field.split("/").slice(1).map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
  const last = names.pop();
  if (last === undefined) return undefined;
  let at = doc;
  for (const name of names) {
    if (!isObject(at) || !(name in at)) return undefined;
    at = at[name];
  }
  return isObject(at) && last in at ? [at, last] : undefined;
}

function opens(opening: Json | undefined, text: Json | undefined): boolean {
  if (!isObject(opening) || Object.keys(opening).sort().join(",") !== "salt,value") return false;
  const salt = opening["salt"];
  if (typeof salt !== "string" || !/^[0-9a-f]{64}$/.test(salt)) return false;
  const bytes = Uint8Array.from(salt.match(/../g) ?? [], (b) => parseInt(b, 16));
  return commitment(bytes, opening["value"] as Json) === text;
}

/** How a committed field stands: opened by a verified opening, or erased. */
export type FieldStatus = "opened" | "erased";

/**
 * Each committed field of the receipt `body`: `opened` if `openings` (field
 * → {salt, value}) holds one that opens its commitment, `erased` if it
 * holds none. A wrong opening, or one for a field the receipt does not
 * commit, is a `VerificationError` naming the field.
 */
export function checkOpenings(body: JsonObject, openings: Json | undefined): Record<string, FieldStatus> {
  const given = openings ?? {};
  if (!isObject(given)) throw new VerificationError("the response's openings are not an object");
  const committed = committedFields(body);
  const extra = Object.keys(given).filter((f) => !committed.includes(f)).sort();
  if (extra.length > 0) throw new VerificationError(`an opening for ${extra[0]}, which the receipt does not commit`);
  const status: Record<string, FieldStatus> = {};
  for (const field of committed) {
    const at = pointer(body["request"], field);
    if (at === undefined || typeof at[0][at[1]] !== "string") {
      throw new VerificationError(`the receipt commits ${field} but holds no commitment there`);
    }
    if (!(field in given)) status[field] = "erased";
    else if (opens(given[field], at[0][at[1]])) status[field] = "opened";
    else throw new VerificationError(`the opening of ${field} does not open its commitment`);
  }
  return status;
}

/**
 * The receipt's request with its committed fields opened by `openings`
 * (each checked), and the fields left unopened.
 */
export function openRequest(body: JsonObject, openings: Json | undefined): [JsonObject, string[]] {
  const request = structuredClone(body["request"]) as JsonObject;
  const unopened: string[] = [];
  for (const [field, state] of Object.entries(checkOpenings(body, openings))) {
    const at = pointer(request, field);
    if (state === "opened" && at !== undefined && isObject(openings)) {
      at[0][at[1]] = get(openings, field, "value") as Json;
    } else {
      unopened.push(field);
    }
  }
  return [request, unopened];
}

function members(what: string, o: JsonObject, known: Set<string>, required: string[]): void {
  const unknown = Object.keys(o).filter((k) => !known.has(k)).sort();
  const missing = required.filter((k) => !(k in o)).sort();
  if (unknown.length > 0 || missing.length > 0) {
    throw new VerificationError(
      `${what} members [${unknown.join(", ")}] unknown, or [${missing.join(", ")}] missing`,
    );
  }
}

function get(o: Json | undefined, ...path: string[]): Json | undefined {
  let at = o;
  for (const k of path) {
    if (!isObject(at)) return undefined;
    at = at[k];
  }
  return at;
}

/**
 * The body of a receipt signed by `gateKey` whose text is canonical and
 * whose digest and id agree with what it records.
 */
export function verifyReceipt(receipt: string | Uint8Array, gateKey: Verifier): Receipt {
  const text = verifyNote(receipt, gateKey);
  const body = strictJson(text);
  if (!isObject(body)) throw new VerificationError("receipt body is not an object");
  members("receipt", body, RECEIPT_MEMBERS, RECEIPT_REQUIRED);
  const policy = body["policy"];
  if (
    policy !== undefined &&
    policy !== null &&
    (!isObject(policy) || Object.keys(policy).length !== 2 || !("version" in policy) || !("engine" in policy))
  ) {
    throw new VerificationError("receipt policy is not {version, engine}");
  }
  if (canonicalJson(body) + "\n" !== text) throw new VerificationError("receipt text is not canonical JSON");
  if (body["format"] !== RECEIPT_FORMAT) {
    throw new VerificationError(`receipt format ${JSON.stringify(body["format"])}`);
  }
  const request = body["request"];
  if (!isObject(request)) throw new VerificationError("receipt records no request");
  checkRequest(request, true);
  const digest = "sha256:" + hex(sha256(utf8(canonicalJson(request))));
  if (body["request_digest"] !== digest) {
    throw new VerificationError("request_digest does not match the recorded request");
  }
  const caller = get(body, "derived", "caller", "name");
  const actor = get(request, "actor", "id");
  const key = request["idempotency_key"];
  if (typeof caller !== "string" || typeof actor !== "string" || typeof key !== "string") {
    throw new VerificationError("receipt lacks caller, actor or idempotency key");
  }
  if (body["receipt_id"] !== receiptId(caller, actor, key)) {
    throw new VerificationError("receipt_id does not match caller, actor and idempotency key");
  }
  if (!["PERMIT", "DENY", "SILENCE"].includes(body["decision"] as string)) {
    throw new VerificationError("receipt decision is not PERMIT, DENY or SILENCE");
  }
  return body as Receipt;
}

/** Python-like equality of two JSON values a response repeats from its receipt. */
function same(a: Json | undefined, b: Json | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}

/**
 * A decision response (`POST /v1/decisions`, read with `strictJson`),
 * checked as `proofcheck receipt` does: the receipt (signature and body),
 * its inclusion proof to a checkpoint signed by the log key (and, with
 * `witnesses`, cosigned to that tlog-policy's quorum), every field the
 * response repeats, and that each opening opens its committed field
 * (`checkOpenings` says which are opened and which erased). Returns the
 * receipt body.
 */
export function verifyDecision(
  response: Json,
  logKey: Verifier,
  gateKey: Verifier,
  witnesses?: Policy | null,
): Receipt {
  if (!isObject(response)) throw new VerificationError("the response is not an object");
  const receipt = response["receipt"];
  const proof = response["proof"];
  if (typeof receipt !== "string" || typeof proof !== "string") {
    throw new VerificationError("the response lacks a receipt or a proof");
  }
  members("response", response, RESPONSE_MEMBERS, RESPONSE_REQUIRED);
  const index = response["log_index"];
  if (!isIntegerMember(response, "log_index") || (index as number | bigint) < 0) {
    throw new VerificationError("the response's log_index is not a non-negative integer");
  }
  if (typeof response["replayed"] !== "boolean") {
    throw new VerificationError("the response's replayed is not a boolean");
  }
  const body = verifyReceipt(receipt, gateKey);
  const bundle = verifyProofBundle(asBytes(receipt), proof, logKey, witnesses);
  // The checkpoint's origin is the log key's name (checked above).
  if (body.log !== logKey.name) {
    throw new VerificationError(
      `the receipt names log ${JSON.stringify(body.log)}, the checkpoint is of ${JSON.stringify(logKey.name)}`,
    );
  }
  const policy = body["policy"];
  const repeated: [string, Json][] = [
    ["decision", body.decision],
    ["reason", body.reason],
    ["receipt_id", body.receipt_id],
    ["policy_version", isObject(policy) ? (policy["version"] ?? null) : null],
  ];
  for (const [field, want] of repeated) {
    if (!same(response[field], want)) {
      throw new VerificationError(`the response's ${field} differs from the receipt`);
    }
  }
  if (BigInt(index as number | bigint) !== bundle.index) {
    throw new VerificationError("the response's log_index differs from the receipt");
  }
  // Openings are not signed: each must open its committed field.
  checkOpenings(body, response["openings"]);
  return body;
}
