/**
 * RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ entry), node hash SHA-256(0x01 ‖
 * left ‖ right); inclusion and consistency verification, step by step.
 * Indices and sizes are `bigint` (a tree may hold 2^64 - 1 entries); plain
 * numbers are accepted and converted.
 */

import { VerificationError, equalBytes, sha256 } from "./base.js";

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);

export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(LEAF, entry);
}

function node(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE, left, right);
}

/** Every hash is exactly 32 bytes: never truncated or padded. */
function hashSizes(...hashes: Uint8Array[]): void {
  if (hashes.some((h) => h.length !== 32)) throw new VerificationError("a hash is not 32 bytes");
}

function whole(n: number | bigint, what: string): bigint {
  if (typeof n === "number" && !Number.isSafeInteger(n)) {
    throw new VerificationError(`${what} is not an integer`);
  }
  const b = BigInt(n);
  if (b < 0n || b >= 1n << 64n) throw new VerificationError(`${what} is out of range`);
  return b;
}

/** RFC 9162 §2.1.3.2: `leaf` is at `index` of the tree of `size` with `root`. */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number | bigint,
  size: number | bigint,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  hashSizes(leaf, root, ...proof);
  const i = whole(index, "inclusion: the index");
  const n = whole(size, "inclusion: the tree size");
  if (i >= n) throw new VerificationError("inclusion: index not below the tree size");
  let fn = i;
  let sn = n - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerificationError("inclusion: proof too long");
    if (fn % 2n === 1n || fn === sn) {
      r = node(p, r);
      if (fn % 2n === 0n) {
        while (fn % 2n === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = node(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError("inclusion: proof too short");
  if (!equalBytes(r, root)) throw new VerificationError("inclusion: proof does not lead to the root");
}

/**
 * RFC 9162 §2.1.4.2: the tree of size `newSize` with `newRoot` extends the
 * one of `oldSize` with `oldRoot`. An old size of 0 has no proof (refused),
 * as the Rust and Python verifiers rule.
 */
export function verifyConsistency(
  oldSize: number | bigint,
  newSize: number | bigint,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): void {
  hashSizes(oldRoot, newRoot, ...proof);
  const old = whole(oldSize, "consistency: the old size");
  const neu = whole(newSize, "consistency: the new size");
  if (old === 0n || old > neu) {
    throw new VerificationError("consistency: no proof exists between these sizes");
  }
  if (old === neu) {
    if (proof.length > 0 || !equalBytes(oldRoot, newRoot)) {
      throw new VerificationError("consistency: equal sizes need an empty proof and one root");
    }
    return;
  }
  const path = [...proof];
  // A power of two: the old root is the first node of the path.
  if ((old & (old - 1n)) === 0n) path.unshift(oldRoot);
  const [first, ...rest] = path;
  if (first === undefined) throw new VerificationError("consistency: empty proof");
  let fn = old - 1n;
  let sn = neu - 1n;
  while (fn % 2n === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = first;
  let sr = first;
  for (const c of rest) {
    if (sn === 0n) throw new VerificationError("consistency: proof too long");
    if (fn % 2n === 1n || fn === sn) {
      fr = node(c, fr);
      sr = node(c, sr);
      if (fn % 2n === 0n) {
        while (fn % 2n === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = node(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError("consistency: proof too short");
  if (!equalBytes(fr, oldRoot) || !equalBytes(sr, newRoot)) {
    throw new VerificationError("consistency: proof does not lead to both roots");
  }
}
