/** What every part of verification shares: the one error, strict base64, UTF-8, SHA-256. */

import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { TollgateError } from "../errors.js";

/** The input does not verify; the message says which check failed. */
export class VerificationError extends TollgateError {}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 of `bytes`, padded. */
export function b64encode(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * Strict standard base64: padded and canonical (unused bits zero), so one
 * value has one spelling, as the Rust and Python verifiers require.
 */
export function b64decode(s: string, what: string): Uint8Array {
  if (!B64.test(s)) throw new VerificationError(`${what}: not base64`);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (b64encode(out) !== s) throw new VerificationError(`${what}: not canonical base64`);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** `bytes` as text; not UTF-8 is a `VerificationError` naming `what`. */
export function text(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new VerificationError(`${what} is not UTF-8`);
  }
}

/** Text as given, bytes decoded as UTF-8. */
export function asText(input: string | Uint8Array, what: string): string {
  return typeof input === "string" ? input : text(input, what);
}

/** Bytes as given, text encoded as UTF-8. */
export function asBytes(input: string | Uint8Array): Uint8Array {
  return typeof input === "string" ? utf8(input) : input;
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = nobleSha256.create();
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return d === 0;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
