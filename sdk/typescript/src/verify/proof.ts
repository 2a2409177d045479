/**
 * C2SP tlog-proof: `c2sp.org/tlog-proof@v1`, optional `extra`, `index`, the
 * inclusion proof, an empty line, the signed checkpoint.
 */

import { VerificationError, asText, b64decode, utf8 } from "./base.js";
import { leafHash, verifyInclusion } from "./merkle.js";
import { type Verifier, decimal, parseCheckpoint, verifyNote } from "./notes.js";
import type { Policy } from "./policy.js";

export const PROOF_HEADER = "c2sp.org/tlog-proof@v1";

export interface ProofBundle {
  readonly index: bigint;
  readonly proof: readonly Uint8Array[];
  readonly checkpoint: Uint8Array;
  readonly extra: Uint8Array | null;
}

export function parseProofBundle(text: string): ProofBundle {
  const split = text.indexOf("\n\n");
  if (split < 0) throw new VerificationError("tlog-proof: no empty line before the checkpoint");
  const [header, ...rest] = text.slice(0, split).split("\n");
  if (header !== PROOF_HEADER) throw new VerificationError("tlog-proof: wrong header");
  let extra: Uint8Array | null = null;
  if (rest[0]?.startsWith("extra ")) {
    extra = b64decode((rest.shift() as string).slice("extra ".length), "tlog-proof extra");
  }
  if (!rest[0]?.startsWith("index ")) throw new VerificationError("tlog-proof: no index line");
  const index = decimal((rest.shift() as string).slice("index ".length), "tlog-proof index");
  const proof = rest.map((h) => b64decode(h, "tlog-proof hash"));
  if (proof.some((h) => h.length !== 32)) {
    throw new VerificationError("tlog-proof: a hash is not 32 bytes");
  }
  return { index, proof, checkpoint: utf8(text.slice(split + 2)), extra };
}

/**
 * A tlog-proof that `entry` is in the log whose checkpoint key is `logKey`;
 * with `witnesses`, a C2SP tlog-policy naming that log, its checkpoint must
 * also be cosigned to the policy's quorum.
 */
export function verifyProofBundle(
  entry: string | Uint8Array,
  bundleText: string | Uint8Array,
  logKey: Verifier,
  witnesses?: Policy | null,
): ProofBundle {
  const bundle = parseProofBundle(asText(bundleText, "tlog-proof"));
  let checkpoint;
  if (witnesses) {
    if (!witnesses.namesLog(logKey)) {
      throw new VerificationError("the witness policy does not name the log key");
    }
    checkpoint = witnesses.verifyCheckpoint(bundle.checkpoint);
  } else {
    checkpoint = parseCheckpoint(verifyNote(bundle.checkpoint, logKey));
  }
  if (checkpoint.origin !== logKey.name) {
    throw new VerificationError("the checkpoint's origin is not the log key's name");
  }
  const leaf = leafHash(typeof entry === "string" ? utf8(entry) : entry);
  verifyInclusion(leaf, bundle.index, checkpoint.size, bundle.proof, checkpoint.root);
  return bundle;
}
