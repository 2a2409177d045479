/**
 * C2SP signed-note and tlog-checkpoint: text, an empty line, signature lines
 * `— <name> <base64(key id ‖ signature)>` (Ed25519 key ids: the first 4
 * bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)); a checkpoint is
 * origin, tree size, base64 root hash and extension lines.
 */

import { ed25519 } from "@noble/curves/ed25519.js";
import {
  VerificationError,
  asBytes,
  b64decode,
  concat,
  equalBytes,
  sha256,
  text as utf8Text,
  utf8,
} from "./base.js";

const EM_DASH = "\u2014 ";
export const MAX_SIGNATURES = 100;
export const MAX_NOTE_SIZE = 1 << 20;
export const ED25519 = 0x01;
export const COSIGNATURE_V1 = 0x04;

const WHITE_SPACE = /\p{White_Space}/u;

function signatureValid(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  try {
    // RFC 8032 rules (not ZIP-215): the encodings must be canonical.
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * A C2SP signed-note verifier key: Ed25519 (type 0x01) or a witness's
 * timestamped cosignature/v1 key (type 0x04).
 */
export class Verifier {
  private constructor(
    readonly name: string,
    readonly keyId: Uint8Array,
    readonly publicKey: Uint8Array,
    readonly kind: number,
  ) {}

  /** A verifier key, `<name>+<key hash>+<base64 key>`. */
  static parse(vkey: string): Verifier {
    const first = vkey.indexOf("+");
    const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
    const name = vkey.slice(0, first);
    const hashHex = vkey.slice(first + 1, second);
    if (second < 0 || !name || !/^[0-9a-fA-F]{8}$/.test(hashHex)) {
      throw new VerificationError(`malformed verifier key ${JSON.stringify(vkey)}`);
    }
    const key = b64decode(vkey.slice(second + 1), "verifier key");
    const kind = key[0];
    if (key.length !== 33 || (kind !== ED25519 && kind !== COSIGNATURE_V1)) {
      throw new VerificationError("verifier key: not an Ed25519 (0x01) or cosignature (0x04) key");
    }
    const keyId = new Uint8Array(4);
    for (let i = 0; i < 4; i++) keyId[i] = parseInt(hashHex.slice(2 * i, 2 * i + 2), 16);
    const want = sha256(utf8(name + "\n"), key).subarray(0, 4);
    if (!equalBytes(keyId, want)) {
      throw new VerificationError("verifier key: key hash does not match name and key");
    }
    return new Verifier(name, keyId, key.subarray(1), kind);
  }

  /** Whether `signature` over `message` verifies with this key. */
  verifies(message: Uint8Array, signature: Uint8Array): boolean {
    return signatureValid(this.publicKey, message, signature);
  }

  /** The same name, key id, key and type. */
  equals(other: Verifier): boolean {
    return (
      this.name === other.name &&
      this.kind === other.kind &&
      equalBytes(this.keyId, other.keyId) &&
      equalBytes(this.publicKey, other.publicKey)
    );
  }
}

/**
 * The text of a signed note that carries a valid signature by `verifier`.
 * A signature line by the verifier's name and key id that does not verify
 * rejects the note (C2SP signed-note); so does one that is malformed.
 */
export function verifyNote(note: string | Uint8Array, verifier: Verifier): string {
  const [text, signers] = noteSigners(note, [verifier]);
  if (signers.length === 0) throw new VerificationError(`no signature by ${verifier.name}`);
  return text;
}

/**
 * The note's text and which of `verifiers` signed it. A signature line of a
 * known name and key id that does not verify rejects the note.
 */
export function noteSigners(
  note: string | Uint8Array,
  verifiers: readonly Verifier[],
): [string, Verifier[]] {
  const bytes = asBytes(note);
  if (bytes.length > MAX_NOTE_SIZE) throw new VerificationError("note too large");
  const s = utf8Text(bytes, "note");
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) throw new VerificationError("note has a control character");
  }
  const split = s.lastIndexOf("\n\n");
  if (split < 0) throw new VerificationError("note has no empty line before its signatures");
  const text = s.slice(0, split + 1);
  const sigs = s.slice(split + 2);
  if (!sigs.endsWith("\n")) throw new VerificationError("note does not end with a newline");
  const lines = sigs.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) {
    throw new VerificationError(`note has more than ${MAX_SIGNATURES} signatures`);
  }
  const message = utf8(text);
  const found: Verifier[] = [];
  for (const line of lines) {
    if (!line.startsWith(EM_DASH)) {
      throw new VerificationError(`malformed signature line ${JSON.stringify(line)}`);
    }
    const parts = line.slice(EM_DASH.length).split(" ");
    const [name, sigB64] = parts;
    if (parts.length !== 2 || name === undefined || sigB64 === undefined) {
      throw new VerificationError(`malformed signature line ${JSON.stringify(line)}`);
    }
    if (!name || name.includes("+") || WHITE_SPACE.test(name)) {
      throw new VerificationError(`invalid key name ${JSON.stringify(name)}`);
    }
    const sig = b64decode(sigB64, "signature");
    if (sig.length < 5) throw new VerificationError("signature too short");
    for (const v of verifiers) {
      if (name !== v.name || !equalBytes(sig.subarray(0, 4), v.keyId)) continue;
      let ok: boolean;
      if (v.kind === COSIGNATURE_V1) {
        // cosignature/v1: key id, 8-byte big-endian timestamp, signature over
        // "cosignature/v1\ntime <t>\n" and the checkpoint text.
        if (sig.length !== 4 + 8 + 64) {
          throw new VerificationError(`cosignature by ${name} has the wrong length`);
        }
        const t = new DataView(sig.buffer, sig.byteOffset + 4, 8).getBigUint64(0);
        const signed = concat(utf8(`cosignature/v1\ntime ${t}\n`), message);
        ok = t < 1n << 63n && v.verifies(signed, sig.subarray(12));
      } else {
        ok = v.verifies(message, sig.subarray(4));
      }
      if (!ok) throw new VerificationError(`signature by ${name} does not verify`);
      if (!found.some((f) => f.equals(v))) found.push(v);
    }
  }
  return [text, found];
}

/** A C2SP tlog-checkpoint's first three lines. */
export interface Checkpoint {
  readonly origin: string;
  readonly size: bigint;
  readonly root: Uint8Array;
}

/** `s` as a canonical decimal below 2^64. */
export function decimal(s: string, what: string): bigint {
  if (!/^(?:0|[1-9][0-9]*)$/.test(s)) {
    throw new VerificationError(`${what} ${JSON.stringify(s)} is not a canonical decimal`);
  }
  const n = BigInt(s);
  if (n >= 1n << 64n) throw new VerificationError(`${what} out of range`);
  return n;
}

export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "") {
    throw new VerificationError("checkpoint: fewer than three lines");
  }
  const [origin = "", size = "", rootB64 = ""] = lines;
  const root = b64decode(rootB64, "checkpoint root");
  if (root.length !== 32) throw new VerificationError("checkpoint root is not 32 bytes");
  if (!origin) throw new VerificationError("checkpoint: empty origin");
  return { origin, size: decimal(size, "checkpoint size"), root };
}
